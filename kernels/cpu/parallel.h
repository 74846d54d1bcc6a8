// parallel_for: split [0, n) into chunks and run them on all threads (OpenMP).
//
// The one place the CPU kernels get their threads from. The thread count comes from
// MMG_NUM_THREADS (default: every core) and can be changed with set_num_threads().
// Work smaller than `grain` items runs inline on the calling thread: starting threads
// costs microseconds, so tiny tensors are faster single-threaded.
#pragma once
#include <algorithm>
#include <cstdint>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace mmg::cpu {

int num_threads();             // threads the kernels use now
void set_num_threads(int n);   // n <= 0 means "all cores"

// fn(begin, end) is called on disjoint chunks covering [0, n).
template <class F>
void parallel_for(int64_t n, int64_t grain, F&& fn) {
  if (n <= 0) return;
#ifdef _OPENMP
  int threads = num_threads();
  if (threads > 1 && n > grain && !omp_in_parallel()) {
    int64_t chunks = std::min<int64_t>(threads, (n + grain - 1) / std::max<int64_t>(grain, 1));
    int64_t step = (n + chunks - 1) / chunks;
#pragma omp parallel for num_threads(static_cast<int>(chunks)) schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
      int64_t b = c * step, e = std::min(n, b + step);
      if (b < e) fn(b, e);
    }
    return;
  }
#endif
  fn(int64_t{0}, n);
}

}  // namespace mmg::cpu
