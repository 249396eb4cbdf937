"""The paper's DNC (Graves et al., Nature 538, 2016): an LSTM controller and the memory
access of `access.py` (content lookup, dynamic allocation, temporal links; one write
head, R read heads, memory M [N, W]).

Per step, for a controller of L layers of H units (Methods, "Controller network"):

  chi_t = [x_t; r^1_{t-1}; ...; r^R_{t-1}]                 input and previous reads
  gates^l = W_xh^l x_t + W_rh^l r_{t-1} + W_lh^l h^{l-1}_t + W_hh^l h^l_{t-1} + b_h^l
                                                           (W_lh only for l > 1)
  h^l_t, c^l_t = lstm_cell(gates^l, c^l_{t-1})             `lstm.lstm_cell`, variant
  h_t = [h^1_t; ...; h^L_t]                                [L H]
  xi_t = W_hi h_t + b_i                                    interface [W R + 3 W + 5 R + 3]
  access: M_t, ..., r_t = access_step(access_{t-1}, parse_interface(xi_t))
  y_t = W_hy h_t + b_y + W_ry [r^1_t; ...; r^R_t]          output [O]

The model is split as the core interface allows: `recur` (the scanned recurrence) emits
the features (h_t, r_t) and `readout` maps them to y_t, so training applies the output
layer to all T steps at once, outside the scan (and may drop out the features).

Params, a flat dict, matrices (out, in): the first layer's Wxh [4H, I], Wrh [4H, R W],
Whh [4H, H], bh [4H]; layer l >= 1 (0-based) has Wxh_l, Wrh_l, Whh_l, bh_l and
Wlh_l [4H, H] from the layer below; Whi [X, L H], bi [X] (X = interface size);
Why [O, L H], by [O], Wry [O, R W].

Three options, off by default (the paper's DNC), come from Csordas & Schmidhuber (ICLR
2019): `deallocate` (freeing wipes the slot), `link_sharpness` (f_t, b_t sharpened by a
learned per-head exponent) and `key_masking` (learned masks on the content look-ups); the
last two add 2 R and W + R W rows to the interface (`access.interface_size`).

With `controller_clip` set, the controller's h and c and the output y_t are clipped to
[-controller_clip, controller_clip] (deepmind/dnc clips its controller output, state and output
at 20). With `remat` (the default) the backward pass recomputes each step from its
inputs instead of storing its intermediates, several [N, N] arrays per step: about
1.3x faster at N = 256 on a CPU and no slower at N = 16. With `reset_memory`,
`truncate` wipes the access state (memory, usage, links, weights, reads) between
windows; the controller's state always carries over.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from dncjax.models import access, core, lstm
from dncjax.models.hparams import DNCConfig


class DNCState(NamedTuple):
  """The DNC's state (one example): controller, one `lstm.LSTMState` (h [H],
  c [H]) per controller layer; access, the `access.AccessState` (M_t [N, W],
  u_t [N], L_t [N, N], p_t [N], w^r_t [R, N], w^w_t [N], r_t [R, W])."""
  controller: tuple[lstm.LSTMState, ...]  # one LSTMState (h [H], c [H]) per layer
  access: access.AccessState              # M_t, u_t, L_t, p_t, w^r_t, w^w_t, r_t





def _layer_suffix(layer: int) -> str:
  return "" if layer == 0 else f"_{layer}"


def _init_params(config: DNCConfig, key: jax.Array) -> core.Params:
  """The params of `config` (see the module docstring): matrices ~ N(0, init_scale^2),
  biases zero but the forget gate's b_h, `forget_bias`."""
  H, W, R = config.hidden, config.word_size, config.read_heads
  L, O, dtype, s = config.controller_layers, config.output_size, config.dtype, config.init_scale
  X = access.interface_size(W, R, config.link_sharpness, config.key_masking)  # interface size X
  shapes = {}
  for layer in range(L):
    sfx = _layer_suffix(layer)
    shapes[f"Wxh{sfx}"] = (4 * H, config.input_size)
    shapes[f"Wrh{sfx}"] = (4 * H, R * W)
    shapes[f"Whh{sfx}"] = (4 * H, H)
    if layer > 0:
      shapes[f"Wlh{sfx}"] = (4 * H, H)
  shapes.update(Whi=(X, L * H), Why=(O, L * H), Wry=(O, R * W))
  keys = jax.random.split(key, len(shapes))
  params = {name: core.normal(k, shape, s, dtype)
            for k, (name, shape) in zip(keys, shapes.items())}
  for layer in range(L):  # gate order i, o, f, g: the forget bias sits in [2H:3H]
    params[f"bh{_layer_suffix(layer)}"] = (
        jnp.zeros((4 * H,), dtype).at[2 * H:3 * H].set(config.forget_bias))
  params.update(bi=jnp.zeros((X,), dtype), by=jnp.zeros((O,), dtype))
  return params


