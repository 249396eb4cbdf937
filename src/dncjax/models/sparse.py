"""K-sparse memory addressing (Rae et al., "Scaling Memory-Augmented Neural Networks with
Sparse Reads and Writes", NIPS 2016): the weightings of `addressing.py` kept to K slots.

A weighting over the N slots is a `SparseWeights`: K slot indices (distinct along the last
axis) and their values, zero elsewhere. Pure functions for ONE example, like
`addressing.py`; every cost is O(K) per touched slot, O(N W) for the content scores and
O(N K) for the link matrices, never O(N^2):

  C_K(M, k, beta)   = softmax over the top K of beta D(k, M[i])     sparse content weights
  M_t = M_{t-1} + w_i (v_t - e_t M_{t-1}[i]) on the K rows i written  (the DNC's erase and add)
  p_t = top_K((1 - sum_i w^w_t[i]) p_{t-1} + w^w_t)                 precedence
  L_t[i, j] = (1 - w^w_t[i] - w^w_t[j]) L_{t-1}[i, j] + w^w_t[i] p_{t-1}[j],  L_t[i, i] = 0
            kept as the top K of each row of L_t (`link`) and of L_t^T (`link_t`)
  f^i_t = top_K(L_t w^{r,i}_{t-1}) from the rows of L_t^T at the K slots w^{r,i}_{t-1} holds,
  b^i_t = top_K(L_t^T w^{r,i}_{t-1}) from the rows of L_t there         directional weights
  r^i_t = sum_k w^{r,i}_t[k] M_t[index_k]                              a gather of K rows

top_K keeps the K largest entries of a weighting (`compact`, which first sums the entries
that name the same slot). At K = N every top_K keeps everything and each function equals
its dense counterpart in `addressing.py`. Gradients reach only the slots the weightings
hold (gathers and scatters); the choice of slots (the top K) is piecewise constant, so it
is made without gradients, and what the backward pass keeps of a step is O(K) rows of M
and the links' values and indices: no [N, W] array. On the CPU the links' decay (one pass
over the N K entries) and the content look-up's choice of slots are C++ kernels (`native`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dncjax.models import addressing, hooks, native
from dncjax.models.hparams import NORM_EPS


class SparseWeights(NamedTuple):
  """A weighting over the N slots kept to K of them; zero at every other slot."""
  index: jax.Array  # [..., K] int32, distinct along the last axis
  value: jax.Array  # [..., K]


_IN_BOUNDS = dict(mode="promise_in_bounds", wrap_negative_indices=False)
# rows written by a weighting's K distinct slots: no two updates meet, so the scatter's
# gradient needs only the indices (no [N, ...] mask of which entries were overwritten)
_ROWS = dict(_IN_BOUNDS, unique_indices=True)


def take(array: jax.Array, index: jax.Array) -> jax.Array:
  """array[index] for slot indices known to lie in [0, N) (no wrapping, no bounds checks)."""
  return array.at[index].get(**_IN_BOUNDS)


def scatter_add(array: jax.Array, index: jax.Array, values: jax.Array) -> jax.Array:
  """array.at[index].add(values) for slot indices known to lie in [0, N)."""
  return array.at[index].add(values, **_IN_BOUNDS)


def empty(shape: tuple[int, ...], k: int, dtype) -> SparseWeights:
  """The all-zero weighting(s) of `shape` (leading axes), K entries: slots 0 .. K-1, value 0."""
  index = jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32), (*shape, k))
  return SparseWeights(index, jnp.zeros((*shape, k), dtype))


def to_dense(weights: SparseWeights, size: int) -> jax.Array:
  """The dense weighting(s) [..., N] (tests, usage): values scattered to their slots."""
  flat_index = weights.index.reshape(-1, weights.index.shape[-1])
  dense = jax.vmap(lambda i, v: scatter_add(jnp.zeros((size,), v.dtype), i, v))(
      flat_index, weights.value.reshape(flat_index.shape))
  return dense.reshape(*weights.index.shape[:-1], size)


def _fillers(index_k: jax.Array, kept_k: jax.Array) -> jax.Array:
  """Slots for the entries not `kept_k` (the last ones): the smallest of 0 .. K-1 that no
  kept entry names, so a weighting's K indices stay distinct (needs K <= N)."""
  k = index_k.shape[0]
  pool = jnp.arange(k, dtype=index_k.dtype)
  free = ~jnp.any((index_k[None, :] == pool[:, None]) & kept_k[None, :], axis=1)
  rank = jnp.cumsum(free, dtype=jnp.int32) - 1         # rank of each free slot
  want = jnp.arange(k, dtype=jnp.int32) - jnp.sum(kept_k, dtype=jnp.int32)  # filler number
  match = free[None, :] & (rank[None, :] == want[:, None])
  return jnp.sum(jnp.where(match, pool[None, :], 0), axis=1, dtype=index_k.dtype)


