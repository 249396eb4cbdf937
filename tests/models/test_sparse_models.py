"""dncjax.models.sam and dncjax.models.sdnc: the SDNC at K = N with the DNC's allocation is
the dense DNC, SAM's access step against its equations by hand, no [N, N] array in any
jaxpr, no [N, W] memory kept per step for the backward pass, finite values and gradients
from the empty memory, gradients against central differences, and the tasks job's exact
resume (float64)."""

import json
import pathlib
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dncjax
from dncjax.models import core, native, sam, sparse
from dncjax.training import gradcheck

jax.config.update("jax_enable_x64", True)

I, O, H, W, R = 3, 2, 5, 3, 2
RNG = np.random.default_rng(3)
REPO = pathlib.Path(__file__).resolve().parents[2]
MODELS = {"sam": ("sam", {}), "sdnc": ("sdnc", {}), "sdnc_dnc": ("sdnc", {"allocation": "dnc"})}


def tiny(name, N=6, K=2, **overrides):
  hyper = dict(hidden=H, memory_size=N, word_size=W, read_heads=R, sparse_k=K, init_scale=0.5,
               dtype="float64")
  return dncjax.make_model(name, I, O, **{**hyper, **overrides})


def loss_of(model, xs_BxTxI):
  """sum(sin(y)) over a batch unrolled from the initial state."""
  def loss(params):
    states = core.batch_initial_state(model, xs_BxTxI.shape[0])
    return jnp.sum(jnp.sin(core.batch_unroll(model, params, states, xs_BxTxI)[1]))
  return loss


# ----- configs -------------------------------------------------------------------------------

def test_configs_are_checked_and_registered():
  assert {"sam", "sdnc"} <= set(dncjax.model_names())
  assert tiny("sdnc").config.allocation == "lru" and tiny("sam").config.sparse_k == 2
  for name, bad, message in [
      ("sam", dict(K=7), r"sparse_k must be at most memory_size \(6\), got 7"),
      ("sdnc", dict(K=0), "sparse_k must be a positive integer, got 0"),
      ("sdnc", dict(allocation="sort"), "allocation must be one of lru, dnc, got 'sort'"),
      ("sam", dict(access_threshold=1.0), r"access_threshold must be in \[0, 1\), got 1.0")]:
    with pytest.raises(ValueError, match=message):
      tiny(name, **bad)


# ----- K = N: the dense DNC ----------------------------------------------------------------

