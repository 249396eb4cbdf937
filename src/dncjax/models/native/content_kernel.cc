// The sparse cores' content look-up on the CPU (dncjax.models.sparse.content_weights): the
// K slots of the largest scores beta^h D(k^h, M[i]), chosen in one pass over the memory,
// as an XLA FFI handler for dncjax.models.native.
//
// Per lane (one example), with memory M [N, W], keys k [H, W] and strengths beta [H]:
//   score[h, i] = beta[h] * ((k^h . M[i]) / (sqrt(|k^h|^2 + eps) * sqrt(|M[i]|^2 + eps)))
// (addressing.cosine_similarity's expression) and the K slots of the largest scores per
// key, largest first, ties to the lower slot (as jax.lax.top_k), a NaN above every number.
// Each row of M is read once for all H keys, and no [H, N] array of scores is written
// (XLA's form writes them, then sorts them out with its TopK). No gradient: the choice of
// slots is piecewise constant, and sparse.py computes the K scores again from the rows.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "lanes.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// Whether score a at slot i goes before score b at slot j: larger first, NaN first of all,
// then the lower slot.
template <typename T>
bool Before(T a, int32_t i, T b, int32_t j) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && (!std::isnan(b) || i < j);
  return a > b || (a == b && i < j);
}

// Inserts (score, slot) into the top list (kept largest first, `size` entries of k).
template <typename T>
void Insert(T score, int32_t slot, int64_t k, int64_t& size, T* best, int32_t* where) {
  if (size == k && !Before(score, slot, best[k - 1], where[k - 1])) return;
  int64_t at = size < k ? size++ : k - 1;
  while (at > 0 && Before(score, slot, best[at - 1], where[at - 1])) {
    best[at] = best[at - 1];
    where[at] = where[at - 1];
    --at;
  }
  best[at] = score;
  where[at] = slot;
}

constexpr int64_t kBlock = 64;  // rows of M scored at a time (their scores stay in cache)

// One lane: the scores of a block of rows for every key, then the block's entries into the
// top lists (the common case, a score below the K-th best so far, costs one compare).
template <typename T>
void Lane(const T* M, const T* keys, const T* beta, int64_t n, int64_t w, int64_t h,
          int64_t k, T eps, int32_t* index, std::vector<T>& scratch) {
  scratch.assign(h * (1 + k) + kBlock * (1 + h + w), T(0));
  T* key_norm = scratch.data();
  T* best = key_norm + h;
  T* row_norm = best + h * k;
  T* score = row_norm + kBlock;
  T* column = score + h * kBlock;  // the block transposed, [W, kBlock]: loops over rows
  std::vector<int64_t> size(h, 0);
  for (int64_t a = 0; a < h; ++a) {
    T sq = 0;
    for (int64_t e = 0; e < w; ++e) sq += keys[a * w + e] * keys[a * w + e];
    key_norm[a] = std::sqrt(sq + eps);
  }
  for (int64_t i0 = 0; i0 < n; i0 += kBlock) {
    const int64_t rows = std::min(kBlock, n - i0);
    const T* block = M + i0 * w;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t e = 0; e < w; ++e) column[e * kBlock + r] = block[r * w + e];
    std::fill(row_norm, row_norm + kBlock, T(0));
    for (int64_t e = 0; e < w; ++e)
#pragma omp simd
      for (int64_t r = 0; r < kBlock; ++r) {
        const T x = column[e * kBlock + r];
        row_norm[r] += x * x;
      }
#pragma omp simd
    for (int64_t r = 0; r < kBlock; ++r) row_norm[r] = std::sqrt(row_norm[r] + eps);
    for (int64_t a = 0; a < h; ++a) {
      const T* key = keys + a * w;
      T* out = score + a * kBlock;
      std::fill(out, out + kBlock, T(0));
      for (int64_t e = 0; e < w; ++e)
#pragma omp simd
        for (int64_t r = 0; r < kBlock; ++r) out[r] += key[e] * column[e * kBlock + r];
#pragma omp simd
      for (int64_t r = 0; r < kBlock; ++r)
        out[r] = beta[a] * (out[r] / (key_norm[a] * row_norm[r]));
      T* top = best + a * k;
      int32_t* where = index + a * k;
      for (int64_t r = 0; r < rows; ++r) {
        if (size[a] == k && out[r] < top[k - 1]) continue;  // the common case (no NaN)
        const int32_t slot = static_cast<int32_t>(i0 + r);
        if (size[a] < k || Before(out[r], slot, top[k - 1], where[k - 1]))
          Insert(out[r], slot, k, size[a], top, where);
      }
    }
  }
}

template <ffi::DataType D>
ffi::Error TopK(ffi::ThreadPool pool, ffi::Buffer<D> M, ffi::Buffer<D> keys,
                ffi::Buffer<D> beta, double eps, ffi::ResultBuffer<ffi::S32> index) {
  auto mdims = M.dimensions();
  auto kdims = keys.dimensions();
  auto idims = index->dimensions();
  if (mdims.size() < 2 || kdims.size() != mdims.size() || idims.size() != mdims.size())
    return ffi::Error::InvalidArgument("content top-K: M [..., N, W], keys [..., H, W]");
  const int64_t n = mdims[mdims.size() - 2], w = mdims.back();
  const int64_t h = kdims[kdims.size() - 2], k = idims.back();
  const int64_t lanes = n * w == 0 ? 0 : static_cast<int64_t>(M.element_count()) / (n * w);
  if (kdims.back() != w || static_cast<int64_t>(keys.element_count()) != lanes * h * w ||
      static_cast<int64_t>(beta.element_count()) != lanes * h ||
      static_cast<int64_t>(index->element_count()) != lanes * h * k || k > n)
    return ffi::Error::InvalidArgument("content top-K: shapes do not match");
  using T = ffi::NativeType<D>;
  dncjax::ForLanes(pool, lanes, lanes * n * w, [&](int64_t first, int64_t last) {
    std::vector<T> scratch;
    for (int64_t l = first; l < last; ++l)
      Lane<T>(M.typed_data() + l * n * w, keys.typed_data() + l * h * w,
              beta.typed_data() + l * h, n, w, h, k, static_cast<T>(eps),
              index->typed_data() + l * h * k, scratch);
  });
  return ffi::Error::Success();
}

template <ffi::DataType D>
auto BindTopK() {
  return ffi::Ffi::Bind().template Ctx<ffi::ThreadPool>()
      .template Arg<ffi::Buffer<D>>().template Arg<ffi::Buffer<D>>()  // M keys
      .template Arg<ffi::Buffer<D>>().template Attr<double>("eps")    // beta, eps
      .template Ret<ffi::Buffer<ffi::S32>>();                         // index [H, K]
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxContentTopKF32, TopK<ffi::F32>, BindTopK<ffi::F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxContentTopKF64, TopK<ffi::F64>, BindTopK<ffi::F64>());
