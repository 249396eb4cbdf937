// The sparse DNC's temporal links through a training unroll, with a journal of the entries
// each step changes (dncjax.models.sparse_history): XLA FFI handlers for
// dncjax.models.native.
//
// Per lane, V [2, N, K] holds the links' values (direction 0 the rows of L_t, direction 1
// those of L_t^T) and J [2, N, K] their slots; the steps update both in place. A step's
// decay by w = w^w_t (slots s [Kw], values u [Kw]),
//   V'[i, k] = (1 - w[i] - w[J[i, k]]) V[i, k],
// leaves every entry whose row and slot are both outside s as it is, so the journal keeps,
// per step, only the others: their place e in V and their value before the decay (in
// jidx, jval [C], from offsets[t] to offsets[t + 1]; C = T 2 N K, written only as far as
// it is used). A step t of the unroll:
//   forward  the decay, in place, journalled, in both directions; then the rows that gain
//            entries are handed out (values and slots: rows0 [K0] of direction 0, rows1
//            [K1] of direction 1) for XLA to merge;
//   set      the merged rows written into V and J, and the rows the read heads follow
//            (reads [R]) handed out, in each direction;
//   backward from V_{t+1}, J_{t+1} and the cotangent G [2, N, K] of V_{t+1}: G completed
//            with what XLA computed on rows (gR0, gR1 [R, K] added at the rows `reads`,
//            then gM0 [K0, K], gM1 [K1, K] written over rows0, rows1: the merged rows'
//            cotangents carried back to the decayed rows); the rows put back as they were
//            decayed (D0, D1) with their slots before the step (J0, J1); then the journal
//            of step t, read once: each entry's decay undone in V, its cotangent in G
//            scaled by its factor (every other entry's factor is 1), and its share of
//            gu[a] = -sum over the entries of row s[a] or slot s[a] of G V added.
// Every handler writes V, J, the journal and G in place where XLA aliases them (else into
// a copy first); a row outside [0, N) is read as zeros and not written.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "lanes.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

template <ffi::DataType D>
using Buf = ffi::Buffer<D>;
template <ffi::DataType D>
using Ret = ffi::ResultBuffer<D>;
using Slots = ffi::Buffer<ffi::S32>;
using SlotsOut = ffi::ResultBuffer<ffi::S32>;

// Entries per lane of an array (its element count over the lanes).
template <typename B>
int64_t PerLane(const B& b, int64_t lanes) {
  return lanes == 0 ? 0 : static_cast<int64_t>(b.element_count()) / lanes;
}

// Lanes, N and K of V [..., 2, N, K]; J must have V's size.
template <typename B>
ffi::Error Shape(const B& V, const Slots& J, int64_t& lanes, int64_t& n, int64_t& k) {
  auto dims = V.dimensions();
  if (dims.size() < 3 || dims[dims.size() - 3] != 2)
    return ffi::Error::InvalidArgument("sparse link journal: V must be [..., 2, N, K]");
  n = dims[dims.size() - 2];
  k = dims.back();
  lanes = n * k == 0 ? 0 : static_cast<int64_t>(V.element_count()) / (2 * n * k);
  if (J.element_count() != V.element_count())
    return ffi::Error::InvalidArgument("sparse link journal: J must be [..., 2, N, K]");
  return ffi::Error::Success();
}

// The steps t (one per lane) against the journal's offsets [..., T + 1].
inline ffi::Error CheckSteps(const Slots& t, const Slots& offsets, int64_t lanes) {
  if (static_cast<int64_t>(t.element_count()) != lanes)
    return ffi::Error::InvalidArgument("sparse link journal: t must have one entry per lane");
  const int64_t steps = PerLane(offsets, lanes) - 1;
  for (int64_t l = 0; l < lanes; ++l)
    if (t.typed_data()[l] < 0 || t.typed_data()[l] >= steps)
      return ffi::Error::InvalidArgument("sparse link journal: t outside the journal");
  return ffi::Error::Success();
}

template <typename T>
T* InPlace(const T* in, T* out, size_t count) {
  if (out != in) std::copy(in, in + count, out);
  return out;
}

inline bool In(int32_t slot, int64_t n) {
  return static_cast<uint64_t>(slot) < static_cast<uint64_t>(n);
}