def compact(index_C: jax.Array, value_C: jax.Array, k: int) -> SparseWeights:
  """The weighting sum_c value_c e_{index_c} kept to its k largest entries (one vector).

  Entries naming the same slot are summed: each entry's total is the sum over the entries
  equal to it (C x C compares, which for the C <= K^2 entries here cost less than a sort),
  and the first entry of each slot stands for it; the k largest totals are kept. With
  fewer than k distinct slots the rest are zero entries at free slots of 0 .. k-1. Values
  are taken >= 0 (every weighting here is)."""
  if index_C.shape[-1] < k:  # pad with zeros at the first slot (they add nothing)
    pad = k - index_C.shape[-1]
    index_C = jnp.concatenate([index_C, jnp.broadcast_to(index_C[:1], (pad,))])
    value_C = jnp.concatenate([value_C, jnp.zeros((pad,), value_C.dtype)])
  C = index_C.shape[-1]
  index_C = index_C.astype(jnp.int32)
  same_CxC = index_C[:, None] == index_C[None, :]
  totals = jnp.sum(jnp.where(same_CxC, value_C[None, :], 0), axis=1)
  earlier_CxC = jnp.arange(C)[None, :] < jnp.arange(C)[:, None]
  first = ~jnp.any(same_CxC & earlier_CxC, axis=1)    # one entry per distinct slot
  _, pick = jax.lax.top_k(jnp.where(first, totals, -jnp.inf), k)
  kept = take(first, pick)
  index = jnp.where(kept, take(index_C, pick), 0)
  index = jnp.where(kept, index, _fillers(index, kept))
  return SparseWeights(index, jnp.where(kept, take(totals, pick), 0))


def compact_rows(index: jax.Array, value: jax.Array, k: int) -> SparseWeights:
  """`compact` of each row of index, value [..., C] -> SparseWeights [..., k]."""
  fn = lambda i, v: compact(i, v, k)
  for _ in range(index.ndim - 1):
    fn = jax.vmap(fn)
  return fn(index, value)


def combine(parts: list[SparseWeights], coefficients: list, k: int) -> SparseWeights:
  """top_k(sum_p coefficient_p part_p), each part [..., K_p] and coefficient [...] or []."""
  index = jnp.concatenate([p.index for p in parts], axis=-1)
  value = jnp.concatenate([jnp.expand_dims(c, -1) * p.value
                           for p, c in zip(parts, coefficients)], axis=-1)
  return compact_rows(index, value, k)


def content_weights(memory_NxW: jax.Array, keys_HxW: jax.Array, strengths_H: jax.Array, k: int,
                    *, norm_eps: float = NORM_EPS) -> SparseWeights:
  """C_K(M, k^h, beta^h): softmax over the K largest of beta^h D(k^h, M[i]) -> [H, K].

  `jax.lax.top_k` over the N cosine similarities (`addressing.cosine_similarity`), ties to
  the lower slot, chooses the K slots without gradients (where the CPU kernels are used,
  `native.content_top_k` in one pass over M); their K scores are then computed again from
  the K gathered rows. The gradient is top_k's (it reaches only the K slots),
  but the backward pass, and what the forward pass keeps for it, touch K rows of M, not N.
  At K = N the values are `addressing.content_weights`' (in top-K order)."""
  if native.usable(memory_NxW.dtype, memory_NxW.shape[0]):
    index_HxK = native.content_top_k(memory_NxW, keys_HxW, strengths_H, k, norm_eps)
  else:
    memory_const, keys_const, strengths_const = jax.lax.stop_gradient(
        (memory_NxW, keys_HxW, strengths_H))
    scores_HxN = strengths_const[:, None] * addressing.cosine_similarity(
        memory_const, keys_const, norm_eps=norm_eps)
    index_HxK = jax.lax.top_k(scores_HxN, k)[1].astype(jnp.int32)
  similarity = lambda rows_KxW, key_W: addressing.cosine_similarity(
      rows_KxW, key_W[None], norm_eps=norm_eps)[0]
  top_HxK = strengths_H[:, None] * jax.vmap(similarity)(take(memory_NxW, index_HxK), keys_HxW)
  return SparseWeights(index_HxK, jax.nn.softmax(top_HxK, axis=-1))


