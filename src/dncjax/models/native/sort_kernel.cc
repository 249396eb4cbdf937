// A stable ascending argsort along the last axis on the CPU, for the allocation's order of
// the slots by usage (addressing.allocation_weights, the sparse models' least used slot):
// an XLA FFI handler for dncjax.models.native.
//
// Per lane (each row of keys [..., N]), an LSD radix sort of the keys' bits, 8 bits per
// pass, each pass stable, so equal keys keep their index order; a pass whose digit is the
// same for every key is skipped. A float's bits become an unsigned key in the same order
// (negative: all bits flipped; otherwise the sign bit set): -0.0 sorts before +0.0 and
// NaNs with the sign bit clear after +inf. XLA's sort of the same keys is a comparison
// sort several times slower at N = 256 to 4,096.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "lanes.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

template <typename T>
using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;

template <typename T>
Bits<T> OrderedBits(T x) {
  Bits<T> u;
  std::memcpy(&u, &x, sizeof u);
  constexpr Bits<T> kSign = Bits<T>(1) << (8 * sizeof(T) - 1);
  return (u & kSign) ? ~u : (u | kSign);
}

// order[0, n) = the indices of keys[0, n) in stable ascending order of the keys.
template <typename T>
void ArgsortLane(const T* keys, int64_t n, int32_t* order, std::vector<Bits<T>>& a,
                 std::vector<Bits<T>>& b, std::vector<int32_t>& ia, std::vector<int32_t>& ib) {
  a.resize(n), b.resize(n), ia.resize(n), ib.resize(n);
  for (int64_t i = 0; i < n; ++i) a[i] = OrderedBits(keys[i]), ia[i] = int32_t(i);
  for (int shift = 0; shift < int(8 * sizeof(T)); shift += 8) {
    int64_t count[257] = {};
    for (int64_t i = 0; i < n; ++i) ++count[((a[i] >> shift) & 255) + 1];
    bool one_digit = false;
    for (int d = 1; d <= 256; ++d) one_digit |= count[d] == n;
    if (one_digit) continue;
    for (int d = 1; d <= 256; ++d) count[d] += count[d - 1];
    for (int64_t i = 0; i < n; ++i) {
      const int64_t at = count[(a[i] >> shift) & 255]++;
      b[at] = a[i], ib[at] = ia[i];
    }
    std::swap(a, b), std::swap(ia, ib);
  }
  std::copy(ia.begin(), ia.begin() + n, order);
}

template <ffi::DataType D>
ffi::Error Argsort(ffi::ThreadPool pool, ffi::Buffer<D> keys,
                   ffi::ResultBuffer<ffi::S32> order) {
  auto dims = keys.dimensions();
  if (dims.size() < 1) return ffi::Error::InvalidArgument("argsort: keys must be [..., N]");
  const int64_t n = dims.back();
  const int64_t lanes = n == 0 ? 0 : static_cast<int64_t>(keys.element_count()) / n;
  using T = ffi::NativeType<D>;
  dncjax::ForLanes(pool, lanes, lanes * n * 16, [&](int64_t first, int64_t last) {
    std::vector<Bits<T>> a, b;
    std::vector<int32_t> ia, ib;
    for (int64_t k = first; k < last; ++k)
      ArgsortLane(keys.typed_data() + k * n, n, order->typed_data() + k * n, a, b, ia, ib);
  });
  return ffi::Error::Success();
}

template <ffi::DataType D>
auto BindArgsort() {
  return ffi::Ffi::Bind().template Ctx<ffi::ThreadPool>().template Arg<ffi::Buffer<D>>()
      .template Ret<ffi::Buffer<ffi::S32>>();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxArgsortF32, Argsort<ffi::F32>, BindArgsort<ffi::F32>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(DncjaxArgsortF64, Argsort<ffi::F64>, BindArgsort<ffi::F64>());
