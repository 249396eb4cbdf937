"""models.native: the CPU link kernel against links.xla_link_step (values and gradients,
batched, in a scan, inside the DNC), the sparse links' decay kernel against
sparse._decay_rule (values and gradients, batched, several at once split over threads,
inside the SDNC), the choice of implementation, and a build from an empty cache (and one that
fails) in a fresh process."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dncjax
from dncjax.models import addressing, core, links, native, sparse
from dncjax.models.native import build

jax.config.update("jax_enable_x64", True)

# Without a C++ compiler the kernel cannot exist here (the DNC then runs XLA's step, which
# the last test checks); with one, every test below must build and run it.
needs_compiler = pytest.mark.skipif(not build.compiler_found(),
                                    reason="no C++ compiler ($CXX or c++)")


@pytest.fixture(autouse=True)
def _restore_selection():
  yield
  native.select(None)


def inputs(rng, lead=(), N=9, R=3, dtype=jnp.float64):
  L = rng.uniform(size=lead + (N, N))
  w = 0.9 * rng.dirichlet(np.ones(N), size=lead)
  p = 0.8 * rng.dirichlet(np.ones(N), size=lead)
  v = rng.dirichlet(np.ones(N), size=lead + (R,))
  return tuple(jnp.asarray(a, dtype) for a in (L, w, p, v))


def cotangents(rng, lead=(), N=9, R=3, dtype=jnp.float64):
  return tuple(jnp.asarray(rng.normal(size=lead + s), dtype)
               for s in ((N, N), (R, N), (R, N)))


def batched(fn, depth):
  for _ in range(depth):
    fn = jax.vmap(fn)
  return fn


@needs_compiler
@pytest.mark.parametrize("dtype,atol", [(jnp.float64, 1e-12), (jnp.float32, 2e-5)])
@pytest.mark.parametrize("lead", [(), (5,), (2, 3)])  # one example; vmap; vmap of vmap
def test_values_and_gradients_equal_the_xla_step(dtype, atol, lead):
  rng = np.random.default_rng(len(lead))
  args = inputs(rng, lead, dtype=dtype)
  want, want_vjp = jax.vjp(batched(links.xla_link_step, len(lead)), *args)
  got, got_vjp = jax.vjp(batched(native.link_step, len(lead)), *args)
  for a, b in zip(want, got):
    assert b.dtype == a.dtype
    np.testing.assert_allclose(b, a, rtol=0, atol=atol)
  g = cotangents(rng, lead, dtype=dtype)
  for a, b in zip(want_vjp(g), got_vjp(g)):
    np.testing.assert_allclose(b, a, rtol=0, atol=atol * 10)


@needs_compiler
@pytest.mark.parametrize("dtype,atol", [(jnp.float64, 1e-12), (jnp.float32, 2e-5)])
@pytest.mark.parametrize("R", [3, 4, 5])  # row blocks for R <= 4, rows one by one above
def test_large_link_matrices_take_the_xla_steps_values_and_gradients(dtype, atol, R):
  """N = 523: the backward pass's row blocks (from N = 512) and a tail of columns that
  fills no vector."""
  rng = np.random.default_rng(R)
  args = inputs(rng, (2,), N=523, R=R, dtype=dtype)
  want, want_vjp = jax.vjp(jax.vmap(links.xla_link_step), *args)
  got, got_vjp = jax.vjp(jax.vmap(native.link_step), *args)
  for a, b in zip(want, got):
    np.testing.assert_allclose(b, a, rtol=0, atol=atol)
  g = cotangents(rng, (2,), N=523, R=R, dtype=dtype)
  for a, b in zip(want_vjp(g), got_vjp(g)):
    np.testing.assert_allclose(b, a, rtol=0, atol=atol * 100 * max(1, float(jnp.max(abs(a)))))


@needs_compiler
def test_large_batches_split_over_threads_give_the_same_numbers():
  rng = np.random.default_rng(3)
  args = inputs(rng, (16,), N=160, R=4)  # 16 x 160^2 entries: above the threading size
  want, want_vjp = jax.vjp(jax.vmap(links.xla_link_step), *args)
  got, got_vjp = jax.jit(lambda *a: jax.vjp(jax.vmap(native.link_step), *a))(*args)
  for a, b in zip(want, got):
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-12)
  g = cotangents(rng, (16,), N=160, R=4)
  for a, b in zip(want_vjp(g), got_vjp(g)):
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-10)


@needs_compiler
def test_a_scan_of_it_has_the_xla_steps_gradient():
  rng = np.random.default_rng(4)
  steps = [inputs(rng, (2,), N=6, R=2) for _ in range(5)]
  xs = tuple(jnp.stack([s[i] for s in steps]) for i in (1, 2, 3))

  def loss(fn, L0, xs):
    def body(L, x):
      new, f, b = fn(L, *x)
      return new, jnp.sum(jnp.sin(f)) + jnp.sum(b ** 2)
    L, ys = jax.lax.scan(body, L0, xs)
    return jnp.sum(ys) + jnp.sum(L * L)

  want = jax.grad(lambda *a: loss(jax.vmap(links.xla_link_step), *a), (0, 1))(steps[0][0], xs)
  got = jax.grad(lambda *a: loss(jax.vmap(native.link_step), *a), (0, 1))(steps[0][0], xs)
  for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-11)


# ----- the sparse links' decay ----------------------------------------------------------------

def decay_inputs(rng, lead=(), N=11, K=3, Kw=4, dtype=jnp.float64):
  """Link values and slots [..., N, K] and w^w_t's Kw distinct slots and values, the
  written slots also among the entries' slots (both terms of the decay at work)."""
  value = jnp.asarray(rng.uniform(size=lead + (N, K)), dtype)
  written = rng.permuted(np.broadcast_to(np.arange(N), lead + (N,)), axis=-1)[..., :Kw]
  index = rng.integers(0, N, size=lead + (N, K))
  index[..., :Kw, 0] = written  # rows 0 .. Kw-1 point at the written slots
  written_value = jnp.asarray(rng.dirichlet(np.ones(Kw), size=lead) * 0.9, dtype)
  return value, jnp.asarray(index, jnp.int32), jnp.asarray(written, jnp.int32), written_value


