// The sparse DNC's temporal links kept as a history, every step's link values in one
// buffer (dncjax.models.sparse_history): XLA FFI handlers for dncjax.models.native.
//
// Per lane, HV [S, 2, N, K] holds the links' values after each step (slot t: after t
// steps; direction 0 the rows of L_t, direction 1 those of L_t^T) and J [2, N, K] their
// slots, one array that the steps update in place: a step changes the slots of K rows
// only, which its backward pass puts back. A step t of the unroll, w = w^w_t (slots s [Kw],
// values u [Kw]):
//   forward  slot t + 1 = slot t decayed, V'[i, k] = (1 - w[i] - w[J[i, k]]) V[i, k], in
//            both directions (sparse_lanes.h); then the rows that gain entries are handed
//            out (values and slots: rows0 [K0] of direction 0, rows1 [K1] of direction 1)
//            for XLA to merge;
//   set      the merged rows written into slot t + 1 and J, and the rows the read heads
//            follow (reads [C]) handed out, in each direction;
//   backward J's rows0 and rows1 put back to their slots before the step (J_{t-1}); the
//            cotangent G [2, N, K] of slot t + 1 completed with what XLA computed on rows:
//            gR0, gR1 [C, K] added at the rows `reads` [C] (the read heads' rows, in
//            each direction), then gM0 [K0, K] and gM1 [K1, K] written over rows0 and rows1
//            (the merged rows' cotangents carried back to the decayed rows); then the
//            decay's backward pass on slot t: gV over G, and gu [Kw] summed over both
//            directions.
// Every handler writes HV and J in place where XLA aliases them (else into a copy first);
// a row outside [0, N) is read as zeros and not written.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "lanes.h"
#include "sparse_lanes.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

template <ffi::DataType D>
using Buf = ffi::Buffer<D>;
template <ffi::DataType D>
using Ret = ffi::ResultBuffer<D>;
using Slots = ffi::Buffer<ffi::S32>;
using SlotsOut = ffi::ResultBuffer<ffi::S32>;

// S, N, K and the lanes of H [..., S, 2, N, K].
template <typename B>
ffi::Error HistoryShape(const B& H, int64_t& lanes, int64_t& slots, int64_t& n, int64_t& k) {
  auto dims = H.dimensions();
  if (dims.size() < 4 || dims[dims.size() - 3] != 2)
    return ffi::Error::InvalidArgument("sparse link history: H must be [..., S, 2, N, K]");
  slots = dims[dims.size() - 4];
  n = dims[dims.size() - 2];
  k = dims.back();
  const int64_t per_lane = slots * 2 * n * k;
  lanes = per_lane == 0 ? 0 : static_cast<int64_t>(H.element_count()) / per_lane;
  return ffi::Error::Success();
}

inline ffi::Error CheckSteps(const Slots& t, int64_t lanes, int64_t slots) {
  if (static_cast<int64_t>(t.element_count()) != lanes)
    return ffi::Error::InvalidArgument("sparse link history: t must have one entry per lane");
  for (int64_t l = 0; l < lanes; ++l)
    if (t.typed_data()[l] < 0 || t.typed_data()[l] + 1 >= slots)
      return ffi::Error::InvalidArgument("sparse link history: t + 1 outside H");
  return ffi::Error::Success();
}

// Entries per lane of an array (its element count over the lanes).
template <typename B>
int64_t PerLane(const B& b, int64_t lanes) {
  return lanes == 0 ? 0 : static_cast<int64_t>(b.element_count()) / lanes;
}

// out[a, :] = table[rows[a], :] (K entries), zeros for a row outside [0, n).
template <typename T>
void GatherRows(const T* table, const int32_t* rows, int64_t count, int64_t n, int64_t k,
                T* out) {
  for (int64_t a = 0; a < count; ++a) {
    const bool in = static_cast<uint64_t>(rows[a]) < static_cast<uint64_t>(n);
    if (in)
      std::copy(table + rows[a] * k, table + (rows[a] + 1) * k, out + a * k);
    else
      std::fill(out + a * k, out + (a + 1) * k, T(0));
  }
}

template <typename T>
void ScatterRows(const T* rows_in, const int32_t* rows, int64_t count, int64_t n, int64_t k,
                 T* table) {
  for (int64_t a = 0; a < count; ++a)
    if (static_cast<uint64_t>(rows[a]) < static_cast<uint64_t>(n))
      std::copy(rows_in + a * k, rows_in + (a + 1) * k, table + rows[a] * k);
}

// GatherRows / ScatterRows of a direction's values V and slots J together.
template <typename T>
void GatherBoth(const T* V, const int32_t* J, const int32_t* rows, int64_t count, int64_t n,
                int64_t k, T* V_out, int32_t* J_out) {
  GatherRows(V, rows, count, n, k, V_out);
  GatherRows(J, rows, count, n, k, J_out);
}

