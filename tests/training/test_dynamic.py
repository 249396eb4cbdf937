"""Dynamic evaluation (dncjax.training.dynamic): Krause et al.'s RMS rule against NumPy, MS_g
against a Python loop of window gradients, scoring before learning, and one compiled
evaluation for every rate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dncjax
from dncjax.charlm import data, evaluate, job as charlm
from dncjax.charlm.config import DataConfig, RunConfig
from dncjax.models import core
from dncjax.models.lstm import LSTMConfig
from dncjax.training import dynamic, losses, train
from dncjax.training.optim import OptimizerConfig

V = 6


@pytest.fixture(scope="module")
def lstm():
  return dncjax.make_model("lstm", V, V, hidden=5, init_scale=0.5, dtype="float64")


def test_rms_rule_matches_numpy():
  rng = np.random.default_rng(0)
  shapes = {"A": (3, 4), "b": (7,)}
  grads, params, anchor = ({k: rng.normal(size=s) for k, s in shapes.items()} for _ in range(3))
  ms = {k: rng.uniform(0, 2, size=s) ** 4 for k, s in shapes.items()}
  ms["A"][1, 2] = 0.0  # never had a training gradient: no step, only the pull
  lr, decay, eps = 0.1, 0.8, 1e-8
  updates, state = dynamic.rms_rule(lr, decay, eps).update(
      jax.tree.map(jnp.asarray, grads), dynamic.RMSState(ms, anchor), params)
  assert state.ms is ms and state.anchor is anchor  # MS_g and theta_g never move
  pulls = []
  for k in shapes:
    rms = np.sqrt(ms[k])
    pull = np.minimum(1.0, decay * rms / (rms.mean() + eps))
    pulls.append(pull)
    step = np.where(ms[k] > 0, grads[k] / (rms + eps), 0.0)
    expected = -lr * step + pull * (anchor[k] - params[k])
    np.testing.assert_allclose(updates[k], expected, rtol=1e-12)
  assert updates["A"][1, 2] == 0.0  # and its pull is zero too: MS_g = 0 scales it by 0
  pulls = np.concatenate([p.ravel() for p in pulls])
  assert (pulls == 1).any() and (pulls < 1).any()  # the clamp is exercised


def test_rms_rule_state_comes_from_the_training_text():
  with pytest.raises(ValueError, match="rms_state"):
    dynamic.rms_rule(0.1).init({"w": jnp.zeros(2)})


@pytest.mark.slow
def test_mean_squared_gradients_is_the_mean_of_each_windows_squared_gradient(lstm):
  params = lstm.init(jax.random.key(0))
  ids = np.random.default_rng(1).integers(0, V, 61)
  windows = evaluate.stack_validation(ids, 8, 1)  # 7 full windows and a partial one, masked
  K = windows.reset.shape[0]
  assert K == 8 and windows.targets[1][-1].sum() == 4
  ms = dynamic.mean_squared_gradients(lstm, params, windows)
  states = core.batch_initial_state(lstm, 1)
  total = jax.tree.map(jnp.zeros_like, params)
  for k in range(K):
    window = jax.tree.map(lambda a: a[k], windows)
    g, (final, _) = jax.grad(lambda p: train.window_loss(
        lstm, losses.masked_cross_entropy, p, states, window), has_aux=True)(params)
    total = jax.tree.map(lambda t, x: t + x * x, total, g)
    states = jax.vmap(lstm.truncate)(final)
  for name in params:
    np.testing.assert_allclose(ms[name], total[name] / K, rtol=1e-10, atol=1e-300)


@pytest.fixture(scope="module")
def corpus(text_file):
  return data.load_corpus(str(text_file), 0.1, 8, dev_fraction=0.0)


@pytest.mark.slow
@pytest.mark.parametrize("rule", dynamic.RULES)
def test_dynamic_bpc_scores_each_window_before_learning_from_it(rule, corpus):
  config = RunConfig(model=LSTMConfig(hidden=8, dtype="float64"),
                     optim=OptimizerConfig(learning_rate=0.1, eps=1e-6),
                     data=DataConfig(seq_length=8))
  model, optimizer = charlm.build_model(config, corpus.vocab.size)
  ts = train.init_train_state(model, optimizer, jax.random.key(0), 2)
  windows = evaluate.stack_validation(corpus.tail_ids(), 8, 1)
  static = float(evaluate.make_static_eval(model)(ts.params, windows)) / (
      np.log(2) * float(windows.targets[1].sum()))
  split = (corpus.tail_ids(), corpus.train_ids)
  frozen = evaluate.dynamic_bpc(model, config, *split, ts.params, ts.opt_state, rule, lr=1e-300)
  assert frozen == pytest.approx(static, rel=1e-12)  # no learning: the static score
  lr = 0.1 if rule == "adagrad" else 1e-3
  assert evaluate.dynamic_bpc(model, config, *split, ts.params, ts.opt_state, rule, lr=lr) < static
  with pytest.raises(ValueError, match="rule must be one of"):
    evaluate.dynamic_bpc(model, config, *split, ts.params, ts.opt_state, "sgd")


@pytest.mark.slow
@pytest.mark.parametrize("rule", dynamic.RULES)
def test_one_compiled_evaluation_serves_every_rate(rule, corpus):
  """make_dynamic's rates are arguments, not constants of its first trace: reused for a
  second setting, it scores that setting as a fresh one does."""
  config = RunConfig(model=LSTMConfig(hidden=8, dtype="float64"),
                     optim=OptimizerConfig(learning_rate=0.1, eps=1e-6),
                     data=DataConfig(seq_length=8))
  model, optimizer = charlm.build_model(config, corpus.vocab.size)
  ts = train.init_train_state(model, optimizer, jax.random.key(0), 2)
  split = (corpus.tail_ids(), corpus.train_ids)
  shared = evaluate.make_dynamic(model, config, rule)
  settings = [(0.1, 0.0, 1e-3), (0.3, 0.0, 1e-3)] if rule == "adagrad" else [
      (1e-3, 1e-3, 2e-3), (3e-3, 1e-2, 1e-2)]
  scores = []
  for lr, decay, eps in settings:
    reused = evaluate.dynamic_bpc(model, config, *split, ts.params, ts.opt_state, rule, lr,
                                  decay, eps=eps, evaluator=shared)
    fresh = evaluate.dynamic_bpc(model, config, *split, ts.params, ts.opt_state, rule, lr,
                                 decay, eps=eps)
    assert reused == pytest.approx(fresh, rel=1e-12)
    scores.append(reused)
  assert scores[0] != pytest.approx(scores[1], rel=1e-6)