def decay_vjp(fn, args, lead):
  value, index, written, written_value = args
  return jax.vjp(lambda v, u: batched(fn, len(lead))(v, index, written, u), value,
                 written_value)


@needs_compiler
@pytest.mark.parametrize("dtype,atol", [(jnp.float64, 1e-12), (jnp.float32, 2e-5)])
@pytest.mark.parametrize("lead", [(), (5,), (2, 3)])
def test_sparse_decay_values_and_gradients_equal_the_xla_form(dtype, atol, lead):
  rng = np.random.default_rng(10 + len(lead))
  args = decay_inputs(rng, lead, dtype=dtype)
  want, want_vjp = decay_vjp(sparse._decay_rule, args, lead)
  got, got_vjp = decay_vjp(native.sparse_decay, args, lead)
  assert got.dtype == want.dtype
  np.testing.assert_allclose(got, want, rtol=0, atol=atol)
  g = jnp.asarray(rng.normal(size=want.shape), dtype)
  for a, b in zip(want_vjp(g), got_vjp(g)):
    assert float(jnp.max(jnp.abs(a))) > 0.1  # both cotangents are in play
    np.testing.assert_allclose(b, a, rtol=0, atol=atol * 10)


AT_ONCE = """
import jax, jax.numpy as jnp
import dncjax
from dncjax.models import core, native
model = dncjax.make_model("sdnc", 8, 8, hidden=16, memory_size=4096, word_size=4,
                          read_heads=2, sparse_k=8)
params = model.init(jax.random.key(0))
xs = jax.random.normal(jax.random.key(1), (16, 3, 8))
def loss(params):  # 16 x 4096 x 8 link entries per kernel call: above the threading size
  _, ys = core.batch_unroll(model, params, core.batch_initial_state(model, 16), xs)
  return jnp.sum(jnp.tanh(ys) * xs)
native.select("native")
step = jax.jit(jax.grad(loss))
grads = [jax.block_until_ready(step(params)) for _ in range(10)]
leaves = [jax.tree.leaves(g) for g in grads]
print(all(bool(jnp.all(jnp.isfinite(a))) for a in leaves[0]),
      max(float(jnp.max(jnp.abs(a - b))) for other in leaves for a, b in zip(leaves[0], other)))
"""


