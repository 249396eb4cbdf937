// The DNC's memory access around the temporal link step for one lane (one example), forward
// and backward: the write (usage, allocation, write weights, erase and add) and the read
// (read content weights, read weights, read vectors). Shared by the handlers of
// access_kernel.cc; addressing.py has the same equations as XLA operations.
//
// Write, from M = M_{t-1} [N, W], u0 = u_{t-1}, ww0 = w^w_{t-1} [N], wr0 = w^r_{t-1}
// [R, N], the write key k [W], erase e [W], write vector v [W], free gates fg [R] and
// gates = (beta^w, g^a, g^w):
//   psi[i] = prod_r (1 - fg[r] wr0[r, i])          u[i] = (u0 + ww0 - u0 ww0)[i] psi[i]
//   uc = eps_u + (1 - eps_u) u, phi its stable ascending order,
//   a[phi[j]] = (1 - uc[phi[j]]) P[j],  P[j] = prod_{i < j} uc[phi[i]]
//   c = softmax(beta^w D(k, M)),  D(k, M)[i] = k . M[i] / (|k|_eps |M[i]|_eps)
//   ww = g^w (g^a a + (1 - g^a) c)                 M' = M (1 - ww e^T) + ww v^T
// Read, from M' [N, W], f, b [R, N], keys kr [R, W] and heads [R, 4] = (beta^r, pi^r):
//   c_r = softmax(beta_r D(kr[r], M'))   wr[r] = pi_r[0] b[r] + pi_r[1] c_r + pi_r[2] f[r]
//   rv[r] = wr[r] M'
// Each backward pass recomputes its forward pass from the inputs, then runs the chain rule
// back through it (the allocation's products without division: see AllocationBackward).

#ifndef DNCJAX_NATIVE_ACCESS_LANES_H_
#define DNCJAX_NATIVE_ACCESS_LANES_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

namespace dncjax {

// e^x by range reduction, x = k ln 2 + r with |r| <= ln(2) / 2, a polynomial in r and a
// scale of 2^k put straight into the exponent bits: straight-line arithmetic, so that a
// loop of it vectorizes (the C library's exp is a call per element). x is clamped to
// the normal range (e^x of a softmax's shifted scores below it counts as 2^-126 or
// 2^-1022 instead of less). float: Cephes' expf polynomial (about 1 ulp); double: the
// Taylor series to r^13 / 13! (its remainder below 1e-17).
inline float Exp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to integer
  const float r = (x - k * 0.693359375f) + k * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

inline double Exp(double x) {
  constexpr double kInverseFactorials[14] = {
      1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320,
      1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800};
  x = x < -708.0 ? -708.0 : (x > 709.0 ? 709.0 : x);
  const double k = (x * 1.4426950408889634 + 6755399441055744.0) - 6755399441055744.0;
  const double r = (x - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10;
  double p = kInverseFactorials[13];
  for (int j = 12; j >= 0; --j) p = p * r + kInverseFactorials[j];
  const int64_t bits = (static_cast<int64_t>(k) + 1023) << 52;
  double scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// M [N, W] by columns, t[w N + i] = M[i, w] (so that loops over the N slots run along
// contiguous memory), and its rows' norms |M[i]|_eps = sqrt(|M[i]|^2 + eps).
template <typename T>
struct Columns {
  std::vector<T> t, norm;
  int64_t n = 0, W = 0;

  void Set(const T* M, int64_t rows, int64_t width, T eps) {
    n = rows, W = width;
    t.resize(n * W);
    norm.assign(n, T(0));
    T* sum = norm.data();
    for (int64_t w = 0; w < W; ++w) {  // by columns: contiguous stores, strided loads
      T* col = t.data() + w * n;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) {
        const T x = M[i * W + w];
        col[i] = x;
        sum[i] += x * x;
      }
    }
    for (int64_t i = 0; i < n; ++i) norm[i] = std::sqrt(norm[i] + eps);
  }
};

template <typename T>
struct Content {  // c = softmax(beta D(k, M)) and what its backward pass needs
  std::vector<T> D, c, g_dot, g_row;  // [N] each
  T key_norm = 0;

  void Forward(const Columns<T>& m, const T* k, T beta, T eps) {
    const int64_t n = m.n;
    D.assign(n, T(0)), c.resize(n);
    T kk = 0;
    for (int64_t w = 0; w < m.W; ++w) {
      kk += k[w] * k[w];
      const T kw = k[w], *col = m.t.data() + w * n;
      T* d = D.data();
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) d[i] += kw * col[i];
    }
    key_norm = std::sqrt(kk + eps);
    T top = -std::numeric_limits<T>::infinity(), total = 0;
    T *d = D.data(), *e = c.data();
    const T* norm = m.norm.data();
#pragma omp simd reduction(max : top)
    for (int64_t i = 0; i < n; ++i) {
      d[i] /= key_norm * norm[i];
      e[i] = beta * d[i];
      top = e[i] > top ? e[i] : top;
    }
#pragma omp simd reduction(+ : total)
    for (int64_t i = 0; i < n; ++i) total += (e[i] = Exp(e[i] - top));
    const T scale = 1 / total;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) e[i] *= scale;
  }

