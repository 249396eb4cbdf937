"""native.content_top_k (content_kernel.cc): the sparse content look-up's choice of K slots
in one pass over the memory, against jax.lax.top_k of XLA's scores (order, ties to the lower
slot, NaN first, lanes), and sparse.content_weights with it against XLA's form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dncjax.models import addressing, native, sparse
from dncjax.models.native import build

jax.config.update("jax_enable_x64", True)

pytestmark = pytest.mark.skipif(not build.compiler_found(),
                                reason="no C++ compiler ($CXX or c++): no native kernels")
RNG = np.random.default_rng(11)


def xla_top_k(memory, keys, strengths, k):
  scores = strengths[..., None] * jax.vmap(addressing.cosine_similarity)(memory, keys)
  return jax.lax.top_k(scores, k)[1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_kernel_chooses_lax_top_ks_slots_in_its_order(dtype):
  B, N, W, H, K = 5, 50, 6, 3, 4
  memory = RNG.normal(size=(B, N, W)).astype(dtype)
  keys = RNG.normal(size=(B, H, W)).astype(dtype)
  strengths = (1 + RNG.exponential(size=(B, H))).astype(dtype)
  got = native.content_top_k(memory, keys, strengths, K, addressing.NORM_EPS)
  assert got.dtype == jnp.int32 and got.shape == (B, H, K)
  np.testing.assert_array_equal(got, xla_top_k(memory, keys, strengths, K))
  batched = jax.vmap(lambda m, k, s: native.content_top_k(m, k, s, K, addressing.NORM_EPS))
  np.testing.assert_array_equal(batched(memory, keys, strengths), got)


def test_ties_go_to_the_lower_slot_and_nan_first():
  N, W, K = 9, 3, 4
  memory = np.zeros((1, N, W))
  keys, strengths = np.ones((1, 2, W)), np.ones((1, 2))
  top = lambda m: np.asarray(native.content_top_k(m, keys, strengths, K, addressing.NORM_EPS))
  np.testing.assert_array_equal(top(memory)[0], [[0, 1, 2, 3]] * 2)  # all scores 0
  memory[0, [2, 6, 7]] = 1.0  # three equal best rows
  np.testing.assert_array_equal(top(memory)[0], [[2, 6, 7, 0]] * 2)
  memory[0, 8, 0] = np.nan
  np.testing.assert_array_equal(top(memory)[0], [[8, 2, 6, 7]] * 2)


def test_content_weights_with_the_kernel_equal_xlas_values_and_gradients():
  N, W, R, K = 40, 5, 3, 4
  args = (jnp.asarray(RNG.normal(size=(N, W))), jnp.asarray(RNG.normal(size=(R, W))),
          jnp.asarray(1 + RNG.exponential(size=R)))
  probe = jnp.asarray(RNG.normal(size=(R, K)))
  results = {}
  for kind in ("native", "xla"):
    native.select(kind)
    try:
      fn = lambda *a: jnp.sum(probe * sparse.content_weights(*a, K).value)
      results[kind] = (sparse.content_weights(*args, K), jax.grad(fn, argnums=(0, 1, 2))(*args))
      jaxpr = str(jax.make_jaxpr(lambda *a: sparse.content_weights(*a, K))(*args))
      assert ("ffi_call" in jaxpr) == (kind == "native")
    finally:
      native.select(None)
  (got, g_got), (want, g_want) = results["native"], results["xla"]
  np.testing.assert_array_equal(got.index, want.index)
  np.testing.assert_allclose(got.value, want.value, rtol=0, atol=1e-15)
  for a, b in zip(g_got, g_want):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-15)
