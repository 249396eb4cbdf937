"""The jitted training and evaluation steps (truncated BPTT), dropout and weight drop.

A window of S characters for B lanes is a `Batch`; lanes flagged in `reset` start from
the model's initial state (a lane that ran off the end of the text), the others carry
their state over from the previous window, passed through `model.truncate` (the seed
DNC wipes its memory there). Loss is the cross-entropy SUMMED over the window and the
batch, as in the seed; bits per character BPC = loss / (ln 2 * B * S).
"""

from __future__ import annotations

import os
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from dncjax import checks
from dncjax.models import core
from dncjax.training import losses
from dncjax.pytrees import Batch, TrainState


def start_states(model: core.Model, states: core.State, reset_B: jax.Array) -> core.State:
  """Per lane: the initial state where `reset`, else the carried state."""
  init = model.initial_state()
  return jax.tree.map(
      lambda s, s0: jnp.where(reset_B.reshape((-1,) + (1,) * s0.ndim), s0, s), states, init)


def dropout_features(features, rate: float, key: jax.Array):
  """Inverted dropout: each entry kept with probability 1 - rate and scaled by 1/(1 - rate)."""
  leaves, treedef = jax.tree.flatten(features)
  keys = jax.random.split(key, len(leaves))
  keep = 1.0 - rate
  return treedef.unflatten([
      # p in the features' dtype: the same masks whether or not jax_enable_x64 is on
      jnp.where(jax.random.bernoulli(k, jnp.asarray(keep, f.dtype), f.shape), f / keep,
                0).astype(f.dtype)
      for k, f in zip(keys, leaves)])


def drop_connect(params, rate: float, key: jax.Array):
  """Weight drop (DropConnect on the recurrent matrices W_hh, as AWD-LSTM: Merity et al.,
  2018): each entry of every `Whh*` matrix is dropped with probability `rate` (inverted
  scaling), one mask per window shared by all lanes and time steps, so unlike dropout on
  the readout it regularises the recurrence itself."""
  names = sorted(n for n in params if n.startswith("Whh"))
  keys = dict(zip(names, jax.random.split(key, len(names))))
  return {n: dropout_features(w, rate, keys[n]) if n in keys else w for n, w in params.items()}


def window_loss(model: core.Model, loss_fn: Callable, params, states, batch: Batch,
                dropout: float = 0.0, key: jax.Array | None = None):
  """Loss of one window and the lanes' final states: (loss, (states, logits)).

  With `dropout` > 0 (training only), the readout's inputs (the controller output h, and
  the read vectors of the memory models) are dropped out with a mask drawn from `key`;
  the recurrence itself is untouched, so the carried state is the deterministic one."""
  states = start_states(model, states, batch.reset)
  final, features = core.batch_unroll_features(model, params, states, batch.inputs)
  if dropout:
    features = dropout_features(features, dropout, key)
  ys = core.readout(model, params, features, time_axes=2)  # [B, S, ...] at once
  return loss_fn(ys, batch.targets), (final, ys)


def init_train_state(model: core.Model, optimizer, key, batch_size: int) -> TrainState:
  """A fresh run's state; `model.init` runs as ONE compiled call (eagerly, its many small
  random draws each cost a dispatch), to the same values (`core.normal`)."""
  params = jax.jit(model.init)(jax.random.fold_in(key, 0))
  return TrainState(params, optimizer.init(params), core.batch_initial_state(model, batch_size),
                    jax.random.key_data(jax.random.fold_in(key, 1)))


def check_fits(model: core.Model, copies: int = 4) -> None:
  """ValueError when `copies` of the parameters (parameters, gradients, optimiser state,
  update) cannot fit in the memory of the default device; sized without allocating."""
  shapes = jax.eval_shape(model.init, jax.random.key(0))
  need = copies * sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes))
  device = jax.local_devices()[0]
  try:
    stats = device.memory_stats() or {}
  except RuntimeError:  # a backend that keeps no statistics
    stats = {}
  total = stats.get("bytes_limit") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  if need > total:
    raise ValueError(f"the model's parameters, gradients and optimiser state need about "
                     f"{need / 2**30:.1f} GiB, more than the {total / 2**30:.1f} GiB of "
                     f"{device.platform} memory: try a smaller --hidden or memory")


def check_dropout(model: core.Model, dropout: float, weight_drop: float = 0.0) -> None:
  """ValueError unless dropout and weight_drop are in [0, 1) and, with
  dropout, the model has a recur/readout split."""
  checks.check_number("dropout", dropout, 0, 1, high_open=True)
  checks.check_number("weight_drop", weight_drop, 0, 1, high_open=True)
  if dropout and model.readout is None:
    raise ValueError(f"dropout needs a model with a recur/readout split; "
                     f"{type(model.config).__name__} has none")


def make_train_step(model: core.Model, optimizer: optax.GradientTransformation,
                    loss_fn: Callable = losses.softmax_cross_entropy, jit: bool = True,
                    metrics_fn: Callable | None = None, dropout: float = 0.0,
                    weight_drop: float = 0.0):
  """(TrainState, Batch) -> (TrainState, {'loss', 'grad_norm'}): forward, backward, update.

  `metrics_fn(ys, targets) -> dict`, if given, adds metrics of the window's outputs
  (computed before the update, like the loss). The loss is the one the gradient was
  taken of (with dropout, if any); `dropout` and `weight_drop` (see `drop_connect`) draw
  their masks from `TrainState.key`.
  """
  check_dropout(model, dropout, weight_drop)

  def train_step(state: TrainState, batch: Batch):
    key, next_key = None, state.key
    if dropout or weight_drop:
      key, next_key = jax.random.split(jax.random.wrap_key_data(state.key))
      next_key = jax.random.key_data(next_key)

    def loss(p):
      if weight_drop:
        p = drop_connect(p, weight_drop, jax.random.fold_in(key, 1))
      return window_loss(model, loss_fn, p, state.model_state, batch, dropout, key)

    grad_fn = jax.value_and_grad(loss, has_aux=True)
    (loss, (final, ys)), grads = grad_fn(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    carried = jax.vmap(model.truncate)(final)
    metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
    if metrics_fn is not None:
      metrics.update(metrics_fn(ys, batch.targets))
    return TrainState(params, opt_state, carried, next_key), metrics

  return jax.jit(train_step) if jit else train_step


def make_eval_step(model: core.Model, loss_fn: Callable = losses.softmax_cross_entropy,
                   jit: bool = True):
  """(params, states, Batch) -> (loss, carried states): scoring without learning."""

  def eval_step(params, states, batch: Batch):
    loss, (final, _) = window_loss(model, loss_fn, params, states, batch)
    return loss, jax.vmap(model.truncate)(final)

  return jax.jit(eval_step) if jit else eval_step