  // From the cotangent gc [N]: adds to gT [W, N] (M's cotangent by columns) and gk [W];
  // returns g beta.
  T Backward(const Columns<T>& m, const T* k, T beta, const T* gc, T* gT, T* gk) {
    const int64_t n = m.n;
    g_dot.resize(n), g_row.resize(n);
    const T *e = c.data(), *d = D.data(), *norm = m.norm.data();
    T *gd = g_dot.data(), *gr = g_row.data();
    T centre = 0, g_beta = 0, g_key_norm = 0;
#pragma omp simd reduction(+ : centre)
    for (int64_t i = 0; i < n; ++i) centre += gc[i] * e[i];
#pragma omp simd reduction(+ : g_beta, g_key_norm)
    for (int64_t i = 0; i < n; ++i) {
      const T gz = e[i] * (gc[i] - centre);           // softmax
      g_beta += gz * d[i];
      const T gD = beta * gz;
      gd[i] = gD / (key_norm * norm[i]);              // D = dot / (|k| |M[i]|)
      g_key_norm -= gD * d[i] / key_norm;
      gr[i] = -gD * d[i] / (norm[i] * norm[i]);       // through |M[i]|, per M[i, w]
    }
    for (int64_t w = 0; w < m.W; ++w) {
      const T kw = k[w], *col = m.t.data() + w * n;
      T* g_col = gT + w * n;
      T acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t i = 0; i < n; ++i) {
        g_col[i] += gd[i] * kw + gr[i] * col[i];
        acc += gd[i] * col[i];
      }
      gk[w] += acc + g_key_norm * kw / key_norm;
    }
    return g_beta;
  }
};

// The raw interface vector xi [X] of one lane in the paper's order (access.py): read keys
// [R W], read strengths [R], write key [W], write strength, erase [W], write vector [W],
// free gates [R], allocation gate, write gate, read modes [R, 3] (anything after them, the
// sharpness of link_sharpness, is not read here), and the transforms oneplus, sigmoid,
// softmax of access.parse_interface with their derivatives.
template <typename T>
struct Interface {
  int64_t W, R, strengths, key, strength, erase, vector, free, gates, modes, size;
  std::vector<T> e, fg, transformed, heads;  // e [W], fg [R], gates [3], heads [R, 4]

  Interface(int64_t word, int64_t reads) : W(word), R(reads) {
    strengths = R * W, key = strengths + R, strength = key + W, erase = strength + 1;
    vector = erase + W, free = vector + W, gates = free + R, modes = gates + 2;
    size = modes + 3 * R;
  }
  static T Sigmoid(T x) { return 1 / (1 + std::exp(-x)); }
  static T Oneplus(T x) {  // 1 + log(1 + e^x), as logaddexp(x, 0)
    return 1 + std::max(x, T(0)) + std::log1p(std::exp(-std::abs(x)));
  }

  // e, fg and (beta^w, g^a, g^w) from xi; k^w and v_t are xi's own numbers.
  void DecodeWrite(const T* xi) {
    e.resize(W), fg.resize(R), transformed.resize(3);
    for (int64_t w = 0; w < W; ++w) e[w] = Sigmoid(xi[erase + w]);
    for (int64_t r = 0; r < R; ++r) fg[r] = Sigmoid(xi[free + r]);
    transformed[0] = Oneplus(xi[strength]);
    transformed[1] = Sigmoid(xi[gates]);
    transformed[2] = Sigmoid(xi[gates + 1]);
  }

  // g xi from the cotangents of (k^w, e, v, fg, (beta^w, g^a, g^w)); zero elsewhere.
  void EncodeWrite(const T* xi, const T* gk, const T* ge, const T* gv, const T* gfg,
                   const T* ggates, int64_t X, T* gxi) const {
    std::fill(gxi, gxi + X, T(0));
    for (int64_t w = 0; w < W; ++w) {
      gxi[key + w] = gk[w];
      gxi[erase + w] = ge[w] * e[w] * (1 - e[w]);
      gxi[vector + w] = gv[w];
    }
    for (int64_t r = 0; r < R; ++r) gxi[free + r] = gfg[r] * fg[r] * (1 - fg[r]);
    gxi[strength] = ggates[0] * Sigmoid(xi[strength]);
    gxi[gates] = ggates[1] * transformed[1] * (1 - transformed[1]);
    gxi[gates + 1] = ggates[2] * transformed[2] * (1 - transformed[2]);
  }

