"""Tests for dncjax.charlm.sampling: ids in the vocabulary, determinism per key, the prime
read into the state, the argmax path at a low temperature, draw frequencies that match the
softmax of y / temperature, the temperature check, and one compilation per shape.

The model is a tiny LSTM with init_scale 1, so its next-character distributions are far
from uniform and a wrong temperature or a wrong set of logits shows in the frequencies."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dncjax
from dncjax.models import core
from dncjax.charlm import sampling

V = 5
PRIME = jnp.asarray([1, 2, 3])


@pytest.fixture(scope="module")
def lstm():
  model = dncjax.make_model("lstm", V, V, hidden=4, init_scale=1.0)
  return model, model.init(jax.random.key(0))


def softmax(logits, temperature=1.0):
  z = np.asarray(logits, np.float64) / temperature
  e = np.exp(z - z.max())
  return e / e.sum()


def assert_same_state(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


def test_ids_have_the_length_dtype_and_vocabulary(lstm):
  model, params = lstm
  ids, state = sampling.sample(model, params, model.initial_state(), PRIME,
                               jax.random.key(1), 64)
  assert ids.shape == (64,) and ids.dtype == PRIME.dtype
  assert np.all((np.asarray(ids) >= 0) & (np.asarray(ids) < V))
  assert len(set(np.asarray(ids).tolist())) > 1
  assert jax.tree.structure(state) == jax.tree.structure(model.initial_state())


def test_the_same_key_gives_the_same_ids_and_another_key_others(lstm):
  model, params = lstm
  draw = lambda seed: np.asarray(sampling.sample(model, params, model.initial_state(), PRIME,
                                                 jax.random.key(seed), 40)[0])
  np.testing.assert_array_equal(draw(7), draw(7))
  assert not np.array_equal(draw(7), draw(8))  # equal with probability < 0.3 ** 40


def test_the_prime_is_read_into_the_state(lstm):
  model, params = lstm
  start, _ = core.unroll(model, params, model.initial_state(), jnp.asarray([4, 0]))
  primed, _ = core.unroll(model, params, start, PRIME)
  ids, state = sampling.sample(model, params, start, PRIME, jax.random.key(2), 0)
  assert ids.shape == (0,)
  assert_same_state(state, primed)


def test_the_state_returned_has_read_the_prime_and_every_draw(lstm):
  model, params = lstm
  ids, state = sampling.sample(model, params, model.initial_state(), PRIME,
                               jax.random.key(3), 12)
  expected, _ = core.unroll(model, params, model.initial_state(),
                            jnp.concatenate([PRIME, ids]))
  assert_same_state(state, expected)


def test_a_low_temperature_follows_the_argmax(lstm):
  model, params = lstm
  state, greedy = model.initial_state(), []
  for x in np.asarray(PRIME):
    state, y = model.step(params, state, jnp.asarray(x))
  for _ in range(20):
    greedy.append(int(np.argmax(softmax(y))))
    state, y = model.step(params, state, jnp.asarray(greedy[-1]))
  for seed in (0, 1):
    ids, _ = sampling.sample(model, params, model.initial_state(), PRIME,
                             jax.random.key(seed), 20, 1e-6)
    assert np.asarray(ids).tolist() == greedy
  assert len(set(greedy)) > 1  # the path is not one id repeated


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_draw_frequencies_follow_the_softmax_of_y_over_temperature(lstm, temperature):
  model, params = lstm
  draws = 4000
  _, ys = core.unroll(model, params, model.initial_state(), PRIME)
  expected = draws * softmax(ys[-1], temperature)
  first = jax.vmap(lambda key: sampling.sample(model, params, model.initial_state(), PRIME,
                                               key, 1, temperature)[0][0])
  ids = np.asarray(first(jax.random.split(jax.random.key(4), draws)))
  counts = np.bincount(ids, minlength=V)
  chi2 = float(((counts - expected) ** 2 / expected).sum())
  # 4 degrees of freedom: P(chi2 > 25) < 1e-4; the other temperature's
  # probabilities give chi2 in the hundreds
  assert chi2 < 25, (counts, expected)
  assert expected.min() > 0.05 * draws and expected.max() < 0.5 * draws


@pytest.mark.parametrize("bad", [0, 0.0, -1.0, float("nan")])
def test_check_temperature_rejects_a_non_positive_or_nan_temperature(bad):
  with pytest.raises(ValueError, match="temperature must be positive"):
    sampling.check_temperature(bad)


def test_check_temperature_returns_a_float():
  assert sampling.check_temperature(2) == 2.0 and type(sampling.check_temperature(2)) is float
  assert sampling.check_temperature(0.8) == 0.8


@pytest.mark.slow
def test_a_second_call_with_the_same_shapes_does_not_recompile(lstm):
  model, params = lstm
  traces = []

  def step(params, state, x):
    traces.append(1)  # runs only while jax traces the sampling scan
    return model.step(params, state, x)

  counted = model._replace(step=step)  # a new static argument: its own compilations
  cache_size = getattr(sampling.sample, "_cache_size", None)
  before = cache_size() if cache_size else None
  sampling.sample(counted, params, model.initial_state(), PRIME, jax.random.key(5), 8, 1.0)
  traced = len(traces)
  assert traced >= 1
  ids, _ = sampling.sample(counted, params, model.initial_state(), jnp.asarray([0, 4, 4]),
                           jax.random.key(6), 8, 0.7)
  assert ids.shape == (8,)
  assert len(traces) == traced, "a new prime, key or temperature retraced the sampler"
  if cache_size:
    assert cache_size() == before + 1
  sampling.sample(counted, params, model.initial_state(), PRIME, jax.random.key(5), 9, 1.0)
  assert len(traces) > traced  # the length is static: a new one compiles anew
