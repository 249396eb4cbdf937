"""Scoring a char-LM on a split of its text (the development split while training and
when choosing settings, the tail at the final scoring): static BPC (state carried across
windows) and dynamic evaluation (Krause et al. 2017: the model keeps learning as it reads
the split); and the seed's --gradcheck on the first training batch."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from dncjax import pytrees
from dncjax.charlm import batches, data
from dncjax.models import core
from dncjax.training import dynamic, gradcheck, losses, optim, train


def stack_validation(ids: np.ndarray, seq_length: int, lanes: int):
  """All windows scoring the split `ids` (`batches.validation_windows`) stacked: Batch
  with [K, b, S] leaves, mask inside targets; None for an empty split."""
  windows = list(batches.validation_windows(ids, seq_length, lanes))
  if not windows:
    return None
  inputs = np.stack([b.inputs for b, _ in windows])
  targets = np.stack([b.targets for b, _ in windows])
  masks = np.stack([m for _, m in windows])
  resets = np.stack([b.reset for b, _ in windows])
  return pytrees.Batch(jnp.asarray(inputs), (jnp.asarray(targets), jnp.asarray(masks)),
                       jnp.asarray(resets))


def scored_chars(windows) -> float:
  """How many characters `stack_validation`'s windows score (their mask's sum)."""
  return float(windows.targets[1].sum()) if windows is not None else 0.0


def make_static_eval(model: core.Model, per_position: bool = False):
  """(params, windows) -> summed loss (nats) over all the windows of a split, state
  carried; with `per_position`, the loss at each position instead ([K, b, S], 0 where the
  mask is)."""
  eval_step = train.make_eval_step(model, losses.masked_cross_entropy, jit=False)

  @jax.jit
  def evaluate(params, windows):
    states = core.batch_initial_state(model, windows.reset.shape[1])

    def body(states, window):
      if not per_position:
        loss, states = eval_step(params, states, window)
        return states, loss
      _, (final, ys) = train.window_loss(model, losses.masked_cross_entropy, params, states,
                                         window)
      targets, mask = window.targets
      nll = losses.softmax_cross_entropy_per_position(ys, targets) * mask
      return jax.vmap(model.truncate)(final), nll

    scored = jax.lax.scan(body, states, windows)[1]
    return scored if per_position else scored.sum()

  return evaluate


def in_text_order(per_position, windows) -> np.ndarray:
  """The values [K, b, S] at `windows`' scored positions as one array in the order of the
  text (lane by lane: the lanes are contiguous chunks of it)."""
  values = np.asarray(per_position).transpose(1, 0, 2).reshape(-1)
  return values[np.asarray(windows.targets[1]).transpose(1, 0, 2).reshape(-1) > 0]


def static_bpc(static_eval, params, windows) -> float:
  """BPC of `params` on a split's stacked `windows`, `static_eval` being
  `make_static_eval`'s function."""
  return float(static_eval(params, windows)) / (math.log(2) * scored_chars(windows))


def rms_state(model: core.Model, params, train_ids: np.ndarray, seq_length: int,
              lanes: int) -> dynamic.RMSState:
  """The rms rule's state at `params`: MS_g measured on the training ids in windows of
  `seq_length` over `lanes` lanes, the shape of the windows it scales."""
  return dynamic.rms_state(model, params, stack_validation(train_ids, seq_length, lanes))


