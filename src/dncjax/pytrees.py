"""The pytrees that data, training and parallel code pass between them."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import optax

Params = dict[str, jax.Array]  # a model's parameters: flat, seed names


class Batch(NamedTuple):
  """One window for B lanes: inputs, [B, S] token ids or [B, S, I] floats; targets,
  [B, S] ids or a loss's pytree (e.g. (targets, mask)); reset, [B] bool, the lanes
  that start from the model's initial state."""
  inputs: jax.Array   # [B, S] token ids, or [B, S, I] float vectors
  targets: Any        # [B, S] token ids (or a loss-specific pytree)
  reset: jax.Array    # [B] bool: the lane starts from the initial state


class TrainState(NamedTuple):
  """What a train step carries: params; opt_state, the optimiser's state;
  model_state, the lanes' recurrent states (leading axis B); key, raw uint32
  [2] PRNG key data for dropout (None: no dropout)."""
  params: Params
  opt_state: optax.OptState
  model_state: Any  # leading axis B
  key: jax.Array | None = None  # raw uint32 [2] PRNG key data for dropout (None: no dropout)
