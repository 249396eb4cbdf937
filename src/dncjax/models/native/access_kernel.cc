// The DNC's memory access around the temporal link step on the CPU, one call per step for
// the whole batch: XLA FFI handlers for dncjax.models.native.access (the maths per lane
// is access_lanes.h). Where XLA runs the write and the read as some hundred small
// operations per time step, these are four calls (forward and backward of each).
//
// Buffers, per lane (leading axes are lanes), xi [X] the raw interface vector (its
// transforms are the kernels' own: Interface in access_lanes.h):
//   write forward   M [N, W], u0, ww0 [N], wr0 [R, N], xi -> u [N], ww [N], M' [N, W]
//   write backward  the same inputs, then gu [N], gww [N], gM' [N, W]
//                   -> gM, gu0, gww0, gwr0, gxi (the inputs' shapes)
//   read forward    M' [N, W], f, b [R, N], xi -> wr [R, N], rv [R, W]
//   read backward   the same inputs, then gwr [R, N], grv [R, W] -> gM', gf, gb, gxi
// with the attributes norm_eps (and usage_eps for the write).

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <utility>
#include <vector>

#include "access_lanes.h"
#include "lanes.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dncjax::Columns;
using dncjax::Content;
using dncjax::ForLanes;
using dncjax::Interface;
using dncjax::Write;

