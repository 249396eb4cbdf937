"""LSTM as the seed's lstm-numpy.py computes it, plus the textbook cell.

Pre-activations are stacked in the seed's gate order, rows of W_xh / W_hh / b_h:

  [0:H] i (sigmoid)   [H:2H] o (sigmoid)   [2H:3H] f (sigmoid)   [3H:4H] g (tanh)

  seed:     c_t = tanh(g * i + f * c_{t-1}),  h_t = o * c_t   (stored cell is squashed)
  textbook: c_t = g * i + f * c_{t-1},        h_t = o * tanh(c_t)

  y_t = W_hy h_t + b_y. The forget bias b_h[2H:3H] starts at 1.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from dncjax.models import core
from dncjax.models.hparams import LSTMConfig



class LSTMState(NamedTuple):
  """One LSTM layer's state: h, the output h_t [H]; c, the cell c_t [H] (squashed
  by tanh in the seed variant)."""
  h: jax.Array  # [H]
  c: jax.Array  # [H]


def lstm_cell(gates_4H: jax.Array, c_prev: jax.Array, variant: str) -> LSTMState:
  """One LSTM update from the stacked pre-activations [4H] (order i, o, f, g)."""
  i, o, f = jnp.split(jax.nn.sigmoid(gates_4H[: 3 * c_prev.shape[0]]), 3)
  g = jnp.tanh(gates_4H[3 * c_prev.shape[0]:])
  c = g * i + f * c_prev
  if variant == "seed":
    c = jnp.tanh(c)
    return LSTMState(h=o * c, c=c)
  return LSTMState(h=o * jnp.tanh(c), c=c)


def init_controller(key, config, input_size: int, extra: dict[str, int] | None = None):
  """The LSTM's own parameters (Wxh, Whh, Why, bh, by) plus `extra` input matrices
  (name -> input width) into the 4H gates, e.g. the DNC's read vector W_rh."""
  H, s, dtype = config.hidden, config.init_scale, config.dtype
  extra = extra or {}
  keys = jax.random.split(key, 3 + len(extra))
  bh = jnp.zeros((4 * H,), dtype).at[2 * H:3 * H].set(config.forget_bias)
  params = {
      "Wxh": core.normal(keys[0], (4 * H, input_size), s, dtype),
      "Whh": core.normal(keys[1], (4 * H, H), s, dtype),
      "Why": core.normal(keys[2], (config.output_size, H), s, dtype),
      "bh": bh,
      "by": jnp.zeros((config.output_size,), dtype),
  }
  for k, (name, width) in zip(keys[3:], extra.items()):
    params[name] = core.normal(k, (4 * H, width), s, dtype)
  return params





def make(config: LSTMConfig) -> core.Model:
  """The LSTM of `config` as a `core.Model`: recur emits h_t [H], readout gives
  y_t = W_hy h_t + b_y [O]; the state carries over windows unchanged."""
  H, dtype = config.hidden, config.dtype

  def init(key):
    return init_controller(key, config, config.input_size)

  def initial_state():
    return LSTMState(h=jnp.zeros((H,), dtype), c=jnp.zeros((H,), dtype))

  def recur(params, state, x):
    gates = core.input_projection(params["Wxh"], x) + params["Whh"] @ state.h + params["bh"]
    state = lstm_cell(gates, state.c, config.variant)
    return state, state.h

  def readout(params, h):
    return params["Why"] @ h + params["by"]

  return core.split_model(init, initial_state, recur, readout, core.keep_state, config)


