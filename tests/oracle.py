"""NumPy oracle: the seed's (krocki/dnc) forward and hand-written backward passes.

An independent reference for the JAX models, written without autodiff. Each model is a
function of plain NumPy arrays

  (params, inputs, targets, state) -> (loss, grads, state)

  params   dict of float64 arrays: the seed's names, the JAX package's shapes, matrices
           (out, in), biases 1-D; the 4H gate rows of an LSTM are ordered i, o, f, g
  inputs   int [B, S] token ids; targets int [B, S]
  state    rnn {'h' [B,H]}; lstm {'h', 'c'}; seed_dnc {'h', 'c', 'memory' [B,N,W], 'read' [B,W]}
  loss     cross-entropy in nats, SUMMED over batch and time
  grads    dict with the keys and shapes of params
  state    (returned) the final state of the window, nothing reset

Inside, arrays use the seed's column layout, features first and batch last (h [H,B],
memory [N,W,B]); time is a Python loop, the forward pass then the backward pass.

  rnn                 rnn-numpy.py:  h_t = tanh(W_xh x_t + W_hh h_{t-1} + b_h)
  lstm                lstm-numpy.py, the seed cell: c_t = tanh(g*i + f*c_{t-1}), h_t = o*c_t
  seed_dnc_location   dnc-numpy.py:  scores s^w = W_hw h_t, s^r = W_hr h_t  [N]
  seed_dnc_content    dnc-debug.py:  scores s^w = M_{t-1} (W_hw h_t), s^r = M_{t-1} (W_hr h_t),
                      forward FIXED to write and read with w = softmax(s) (as dncjax does),
                      with a correct backward (keys and M_{t-1} through the scores included)

  seed DNC step:  w^w = softmax(s^w), w^r = softmax(s^r), e = sigmoid(W_he h), v = W_hv h,
                  M_t = M_{t-1} * (1 - w^w e^T) + w^w v^T,  r_t = M_t^T w^r,
                  y_t = W_hy h_t + b_y + W_ry r_t; the controller gates also see W_rh r_{t-1}.

Findings on dnc-debug.py (line numbers of krocki/dnc HEAD; tested in tests/test_oracle.py)
-----------------------------------------------------------------------------------------
`seed_dnc_content_original_backward` ports dnc-debug.py's hand-written backward, mistakes
and all, and runs it on the softmax forward (the forward that backward was derived for).
Its terms for the read/write weights into memory, erase, new content, the LSTM, W_rh and the
output are right; three are wrong (each can be switched off alone, see `mistakes`):

  (a) Softmax backward (l. 295-296) `w * (d - sum(d))`; correct is `w * (d - sum(w*d))`.
      CONFIRMED. It adds w * (sum(w*d) - sum(d)), a vector along w, to the score gradients,
      whose entries then no longer sum to zero.
  (b) Gradient into M_{t-1} through the content scores (l. 303-305): `np.dot(ds_b [1,N],
      k_b [W,1])` is a 1x1 matrix, the scalar sum_i ds_i k_i (pairing slot i with word entry
      i), broadcast-added to every entry of dM_{t-1}; correct is the outer product ds k^T
      [N,W]. CONFIRMED; only shape-valid when N == W (dnc-debug.py has MN = MW = 12),
      otherwise np.dot raises ValueError.
  (f) NEW: the key gradients (l. 316-319) are `np.dot(M_{t-1,b} [N,W], ds_b [N,1])`, i.e.
      M_{t-1} ds, but s = M_{t-1} k needs dk = M_{t-1}^T ds: the memory is not transposed
      (again only shape-valid when N == W).

  How wrong, as ||g_seed - g|| / ||g|| per parameter (Frobenius, window sum, median of 5
  draws; `original_backward_errors`):
    B=3, S=5, V=7, H=6, N=W=5, random initial memory N(0, 0.5^2):
      init 0.01  W_hw 2.0, W_hr 1.7; W_xh, W_hh, b_h, W_rh ~6e-3; W_hv, W_he ~3e-4
      init 1.0   W_hw 29, W_hr 3.4, W_xh 5.8, W_hh 2.2, b_h 4.5, W_rh 4.6, W_hv 6.7, W_he 5.0
                 alone: (a) 1.0..11, (b) 0.2..0.5, (f) 0.1..1.1 (each > 5% somewhere: tested)
    the seed's own setting, M = 0 at every window, B=4, S=10, V=20, H=32, N=W=12:
      init 1e-5 (its rngAmp): all exact but W_hw, W_hr, whose true gradient is 0 (see (j))
                 and the seed's ~1e-28, harmless
      init 0.01  others <= 3e-6; W_hw, W_hr ~1e-9 against 0
      init 1.0   the backward explodes: ||g_seed|| ~1e11..1e13 against ||g|| ~1e0..1e2;
                 (a) alone already gives ~1e9 relative error, (a) + (b) ~1e11
  W_hy, b_y and W_ry never see the memory backward and are always exact. With all three
  mistakes removed the port equals the correct backward to rounding (tested).

Beyond the backward:
  (g) The original FORWARD (l. 400-410) writes and reads with the raw scores s, not
      softmax(s), and every window starts from M = 0 (`put` never returns the memory, so the
      global M keeps the zeros of `clear()`). Then s = M_{t-1} k = 0, M_t = 0 and r_t = 0 at
      every step: the memory is inert and the model is an LSTM. The loss does not depend on
      W_hv, W_he, W_hw, W_hr, W_ry, W_rh, yet the backward (which uses softmax weights 1/N)
      gives W_hv a non-zero gradient and feeds W_hv^T dv into dh, biasing the LSTM's
      gradients (`seed_dnc_content_as_run` reproduces the script as it ran; tested).
  (j) Even with the softmax forward (dncjax's), content addressing from M = 0 can never
      break the symmetry between slots: s = 0 gives uniform w, every slot gets the same write,
      so all rows of M_t stay identical, the scores stay equal, w stays uniform, and W_hw, W_hr
      get exactly zero gradient (up to rounding). The memory acts as one slot. The seed's
      commented-out random memory init (l. 594) looks like an attempt at this. Tested, in the
      oracle and in dncjax with reset_memory=True.
  (c) `Whw` is missing from COMPONENTS (l. 609-610), the Adagrad update list: the write-key
      weights are never trained and stay at their 1e-5 init. CONFIRMED by reading.
  (d) `val = np.float32 if opt.fp64 else np.float64` (l. 61) is inverted: the default run is
      float64 and --fp64 gives float32. CONFIRMED by reading.
  (e) The sampler `get()` (l. 497-498) uses the textbook cell c = g*i + f*c, h = o*tanh(c)
      while training uses c = tanh(g*i + f*c), h = o*c. CONFIRMED. It also addresses by
      LOCATION, softmax(W_hw h) over MW entries used as MN slots (l. 502-512, valid only since
      MN == MW), not by content as training does, and its softmaxes skip the max shift.
  (h) gradCheck (l. 88) unpacks `_, dbh, dby = put(...)`, but put returns (loss, c, h): at
      'bh' its shape assert (4H,1) vs (H,B) fails, so --gradcheck crashes after the nine
      weight matrices.
  (i) The data pointer advances by S/3 (Soverlap, l. 672) while h and c carry over, so a
      window starts from the state at the end of a window that overlaps it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

MODELS = ("rnn", "lstm", "seed_dnc_location", "seed_dnc_content")
ORIGINAL_MISTAKES = ("softmax", "memory", "key")  # (a), (b), (f) above


# ---------------------------------------------------------------------------------------
# Pieces shared by the models (column layout: [features, B]).


def sigmoid(x):
  return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + exp(-x)), without overflow


def softmax(x, axis=0):
  """Stable softmax along `axis` (the seed's columns: axis 0 of [K, B])."""
  z = np.exp(x - x.max(axis=axis, keepdims=True))
  return z / z.sum(axis=axis, keepdims=True)


def softmax_backward(w, dw):
  """dL/ds of w = softmax(s) along axis 0 from dL/dw: w * (dw - sum(w * dw)). w, dw [K, B]."""
  return w * (dw - (w * dw).sum(axis=0, keepdims=True))


def one_hot(ids_B, V):
  """[V, B] columns of the identity, as the seed's `xs[t]`."""
  return np.eye(V)[:, ids_B]


def cross_entropy(y_VxB, targets_B):
  """(summed -log softmax(y)[target], dL/dy = p - onehot [V, B])."""
  logp = y_VxB - y_VxB.max(axis=0, keepdims=True)
  logp = logp - np.log(np.exp(logp).sum(axis=0, keepdims=True))
  cols = np.arange(len(targets_B))
  dy = np.exp(logp)
  dy[targets_B, cols] -= 1
  return -logp[targets_B, cols].sum(), dy


def _zeros_like(params):
  return {k: np.zeros_like(v) for k, v in params.items()}


def _column(b):
  return b[:, None]


def lstm_cell(a_4HxB, c_prev_HxB):
  """Seed LSTM cell from pre-activations [4H, B] (rows i, o, f, g): (gates, c, h).

  gates [4H, B] holds sigmoid(i, o, f) and tanh(g); c = tanh(g*i + f*c_prev); h = o*c.
  """
  H = c_prev_HxB.shape[0]
  gates = np.concatenate([sigmoid(a_4HxB[:3 * H]), np.tanh(a_4HxB[3 * H:])])
  i, o, f, g = np.split(gates, 4)
  c = np.tanh(g * i + f * c_prev_HxB)
  return gates, c, o * c


def lstm_cell_backward(gates, c, c_prev, dh, dc_next):
  """Backward of `lstm_cell`: (d pre-activations [4H, B], d c_prev [H, B]).

  dh is dL/dh_t; dc_next is the gradient reaching c_t from step t+1 (through f * c_t).
  """
  H = c.shape[0]
  i, o, f, g = np.split(gates, 4)
  dc = (dh * o + dc_next) * (1 - c * c)       # through the squashing tanh
  dgates = np.concatenate([g * dc, dh * c, c_prev * dc, i * dc])
  slope = np.concatenate([gates[:3 * H] * (1 - gates[:3 * H]), 1 - gates[3 * H:] ** 2])
  return dgates * slope, dc * f


# ---------------------------------------------------------------------------------------
# rnn-numpy.py


def rnn(params, inputs, targets, state):
  """Vanilla RNN window: loss, grads and the final {'h' [B,H]}. inputs, targets [B, S]."""
  Wxh, Whh, Why = params["Wxh"], params["Whh"], params["Why"]
  V, S = Wxh.shape[1], inputs.shape[1]
  xs = [one_hot(inputs[:, t], V) for t in range(S)]
  hs = [state["h"].T]                          # hs[t + 1] = h_t [H, B]
  loss, dys = 0.0, []
  for t in range(S):
    hs.append(np.tanh(Wxh @ xs[t] + Whh @ hs[t] + _column(params["bh"])))
    loss_t, dy = cross_entropy(Why @ hs[-1] + _column(params["by"]), targets[:, t])
    loss += loss_t
    dys.append(dy)

  grads = _zeros_like(params)
  dh_next = np.zeros_like(hs[0])
  for t in reversed(range(S)):
    grads["Why"] += dys[t] @ hs[t + 1].T
    grads["by"] += dys[t].sum(axis=1)
    da = (Why.T @ dys[t] + dh_next) * (1 - hs[t + 1] ** 2)
    grads["bh"] += da.sum(axis=1)
    grads["Wxh"] += da @ xs[t].T
    grads["Whh"] += da @ hs[t].T
    dh_next = Whh.T @ da
  return loss, grads, {"h": hs[-1].T.copy()}


# ---------------------------------------------------------------------------------------
# lstm-numpy.py


def lstm(params, inputs, targets, state):
  """Seed LSTM window: loss, grads and the final {'h', 'c'} [B,H]. inputs, targets [B, S]."""
  Wxh, Whh, Why = params["Wxh"], params["Whh"], params["Why"]
  V, S = Wxh.shape[1], inputs.shape[1]
  xs = [one_hot(inputs[:, t], V) for t in range(S)]
  hs, cs = [state["h"].T], [state["c"].T]      # hs[t + 1] = h_t
  gates, loss, dys = [], 0.0, []
  for t in range(S):
    g, c, h = lstm_cell(Wxh @ xs[t] + Whh @ hs[t] + _column(params["bh"]), cs[t])
    gates.append(g)
    cs.append(c)
    hs.append(h)
    loss_t, dy = cross_entropy(Why @ h + _column(params["by"]), targets[:, t])
    loss += loss_t
    dys.append(dy)

  grads = _zeros_like(params)
  dh_next, dc_next = np.zeros_like(hs[0]), np.zeros_like(cs[0])
  for t in reversed(range(S)):
    grads["Why"] += dys[t] @ hs[t + 1].T
    grads["by"] += dys[t].sum(axis=1)
    dh = Why.T @ dys[t] + dh_next
    da, dc_next = lstm_cell_backward(gates[t], cs[t + 1], cs[t], dh, dc_next)
    grads["bh"] += da.sum(axis=1)
    grads["Wxh"] += da @ xs[t].T
    grads["Whh"] += da @ hs[t].T
    dh_next = Whh.T @ da
  return loss, grads, {"h": hs[-1].T.copy(), "c": cs[-1].T.copy()}


# ---------------------------------------------------------------------------------------
# dnc-numpy.py (location) and dnc-debug.py (content): the seed DNC


class _DNCStep(NamedTuple):
  """What the backward pass needs of one forward step (column layout)."""
  x: np.ndarray        # [V, B] one-hot input
  h_prev: np.ndarray   # [H, B]
  c_prev: np.ndarray   # [H, B]
  r_prev: np.ndarray   # [W, B] r_{t-1}
  M_prev: np.ndarray   # [N, W, B] M_{t-1}
  gates: np.ndarray    # [4H, B] after the nonlinearities
  c: np.ndarray        # [H, B]
  h: np.ndarray        # [H, B]
  k_w: np.ndarray      # [K, B] W_hw h (K = N location, W content)
  k_r: np.ndarray      # [K, B] W_hr h
  w_w: np.ndarray      # [N, B] write weights
  w_r: np.ndarray      # [N, B] read weights
  e: np.ndarray        # [W, B] erase
  v: np.ndarray        # [W, B] new content
  M: np.ndarray        # [N, W, B] M_t
  r: np.ndarray        # [W, B] r_t
  dy: np.ndarray       # [V, B] dL/dy_t


def _seed_dnc_forward(params, inputs, targets, state, addressing, weights_from_scores=False):
  """Forward window of the seed DNC: (loss, [_DNCStep] * S).

  `weights_from_scores` reproduces dnc-debug.py's forward, which writes and reads with the
  raw scores s instead of softmax(s) (finding (g)); the steps still record w = softmax(s),
  which is what the seed's backward reads (`mem_write_gate[t]`). Only for the report.
  """
  p = params
  V, S = p["Wxh"].shape[1], inputs.shape[1]
  h, c = state["h"].T, state["c"].T
  M, r = state["memory"].transpose(1, 2, 0), state["read"].T
  loss, steps = 0.0, []
  for t in range(S):
    x = one_hot(inputs[:, t], V)
    a = p["Wxh"] @ x + p["Whh"] @ h + _column(p["bh"]) + p["Wrh"] @ r
    gates, c_new, h_new = lstm_cell(a, c)
    k_w, k_r = p["Whw"] @ h_new, p["Whr"] @ h_new
    s_w, s_r = k_w, k_r
    if addressing == "content":               # s_n = sum_j M_{t-1}[n, j] k_j
      s_w, s_r = np.einsum("njb,jb->nb", M, k_w), np.einsum("njb,jb->nb", M, k_r)
    w_w, w_r = softmax(s_w), softmax(s_r)
    a_w, a_r = (s_w, s_r) if weights_from_scores else (w_w, w_r)  # what addresses M
    e, v = sigmoid(p["Whe"] @ h_new), p["Whv"] @ h_new
    M_new = M * (1 - a_w[:, None] * e[None]) + a_w[:, None] * v[None]
    r_new = np.einsum("njb,nb->jb", M_new, a_r)
    y = p["Why"] @ h_new + _column(p["by"]) + p["Wry"] @ r_new
    loss_t, dy = cross_entropy(y, targets[:, t])
    loss += loss_t
    steps.append(_DNCStep(x, h, c, r, M, gates, c_new, h_new, k_w, k_r, w_w, w_r, e, v,
                          M_new, r_new, dy))
    h, c, M, r = h_new, c_new, M_new, r_new
  return loss, steps


def _final_state(steps):
  last = steps[-1]
  return {"h": last.h.T.copy(), "c": last.c.T.copy(),
          "memory": last.M.transpose(2, 0, 1).copy(), "read": last.r.T.copy()}


def _seed_dnc_backward(params, steps, addressing, mistakes=()):
  """Backward window of the seed DNC; `mistakes` (a subset of ORIGINAL_MISTAKES) swaps in
  dnc-debug.py's own terms for the content addressing."""
  p = params
  grads = _zeros_like(params)
  dh_next, dc_next = np.zeros_like(steps[0].h), np.zeros_like(steps[0].c)
  dr_next, dM_next = np.zeros_like(steps[0].r), np.zeros_like(steps[0].M)
  for st in reversed(steps):
    B = st.h.shape[1]
    grads["Why"] += st.dy @ st.h.T
    grads["by"] += st.dy.sum(axis=1)
    grads["Wry"] += st.dy @ st.r.T
    dr = p["Wry"].T @ st.dy + dr_next                             # dL/dr_t [W, B]
    dM = st.w_r[:, None] * dr[None] + dM_next                     # dL/dM_t [N, W, B]
    dw_r = np.einsum("njb,jb->nb", st.M, dr)
    dw_w = np.einsum("njb,njb->nb", dM, st.v[None] - st.e[None] * st.M_prev)
    de = -np.einsum("njb,njb->jb", dM, st.M_prev * st.w_w[:, None])
    dv = np.einsum("njb,nb->jb", dM, st.w_w)
    dM_prev = dM * (1 - st.w_w[:, None] * st.e[None])
    if "softmax" in mistakes:                                     # (a): sum(d), not sum(w*d)
      ds_w = st.w_w * (dw_w - dw_w.sum(axis=0))
      ds_r = st.w_r * (dw_r - dw_r.sum(axis=0))
    else:
      ds_w, ds_r = softmax_backward(st.w_w, dw_w), softmax_backward(st.w_r, dw_r)
    dk_w, dk_r = ds_w, ds_r
    if addressing == "content":                                   # s = M_{t-1} k
      for ds, k in ((ds_r, st.k_r), (ds_w, st.k_w)):
        if "memory" in mistakes:  # (b): np.dot([1,N], [W,1]), a scalar added to every entry
          dM_prev = dM_prev + np.stack(
              [np.dot(ds[None, :, b], k[:, b, None]) for b in range(B)], axis=-1)
        else:
          dM_prev = dM_prev + ds[:, None] * k[None]
      if "key" in mistakes:       # (f): np.dot(M_{t-1} [N,W], ds [N,1]), M not transposed
        dk_w, dk_r = (np.stack([np.dot(st.M_prev[:, :, b], ds[:, b, None])[:, 0]
                                for b in range(B)], axis=-1) for ds in (ds_w, ds_r))
      else:
        dk_w = np.einsum("njb,nb->jb", st.M_prev, ds_w)
        dk_r = np.einsum("njb,nb->jb", st.M_prev, ds_r)
    da_e = de * st.e * (1 - st.e)
    grads["Whw"] += dk_w @ st.h.T
    grads["Whr"] += dk_r @ st.h.T
    grads["Whe"] += da_e @ st.h.T
    grads["Whv"] += dv @ st.h.T
    dh = (p["Why"].T @ st.dy + dh_next + p["Whw"].T @ dk_w + p["Whr"].T @ dk_r
          + p["Whe"].T @ da_e + p["Whv"].T @ dv)
    da, dc_next = lstm_cell_backward(st.gates, st.c, st.c_prev, dh, dc_next)
    grads["bh"] += da.sum(axis=1)
    grads["Wxh"] += da @ st.x.T
    grads["Whh"] += da @ st.h_prev.T
    grads["Wrh"] += da @ st.r_prev.T
    dh_next, dr_next, dM_next = p["Whh"].T @ da, p["Wrh"].T @ da, dM_prev
  return grads


def seed_dnc(params, inputs, targets, state, addressing):
  """Seed DNC window ('location' or 'content'): loss, grads and the final
  {'h', 'c' [B,H], 'memory' [B,N,W], 'read' [B,W]}. inputs, targets [B, S]."""
  loss, steps = _seed_dnc_forward(params, inputs, targets, state, addressing)
  return loss, _seed_dnc_backward(params, steps, addressing), _final_state(steps)


def seed_dnc_location(params, inputs, targets, state):
  """dnc-numpy.py: scores s = W_hw h, W_hr h [N]. See `seed_dnc`."""
  return seed_dnc(params, inputs, targets, state, "location")


def seed_dnc_content(params, inputs, targets, state):
  """dnc-debug.py with the softmax forward fixed: s = M_{t-1} W_hw h. See `seed_dnc`."""
  return seed_dnc(params, inputs, targets, state, "content")


def seed_dnc_content_original_backward(params, inputs, targets, state,
                                       mistakes=ORIGINAL_MISTAKES):
  """dnc-debug.py's hand-written backward, run on the softmax forward.

  By default with all of its mistakes ('softmax' (a), 'memory' (b), 'key' (f) in the module
  docstring); pass a subset to keep only those. Needs N == W while 'memory' or 'key' is kept,
  as the seed's np.dot does (else ValueError). Returns (loss, grads, state) like the others.
  """
  unknown = set(mistakes) - set(ORIGINAL_MISTAKES)
  if unknown:
    raise ValueError(f"unknown mistakes {sorted(unknown)}; choose from {ORIGINAL_MISTAKES}")
  loss, steps = _seed_dnc_forward(params, inputs, targets, state, "content")
  grads = _seed_dnc_backward(params, steps, "content", tuple(mistakes))
  return loss, grads, _final_state(steps)


def seed_dnc_content_as_run(params, inputs, targets, state):
  """dnc-debug.py as it ran: its forward, which writes and reads with the raw content scores
  s (finding (g)), then its backward with all of its mistakes (softmax weights from s).
  Returns (loss, the seed's grads, final state). From M = 0 the memory stays 0."""
  loss, steps = _seed_dnc_forward(params, inputs, targets, state, "content",
                                  weights_from_scores=True)
  grads = _seed_dnc_backward(params, steps, "content", ORIGINAL_MISTAKES)
  return loss, grads, _final_state(steps)


ORACLES = {"rnn": rnn, "lstm": lstm, "seed_dnc_location": seed_dnc_location,
           "seed_dnc_content": seed_dnc_content}


# ---------------------------------------------------------------------------------------
# Parameters, states and the seed's Adagrad


def init_params(model, rng, V, H, N=None, W=None, scale=0.01):
  """Seed-style params of `model` (one of MODELS): randn * scale, zero biases, LSTM forget
  rows b_h[2H:3H] = 1. rng is a np.random.Generator; N, W only for the DNCs."""
  if model not in MODELS:
    raise ValueError(f"unknown model {model!r}; choose one of {MODELS}")
  G = H if model == "rnn" else 4 * H
  shapes = {"Wxh": (G, V), "Whh": (G, H), "Why": (V, H)}
  if model.startswith("seed_dnc"):
    K = N if model == "seed_dnc_location" else W
    shapes.update(Wrh=(G, W), Whv=(W, H), Whr=(K, H), Whw=(K, H), Whe=(W, H), Wry=(V, W))
  params = {k: rng.standard_normal(shape) * scale for k, shape in shapes.items()}
  params["bh"], params["by"] = np.zeros(G), np.zeros(V)
  if model != "rnn":
    params["bh"][2 * H:3 * H] = 1.0
  return params


def zero_state(model, B, H, N=None, W=None):
  """The all-zeros batch state of `model` (batch-major)."""
  state = {"h": np.zeros((B, H))}
  if model != "rnn":
    state["c"] = np.zeros((B, H))
  if model.startswith("seed_dnc"):
    state["memory"], state["read"] = np.zeros((B, N, W)), np.zeros((B, W))
  return state


def adagrad(params, grads, accum, lr, eps):
  """The seed's Adagrad: accum += g^2; p -= lr * g / sqrt(accum + eps). Returns new
  (params, accum) dicts; the inputs are not modified."""
  accum = {k: accum[k] + grads[k] ** 2 for k in params}
  params = {k: params[k] - lr * grads[k] / np.sqrt(accum[k] + eps) for k in params}
  return params, accum


def finite_difference(fn, params, name, index, delta=1e-6):
  """Central difference (f(p + delta) - f(p - delta)) / (2 delta) of the scalar fn(params)
  in entry `index` of params[name]."""
  values = []
  for sign in (1, -1):
    shifted = dict(params)
    shifted[name] = params[name].copy()
    shifted[name][index] += sign * delta
    values.append(fn(shifted))
  return (values[0] - values[1]) / (2 * delta)


def relative_error(a, b):
  """||a - b|| / ||b|| (Frobenius), 0 when both are 0."""
  norm = np.linalg.norm(b)
  diff = np.linalg.norm(a - b)
  return diff / norm if norm > 0 else diff


def original_backward_errors(rng, B=3, S=5, V=7, H=6, N=5, scale=0.01, mistakes=ORIGINAL_MISTAKES,
                             memory_scale=0.5):
  """Relative error per parameter of dnc-debug.py's backward (with `mistakes`) against the
  correct one, on random params at `scale` and a random initial memory (N == W): dict."""
  params = init_params("seed_dnc_content", rng, V, H, N, N, scale)
  inputs, targets = rng.integers(0, V, (2, B, S))
  state = zero_state("seed_dnc_content", B, H, N, N)
  state["memory"] = memory_scale * rng.standard_normal((B, N, N))
  _, good, _ = seed_dnc_content(params, inputs, targets, state)
  _, seed, _ = seed_dnc_content_original_backward(params, inputs, targets, state, mistakes)
  return {k: relative_error(seed[k], good[k]) for k in params}
