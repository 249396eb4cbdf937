"""The seed's simplified DNC (dnc-numpy.py and dnc-debug.py): an LSTM controller, one
memory M [N, W], one write head and one read head, no allocation and no temporal links.

Per step, with h_t the controller output (gates see [x_t, r_{t-1}] through W_xh, W_rh):

  addressing 'location' (dnc-numpy.py):  s^w = W_hw h_t [N],        s^r = W_hr h_t [N]
  addressing 'content'  (dnc-debug.py):  s^w = M_{t-1} (W_hw h_t),  s^r = M_{t-1} (W_hr h_t)
                                          (keys W_hw h_t, W_hr h_t of size W)
  w^w = softmax(s^w), w^r = softmax(s^r)          [N]
  e_t = sigmoid(W_he h_t), v_t = W_hv h_t         [W]
  M_t = M_{t-1} * (1 - w^w e_t^T) + w^w v_t^T     [N, W]
  r_t = M_t^T w^r                                 [W]
  y_t = W_hy h_t + b_y + W_ry r_t

dnc-debug.py's forward pass writes and reads with the pre-softmax scores s (not w) while
its backward pass assumes the softmax weights, so its gradients are not those of its
forward pass. This module implements the softmax version, whose gradients the NumPy
oracle (tests/oracle.py) and `jax.grad` agree on. `jax.nn.softmax` subtracts the max,
so large scores cannot overflow (the seed's README admits divide-by-zero crashes).

As in the seed, the memory and read vector are wiped at every window (`reset_memory`),
while the controller's h and c carry over.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from dncjax.models import core, lstm
from dncjax.models.hparams import SeedDNCConfig



class SeedDNCState(NamedTuple):
  """The seed DNC's state: h and c, the controller's output and cell [H];
  memory, M_t [N, W]; read, the read vector r_t [W]."""
  h: jax.Array       # [H] controller output
  c: jax.Array       # [H] controller cell
  memory: jax.Array  # [N, W] M_t
  read: jax.Array    # [W] r_t





def make(config: SeedDNCConfig) -> core.Model:
  """The seed's simplified DNC of `config` as a `core.Model`: recur emits (h_t [H],
  r_t [W]); `truncate` wipes the memory and read vector if `reset_memory`."""
  H, N, W, dtype = config.hidden, config.memory_size, config.word_size, config.dtype
  key_size = W if config.addressing == "content" else N

  def init(key):
    k_lstm, k_hv, k_hr, k_hw, k_he, k_ry = jax.random.split(key, 6)
    s = config.init_scale
    params = lstm.init_controller(k_lstm, config, config.input_size, {"Wrh": W})
    params.update(
        Whv=core.normal(k_hv, (W, H), s, dtype),
        Whr=core.normal(k_hr, (key_size, H), s, dtype),
        Whw=core.normal(k_hw, (key_size, H), s, dtype),
        Whe=core.normal(k_he, (W, H), s, dtype),
        Wry=core.normal(k_ry, (config.output_size, W), s, dtype),
    )
    return params

  def initial_state():
    zeros = lambda *shape: jnp.zeros(shape, dtype)
    return SeedDNCState(h=zeros(H), c=zeros(H), memory=zeros(N, W), read=zeros(W))

  def recur(params, state, x):
    gates = (core.input_projection(params["Wxh"], x) + params["Whh"] @ state.h
             + params["bh"] + params["Wrh"] @ state.read)
    ctrl = lstm.lstm_cell(gates, state.c, config.variant)
    h, memory_prev = ctrl.h, state.memory
    write_scores, read_scores = params["Whw"] @ h, params["Whr"] @ h
    if config.addressing == "content":  # scores M_{t-1} k against the previous memory
      write_scores, read_scores = memory_prev @ write_scores, memory_prev @ read_scores
    w_write = jax.nn.softmax(write_scores)      # w^w [N]
    w_read = jax.nn.softmax(read_scores)        # w^r [N]
    erase = jax.nn.sigmoid(params["Whe"] @ h)   # e_t [W]
    value = params["Whv"] @ h                   # v_t [W]
    memory = memory_prev * (1 - jnp.outer(w_write, erase)) + jnp.outer(w_write, value)
    read = memory.T @ w_read                    # r_t [W]
    return SeedDNCState(h=h, c=ctrl.c, memory=memory, read=read), (h, read)

  def readout(params, features):
    h, read = features
    return params["Why"] @ h + params["by"] + params["Wry"] @ read

  def truncate(state):
    if not config.reset_memory:
      return state
    return state._replace(memory=jnp.zeros_like(state.memory), read=jnp.zeros_like(state.read))

  return core.split_model(init, initial_state, recur, readout, truncate, config)


