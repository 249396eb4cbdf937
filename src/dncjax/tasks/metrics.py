"""How a task run is scored: bit errors per sequence (wrong bits at 0.5 on the masked
steps; the loss, sigmoid cross-entropy, is `training.losses.sigmoid_cross_entropy`), and
the jitted evaluation on fixed sequences."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dncjax import pytrees
from dncjax.models import core
from dncjax.tasks.generators import Sequences
from dncjax.training import losses


def bit_errors_per_sequence(logits_BxTxO: jax.Array, targets_and_mask) -> jax.Array:
  """Wrong bits of each sequence [B]: a bit is predicted 1 where sigmoid(y) > 0.5 (y > 0)
  and counted only at masked steps."""
  targets, mask = targets_and_mask
  wrong = (logits_BxTxO > 0) != (targets > 0.5)
  return (wrong.sum(-1) * mask).sum(-1)


def bit_errors(logits_BxTxO: jax.Array, targets_and_mask) -> jax.Array:
  """Wrong bits per sequence, mean over B (see `bit_errors_per_sequence`)."""
  return bit_errors_per_sequence(logits_BxTxO, targets_and_mask).mean()


def task_metrics(ys, targets_and_mask) -> dict:
  """The `metrics_fn` of `train.make_train_step`: bit errors of the training batch."""
  return {"bit_errors": bit_errors(ys, targets_and_mask)}


def to_batch(seqs: Sequences, dtype="float32") -> pytrees.Batch:
  """A `pytrees.Batch` whose lanes all start from the initial state."""
  return pytrees.Batch(jnp.asarray(seqs.inputs, dtype),
                     (jnp.asarray(seqs.targets, dtype), jnp.asarray(seqs.mask, dtype)),
                     jnp.ones((seqs.inputs.shape[0],), bool))


def make_evaluate(model: core.Model):
  """Jitted (params, Batch) -> {loss, bit_errors (both per sequence), perfect (the share
  of sequences without a wrong bit)}, every sequence from the initial state."""

  @jax.jit
  def evaluate(params, batch: pytrees.Batch):
    states = core.batch_initial_state(model, batch.inputs.shape[0])
    _, ys = core.batch_unroll(model, params, states, batch.inputs)
    errors_B = bit_errors_per_sequence(ys, batch.targets)
    return {"loss": losses.sigmoid_cross_entropy(ys, batch.targets), "bit_errors": errors_B.mean(),
            "perfect": (errors_B == 0).mean()}

  return evaluate
