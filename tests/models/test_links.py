"""links.link_step: the temporal link step and its hand-derived backward pass against the
paper's equations as addressing.py writes them (automatic differentiation of those)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dncjax.models import addressing, links

jax.config.update("jax_enable_x64", True)  # as test_addressing.py: float64 throughout


def reference(L, w, p, v):
  new = addressing.link_update(L, p, w)
  return (new, *addressing.directional_weights(new, v))


def inputs(rng, N=7, R=3, diagonal=0.0):
  L = rng.uniform(size=(N, N))
  np.fill_diagonal(L, diagonal)
  w = 0.9 * rng.dirichlet(np.ones(N))
  p = 0.8 * rng.dirichlet(np.ones(N))
  v = rng.dirichlet(np.ones(N), size=R)
  return tuple(jnp.asarray(a, jnp.float64) for a in (L, w, p, v))


@pytest.mark.parametrize("diagonal", [0.0, 0.3])  # L_{t-1} from the model has a zero diagonal
def test_values_and_gradients_equal_the_papers_equations(diagonal):
  rng = np.random.default_rng(1)
  args = inputs(rng, diagonal=diagonal)
  want, want_vjp = jax.vjp(reference, *args)
  got, got_vjp = jax.vjp(links.link_step, *args)
  for a, b in zip(want, got):
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-12)
  N, R = args[3].shape[1], args[3].shape[0]
  cotangents = tuple(jnp.asarray(rng.normal(size=s)) for s in ((N, N), (R, N), (R, N)))
  for a, b in zip(want_vjp(cotangents), got_vjp(cotangents)):
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-12)


def test_a_batched_scan_of_it_has_the_references_gradient():
  rng = np.random.default_rng(2)
  steps = [inputs(rng, N=5, R=2) for _ in range(4)]
  L0 = steps[0][0]
  xs = tuple(jnp.stack([s[i] for s in steps]) for i in (1, 2, 3))

  def loss(fn, L0, xs):
    def body(L, x):
      new, f, b = fn(L, *x)
      return new, jnp.sum(f * jnp.arange(f.size).reshape(f.shape)) + jnp.sum(b ** 2)
    L, ys = jax.lax.scan(body, L0, xs)
    return jnp.sum(ys) + jnp.sum(L * L)

  want = jax.grad(lambda *a: loss(reference, *a), argnums=(0, 1))(L0, xs)
  got = jax.grad(lambda *a: loss(links.link_step, *a), argnums=(0, 1))(L0, xs)
  for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-11)