@needs_compiler
def test_kernels_that_run_at_once_and_split_over_threads_finish():
  """The SDNC's two link directions decay in kernels that XLA may run on the pool's
  threads at once, each splitting its lanes over the pool: ten gradient steps finish
  (none waits for a task that another kernel's thread holds: a kernel that waited for
  the tasks it scheduled would hang here within the ten), finite and equal. In a
  process of its own, so that a hang fails the test rather than stalling the run."""
  done = subprocess.run([sys.executable, "-c", AT_ONCE], capture_output=True, text=True,
                        timeout=300, check=False)
  assert done.returncode == 0, done.stderr
  assert done.stdout.split() == ["True", "0.0"], done.stdout


def _dnc_loss_and_grad(kind, name="dnc", **extra):
  native.select(kind)
  model = dncjax.make_model(name, 5, 5, hidden=12, memory_size=8, word_size=4,
                            read_heads=2, dtype="float64", **extra)
  params = model.init(jax.random.key(0))
  xs = jax.random.normal(jax.random.key(1), (3, 7, 5), jnp.float64)

  def loss(params):
    _, ys = core.batch_unroll(model, params, core.batch_initial_state(model, 3), xs)
    return jnp.sum(jnp.tanh(ys) * xs)

  jitted = jax.jit(jax.value_and_grad(loss))
  return jitted(params), str(jax.make_jaxpr(jitted)(params))


@needs_compiler
@pytest.mark.parametrize("name, extra", [("dnc", {}), ("sdnc", {"sparse_k": 3})])
def test_the_dnc_trains_with_either_step_to_float_rounding(name, extra):
  (loss_xla, grad_xla), jaxpr_xla = _dnc_loss_and_grad("xla", name, **extra)
  (loss_native, grad_native), jaxpr_native = _dnc_loss_and_grad("native", name, **extra)
  assert "ffi_call" in jaxpr_native and "ffi_call" not in jaxpr_xla
  np.testing.assert_allclose(loss_native, loss_xla, rtol=1e-12)
  for a, b in zip(jax.tree.leaves(grad_xla), jax.tree.leaves(grad_native)):
    np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)


@needs_compiler
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("shape", [(7,), (3, 40), (2, 3, 9), (64, 512)])  # (64, 512): threads
def test_argsort_is_xlas_stable_argsort(dtype, shape):
  rng = np.random.default_rng(shape[-1])
  keys = rng.integers(-3, 4, size=shape) / 4  # many ties
  keys.flat[::5] = rng.normal(size=keys.flat[::5].shape)
  keys.flat[1] = np.inf
  keys.flat[2] = -np.inf
  keys = jnp.asarray(keys, dtype)
  want = jnp.argsort(keys, axis=-1, stable=True)
  got = jax.jit(native.argsort)(keys)
  assert got.dtype == jnp.int32 and got.shape == keys.shape
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(batched(native.argsort, len(shape) - 1)(keys), want)


