"""The pytrees that data, training and parallel code pass between them."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import optax

Params = dict[str, jax.Array]  # a model's parameters: flat, seed names


class Batch(NamedTuple):
  inputs: jax.Array   # [B, S] token ids, or [B, S, I] float vectors
  targets: Any        # [B, S] token ids (or a loss-specific pytree)
  reset: jax.Array    # [B] bool: the lane starts from the initial state


class TrainState(NamedTuple):
  params: Params
  opt_state: optax.OptState
  model_state: Any  # leading axis B
  key: jax.Array | None = None  # raw uint32 [2] PRNG key data for dropout (None: no dropout)
