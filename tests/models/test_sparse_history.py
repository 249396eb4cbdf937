"""models.sparse_history: the SDNC's unroll with its sparse links updated in place and a
journal of what each step changes, against lax.scan's differentiation of the same steps
(values and gradients: params, initial state, inputs; both allocations; token ids), the
journal kernels against the plain decay, and the jaxpr: no [T, N, K] stack of link
values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dncjax
from dncjax.models import core, native, sparse
from dncjax.models.native import build
from tests.jaxprs import float_shapes

jax.config.update("jax_enable_x64", True)

pytestmark = pytest.mark.skipif(not build.compiler_found(),
                                reason="no C++ compiler ($CXX or c++): no native kernels")
N, K = 8, 3


@pytest.fixture(autouse=True)
def _native_kernel():
  native.select("native")  # the kernels at any N, so the tests stay small
  yield
  native.select(None)


def models(allocation="lru", inputs=5, **extra):
  """{link_history: the SDNC} for both settings, float64."""
  return {h: dncjax.make_model("sdnc", inputs, 4, hidden=6, memory_size=N, word_size=3,
                               read_heads=2, sparse_k=K, allocation=allocation,
                               dtype="float64", link_history=h, **extra)
          for h in (True, False)}


def loss_fn(model, xs, weights):
  def loss(params, states, xs):
    final, features = core.batch_unroll_features(model, params, states, xs)
    ys = core.readout(model, params, features, time_axes=2)
    links = final.access.link.value * weights[1] + final.access.link_t.value * weights[2]
    return (jnp.sum(jnp.tanh(ys) * weights[0]) + jnp.sum(links)
            + jnp.sum(final.access.memory ** 2) + jnp.sum(final.controller[0].h))
  return loss


def float_leaves(tree):
  """(path, leaf) of every leaf with a cotangent (not the float0 of integer leaves)."""
  return [(jax.tree_util.keystr(path), leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
          if leaf.dtype != jax.dtypes.float0]


@pytest.mark.parametrize("allocation", ["lru", "dnc"])
def test_gradients_equal_lax_scans(allocation):
  rng = np.random.default_rng(0)
  both = models(allocation)
  params = jax.jit(both[True].init)(jax.random.key(1))
  B, T = 3, 6
  warm = jnp.asarray(rng.normal(size=(B, 4, 5)))  # links and weights away from the empty start
  states, _ = core.batch_unroll(both[False], params, core.batch_initial_state(both[False], B),
                                warm)
  xs = jnp.asarray(rng.normal(size=(B, T, 5)))
  weights = tuple(jnp.asarray(rng.normal(size=s)) for s in ((B, T, 4), (B, N, K), (B, N, K)))
  grad = lambda h: jax.value_and_grad(loss_fn(both[h], xs, weights), argnums=(0, 1, 2),
                                      allow_int=True)
  got = jax.jit(grad(True))(params, states, xs)
  want = grad(False)(params, states, xs)
  assert both[True].scan is not None and both[False].scan is None
  np.testing.assert_allclose(got[0], want[0], rtol=1e-13)
  got_leaves, want_leaves = float_leaves(got[1]), float_leaves(want[1])
  assert [p for p, _ in got_leaves] == [p for p, _ in want_leaves]
  for (path, a), (_, b) in zip(got_leaves, want_leaves):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-11, err_msg=path)
  g_states = want[1][1].access
  for links in (g_states.link, g_states.link_t):  # the links' gradients are live
    assert float(jnp.max(jnp.abs(links.value))) > 1e-3


def test_token_inputs_have_lax_scans_gradients():
  rng = np.random.default_rng(1)
  both = models(inputs=7)
  params = jax.jit(both[True].init)(jax.random.key(2))
  B, T = 2, 5
  tokens = jnp.asarray(rng.integers(0, 7, size=(B, T)), jnp.int32)

  def loss(model):
    def of(params):
      states = core.batch_initial_state(model, B)
      final, features = core.batch_unroll_features(model, params, states, tokens)
      ys = core.readout(model, params, features, time_axes=2)
      return jnp.sum(jax.nn.log_softmax(ys)[..., 0]) + jnp.sum(final.access.link.value ** 2)
    return of

  got, want = jax.jit(jax.grad(loss(both[True])))(params), jax.grad(loss(both[False]))(params)
  for (path, a), (_, b) in zip(float_leaves(got), float_leaves(want)):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-11, err_msg=path)


def test_the_training_step_keeps_no_stack_of_link_values():
  B, T = 2, 5
  both = models()
  params = jax.jit(both[True].init)(jax.random.key(1))
  states = core.batch_initial_state(both[True], B)
  xs = jnp.ones((B, T, 5))
  weights = (jnp.ones((B, T, 4)), jnp.ones((B, N, K)), jnp.ones((B, N, K)))
  stacks, shapes = {}, {}
  for h, model in both.items():
    grad = jax.grad(loss_fn(model, xs, weights), allow_int=True)
    shapes[h] = float_shapes(jax.make_jaxpr(grad)(params, states, xs).jaxpr)
    # [N, K] arrays of several time steps: stacks of link values
    stacks[h] = {s for s in shapes[h] if s[-2:] == (N, K) and {T, T + 1} & set(s[:-2])}
  assert (T, B, N, K) in stacks[False], "lax.scan stacks the links: the check must see it"
  assert not stacks[True], stacks[True]
  assert (B, T * 2 * N * K) in shapes[True]  # the journal's room: each step's entries at most


def test_journal_kernels_equal_the_decay_and_put_every_step_back():
  rng = np.random.default_rng(5)
  B, T, Kw = 3, 2, K + 1
  V = jnp.asarray(rng.uniform(size=(B, 2, N, K)))
  J = jnp.asarray(np.stack([[rng.permutation(N)[:K] for _ in range(2 * N)]
                            for _ in range(B)]).reshape(B, 2, N, K), jnp.int32)
  s = jnp.asarray(np.stack([rng.permutation(N)[:Kw] for _ in range(B)]), jnp.int32)
  u = jnp.asarray(0.4 * rng.dirichlet(np.ones(Kw), size=B)).at[:, 0].set(0)  # a slot at 0
  rows1 = jnp.asarray(np.stack([rng.permutation(N)[:K] for _ in range(B)]), jnp.int32)
  V_, *journal = native.sparse_journal_start(V[:, 0], V[:, 1], T)
  np.testing.assert_array_equal(V_, V)
  V1_, journal, D0, J0, D1, J1 = jax.jit(native.sparse_journal_forward)(
      V_, J, tuple(journal), 0, s, u, s, rows1)
  decay = jax.vmap(jax.vmap(sparse._decay_rule, (0, 0, None, None)))  # each direction
  np.testing.assert_allclose(V1_, decay(V, J, s, u), rtol=0, atol=1e-15)
  take = jax.vmap(lambda a, i: a[i])
  np.testing.assert_array_equal(D0, take(V1_[:, 0], s))
  np.testing.assert_array_equal(J1, take(J[:, 1], rows1))
  named = jax.vmap(lambda J, s: jnp.isin(jnp.arange(N), s)[:, None] | jnp.isin(J, s))(J, s)
  np.testing.assert_array_equal(journal[2][:, 1], np.sum(named, axis=(1, 2, 3)))  # entries
  reads = rows1[:, :2]
  V2_, J2_, RV0, _, _, RJ1 = native.sparse_journal_set(V1_, J, s, rows1, 2 * D0,
                                                       J0[..., ::-1], D1, (J1 + 1) % N, reads)
  np.testing.assert_array_equal(take(V2_[:, 0], s), 2 * D0)  # the rows written in place
  np.testing.assert_array_equal(RV0, take(V2_[:, 0], reads))
  np.testing.assert_array_equal(RJ1, take(J2_[:, 1], reads))
  assert not np.array_equal(J2_, J)
  G = jnp.asarray(rng.normal(size=(B, 2, N, K)))
  zeros = jnp.zeros((B, 2, K))
  gV, gu, V_back, J_back = native.sparse_journal_backward(
      V2_, J2_, journal, 0, s, u, G, s, rows1, D0, D1, J0, J1, reads, zeros, zeros,
      take(G[:, 0], s), take(G[:, 1], rows1))  # G's rows as they are, nothing added
  np.testing.assert_array_equal(J_back, J)  # the step put back: slots and values
  np.testing.assert_allclose(V_back, V, rtol=0, atol=1e-15)
  want = jax.vmap(lambda V, J, s, u, G: jax.vjp(
      lambda v, u: decay(v[None], J[None], s[None], u[None])[0], V, u)[1](G))(V, J, s, u, G)
  np.testing.assert_allclose(gV, want[0], rtol=0, atol=1e-14)
  np.testing.assert_allclose(gu, want[1], rtol=0, atol=1e-13)
  with pytest.raises(Exception, match="t outside the journal"):
    jax.block_until_ready(native.sparse_journal_forward(V_, J, journal, T, s, u, s, rows1))


def test_remat_history_off_and_xla_keep_lax_scan():
  assert models(remat=True)[True].scan is None
  native.select("xla")
  both = models()
  params = jax.jit(both[True].init)(jax.random.key(1))
  states = core.batch_initial_state(both[True], 2)
  xs = jnp.ones((2, 3, 5))
  weights = (1.0, 1.0, 1.0)
  grad = jax.grad(loss_fn(both[True], xs, weights), allow_int=True)
  assert "ffi_call" not in str(jax.make_jaxpr(grad)(params, states, xs))


def test_a_journal_too_large_for_int32_places_keeps_lax_scan():
  from dncjax.models import sdnc  # pylint: disable=import-outside-toplevel
  links = lambda n, k: tuple(sparse.SparseWeights(jax.ShapeDtypeStruct((n, k), jnp.int32),
                                                  jax.ShapeDtypeStruct((n, k), jnp.float32))
                             for _ in range(2))
  assert sdnc._LINKS.usable(links(65_536, 8), 20)
  assert not sdnc._LINKS.usable(links(2**20, 32), 32)  # 2^31 places: lax.scan's rule