template <typename T>
void ScatterBoth(const T* V_in, const int32_t* J_in, const int32_t* rows, int64_t count,
                 int64_t n, int64_t k, T* V, int32_t* J) {
  ScatterRows(V_in, rows, count, n, k, V);
  ScatterRows(J_in, rows, count, n, k, J);
}

template <typename T>
void AddRows(const T* rows_in, const int32_t* rows, int64_t count, int64_t n, int64_t k,
             T* table) {
  for (int64_t a = 0; a < count; ++a)
    if (static_cast<uint64_t>(rows[a]) < static_cast<uint64_t>(n))
      for (int64_t e = 0; e < k; ++e) table[rows[a] * k + e] += rows_in[a * k + e];
}

template <typename T>
T* InPlace(const T* in, T* out, size_t count) {
  if (out != in) std::copy(in, in + count, out);
  return out;
}

// Slot 0 of HV from the two directions' values V0, V1 [..., N, K] (each lane's slots 1 ...
// are left as they are: the forward steps write each before anything reads it).
template <ffi::DataType D>
ffi::Error Start(Buf<D> V0, Buf<D> V1, Ret<D> HV) {
  int64_t lanes, slots, n, k;
  if (auto e = HistoryShape(*HV, lanes, slots, n, k); e.failure()) return e;
  const int64_t size = n * k;
  if (static_cast<int64_t>(V0.element_count()) != lanes * size ||
      V1.element_count() != V0.element_count())
    return ffi::Error::InvalidArgument("sparse link history: links [..., N, K] for H");
  for (int64_t l = 0; l < lanes; ++l) {
    std::copy(V0.typed_data() + l * size, V0.typed_data() + (l + 1) * size,
              HV->typed_data() + l * slots * 2 * size);
    std::copy(V1.typed_data() + l * size, V1.typed_data() + (l + 1) * size,
              HV->typed_data() + (l * slots * 2 + 1) * size);
  }
  return ffi::Error::Success();
}

// Checks J [..., 2, N, K] against H's lanes, N and K.
template <typename B>
ffi::Error CheckSlots(const B& J, int64_t lanes, int64_t n, int64_t k) {
  if (static_cast<int64_t>(J.element_count()) != lanes * 2 * n * k)
    return ffi::Error::InvalidArgument("sparse link history: J must be [..., 2, N, K]");
  return ffi::Error::Success();
}

// The shapes of a step's H [..., S, 2, N, K], t (one per lane) and J [..., 2, N, K].
template <typename B>
ffi::Error CheckStep(const B& HV, const Slots& t, const Slots& J, int64_t& lanes,
                     int64_t& slots, int64_t& n, int64_t& k) {
  if (auto e = HistoryShape(HV, lanes, slots, n, k); e.failure()) return e;
  if (auto e = CheckSteps(t, lanes, slots); e.failure()) return e;
  return CheckSlots(J, lanes, n, k);
}

template <ffi::DataType D>
ffi::Error Forward(ffi::ThreadPool pool, Buf<D> HV_in, Slots J, Slots t, Slots s, Buf<D> u,
                   Slots rows0, Slots rows1, Ret<D> HV_out, Ret<D> V0, SlotsOut J0, Ret<D> V1,
                   SlotsOut J1) {
  int64_t lanes, slots, n, k;
  if (auto e = CheckStep(HV_in, t, J, lanes, slots, n, k); e.failure()) return e;
  using T = ffi::NativeType<D>;
  T* HV = InPlace(HV_in.typed_data(), HV_out->typed_data(), HV_in.element_count());
  const int64_t kw = PerLane(s, lanes), k0 = PerLane(rows0, lanes), k1 = PerLane(rows1, lanes);
  const int64_t size = n * k;
  dncjax::ForLanes(pool, lanes, lanes * 2 * size, [&](int64_t first, int64_t last) {
    std::vector<T> w;
    for (int64_t l = first; l < last; ++l) {
      const int64_t from = (l * slots + t.typed_data()[l]) * 2 * size, to = from + 2 * size;
      const int32_t* Jl = J.typed_data() + l * 2 * size;
      for (int64_t d = 0; d < 2; ++d)
        dncjax::sparse::ForwardLane<T>(HV + from + d * size, Jl + d * size,
                                       s.typed_data() + l * kw, u.typed_data() + l * kw, n, k,
                                       kw, HV + to + d * size, w);
      const int32_t* r0 = rows0.typed_data() + l * k0;
      const int32_t* r1 = rows1.typed_data() + l * k1;
      GatherBoth(HV + to, Jl, r0, k0, n, k, V0->typed_data() + l * k0 * k,
                 J0->typed_data() + l * k0 * k);
      GatherBoth(HV + to + size, Jl + size, r1, k1, n, k, V1->typed_data() + l * k1 * k,
                 J1->typed_data() + l * k1 * k);
    }
  });
  return ffi::Error::Success();
}