  // heads [R, 4] = (beta^r, pi^r) from xi; the read keys are xi's first R W numbers.
  void DecodeRead(const T* xi) {
    heads.resize(4 * R);
    for (int64_t r = 0; r < R; ++r) {
      const T* z = xi + modes + 3 * r;
      const T top = std::max(z[0], std::max(z[1], z[2]));
      T p[3], total = 0;
      for (int m = 0; m < 3; ++m) total += (p[m] = std::exp(z[m] - top));
      heads[4 * r] = Oneplus(xi[strengths + r]);
      for (int m = 0; m < 3; ++m) heads[4 * r + 1 + m] = p[m] / total;
    }
  }

  // g xi from the cotangents of the read keys [R W] and heads [R, 4]; zero elsewhere.
  void EncodeRead(const T* xi, const T* gkr, const T* gheads, int64_t X, T* gxi) const {
    std::fill(gxi, gxi + X, T(0));
    std::copy(gkr, gkr + R * W, gxi);
    for (int64_t r = 0; r < R; ++r) {
      gxi[strengths + r] = gheads[4 * r] * Sigmoid(xi[strengths + r]);
      const T* pi = heads.data() + 4 * r + 1;
      const T* g_pi = gheads + 4 * r + 1;
      const T centre = g_pi[0] * pi[0] + g_pi[1] * pi[1] + g_pi[2] * pi[2];
      for (int m = 0; m < 3; ++m) gxi[modes + 3 * r + m] = pi[m] * (g_pi[m] - centre);
    }
  }
};

template <typename T>
struct Write {  // one lane's write step, its intermediates kept for the backward pass
  std::vector<T> psi, written, u, uc, P, a, ww;
  std::vector<int32_t> order;
  Columns<T> columns;
  Content<T> content;

  void Forward(const T* M, const T* u0, const T* ww0, const T* wr0, const T* k, const T* fg,
               const T* gates, int64_t n, int64_t W, int64_t R, T norm_eps, T usage_eps) {
    psi.resize(n), written.resize(n), u.resize(n), uc.resize(n), P.resize(n), a.resize(n);
    ww.resize(n), order.resize(n);
    std::fill(psi.begin(), psi.end(), T(1));
    T* keep = psi.data();
    for (int64_t r = 0; r < R; ++r) {
      const T f = fg[r], *wr_r = wr0 + r * n;
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) keep[i] *= 1 - f * wr_r[i];
    }
    for (int64_t i = 0; i < n; ++i) {
      written[i] = u0[i] + ww0[i] - u0[i] * ww0[i];
      u[i] = written[i] * psi[i];
      uc[i] = usage_eps + (1 - usage_eps) * u[i];
    }
    std::iota(order.begin(), order.end(), 0);
    // Ascending, ties by slot: the stable order. A comparison sort, not sort_kernel.cc's
    // radix sort: per lane that one is slower up to N = 256 (its 256-bucket passes).
    std::sort(order.begin(), order.end(),
              [&](int32_t x, int32_t y) { return uc[x] < uc[y] || (uc[x] == uc[y] && x < y); });
    T product = 1;
    for (int64_t j = 0; j < n; ++j) {
      const int32_t i = order[j];
      P[j] = product;
      a[i] = (1 - uc[i]) * product;
      product *= uc[i];
    }
    columns.Set(M, n, W, norm_eps);
    content.Forward(columns, k, gates[0], norm_eps);
    const T ga = gates[1], gw = gates[2];
    for (int64_t i = 0; i < n; ++i) ww[i] = gw * (ga * a[i] + (1 - ga) * content.c[i]);
  }

  // From the cotangent of a [N] (by slot): the cotangent of uc [N] (by slot), with
  // T_j = sum_{m > j} ga_m (1 - s_m) prod_{j < i < m} s_i (s the sorted uc) so that
  // d/ds_j = P_j (T_j - ga_j), and T_{j - 1} = ga_j (1 - s_j) + s_j T_j.
  void AllocationBackward(const T* g_a, int64_t n, T* g_uc) const {
    T tail = 0;
    for (int64_t j = n - 1; j >= 0; --j) {
      const int32_t i = order[j];
      g_uc[i] = P[j] * (tail - g_a[i]);
      tail = g_a[i] * (1 - uc[i]) + uc[i] * tail;
    }
  }
};

}  // namespace dncjax

#endif  // DNCJAX_NATIVE_ACCESS_LANES_H_