// out[a, :] = table[rows[a], :] (K entries), zeros for a row outside [0, n).
template <typename T>
void GatherRows(const T* table, const int32_t* rows, int64_t count, int64_t n, int64_t k,
                T* out) {
  for (int64_t a = 0; a < count; ++a) {
    if (In(rows[a], n))
      std::copy(table + rows[a] * k, table + (rows[a] + 1) * k, out + a * k);
    else
      std::fill(out + a * k, out + (a + 1) * k, T(0));
  }
}

template <typename T>
void ScatterRows(const T* rows_in, const int32_t* rows, int64_t count, int64_t n, int64_t k,
                 T* table, bool add = false) {
  for (int64_t a = 0; a < count; ++a)
    if (In(rows[a], n))
      for (int64_t e = 0; e < k; ++e)
        table[rows[a] * k + e] = (add ? table[rows[a] * k + e] : T(0)) + rows_in[a * k + e];
}

// w dense [N] and which slots s names (its values may be zero), from s, u [Kw].
template <typename T>
void Written(const int32_t* s, const T* u, int64_t kw, int64_t n, std::vector<T>& w,
             std::vector<char>& named) {
  w.assign(n, T(0));
  named.assign(n, 0);
  for (int64_t a = 0; a < kw; ++a)
    if (In(s[a], n)) {
      w[s[a]] += u[a];
      named[s[a]] = 1;
    }
}

// One lane's decay of both directions, in place, journalled from `at`; returns the end.
template <typename T>
int64_t DecayLane(T* V, const int32_t* J, const std::vector<T>& w,
                  const std::vector<char>& named, int64_t n, int64_t k, int64_t at,
                  int32_t* jidx, T* jval) {
  for (int64_t row = 0; row < 2 * n; ++row) {
    const int64_t i = row % n;
    for (int64_t e = row * k; e < (row + 1) * k; ++e) {
      const bool slot = In(J[e], n) && named[J[e]];
      if (!named[i] && !slot) continue;
      jidx[at] = static_cast<int32_t>(e);
      jval[at++] = V[e];
      V[e] *= 1 - w[i] - (slot ? w[J[e]] : T(0));
    }
  }
  return at;
}

// V [..., 2, N, K] from the two directions' values V0, V1 [..., N, K], and an empty journal
// (offsets[0] = 0; the forward steps write the rest before anything reads it).
template <ffi::DataType D>
ffi::Error Start(Buf<D> V0, Buf<D> V1, Ret<D> V, SlotsOut jidx, Ret<D> jval,
                 SlotsOut offsets) {
  auto dims = V0.dimensions();
  if (dims.size() < 2 || V1.element_count() != V0.element_count() ||
      V->element_count() != 2 * V0.element_count())
    return ffi::Error::InvalidArgument("sparse link journal: links [..., N, K] for V");
  const int64_t size = dims[dims.size() - 2] * dims.back();
  const int64_t lanes = size == 0 ? 0 : static_cast<int64_t>(V0.element_count()) / size;
  const int64_t steps = PerLane(*offsets, lanes);
  for (int64_t l = 0; l < lanes; ++l) {
    std::copy(V0.typed_data() + l * size, V0.typed_data() + (l + 1) * size,
              V->typed_data() + 2 * l * size);
    std::copy(V1.typed_data() + l * size, V1.typed_data() + (l + 1) * size,
              V->typed_data() + (2 * l + 1) * size);
    offsets->typed_data()[l * steps] = 0;
  }
  return ffi::Error::Success();
}

