"""The SDNC's unroll differentiated with its sparse temporal links kept as a history
(`history.py`): every step's links written once, by the CPU kernels
(`native.sparse_history_*`, `sparse_history_kernel.cc`), where the backward pass reads them.

Per example H = (HV, HJ) [T + 1, 2, N, K] holds the links' values and slots after each
step, direction 0 the rows of L_t (`link`) and direction 1 those of L_t^T (`link_t`). The
link step of time step t (`sparse.link_step`'s equations) on H:

  forward   the kernel decays slot t into slot t + 1 (both directions, by w^w_t) and hands
            out the rows that gain entries (w^w_t's slots in direction 0, p_{t-1}'s in
            direction 1); XLA merges them (`sparse.merge_rows`); the kernel writes them back
            and hands out the rows at w^r_{t-1}'s slots, from which XLA spreads f_t and b_t
            (`sparse.spread_rows`). Its residuals are these rows and the weightings: O(R K^2)
            numbers, nothing [N, K].
  backward  from the carried cotangent G [2, N, K] of slot t + 1's values: the spread's and
            the merge's vjps (XLA, on the rows), their rows' cotangents added to G at those
            rows, then the decay's backward pass on slot t (the kernel), written over G.

Gradients equal those of lax.scan over the same steps to float rounding
(tests/models/test_sparse_history.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dncjax.models import history, native, sparse
from dncjax.models.sparse import SparseWeights


def links(get, put) -> history.Links:
  """The SDNC's (link, link_t) at the state's `get`/`put` as `history.Links`."""

  def usable(pair):
    return native.usable(pair[0].value.dtype, pair[0].value.shape[-2])

  def start(pair, slots):
    return (native.sparse_history_start(pair[0].value, pair[1].value, slots),
            jnp.stack([pair[0].index, pair[1].index]))

  def last(H, t):
    HV, J = H
    return tuple(SparseWeights(J[d], HV[t, d]) for d in (0, 1))

  def stub(pair):
    empty = SparseWeights(jnp.zeros((0,), jnp.int32), jnp.zeros((0,), pair[0].value.dtype))
    return (empty, empty)

  def hooked(H, t, channel, kept):
    step = _link_step(t, channel)

    def record(link_stub, link_t_stub, w, p, r):  # the state's stubs pass through
      kept["H"], f, b = step(H, w, p, r)
      return link_stub, link_t_stub, f, b

    return record

  def restored(carried, pair):
    G, _ = carried
    return tuple(SparseWeights(np.zeros(pair[d].index.shape, jax.dtypes.float0), G[d])
                 for d in (0, 1))

  return history.Links(get, put, usable, start, last, stub, sparse.HOOK, hooked,
                       carried=lambda g, H: (jnp.stack([g[0].value, g[1].value]), H[1]),
                       restored=restored)


def _spreads(R0, R1, r: SparseWeights, r_value):
  """((f_t, b_t) values, their slots) from the rows at w^r_{t-1}'s slots: R0 of L_t, R1 of
  L_t^T (values, slots) [R, K, K] (values apart, to differentiate)."""
  k = r.index.shape[-1]
  spread = jax.vmap(lambda V, J, weights: sparse.spread_rows(V, J, weights, k))
  f, b = spread(*R1, r._replace(value=r_value)), spread(*R0, r._replace(value=r_value))
  return (f.value, b.value), (f.index, b.index)


def _merges(rows0, rows1, w: SparseWeights, p: SparseWeights, w_value, p_value):
  """(values, slots) of the merged rows: L_t's at w^w_t's slots, L_t^T's at p_{t-1}'s."""
  w, p = w._replace(value=w_value), p._replace(value=p_value)
  merged = sparse.merge_rows(*rows0, w, p), sparse.merge_rows(*rows1, p, w)
  return tuple(m.value for m in merged), tuple(m.index for m in merged)


def _link_step(t, channel):
  """The link step of recorded time step t on H = (HV, HJ): (H with slot t + 1, f_t,
  b_t). Its backward pass (run by the backward scan, `history.py`) returns no cotangent
  for H: H enters the step as a constant. The merges' and spreads' vjps are taken forward
  and kept (their residuals are O(R K^2) per step), as lax.scan would keep them."""

  def run(H, w, p, r):
    HV, *rows = native.sparse_history_forward(*H, t, w.index, w.value, w.index, p.index)
    rows0, rows1 = tuple(rows[:2]), tuple(rows[2:])
    values, merges_vjp, index = jax.vjp(
        lambda V0, V1, w_value, p_value: _merges((V0, rows0[1]), (V1, rows1[1]), w, p,
                                                 w_value, p_value),
        rows0[0], rows1[0], w.value, p.value, has_aux=True)
    HV, J, *read = native.sparse_history_set(HV, H[1], t, w.index, p.index, values[0],
                                             index[0], values[1], index[1], r.index)
    (f, b), spreads_vjp, (f_index, b_index) = jax.vjp(
        lambda V0, V1, r_value: _spreads((V0, read[1]), (V1, read[3]), r, r_value),
        read[0], read[2], r.value, has_aux=True)
    outputs = ((HV, J), SparseWeights(f_index, f), SparseWeights(b_index, b))
    return outputs, (w, p, r.index, rows0[1], rows1[1], merges_vjp, spreads_vjp)

  @jax.custom_vjp
  def step(H, w, p, r):
    return run(H, w, p, r)[0]

  def bwd(residuals, cotangents):
    _, gf, gb = cotangents
    w, p, read_index, slots0, slots1, merges_vjp, spreads_vjp = residuals
    g_read0, g_read1, gr = spreads_vjp((gf.value, gb.value))
    (G, J), k, reads = channel["gL"], g_read0.shape[-1], read_index.reshape(-1)
    g_read0, g_read1 = g_read0.reshape(-1, k), g_read1.reshape(-1, k)
    # the cotangents of the merged rows: G's rows there, and what the reads add to them
    at = lambda rows: (rows[:, None] == reads[None, :]).astype(G.dtype)
    g_merged0 = sparse.take(G[0], w.index) + at(w.index) @ g_read0
    g_merged1 = sparse.take(G[1], p.index) + at(p.index) @ g_read1
    g_rows0, g_rows1, gw, gp = merges_vjp((g_merged0, g_merged1))
    G, gu, J = native.sparse_history_backward(
        channel["H"][0], J, channel["t"], w.index, w.value, G, w.index, p.index, slots0,
        slots1, reads, g_read0, g_read1, g_rows0, g_rows1)
    channel["gL"] = (G, J)
    return (None, _cotangent(w, gw + gu), _cotangent(p, gp),
            SparseWeights(_zero(read_index), gr))

  step.defvjp(run, bwd)
  return step


def _zero(index):
  return np.zeros(index.shape, jax.dtypes.float0)


def _cotangent(weights: SparseWeights, g_value) -> SparseWeights:
  return SparseWeights(_zero(weights.index), g_value)
