// The DNC's temporal link step on the CPU in one pass over the [N, N] link matrix, forward
// and backward: XLA FFI handlers for dncjax.models.native (links.py has the maths).
//
// Forward, per lane (one example of the batch), from L = L_{t-1}, w = w^w_t, p = p_{t-1},
// v = w^r_{t-1} [R, N]:
//   L'[i, j] = (1 - w[i] - w[j]) L[i, j] + w[i] p[j] for i != j, 0 on the diagonal
//   f[r, i]  = sum_j L'[i, j] v[r, j]          b[r, j] = sum_i L'[i, j] v[r, i]
// Each row of L' is made, used for f and b while it is in cache, and stored: L read once,
// L' written once (over L itself when XLA aliases the two buffers).
//
// Backward, from the cotangents gL' [N, N], gf, gb [R, N]:
//   H[i, j]  = gL'[i, j] + sum_r gf[r, i] v[r, j] + sum_r v[r, i] gb[r, j] (i != j; else 0)
//   gL[i, j] = (1 - w[i] - w[j]) H[i, j]
//   gw[k]    = sum_j H[k, j] (p[j] - L[k, j]) - sum_i H[i, k] L[i, k]
//   gp[j]    = sum_i H[i, j] w[i]
//   gv[r, j] = sum_i gf[r, i] L'[i, j] + sum_i gb[r, i] L'[j, i]
// row by row, L' recomputed from L: L and gL' read once, gL written once (over gL').
//
// The maths per lane is link_lanes.h; lanes are split over XLA's CPU thread pool when
// there is enough work. The history handlers take L_{t-1} from slot t of a lane's history
// of link matrices H [S, N, N] and write L_t into slot t + 1 (history.py keeps every L_t of
// an unroll there for its backward pass).

#include <algorithm>
#include <cstdint>
#include <vector>

#include "lanes.h"
#include "link_blocks.h"
#include "link_lanes.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dncjax::BackwardLane;
using dncjax::ForLanes;
using dncjax::ForwardLane;
using dncjax::Grads;
using dncjax::Rows;