template <ffi::DataType D>
ffi::Error Forward(ffi::ThreadPool pool, Buf<D> V_in, Slots J, Slots jidx_in, Buf<D> jval_in,
                   Slots offsets_in, Slots t, Slots s, Buf<D> u, Slots rows0, Slots rows1,
                   Ret<D> V_out, SlotsOut jidx_out, Ret<D> jval_out, SlotsOut offsets_out,
                   Ret<D> V0, SlotsOut J0, Ret<D> V1, SlotsOut J1) {
  int64_t lanes, n, k;
  if (auto e = Shape(V_in, J, lanes, n, k); e.failure()) return e;
  if (auto e = CheckSteps(t, offsets_in, lanes); e.failure()) return e;
  using T = ffi::NativeType<D>;
  T* V = InPlace(V_in.typed_data(), V_out->typed_data(), V_in.element_count());
  int32_t* jidx = InPlace(jidx_in.typed_data(), jidx_out->typed_data(), jidx_in.element_count());
  T* jval = InPlace(jval_in.typed_data(), jval_out->typed_data(), jval_in.element_count());
  int32_t* offsets = InPlace(offsets_in.typed_data(), offsets_out->typed_data(),
                             offsets_in.element_count());
  const int64_t kw = PerLane(s, lanes), k0 = PerLane(rows0, lanes), k1 = PerLane(rows1, lanes);
  const int64_t size = n * k, capacity = PerLane(jidx_in, lanes);
  const int64_t steps = PerLane(offsets_in, lanes);
  dncjax::ForLanes(pool, lanes, lanes * 2 * size, [&](int64_t first, int64_t last) {
    std::vector<T> w;
    std::vector<char> named;
    for (int64_t l = first; l < last; ++l) {
      T* Vl = V + l * 2 * size;
      const int32_t* Jl = J.typed_data() + l * 2 * size;
      int32_t* at = offsets + l * steps + t.typed_data()[l];
      Written(s.typed_data() + l * kw, u.typed_data() + l * kw, kw, n, w, named);
      at[1] = static_cast<int32_t>(DecayLane(Vl, Jl, w, named, n, k, at[0],
                                             jidx + l * capacity, jval + l * capacity));
      GatherRows(Vl, rows0.typed_data() + l * k0, k0, n, k, V0->typed_data() + l * k0 * k);
      GatherRows(Jl, rows0.typed_data() + l * k0, k0, n, k, J0->typed_data() + l * k0 * k);
      GatherRows(Vl + size, rows1.typed_data() + l * k1, k1, n, k,
                 V1->typed_data() + l * k1 * k);
      GatherRows(Jl + size, rows1.typed_data() + l * k1, k1, n, k,
                 J1->typed_data() + l * k1 * k);
    }
  });
  return ffi::Error::Success();
}

template <ffi::DataType D>
ffi::Error Set(Buf<D> V_in, Slots J_in, Slots rows0, Slots rows1, Buf<D> M0,
               Slots N0, Buf<D> M1, Slots N1, Slots reads, Ret<D> V_out, SlotsOut J_out,
               Ret<D> RV0, SlotsOut RJ0, Ret<D> RV1, SlotsOut RJ1) {
  int64_t lanes, n, k;
  if (auto e = Shape(V_in, J_in, lanes, n, k); e.failure()) return e;
  using T = ffi::NativeType<D>;
  T* V = InPlace(V_in.typed_data(), V_out->typed_data(), V_in.element_count());
  int32_t* J = InPlace(J_in.typed_data(), J_out->typed_data(), J_in.element_count());
  const int64_t k0 = PerLane(rows0, lanes), k1 = PerLane(rows1, lanes);
  const int64_t kr = PerLane(reads, lanes), size = n * k;
  for (int64_t l = 0; l < lanes; ++l) {
    T* Vl = V + l * 2 * size;
    int32_t* Jl = J + l * 2 * size;
    const int32_t* r0 = rows0.typed_data() + l * k0;
    const int32_t* r1 = rows1.typed_data() + l * k1;
    ScatterRows(M0.typed_data() + l * k0 * k, r0, k0, n, k, Vl);
    ScatterRows(N0.typed_data() + l * k0 * k, r0, k0, n, k, Jl);
    ScatterRows(M1.typed_data() + l * k1 * k, r1, k1, n, k, Vl + size);
    ScatterRows(N1.typed_data() + l * k1 * k, r1, k1, n, k, Jl + size);
    const int32_t* r = reads.typed_data() + l * kr;
    const int64_t out = l * kr * k;
    GatherRows(Vl, r, kr, n, k, RV0->typed_data() + out);
    GatherRows(Jl, r, kr, n, k, RJ0->typed_data() + out);
    GatherRows(Vl + size, r, kr, n, k, RV1->typed_data() + out);
    GatherRows(Jl + size, r, kr, n, k, RJ1->typed_data() + out);
  }
  return ffi::Error::Success();
}

// What XLA computed on rows for a step's backward pass, and the rows to put back.
template <typename T>
struct Rows {
  const int32_t *rows0, *rows1, *J0, *J1, *reads;
  const T *D0, *D1, *gR0, *gR1, *gM0, *gM1;
  int64_t k0, k1, kr;
};

