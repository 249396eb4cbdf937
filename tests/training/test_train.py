"""The training step: lane resets, dropout, weight drop, and the readout split (the
optimiser chain: test_optim.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dncjax import pytrees
import dncjax
from dncjax.models import core
from dncjax.training import losses, optim, train

V, B, S, H = 5, 3, 4, 6


@pytest.fixture(scope="module")
def lstm():
  return dncjax.make_model("lstm", V, V, hidden=H, init_scale=0.5, dtype="float64")


def batch(reset, seed=0):
  tokens = jax.random.randint(jax.random.key(seed), (B, S + 1), 0, V)
  return pytrees.Batch(tokens[:, :-1], tokens[:, 1:], jnp.asarray(reset))


@pytest.mark.slow
def test_reset_lanes_start_from_the_initial_state(lstm):
  params = lstm.init(jax.random.key(0))
  carried = jax.tree.map(lambda a: a + 0.3, core.batch_initial_state(lstm, B))
  mixed = train.start_states(lstm, carried, jnp.array([True, False, True]))
  h = np.asarray(mixed.h)
  assert np.all(h[[0, 2]] == 0) and np.all(h[1] == 0.3)
  loss_mixed = train.window_loss(lstm, losses.softmax_cross_entropy, params, carried,
                                 batch([True, False, True]))[0]
  loss_none = train.window_loss(lstm, losses.softmax_cross_entropy, params, carried,
                                batch([False] * 3))[0]
  assert loss_mixed != loss_none


@pytest.mark.slow
def test_dropout_masks_change_each_step_and_keep_the_mean(lstm):
  opt = optim.make(optim.OptimizerConfig("adagrad"))
  ts = train.init_train_state(lstm, opt, jax.random.key(1), B)
  step = train.make_train_step(lstm, opt, dropout=0.5, jit=False)
  ts1, m1 = step(ts, batch([True] * 3))
  assert not np.array_equal(ts1.key, ts.key)
  plain = train.window_loss(lstm, losses.softmax_cross_entropy, ts.params, ts.model_state,
                            batch([True] * 3))[0]
  assert m1["loss"] != plain  # the loss was taken through a dropout mask
  # the recurrence is untouched by dropout: the carried state is the deterministic one
  final = train.window_loss(lstm, losses.softmax_cross_entropy, ts.params, ts.model_state,
                            batch([True] * 3))[1][0]
  np.testing.assert_array_equal(ts1.model_state.h, final.h)
  x = jnp.ones((20000,))
  dropped = train.dropout_features(x, 0.3, jax.random.key(2))
  assert set(np.unique(np.round(np.asarray(dropped), 6))) == {0.0, round(1 / 0.7, 6)}
  assert abs(float(dropped.mean()) - 1.0) < 0.03


def test_dropout_is_validated(lstm):
  with pytest.raises(ValueError, match="dropout must be in"):
    train.make_train_step(lstm, optim.make(optim.OptimizerConfig("adagrad")), dropout=1.0)
  with pytest.raises(ValueError, match="weight_drop must be in"):
    train.make_train_step(lstm, optim.make(optim.OptimizerConfig("adagrad")), weight_drop=-0.1)


def test_weight_drop_masks_only_the_recurrent_matrices():
  params = {"Wxh": jnp.ones((8, 5)), "Whh": jnp.ones((80, 60)), "Whh_1": jnp.ones((80, 60)),
            "bh": jnp.ones((8,))}
  dropped = train.drop_connect(params, 0.25, jax.random.key(0))
  for name in ("Wxh", "bh"):
    np.testing.assert_array_equal(dropped[name], params[name])
  for name in ("Whh", "Whh_1"):
    w = np.asarray(dropped[name])
    assert set(np.unique(np.round(w, 6))) == {0.0, round(1 / 0.75, 6)}
    assert abs((w == 0).mean() - 0.25) < 0.02
  assert not np.array_equal(dropped["Whh"], dropped["Whh_1"])  # a mask of its own each


@pytest.mark.slow
def test_weight_drop_shares_one_mask_across_lanes_and_regularises_the_recurrence(lstm):
  opt = optim.make(optim.OptimizerConfig("adagrad"))
  ts = train.init_train_state(lstm, opt, jax.random.key(1), B)
  same = pytrees.Batch(jnp.tile(batch([True] * 3).inputs[:1], (B, 1)),
                     jnp.tile(batch([True] * 3).targets[:1], (B, 1)), jnp.ones((B,), bool))
  step = train.make_train_step(lstm, opt, weight_drop=0.5, jit=False)
  ts1, m1 = step(ts, same)
  h = np.asarray(ts1.model_state.h)
  np.testing.assert_array_equal(h[0], h[1])  # identical lanes, one mask: identical states
  plain = train.window_loss(lstm, losses.softmax_cross_entropy, ts.params, ts.model_state, same)
  assert m1["loss"] != plain[0]
  assert not np.array_equal(h, plain[1][0].h)  # unlike readout dropout, it reaches the state
  # the mask is drawn from the step's key: the same key gives the same step
  again, m2 = step(ts, same)
  assert m2["loss"] == m1["loss"] and not np.array_equal(ts1.key, ts.key)


def test_split_models_compose_recur_and_readout(lstm):
  params = lstm.init(jax.random.key(3))
  state = lstm.initial_state()
  s1, y = lstm.step(params, state, jnp.asarray(2))
  s2, h = lstm.recur(params, state, jnp.asarray(2))
  np.testing.assert_array_equal(y, lstm.readout(params, h))
  np.testing.assert_array_equal(s1.c, s2.c)


def test_bits_per_char():
  assert losses.bits_per_char(np.log(2) * 64, 64) == pytest.approx(1.0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow)
                                  if "dnc" in n or n == "sam" else n
                                  for n in dncjax.models.model_names()])
def test_the_compiled_init_gives_the_eager_init_bit_for_bit(name, dtype):
  """init_train_state runs `model.init` as one jitted call; its parameters are exactly
  the eager ones (a scale XLA folded into the sampler's constants would round apart)."""
  small = {k: v for k, v in dict(hidden=H, memory_size=4, word_size=3, sparse_k=2).items()
           if k in dncjax.models.takes(name)}
  model = dncjax.make_model(name, V, V, init_scale=0.1, dtype=dtype, **small)
  key = jax.random.key(3)
  state = train.init_train_state(model, optim.make(optim.OptimizerConfig()), key, B)
  eager = model.init(jax.random.fold_in(key, 0))
  assert jax.tree.structure(state.params) == jax.tree.structure(eager)
  for got, want in zip(jax.tree.leaves(state.params), jax.tree.leaves(eager)):
    assert got.dtype == want.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
