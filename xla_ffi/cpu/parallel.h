// parallel_for over XLA's intra-op CPU thread pool (inline when there is none).
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

#include "common.h"

namespace jaxint8::cpu {

// Runs fn(begin, end) over [0, n) in chunks of at least `min_chunk`. Chunks are claimed
// from a shared counter by the calling thread and by helper tasks on the pool. The caller
// keeps claiming until none are left, so it never waits on a task that has not started:
// independent custom calls that XLA runs concurrently on the same pool cannot deadlock.
template <typename Fn>
void parallel_for(ffi::ThreadPool& pool, int64_t n, int64_t min_chunk, Fn&& fn) {
  if (n <= 0) return;
  int64_t workers = std::max<int64_t>(pool.num_threads(), 0) + 1;
  int64_t chunks = std::min<int64_t>(workers, (n + min_chunk - 1) / min_chunk);
  if (chunks <= 1) {
    fn(int64_t{0}, n);
    return;
  }
  struct State {
    std::atomic<int64_t> next{0}, done{0};
    std::mutex mu;
    std::condition_variable cv;
  };
  auto state = std::make_shared<State>();
  int64_t step = (n + chunks - 1) / chunks;
  auto* body = &fn;  // only dereferenced for a claimed chunk, i.e. before the caller returns
  auto work = [state, body, chunks, step, n]() {
    for (;;) {
      int64_t c = state->next.fetch_add(1);
      if (c >= chunks) return;
      int64_t begin = c * step, end = std::min(n, begin + step);
      if (begin < end) (*body)(begin, end);
      if (state->done.fetch_add(1) + 1 == chunks) {
        std::lock_guard<std::mutex> lock(state->mu);
        state->cv.notify_all();
      }
    }
  };
  for (int64_t c = 1; c < chunks; ++c) pool.Schedule(decltype(work)(work));
  work();
  std::unique_lock<std::mutex> lock(state->mu);
  state->cv.wait(lock, [&] { return state->done.load() == chunks; });
}

}  // namespace jaxint8::cpu
