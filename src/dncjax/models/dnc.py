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
at 20). With `remat` the backward pass recomputes each step from its inputs instead of
storing what it needs (the link step's backward pass, `links.py`, needs only L_{t-1},
which the scan keeps anyway): 1.4x less temporary memory at N = 256, but 1.03-1.16x
slower on a 2-core CPU at N = 16 to 1,024, so it is off by default. Without `remat` and with
`link_history` (the default), training differentiates the unroll through `history.py`
(every L_t kept in one buffer that the CPU link kernel writes in place; the model's
`scan`), where that kernel is the link step. With `reset_memory`,
`truncate` wipes the access state (memory, usage, links, weights, reads) between
windows; the controller's state always carries over.
"""

from __future__ import annotations

from typing import NamedTuple

import jax

from dncjax.models import access, controller, core, history, lstm
from dncjax.models.hparams import DNCConfig


class DNCState(NamedTuple):
  """The DNC's state (one example): controller, one `lstm.LSTMState` (h [H],
  c [H]) per controller layer; access, the `access.AccessState` (M_t [N, W],
  u_t [N], L_t [N, N], p_t [N], w^r_t [R, N], w^w_t [N], r_t [R, W])."""
  controller: tuple[lstm.LSTMState, ...]  # one LSTMState (h [H], c [H]) per layer
  access: access.AccessState              # M_t, u_t, L_t, p_t, w^r_t, w^w_t, r_t


def make(config: DNCConfig) -> core.Model:
  """The paper's DNC of `config` as a `core.Model` (see the module docstring): the LSTM
  controller of `controller.py` around `access.access_step`; recur emits (h_t [L H],
  r_t [R W]); `truncate` wipes the access state if `reset_memory`."""
  N, W, R = config.memory_size, config.word_size, config.read_heads
  extras = (config.link_sharpness, config.key_masking)  # Csordas & Schmidhuber's interface

  def access_step(state: access.AccessState, xi: jax.Array) -> access.AccessState:
    interface = access.parse_interface(xi, W, R, *extras)
    return access.access_step(state, interface, norm_eps=config.norm_eps,
                              usage_eps=config.usage_eps, deallocate=config.deallocate,
                              fused=config.access_kernels, xi=xi)

  model = controller.make(config, access.interface_size(W, R, *extras),
                          lambda: access.initial_access_state(N, W, R, config.dtype),
                          access_step, state_type=DNCState)
  if not config.link_history or config.remat:
    return model
  return model._replace(scan=lambda fn, params, state, xs: history.batch_scan(
      fn, _LINKS, params, state, xs))


def _get_link(state: DNCState):
  return state.access.link


def _put_link(state: DNCState, link) -> DNCState:
  return state._replace(access=state.access._replace(link=link))


_LINKS = history.dense_links(_get_link, _put_link)