@needs_compiler
def test_the_allocation_sorted_by_the_kernel_has_xlas_values_and_gradients():
  rng = np.random.default_rng(9)
  usage = jnp.asarray(rng.uniform(size=(4, 200)))
  usage = usage.at[:, 5].set(usage[:, 7])  # a tie
  weights = jnp.asarray(rng.normal(size=(4, 200)))

  results = {}
  for kind in ("native", "xla"):
    native.select(kind)

    def loss(u):  # a new function per kind: JAX caches traces by function
      return jnp.sum(jax.vmap(lambda u: addressing.allocation_weights(u, by_ranks=False))(u)
                     * weights)

    jaxpr = str(jax.make_jaxpr(loss)(usage))
    results[kind] = jax.value_and_grad(loss)(usage), "ffi_call" in jaxpr
  assert results["native"][1] and not results["xla"][1]
  (value, grad), (value_xla, grad_xla) = results["native"][0], results["xla"][0]
  np.testing.assert_array_equal(value, value_xla)
  np.testing.assert_array_equal(grad, grad_xla)


@needs_compiler
def test_auto_leaves_small_memories_and_other_dtypes_to_xla(monkeypatch):
  monkeypatch.delenv(native.VARIABLE, raising=False)
  assert native.kind() == "auto"
  assert native.usable(jnp.float32, native.AUTO_MIN_SIZE)
  assert native.usable(jnp.float64, 1024)
  assert not native.usable(jnp.float32, native.AUTO_MIN_SIZE - 1)
  assert not native.usable(jnp.bfloat16, 1024)
  native.select("native")
  assert native.usable(jnp.float32, 4)
  native.select("xla")
  assert not native.usable(jnp.float32, 1024)


def test_a_bad_choice_is_refused_by_name(monkeypatch):
  with pytest.raises(ValueError, match="auto, native, xla"):
    native.select("fast")
  monkeypatch.setenv(native.VARIABLE, "fast")
  with pytest.raises(ValueError, match=native.VARIABLE):
    native.kind()


SCRIPT = """
import os, jax, jax.numpy as jnp
from dncjax.models import links, native
from dncjax.training import compile_cache
compile_cache.enable(out=lambda line: None)  # the second process loads the compiled step
native.select(KIND)
L = jnp.ones((64, 64)); w = p = jnp.full((64,), 0.01); v = jnp.full((2, 64), 1 / 64)
print("native" if native.usable(L.dtype, 64) else "xla")
f = jax.jit(jax.value_and_grad(lambda L: jnp.sum(links.link_step(L, w, p, v)[1])))
print("%.2f %.4f" % (float(f(L)[0]), float(jnp.sum(f(L)[1]))))
print(len(os.listdir(compile_cache.cache_dir())) > 0)
"""


def _run(tmp_path, kind, **env):
  environ = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), **env}
  for name in (native.VARIABLE, "DNCJAX_CACHE_DIR", "DNCJAX_COMPILE_CACHE"):
    environ.pop(name, None)
  return subprocess.run([sys.executable, "-c", f"KIND = {kind!r}\n" + SCRIPT], env=environ,
                        capture_output=True, text=True, timeout=600, check=False)


@needs_compiler
def test_an_empty_cache_builds_the_library_and_a_second_process_loads_it(tmp_path):
  for _ in range(2):
    done = _run(tmp_path, "auto")
    assert done.returncode == 0, done.stderr
    # sum f = 128 x 63 x 0.9801 / 64; d/dL[i, j] = 2 x 0.98 / 64 off the diagonal
    assert done.stdout.split() == ["native", "123.49", "123.4800", "True"], done.stdout
    assert done.stderr == ""
  assert len(list((tmp_path / "cache" / "dncjax" / "native").glob("*.so"))) == 1


def test_a_failed_build_falls_back_to_xla_with_one_message_or_is_an_error(tmp_path):
  done = _run(tmp_path, "auto", CXX="false")
  assert done.returncode == 0, done.stderr
  assert done.stdout.split() == ["xla", "123.49", "123.4800", "True"]
  assert done.stderr.count("native link kernel is not used") == 1
  assert ("compiling link_kernel.cc, access_kernel.cc, sparse_link_kernel.cc, "
          "sparse_journal_kernel.cc, content_kernel.cc, sort_kernel.cc failed") in done.stderr
  done = _run(tmp_path, "native", CXX="false")
  assert done.returncode != 0 and "BuildError" in done.stderr