namespace {

template <ffi::DataType D>
using Buf = ffi::Buffer<D>;
template <ffi::DataType D>
using Ret = ffi::ResultBuffer<D>;

// Lanes, N, W and R from M [..., N, W] and a [..., R, N] array.
template <typename B>
ffi::Error Sizes(const B& M, const B& rows, int64_t& lanes, int64_t& n, int64_t& W,
                 int64_t& R) {
  auto mdims = M.dimensions();
  auto rdims = rows.dimensions();
  if (mdims.size() < 2 || rdims.size() < 2)
    return ffi::Error::InvalidArgument("access: M must be [..., N, W], weights [..., R, N]");
  n = mdims[mdims.size() - 2], W = mdims.back(), R = rdims[rdims.size() - 2];
  lanes = n * W == 0 ? 0 : static_cast<int64_t>(M.element_count()) / (n * W);
  if (rdims.back() != n || rows.element_count() != static_cast<size_t>(lanes * R * n))
    return ffi::Error::InvalidArgument("access: weights must be [..., R, N] for M [..., N, W]");
  return ffi::Error::Success();
}

// Checks that each (element count, numbers per lane) pair matches.
inline ffi::Error Counts(std::initializer_list<std::pair<size_t, int64_t>> counts,
                         int64_t lanes) {
  for (auto [count, per_lane] : counts)
    if (count != static_cast<size_t>(lanes * per_lane))
      return ffi::Error::InvalidArgument("access: an input's size does not match M's");
  return ffi::Error::Success();
}

// X, the interface's size per lane, from xi [..., X]; checks it holds the access's part.
template <typename B>
ffi::Error InterfaceSize(const B& xi, int64_t lanes, int64_t W, int64_t R, int64_t& X) {
  auto dims = xi.dimensions();
  X = dims.size() == 0 ? 0 : dims.back();
  if (xi.element_count() != static_cast<size_t>(lanes * X) || X < Interface<float>(W, R).size)
    return ffi::Error::InvalidArgument("access: xi must be [..., X] with X >= W R + 3 W + 5 R + 3");
  return ffi::Error::Success();
}

// The write's sizes: lanes, N, W, R and X, with u0, ww0 [..., N] checked.
template <typename B>
ffi::Error WriteSizes(const B& M, const B& u0, const B& ww0, const B& wr0, const B& xi,
                      int64_t& lanes, int64_t& n, int64_t& W, int64_t& R, int64_t& X) {
  if (auto err = Sizes(M, wr0, lanes, n, W, R); err.failure()) return err;
  if (auto err = Counts({{u0.element_count(), n}, {ww0.element_count(), n}}, lanes);
      err.failure())
    return err;
  return InterfaceSize(xi, lanes, W, R, X);
}

template <ffi::DataType D>
ffi::Error WriteForward(ffi::ThreadPool pool, Buf<D> M, Buf<D> u0, Buf<D> ww0, Buf<D> wr0,
                        Buf<D> xi, Ret<D> u, Ret<D> ww, Ret<D> M_new, double norm_eps,
                        double usage_eps) {
  int64_t lanes, n, W, R, X;
  if (auto err = WriteSizes(M, u0, ww0, wr0, xi, lanes, n, W, R, X); err.failure()) return err;
  using T = ffi::NativeType<D>;
  ForLanes(pool, lanes, lanes * n * W, [&](int64_t first, int64_t last) {
    Write<T> lane;
    Interface<T> in(W, R);
    for (int64_t l = first; l < last; ++l) {
      const int64_t m = l * n * W, s = l * n;
      const T *Ml = M.typed_data() + m, *x = xi.typed_data() + l * X;
      in.DecodeWrite(x);
      lane.Forward(Ml, u0.typed_data() + s, ww0.typed_data() + s, wr0.typed_data() + l * R * n,
                   x + in.key, in.fg.data(), in.transformed.data(), n, W, R, T(norm_eps),
                   T(usage_eps));
      std::copy(lane.u.begin(), lane.u.end(), u->typed_data() + s);
      std::copy(lane.ww.begin(), lane.ww.end(), ww->typed_data() + s);
      const T *el = in.e.data(), *vl = x + in.vector;
      T* out = M_new->typed_data() + m;
      for (int64_t i = 0; i < n; ++i) {
        const T wi = lane.ww[i];
#pragma omp simd
        for (int64_t w = 0; w < W; ++w)
          out[i * W + w] = Ml[i * W + w] * (1 - wi * el[w]) + wi * vl[w];
      }
    }
  });
  return ffi::Error::Success();
}

template <typename T>
struct WriteGrads {  // one lane's cotangent outputs
  T *gM, *gu0, *gww0, *gwr0, *gk, *ge, *gv, *gfg, *ggates;
};

// One lane's write backward pass, from the cotangents gu, gww, gM' of (u, ww, M').
template <typename T>
void WriteBackwardLane(Write<T>& lane, const T* M, const T* u0, const T* ww0, const T* wr0,
                       const T* k, const T* e, const T* v, const T* fg, const T* gates,
                       const T* gu, const T* gww_in, const T* gM_new, int64_t n, int64_t W,
                       int64_t R, T norm_eps, T usage_eps, WriteGrads<T> g,
                       std::vector<T>& gww, std::vector<T>& scratch, std::vector<T>& gT) {
  lane.Forward(M, u0, ww0, wr0, k, fg, gates, n, W, R, norm_eps, usage_eps);
  const T ga = gates[1], gw = gates[2];
  std::fill(g.ge, g.ge + W, T(0));
  std::fill(g.gv, g.gv + W, T(0));
  std::fill(g.gk, g.gk + W, T(0));
  gww.assign(gww_in, gww_in + n);
  for (int64_t i = 0; i < n; ++i) {  // M' = M (1 - ww e^T) + ww v^T
    const T wi = lane.ww[i];
    const T *gm = gM_new + i * W, *mi = M + i * W;
    T* g_m = g.gM + i * W;
    T acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t w = 0; w < W; ++w) {
      g_m[w] = gm[w] * (1 - wi * e[w]);
      acc += gm[w] * (v[w] - mi[w] * e[w]);
      g.ge[w] -= gm[w] * mi[w] * wi;
      g.gv[w] += gm[w] * wi;
    }
    gww[i] += acc;
  }
  scratch.assign(n * (R + 2), T(0));
  T *g_a = scratch.data(), *g_c = scratch.data() + n;
  T g_gw = 0, g_ga = 0;
  for (int64_t i = 0; i < n; ++i) {  // ww = g^w (g^a a + (1 - g^a) c)
    const T a = lane.a[i], c = lane.content.c[i];
    g_gw += gww[i] * (ga * a + (1 - ga) * c);
    g_ga += gww[i] * gw * (a - c);
    g_a[i] = gww[i] * gw * ga;
    g_c[i] = gww[i] * gw * (1 - ga);
  }
  gT.assign(n * W, T(0));
  const T g_beta = lane.content.Backward(lane.columns, k, gates[0], g_c, gT.data(), g.gk);
  for (int64_t w = 0; w < W; ++w)
    for (int64_t i = 0; i < n; ++i) g.gM[i * W + w] += gT[w * n + i];
  g.ggates[0] = g_beta, g.ggates[1] = g_ga, g.ggates[2] = g_gw;
  lane.AllocationBackward(g_a, n, g_c);  // g_c now holds the cotangent of uc
  T* g_psi = g_a;  // free again
  for (int64_t i = 0; i < n; ++i) {  // u = written psi, uc = eps + (1 - eps) u
    const T g_u = gu[i] + (1 - usage_eps) * g_c[i];
    const T g_written = g_u * lane.psi[i];
    g_psi[i] = g_u * lane.written[i];
    g.gu0[i] = g_written * (1 - ww0[i]);
    g.gww0[i] = g_written * (1 - u0[i]);
  }
  // psi = prod_r q_r, q_r = 1 - fg[r] wr0[r, i]: d psi / d q_r is the product of the
  // others, the running product of the q before r times that of those after it (no
  // division); `after` holds the latter for each r, `before` runs up.
  T *after = g_c, *before = after + R * n;  // g_c is free again
  for (int64_t r = 0; r < R; ++r) std::fill(after + r * n, after + (r + 1) * n, T(1));
  for (int64_t r = R - 2; r >= 0; --r) {
    const T f = fg[r + 1], *wr_next = wr0 + (r + 1) * n, *later = after + (r + 1) * n;
    T* here = after + r * n;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) here[i] = later[i] * (1 - f * wr_next[i]);
  }
  std::fill(before, before + n, T(1));
  for (int64_t r = 0; r < R; ++r) {
    const T f = fg[r], *wr_r = wr0 + r * n, *later = after + r * n;
    T* g_wr = g.gwr0 + r * n;
    T g_f = 0;
#pragma omp simd reduction(+ : g_f)
    for (int64_t i = 0; i < n; ++i) {
      const T d = g_psi[i] * before[i] * later[i];
      g_wr[i] = -d * f;
      g_f -= d * wr_r[i];
      before[i] *= 1 - f * wr_r[i];
    }
    g.gfg[r] = g_f;
  }
}

