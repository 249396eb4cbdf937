// The DNC's temporal link step for one lane (one example), forward and backward, row by row
// over the [N, N] link matrix: shared by the handlers of link_kernel.cc, which take L from a
// plain [..., N, N] buffer or from a history of link matrices [..., S, N, N].

#ifndef DNCJAX_NATIVE_LINK_LANES_H_
#define DNCJAX_NATIVE_LINK_LANES_H_

#include <algorithm>
#include <cstdint>
#include <vector>

namespace dncjax {

// y += alpha x, returning dot(x, z): one pass over a row for two of its uses.
template <typename T>
T AxpyDot(T alpha, const T* x, T* y, const T* z, int64_t n) {
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t j = 0; j < n; ++j) {
    y[j] += alpha * x[j];
    acc += x[j] * z[j];
  }
  return acc;
}

// y += alpha x + beta z.
template <typename T>
void Axpy2(T alpha, const T* x, T beta, const T* z, T* y, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) y[j] += alpha * x[j] + beta * z[j];
}

// h = g + sum_r (alpha[r] x[r] + beta[r] z[r]) over rows of length n, in one pass when
// the number of terms is known when compiling (kR = 1..8), else one pass per term.
template <typename T, int kR = 1>
void SumRows(const T* g, const T* alpha, T* const* x, const T* beta, T* const* z,
             int64_t R, T* h, int64_t n) {
  if constexpr (kR <= 8) {
    if (R != kR) return SumRows<T, kR + 1>(g, alpha, x, beta, z, R, h, n);
    T a[kR], b[kR];
    const T *xs[kR], *zs[kR];
    for (int r = 0; r < kR; ++r) a[r] = alpha[r], b[r] = beta[r], xs[r] = x[r], zs[r] = z[r];
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
      T acc = g[j];
      for (int r = 0; r < kR; ++r) acc += a[r] * xs[r][j] + b[r] * zs[r][j];
      h[j] = acc;
    }
  } else {
    std::copy(g, g + n, h);
    for (int64_t r = 0; r < R; ++r) Axpy2(alpha[r], x[r], beta[r], z[r], h, n);
  }
}

// Row i of L' = the masked A, into a_row.
template <typename T>
void NewLinkRow(const T* L_row, const T* w, const T* p, int64_t i, int64_t n, T* a_row) {
  const T keep = T(1) - w[i], wi = w[i];
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) a_row[j] = (keep - w[j]) * L_row[j] + wi * p[j];
  a_row[i] = 0;
}

// A lane's rows of length n in one buffer, each starting kPadBytes later modulo 4 KiB
// than a plain [rows, n] array would: at n = 1,024 float32 rows of a plain array share
// their low 12 address bits, and the CPU then stalls loads behind unrelated stores
// ("4K aliasing"), which made the backward pass slower at N = 1,024 than at N = 1,000.
template <typename T>
class Rows {
 public:
  static constexpr int64_t kPadBytes = 1088;  // 17 cache lines
  void Reset(int64_t rows, int64_t n) {
    stride_ = (n * int64_t(sizeof(T)) + 63) / 64 * 64 / int64_t(sizeof(T)) +
              kPadBytes / int64_t(sizeof(T));
    data_.assign(rows * stride_, T(0));
  }
  T* operator[](int64_t row) { return data_.data() + row * stride_; }

 private:
  std::vector<T> data_;
  int64_t stride_ = 0;
};

enum Row : int64_t { kW, kP, kA, kH, kGw, kGp, kFixed };  // then R rows of v, gb, gv, b

template <typename T>
void ForwardLane(const T* L, const T* w, const T* p, const T* v, int64_t n, int64_t R,
                 T* L_new, T* f, T* b, Rows<T>& rows) {
  rows.Reset(kFixed + 2 * R, n);
  std::copy(w, w + n, rows[kW]);
  std::copy(p, p + n, rows[kP]);
  for (int64_t r = 0; r < R; ++r) std::copy(v + r * n, v + (r + 1) * n, rows[kFixed + r]);
  T* a_row = rows[kA];
  for (int64_t i = 0; i < n; ++i) {
    NewLinkRow(L + i * n, rows[kW], rows[kP], i, n, a_row);
    std::copy(a_row, a_row + n, L_new + i * n);  // L_new may be L: row i is read by now
    for (int64_t r = 0; r < R; ++r)
      f[r * n + i] = AxpyDot(v[r * n + i], a_row, rows[kFixed + R + r], rows[kFixed + r], n);
  }
  for (int64_t r = 0; r < R; ++r) {
    const T* b_r = rows[kFixed + R + r];
    std::copy(b_r, b_r + n, b + r * n);
  }
}

template <typename T>
struct Grads {  // one lane's cotangent outputs
  T* gL;
  T* gw;
  T* gp;
  T* gv;
};

template <typename T>
void BackwardLane(const T* L, const T* w_in, const T* p_in, const T* v, const T* gL_new,
                  const T* gf, const T* gb, int64_t n, int64_t R, Grads<T> out,
                  Rows<T>& rows) {
  rows.Reset(kFixed + 3 * R, n);
  T *w = rows[kW], *p = rows[kP], *a_row = rows[kA], *h_row = rows[kH];
  T *gw_cols = rows[kGw], *gp = rows[kGp];  // gw_cols: - sum_i H[i, k] L[i, k]
  std::copy(w_in, w_in + n, w);
  std::copy(p_in, p_in + n, p);
  std::vector<T*> v_rows(R), gb_rows(R);
  std::vector<T> gf_i(R), v_i(R);
  for (int64_t r = 0; r < R; ++r) {
    v_rows[r] = rows[kFixed + r], gb_rows[r] = rows[kFixed + R + r];
    std::copy(v + r * n, v + (r + 1) * n, v_rows[r]);
    std::copy(gb + r * n, gb + (r + 1) * n, gb_rows[r]);
  }
  for (int64_t i = 0; i < n; ++i) {
    const T* L_row = L + i * n;
    const T* g_row = gL_new + i * n;
    T* gL_row = out.gL + i * n;  // may be g_row itself: element j is read, then written
    NewLinkRow(L_row, w, p, i, n, a_row);
    for (int64_t r = 0; r < R; ++r) gf_i[r] = gf[r * n + i], v_i[r] = v[r * n + i];
    SumRows(g_row, gf_i.data(), v_rows.data(), v_i.data(), gb_rows.data(), R, h_row, n);
    h_row[i] = 0;
    const T keep = T(1) - w[i], wi = w[i];
    T gw_row = 0;
#pragma omp simd reduction(+ : gw_row)
    for (int64_t j = 0; j < n; ++j) {
      const T h = h_row[j];
      gL_row[j] = (keep - w[j]) * h;
      gw_row += h * (p[j] - L_row[j]);
      gw_cols[j] -= h * L_row[j];
      gp[j] += h * wi;
    }
    out.gw[i] = gw_row;
    for (int64_t r = 0; r < R; ++r)  // gv[r, i] from b, here; gv[r, :] from f, by column
      out.gv[r * n + i] = AxpyDot(gf[r * n + i], a_row, rows[kFixed + 2 * R + r],
                                  rows[kFixed + R + r], n);
  }
  for (int64_t k = 0; k < n; ++k) out.gw[k] += gw_cols[k];
  std::copy(gp, gp + n, out.gp);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t k = 0; k < n; ++k) out.gv[r * n + k] += rows[kFixed + 2 * R + r][k];
}

}  // namespace dncjax

#endif  // DNCJAX_NATIVE_LINK_LANES_H_
