"""Losses, summed as the seed sums them, and bits per character.

Cross-entropy is SUMMED over the window and the batch, as in the seed; bits per character
BPC = loss / (ln 2 * B * S). A loss takes (outputs y, targets) where targets may be a
pytree (targets, mask): the masked losses score only the positions whose mask is 1.
"""

from __future__ import annotations

import math

import jax
import optax


def softmax_cross_entropy_per_position(logits_BxSxV: jax.Array, targets_BxS: jax.Array):
  """-log softmax(y)[target] at each position [B, S] (log-sum-exp, stable)."""
  return optax.softmax_cross_entropy_with_integer_labels(logits_BxSxV, targets_BxS)


def softmax_cross_entropy(logits_BxSxV: jax.Array, targets_BxS: jax.Array) -> jax.Array:
  """Summed -log softmax(y)[target] over batch and time."""
  return softmax_cross_entropy_per_position(logits_BxSxV, targets_BxS).sum()


def bits_per_char(loss_sum, num_chars: int):
  """BPC: a loss summed over `num_chars` characters, in nats, over ln 2 * num_chars."""
  return loss_sum / (math.log(2) * num_chars)


def masked_cross_entropy(logits, targets_and_mask):
  """Summed cross-entropy (nats) over the positions whose mask is 1."""
  targets, mask = targets_and_mask
  return (softmax_cross_entropy_per_position(logits, targets) * mask).sum()


def sigmoid_cross_entropy(logits_BxTxO: jax.Array, targets_and_mask) -> jax.Array:
  """Sigmoid cross-entropy (nats) summed over channels and masked steps, mean over B.

  `targets_and_mask` is (targets [B, T, O], mask [B, T]): the `loss_fn` of
  `train.make_train_step` with `Batch.targets = (targets, mask)`.
  """
  targets, mask = targets_and_mask
  per_step = optax.sigmoid_binary_cross_entropy(logits_BxTxO, targets).sum(-1)
  return (per_step * mask).sum() / mask.shape[0]
