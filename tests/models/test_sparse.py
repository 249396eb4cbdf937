"""dncjax.models.sparse: the K-sparse weightings against the dense ones of addressing.py
(at K = N equal to 1e-12 in float64; below N the top K of the dense result), and
`compact` against a NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dncjax.models import addressing, sparse

jax.config.update("jax_enable_x64", True)

N, W, R = 7, 4, 3
RNG = np.random.default_rng(7)
TOL = dict(rtol=1e-12, atol=1e-12)
# compiled once each: eager dispatch of the sorts and scatters costs seconds
compact = jax.jit(sparse.compact, static_argnums=2)
content_weights = jax.jit(sparse.content_weights, static_argnums=3)
link_update = jax.jit(sparse.link_update)
directional_weights = jax.jit(sparse.directional_weights)
write_memory, read_memory = jax.jit(sparse.write_memory), jax.jit(sparse.read_memory)
precedence_update, read_weights = jax.jit(sparse.precedence_update), jax.jit(sparse.read_weights)


def full(dense_xN: np.ndarray) -> sparse.SparseWeights:
  """Dense weightings [..., N] as SparseWeights with K = N (slot n at entry n)."""
  dense = jnp.asarray(dense_xN)
  index = jnp.broadcast_to(jnp.arange(N, dtype=jnp.int32), dense.shape)
  return sparse.SparseWeights(index, dense)


def top(dense_xN: np.ndarray, k: int) -> sparse.SparseWeights:
  """The k largest entries of each dense row (every other entry zero there)."""
  values, index = jax.lax.top_k(jnp.asarray(dense_xN), k)
  return sparse.SparseWeights(index.astype(jnp.int32), values)


def weighting(*shape, scale=1.0) -> np.ndarray:
  """Random non-negative weightings [..., N], each summing to `scale` at most."""
  raw = RNG.uniform(size=(*shape, N))
  return scale * raw / raw.sum(-1, keepdims=True) * RNG.uniform(0.5, 1.0, size=(*shape, 1))


def links() -> np.ndarray:
  """A random link matrix: entries >= 0, rows and columns summing below 1, zero diagonal."""
  link = RNG.uniform(size=(N, N)) / N
  np.fill_diagonal(link, 0)
  return link


def dense(weights: sparse.SparseWeights) -> np.ndarray:
  return np.asarray(sparse.to_dense(weights, N))


def sorted_rows(a) -> np.ndarray:
  return np.sort(np.asarray(a), axis=-1)


def distinct(weights: sparse.SparseWeights) -> bool:
  index = np.sort(np.asarray(weights.index), axis=-1)
  return bool(np.all(index[..., 1:] != index[..., :-1]))


# ----- compact -----------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 3, 6])
def test_compact_sums_duplicates_and_keeps_the_k_largest(k):
  index = np.array([4, 1, 4, 6, 1, 4, 0], np.int32)
  value = RNG.uniform(size=index.size)
  totals = np.zeros(N)
  np.add.at(totals, index, value)
  got = compact(jnp.asarray(index), jnp.asarray(value), k)
  want = np.sort(totals)[::-1][:k]  # 4 distinct slots: from k = 5 on, zeros at free slots
  np.testing.assert_allclose(np.asarray(got.value), want, **TOL)
  assert distinct(got) and np.all(np.asarray(got.index) < N)
  real = np.asarray(got.value) > 0
  np.testing.assert_allclose(totals[np.asarray(got.index)[real]], np.asarray(got.value)[real],
                             **TOL)


def test_compact_fills_the_rest_with_free_slots():
  got = compact(jnp.array([2, 2, 0], jnp.int32), jnp.array([0.25, 0.5, 0.125]), 4)
  assert np.asarray(got.index).tolist() == [2, 0, 1, 3]
  np.testing.assert_allclose(np.asarray(got.value), [0.75, 0.125, 0, 0])


# ----- K = N: the dense functions ---------------------------------------------------------

def test_content_weights_at_k_n_are_the_dense_ones_and_below_the_top_k():
  memory = RNG.normal(size=(N, W))
  memory[2] = 0  # a zero row: the norm's epsilon
  keys, strengths = RNG.normal(size=(R, W)), 1 + RNG.exponential(size=R) * 3
  want = np.asarray(addressing.content_weights(memory, keys, strengths))
  got = content_weights(jnp.asarray(memory), jnp.asarray(keys), jnp.asarray(strengths), N)
  np.testing.assert_allclose(dense(got), want, **TOL)
  k = 3  # below N: the k most similar slots, their softmax renormalised
  got = content_weights(jnp.asarray(memory), jnp.asarray(keys), jnp.asarray(strengths), k)
  best = np.argsort(-want, axis=-1, kind="stable")[:, :k]
  assert np.array_equal(np.sort(np.asarray(got.index)), np.sort(best))
  kept = np.take_along_axis(want, best, -1)
  renormalised = kept / kept.sum(-1, keepdims=True)
  np.testing.assert_allclose(sorted_rows(got.value), sorted_rows(renormalised), **TOL)


def test_content_weights_backward_touches_k_rows_with_top_ks_gradient():
  """The K scores are recomputed from K gathered rows: the gradient equals that of top_k
  over all N scores, and nothing the forward pass keeps for the backward has N rows."""
  n, k = 23, 3  # 23: no other size here
  memory, keys = RNG.normal(size=(n, W)), RNG.normal(size=(R, W))
  strengths, probe = 1 + RNG.exponential(size=R), RNG.normal(size=(R, k))

  def reference(memory, keys, strengths, k):
    scores = strengths[:, None] * addressing.cosine_similarity(memory, keys)
    top, index = jax.lax.top_k(scores, k)
    return sparse.SparseWeights(index.astype(jnp.int32), jax.nn.softmax(top, axis=-1))

  loss = lambda fn: lambda *args: jnp.sum(probe * fn(*args, k).value)
  args = (jnp.asarray(memory), jnp.asarray(keys), jnp.asarray(strengths))
  got = jax.grad(loss(sparse.content_weights), argnums=(0, 1, 2))(*args)
  want = jax.grad(loss(reference), argnums=(0, 1, 2))(*args)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, **TOL)
  assert np.count_nonzero(np.abs(got[0]).sum(-1)) <= R * k  # only the chosen rows
  saved = lambda fn: [a.shape for a in jax.tree.leaves(jax.vjp(loss(fn), *args)[1])]
  assert not [s for s in saved(sparse.content_weights) if n in s], saved(sparse.content_weights)
  assert [s for s in saved(reference) if n in s]  # the check can fail: the dense form keeps N


def test_write_read_precedence_and_mix_at_k_n_are_the_dense_ones():
  memory, erase, vector = RNG.normal(size=(N, W)), RNG.uniform(size=W), RNG.normal(size=W)
  w, p = weighting(), weighting()
  np.testing.assert_allclose(
      np.asarray(write_memory(jnp.asarray(memory), full(w), erase, vector)),
      np.asarray(addressing.write_memory(memory, w, erase, vector)), **TOL)
  reads = weighting(R)
  np.testing.assert_allclose(np.asarray(read_memory(jnp.asarray(memory), full(reads))),
                             np.asarray(addressing.read_memory(memory, reads)), **TOL)
  np.testing.assert_allclose(dense(precedence_update(full(p), full(w))),
                             np.asarray(addressing.precedence_update(p, w)), **TOL)
  b, c, f = weighting(R), weighting(R), weighting(R)
  modes = RNG.dirichlet(np.ones(3), size=R)
  np.testing.assert_allclose(dense(read_weights(full(c), full(f), full(b), modes)),
                             np.asarray(addressing.read_weights(c, f, b, modes)), **TOL)


def test_link_update_and_directional_weights_at_k_n_are_the_dense_ones():
  link, p, w, reads = links(), weighting(), weighting(), weighting(R)
  w[[1, 4]] = 0  # rows written and rows only decayed
  want = np.asarray(addressing.link_update(link, p, w))
  forward_rows = link_update(full(link), full(w), full(w), full(p))
  backward_rows = link_update(full(link.T), full(w), full(p), full(w))
  np.testing.assert_allclose(dense(forward_rows), want, **TOL)
  np.testing.assert_allclose(dense(backward_rows), want.T, **TOL)
  forward, backward = directional_weights(forward_rows, backward_rows, full(reads))
  want_f, want_b = addressing.directional_weights(want, reads)
  np.testing.assert_allclose(dense(forward), np.asarray(want_f), **TOL)
  np.testing.assert_allclose(dense(backward), np.asarray(want_b), **TOL)


# ----- K < N: the top K of the dense result --------------------------------------------------

def test_below_n_each_link_row_keeps_the_top_k_of_the_dense_update():
  k = 3
  link_rows = top(links(), k)                         # K entries per row of L
  link_cols = top(links().T, k)                       # and per row of L^T, independently
  p, w = top(weighting(), k), top(weighting(), k + 1)
  for rows, by, new_rows, new_cols in ((link_rows, False, w, p), (link_cols, True, p, w)):
    start = dense(rows).T if by else dense(rows)      # the dense L this direction holds
    after = np.asarray(addressing.link_update(start, dense(p), dense(w)))
    after = after.T if by else after
    got = link_update(rows, w, new_rows, new_cols)
    assert distinct(got)
    np.testing.assert_allclose(sorted_rows(got.value), sorted_rows(after)[:, -k:], **TOL)
    np.testing.assert_allclose(np.take_along_axis(after, np.asarray(got.index), 1),
                               np.asarray(got.value), **TOL)


def test_below_n_directional_weights_keep_the_top_k_of_the_dense_ones():
  k = 3
  link_rows, link_cols, reads = top(links(), k), top(links().T, k), top(weighting(R), k)
  forward, backward = directional_weights(link_rows, link_cols, reads)
  want_f = dense(reads) @ dense(link_cols)            # f = L w, with L's columns as rows
  want_b = dense(reads) @ dense(link_rows)            # b = L^T w
  for got, want in ((forward, want_f), (backward, want_b)):
    np.testing.assert_allclose(sorted_rows(got.value), sorted_rows(want)[:, -k:], **TOL)
    np.testing.assert_allclose(np.take_along_axis(want, np.asarray(got.index), 1),
                               np.asarray(got.value), **TOL)
