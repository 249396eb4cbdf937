"""models.native.access: the write and read kernels against addressing's XLA operations
(values and gradients; float64 and float32; one example, vmapped, vmap of vmap; ties in
the usage; sorted and by-ranks allocation sizes), lanes split over threads, the DNC's
gradients with and without them, when `access_step` uses them, and a size mismatch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dncjax
from dncjax.models import access, addressing, core, native
from dncjax.models.native import access as kernels
from dncjax.models.native import build

jax.config.update("jax_enable_x64", True)

pytestmark = pytest.mark.skipif(not build.compiler_found(),
                                reason="no C++ compiler ($CXX or c++): no access kernels")
EPS = {"norm_eps": 1e-6, "usage_eps": 1e-6}


@pytest.fixture(autouse=True)
def _restore_selection():
  yield
  native.select(None)


def interface(rng, lead, W, R, dtype):
  """A raw interface vector xi [..., X] (with link sharpness's 2 R values after the modes,
  which the kernels must skip)."""
  X = access.interface_size(W, R, link_sharpness=True)
  return jnp.asarray(rng.normal(size=lead + (X,)) * 1.5, dtype)


def write_inputs(rng, lead=(), N=9, W=4, R=3, dtype=jnp.float64):
  """(M, u, w^w, w^r, xi), slot 5 a copy of slot 7 (tied usage, equal rows)."""
  x = {"M": rng.uniform(size=lead + (N, W)) - 0.5, "u": rng.uniform(size=lead + (N,)),
       "ww": rng.uniform(size=lead + (N,)) / N, "wr": rng.uniform(size=lead + (R, N)) / N}
  for name in ("u", "ww", "wr"):
    x[name][..., 5] = x[name][..., 7]
  x["M"][..., 5, :] = x["M"][..., 7, :]
  return (*(jnp.asarray(a, dtype) for a in x.values()), interface(rng, lead, W, R, dtype))


def parsed(xi, W, R):
  return access.parse_interface(xi, W, R, link_sharpness=True)


def xla_write(M, u, ww, wr, xi):
  f = parsed(xi, M.shape[-1], wr.shape[-2])
  usage = addressing.usage_update(u, ww, f.free_gates, wr)
  allocation = addressing.allocation_weights(usage, usage_eps=EPS["usage_eps"])
  weights = addressing.write_weights(M, f.write_key, f.write_strength, allocation,
                                     f.allocation_gate, f.write_gate, norm_eps=EPS["norm_eps"])
  return usage, weights, addressing.write_memory(M, weights, f.erase, f.write_vector)


def kernel_write(*args):
  return kernels.write(*args, **EPS)


def read_inputs(rng, lead=(), N=9, W=4, R=3, dtype=jnp.float64):
  """(M, f, b, xi)."""
  M = rng.normal(size=lead + (N, W))
  f, b = (rng.dirichlet(np.ones(N), size=lead + (R,)) for _ in range(2))
  return (*(jnp.asarray(a, dtype) for a in (M, f, b)), interface(rng, lead, W, R, dtype))


def xla_read(M, f, b, xi):
  parts = parsed(xi, M.shape[-1], f.shape[-2])
  content = addressing.content_weights(M, parts.read_keys, parts.read_strengths,
                                       norm_eps=EPS["norm_eps"])
  weights = addressing.read_weights(content, f, b, parts.read_modes)
  return weights, addressing.read_memory(M, weights)


def kernel_read(*args):
  return kernels.read(*args, norm_eps=EPS["norm_eps"])


def batched(fn, depth):
  for _ in range(depth):
    fn = jax.vmap(fn)
  return fn


def values_and_vjp(fn, args, cotangents):
  """fn(*args) and its vjp of `cotangents`, as one compiled program (op-by-op dispatch of
  the XLA reference's many small operations costs more than compiling it once)."""
  def both(args, cotangents):
    values, vjp = jax.vjp(fn, *args)
    return values, vjp(cotangents)
  return jax.jit(both)(args, cotangents)


def assert_vjps_equal(want_fn, got_fn, args, rng, atol):
  shapes = jax.eval_shape(want_fn, *args)
  cotangents = tuple(jnp.asarray(rng.normal(size=a.shape), a.dtype) for a in shapes)
  want, want_grads = values_and_vjp(want_fn, args, cotangents)
  got, got_grads = values_and_vjp(got_fn, args, cotangents)
  for a, b in zip(want, got):
    np.testing.assert_allclose(b, a, rtol=0, atol=atol)
  for i, (a, b) in enumerate(zip(want_grads, got_grads)):
    np.testing.assert_allclose(b, a, rtol=0, atol=atol * max(1, float(jnp.max(jnp.abs(a)))),
                               err_msg=f"input {i}")


@pytest.mark.parametrize("dtype,atol", [(jnp.float64, 1e-12), (jnp.float32, 1e-5)])
@pytest.mark.parametrize("lead", [(), (5,), (2, 3)])  # one example; vmap; vmap of vmap
@pytest.mark.parametrize("N", [9, 200])  # XLA's allocation by ranks; by a sort
def test_the_write_kernel_has_the_xla_writes_values_and_gradients(dtype, atol, lead, N):
  rng = np.random.default_rng(N + len(lead))
  args = write_inputs(rng, lead, N=N, dtype=dtype)
  assert_vjps_equal(batched(xla_write, len(lead)), batched(kernel_write, len(lead)), args,
                    rng, atol)


@pytest.mark.parametrize("dtype,atol", [(jnp.float64, 1e-12), (jnp.float32, 1e-5)])
@pytest.mark.parametrize("lead", [(), (5,), (2, 3)])
def test_the_read_kernel_has_the_xla_reads_values_and_gradients(dtype, atol, lead):
  rng = np.random.default_rng(len(lead))
  args = read_inputs(rng, lead, N=70, dtype=dtype)
  assert_vjps_equal(batched(xla_read, len(lead)), batched(kernel_read, len(lead)), args,
                    rng, atol)


def test_many_lanes_split_over_threads_give_each_lanes_numbers():
  rng = np.random.default_rng(4)
  args = write_inputs(rng, (64,), N=128, W=16, R=4)
  whole = jax.jit(jax.vmap(kernel_write))(*args)
  alone = [jax.jit(kernel_write)(*(a[i] for a in args)) for i in (0, 37, 63)]
  for i, lane in zip((0, 37, 63), alone):
    for a, b in zip(whole, lane):
      np.testing.assert_array_equal(a[i], b)


def random_states(model, B, rng):
  """Access states away from ties (distinct usages): the allocation's order, and so each
  slot's weight, is then the same in both implementations."""
  states = core.batch_initial_state(model, B)
  N, W = states.access.memory.shape[1:]
  R = states.access.read_weights.shape[1]
  link = rng.uniform(size=(B, N, N)) / N * (1 - np.eye(N))
  a = states.access._replace(
      memory=rng.normal(size=(B, N, W)), usage=rng.uniform(size=(B, N)),
      link=link, precedence=rng.dirichlet(np.ones(N), size=B) * 0.5,
      read_weights=rng.dirichlet(np.ones(N), size=(B, R)),
      write_weights=rng.dirichlet(np.ones(N), size=B) * 0.5,
      read_vectors=rng.normal(size=(B, R, W)))
  return states._replace(access=jax.tree.map(jnp.asarray, a))


@pytest.mark.parametrize("extra", [{}, {"link_sharpness": True, "controller_layers": 2}])
def test_the_dncs_gradients_are_the_same_with_the_kernels(extra):
  model = dncjax.make_model("dnc", 5, 4, hidden=6, memory_size=70, word_size=3, read_heads=2,
                            dtype="float64", **extra)
  params = model.init(jax.random.key(1))
  rng = np.random.default_rng(2)
  states = random_states(model, 3, rng)
  xs = jnp.asarray(rng.normal(size=(3, 5, 5)))
  weights = jnp.asarray(rng.normal(size=(3, 5, 4)))
  results = {}
  for kind in ("native", "xla"):
    native.select(kind)

    def loss(params, states):  # a new function per kind: JAX caches traces by function
      final, ys = core.batch_unroll(model, params, states, xs)
      return (jnp.sum(jnp.tanh(ys) * weights) + jnp.sum(final.access.memory ** 2)
              + jnp.sum(final.access.usage * final.access.write_weights))

    jaxpr = str(jax.make_jaxpr(loss)(params, states))
    results[kind] = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, states), jaxpr
  assert "DncjaxAccessWrite" in results["native"][1]
  assert "DncjaxAccessRead" in results["native"][1]
  assert "DncjaxAccess" not in results["xla"][1]
  (got, got_grads), (want, want_grads) = results["native"][0], results["xla"][0]
  np.testing.assert_allclose(got, want, rtol=1e-12)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(want_grads),
                          jax.tree.leaves(got_grads)):
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-10 * max(1, float(jnp.max(jnp.abs(a)))),
                               err_msg=jax.tree_util.keystr(path))


