// One lane's decay of the sparse DNC's temporal links (see sparse_link_kernel.cc for the
// equations), shared by sparse_link_kernel.cc and sparse_history_kernel.cc.

#ifndef DNCJAX_NATIVE_SPARSE_LANES_H_
#define DNCJAX_NATIVE_SPARSE_LANES_H_

#include <cstdint>
#include <vector>

namespace dncjax::sparse {

template <typename T>
inline void DenseWeights(const int32_t* s, const T* u, int64_t kw, int64_t n,
                         std::vector<T>& w) {
  w.assign(n, T(0));
  for (int64_t a = 0; a < kw; ++a)
    if (static_cast<uint64_t>(s[a]) < static_cast<uint64_t>(n)) w[s[a]] += u[a];
}

template <typename T>
inline void ForwardLane(const T* V, const int32_t* J, const int32_t* s, const T* u,
                        int64_t n, int64_t k, int64_t kw, T* V_new, std::vector<T>& w) {
  DenseWeights(s, u, kw, n, w);
  for (int64_t i = 0; i < n; ++i) {
    const T keep = 1 - w[i];
    for (int64_t e = i * k; e < (i + 1) * k; ++e) {
      const bool in = static_cast<uint64_t>(J[e]) < static_cast<uint64_t>(n);
      V_new[e] = (keep - (in ? w[J[e]] : T(0))) * V[e];
    }
  }
}

template <typename T>
inline void BackwardLane(const T* V, const int32_t* J, const int32_t* s, const T* u,
                         const T* G, int64_t n, int64_t k, int64_t kw, T* gV, T* gu,
                         std::vector<T>& w, std::vector<T>& total) {
  DenseWeights(s, u, kw, n, w);
  total.assign(n, T(0));
  for (int64_t i = 0; i < n; ++i) {
    const T keep = 1 - w[i];
    T row = 0;
    for (int64_t e = i * k; e < (i + 1) * k; ++e) {
      const bool in = static_cast<uint64_t>(J[e]) < static_cast<uint64_t>(n);
      const T gv = G[e] * V[e];
      gV[e] = (keep - (in ? w[J[e]] : T(0))) * G[e];
      if (in) total[J[e]] -= gv;
      row -= gv;
    }
    total[i] += row;
  }
  for (int64_t a = 0; a < kw; ++a)
    gu[a] = static_cast<uint64_t>(s[a]) < static_cast<uint64_t>(n) ? total[s[a]] : T(0);
}

}  // namespace dncjax::sparse

#endif  // DNCJAX_NATIVE_SPARSE_LANES_H_