// One lane: G completed, V's and J's rows put back as they were decayed.
template <typename T>
void RowsBack(const Rows<T>& c, int64_t l, int64_t n, int64_t k, T* G, T* V, int32_t* J) {
  const int64_t size = n * k;
  const int32_t* r0 = c.rows0 + l * c.k0;
  const int32_t* r1 = c.rows1 + l * c.k1;
  const int32_t* reads = c.reads + l * c.kr;
  ScatterRows(c.gR0 + l * c.kr * k, reads, c.kr, n, k, G, true);
  ScatterRows(c.gR1 + l * c.kr * k, reads, c.kr, n, k, G + size, true);
  ScatterRows(c.gM0 + l * c.k0 * k, r0, c.k0, n, k, G);
  ScatterRows(c.gM1 + l * c.k1 * k, r1, c.k1, n, k, G + size);
  ScatterRows(c.D0 + l * c.k0 * k, r0, c.k0, n, k, V);
  ScatterRows(c.D1 + l * c.k1 * k, r1, c.k1, n, k, V + size);
  ScatterRows(c.J0 + l * c.k0 * k, r0, c.k0, n, k, J);
  ScatterRows(c.J1 + l * c.k1 * k, r1, c.k1, n, k, J + size);
}

// One lane: step t's journal read back: V's decay undone, G scaled, the totals for gu.
template <typename T>
void UndoLane(T* V, const int32_t* J, T* G, const int32_t* jidx, const T* jval, int64_t from,
              int64_t to, const std::vector<T>& w, const std::vector<char>& named,
              int64_t n, int64_t k, std::vector<T>& total) {
  total.assign(n, T(0));
  for (int64_t a = from; a < to; ++a) {
    const int64_t e = jidx[a];
    const int64_t i = (e / k) % n;
    const bool slot = In(J[e], n) && named[J[e]];
    const T gv = G[e] * jval[a];
    if (named[i]) total[i] -= gv;
    if (slot) total[J[e]] -= gv;
    G[e] *= 1 - w[i] - (slot ? w[J[e]] : T(0));
    V[e] = jval[a];
  }
}

template <ffi::DataType D>
ffi::Error Backward(ffi::ThreadPool pool, Buf<D> V_in, Slots J_in, Slots jidx, Buf<D> jval,
                    Slots offsets, Slots t, Slots s, Buf<D> u, Buf<D> G_in, Slots rows0,
                    Slots rows1, Buf<D> D0, Buf<D> D1, Slots J0, Slots J1, Slots reads,
                    Buf<D> gR0, Buf<D> gR1, Buf<D> gM0, Buf<D> gM1, Ret<D> G_out, Ret<D> gu,
                    Ret<D> V_out, SlotsOut J_out) {
  int64_t lanes, n, k;
  if (auto e = Shape(V_in, J_in, lanes, n, k); e.failure()) return e;
  if (auto e = CheckSteps(t, offsets, lanes); e.failure()) return e;
  if (G_in.element_count() != V_in.element_count())
    return ffi::Error::InvalidArgument("sparse link journal: G must be [..., 2, N, K]");
  using T = ffi::NativeType<D>;
  T* V = InPlace(V_in.typed_data(), V_out->typed_data(), V_in.element_count());
  int32_t* J = InPlace(J_in.typed_data(), J_out->typed_data(), J_in.element_count());
  T* G = InPlace(G_in.typed_data(), G_out->typed_data(), G_in.element_count());
  const Rows<T> rows{rows0.typed_data(), rows1.typed_data(), J0.typed_data(), J1.typed_data(),
                     reads.typed_data(), D0.typed_data(), D1.typed_data(), gR0.typed_data(),
                     gR1.typed_data(), gM0.typed_data(), gM1.typed_data(),
                     PerLane(rows0, lanes), PerLane(rows1, lanes), PerLane(reads, lanes)};
  const int64_t kw = PerLane(s, lanes), size = 2 * n * k;
  const int64_t capacity = PerLane(jidx, lanes), steps = PerLane(offsets, lanes);
  dncjax::ForLanes(pool, lanes, lanes * size, [&](int64_t first, int64_t last) {
    std::vector<T> w, total;
    std::vector<char> named;
    for (int64_t l = first; l < last; ++l) {
      T *Vl = V + l * size, *Gl = G + l * size;
      int32_t* Jl = J + l * size;
      RowsBack(rows, l, n, k, Gl, Vl, Jl);
      const int32_t* s_l = s.typed_data() + l * kw;
      Written(s_l, u.typed_data() + l * kw, kw, n, w, named);
      const int32_t* at = offsets.typed_data() + l * steps + t.typed_data()[l];
      UndoLane(Vl, Jl, Gl, jidx.typed_data() + l * capacity, jval.typed_data() + l * capacity,
               at[0], at[1], w, named, n, k, total);
      for (int64_t a = 0; a < kw; ++a)
        gu->typed_data()[l * kw + a] = In(s_l[a], n) ? total[s_l[a]] : T(0);
    }
  });
  return ffi::Error::Success();
}