namespace {

// Where lane k's [N, N] link matrix starts: a plain [..., N, N] buffer (slots = 1, no t),
// or slot t[k] of a history [..., S, N, N] (slots = S).
template <typename T>
struct LinkAt {
  T* base;
  int64_t n, slots = 1;
  const int32_t* t = nullptr;
  T* operator()(int64_t k) const { return base + (k * slots + (t ? t[k] : 0)) * n * n; }
};

// Lanes, N and R from w [..., N] and v [..., R, N]; checks that p is [..., N] and that the
// link buffer holds `slots` [N, N] matrices per lane.
template <typename B, typename A>
ffi::Error Shapes(const A& link, int64_t slots, const B& w, const B& p, const B& v,
                  int64_t& lanes, int64_t& n, int64_t& R) {
  auto vdims = v.dimensions();
  if (vdims.size() < 2)
    return ffi::Error::InvalidArgument("link step: v must be [..., R, N]");
  n = vdims.back();
  R = vdims[vdims.size() - 2];
  lanes = n == 0 ? 0 : static_cast<int64_t>(w.element_count()) / n;
  const auto count = static_cast<size_t>(lanes * n);
  if (w.element_count() != count || p.element_count() != count ||
      v.element_count() != count * static_cast<size_t>(R) ||
      link.element_count() != count * static_cast<size_t>(slots * n))
    return ffi::Error::InvalidArgument(
        "link step: L must be [..., N, N] (or H [..., S, N, N]), w, p [..., N], v [..., R, N]");
  return ffi::Error::Success();
}

// Slots S of a history H [..., S, N, N].
template <typename B>
ffi::Error Slots(const B& H, int64_t& slots) {
  auto dims = H.dimensions();
  if (dims.size() < 3) return ffi::Error::InvalidArgument("link history: H must be [..., S, N, N]");
  slots = dims[dims.size() - 3];
  return ffi::Error::Success();
}

// Checks that t has one entry per lane, each in [0, S - 1).
inline ffi::Error CheckSteps(const ffi::Buffer<ffi::S32>& t, int64_t lanes, int64_t slots) {
  if (static_cast<int64_t>(t.element_count()) != lanes)
    return ffi::Error::InvalidArgument("link history: t must have one entry per lane");
  for (int64_t k = 0; k < lanes; ++k)
    if (t.typed_data()[k] < 0 || t.typed_data()[k] + 1 >= slots)
      return ffi::Error::InvalidArgument("link history: t + 1 outside H");
  return ffi::Error::Success();
}

// The row blocks of link_blocks.h for R = 1 ... 4 read heads, else link_lanes.h's rows.
#if defined(__AVX512F__)
constexpr int kBlockRows = 4;  // 32 vector registers hold 4 rows' accumulators
#else
constexpr int kBlockRows = 2;  // AVX2's 16 hold 2 rows' (4 spill them to the stack)
#endif
constexpr int64_t kBackwardBlocksFrom = 512;  // N

template <typename T, int kR = 1>
void ForwardLaneAt(const T* L, const T* w, const T* p, const T* v, int64_t n, int64_t R,
                   T* L_new, T* f, T* b, Rows<T>& rows) {
  if constexpr (kR <= 4) {
    if (R != kR) return ForwardLaneAt<T, kR + 1>(L, w, p, v, n, R, L_new, f, b, rows);
    dncjax::blocks::ForwardLane<T, kR, kBlockRows>(L, w, p, v, n, L_new, f, b);
  } else {
    ForwardLane<T>(L, w, p, v, n, R, L_new, f, b, rows);
  }
}

template <typename T, int kR = 1>
void BackwardLaneAt(const T* L, const T* w, const T* p, const T* v, const T* gL_new,
                    const T* gf, const T* gb, int64_t n, int64_t R, Grads<T> out,
                    Rows<T>& rows, std::vector<T>& scratch) {
  if constexpr (kR <= 4) {
    if (n < kBackwardBlocksFrom)
      return BackwardLane<T>(L, w, p, v, gL_new, gf, gb, n, R, out, rows);
    if (R != kR)
      return BackwardLaneAt<T, kR + 1>(L, w, p, v, gL_new, gf, gb, n, R, out, rows, scratch);
    scratch.resize((2 + kR) * n);
    dncjax::blocks::BackwardLane<T, kR, kBlockRows>(L, w, p, v, gL_new, gf, gb, n, out.gL,
                                                    out.gw, out.gp, out.gv, scratch.data());
  } else {
    BackwardLane<T>(L, w, p, v, gL_new, gf, gb, n, R, out, rows);
  }
}

template <typename T>
void RunForward(ffi::ThreadPool& pool, int64_t lanes, int64_t n, int64_t R, LinkAt<T> L,
                const T* w, const T* p, const T* v, LinkAt<T> L_new, T* f, T* b) {
  ForLanes(pool, lanes, lanes * n * n, [&](int64_t first, int64_t last) {
    Rows<T> rows;
    for (int64_t k = first; k < last; ++k)
      ForwardLaneAt<T>(L(k), w + k * n, p + k * n, v + k * R * n, n, R, L_new(k),
                       f + k * R * n, b + k * R * n, rows);
  });
}

template <typename T>
void RunBackward(ffi::ThreadPool& pool, int64_t lanes, int64_t n, int64_t R, LinkAt<T> L,
                 const T* w, const T* p, const T* v, const T* gL_new, const T* gf,
                 const T* gb, Grads<T> out) {
  ForLanes(pool, lanes, lanes * n * n, [&](int64_t first, int64_t last) {
    Rows<T> rows;
    std::vector<T> scratch;
    for (int64_t k = first; k < last; ++k) {
      const int64_t m = k * n * n, s = k * n, q = k * R * n;
      Grads<T> lane{out.gL + m, out.gw + s, out.gp + s, out.gv + q};
      BackwardLaneAt<T>(L(k), w + s, p + s, v + q, gL_new + m, gf + q, gb + q, n, R, lane,
                        rows, scratch);
    }
  });
}

template <ffi::DataType D>
using Buf = ffi::Buffer<D>;
template <ffi::DataType D>
using Ret = ffi::ResultBuffer<D>;

template <ffi::DataType D>
ffi::Error Forward(ffi::ThreadPool pool, Buf<D> L, Buf<D> w, Buf<D> p, Buf<D> v,
                   Ret<D> L_new, Ret<D> f, Ret<D> b) {
  int64_t lanes, n, R;
  if (auto e = Shapes(L, 1, w, p, v, lanes, n, R); e.failure()) return e;
  using T = ffi::NativeType<D>;
  RunForward<T>(pool, lanes, n, R, {L.typed_data(), n}, w.typed_data(), p.typed_data(),
                v.typed_data(), {L_new->typed_data(), n}, f->typed_data(), b->typed_data());
  return ffi::Error::Success();
}

template <ffi::DataType D>
ffi::Error Backward(ffi::ThreadPool pool, Buf<D> L, Buf<D> w, Buf<D> p, Buf<D> v,
                    Buf<D> gL_new, Buf<D> gf, Buf<D> gb, Ret<D> gL, Ret<D> gw, Ret<D> gp,
                    Ret<D> gv) {
  int64_t lanes, n, R;
  if (auto e = Shapes(L, 1, w, p, v, lanes, n, R); e.failure()) return e;
  using T = ffi::NativeType<D>;
  RunBackward<T>(pool, lanes, n, R, {L.typed_data(), n}, w.typed_data(), p.typed_data(),
                 v.typed_data(), gL_new.typed_data(), gf.typed_data(), gb.typed_data(),
                 {gL->typed_data(), gw->typed_data(), gp->typed_data(), gv->typed_data()});
  return ffi::Error::Success();
}

// H [..., S, N, N] with slot 0 = L_0 [..., N, N]; the other slots are left as they are
// (the forward steps write each before anything reads it).
template <ffi::DataType D>
ffi::Error HistoryStart(Buf<D> L0, Ret<D> H) {
  auto dims = H->dimensions();
  if (dims.size() < 3) return ffi::Error::InvalidArgument("link history: H must be [..., S, N, N]");
  const int64_t n = dims.back(), slots = dims[dims.size() - 3];
  const int64_t lanes = n == 0 ? 0 : static_cast<int64_t>(L0.element_count()) / (n * n);
  if (H->element_count() != L0.element_count() * static_cast<size_t>(slots))
    return ffi::Error::InvalidArgument("link history: H must be [..., S, N, N] for L [..., N, N]");
  for (int64_t k = 0; k < lanes; ++k)
    std::copy(L0.typed_data() + k * n * n, L0.typed_data() + (k + 1) * n * n,
              H->typed_data() + k * slots * n * n);
  return ffi::Error::Success();
}

template <ffi::DataType D>
ffi::Error HistoryForward(ffi::ThreadPool pool, Buf<D> H, Buf<ffi::S32> t, Buf<D> w,
                          Buf<D> p, Buf<D> v, Ret<D> H_out, Ret<D> f, Ret<D> b) {
  int64_t lanes, n, R, slots;
  if (auto e = Slots(H, slots); e.failure()) return e;
  if (auto e = Shapes(H, slots, w, p, v, lanes, n, R); e.failure()) return e;
  if (auto e = CheckSteps(t, lanes, slots); e.failure()) return e;
  using T = ffi::NativeType<D>;
  T* out = H_out->typed_data();  // H's own buffer when XLA aliases them; else a copy first
  if (out != H.typed_data()) std::copy(H.typed_data(), H.typed_data() + H.element_count(), out);
  const int32_t* at = t.typed_data();
  RunForward<T>(pool, lanes, n, R, {out, n, slots, at}, w.typed_data(), p.typed_data(),
                v.typed_data(), {out + n * n, n, slots, at}, f->typed_data(), b->typed_data());
  return ffi::Error::Success();
}

template <ffi::DataType D>
ffi::Error HistoryBackward(ffi::ThreadPool pool, Buf<D> H, Buf<ffi::S32> t, Buf<D> w,
                           Buf<D> p, Buf<D> v, Buf<D> gL_new, Buf<D> gf, Buf<D> gb,
                           Ret<D> gL, Ret<D> gw, Ret<D> gp, Ret<D> gv) {
  int64_t lanes, n, R, slots;
  if (auto e = Slots(H, slots); e.failure()) return e;
  if (auto e = Shapes(H, slots, w, p, v, lanes, n, R); e.failure()) return e;
  if (auto e = CheckSteps(t, lanes, slots); e.failure()) return e;
  if (gL_new.element_count() != static_cast<size_t>(lanes * n * n))
    return ffi::Error::InvalidArgument("link history: gL must be [..., N, N]");
  using T = ffi::NativeType<D>;
  RunBackward<T>(pool, lanes, n, R, {H.typed_data(), n, slots, t.typed_data()},
                 w.typed_data(), p.typed_data(), v.typed_data(), gL_new.typed_data(),
                 gf.typed_data(), gb.typed_data(),
                 {gL->typed_data(), gw->typed_data(), gp->typed_data(), gv->typed_data()});
  return ffi::Error::Success();
}

// The handlers' signatures: the thread pool, the input buffers, the output buffers.
// A handler's leading arguments: the thread pool, L (or H and t).
template <ffi::DataType D, bool kHistory>
auto BindLink() {
  if constexpr (kHistory) {
    return ffi::Ffi::Bind().template Ctx<ffi::ThreadPool>().template Arg<Buf<D>>()
        .template Arg<Buf<ffi::S32>>();
  } else {
    return ffi::Ffi::Bind().template Ctx<ffi::ThreadPool>().template Arg<Buf<D>>();
  }
}

template <ffi::DataType D, bool kHistory>
auto BindForward() {
  return BindLink<D, kHistory>()
      .template Arg<Buf<D>>().template Arg<Buf<D>>().template Arg<Buf<D>>()          // w p v
      .template Ret<Buf<D>>().template Ret<Buf<D>>().template Ret<Buf<D>>();         // L' f b
}

template <ffi::DataType D, bool kHistory>
auto BindBackward() {
  return BindLink<D, kHistory>()
      .template Arg<Buf<D>>().template Arg<Buf<D>>().template Arg<Buf<D>>()          // w p v
      .template Arg<Buf<D>>().template Arg<Buf<D>>().template Arg<Buf<D>>()          // gL' gf gb
      .template Ret<Buf<D>>().template Ret<Buf<D>>().template Ret<Buf<D>>()
      .template Ret<Buf<D>>();                                                      // gL gw gp gv
}

template <ffi::DataType D>
auto BindStart() {
  return ffi::Ffi::Bind().template Arg<Buf<D>>().template Ret<Buf<D>>();  // L_0 -> H
}

}  // namespace

#define DNCJAX_LINK_HANDLERS(T)                                                          \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxLinkForward##T, Forward<ffi::T>,                   \
                                (BindForward<ffi::T, false>()));                         \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxLinkBackward##T, Backward<ffi::T>,                 \
                                (BindBackward<ffi::T, false>()));                        \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxLinkHistoryStart##T, HistoryStart<ffi::T>,         \
                                BindStart<ffi::T>());                                    \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxLinkHistoryForward##T, HistoryForward<ffi::T>,     \
                                (BindForward<ffi::T, true>()));                          \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxLinkHistoryBackward##T, HistoryBackward<ffi::T>,   \
                                (BindBackward<ffi::T, true>()));

DNCJAX_LINK_HANDLERS(F32)
DNCJAX_LINK_HANDLERS(F64)