template <ffi::DataType D>
ffi::Error WriteBackward(ffi::ThreadPool pool, Buf<D> M, Buf<D> u0, Buf<D> ww0, Buf<D> wr0,
                         Buf<D> xi, Buf<D> gu, Buf<D> gww, Buf<D> gM_new, Ret<D> gM,
                         Ret<D> gu0, Ret<D> gww0, Ret<D> gwr0, Ret<D> gxi, double norm_eps,
                         double usage_eps) {
  int64_t lanes, n, W, R, X;
  if (auto err = WriteSizes(M, u0, ww0, wr0, xi, lanes, n, W, R, X); err.failure()) return err;
  if (auto err = Counts({{gu.element_count(), n}, {gww.element_count(), n},
                         {gM_new.element_count(), n * W}}, lanes);
      err.failure())
    return err;
  using T = ffi::NativeType<D>;
  ForLanes(pool, lanes, lanes * n * W, [&](int64_t first, int64_t last) {
    Write<T> lane;
    Interface<T> in(W, R);
    std::vector<T> g_ww, scratch, gT, g_in(3 * W + R + 3);  // gk ge gv gfg ggates
    T *gk = g_in.data(), *ge = gk + W, *gv = ge + W, *gfg = gv + W, *ggates = gfg + R;
    for (int64_t l = first; l < last; ++l) {
      const int64_t m = l * n * W, s = l * n, h = l * R * n;
      const T* x = xi.typed_data() + l * X;
      in.DecodeWrite(x);
      WriteGrads<T> g{gM->typed_data() + m, gu0->typed_data() + s, gww0->typed_data() + s,
                      gwr0->typed_data() + h, gk, ge, gv, gfg, ggates};
      WriteBackwardLane<T>(lane, M.typed_data() + m, u0.typed_data() + s,
                           ww0.typed_data() + s, wr0.typed_data() + h, x + in.key,
                           in.e.data(), x + in.vector, in.fg.data(), in.transformed.data(),
                           gu.typed_data() + s, gww.typed_data() + s,
                           gM_new.typed_data() + m, n, W, R, T(norm_eps), T(usage_eps), g,
                           g_ww, scratch, gT);
      in.EncodeWrite(x, gk, ge, gv, gfg, ggates, X, gxi->typed_data() + l * X);
    }
  });
  return ffi::Error::Success();
}

// One lane's read: w^r [R, N] and r [R, W] from M', f, b, the keys and heads; with
// cotangents (gwr, grv non-null) its backward pass into g (gM', gf, gb, gkr, gheads).
template <typename T>
struct Reader {
  Columns<T> columns;
  Content<T> content;
  std::vector<T> weights, g_c, gT;

