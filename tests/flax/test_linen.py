"""The linen cells: nn.RNN(cell) == core.batch_unroll (values and gradients) for every core,
packed episodes (seq_lengths, reset flags) == each episode alone, no recompiles, the params
round trip, nn.Bidirectional, the memory arrays, clear errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dncjax.flax import linen, memory
from dncjax.models import core

I, O, B, T = 3, 2, 2, 5
TINY = dict(hidden=4, init_scale=0.5)
DNC = dict(TINY, memory_size=4, word_size=3, read_heads=2)
CORES = {
    "rnn": ("rnn", TINY),
    "lstm": ("lstm", TINY),
    "seed_dnc_content": ("seed_dnc", dict(TINY, memory_size=4, word_size=3)),
    "seed_dnc_location": ("seed_dnc", dict(TINY, memory_size=4, word_size=3,
                                           addressing="location")),
    "dnc": ("dnc", DNC),
    "dnc_options": ("dnc", dict(DNC, controller_layers=2, controller_clip=2.0, deallocate=True,
                                link_sharpness=True, key_masking=True, variant="seed",
                                remat=False)),
}
NAMES = [pytest.param(n, marks=pytest.mark.slow) if "dnc" in n else n
         for n in sorted(CORES)]  # the DNCs compile for seconds: not in the fast subset
TOL = {"float64": dict(rtol=1e-12, atol=1e-12), "float32": dict(rtol=1e-6, atol=1e-6)}


def make_cell(name, dtype="float64", **extra):
  model_name, hyper = CORES[name]
  return linen.cell(model_name, I, O, **{**hyper, "dtype": dtype}, **extra)


def inputs(dtype="float64", shape=(B, T, I), seed=1):
  return jax.random.normal(jax.random.key(seed), shape, dtype)


def close(a, b, tol=TOL["float64"]):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(x, y, **tol)


def reference(cell, params, xs):
  """core.batch_unroll from the initial state (jitted: the tests run compiled code)."""
  m = cell.model
  run = lambda p, x: core.batch_unroll(m, p, core.batch_initial_state(m, x.shape[0]), x)
  return jax.jit(run)(params, xs)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", NAMES)
def test_rnn_of_the_cell_equals_batch_unroll(name, dtype):
  cell = make_cell(name, dtype)
  xs = inputs(dtype)
  rnn = nn.RNN(cell, return_carry=True)
  variables = rnn.init(jax.random.key(0), xs)
  params = linen.core_params(cell.config, variables, ("cell",))
  assert all(p.dtype == jnp.dtype(dtype) for p in params.values())
  close(rnn.apply(variables, xs), reference(cell, params, xs), TOL[dtype])


@pytest.mark.parametrize("name", NAMES)
def test_gradients_equal_those_of_batch_unroll(name):
  cell = make_cell(name)
  xs, rnn = inputs(), nn.RNN(cell)
  variables = rnn.init(jax.random.key(0), xs)
  params = linen.core_params(cell.config, variables, ("cell",))
  loss = lambda ys: jnp.sum(jnp.sin(ys))
  g_cell = jax.jit(jax.grad(lambda v: loss(rnn.apply(v, xs))))(variables)
  g_core = jax.jit(jax.grad(lambda p: loss(reference(cell, p, xs)[1])))(params)
  close(linen.core_params(cell.config, g_cell, ("cell",)), g_core)


@pytest.mark.parametrize("name", ["lstm", pytest.param("dnc", marks=pytest.mark.slow)])
def test_packed_episodes_and_seq_lengths_equal_each_episode_alone(name):
  # Given lane 0: episode A (3 steps) then B (4 steps), a reset flag at B's first step;
  # lane 1: episode C (5 steps) padded to 7, seq_lengths [7, 5]
  cell = make_cell(name, reset_input=True)
  a, b, c = inputs(shape=(3, I), seed=2), inputs(shape=(4, I), seed=3), inputs(shape=(5, I), seed=4)
  lane0 = jnp.concatenate([a, b])
  lane1 = jnp.concatenate([c, jnp.zeros((2, I))])
  flags = jnp.zeros((2, 7, 1)).at[0, 3].set(1.0)
  xs = jnp.concatenate([jnp.stack([lane0, lane1]), flags], -1)
  rnn = nn.RNN(cell, return_carry=True)
  variables = rnn.init(jax.random.key(0), xs)
  final, ys = rnn.apply(variables, xs, seq_lengths=jnp.array([7, 5]))
  params = linen.core_params(cell.config, variables, ("cell",))
  m = cell.model
  for lane, episode, steps in [(0, a, slice(0, 3)), (0, b, slice(3, 7)), (1, c, slice(0, 5))]:
    state, ys_alone = core.unroll(m, params, m.initial_state(), episode)
    close(ys[lane, steps], ys_alone)
    if steps.stop in (7, 5):  # the carry at each lane's last valid step
      close(jax.tree.map(lambda x, l=lane: x[l], final), state)


@pytest.mark.slow
def test_a_reset_returns_the_state_to_initial_state():
  cell = make_cell("dnc")
  xs = inputs()
  variables = nn.RNN(cell).init(jax.random.key(0), xs)["params"]["cell"]
  variables = {"params": variables}
  carry, _ = nn.RNN(cell, return_carry=True).apply({"params": {"cell": variables["params"]}},
                                                   xs[:, :3])  # a state away from the initial one
  reset = jnp.array([True, False])
  apply = jax.jit(cell.apply)
  stepped, y = apply(variables, carry, xs[:, 3], reset)
  fresh, y_fresh = apply(variables, cell.initialize_carry(None, (1, I)), xs[:1, 3])
  close(jax.tree.map(lambda s: s[:1], (stepped, y)), (fresh, y_fresh))
  kept, y_kept = apply(variables, carry, xs[:, 3])
  close(jax.tree.map(lambda s: s[1:], (stepped, y)), jax.tree.map(lambda s: s[1:], (kept, y_kept)))
  # reset_input: a flag channel does the same as the argument
  flagged = make_cell("dnc", reset_input=True)
  x_flag = jnp.concatenate([xs[:, 3], reset[:, None].astype(xs.dtype)], -1)
  close(jax.jit(flagged.apply)(variables, carry, x_flag), (stepped, y))


def test_jit_does_not_recompile():
  cell = make_cell("dnc")
  rnn, traces = nn.RNN(cell), []

  @jax.jit
  def run(variables, xs):
    traces.append(1)
    return rnn.apply(variables, xs)

  variables = rnn.init(jax.random.key(0), inputs())
  run(variables, inputs(seed=1))
  run(jax.tree.map(lambda p: p * 1.1, variables), inputs(seed=2))
  assert len(traces) == 1 and run._cache_size() == 1


@pytest.mark.slow
def test_params_round_trip_loses_nothing():
  cell = make_cell("dnc_options")
  params = cell.model.init(jax.random.key(7))
  variables = linen.linen_params(cell.config, params, ("cell",))
  back = linen.core_params(cell.config, variables, ("cell",))
  assert sorted(back) == sorted(params)
  assert all(np.array_equal(back[k], params[k]) and back[k].dtype == params[k].dtype
             for k in params)
  xs = inputs()
  close(nn.RNN(cell).apply(variables, xs), reference(cell, params, xs)[1])
  bare = linen.linen_params(cell.config, params)
  assert set(bare["params"]) == set(params)


@pytest.mark.slow
def test_bidirectional_runs_the_cell_both_ways():
  cell = make_cell("dnc")
  xs = inputs()
  bi = nn.Bidirectional(nn.RNN(cell), nn.RNN(make_cell("dnc")))
  variables = bi.init(jax.random.key(0), xs)
  ys = bi.apply(variables, xs)
  assert ys.shape == (B, T, 2 * O)
  forward = linen.core_params(cell.config, variables, ("forward_rnn", "cell"))
  close(ys[..., :O], reference(cell, forward, xs)[1])
  backward = linen.core_params(cell.config, variables, ("backward_rnn", "cell"))
  close(ys[..., O:], reference(cell, backward, xs[:, ::-1])[1][:, ::-1])


@pytest.mark.slow
def test_memory_arrays_follow_the_carries():
  cell = make_cell("dnc")
  xs = inputs()
  variables = {"params": nn.RNN(cell).init(jax.random.key(0), xs)["params"]["cell"]}
  carries, ys = linen.carries(cell, variables, xs)
  close(ys, nn.RNN(cell).apply({"params": {"cell": variables["params"]}}, xs))
  arrays = memory.memory_arrays(cell.config, variables["params"], carries)
  N, R = 4, 2
  assert arrays["write_weights"].shape == (B, T, N) and arrays["link"].shape == (B, T, N, N)
  assert arrays["read_weights"].shape == (B, T, R, N) and arrays["free_gates"].shape == (B, T, R)
  assert arrays["write_gate"].shape == (B, T)
  np.testing.assert_allclose(arrays["read_modes"].sum(-1), 1, rtol=1e-12)
  close(arrays["usage"], carries.access.usage)
  with pytest.raises(ValueError, match="DNCConfig"):
    memory.memory_arrays(make_cell("lstm").config, {}, carries)


def test_clear_errors():
  cell = make_cell("dnc")
  xs = inputs()
  with pytest.raises(ValueError, match=r"takes inputs \[\.\.\., 3\]"):
    nn.RNN(cell).init(jax.random.key(0), inputs(shape=(B, T, I + 1)))
  with pytest.raises(ValueError, match=r"reset flag"):
    nn.RNN(make_cell("dnc", reset_input=True)).init(jax.random.key(0), xs)
  variables = {"params": nn.RNN(cell).init(jax.random.key(0), xs)["params"]["cell"]}
  other = make_cell("lstm").initialize_carry(None, (B, I))
  with pytest.raises(ValueError, match="another config"):
    cell.apply(variables, other, xs[:, 0])
  bigger = linen.cell("dnc", I, O, **{**DNC, "memory_size": 5, "dtype": "float64"})
  with pytest.raises(ValueError, match="another config"):
    cell.apply(variables, bigger.initialize_carry(None, (B, I)), xs[:, 0])
  carry = cell.initialize_carry(None, (B, I))
  with pytest.raises(ValueError, match=r"reset must have shape \(2,\)"):
    cell.apply(variables, carry, xs[:, 0], jnp.zeros((B + 1,), bool))
  with pytest.raises(ValueError, match="reset must be a bool array"):
    cell.apply(variables, carry, xs[:, 0], jnp.zeros((B,)))
  params = dict(variables["params"])
  del params["Wry"]
  with pytest.raises(ValueError, match=r"missing \['Wry'\]"):
    linen.core_params(cell.config, {"params": params})
