// The decay of the sparse DNC's temporal links (dncjax.models.sparse) on the CPU, forward
// and backward: XLA FFI handlers for dncjax.models.native.
//
// Per lane (one example of the batch), a direction of the links holds K entries per row:
// values V [N, K] and their slots J [N, K]. With w = w^w_t given by its Kw slots s [Kw]
// and values u [Kw] (w[s[a]] = u[a], zero elsewhere), the forward pass is
//   V'[i, k] = (1 - w[i] - w[J[i, k]]) V[i, k]
// and the backward pass, from the cotangent G [N, K] of V',
//   gV[i, k] = (1 - w[i] - w[J[i, k]]) G[i, k]
//   gu[a]    = -sum_k G[s[a], k] V[s[a], k] - sum_{(i, k): J[i, k] = s[a]} G[i, k] V[i, k]
// each in one pass over the [N, K] entries, w dense and the per-slot totals held in an
// [N] scratch array (XLA's own form gathers w per entry and scatter-adds the totals, which
// under vmap first builds [B N K, 2] index arrays). A slot outside [0, N) reads w = 0 and
// adds to no total.

#include <cstdint>
#include <vector>

#include "lanes.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

template <typename T>
void DenseWeights(const int32_t* s, const T* u, int64_t kw, int64_t n, std::vector<T>& w) {
  w.assign(n, T(0));
  for (int64_t a = 0; a < kw; ++a)
    if (static_cast<uint64_t>(s[a]) < static_cast<uint64_t>(n)) w[s[a]] += u[a];
}

template <typename T>
void ForwardLane(const T* V, const int32_t* J, const int32_t* s, const T* u, int64_t n,
                 int64_t k, int64_t kw, T* V_new, std::vector<T>& w) {
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
void BackwardLane(const T* V, const int32_t* J, const int32_t* s, const T* u, const T* G,
                  int64_t n, int64_t k, int64_t kw, T* gV, T* gu, std::vector<T>& w,
                  std::vector<T>& total) {
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

// Lanes, N, K and Kw from V, J [..., N, K] and s, u [..., Kw].
template <typename BV, typename BJ, typename BU, typename BS>
ffi::Error Shapes(const BV& V, const BJ& J, const BS& s, const BU& u, int64_t& lanes,
                  int64_t& n, int64_t& k, int64_t& kw) {
  auto dims = V.dimensions();
  auto sdims = s.dimensions();
  if (dims.size() < 2 || sdims.size() + 1 != dims.size())
    return ffi::Error::InvalidArgument("sparse decay: V must be [..., N, K], s [..., Kw]");
  n = dims[dims.size() - 2];
  k = dims.back();
  kw = sdims.back();
  lanes = n * k == 0 ? 0 : static_cast<int64_t>(V.element_count()) / (n * k);
  if (J.element_count() != V.element_count() || u.element_count() != s.element_count() ||
      s.element_count() != static_cast<size_t>(lanes * kw))
    return ffi::Error::InvalidArgument("sparse decay: J must be V's shape, u s's");
  return ffi::Error::Success();
}

using Slots = ffi::Buffer<ffi::S32>;

template <ffi::DataType D>
ffi::Error Forward(ffi::ThreadPool pool, ffi::Buffer<D> V, Slots J, Slots s,
                   ffi::Buffer<D> u, ffi::ResultBuffer<D> V_new) {
  int64_t lanes, n, k, kw;
  if (auto e = Shapes(V, J, s, u, lanes, n, k, kw); e.failure()) return e;
  using T = ffi::NativeType<D>;
  dncjax::ForLanes(pool, lanes, lanes * n * k, [&](int64_t first, int64_t last) {
    std::vector<T> w;
    for (int64_t l = first; l < last; ++l)
      ForwardLane<T>(V.typed_data() + l * n * k, J.typed_data() + l * n * k,
                     s.typed_data() + l * kw, u.typed_data() + l * kw, n, k, kw,
                     V_new->typed_data() + l * n * k, w);
  });
  return ffi::Error::Success();
}

template <ffi::DataType D>
ffi::Error Backward(ffi::ThreadPool pool, ffi::Buffer<D> V, Slots J, Slots s,
                    ffi::Buffer<D> u, ffi::Buffer<D> G, ffi::ResultBuffer<D> gV,
                    ffi::ResultBuffer<D> gu) {
  int64_t lanes, n, k, kw;
  if (auto e = Shapes(V, J, s, u, lanes, n, k, kw); e.failure()) return e;
  using T = ffi::NativeType<D>;
  dncjax::ForLanes(pool, lanes, lanes * n * k, [&](int64_t first, int64_t last) {
    std::vector<T> w, total;
    for (int64_t l = first; l < last; ++l) {
      const int64_t m = l * n * k;
      BackwardLane<T>(V.typed_data() + m, J.typed_data() + m, s.typed_data() + l * kw,
                      u.typed_data() + l * kw, G.typed_data() + m, n, k, kw,
                      gV->typed_data() + m, gu->typed_data() + l * kw, w, total);
    }
  });
  return ffi::Error::Success();
}

template <ffi::DataType D>
auto BindForward() {
  using B = ffi::Buffer<D>;
  return ffi::Ffi::Bind().template Ctx<ffi::ThreadPool>()
      .template Arg<B>().template Arg<Slots>().template Arg<Slots>().template Arg<B>()  // V J s u
      .template Ret<B>();                                                               // V'
}

template <ffi::DataType D>
auto BindBackward() {
  using B = ffi::Buffer<D>;
  return ffi::Ffi::Bind().template Ctx<ffi::ThreadPool>()
      .template Arg<B>().template Arg<Slots>().template Arg<Slots>().template Arg<B>()  // V J s u
      .template Arg<B>()                                                                // G
      .template Ret<B>().template Ret<B>();                                             // gV gu
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxSparseDecayForwardF32, Forward<ffi::F32>,
                              BindForward<ffi::F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxSparseDecayForwardF64, Forward<ffi::F64>,
                              BindForward<ffi::F64>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxSparseDecayBackwardF32, Backward<ffi::F32>,
                              BindBackward<ffi::F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxSparseDecayBackwardF64, Backward<ffi::F64>,
                              BindBackward<ffi::F64>());