def make(config: DNCConfig) -> core.Model:
  """The paper's DNC of `config` as a `core.Model` (see the module docstring): recur
  emits (h_t [L H], r_t [R W]); `truncate` wipes the access state if `reset_memory`."""
  H, N, W, R = config.hidden, config.memory_size, config.word_size, config.read_heads
  L, dtype = config.controller_layers, config.dtype
  extras = (config.link_sharpness, config.key_masking)  # Csordas & Schmidhuber's interface

  def init(key):
    return _init_params(config, key)

  def initial_state():
    zeros = jnp.zeros((H,), dtype)
    return DNCState(controller=tuple(lstm.LSTMState(h=zeros, c=zeros) for _ in range(L)),
                    access=access.initial_access_state(N, W, R, dtype))

  def clip(a):
    if config.controller_clip is None:
      return a
    return jnp.clip(a, -config.controller_clip, config.controller_clip)

  def recur(params, state, x):
    """One step of the recurrence -> (state, features (h_t [L H], r_t [R W]))."""
    reads_RW = state.access.read_vectors.reshape(R * W)  # r_{t-1}
    layers, below = [], None
    for layer, prev in enumerate(state.controller):
      sfx = _layer_suffix(layer)
      gates = (core.input_projection(params[f"Wxh{sfx}"], x) + params[f"Wrh{sfx}"] @ reads_RW
               + params[f"Whh{sfx}"] @ prev.h + params[f"bh{sfx}"])
      if below is not None:  # h^{l-1}_t from the layer below
        gates = gates + params[f"Wlh{sfx}"] @ below
      new = lstm.lstm_cell(gates, prev.c, config.variant)
      layers.append(lstm.LSTMState(h=clip(new.h), c=clip(new.c)))
      below = layers[-1].h
    h_LH = jnp.concatenate([layer_state.h for layer_state in layers])  # h_t [L H]
    interface = access.parse_interface(params["Whi"] @ h_LH + params["bi"], W, R, *extras)
    access_state = access.access_step(state.access, interface, norm_eps=config.norm_eps,
                                      usage_eps=config.usage_eps, deallocate=config.deallocate)
    features = (h_LH, access_state.read_vectors.reshape(R * W))
    return DNCState(controller=tuple(layers), access=access_state), features

  def readout(params, features):
    """y_t = W_hy h_t + b_y + W_ry r_t (clipped), from recur's features."""
    h_LH, reads_RW = features
    return clip(params["Why"] @ h_LH + params["by"] + params["Wry"] @ reads_RW)

  if config.remat:  # store only each step's inputs for the backward pass, not its N x N
    recur = jax.checkpoint(recur)  # intermediates (L_t, its masks): faster on CPU at large N

  def truncate(state):
    if not config.reset_memory:
      return state
    return state._replace(access=jax.tree.map(jnp.zeros_like, state.access))  # all zero

  return core.split_model(init, initial_state, recur, readout, truncate, config)