  void Lane(const T* M, const T* f, const T* b, const T* kr, const T* heads, int64_t n,
            int64_t W, int64_t R, T norm_eps, T* wr, T* rv, const T* gwr, const T* grv,
            T* const* g) {
    columns.Set(M, n, W, norm_eps);
    weights.resize(n), g_c.resize(n);
    if (gwr) gT.assign(n * W, T(0));
    for (int64_t r = 0; r < R; ++r) {
      const T* head = heads + 4 * r;
      content.Forward(columns, kr + r * W, head[0], norm_eps);
      T* w_r = wr ? wr + r * n : weights.data();
      const T *b_r = b + r * n, *f_r = f + r * n, *c = content.c.data();
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) w_r[i] = head[1] * b_r[i] + head[2] * c[i] + head[3] * f_r[i];
      if (!gwr) {  // r[r] = sum_i w^r[r, i] M'[i]: rows of M' in order
        T* out = rv + r * W;
        std::fill(out, out + W, T(0));
        for (int64_t i = 0; i < n; ++i) {
          const T weight = w_r[i], *row = M + i * W;
#pragma omp simd
          for (int64_t w = 0; w < W; ++w) out[w] += weight * row[w];
        }
        continue;
      }
      T* g_w = g_c.data();  // first the cotangent of w^r_t[r], then of c
      std::copy(gwr + r * n, gwr + (r + 1) * n, g_w);
      for (int64_t w = 0; w < W; ++w) {  // r = w^r M'
        const T gr = grv[r * W + w], *col = columns.t.data() + w * n;
        T* g_col = gT.data() + w * n;
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) {
          g_w[i] += gr * col[i];
          g_col[i] += w_r[i] * gr;
        }
      }
      T g_b = 0, g_c_mode = 0, g_f = 0;
      T *gf_r = g[1] + r * n, *gb_r = g[2] + r * n;
#pragma omp simd reduction(+ : g_b, g_c_mode, g_f)
      for (int64_t i = 0; i < n; ++i) {
        g_b += g_w[i] * b_r[i], g_c_mode += g_w[i] * c[i], g_f += g_w[i] * f_r[i];
        gb_r[i] = head[1] * g_w[i];
        gf_r[i] = head[3] * g_w[i];
        g_w[i] *= head[2];
      }
      T* g_key = g[3] + r * W;
      std::fill(g_key, g_key + W, T(0));
      g[4][4 * r] = content.Backward(columns, kr + r * W, head[0], g_w, gT.data(), g_key);
      g[4][4 * r + 1] = g_b, g[4][4 * r + 2] = g_c_mode, g[4][4 * r + 3] = g_f;
    }
    if (gwr)
      for (int64_t w = 0; w < W; ++w)
        for (int64_t i = 0; i < n; ++i) g[0][i * W + w] = gT[w * n + i];
  }
};

template <ffi::DataType D>
ffi::Error ReadForward(ffi::ThreadPool pool, Buf<D> M, Buf<D> f, Buf<D> b, Buf<D> xi,
                       Ret<D> wr, Ret<D> rv, double norm_eps) {
  int64_t lanes, n, W, R, X;
  if (auto err = Sizes(M, f, lanes, n, W, R); err.failure()) return err;
  if (auto err = Counts({{b.element_count(), R * n}}, lanes); err.failure()) return err;
  if (auto err = InterfaceSize(xi, lanes, W, R, X); err.failure()) return err;
  using T = ffi::NativeType<D>;
  ForLanes(pool, lanes, lanes * n * W * R, [&](int64_t first, int64_t last) {
    Reader<T> reader;
    Interface<T> in(W, R);
    for (int64_t l = first; l < last; ++l) {
      const int64_t m = l * n * W, h = l * R * n;
      const T* x = xi.typed_data() + l * X;
      in.DecodeRead(x);
      reader.Lane(M.typed_data() + m, f.typed_data() + h, b.typed_data() + h, x,
                  in.heads.data(), n, W, R, T(norm_eps), wr->typed_data() + h,
                  rv->typed_data() + l * R * W, nullptr, nullptr, nullptr);
    }
  });
  return ffi::Error::Success();
}

