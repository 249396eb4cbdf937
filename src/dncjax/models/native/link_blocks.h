// The link step per lane as link_lanes.h computes it, with kB rows of L at a time held in
// vector registers (GCC/Clang vector extensions of the target's width: 64 bytes with
// AVX-512, else 32, AVX2's) and kR read heads known when compiling: the per-column values
// (w, p, the R rows of v and gb, the column sums) are loaded once per kB rows rather than
// once per row, and nothing passes over a row twice. Used by link_kernel.cc for R <= 4
// (forward; backward from N = 512 on, where it measured faster: at N = 256 a lane's rows
// stay in cache and the row-by-row form is as fast).

#ifndef DNCJAX_NATIVE_LINK_BLOCKS_H_
#define DNCJAX_NATIVE_LINK_BLOCKS_H_

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace dncjax {
namespace blocks {

#if defined(__AVX512F__)
#define DNCJAX_VECTOR_BYTES 64
#else
#define DNCJAX_VECTOR_BYTES 32
#endif

template <typename T>
struct Simd;
template <>
struct Simd<float> {
  typedef float V __attribute__((vector_size(DNCJAX_VECTOR_BYTES)));
};
template <>
struct Simd<double> {
  typedef double V __attribute__((vector_size(DNCJAX_VECTOR_BYTES)));
};
template <typename T>
using V = typename Simd<T>::V;
template <typename T>
constexpr int64_t kWidth = DNCJAX_VECTOR_BYTES / sizeof(T);

template <typename T>
inline V<T> Load(const T* p) {
  V<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
inline void Store(T* p, V<T> v) {
  std::memcpy(p, &v, sizeof(v));
}

template <typename T>
inline T Sum(V<T> v) {  // pairwise
  T a[kWidth<T>];
  std::memcpy(a, &v, sizeof(v));
  for (int64_t h = kWidth<T> / 2; h >= 1; h /= 2)
    for (int64_t k = 0; k < h; ++k) a[k] += a[k + h];
  return a[0];
}

// Rows i .. i + kB - 1 of the forward step (kR read heads): L'[i + q, j] for every j into
// L_new, their share of b[r, j] = sum_i L'[i, j] v[r, i], and f[r, i + q] whole.
template <typename T, int kR, int kB>
void ForwardBlock(const T* L, const T* w, const T* p, const T* v, int64_t n, int64_t i,
                  T* L_new, T* f, T* b) {
  constexpr int64_t W = kWidth<T>;
  T keep[kB], wi[kB], vi[kB][kR], f_tail[kB][kR];
  V<T> f_acc[kB][kR];
  for (int q = 0; q < kB; ++q) {
    keep[q] = T(1) - w[i + q];
    wi[q] = w[i + q];
    for (int r = 0; r < kR; ++r) {
      vi[q][r] = v[r * n + i + q];
      f_acc[q][r] = V<T>{};
      f_tail[q][r] = 0;
    }
  }
  const int64_t whole = n / W * W;  // columns in whole vectors; the rest one by one
  for (int64_t j = 0; j < whole; j += W) {
    const V<T> wv = Load(w + j), pv = Load(p + j);
    V<T> a[kB];
    for (int q = 0; q < kB; ++q) {
      a[q] = (keep[q] - wv) * Load(L + (i + q) * n + j) + wi[q] * pv;
      if (i + q >= j && i + q < j + W) a[q][i + q - j] = T(0);  // L'[i, i] = 0
      Store(L_new + (i + q) * n + j, a[q]);
    }
    for (int r = 0; r < kR; ++r) {
      const V<T> vr = Load(v + r * n + j);
      V<T> br = Load(b + r * n + j);
      for (int q = 0; q < kB; ++q) {
        f_acc[q][r] += a[q] * vr;
        br += vi[q][r] * a[q];
      }
      Store(b + r * n + j, br);
    }
  }
  for (int64_t j = whole; j < n; ++j) {
    for (int q = 0; q < kB; ++q) {
      const T a = (i + q == j) ? T(0) : (keep[q] - w[j]) * L[(i + q) * n + j] + wi[q] * p[j];
      L_new[(i + q) * n + j] = a;
      for (int r = 0; r < kR; ++r) {
        f_tail[q][r] += a * v[r * n + j];
        b[r * n + j] += vi[q][r] * a;
      }
    }
  }
  for (int q = 0; q < kB; ++q)
    for (int r = 0; r < kR; ++r) f[r * n + i + q] = Sum<T>(f_acc[q][r]) + f_tail[q][r];
}

// Rows i .. i + kB - 1 of the backward step: H[i + q, j] and gL[i + q, j] for every j,
// the row sums of gw[i + q] and gv[r, i + q] whole; the column sums of gw, gp and gv
// (indexed by j) accumulate in gw_cols, gp_cols and gv_cols.
template <typename T, int kR, int kB>
void BackwardBlock(const T* L, const T* w, const T* p, const T* v, const T* G, const T* gf,
                   const T* gb, int64_t n, int64_t i, T* gL, T* gw, T* gw_cols, T* gp_cols,
                   T* gv, T* gv_cols) {
  constexpr int64_t W = kWidth<T>;
  T keep[kB], wi[kB], vi[kB][kR], gfi[kB][kR], gw_tail[kB], gv_tail[kB][kR];
  V<T> gw_acc[kB], gv_acc[kB][kR];
  for (int q = 0; q < kB; ++q) {
    keep[q] = T(1) - w[i + q];
    wi[q] = w[i + q];
    gw_acc[q] = V<T>{};
    gw_tail[q] = 0;
    for (int r = 0; r < kR; ++r) {
      vi[q][r] = v[r * n + i + q];
      gfi[q][r] = gf[r * n + i + q];
      gv_acc[q][r] = V<T>{};
      gv_tail[q][r] = 0;
    }
  }
  const int64_t whole = n / W * W;
  for (int64_t j = 0; j < whole; j += W) {
    const V<T> wv = Load(w + j), pv = Load(p + j);
    V<T> vr[kR], gbr[kR];
    for (int r = 0; r < kR; ++r) vr[r] = Load(v + r * n + j), gbr[r] = Load(gb + r * n + j);
    V<T> gw_col = Load(gw_cols + j), gp_col = Load(gp_cols + j), a[kB];
    for (int q = 0; q < kB; ++q) {
      const V<T> Lq = Load(L + (i + q) * n + j);
      a[q] = (keep[q] - wv) * Lq + wi[q] * pv;
      V<T> h = Load(G + (i + q) * n + j);  // H = gL' + sum_r gf[r, i] v[r] + v[r, i] gb[r]
      for (int r = 0; r < kR; ++r) h += gfi[q][r] * vr[r] + vi[q][r] * gbr[r];
      if (i + q >= j && i + q < j + W) a[q][i + q - j] = h[i + q - j] = T(0);
      Store(gL + (i + q) * n + j, (keep[q] - wv) * h);
      gw_acc[q] += h * (pv - Lq);
      gw_col -= h * Lq;
      gp_col += wi[q] * h;
      for (int r = 0; r < kR; ++r) gv_acc[q][r] += a[q] * gbr[r];
    }
    Store(gw_cols + j, gw_col);
    Store(gp_cols + j, gp_col);
    for (int r = 0; r < kR; ++r) {
      V<T> c = Load(gv_cols + r * n + j);
      for (int q = 0; q < kB; ++q) c += gfi[q][r] * a[q];
      Store(gv_cols + r * n + j, c);
    }
  }
  for (int64_t j = whole; j < n; ++j) {
    for (int q = 0; q < kB; ++q) {
      const T Lq = L[(i + q) * n + j];
      const bool diagonal = i + q == j;
      const T a = diagonal ? T(0) : (keep[q] - w[j]) * Lq + wi[q] * p[j];
      T h = G[(i + q) * n + j];
      for (int r = 0; r < kR; ++r) h += gfi[q][r] * v[r * n + j] + vi[q][r] * gb[r * n + j];
      if (diagonal) h = 0;
      gL[(i + q) * n + j] = (keep[q] - w[j]) * h;
      gw_tail[q] += h * (p[j] - Lq);
      gw_cols[j] -= h * Lq;
      gp_cols[j] += wi[q] * h;
      for (int r = 0; r < kR; ++r) {
        gv_tail[q][r] += a * gb[r * n + j];
        gv_cols[r * n + j] += gfi[q][r] * a;
      }
    }
  }
  for (int q = 0; q < kB; ++q) {
    gw[i + q] = Sum<T>(gw_acc[q]) + gw_tail[q];
    for (int r = 0; r < kR; ++r) gv[r * n + i + q] = Sum<T>(gv_acc[q][r]) + gv_tail[q][r];
  }
}

template <typename T, int kR, int kB>
void ForwardLane(const T* L, const T* w, const T* p, const T* v, int64_t n, T* L_new, T* f,
                 T* b) {
  std::fill(b, b + kR * n, T(0));
  int64_t i = 0;
  for (; i + kB <= n; i += kB) ForwardBlock<T, kR, kB>(L, w, p, v, n, i, L_new, f, b);
  for (; i < n; ++i) ForwardBlock<T, kR, 1>(L, w, p, v, n, i, L_new, f, b);
}

// scratch: (2 + kR) n numbers (the column sums of gw, gp and gv).
template <typename T, int kR, int kB>
void BackwardLane(const T* L, const T* w, const T* p, const T* v, const T* G, const T* gf,
                  const T* gb, int64_t n, T* gL, T* gw, T* gp, T* gv, T* scratch) {
  T *gw_cols = scratch, *gp_cols = scratch + n, *gv_cols = scratch + 2 * n;
  std::fill(scratch, scratch + (2 + kR) * n, T(0));
  int64_t i = 0;
  for (; i + kB <= n; i += kB)
    BackwardBlock<T, kR, kB>(L, w, p, v, G, gf, gb, n, i, gL, gw, gw_cols, gp_cols, gv,
                             gv_cols);
  for (; i < n; ++i)
    BackwardBlock<T, kR, 1>(L, w, p, v, G, gf, gb, n, i, gL, gw, gw_cols, gp_cols, gv,
                            gv_cols);
  for (int64_t k = 0; k < n; ++k) gw[k] += gw_cols[k];
  std::copy(gp_cols, gp_cols + n, gp);
  for (int64_t k = 0; k < kR * n; ++k) gv[k] += gv_cols[k];
}

}  // namespace blocks
}  // namespace dncjax

#endif  // DNCJAX_NATIVE_LINK_BLOCKS_H_