template <ffi::DataType D>
auto BindStart() {
  return ffi::Ffi::Bind().template Arg<Buf<D>>().template Arg<Buf<D>>()  // V0 V1
      .template Ret<Buf<D>>().template Ret<Slots>()                       // V jidx
      .template Ret<Buf<D>>().template Ret<Slots>();                      // jval offsets
}

template <ffi::DataType D>
auto BindForward() {
  return ffi::Ffi::Bind().template Ctx<ffi::ThreadPool>()
      .template Arg<Buf<D>>().template Arg<Slots>()                        // V J
      .template Arg<Slots>().template Arg<Buf<D>>().template Arg<Slots>()  // jidx jval offsets
      .template Arg<Slots>().template Arg<Slots>().template Arg<Buf<D>>()  // t s u
      .template Arg<Slots>().template Arg<Slots>()                         // rows0 rows1
      .template Ret<Buf<D>>().template Ret<Slots>()                        // V jidx
      .template Ret<Buf<D>>().template Ret<Slots>()                        // jval offsets
      .template Ret<Buf<D>>().template Ret<Slots>()                        // V0 J0
      .template Ret<Buf<D>>().template Ret<Slots>();                       // V1 J1
}

template <ffi::DataType D>
auto BindSet() {
  return ffi::Ffi::Bind()
      .template Arg<Buf<D>>().template Arg<Slots>()                        // V J
      .template Arg<Slots>().template Arg<Slots>()                         // rows0 rows1
      .template Arg<Buf<D>>().template Arg<Slots>()                        // merged 0
      .template Arg<Buf<D>>().template Arg<Slots>()                        // merged 1
      .template Arg<Slots>()                                               // reads
      .template Ret<Buf<D>>().template Ret<Slots>()                        // V J
      .template Ret<Buf<D>>().template Ret<Slots>()                        // RV0 RJ0
      .template Ret<Buf<D>>().template Ret<Slots>();                       // RV1 RJ1
}

template <ffi::DataType D>
auto BindBackward() {
  return ffi::Ffi::Bind().template Ctx<ffi::ThreadPool>()
      .template Arg<Buf<D>>().template Arg<Slots>()                        // V J
      .template Arg<Slots>().template Arg<Buf<D>>().template Arg<Slots>()  // jidx jval offsets
      .template Arg<Slots>().template Arg<Slots>().template Arg<Buf<D>>()  // t s u
      .template Arg<Buf<D>>()                                              // G
      .template Arg<Slots>().template Arg<Slots>()                         // rows0 rows1
      .template Arg<Buf<D>>().template Arg<Buf<D>>()                       // D0 D1
      .template Arg<Slots>().template Arg<Slots>()                         // J0 J1
      .template Arg<Slots>().template Arg<Buf<D>>().template Arg<Buf<D>>() // reads gR0 gR1
      .template Arg<Buf<D>>().template Arg<Buf<D>>()                       // gM0 gM1
      .template Ret<Buf<D>>().template Ret<Buf<D>>()                       // G gu
      .template Ret<Buf<D>>().template Ret<Slots>();                       // V J
}

}  // namespace

#define DNCJAX_SPARSE_JOURNAL_HANDLERS(T)                                                  \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxSparseJournalStart##T, Start<ffi::T>,                \
                                BindStart<ffi::T>());                                      \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxSparseJournalForward##T, Forward<ffi::T>,            \
                                BindForward<ffi::T>());                                    \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxSparseJournalSet##T, Set<ffi::T>, BindSet<ffi::T>()); \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxSparseJournalBackward##T, Backward<ffi::T>,          \
                                BindBackward<ffi::T>());

DNCJAX_SPARSE_JOURNAL_HANDLERS(F32)
DNCJAX_SPARSE_JOURNAL_HANDLERS(F64)