template <ffi::DataType D>
ffi::Error Set(Buf<D> HV_in, Slots J_in, Slots t, Slots rows0, Slots rows1, Buf<D> V0,
               Slots J0, Buf<D> V1, Slots J1, Slots reads, Ret<D> HV_out, SlotsOut J_out,
               Ret<D> RV0, SlotsOut RJ0, Ret<D> RV1, SlotsOut RJ1) {
  int64_t lanes, slots, n, k;
  if (auto e = CheckStep(HV_in, t, J_in, lanes, slots, n, k); e.failure()) return e;
  using T = ffi::NativeType<D>;
  T* HV = InPlace(HV_in.typed_data(), HV_out->typed_data(), HV_in.element_count());
  int32_t* J = InPlace(J_in.typed_data(), J_out->typed_data(), J_in.element_count());
  const int64_t k0 = PerLane(rows0, lanes), k1 = PerLane(rows1, lanes);
  const int64_t kr = PerLane(reads, lanes), size = n * k;
  for (int64_t l = 0; l < lanes; ++l) {
    const int64_t to = (l * slots + t.typed_data()[l] + 1) * 2 * size;
    int32_t* Jl = J + l * 2 * size;
    const int32_t* r0 = rows0.typed_data() + l * k0;
    const int32_t* r1 = rows1.typed_data() + l * k1;
    ScatterBoth(V0.typed_data() + l * k0 * k, J0.typed_data() + l * k0 * k, r0, k0, n, k,
                HV + to, Jl);
    ScatterBoth(V1.typed_data() + l * k1 * k, J1.typed_data() + l * k1 * k, r1, k1, n, k,
                HV + to + size, Jl + size);
    const int32_t* r = reads.typed_data() + l * kr;
    const int64_t out = l * kr * k;
    GatherBoth(HV + to, Jl, r, kr, n, k, RV0->typed_data() + out, RJ0->typed_data() + out);
    GatherBoth(HV + to + size, Jl + size, r, kr, n, k, RV1->typed_data() + out,
               RJ1->typed_data() + out);
  }
  return ffi::Error::Success();
}

// Per lane of the backward pass: G completed (reads' cotangents added, the merged rows'
// written), J's rows put back.
template <typename T>
struct RowCotangents {
  const int32_t *rows0, *rows1, *J0, *J1, *reads;
  const T *gR0, *gR1, *gM0, *gM1;
  int64_t k0, k1, kr;
};

template <typename T>
void CompleteLane(const RowCotangents<T>& c, int64_t l, int64_t n, int64_t k, T* G,
                  int32_t* J) {
  const int64_t size = n * k;
  const int32_t* r0 = c.rows0 + l * c.k0;
  const int32_t* r1 = c.rows1 + l * c.k1;
  ScatterRows(c.J0 + l * c.k0 * k, r0, c.k0, n, k, J);
  ScatterRows(c.J1 + l * c.k1 * k, r1, c.k1, n, k, J + size);
  const int32_t* reads = c.reads + l * c.kr;
  AddRows(c.gR0 + l * c.kr * k, reads, c.kr, n, k, G);
  AddRows(c.gR1 + l * c.kr * k, reads, c.kr, n, k, G + size);
  ScatterRows(c.gM0 + l * c.k0 * k, r0, c.k0, n, k, G);
  ScatterRows(c.gM1 + l * c.k1 * k, r1, c.k1, n, k, G + size);
}