def _step_jaxpr(N, **extra):
  model = dncjax.make_model("dnc", 3, 3, hidden=4, memory_size=N, word_size=2, read_heads=2,
                            **extra)
  params = model.init(jax.random.key(0))
  return str(jax.make_jaxpr(lambda p: core.batch_unroll(
      model, p, core.batch_initial_state(model, 2), jnp.ones((2, 3, 3), jnp.float32)))(params))


@pytest.mark.parametrize("extra, used", [({}, True), ({"key_masking": True}, False),
                                         ({"deallocate": True}, False),
                                         ({"access_kernels": False}, False)])
def test_the_step_uses_the_kernels_where_they_compute_it(extra, used):
  native.select("native")
  jaxpr = _step_jaxpr(8, **extra)
  assert ("DncjaxAccessWrite" in jaxpr) == used
  assert ("DncjaxAccessRead" in jaxpr) == used
  assert "DncjaxLink" in jaxpr  # the link kernel either way


def test_auto_uses_them_where_it_uses_the_link_kernel(monkeypatch):
  monkeypatch.delenv(native.VARIABLE, raising=False)
  for N, used in ((native.AUTO_MIN_SIZE, True), (native.AUTO_MIN_SIZE - 1, False)):
    jaxpr = _step_jaxpr(N)
    assert ("DncjaxAccessWrite" in jaxpr) == used and ("DncjaxLink" in jaxpr) == used
  native.select("xla")
  assert "DncjaxAccess" not in _step_jaxpr(native.AUTO_MIN_SIZE)


def test_inputs_of_mismatched_sizes_are_an_error():
  args = list(write_inputs(np.random.default_rng(0), N=9))
  args[1] = jnp.ones((10,))  # the usage: N + 1
  with pytest.raises(Exception, match="access: an input's size does not match M's"):
    jax.block_until_ready(kernel_write(*args))
  args = list(write_inputs(np.random.default_rng(0), N=9))
  args[4] = args[4][:20]  # xi: shorter than W R + 3 W + 5 R + 3 = 42
  with pytest.raises(Exception, match="access: xi must be"):
    jax.block_until_ready(kernel_write(*args))
