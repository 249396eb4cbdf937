"""The nnx modules: nnx.RNN(module) == core.batch_unroll (values and gradients) for every
core, packed episodes == each episode alone, no recompiles under nnx.jit, the params round
trip, clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from dncjax.flax import nnx as dnc_nnx
from dncjax.models import core

I, O, B, T = 3, 2, 2, 5
TINY = dict(hidden=4, init_scale=0.5)
DNC = dict(TINY, memory_size=4, word_size=3, read_heads=2)
CORES = {
    "rnn": ("rnn", TINY),
    "lstm": ("lstm", TINY),
    "seed_dnc": ("seed_dnc", dict(TINY, memory_size=4, word_size=3)),
    "dnc": ("dnc", DNC),
    "dnc_options": ("dnc", dict(DNC, controller_layers=2, deallocate=True, link_sharpness=True,
                                key_masking=True)),
}
NAMES = [pytest.param(n, marks=pytest.mark.slow) if "dnc" in n else n
         for n in sorted(CORES)]  # the DNCs compile for seconds: not in the fast subset
TOL = {"float64": dict(rtol=1e-12, atol=1e-12), "float32": dict(rtol=1e-6, atol=1e-6)}


def make_module(name, dtype="float64", **extra):
  model_name, hyper = CORES[name]
  return dnc_nnx.module(model_name, I, O, rngs=nnx.Rngs(0), **{**hyper, "dtype": dtype}, **extra)


def inputs(dtype="float64", shape=(B, T, I), seed=1):
  return jax.random.normal(jax.random.key(seed), shape, dtype)


def close(a, b, tol=TOL["float64"]):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(x, y, **tol)


def reference(module, params, xs):
  """core.batch_unroll from the initial state, jitted."""
  m = module.model
  run = lambda p, x: core.batch_unroll(m, p, core.batch_initial_state(m, x.shape[0]), x)
  return jax.jit(run)(params, xs)


@nnx.jit
def run_rnn(module, xs):
  return nnx.RNN(module, return_carry=True)(xs)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", NAMES)
def test_rnn_of_the_module_equals_batch_unroll(name, dtype):
  module = make_module(name, dtype)
  xs = inputs(dtype)
  close(run_rnn(module, xs), reference(module, module.core_params(), xs), TOL[dtype])


@pytest.mark.parametrize("name", NAMES)
def test_gradients_equal_those_of_batch_unroll(name):
  module = make_module(name)
  xs = inputs()
  loss = lambda ys: jnp.sum(jnp.sin(ys))
  grads = nnx.jit(nnx.grad(lambda m: loss(nnx.RNN(m)(xs))))(module)
  g_core = jax.jit(jax.grad(lambda p: loss(reference(module, p, xs)[1])))(module.core_params())
  close({k: v[...] for k, v in grads.items()}, g_core)


@pytest.mark.slow
def test_packed_episodes_and_seq_lengths_equal_each_episode_alone():
  module = make_module("dnc", reset_input=True)
  a, b, c = inputs(shape=(3, I), seed=2), inputs(shape=(4, I), seed=3), inputs(shape=(5, I), seed=4)
  lanes = jnp.stack([jnp.concatenate([a, b]), jnp.concatenate([c, jnp.zeros((2, I))])])
  xs = jnp.concatenate([lanes, jnp.zeros((2, 7, 1)).at[0, 3].set(1.0)], -1)
  final, ys = nnx.jit(lambda m, x: nnx.RNN(m, return_carry=True)(x, seq_lengths=jnp.array([7, 5])))(
      module, xs)
  m, params = module.model, module.core_params()
  for lane, episode, steps in [(0, a, slice(0, 3)), (0, b, slice(3, 7)), (1, c, slice(0, 5))]:
    state, ys_alone = jax.jit(lambda e: core.unroll(m, params, m.initial_state(), e))(episode)
    close(ys[lane, steps], ys_alone)
    if steps.start > 0 or lane == 1:
      close(jax.tree.map(lambda x, l=lane: x[l], final), state)


def test_a_reset_returns_the_state_to_initial_state():
  module = make_module("lstm")
  carry, _ = run_rnn(module, inputs())
  x = inputs(shape=(B, I), seed=5)
  stepped, y = module(carry, x, jnp.array([True, False]))
  fresh, y_fresh = module(module.initialize_carry((1, I)), x[:1])
  close(jax.tree.map(lambda s: s[:1], (stepped, y)), (fresh, y_fresh))


def test_jit_does_not_recompile():
  module, traces = make_module("dnc"), []

  @nnx.jit
  def run(module, xs):
    traces.append(1)
    return nnx.RNN(module)(xs)

  run(module, inputs(seed=1))
  module.Why[...] = module.Why[...] * 1.1
  run(module, inputs(seed=2))
  assert len(traces) == 1


@pytest.mark.slow
def test_params_round_trip_loses_nothing():
  module = make_module("dnc_options")
  params = module.model.init(jax.random.key(7))
  rebuilt = dnc_nnx.from_core_params(module.config, params)
  back = rebuilt.core_params()
  assert sorted(back) == sorted(params)
  assert all(np.array_equal(back[k], params[k]) and back[k].dtype == params[k].dtype
             for k in params)
  assert set(nnx.state(rebuilt, nnx.Param)) == set(params)
  xs = inputs()
  close(run_rnn(rebuilt, xs)[1], reference(module, params, xs)[1])


def test_clear_errors():
  module = make_module("dnc")
  with pytest.raises(ValueError, match=r"takes inputs \[\.\.\., 3\]"):
    nnx.RNN(module)(inputs(shape=(B, T, I + 1)))
  other = make_module("rnn").initialize_carry((B, I))
  with pytest.raises(ValueError, match="another config"):
    module(other, inputs(shape=(B, I)))
  with pytest.raises(ValueError, match=r"reset must have shape \(2,\)"):
    module(module.initialize_carry((B, I)), inputs(shape=(B, I)), jnp.zeros((3,), bool))
  params = module.core_params()
  params["extra"] = params.pop("Wry")
  with pytest.raises(ValueError, match=r"missing \['Wry'\], extra \['extra'\]"):
    module.load_core_params(params)