template <ffi::DataType D>
ffi::Error Backward(ffi::ThreadPool pool, Buf<D> HV, Slots J_in, Slots t, Slots s, Buf<D> u,
                    Buf<D> G_in, Slots rows0, Slots rows1, Slots J0, Slots J1, Slots reads,
                    Buf<D> gR0, Buf<D> gR1, Buf<D> gM0, Buf<D> gM1, Ret<D> gV, Ret<D> gu,
                    SlotsOut J_out) {
  int64_t lanes, slots, n, k;
  if (auto e = CheckStep(HV, t, J_in, lanes, slots, n, k); e.failure()) return e;
  const int64_t kw = PerLane(s, lanes), size = n * k;
  if (static_cast<int64_t>(G_in.element_count()) != lanes * 2 * size)
    return ffi::Error::InvalidArgument("sparse link history: G must be [..., 2, N, K]");
  using T = ffi::NativeType<D>;
  int32_t* J = InPlace(J_in.typed_data(), J_out->typed_data(), J_in.element_count());
  T* G = InPlace(G_in.typed_data(), gV->typed_data(), G_in.element_count());
  const RowCotangents<T> rows{rows0.typed_data(), rows1.typed_data(), J0.typed_data(),
                              J1.typed_data(), reads.typed_data(), gR0.typed_data(),
                              gR1.typed_data(), gM0.typed_data(), gM1.typed_data(),
                              PerLane(rows0, lanes), PerLane(rows1, lanes),
                              PerLane(reads, lanes)};
  dncjax::ForLanes(pool, lanes, lanes * 2 * size, [&](int64_t first, int64_t last) {
    std::vector<T> w, total, gu_d(kw);
    for (int64_t l = first; l < last; ++l) {
      int32_t* Jl = J + l * 2 * size;
      CompleteLane(rows, l, n, k, G + l * 2 * size, Jl);
      const int64_t at = (l * slots + t.typed_data()[l]) * 2 * size;
      T* gu_l = gu->typed_data() + l * kw;
      std::fill(gu_l, gu_l + kw, T(0));
      for (int64_t d = 0; d < 2; ++d) {
        const int64_t g = (l * 2 + d) * size;
        dncjax::sparse::BackwardLane<T>(HV.typed_data() + at + d * size, Jl + d * size,
                                        s.typed_data() + l * kw, u.typed_data() + l * kw,
                                        G + g, n, k, kw, G + g, gu_d.data(), w, total);
        for (int64_t a = 0; a < kw; ++a) gu_l[a] += gu_d[a];
      }
    }
  });
  return ffi::Error::Success();
}

template <ffi::DataType D>
auto BindStart() {
  return ffi::Ffi::Bind().template Arg<Buf<D>>().template Arg<Buf<D>>()  // V0 V1
      .template Ret<Buf<D>>();                                            // HV
}

template <ffi::DataType D>
auto BindForward() {
  return ffi::Ffi::Bind().template Ctx<ffi::ThreadPool>()
      .template Arg<Buf<D>>().template Arg<Slots>().template Arg<Slots>()  // HV J t
      .template Arg<Slots>().template Arg<Buf<D>>()                        // s u
      .template Arg<Slots>().template Arg<Slots>()                         // rows0 rows1
      .template Ret<Buf<D>>()                                              // HV
      .template Ret<Buf<D>>().template Ret<Slots>()                        // V0 J0
      .template Ret<Buf<D>>().template Ret<Slots>();                       // V1 J1
}

template <ffi::DataType D>
auto BindSet() {
  return ffi::Ffi::Bind()
      .template Arg<Buf<D>>().template Arg<Slots>().template Arg<Slots>()  // HV J t
      .template Arg<Slots>().template Arg<Slots>()                         // rows0 rows1
      .template Arg<Buf<D>>().template Arg<Slots>()                        // V0 J0
      .template Arg<Buf<D>>().template Arg<Slots>()                        // V1 J1
      .template Arg<Slots>()                                               // reads
      .template Ret<Buf<D>>().template Ret<Slots>()                        // HV J
      .template Ret<Buf<D>>().template Ret<Slots>()                        // RV0 RJ0
      .template Ret<Buf<D>>().template Ret<Slots>();                       // RV1 RJ1
}

template <ffi::DataType D>
auto BindBackward() {
  return ffi::Ffi::Bind().template Ctx<ffi::ThreadPool>()
      .template Arg<Buf<D>>().template Arg<Slots>().template Arg<Slots>()  // HV J t
      .template Arg<Slots>().template Arg<Buf<D>>().template Arg<Buf<D>>() // s u G
      .template Arg<Slots>().template Arg<Slots>()                         // rows0 rows1
      .template Arg<Slots>().template Arg<Slots>()                         // J0 J1 (before)
      .template Arg<Slots>().template Arg<Buf<D>>().template Arg<Buf<D>>() // reads gR0 gR1
      .template Arg<Buf<D>>().template Arg<Buf<D>>()                       // gM0 gM1
      .template Ret<Buf<D>>().template Ret<Buf<D>>().template Ret<Slots>(); // gV gu J
}

}  // namespace

#define DNCJAX_SPARSE_HISTORY_HANDLERS(T)                                                  \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxSparseHistoryStart##T, Start<ffi::T>,                \
                                BindStart<ffi::T>());                                      \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxSparseHistoryForward##T, Forward<ffi::T>,            \
                                BindForward<ffi::T>());                                    \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxSparseHistorySet##T, Set<ffi::T>, BindSet<ffi::T>()); \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxSparseHistoryBackward##T, Backward<ffi::T>,          \
                                BindBackward<ffi::T>());

DNCJAX_SPARSE_HISTORY_HANDLERS(F32)
DNCJAX_SPARSE_HISTORY_HANDLERS(F64)