template <ffi::DataType D>
ffi::Error ReadBackward(ffi::ThreadPool pool, Buf<D> M, Buf<D> f, Buf<D> b, Buf<D> xi,
                        Buf<D> gwr, Buf<D> grv, Ret<D> gM, Ret<D> gf, Ret<D> gb, Ret<D> gxi,
                        double norm_eps) {
  int64_t lanes, n, W, R, X;
  if (auto err = Sizes(M, f, lanes, n, W, R); err.failure()) return err;
  if (auto err = Counts({{b.element_count(), R * n}, {gwr.element_count(), R * n},
                         {grv.element_count(), R * W}}, lanes);
      err.failure())
    return err;
  if (auto err = InterfaceSize(xi, lanes, W, R, X); err.failure()) return err;
  using T = ffi::NativeType<D>;
  ForLanes(pool, lanes, lanes * n * W * R, [&](int64_t first, int64_t last) {
    Reader<T> reader;
    Interface<T> in(W, R);
    std::vector<T> gkr(R * W), gheads(4 * R);
    for (int64_t l = first; l < last; ++l) {
      const int64_t m = l * n * W, h = l * R * n;
      const T* x = xi.typed_data() + l * X;
      in.DecodeRead(x);
      T* g[5] = {gM->typed_data() + m, gf->typed_data() + h, gb->typed_data() + h, gkr.data(),
                 gheads.data()};
      reader.Lane(M.typed_data() + m, f.typed_data() + h, b.typed_data() + h, x,
                  in.heads.data(), n, W, R, T(norm_eps), nullptr, nullptr,
                  gwr.typed_data() + h, grv.typed_data() + l * R * W, g);
      in.EncodeRead(x, gkr.data(), gheads.data(), X, gxi->typed_data() + l * X);
    }
  });
  return ffi::Error::Success();
}

// Bindings: the thread pool, the input buffers, the results, the attributes. The FFI's
// binding is built by chained calls on temporaries (it cannot be passed around).
#define ARGS3 .template Arg<Buf<D>>().template Arg<Buf<D>>().template Arg<Buf<D>>()
#define RETS3 .template Ret<Buf<D>>().template Ret<Buf<D>>().template Ret<Buf<D>>()
#define EPS .template Attr<double>("norm_eps")

template <ffi::DataType D>
auto BindWriteForward() {  // M u0 ww0 | wr0 xi -> u ww M'
  return ffi::Ffi::Bind().template Ctx<ffi::ThreadPool>() ARGS3 .template Arg<Buf<D>>()
      .template Arg<Buf<D>>() RETS3 EPS .template Attr<double>("usage_eps");
}

template <ffi::DataType D>
auto BindWriteBackward() {  // M u0 ww0 | wr0 xi gu | gww gM' -> gM gu0 gww0 | gwr0 gxi
  return ffi::Ffi::Bind().template Ctx<ffi::ThreadPool>() ARGS3 ARGS3 .template Arg<Buf<D>>()
      .template Arg<Buf<D>>() RETS3 .template Ret<Buf<D>>().template Ret<Buf<D>>() EPS
      .template Attr<double>("usage_eps");
}

template <ffi::DataType D>
auto BindReadForward() {  // M' f b | xi -> wr rv
  return ffi::Ffi::Bind().template Ctx<ffi::ThreadPool>() ARGS3 .template Arg<Buf<D>>()
      .template Ret<Buf<D>>().template Ret<Buf<D>>() EPS;
}

template <ffi::DataType D>
auto BindReadBackward() {  // M' f b | xi gwr grv -> gM' gf gb | gxi
  return ffi::Ffi::Bind().template Ctx<ffi::ThreadPool>() ARGS3 ARGS3 RETS3
      .template Ret<Buf<D>>() EPS;
}

#undef ARGS3
#undef RETS3
#undef EPS

}  // namespace

#define DNCJAX_ACCESS_HANDLERS(T)                                                        \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxAccessWriteForward##T, WriteForward<ffi::T>,       \
                                BindWriteForward<ffi::T>());                               \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxAccessWriteBackward##T, WriteBackward<ffi::T>,     \
                                BindWriteBackward<ffi::T>());                              \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxAccessReadForward##T, ReadForward<ffi::T>,         \
                                BindReadForward<ffi::T>());                                \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxAccessReadBackward##T, ReadBackward<ffi::T>,       \
                                BindReadBackward<ffi::T>());

DNCJAX_ACCESS_HANDLERS(F32)
DNCJAX_ACCESS_HANDLERS(F64)
