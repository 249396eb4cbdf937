"""The DNC's LSTM controller (Graves et al. 2016, Methods, "Controller network") around any
memory access: the paper's DNC (`dnc.py`) and the sparse memory cores `sam` and `sdnc`.

Per step, for L layers of H units and an access whose state carries the reads r_t [R, W]:

  chi_t = [x_t; r^1_{t-1}; ...; r^R_{t-1}]                 input and previous reads
  gates^l = W_xh^l x_t + W_rh^l r_{t-1} + W_lh^l h^{l-1}_t + W_hh^l h^l_{t-1} + b_h^l
  h^l_t, c^l_t = lstm_cell(gates^l, c^l_{t-1})             `lstm.lstm_cell`, variant
  h_t = [h^1_t; ...; h^L_t]                                [L H]
  xi_t = W_hi h_t + b_i                                    interface [X]
  access_t = access_step(access_{t-1}, xi_t)               the core's memory access
  y_t = W_hy h_t + b_y + W_ry [r^1_t; ...; r^R_t]          output [O]

The params have the same names, shapes, order and initialisation for every access: with
the DNC's interface size X, a sparse core draws the DNC's own params from the same key.
`recur` emits (h_t, r_t) and `readout` maps them to y_t, outside the scan.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from dncjax.models import core, lstm


class MemoryCoreState(NamedTuple):
  """A memory core's state (one example): controller, one `lstm.LSTMState` (h [H],
  c [H]) per layer; access, the state of the core's memory access (with read_vectors)."""
  controller: tuple[lstm.LSTMState, ...]
  access: Any


def _suffix(layer: int) -> str:
  return "" if layer == 0 else f"_{layer}"


def init_params(config, key: jax.Array, interface_size: int) -> core.Params:
  """The controller's params for an interface of `interface_size` X: matrices
  ~ N(0, init_scale^2) (the DNC's names and draws), biases zero but the forget gate's."""
  H, W, R = config.hidden, config.word_size, config.read_heads
  L, O, dtype, s = config.controller_layers, config.output_size, config.dtype, config.init_scale
  shapes = {}
  for layer in range(L):
    sfx = _suffix(layer)
    shapes[f"Wxh{sfx}"] = (4 * H, config.input_size)
    shapes[f"Wrh{sfx}"] = (4 * H, R * W)
    shapes[f"Whh{sfx}"] = (4 * H, H)
    if layer > 0:
      shapes[f"Wlh{sfx}"] = (4 * H, H)
  shapes.update(Whi=(interface_size, L * H), Why=(O, L * H), Wry=(O, R * W))
  keys = jax.random.split(key, len(shapes))
  params = {name: core.normal(k, shape, s, dtype)
            for k, (name, shape) in zip(keys, shapes.items())}
  for layer in range(L):  # gate order i, o, f, g: the forget bias sits in [2H:3H]
    params[f"bh{_suffix(layer)}"] = (
        jnp.zeros((4 * H,), dtype).at[2 * H:3 * H].set(config.forget_bias))
  params.update(bi=jnp.zeros((interface_size,), dtype), by=jnp.zeros((O,), dtype))
  return params


def make(config, interface_size: int, initial_access: Callable[[], Any],
         access_step: Callable[[Any, jax.Array], Any],
         state_type: type = MemoryCoreState) -> core.Model:
  """The core of `config` (hidden, controller_layers, variant, controller_clip, remat,
  reset_memory, ...) around `access_step(access state, xi_t) -> access state`; its state
  is a `state_type(controller, access)`; `truncate` restarts the access from
  `initial_access()` if `reset_memory`."""
  H, R, W = config.hidden, config.read_heads, config.word_size
  L, dtype = config.controller_layers, config.dtype

  def init(key):
    return init_params(config, key, interface_size)

  def initial_state():
    zeros = jnp.zeros((H,), dtype)
    return state_type(controller=tuple(lstm.LSTMState(h=zeros, c=zeros) for _ in range(L)),
                      access=initial_access())

  def clip(a):
    if config.controller_clip is None:
      return a
    return jnp.clip(a, -config.controller_clip, config.controller_clip)

  def recur(params, state, x):
    """One step of the recurrence -> (state, features (h_t [L H], r_t [R W]))."""
    reads_RW = state.access.read_vectors.reshape(R * W)  # r_{t-1}
    layers, below = [], None
    for layer, prev in enumerate(state.controller):
      sfx = _suffix(layer)
      gates = (core.input_projection(params[f"Wxh{sfx}"], x) + params[f"Wrh{sfx}"] @ reads_RW
               + params[f"Whh{sfx}"] @ prev.h + params[f"bh{sfx}"])
      if below is not None:  # h^{l-1}_t from the layer below
        gates = gates + params[f"Wlh{sfx}"] @ below
      new = lstm.lstm_cell(gates, prev.c, config.variant)
      layers.append(lstm.LSTMState(h=clip(new.h), c=clip(new.c)))
      below = layers[-1].h
    h_LH = jnp.concatenate([layer_state.h for layer_state in layers])  # h_t [L H]
    access = access_step(state.access, params["Whi"] @ h_LH + params["bi"])
    features = (h_LH, access.read_vectors.reshape(R * W))
    return state_type(controller=tuple(layers), access=access), features

  def readout(params, features):
    """y_t = W_hy h_t + b_y + W_ry r_t (clipped), from recur's features."""
    h_LH, reads_RW = features
    return clip(params["Why"] @ h_LH + params["by"] + params["Wry"] @ reads_RW)

  if config.remat:  # the backward pass stores each step's inputs only, not the access's
    recur = jax.checkpoint(recur)  # intermediates (the DNC's L_t and its masks)

  def truncate(state):
    if not config.reset_memory:
      return state
    return state._replace(access=initial_access())

  return core.split_model(init, initial_state, recur, readout, truncate, config)
