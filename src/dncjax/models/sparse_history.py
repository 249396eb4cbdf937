"""The SDNC's unroll differentiated with its sparse temporal links updated in place and a
journal of what each step changes (`history.py`), by the CPU kernels
(`native.sparse_journal_*`, `sparse_journal_kernel.cc`).

Per example H = (V, J, journal): the links' values V and slots J [2, N, K] (direction 0
the rows of L_t, direction 1 those of L_t^T), updated in place step by step, and a journal
(entry, value before) of the entries each step's decay changes: those whose row or slot
w^w_t names, a few K^2 per step where the links are spread (at most 2 N K). The link step
of time step t (`sparse.link_step`'s equations):

  forward   the kernel decays V by w^w_t, journalled, and hands out the rows that gain
            entries (w^w_t's slots in direction 0, p_{t-1}'s in direction 1); XLA merges
            them (`sparse.merge_rows`); the kernel writes them back and hands out the rows
            at w^r_{t-1}'s slots, from which XLA spreads f_t and b_t
            (`sparse.spread_rows`). The merges' and spreads' vjps are taken as they run;
            with the handed-out rows they are the step's residuals, O(R K^2) numbers.
  backward  the backward scan carries (G, V, J): the cotangent of V_{t+1} and the links
            after step t. The spreads' and merges' vjps run on rows (XLA); the kernel adds
            their cotangents into G at those rows, puts the rows back as they were decayed,
            then reads step t's journal once: each entry's decay undone in V (V_t again),
            its cotangent in G scaled by its decay factor (every other entry's is 1), and
            its share of w^w_t's cotangent added.

So a step reads the [2, N, K] arrays once forward (for the entries to journal) and touches
only the journalled entries backward; the scan keeps no [T, N, K] stack (`lax.scan`
zero-fills four, copies the links into them each step and slices them out again).
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
  """The SDNC's (link, link_t) at the state's `get`/`put` as `history.Links` (H = (V, J,
  journal), the backward's carry (G, V, J))."""

  def usable(pair, steps):  # the journal's places are int32: T 2 N K of them per example
    N, K = pair[0].value.shape[-2:]
    return steps * 2 * N * K < 2**31 and native.usable(pair[0].value.dtype, N)

  def start(pair, slots):
    V, *journal = native.sparse_journal_start(pair[0].value, pair[1].value, slots - 1)
    return (V, jnp.stack([pair[0].index, pair[1].index]), tuple(journal))

  def last(H, t):  # the links after the last step, t
    V, J, _ = H
    return tuple(SparseWeights(J[d], V[d]) for d in (0, 1))

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
    G, _, _ = carried
    return tuple(SparseWeights(np.zeros(pair[d].index.shape, jax.dtypes.float0), G[d])
                 for d in (0, 1))

  return history.Links(get, put, usable, start, last, stub, sparse.HOOK, hooked,
                       carried=lambda g, H: (jnp.stack([g[0].value, g[1].value]), H[0], H[1]),
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
  """The link step of recorded time step t on H = (V, J, journal): (H after step t, f_t,
  b_t). Its backward pass (run by the backward scan, `history.py`) returns no cotangent
  for H: H enters the step as a constant."""

  def run(H, w, p, r):
    V, J, journal = H
    V, journal, *rows = native.sparse_journal_forward(V, J, journal, t, w.index, w.value,
                                                      w.index, p.index)
    rows0, rows1 = tuple(rows[:2]), tuple(rows[2:])
    values, merges_vjp, index = jax.vjp(
        lambda V0, V1, w_value, p_value: _merges((V0, rows0[1]), (V1, rows1[1]), w, p,
                                                 w_value, p_value),
        rows0[0], rows1[0], w.value, p.value, has_aux=True)
    V, J, *read = native.sparse_journal_set(V, J, w.index, p.index, values[0], index[0],
                                            values[1], index[1], r.index)
    (f, b), spreads_vjp, (f_index, b_index) = jax.vjp(
        lambda V0, V1, r_value: _spreads((V0, read[1]), (V1, read[3]), r, r_value),
        read[0], read[2], r.value, has_aux=True)
    outputs = ((V, J, journal), SparseWeights(f_index, f), SparseWeights(b_index, b))
    return outputs, (w, p, r.index, rows0, rows1, merges_vjp, spreads_vjp)

  @jax.custom_vjp
  def step(H, w, p, r):
    return run(H, w, p, r)[0]

  def bwd(residuals, cotangents):
    _, gf, gb = cotangents
    w, p, read_index, rows0, rows1, merges_vjp, spreads_vjp = residuals
    g_read0, g_read1, gr = spreads_vjp((gf.value, gb.value))
    (G, V, J), k, reads = channel["gL"], g_read0.shape[-1], read_index.reshape(-1)
    g_read0, g_read1 = g_read0.reshape(-1, k), g_read1.reshape(-1, k)
    # the cotangents of the merged rows: G's rows there, and what the reads add to them
    at = lambda rows: (rows[:, None] == reads[None, :]).astype(G.dtype)
    g_merged0 = sparse.take(G[0], w.index) + at(w.index) @ g_read0
    g_merged1 = sparse.take(G[1], p.index) + at(p.index) @ g_read1
    g_rows0, g_rows1, gw, gp = merges_vjp((g_merged0, g_merged1))
    G, gu, V, J = native.sparse_journal_backward(
        V, J, channel["H"][2], channel["t"], w.index, w.value, G, w.index, p.index, rows0[0],
        rows1[0], rows0[1], rows1[1], reads, g_read0, g_read1, g_rows0, g_rows1)
    channel["gL"] = (G, V, J)
    return (None, _cotangent(w, gw + gu), _cotangent(p, gp),
            SparseWeights(_zero(read_index), gr))

  step.defvjp(run, bwd)
  return step


def _zero(index):
  return np.zeros(index.shape, jax.dtypes.float0)


def _cotangent(weights: SparseWeights, g_value) -> SparseWeights:
  return SparseWeights(_zero(weights.index), g_value)