def read_memory(memory_NxW: jax.Array, weights: SparseWeights) -> jax.Array:
  """r^h = sum_k w^h[k] M[index^h_k] -> [H, W], a gather of the K rows per head."""
  return jnp.einsum("hk,hkw->hw", weights.value, take(memory_NxW, weights.index))


def write_memory(memory_NxW: jax.Array, weights: SparseWeights, erase_W: jax.Array,
                 write_vector_W: jax.Array) -> jax.Array:
  """M_t = M_{t-1} (E - w^w_t e_t^T) + w^w_t v_t^T on the K rows w^w_t holds (a scatter-add
  of w_i (v_t - e_t M_{t-1}[i]) to each; `addressing.write_memory` at K = N)."""
  rows_KxW = take(memory_NxW, weights.index)
  w_K1 = weights.value[:, None]
  delta_KxW = w_K1 * write_vector_W[None, :] - w_K1 * erase_W[None, :] * rows_KxW
  return scatter_add(memory_NxW, weights.index, delta_KxW)


def precedence_update(precedence: SparseWeights, write_weights: SparseWeights) -> SparseWeights:
  """p_t = top_K((1 - sum_i w^w_t[i]) p_{t-1} + w^w_t), K = p's size."""
  keep = 1 - jnp.sum(write_weights.value)
  return combine([precedence, write_weights], [keep, jnp.ones_like(keep)],
                 precedence.index.shape[-1])


def link_update(link: SparseWeights, written: SparseWeights, rows: SparseWeights,
                columns: SparseWeights) -> SparseWeights:
  """One direction of L_t[i, j] = (1 - w[i] - w[j]) L_{t-1}[i, j] + w[i] p_{t-1}[j] on
  rows of K entries (link [N, K]), with a zero diagonal.

  Forward, `link` holds the rows of L (row i, entries j): rows = w^w_t, columns = p_{t-1}.
  Backward, it holds the rows of L^T (row j, entries i): rows = p_{t-1}, columns = w^w_t.
  `written` is w^w_t. Every entry decays, O(N K); the rows that `rows` holds gain the
  entries rows[a] columns[b] and keep their K largest (`merge_rows`)."""
  decayed = _decay(link.value, link.index, written)
  merged = merge_rows(take(decayed, rows.index), take(link.index, rows.index), rows, columns)
  return SparseWeights(link.index.at[rows.index].set(merged.index, **_ROWS),
                       decayed.at[rows.index].set(merged.value, **_ROWS))


def merge_rows(value_CxK: jax.Array, index_CxK: jax.Array, rows: SparseWeights,
               columns: SparseWeights) -> SparseWeights:
  """The decayed rows of the links at the C slots `rows` holds (values, slots [C, K]) with
  the entries rows[a] columns[b] added (none on the diagonal), each kept to its K largest
  -> SparseWeights [C, K]."""
  new_value = rows.value[:, None] * columns.value[None, :]
  new_value = jnp.where(columns.index[None, :] == rows.index[:, None], 0, new_value)  # L[i, i]
  new_index = jnp.broadcast_to(columns.index[None, :], new_value.shape)
  return compact_rows(jnp.concatenate([index_CxK, new_index], axis=-1),
                      jnp.concatenate([value_CxK, new_value], axis=-1), value_CxK.shape[-1])


def _decay(value_NxK: jax.Array, index_NxK: jax.Array, written: SparseWeights) -> jax.Array:
  """(1 - w[i] - w[j]) L[i, j] for the K entries (j = index) of each row i: the CPU kernel
  (`native.sparse_decay`) where the link kernel is chosen for this N (`native.usable`),
  else `_decay_rule`; the same numbers to float rounding."""
  if native.usable(value_NxK.dtype, value_NxK.shape[0]):
    return native.sparse_decay(value_NxK, index_NxK, written.index, written.value)
  return _decay_rule(value_NxK, index_NxK, written.index, written.value)


def _at_slots(slots: jax.Array, written_index: jax.Array, written_value: jax.Array):
  """w[slots] for an int array of slots: each compared with w's K slots (an elementwise
  pass, where a gather from w dense would index memory per entry)."""
  total = jnp.zeros(slots.shape, written_value.dtype)
  for a in range(written_index.shape[-1]):
    total = total + jnp.where(slots == written_index[a], written_value[a], 0)
  return total


def _decay_factor(index_NxK, written_index, written_value):
  rows_N = jnp.arange(index_NxK.shape[0], dtype=index_NxK.dtype)
  return (1 - _at_slots(rows_N, written_index, written_value)[:, None]
          - _at_slots(index_NxK, written_index, written_value))


