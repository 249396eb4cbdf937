"""dncjax.training.optim: the one optimiser chain (clip, decay, the update rule), its
checked settings, every rule, and hyperparameters held in the optimiser state."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dncjax.training import optim


def test_optimizer_chain_is_clip_then_decay_then_seed_adagrad():
  config = optim.OptimizerConfig("adagrad", learning_rate=0.1, eps=1e-8, clip_value=0.5,
                                 weight_decay=0.01)
  opt = optim.make(config)
  p = {"w": jnp.array([1.0, -2.0, 3.0])}
  g = {"w": jnp.array([0.2, -4.0, 0.0])}
  state = opt.init(p)
  accum = np.zeros(3)
  for _ in range(3):
    updates, state = opt.update(g, state, p)
    grad = np.clip(np.asarray(g["w"]), -0.5, 0.5) + 0.01 * np.asarray(p["w"])
    accum += grad ** 2
    expected = np.asarray(p["w"]) - 0.1 * grad / np.sqrt(accum + 1e-8)
    p = jax.tree.map(lambda a, u: a + u, p, updates)
    np.testing.assert_allclose(p["w"], expected, rtol=1e-12)


@pytest.mark.parametrize("field, value, flag", [
    ("learning_rate", 0.0, "--lr"), ("eps", -1.0, "--eps"),
    ("clip_norm", 0.0, "--clip_norm"),
    ("weight_decay", -0.1, "--weight_decay")])
def test_bad_optimizer_settings_raise(field, value, flag):
  with pytest.raises(ValueError, match=flag):
    optim.OptimizerConfig(**{field: value})


def test_every_rule_descends_and_rmsprop_is_deepminds():
  params = {"w": jnp.ones(3)}
  for name in optim.RULES:
    opt = optim.make(optim.OptimizerConfig(name, 0.1, clip_norm=1.0))
    updates, _ = opt.update({"w": jnp.full(3, 100.0)}, opt.init(params), params)
    assert np.all(np.asarray(updates["w"]) < 0)
  rms = optim.make(optim.OptimizerConfig("rmsprop", 1e-4, eps=1e-10, momentum=0.9))
  ref = optax.rmsprop(1e-4, decay=0.9, eps=1e-10, momentum=0.9)
  g = {"w": jnp.arange(3.0)}
  np.testing.assert_allclose(rms.update(g, rms.init(params), params)[0]["w"],
                             ref.update(g, ref.init(params))[0]["w"])
  for kwargs, text in [(dict(name="sgd"), "--optimizer must be one of"),
                       (dict(learning_rate=0), "--lr"), (dict(momentum=1.0), "--momentum")]:
    with pytest.raises(ValueError, match=text):
      optim.OptimizerConfig(**{"name": "rmsprop", "learning_rate": 1e-3, **kwargs})


def test_with_hyperparams_changes_the_rate_of_a_state():
  params = {"w": jnp.array([1.0, -2.0])}
  g = {"w": jnp.array([0.5, 0.25])}
  opt = optim.make(optim.OptimizerConfig("adagrad", 0.1))
  state = optim.with_hyperparams(opt.init(params), learning_rate=0.3)
  updates, _ = opt.update(g, state, params)
  reference = optim.make(optim.OptimizerConfig("adagrad", 0.3))
  np.testing.assert_allclose(updates["w"], reference.update(g, reference.init(params),
                                                            params)[0]["w"], rtol=1e-12)
  assert jax.tree.structure(state) == jax.tree.structure(opt.init(params))
  with pytest.raises(ValueError, match="not an optimiser hyperparameter: lr"):
    optim.with_hyperparams(state, lr=0.3)


@pytest.mark.parametrize("decay", [0.5, 0.999])
def test_the_average_is_the_normalised_exponential_average_of_the_iterates(decay):
  config = optim.OptimizerConfig("adagrad", learning_rate=0.1)
  opt = optim.with_average(optim.make(config), decay)
  alone = optim.make(config)
  p = {"w": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array(0.5)}
  state, state_alone, iterates = opt.init(p), alone.init(p), []
  assert all(np.array_equal(optim.evaluated(p, state)[n], p[n]) for n in p)  # a_0 = p_0
  for k in range(5):
    g = jax.tree.map(lambda a: jnp.sin(a * (k + 1)), p)
    updates, state = opt.update(g, state, p)
    want, state_alone = alone.update(g, state_alone, p)
    assert all(np.array_equal(updates[n], want[n]) for n in p)  # the updates are untouched
    p = optax.apply_updates(p, updates)
    iterates.append(p)
    weights = decay ** np.arange(len(iterates))[::-1]  # p_s weighs decay^(t - s)
    for n in p:
      expected = sum(w * np.asarray(q[n]) for w, q in zip(weights, iterates)) / weights.sum()
      np.testing.assert_allclose(optim.evaluated(p, state)[n], expected, rtol=1e-12)
  assert not np.allclose(optim.evaluated(p, state)["w"], p["w"])
  changed = optim.with_hyperparams(state, learning_rate=0.3)
  assert float(optim.rule_state(changed).hyperparams["learning_rate"]) == 0.3
  assert optim.evaluated(p, changed) is changed[1].average
  assert optim.rule_state(state_alone) is state_alone and optim.evaluated(p, state_alone) is p


def test_no_average_leaves_the_chain_and_its_state_as_they_are():
  opt = optim.make(optim.OptimizerConfig())
  assert optim.with_average(opt, 0.0) is opt
