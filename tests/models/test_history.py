"""models.history: the DNC's unroll with its link matrices kept in place, against lax.scan's
differentiation of the same steps (values and gradients: params, initial state, inputs;
batched, population-vmapped, token ids, link sharpness), the kernels' history handlers
against the plain link step, and the jaxpr: no [T, N, N] stack of link matrices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dncjax
from dncjax.models import core, native
from dncjax.models.native import build
from tests.jaxprs import float_shapes

jax.config.update("jax_enable_x64", True)

pytestmark = pytest.mark.skipif(not build.compiler_found(),
                                reason="no C++ compiler ($CXX or c++): no link kernel")


@pytest.fixture(autouse=True)
def _native_kernel():
  native.select("native")  # the kernel at any N, so the tests stay small
  yield
  native.select(None)


def models(N=8, **extra):
  """{link_history: the DNC} for both settings, float64."""
  return {h: dncjax.make_model("dnc", 5, 4, hidden=6, memory_size=N, word_size=3,
                               read_heads=2, dtype="float64", link_history=h, **extra)
          for h in (True, False)}


def warm_states(model, params, B, rng):
  """States after a few steps on random inputs (usage, links and weights away from the
  all-zero start, whose tied usages make allocation non-differentiable)."""
  xs = jnp.asarray(rng.normal(size=(B, 4, model.config.input_size)))
  states, _ = core.batch_unroll(model, params, core.batch_initial_state(model, B), xs)
  return states


def loss_fn(model, xs, weights):
  def loss(params, states, xs):
    final, features = core.batch_unroll_features(model, params, states, xs)
    ys = core.readout(model, params, features, time_axes=2)
    return (jnp.sum(jnp.tanh(ys) * weights[0]) + jnp.sum(final.access.link * weights[1])
            + jnp.sum(final.access.memory ** 2) + jnp.sum(final.controller[0].h))
  return loss


def assert_trees_close(got, want, atol):
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(want), jax.tree.leaves(got)):
    np.testing.assert_allclose(b, a, rtol=0, atol=atol, err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("extra", [{}, {"link_sharpness": True, "controller_layers": 2}])
def test_gradients_equal_lax_scans(extra):
  rng = np.random.default_rng(0)
  both = models(**extra)
  params = jax.jit(both[True].init)(jax.random.key(1))
  B, T = 3, 6
  states = warm_states(both[False], params, B, rng)
  xs = jnp.asarray(rng.normal(size=(B, T, 5)))
  weights = (jnp.asarray(rng.normal(size=(B, T, 4))), jnp.asarray(rng.normal(size=(B, 8, 8))))
  got = jax.jit(jax.value_and_grad(loss_fn(both[True], xs, weights), argnums=(0, 1, 2)))(
      params, states, xs)
  want = jax.value_and_grad(loss_fn(both[False], xs, weights), argnums=(0, 1, 2))(
      params, states, xs)
  assert both[True].scan is not None and both[False].scan is None
  np.testing.assert_allclose(got[0], want[0], rtol=1e-13)
  assert_trees_close(got[1], want[1], atol=1e-11)
  assert float(jnp.max(jnp.abs(want[1][1].access.link))) > 1e-3  # the links' gradient is live


def test_a_population_of_params_and_token_inputs_have_lax_scans_gradients():
  rng = np.random.default_rng(3)
  both = {h: dncjax.make_model("dnc", 7, 7, hidden=6, memory_size=8, word_size=3,
                               read_heads=2, dtype="float64", link_history=h)
          for h in (True, False)}
  members = jax.vmap(both[True].init)(jax.random.split(jax.random.key(2), 2))
  B, T = 2, 5
  tokens = jnp.asarray(rng.integers(0, 7, size=(2, B, T)), jnp.int32)

  def loss(model):
    def member(params, tokens):
      states = core.batch_initial_state(model, B)
      final, features = core.batch_unroll_features(model, params, states, tokens)
      ys = core.readout(model, params, features, time_axes=2)
      return jnp.sum(jax.nn.log_softmax(ys) * jax.nn.one_hot(tokens, 7)) + jnp.sum(
          final.access.link ** 2)
    return lambda members: jnp.sum(jax.vmap(member)(members, tokens))

  got = jax.jit(jax.grad(loss(both[True])))(members)
  want = jax.grad(loss(both[False]))(members)
  assert_trees_close(got, want, atol=1e-11)


def test_the_training_step_keeps_no_stack_of_link_matrices_but_the_history():
  rng = np.random.default_rng(4)
  N, B, T = 11, 2, 7
  both = models(N=N)
  params = jax.jit(both[True].init)(jax.random.key(1))
  states = core.batch_initial_state(both[True], B)
  xs = jnp.asarray(rng.normal(size=(B, T, 5)))
  weights = (jnp.ones((B, T, 4)), jnp.ones((B, N, N)))
  stacks, shapes = {}, {}
  for h, model in both.items():
    jaxpr = jax.make_jaxpr(jax.grad(loss_fn(model, xs, weights)))(params, states, xs).jaxpr
    shapes[h] = float_shapes(jaxpr)
    # [N, N] arrays of every lane and several time steps: stacks of link matrices
    stacks[h] = {s for s in shapes[h] if len(s) == 4 and s[2:] == (N, N) and 1 not in s[:2]}
  assert (T, B, N, N) in stacks[False], "lax.scan stacks L_t: the check must see it"
  assert stacks[True] == {(B, T + 1, N, N)}, stacks[True]  # the history itself, only
  for name in ("Whh", "Wrh", "Whi"):  # weights are kept once, not once per step
    assert (T,) + params[name].shape not in shapes[True], name
    # and their cotangents summed over the batch at each step, not carried per example
    assert (B,) + params[name].shape not in shapes[True], name


def test_one_examples_unroll_vmapped_or_alone_has_the_batchs_gradients():
  """The history's scan runs a batch at once; one example is a batch of one, also under
  a vmap of the caller's (the link step's backward pass then batched twice)."""
  rng = np.random.default_rng(6)
  model = models()[True]
  params = jax.jit(model.init)(jax.random.key(1))
  B, T = 3, 5
  states = warm_states(model, params, B, rng)
  xs = jnp.asarray(rng.normal(size=(B, T, 5)))

  def batch_loss(params, states, xs):
    final, features = core.batch_unroll_features(model, params, states, xs)
    return jnp.sum(jnp.tanh(features[0])) + jnp.sum(final.access.link ** 2)

  def one_loss(params, state, xs):
    final, features = core.unroll_features(model, params, state, xs)
    return jnp.sum(jnp.tanh(features[0])) + jnp.sum(final.access.link ** 2)

  want = jax.grad(batch_loss, argnums=(0, 1, 2))(params, states, xs)
  vmapped = jax.grad(lambda p, s, x: jnp.sum(jax.vmap(one_loss, (None, 0, 0))(p, s, x)),
                     argnums=(0, 1, 2))(params, states, xs)
  assert_trees_close(vmapped, want, atol=1e-11)
  alone = [jax.grad(one_loss, argnums=(0, 1, 2))(
      params, jax.tree.map(lambda a: a[b], states), xs[b]) for b in range(B)]
  assert_trees_close(jax.tree.map(lambda *g: sum(g), *[a[0] for a in alone]), want[0],
                     atol=1e-11)
  for b in range(B):
    assert_trees_close(alone[b][1:], jax.tree.map(lambda a: a[b], want[1:]), atol=1e-11)


def test_history_kernels_equal_the_link_step_and_refuse_steps_outside_the_history():
  rng = np.random.default_rng(5)
  B, N, R, S = 3, 9, 2, 4
  L0 = jnp.asarray(rng.uniform(size=(B, N, N)))
  w, p = (jnp.asarray(0.5 * rng.dirichlet(np.ones(N), size=B)) for _ in range(2))
  v = jnp.asarray(rng.dirichlet(np.ones(N), size=(B, R)))
  H = native.history_start(L0, S)
  np.testing.assert_array_equal(H[:, 0], L0)
  H, f, b = jax.jit(native.history_step)(H, 0, w, p, v)
  want = jax.vmap(native.link_step)(L0, w, p, v)
  for got, expected in zip((H[:, 1], f, b), want):
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-14)
  np.testing.assert_array_equal(H[:, 0], L0)  # slot t is read, not written
  g = tuple(jnp.asarray(rng.normal(size=s)) for s in ((B, N, N), (B, R, N), (B, R, N)))
  got = native.history_backward(H, 0, w, p, v, *g)
  want = jax.vmap(lambda L, w, p, v, *g: jax.vjp(native.link_step, L, w, p, v)[1](g))(
      L0, w, p, v, *g)
  for a, b_ in zip(got, want):
    np.testing.assert_allclose(a, b_, rtol=0, atol=1e-13)
  with pytest.raises(Exception, match="t \\+ 1 outside H"):
    jax.block_until_ready(native.history_step(H, S - 1, w, p, v))


def test_remat_and_the_xla_link_step_keep_lax_scan():
  assert models(remat=True)[True].scan is None
  native.select("xla")
  both = models()
  params = jax.jit(both[True].init)(jax.random.key(1))
  states = core.batch_initial_state(both[True], 2)
  xs = jnp.ones((2, 3, 5))
  jaxpr = jax.make_jaxpr(jax.grad(loss_fn(both[True], xs, (1.0, 1.0))))(params, states, xs)
  assert "ffi_call" not in str(jaxpr)