def make_dynamic(model: core.Model, config, rule: str, per_position: bool = False):
  """(params, state, windows, lr, decay, eps) -> summed loss (nats) of dynamic evaluation
  over `windows` with `rule` (see dncjax.training.dynamic), or with `per_position` the
  loss at each position [K, b, S]: `state` is the training optimiser's for 'adagrad'
  (continued at rate `lr`; decay and eps unused) and the `rms_state` for 'rms'. One
  compiled program per rule: lr, decay and eps are traced."""
  dynamic.check_rule(rule)
  if rule == "adagrad":
    optimizer = optim.make(config.optim)  # the rule continued, without --average's stage
    run = dynamic.make_dynamic_eval(model, lambda hyper: optimizer, per_position)

    def adagrad(params, opt_state, windows, lr, decay, eps):
      del decay, eps
      opt_state = optim.with_hyperparams(optim.rule_state(opt_state), learning_rate=lr)
      return run(params, opt_state, windows, {})
    return adagrad
  run = dynamic.make_dynamic_eval(
      model, lambda hyper: dynamic.rms_rule(hyper["lr"], hyper["decay"], hyper["eps"]),
      per_position)
  return lambda params, ms_state, windows, lr, decay, eps: run(
      params, ms_state, windows, {"lr": lr, "decay": decay, "eps": eps})


def dynamic_bpc(model: core.Model, config, ids: np.ndarray, train_ids: np.ndarray, params,
                opt_state, rule: str = "adagrad", lr: float | None = None, decay: float = 0.0,
                seq_length: int | None = None, lanes: int = 1, ms_state=None,
                eps: float = 1e-8, evaluator=None) -> float:
  """Dynamic-evaluation BPC of the split `ids` (see dncjax.training.dynamic) from
  `params` (and, for the 'adagrad' rule, the training optimiser's `opt_state`: the
  training optimiser continued at rate `lr`), in windows of `seq_length` (default: the
  training window). The 'rms' rule measures MS_g on `train_ids` (`rms_state`) unless
  `ms_state` (one of the same window length and lanes) is given; `eps` is its epsilon.
  `evaluator`: `make_dynamic`'s function for `rule`, kept to score several settings with
  one compiled program."""
  total, windows = _dynamic(model, config, ids, train_ids, params, opt_state, rule, lr, decay,
                            seq_length, lanes, ms_state, eps, evaluator, False)
  return float(total) / (math.log(2) * scored_chars(windows))


def dynamic_nll(model: core.Model, config, ids: np.ndarray, train_ids: np.ndarray, params,
                opt_state, rule: str, lr: float | None, decay: float,
                seq_length: int | None = None, lanes: int = 1, ms_state=None,
                eps: float = 1e-8, evaluator=None) -> np.ndarray:
  """As `dynamic_bpc`, but the loss (nats) of each character of `ids` after the first, in
  the text's order; `evaluator` one of `make_dynamic(..., per_position=True)`."""
  scored, windows = _dynamic(model, config, ids, train_ids, params, opt_state, rule, lr,
                             decay, seq_length, lanes, ms_state, eps, evaluator, True)
  return in_text_order(scored, windows)


def _dynamic(model, config, ids, train_ids, params, opt_state, rule, lr, decay, seq_length,
             lanes, ms_state, eps, evaluator, per_position):
  dynamic.check_rule(rule)
  seq_length = seq_length or config.data.seq_length
  lr = lr or config.optim.learning_rate
  if seq_length <= 0 or lr <= 0 or decay < 0:
    raise ValueError(f"dynamic evaluation needs a positive window and learning rate and a "
                     f"decay >= 0, got {seq_length}, {lr}, {decay}")
  windows = stack_validation(ids, seq_length, lanes)
  if windows is None:
    raise data.DataError(f"the split scored is shorter than one window of {seq_length}")
  if rule == "rms" and ms_state is None:
    ms_state = rms_state(model, params, train_ids, seq_length, lanes)
  evaluator = evaluator or make_dynamic(model, config, rule, per_position)
  return evaluator(params, opt_state if rule == "adagrad" else ms_state, windows, lr, decay,
                   eps), windows


def run_gradcheck(model, ts, batch, out) -> None:
  """The seed's --gradcheck: jax.grad vs finite differences on a training batch."""
  rows = gradcheck.check_model(model, params=ts.params, states=ts.model_state, batch=batch)
  out(gradcheck.format_table(rows))
  _, reason = gradcheck.verdict(rows, 1e-4)
  note = "" if model.config.dtype == "float64" else " (float32: pass --fp64 for a tight check)"
  out(f"gradient check: {reason}{note}")
