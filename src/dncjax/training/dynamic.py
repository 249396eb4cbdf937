"""Dynamic evaluation (Krause et al., 2017, "Dynamic Evaluation of Neural Sequence Models").

The model goes on learning from the text it is scored on, window by window: each window
is scored with the current parameters, THEN they take one update from its gradient, so no
character is ever predicted by parameters that have seen it. Two update rules:

  'adagrad'  the training optimiser continued from its accumulated state, at rate `lr`.
  'rms'      Krause et al.'s RMS rule with decay back to the trained parameters theta_g
             (their Section 4 "dynamic evaluation with RMS normalisation + global prior"):

               theta_i = theta_{i-1} - lr * grad_i / (sqrt(MS_g) + eps)
                         + min(1, decay * RMS_norm) * (theta_g - theta_{i-1})

             MS_g the mean squared gradient of one window on the training text at theta_g
             (`mean_squared_gradients`), RMS_norm = sqrt(MS_g) / mean(sqrt(MS_g)) per
             parameter array: parameters whose gradients are large on the training text are
             pulled back harder. Entries with MS_g = 0 take no gradient step.

`make_dynamic_eval` is one jitted program: a `lax.scan` over the stacked windows of
`charlm.evaluate.stack_validation` (targets carry the mask of the last, partial window),
its rates traced.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from dncjax import checks, pytrees
from dncjax.models import core
from dncjax.training import losses, train
from dncjax.training.config import DYNAMIC_RULES

RULES = DYNAMIC_RULES


def check_rule(rule: str) -> None:
  """ValueError unless `rule` is a dynamic evaluation rule ('adagrad' or 'rms')."""
  checks.check_choice("dynamic evaluation rule", rule, RULES)


class RMSState(NamedTuple):
  """State of `rms_rule`: ms, MS_g, and anchor, theta_g; pytrees shaped like the
  params."""
  ms: optax.Params      # MS_g, the training text's mean squared window gradient
  anchor: optax.Params  # theta_g, the trained parameters the decay pulls back to


def rms_rule(lr: float, decay: float = 0.0,
             eps: float = 1e-8) -> optax.GradientTransformationExtraArgs:
  """Krause et al.'s RMS update with global-prior decay (see the module docstring) as an
  optax transformation; its state is built by `rms_state`, not by `init`."""

  def init(params):
    del params
    raise ValueError("rms_rule's state holds MS_g: build it with dynamic.rms_state")

  def update(grads, state: RMSState, params):
    def one(g, ms, anchor, p):
      rms = jnp.sqrt(ms)
      pull = jnp.minimum(1.0, decay * rms / (jnp.mean(rms) + eps))
      # an entry with no gradient on the training text (the input column of a character
      # seen only in the evaluated text) has no scale to normalise by: it is left alone
      step = jnp.where(ms > 0, g / (rms + eps), 0.0)
      return (-lr * step + pull * (anchor - p)).astype(p.dtype)
    return jax.tree.map(one, grads, state.ms, state.anchor, params), state

  return optax.GradientTransformationExtraArgs(init, update)


def mean_squared_gradients(model: core.Model, params, windows: pytrees.Batch):
  """MS_g: the mean over `windows` ([K, b, S] leaves, state carried, as
  `charlm.evaluate.stack_validation` builds them) of each window's squared loss gradient (a
  window's loss summed over its b lanes, as in the dynamic evaluation it scales)."""
  grad_fn = jax.grad(lambda p, s, w: train.window_loss(model, losses.masked_cross_entropy, p, s, w),
                     has_aux=True)

  @jax.jit
  def run(params, windows):
    states = core.batch_initial_state(model, windows.reset.shape[1])

    def body(carry, window):
      states, total = carry
      g, (final, _) = grad_fn(params, states, window)
      states = jax.vmap(model.truncate)(final)
      return (states, jax.tree.map(lambda t, x: t + x * x, total, g)), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    (_, total), _ = jax.lax.scan(body, (states, zeros), windows)
    return jax.tree.map(lambda t: t / windows.reset.shape[0], total)

  return run(params, windows)


def rms_state(model: core.Model, params, train_windows: pytrees.Batch) -> RMSState:
  """The `rms_rule` state for `params`: MS_g over `train_windows` ([K, b, S]
  leaves, see `mean_squared_gradients`), anchored at `params`."""
  return RMSState(mean_squared_gradients(model, params, train_windows), params)


def make_dynamic_eval(model: core.Model, rule_of, per_position: bool = False):
  """(params, opt_state, windows, hyper) -> summed loss (nats) of all windows, each scored
  before the model learns from it (one step of the update rule `rule_of(hyper)` per window,
  state carried); with `per_position`, the loss at each position instead ([K, b, S], 0
  where the mask is). `hyper` is a dict of scalars (rates, decays) passed traced, so one
  compiled program serves every setting of a grid."""

  def nll(ys, targets_and_mask):
    targets, mask = targets_and_mask
    return {"nll": losses.softmax_cross_entropy_per_position(ys, targets) * mask}

  @jax.jit
  def evaluate(params, opt_state, windows, hyper):
    train_step = train.make_train_step(model, rule_of(hyper), losses.masked_cross_entropy,
                                       jit=False, metrics_fn=nll if per_position else None)
    states = core.batch_initial_state(model, windows.reset.shape[1])

    def body(ts, window):
      ts, metrics = train_step(ts, window)  # the loss is computed before the update
      return ts, metrics["nll"] if per_position else metrics["loss"]

    scored = jax.lax.scan(body, pytrees.TrainState(params, opt_state, states), windows)[1]
    return scored if per_position else scored.sum()

  return evaluate