@jax.custom_vjp
def _decay_rule(value_NxK, index_NxK, written_index, written_value):
  """XLA's form of the decay (w given by its slots and values), with its own backward pass."""
  return _decay_factor(index_NxK, written_index, written_value) * value_NxK


def _decay_rule_forward(value_NxK, index_NxK, written_index, written_value):
  residuals = (value_NxK, index_NxK, written_index, written_value)
  return _decay_rule(*residuals), residuals


def _decay_rule_backward(residuals, cotangent_NxK):
  """dL = g (1 - w[i] - w[j]); dw[a] = -sum of g L over the entries whose row or column
  is slot a: one pass over [N, K] summing into the K slots' column totals at once (a
  variadic reduce), no scatter-add of N K entries into w dense; the row totals are the
  row sums gathered at the K slots."""
  value_NxK, index_NxK, written_index, written_value = residuals
  minus_NxK = -cotangent_NxK * value_NxK
  slots = range(written_index.shape[-1])
  at_column = [jnp.where(index_NxK == written_index[a], minus_NxK, 0) for a in slots]
  column = jax.lax.reduce(at_column, [jnp.zeros((), minus_NxK.dtype)] * len(at_column),
                          lambda xs, ys: [x + y for x, y in zip(xs, ys)], (0, 1))
  row = take(jnp.sum(minus_NxK, axis=1), written_index)  # the K written rows' sums
  no_cotangent = lambda x: np.zeros(x.shape, jax.dtypes.float0)
  return (cotangent_NxK * _decay_factor(index_NxK, written_index, written_value),
          no_cotangent(index_NxK), no_cotangent(written_index),
          jnp.stack(column) + row)


_decay_rule.defvjp(_decay_rule_forward, _decay_rule_backward)


HOOK = "sparse link step"  # `hooks.override(HOOK, step)`: sparse_history.py's link step


def link_step(link: SparseWeights, link_t: SparseWeights, write_weights: SparseWeights,
              precedence: SparseWeights, read_weights: SparseWeights):
  """(link, link_t, f_t, b_t): both directions of the links updated (`link_update`, with
  w^w_t and p_{t-1}), then the directional weights from them and w^r_{t-1}; inside
  `hooks.override(HOOK, step)`, that step."""
  if (step := hooks.current(HOOK)) is not None:
    return step(link, link_t, write_weights, precedence, read_weights)
  link = link_update(link, write_weights, write_weights, precedence)
  link_t = link_update(link_t, write_weights, precedence, write_weights)
  return (link, link_t, *directional_weights(link, link_t, read_weights))


def spread(link: SparseWeights, weights: SparseWeights, k: int) -> SparseWeights:
  """top_K(sum_a w[a] link[a, :]): the rows of `link` at w's slots, weighted -> [K]."""
  return spread_rows(take(link.value, weights.index), take(link.index, weights.index),
                     weights, k)


def spread_rows(value_CxK: jax.Array, index_CxK: jax.Array, weights: SparseWeights,
                k: int) -> SparseWeights:
  """`spread` from the links' rows at w's C slots (values, slots [C, K])."""
  value = (weights.value[:, None] * value_CxK).reshape(-1)
  return compact(index_CxK.reshape(-1), value, k)


def directional_weights(link: SparseWeights, link_t: SparseWeights,
                        read_weights: SparseWeights) -> tuple[SparseWeights, SparseWeights]:
  """(f_t, b_t), each SparseWeights [R, K]: f^i_t = top_K(L_t w^{r,i}_{t-1}) gathers the
  rows of L_t^T (`link_t`), b^i_t = top_K(L_t^T w^{r,i}_{t-1}) those of L_t (`link`)."""
  k = read_weights.index.shape[-1]
  forward = jax.vmap(lambda w: spread(link_t, w, k))(read_weights)
  backward = jax.vmap(lambda w: spread(link, w, k))(read_weights)
  return forward, backward


def read_weights(content: SparseWeights, forward: SparseWeights, backward: SparseWeights,
                 read_modes_Rx3: jax.Array) -> SparseWeights:
  """w^{r,i}_t = top_K(pi^i_t[1] b^i_t + pi^i_t[2] c^{r,i}_t + pi^i_t[3] f^i_t) -> [R, K],
  the modes ordered (backward, content, forward) as in `addressing.read_weights`."""
  return combine([backward, content, forward], [read_modes_Rx3[:, 0], read_modes_Rx3[:, 1],
                                                read_modes_Rx3[:, 2]], content.index.shape[-1])
