"""dncjax.models.addressing against explicit NumPy loops, hand-worked cases and properties.

Float64 throughout (jax_enable_x64 is switched on here); functions are called eagerly
on tiny sizes (N = 5, W = 3, R = 2), so there is almost nothing to compile.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dncjax.models import addressing as ad

jax.config.update("jax_enable_x64", True)

N, W, R = 5, 3, 2
RNG = np.random.default_rng(0)


def simplex(*shape):
  """Random weightings whose last axis sums to at most 1 (as w^r, w^w)."""
  x = RNG.uniform(size=shape)
  return x / (x.sum(-1, keepdims=True) * RNG.uniform(1.0, 1.5))


# ----- NumPy references, written as the paper's sums and products ------------------------

def np_cosine(memory, keys, eps=1e-6):
  out = np.zeros((len(keys), len(memory)))
  for h, key in enumerate(keys):
    for i, row in enumerate(memory):
      dot = sum(key[k] * row[k] for k in range(len(key)))
      out[h, i] = dot / (np.sqrt(np.sum(key ** 2) + eps) * np.sqrt(np.sum(row ** 2) + eps))
  return out


def np_content(memory, keys, strengths, eps=1e-6):
  scores = strengths[:, None] * np_cosine(memory, keys, eps)
  e = np.exp(scores - scores.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def np_allocation(usage, eps=1e-6):
  usage = eps + (1 - eps) * usage
  phi = sorted(range(len(usage)), key=lambda i: (usage[i], i))  # free list, least used first
  a, prod = np.zeros(len(usage)), 1.0
  for j in phi:
    a[j] = (1 - usage[j]) * prod
    prod *= usage[j]
  return a


def np_link(link, p_prev, w):
  out = np.zeros_like(link)
  for i, j in itertools.product(range(len(w)), repeat=2):
    if i != j:
      out[i, j] = (1 - w[i] - w[j]) * link[i, j] + w[i] * p_prev[j]
  return out


# ----- values against the references ------------------------------------------------------

def test_cosine_and_content_match_numpy():
  memory, keys = RNG.normal(size=(N, W)), RNG.normal(size=(R, W))
  strengths = 1 + RNG.uniform(size=R) * 3
  memory[2] = 0  # a zero row: finite (zero) similarity thanks to the norm epsilon
  np.testing.assert_allclose(ad.cosine_similarity(memory, keys), np_cosine(memory, keys),
                             rtol=1e-12)
  np.testing.assert_allclose(ad.content_weights(memory, keys, strengths),
                             np_content(memory, keys, strengths), rtol=1e-12)
  np.testing.assert_allclose(ad.cosine_similarity(memory, keys, norm_eps=0.5),
                             np_cosine(memory, keys, eps=0.5), rtol=1e-12)


def test_cosine_by_hand():
  memory = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
  key = np.array([[3.0, 4.0]])
  np.testing.assert_allclose(ad.cosine_similarity(memory, key, norm_eps=1e-30)[0],
                             [0.6, 0.8, 1.0], rtol=1e-12)


def test_usage_matches_numpy_and_hand():
  usage, w_w, w_r, free = RNG.uniform(size=N), simplex(N), simplex(R, N), RNG.uniform(size=R)
  psi = np.ones(N)
  for i in range(R):
    for n in range(N):
      psi[n] *= 1 - free[i] * w_r[i, n]
  expected = (usage + w_w - usage * w_w) * psi
  np.testing.assert_allclose(ad.retention(free, w_r), psi, rtol=1e-12)
  np.testing.assert_allclose(ad.usage_update(usage, w_w, free, w_r), expected, rtol=1e-12)
  # By hand: u = 0.5, w^w = 0.5 -> 0.75; one head frees it with f = 1, w^r = 0.4 -> 0.45.
  out = ad.usage_update(np.array([0.5, 0.0]), np.array([0.5, 0.0]), np.array([1.0]),
                        np.array([[0.4, 0.0]]))
  np.testing.assert_allclose(out, [0.45, 0.0], rtol=1e-12)


@pytest.mark.parametrize("by_ranks", [False, True], ids=["sorted", "ranks"])
def test_allocation_matches_numpy_and_hand(by_ranks):
  alloc = functools.partial(ad.allocation_weights, by_ranks=by_ranks)
  usage = RNG.uniform(size=N)
  np.testing.assert_allclose(alloc(usage), np_allocation(usage), rtol=1e-12)
  ties = np.array([0.3, 0.1, 0.3, 0.1, 0.9])
  np.testing.assert_allclose(alloc(ties), np_allocation(ties), rtol=1e-12)
  # By hand (eps -> 0): order 1, 2, 0: a[1] = 0.8, a[2] = 0.5 * 0.2, a[0] = 0.1 * 0.2 * 0.5.
  out = alloc(np.array([0.9, 0.2, 0.5]), usage_eps=1e-300)
  np.testing.assert_allclose(out, [0.1 * 0.2 * 0.5, 0.8, 0.5 * 0.2], rtol=1e-12)
  # A usage of exactly 0 (eps 0): nothing after it in the order gets any weight.
  out = alloc(np.array([0.5, 0.0, 0.5]), usage_eps=0.0)
  np.testing.assert_allclose(out, [0.0, 1.0, 0.0], atol=1e-300)
  g = jax.grad(lambda u: jnp.sum(alloc(u, usage_eps=0.0) * jnp.arange(3.0)))(
      jnp.array([0.5, 0.0, 0.5]))
  assert np.all(np.isfinite(g))


@pytest.mark.parametrize("n", [6, 200])
def test_allocation_by_ranks_equals_the_sorted_form(n):
  """Same weights and gradients, float32, with ties, at zero and full usage; the default
  takes ranks up to RANKS_MAX_N and the sort above."""
  rng = np.random.default_rng(n)
  cases = [rng.uniform(size=n), rng.choice([0.1, 0.5, 0.9], size=n), np.zeros(n), np.ones(n),
           np.where(rng.uniform(size=n) < 0.5, 0.0, rng.uniform(size=n))]
  project = jnp.asarray(rng.normal(size=n), jnp.float32)
  for usage in cases:
    usage = jnp.asarray(usage, jnp.float32)
    forms = [functools.partial(ad.allocation_weights, by_ranks=b) for b in (False, True)]
    sorted_a, ranked_a = (f(usage) for f in forms)
    np.testing.assert_allclose(ranked_a, sorted_a, rtol=2e-5, atol=1e-7)
    sorted_g, ranked_g = (jax.grad(lambda u, f=f: jnp.dot(f(u), project))(usage) for f in forms)
    np.testing.assert_allclose(ranked_g, sorted_g, rtol=2e-4, atol=1e-6)
    default = ad.allocation_weights(usage)
    np.testing.assert_array_equal(default, ranked_a if n <= ad.RANKS_MAX_N else sorted_a)


def test_write_weights_and_memory_match_numpy():
  memory, key, beta = RNG.normal(size=(N, W)), RNG.normal(size=W), 2.5
  alloc, g_a, g_w = np_allocation(RNG.uniform(size=N)), 0.3, 0.8
  content = np_content(memory, key[None], np.array([beta]))[0]
  expected = g_w * (g_a * alloc + (1 - g_a) * content)
  w = ad.write_weights(memory, key, beta, alloc, g_a, g_w)
  np.testing.assert_allclose(w, expected, rtol=1e-12)
  erase, value = RNG.uniform(size=W), RNG.normal(size=W)
  new = np.array([[memory[i, k] * (1 - expected[i] * erase[k]) + expected[i] * value[k]
                   for k in range(W)] for i in range(N)])
  np.testing.assert_allclose(ad.write_memory(memory, w, erase, value), new, rtol=1e-12)


def test_linkage_precedence_directions_reads_match_numpy():
  link = RNG.uniform(size=(N, N)) * (1 - np.eye(N)) / N
  p_prev, w_w, w_r_prev = simplex(N), simplex(N), simplex(R, N)
  new_link = ad.link_update(link, p_prev, w_w)
  np.testing.assert_allclose(new_link, np_link(link, p_prev, w_w), rtol=1e-12)
  np.testing.assert_allclose(ad.precedence_update(p_prev, w_w),
                             (1 - w_w.sum()) * p_prev + w_w, rtol=1e-12)
  forward, backward = ad.directional_weights(new_link, w_r_prev)
  L = np.asarray(new_link)
  f_ref = [[sum(L[i, j] * w_r_prev[r, j] for j in range(N)) for i in range(N)] for r in range(R)]
  b_ref = [[sum(L[j, i] * w_r_prev[r, j] for j in range(N)) for i in range(N)] for r in range(R)]
  np.testing.assert_allclose(forward, f_ref, rtol=1e-12)
  np.testing.assert_allclose(backward, b_ref, rtol=1e-12)
  content, modes = simplex(R, N), np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
  w_r = ad.read_weights(content, forward, backward, modes)
  np.testing.assert_allclose(w_r[0], 0.2 * np.asarray(backward[0]) + 0.3 * content[0]
                             + 0.5 * np.asarray(forward[0]), rtol=1e-12)
  np.testing.assert_allclose(w_r[1], backward[1], rtol=1e-12)
  memory = RNG.normal(size=(N, W))
  np.testing.assert_allclose(ad.read_memory(memory, w_r),
                             [[sum(w_r[r, i] * memory[i, k] for i in range(N)) for k in range(W)]
                              for r in range(R)], rtol=1e-12)


# ----- properties -------------------------------------------------------------------------

def test_weightings_sum_to_at_most_one_and_allocation_picks_least_used():
  for _ in range(5):
    usage = RNG.uniform(size=N)
    a = np.asarray(ad.allocation_weights(usage))
    assert a.sum() <= 1 + 1e-12 and (a >= 0).all()
    assert a.argmax() == usage.argmin()
    c = ad.content_weights(RNG.normal(size=(N, W)), RNG.normal(size=(R, W)), np.ones(R))
    np.testing.assert_allclose(np.sum(c, -1), 1, rtol=1e-12)
  # A fully used memory has (nearly) nothing to allocate; an empty one gives slot 0.
  assert ad.allocation_weights(np.ones(N)).sum() < 1e-5
  np.testing.assert_allclose(ad.allocation_weights(np.zeros(N))[0], 1 - 1e-6, rtol=1e-12)


def test_link_diagonal_is_zero():
  link = ad.link_update(RNG.uniform(size=(N, N)), simplex(N), simplex(N))
  np.testing.assert_array_equal(np.diag(link), 0)


def test_sequential_allocation_writes_and_forward_links():
  """From empty memory, three writes by pure allocation land in three distinct slots,
  and L steps from each written slot to the next one written (forward) and back.

  (The slots need not be 0, 1, 2: a write leaves usage (1 - eps) eps^i on the untouched
  slots i, so the emptiest slot is not the lowest index.)"""
  memory, usage = jnp.zeros((N, W)), jnp.zeros(N)
  link, precedence, w_w = jnp.zeros((N, N)), jnp.zeros(N), jnp.zeros(N)
  no_reads, no_free = jnp.zeros((1, N)), jnp.zeros(1)
  slots = []
  for t in range(3):
    usage = ad.usage_update(usage, w_w, no_free, no_reads)
    w_w = ad.write_weights(memory, jnp.ones(W), 1.0, ad.allocation_weights(usage), 1.0, 1.0)
    memory = ad.write_memory(memory, w_w, jnp.ones(W), jnp.full(W, t + 1.0))
    link = ad.link_update(link, precedence, w_w)
    precedence = ad.precedence_update(precedence, w_w)
    slots.append(int(jnp.argmax(w_w)))
    assert w_w[slots[-1]] > 0.99
    np.testing.assert_allclose(memory[slots[-1]], t + 1.0, rtol=1e-5)
  assert len(set(slots)) == 3
  # Read heads sitting on the three written slots, in writing order.
  forward, backward = ad.directional_weights(link, jnp.eye(N)[jnp.array(slots)])
  for k in (0, 1):
    assert int(jnp.argmax(forward[k])) == slots[k + 1] and forward[k, slots[k + 1]] > 0.99
    assert int(jnp.argmax(backward[k + 1])) == slots[k] and backward[k + 1, slots[k]] > 0.99
  assert forward[2].sum() < 0.01 and backward[0].sum() < 0.01  # nothing after / before


# ----- no NaN at the degenerate points ------------------------------------------------------

@pytest.mark.slow
def test_no_nan_gradients_at_zero_memory_and_equal_usage():
  def loss(memory, keys, usage):
    c = ad.content_weights(memory, keys, jnp.full((R,), 2.0))
    w = ad.write_weights(memory, keys[0], 3.0, ad.allocation_weights(usage), 0.5, 0.9)
    m = ad.write_memory(memory, w, jnp.full((W,), 0.5), keys[1])
    return jnp.sum(ad.read_memory(m, c) ** 2) + jnp.sum(ad.cosine_similarity(m, keys))

  value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))  # one compile
  for usage in (jnp.zeros(N), jnp.full(N, 0.5), jnp.ones(N)):
    value, grads = value_and_grad(jnp.zeros((N, W)), jnp.zeros((R, W)), usage)
    assert np.isfinite(value)
    for g in grads:
      assert np.all(np.isfinite(g))
  for by_ranks in (False, True):
    g_usage = jax.grad(lambda u, b=by_ranks: jnp.sum(
        ad.allocation_weights(u, by_ranks=b) * jnp.arange(N)))(jnp.full(N, 0.5))
    assert np.all(np.isfinite(g_usage)) and np.any(g_usage != 0)


@pytest.mark.parametrize("by_ranks", [False, True], ids=["sorted", "ranks"])
def test_allocation_gradient_matches_finite_differences(by_ranks):
  usage = RNG.uniform(size=N)  # distinct values: the sort is locally constant
  weights = RNG.normal(size=N)
  f = lambda u: jnp.dot(ad.allocation_weights(u, by_ranks=by_ranks), weights)
  grad = jax.grad(f)(usage)
  for i in range(N):
    d = np.zeros(N)
    d[i] = 1e-6
    np.testing.assert_allclose(grad[i], (f(usage + d) - f(usage - d)) / 2e-6, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("eps", [1e-6, 1e-3])
def test_usage_clamp_keyword(eps):
  np.testing.assert_allclose(ad.allocation_weights(np.ones(N), usage_eps=eps).sum(),
                             np_allocation(np.ones(N), eps).sum(), rtol=1e-12)


# ----- link distribution sharpness (Csordas & Schmidhuber 2019; not in the paper) ------------

def np_sharpen(d, s, eps=1e-6):
  """S(d, s)_i = (d_i + eps)^s / sum_j (d_j + eps)^s, row by row, as powers."""
  out = np.zeros_like(d)
  for r in range(len(d)):
    powered = [(d[r, i] + eps) ** s[r] for i in range(d.shape[1])]
    out[r] = np.array(powered) / sum(powered)
  return out


def test_sharpen_matches_numpy_and_hand():
  d, s = simplex(R, N), 1 + RNG.uniform(0, 5, size=R)
  np.testing.assert_allclose(ad.sharpen(d, s), np_sharpen(d, s), rtol=1e-10)
  np.testing.assert_allclose(ad.sharpen(d, s, eps=0.1), np_sharpen(d, s, 0.1), rtol=1e-10)
  # By hand: s = 1 renormalises; s = 2 squares; a zero row (no link yet) is uniform.
  d = np.array([[0.3, 0.1, 0.0, 0.0, 0.0], [0.0] * N])
  got = np.asarray(ad.sharpen(d, np.array([1.0, 3.0]), eps=1e-300))
  np.testing.assert_allclose(got[0], [0.75, 0.25, 0, 0, 0], atol=1e-12)
  np.testing.assert_allclose(got[1], np.full(N, 1 / N), rtol=1e-12)
  np.testing.assert_allclose(ad.sharpen(d[:1], np.array([2.0]), eps=1e-300)[0, :2], [0.9, 0.1],
                             rtol=1e-12)


def test_sharpen_restores_weight_leaked_off_a_forward_chain():
  """A chain 0 -> 1 -> 2 with 0.4 of the read weight left on slot 0 (the rest lost to
  an empty content read): the plain forward weight carries 0.4 to slot 1, the sharpened
  one all of it, and sharper s concentrates it more."""
  link = np.zeros((N, N))
  link[1, 0] = link[2, 1] = 1.0  # L[i, j]: i written right after j
  forward, _ = ad.directional_weights(link, np.array([[0.4, 0, 0, 0, 0.0]]))
  np.testing.assert_allclose(forward[0], [0, 0.4, 0, 0, 0], atol=1e-15)
  soft, sharp = (np.asarray(ad.sharpen(forward, np.array([s])))[0] for s in (1.0, 3.0))
  np.testing.assert_allclose(soft.sum(), 1, rtol=1e-12)
  assert 0.9999 < soft[1] < sharp[1] <= 1


def test_sharpen_gradients_finite_and_match_finite_differences():
  weights = RNG.normal(size=(R, N))
  f = lambda d, s: jnp.sum(ad.sharpen(d, s) * weights)
  for d in (simplex(R, N), np.zeros((R, N))):
    s = 1 + RNG.uniform(0, 3, size=R)
    grad_d, grad_s = jax.grad(f, argnums=(0, 1))(d, s)
    assert np.all(np.isfinite(grad_d)) and np.all(np.isfinite(grad_s))
    for r in range(R):
      e = np.zeros(R)
      e[r] = 1e-6
      np.testing.assert_allclose(grad_s[r], (f(d, s + e) - f(d, s - e)) / 2e-6, rtol=1e-6,
                                 atol=1e-9)
  d = simplex(R, N)
  grad_d = jax.grad(f)(d, s)
  for r, i in [(0, 0), (1, 3)]:
    e = np.zeros((R, N))
    e[r, i] = 1e-7
    np.testing.assert_allclose(grad_d[r, i], (f(d + e, s) - f(d - e, s)) / 2e-7, rtol=1e-5,
                               atol=1e-8)


# ----- key masking (Csordas & Schmidhuber 2019; not in the paper) -----------------------------

def test_masked_cosine_matches_numpy_on_masked_copies():
  """D(k * m, M[i] * m): the reference masks a copy of the memory for each key."""
  memory, keys, masks = RNG.normal(size=(N, W)), RNG.normal(size=(R, W)), RNG.uniform(size=(R, W))
  memory[1] = 0
  want = np.stack([np_cosine(memory * masks[h], keys[h:h + 1] * masks[h])[0] for h in range(R)])
  np.testing.assert_allclose(ad.cosine_similarity(memory, keys, masks_HxW=masks), want,
                             rtol=1e-12)
  strengths = 1 + RNG.uniform(size=R) * 3
  np.testing.assert_allclose(
      ad.content_weights(memory, keys, strengths, masks_HxW=masks),
      np.stack([np_content(memory * masks[h], keys[h:h + 1] * masks[h], strengths[h:h + 1])[0]
                for h in range(R)]), rtol=1e-12)
  allocation, g_a, g_w = simplex(N), 0.3, 0.8
  c_w = np_content(memory * masks[0], keys[:1] * masks[0], np.array([2.0]))[0]
  np.testing.assert_allclose(
      ad.write_weights(memory, keys[0], 2.0, allocation, g_a, g_w, write_mask_W=masks[0]),
      g_w * (g_a * allocation + (1 - g_a) * c_w), rtol=1e-12)


def test_masked_lookup_by_hand():
  """Slots share a tag in word position 0 and differ in the rest: unmasked, the key
  [1, 0, 0] is nearest to the slot with the least else; masked to position 0 every
  slot matches fully; a constant mask changes nothing (up to the norm epsilon)."""
  memory = np.array([[1.0, 0.1, 0.0], [1.0, 5.0, -3.0], [-1.0, 0.0, 0.0]])
  key = np.array([[1.0, 0.0, 0.0]])
  plain = np.asarray(ad.cosine_similarity(memory, key, norm_eps=1e-30))[0]
  masked = np.asarray(ad.cosine_similarity(memory, key, masks_HxW=np.array([[1.0, 0, 0]]),
                                           norm_eps=1e-30))[0]
  assert plain.argmax() == 0 and plain[1] < 0.2
  np.testing.assert_allclose(masked, [1, 1, -1], atol=1e-12)
  np.testing.assert_allclose(
      ad.cosine_similarity(memory, key, masks_HxW=np.full((1, 3), 0.5), norm_eps=1e-30), [plain],
      rtol=1e-12)


def test_masked_content_gradients_finite_at_zero_memory():
  f = lambda m, k, masks: jnp.sum(ad.content_weights(m, k, jnp.full((R,), 2.0), masks_HxW=masks)
                                  * jnp.arange(N))
  for masks in (np.zeros((R, W)), np.full((R, W), 0.5)):
    grads = jax.grad(f, argnums=(0, 1, 2))(np.zeros((N, W)), np.zeros((R, W)), masks)
    for g in grads:
      assert np.all(np.isfinite(g))
