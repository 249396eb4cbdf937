// Splitting a kernel's lanes (the examples of a batch) over XLA's CPU thread pool, shared
// by link_kernel.cc and sparse_link_kernel.cc.

#ifndef DNCJAX_NATIVE_LANES_H_
#define DNCJAX_NATIVE_LANES_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

#include "xla/ffi/api/ffi.h"

namespace dncjax {

// Below this many entries per call the lanes run on the calling thread.
constexpr int64_t kParallelEntries = 1 << 12;

// Runs body(first, last) over [0, lanes) in as many chunks as the pool has threads. The
// calling thread and the tasks it schedules take chunks from one counter until none is
// left, then the caller waits for the chunks others took: a kernel that XLA runs on a
// pool thread while another kernel holds the other threads never waits for a task that
// cannot start (a task that starts late finds no chunk and returns).
template <typename Body>
void ForLanes(xla::ffi::ThreadPool& pool, int64_t lanes, int64_t entries, Body body) {
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  const int64_t chunks = entries < kParallelEntries ? 1 : std::min(lanes, threads);
  if (chunks <= 1) {
    body(0, lanes);
    return;
  }
  struct Shared {
    std::atomic<int64_t> next{0};
    std::mutex mutex;
    std::condition_variable done;
    int64_t finished = 0;
  };
  auto shared = std::make_shared<Shared>();
  Body* run_body = &body;  // used only for chunks taken before the caller returns
  auto take_chunks = [shared, run_body, lanes, chunks] {
    for (int64_t c; (c = shared->next.fetch_add(1)) < chunks;) {
      (*run_body)(lanes * c / chunks, lanes * (c + 1) / chunks);
      std::lock_guard<std::mutex> lock(shared->mutex);
      if (++shared->finished == chunks) shared->done.notify_one();
    }
  };
  for (int64_t c = 1; c < chunks; ++c) pool.Schedule(decltype(take_chunks)(take_chunks));
  take_chunks();
  std::unique_lock<std::mutex> lock(shared->mutex);
  shared->done.wait(lock, [&] { return shared->finished == chunks; });
}

}  // namespace dncjax

#endif  // DNCJAX_NATIVE_LANES_H_
