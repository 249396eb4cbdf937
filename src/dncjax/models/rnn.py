"""Vanilla RNN (the seed's rnn-numpy.py, after min-char-rnn).

  h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h)
  y_t = W_hy h_t + b_y
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from dncjax.models import core
from dncjax.models.hparams import RNNConfig





class RNNState(NamedTuple):
  """The RNN's state: h, the hidden vector h_t [H]."""
  h: jax.Array  # [H]


def make(config: RNNConfig) -> core.Model:
  """The vanilla RNN of `config` as a `core.Model`: recur emits h_t [H], readout gives
  y_t = W_hy h_t + b_y [O]; the state carries over windows unchanged."""
  H, V_in, V_out, dtype = config.hidden, config.input_size, config.output_size, config.dtype

  def init(key):
    k_xh, k_hh, k_hy = jax.random.split(key, 3)
    s = config.init_scale
    return {
        "Wxh": core.normal(k_xh, (H, V_in), s, dtype),
        "Whh": core.normal(k_hh, (H, H), s, dtype),
        "Why": core.normal(k_hy, (V_out, H), s, dtype),
        "bh": jnp.zeros((H,), dtype),
        "by": jnp.zeros((V_out,), dtype),
    }

  def initial_state():
    return RNNState(h=jnp.zeros((H,), dtype))

  def recur(params, state, x):
    h = jnp.tanh(core.input_projection(params["Wxh"], x) + params["Whh"] @ state.h + params["bh"])
    return RNNState(h), h

  def readout(params, h):
    return params["Why"] @ h + params["by"]

  return core.split_model(init, initial_state, recur, readout, core.keep_state, config)