def test_sdnc_at_k_n_with_the_dncs_allocation_is_the_dense_dnc():
  """Same params, same inputs: the outputs and every part of the state agree (the SDNC's
  sparse state scattered back to [N] and [N, N])."""
  N, T = 5, 7
  dense = dncjax.make_model("dnc", I, O, hidden=H, memory_size=N, word_size=W, read_heads=R,
                            init_scale=0.5, dtype="float64")
  sparse_dnc = tiny("sdnc", N=N, K=N, allocation="dnc")
  params = dense.init(jax.random.key(2))
  same = sparse_dnc.init(jax.random.key(2))
  assert all(np.array_equal(params[k], same[k]) for k in params) and set(params) == set(same)
  params["bi"] = jnp.asarray(RNG.normal(size=params["bi"].shape))  # gates away from 1/2
  xs = jnp.asarray(RNG.normal(size=(T, I)))
  run = lambda m: jax.jit(lambda p: core.unroll(m, p, m.initial_state(), xs))(params)
  (want_state, want_ys), (got_state, got_ys) = run(dense), run(sparse_dnc)
  tol = dict(rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(got_ys, want_ys, **tol)
  want, got = want_state.access, got_state.access
  for name in ("memory", "usage", "read_vectors"):
    np.testing.assert_allclose(getattr(got, name), getattr(want, name), **tol)
  for name in ("precedence", "read_weights", "write_weights", "link"):
    np.testing.assert_allclose(sparse.to_dense(getattr(got, name), N), getattr(want, name), **tol)
  np.testing.assert_allclose(sparse.to_dense(got.link_t, N), want.link.T, **tol)
  assert np.abs(want.link).max() > 1e-3  # the links were exercised


# ----- SAM's step by hand ----------------------------------------------------------------------

def sam_by_hand(memory, usage, reads_prev, interface, K, delta):
  """SAM's access step from the paper's equations, dense NumPy."""
  N = memory.shape[0]
  lru = int(np.argmax(usage))
  mean = reads_prev.mean(0)
  kept = np.where(mean >= np.sort(mean)[-K], mean, 0)  # the top K (values distinct)
  gamma, alpha = interface.interpolation_gate, interface.write_gate
  write = alpha * (gamma * kept + (1 - gamma) * np.eye(N)[lru])
  memory = memory.copy()
  memory[lru] = 0
  memory += np.outer(write, interface.write_vector)
  keys = np.asarray(interface.read_keys)
  cos = (keys @ memory.T) / (np.sqrt((keys ** 2).sum(1) + 1e-6)[:, None]
                            * np.sqrt((memory ** 2).sum(1) + 1e-6)[None, :])
  scores = np.asarray(interface.read_strengths)[:, None] * cos
  top = np.sort(scores, axis=1)[:, -K:][:, :1]
  reads = np.where(scores >= top, np.exp(scores), 0)
  reads /= reads.sum(1, keepdims=True)
  accessed = write + reads.sum(0) > delta
  return memory, write, reads, np.where(accessed, 0, usage + 1), reads @ memory


def test_sam_access_step_is_the_papers():
  N, K, delta = 6, 2, 0.05
  memory = RNG.normal(size=(N, W))
  usage = jnp.array([3, 0, 7, 1, 2, 0], jnp.int32)  # slot 2 is the least recently used
  reads_prev = np.zeros((R, N))
  reads_prev[0, [1, 4]], reads_prev[1, [4, 5]] = [0.6, 0.4], [0.5, 0.3]  # mean: 4, then 1
  xi = jnp.asarray(RNG.normal(size=sam.interface_size(W, R)))
  interface = sam.parse_interface(xi, W, R)
  state = sam.SAMAccessState(jnp.asarray(memory), usage, sparse.compact_rows(
      jnp.tile(jnp.arange(N, dtype=jnp.int32), (R, 1)), jnp.asarray(reads_prev), K),
      sparse.empty((), K + 1, jnp.float64), jnp.zeros((R, W)))
  got = jax.jit(lambda s, i: sam.access_step(s, i, threshold=delta, norm_eps=1e-6))(
      state, interface)
  want = sam_by_hand(memory, np.asarray(usage), reads_prev, interface, K, delta)
  np.testing.assert_allclose(got.memory, want[0], rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(sparse.to_dense(got.write_weights, N), want[1], rtol=1e-12,
                             atol=1e-15)
  np.testing.assert_allclose(sparse.to_dense(got.read_weights, N), want[2], rtol=1e-12,
                             atol=1e-15)
  np.testing.assert_array_equal(got.usage, want[3])
  np.testing.assert_allclose(got.read_vectors, want[4], rtol=1e-12, atol=1e-12)
  assert np.all(np.asarray(got.memory[2]) == want[1][2] * np.asarray(interface.write_vector))


def test_lru_writes_go_to_the_slot_accessed_longest_ago():
  """Zero read keys score every slot alike, so the reads take slots 0 and 1 (ties to the
  lower slot) at every step; the writes, all to the LRU slot, go to 0 (all slots equally
  old at first), then 2, 3, 4 and then 2 again, the one accessed longest ago."""
  N = 5
  state = sam.initial_access_state(N, W, R, 2, jnp.float64)
  raw = np.zeros(sam.interface_size(W, R))
  raw[R * W + R:R * W + R + W] = 1.0         # a_t
  raw[R * W + R + W:] = [-30.0, 30.0]        # gamma ~ 0 (the LRU slot), alpha ~ 1
  interface = sam.parse_interface(jnp.asarray(raw), W, R)
  step = jax.jit(lambda s: sam.access_step(s, interface, threshold=0.005, norm_eps=1e-6))
  slots = []
  for _ in range(N):
    state = step(state)
    dense = np.asarray(sparse.to_dense(state.write_weights, N))
    slots.append(int(np.argmax(dense)))
    assert dense.max() > 0.99
  assert slots == [0, 2, 3, 4, 2]


# ----- no [N, N] -----------------------------------------------------------------------------

def jaxpr_shapes(jaxpr, primitives):
  """Every array shape in a (closed) jaxpr and, recursively, its sub-jaxprs (scan, remat,
  jit, custom derivative rules, ...); the primitives met are added to `primitives`."""
  jaxpr = jaxpr.jaxpr if hasattr(jaxpr, "consts") else jaxpr
  for var in (*jaxpr.invars, *jaxpr.constvars, *jaxpr.outvars):
    yield getattr(getattr(var, "aval", None), "shape", ())
  for eqn in jaxpr.eqns:
    primitives.add(eqn.primitive.name)
    for var in (*eqn.invars, *eqn.outvars):
      yield getattr(getattr(var, "aval", None), "shape", ())
    for param in eqn.params.values():
      for sub in (param if isinstance(param, (tuple, list)) else (param,)):
        if hasattr(sub, "eqns") or (hasattr(sub, "jaxpr") and hasattr(sub, "consts")):
          yield from jaxpr_shapes(sub, primitives)


def square_shapes(model, N):
  """The shapes with two axes of size N in the jaxprs of init, step and the gradient of a
  jitted batched unroll; and the primitives walked."""
  params = model.init(jax.random.key(0))
  xs = jnp.ones((2, 3, I), model.config.dtype)
  primitives, shapes = set(), []
  for closed in (jax.make_jaxpr(model.init)(jax.random.key(0)),
                 jax.make_jaxpr(model.step)(params, model.initial_state(), xs[0, 0]),
                 jax.make_jaxpr(jax.jit(jax.grad(loss_of(model, xs))))(params)):
    shapes += [s for s in jaxpr_shapes(closed, primitives) if list(s).count(N) >= 2]
  return shapes, primitives


@pytest.mark.parametrize("name", sorted(MODELS))
def test_no_array_has_two_axes_of_size_n(name):
  N = 13  # no other size is 13 (interfaces 19, 25, 38; 4H 20; K, K+1, K^2, R K ...)
  model_name, extra = MODELS[name]
  primitives = set()
  for remat in (False, True):  # True: the walk goes inside jax.checkpoint's jaxpr as well
    shapes, walked = square_shapes(tiny(model_name, N=N, K=3, remat=remat, **extra), N)
    assert not shapes, (remat, shapes)
    primitives |= walked
  assert {"scan", "jit", "top_k"} <= primitives, primitives  # walked inside them
  assert primitives & {"remat2", "checkpoint"}, primitives


def test_the_dense_dnc_shows_its_n_by_n_arrays():
  dense = dncjax.make_model("dnc", I, O, hidden=H, memory_size=13, word_size=W, read_heads=R)
  shapes, _ = square_shapes(dense, 13)
  assert (13, 13) in shapes


@pytest.mark.parametrize("name, per_slot", [("sam", lambda K: 0), ("sdnc", lambda K: 4 * K)])
def test_training_keeps_no_memory_rows_per_step(name, per_slot, monkeypatch):
  """What the forward pass keeps for the backward pass (the vjp's residuals), without
  remat: no [N, W] memory per step (the content reads keep their K gathered rows); only
  the SDNC's two link arrays (values and indices: 4 K per slot; their decay compares the
  indices with w^w_t's K slots, so w^w_t dense is not kept). With remat each step's whole
  state is kept instead, memory included. With XLA's steps, differentiated by lax.scan
  (the SDNC's journal with the kernels: tests/models/test_sparse_history.py)."""
  monkeypatch.setenv(native.VARIABLE, "xla")
  N, K, T, B = 17, 2, 4, 2  # 17: no other size is 17 (interfaces 13, 19; W 3; H 5)
  xs = jnp.ones((B, T, I))

  def kept_per_step_and_slot(remat):
    model = tiny(name, N=N, K=K, remat=remat)
    residuals = jax.tree.leaves(jax.eval_shape(  # traced, not run
        lambda params: jax.vjp(loss_of(model, xs), params)[1], model.init(jax.random.key(0))))
    return [r.shape for r in residuals if N in r.shape], sum(
        r.size for r in residuals if N in r.shape and r.shape[:2] == (T, B)) / (T * B * N)

  shapes, per_step = kept_per_step_and_slot(remat=False)
  assert per_step == per_slot(K), shapes
  assert not [s for s in shapes if s[-1:] == (W,) or s[-2:] == (W, N)], shapes
  shapes, per_step = kept_per_step_and_slot(remat=True)
  assert (T, B, N, W) in shapes and per_step > per_slot(K), shapes


# ----- gradients ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MODELS))
def test_finite_forward_and_backward_from_the_empty_memory(name):
  model_name, extra = MODELS[name]
  model = tiny(model_name, **extra)
  params = model.init(jax.random.key(1))
  xs = jnp.asarray(RNG.normal(size=(3, I)))
  loss = lambda p: jnp.sum(jnp.sin(core.unroll(model, p, model.initial_state(), xs)[1]))
  value, grads = jax.jit(jax.value_and_grad(loss))(params)
  assert np.isfinite(value)
  for key, grad in grads.items():
    assert np.all(np.isfinite(grad)), key


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_gradients_match_central_differences(name):
  model_name, extra = MODELS[name]
  model = dncjax.make_model(model_name, 6, 6, hidden=5, memory_size=6, word_size=3,
                            read_heads=2, sparse_k=2, init_scale=0.5, dtype="float64", **extra)
  rows = gradcheck.check_model(model, batch_size=2, seq_length=6, num_checks=4)
  assert {r.name for r in rows} == set(model.init(jax.random.key(0)))
  ok, reason = gradcheck.verdict(rows, 1e-4)
  assert ok, reason + "\n" + gradcheck.format_table(rows)


# ----- the tasks job -----------------------------------------------------------------------------

def tasks_script():
  spec = importlib.util.spec_from_file_location("tasks_script", REPO / "experiments" / "tasks.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.slow
def test_tasks_job_trains_and_resumes_exactly(tmp_path):
  script = tasks_script()
  tiny_run = ["--model", "sdnc", "--hidden", "6", "--memory_size", "6", "--word_size", "3",
              "--read_heads", "1", "--sparse_k", "2", "--bits", "3", "--max_length", "3",
              "--batchsize", "2", "--eval_sequences", "2", "--eval_length", "4",
              "--report_interval", "1", "--eval_every", "2", "--optimizer", "adam", "--lr",
              "0.01", "--fp64"]
  straight, split = tmp_path / "straight", tmp_path / "split"
  script.main(["--workdir", str(straight), *tiny_run, "--steps", "4"])
  script.main(["--workdir", str(split), *tiny_run, "--steps", "2"])
  script.main(["--workdir", str(split), *tiny_run, "--steps", "4", "--resume"])

  def log(workdir):
    rows = map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())
    return [(r["step"], r.get("train_loss"), r.get("eval_loss")) for r in rows]

  assert log(straight) == log(split) and len(log(straight)) >= 4
  from dncjax.tasks import job  # pylint: disable=import-outside-toplevel
  a, b = job.restore(straight), job.restore(split)
  assert a[3] == b[3] == 4 and a[0].config.sparse_k == 2
  assert all(np.array_equal(a[1][k], b[1][k]) for k in a[1])
