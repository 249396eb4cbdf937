"""The core interface: scan == loop, vmap == per-example loop, jit == no jit, no recompiles,
token ids == one-hot, episode resets inside the scan, finite outputs for zero memory and
large inputs, clear config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dncjax import pytrees
import dncjax
from dncjax.models import core
from dncjax.training import optim, train

V, B, S = 7, 3, 5
CONFIGS = {
    "rnn": ("rnn", dict(hidden=6)),
    "lstm": ("lstm", dict(hidden=6)),
    "lstm_textbook": ("lstm", dict(hidden=6, variant="textbook")),
    "seed_dnc_location": ("seed_dnc", dict(hidden=6, memory_size=4, word_size=5,
                                           addressing="location")),
    "seed_dnc_content": ("seed_dnc", dict(hidden=6, memory_size=4, word_size=5)),
}


def build(name, **extra):
  model_name, hyper = CONFIGS[name]
  return dncjax.make_model(model_name, V, V, **{**hyper, "init_scale": 0.5, "dtype": "float64",
                                                 **extra})


def random_state(model, key, batch=None):
  """A random (non-zero) state, so that every path of `step` is exercised."""
  zeros = model.initial_state() if batch is None else core.batch_initial_state(model, batch)
  leaves, treedef = jax.tree.flatten(zeros)
  keys = jax.random.split(key, len(leaves))
  return treedef.unflatten([0.5 * jax.random.normal(k, z.shape, z.dtype)
                            for k, z in zip(keys, leaves)])


@pytest.fixture(params=sorted(CONFIGS))
def setup(request):
  model = build(request.param)
  k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
  params = model.init(k1)
  tokens = jax.random.randint(k2, (B, S), 0, V)
  return model, params, tokens, random_state(model, k3, B)


def test_scan_equals_python_loop(setup):
  model, params, tokens, states = setup
  state0 = jax.tree.map(lambda a: a[0], states)
  final, ys = core.unroll(model, params, state0, tokens[0])
  state, loop_ys = state0, []
  for t in range(S):
    state, y = model.step(params, state, tokens[0, t])
    loop_ys.append(y)
  np.testing.assert_allclose(ys, np.stack(loop_ys), rtol=1e-12, atol=1e-14)
  for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(state)):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_vmap_equals_per_example_loop(setup):
  model, params, tokens, states = setup
  finals, ys = core.batch_unroll(model, params, states, tokens)
  for b in range(B):
    state_b = jax.tree.map(lambda a: a[b], states)
    final_b, ys_b = core.unroll(model, params, state_b, tokens[b])
    np.testing.assert_allclose(ys[b], ys_b, rtol=1e-12, atol=1e-14)
    for a, c in zip(jax.tree.leaves(finals), jax.tree.leaves(final_b)):
      np.testing.assert_allclose(a[b], c, rtol=1e-12, atol=1e-14)


def test_token_id_equals_one_hot(setup):
  model, params, tokens, states = setup
  _, ys_ids = core.batch_unroll(model, params, states, tokens)
  _, ys_hot = core.batch_unroll(model, params, states, jax.nn.one_hot(tokens, V, dtype=jnp.float64))
  np.testing.assert_allclose(ys_ids, ys_hot, rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_jit_equals_no_jit_and_does_not_recompile(setup):
  model, params, tokens, states = setup
  optimizer = optim.make(optim.OptimizerConfig("adagrad", learning_rate=0.1))
  ts = pytrees.TrainState(params, optimizer.init(params), states)
  batch = pytrees.Batch(tokens, jnp.roll(tokens, -1, axis=1), jnp.zeros((B,), bool))
  jitted = train.make_train_step(model, optimizer)
  plain = train.make_train_step(model, optimizer, jit=False)
  ts_j, m_j = jitted(ts, batch)
  ts_p, m_p = plain(ts, batch)
  np.testing.assert_allclose(m_j["loss"], m_p["loss"], rtol=1e-12)
  for a, b in zip(jax.tree.leaves(ts_j), jax.tree.leaves(ts_p)):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
  assert jitted._cache_size() == 1
  ts_j, _ = jitted(ts_j, batch._replace(reset=jnp.ones((B,), bool)))
  assert jitted._cache_size() == 1, "the second call recompiled the training step"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["seed_dnc_location", "seed_dnc_content"])
def test_zero_memory_and_large_inputs_stay_finite(name):
  model = build(name, init_scale=30.0)
  params = model.init(jax.random.key(3))
  xs = 1e4 * jax.random.normal(jax.random.key(4), (S, V), jnp.float64)

  def loss(p):
    _, ys = core.unroll(model, p, model.initial_state(), xs)
    return jnp.sum(jax.nn.log_softmax(ys)[:, 0])

  value, grads = jax.value_and_grad(loss)(params)
  assert np.isfinite(value)
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))


def test_seed_dnc_truncate_wipes_memory_only_when_asked():
  for reset, expect_zero in [(True, True), (False, False)]:
    model = build("seed_dnc_content", reset_memory=reset)
    state = random_state(model, jax.random.key(5))
    carried = model.truncate(state)
    assert np.array_equal(carried.h, state.h) and np.array_equal(carried.c, state.c)
    assert (np.abs(carried.memory).sum() == 0) == expect_zero
    assert (np.abs(carried.read).sum() == 0) == expect_zero


def test_seed_lstm_squashes_the_stored_cell():
  seed, textbook = build("lstm"), build("lstm_textbook")
  params = seed.init(jax.random.key(6))
  big = seed.initial_state()._replace(c=jnp.full((6,), 5.0))
  s_seed, _ = seed.step(params, big, jnp.asarray(0))
  s_text, _ = textbook.step(params, big, jnp.asarray(0))
  assert np.all(np.abs(s_seed.c) < 1) and np.all(np.abs(s_text.c) > 1)
  np.testing.assert_allclose(np.tanh(s_text.c), s_seed.c, rtol=1e-12)


def test_parameter_names_and_shapes_follow_the_seed():
  H, N, W = 6, 4, 5
  p = build("seed_dnc_content").init(jax.random.key(0))
  shapes = {k: v.shape for k, v in p.items()}
  assert shapes == {"Wxh": (4 * H, V), "Whh": (4 * H, H), "Why": (V, H), "bh": (4 * H,),
                    "by": (V,), "Wrh": (4 * H, W), "Whv": (W, H), "Whr": (W, H),
                    "Whw": (W, H), "Whe": (W, H), "Wry": (V, W)}
  p = build("seed_dnc_location").init(jax.random.key(0))
  assert p["Whr"].shape == (N, H) and p["Whw"].shape == (N, H)
  bh = build("lstm").init(jax.random.key(0))["bh"]
  assert np.all(bh[2 * H:3 * H] == 1) and np.all(bh[:2 * H] == 0) and np.all(bh[3 * H:] == 0)


@pytest.mark.parametrize("name, hyper, message", [
    ("nope", {}, "unknown model 'nope'"),
    ("rnn", {"hidden": 0}, "hidden must be a positive integer"),
    ("lstm", {"hidden": -3}, "hidden must be a positive integer"),
    ("seed_dnc", {"memory_size": 0}, "memory_size must be a positive integer"),
    ("seed_dnc", {"addressing": "magic"}, "addressing must be one of"),
    ("lstm", {"variant": "peephole"}, "variant must be one of"),
    ("rnn", {"memory_size": 4}, "has no hyperparameter"),
    ("rnn", {"dtype": "float16"}, "dtype must be one of"),
])
def test_bad_configs_raise_clear_errors(name, hyper, message):
  with pytest.raises(ValueError, match=message):
    dncjax.make_model(name, V, V, **hyper)


def _close(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14)


def test_reset_all_false_equals_no_reset(setup):
  model, params, tokens, states = setup
  finals, ys = core.batch_unroll(model, params, states, tokens)
  finals_r, ys_r = core.batch_unroll(model, params, states, tokens, jnp.zeros((B, S), bool))
  _close((finals, ys), (finals_r, ys_r))


def test_packed_episodes_equal_each_episode_run_alone(setup):
  # Given lanes holding episode A (from a random state) then episode B, reset at B's start
  model, params, tokens, states = setup
  cut = jnp.array([2, 3, 1])
  reset = jnp.arange(S)[None, :] == cut[:, None]
  finals, ys = core.batch_unroll(model, params, states, tokens, reset)
  features_final, _ = core.batch_unroll_features(model, params, states, tokens, reset)
  _close(finals, features_final)
  for b in range(B):
    k = int(cut[b])
    state_b = jax.tree.map(lambda a: a[b], states)
    _, ys_a = core.unroll(model, params, state_b, tokens[b, :k])
    final_b, ys_b = core.unroll(model, params, model.initial_state(), tokens[b, k:])
    _close(ys[b, :k], ys_a)
    _close(ys[b, k:], ys_b)
    _close(jax.tree.map(lambda a: a[b], finals), final_b)


def test_the_state_after_a_reset_is_the_initial_state(setup):
  model, params, tokens, states = setup
  state0 = jax.tree.map(lambda a: a[0], states)
  reset = jnp.zeros((S,), bool).at[S - 1].set(True)
  # the last step runs from initial_state(): its result is one step from there
  final, ys = core.unroll(model, params, state0, tokens[0], reset)
  expected, y = model.step(params, model.initial_state(), tokens[0, S - 1])
  _close((final, ys[-1]), (expected, y))
  _close(core.reset_where(model, jnp.asarray(True), state0), model.initial_state())
  _close(core.reset_where(model, jnp.asarray(False), state0), state0)


@pytest.mark.parametrize("reset, message", [
    (np.zeros((B, S + 1), bool), r"reset must have shape \(3, 5\)"),
    (np.zeros((S,), bool), r"reset must have shape \(3, 5\)"),
    (np.zeros((B, S), np.int32), "reset must be a bool array"),
    ([[False] * S] * B, "reset must be a bool array of shape"),
])
def test_a_bad_reset_raises_a_clear_error(reset, message):
  model = build("rnn")
  params = model.init(jax.random.key(0))
  tokens = jnp.zeros((B, S), jnp.int32)
  states = core.batch_initial_state(model, B)
  with pytest.raises(ValueError, match=message):
    core.batch_unroll(model, params, states, tokens, reset)
  with pytest.raises(ValueError, match="reset must"):
    core.unroll(model, params, model.initial_state(), tokens[0], np.zeros((S, 1), bool))
