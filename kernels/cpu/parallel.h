// parallel_for: split [0, n) into pieces and run them on a pool of threads.
//
// The one place the CPU kernels get their threads from. The thread count comes from
// MMG_NUM_THREADS (default: every core) and can be changed with set_num_threads().
// Work smaller than `grain` items runs inline on the calling thread: waking threads costs
// microseconds, so tiny tensors are faster single-threaded. A parallel_for inside another
// runs inline too.
//
// Why a pool of our own and not `#pragma omp parallel for`: an OpenMP region ends at a barrier
// that every thread of its team must reach. When another program holds a core (a compiler, a
// browser), one of our threads is often descheduled for a whole time slice, milliseconds, and
// a training step runs about a thousand regions: on 2 busy cores a step took 5–20× longer.
// Here the range is cut into a few pieces per thread, the caller and the workers take pieces
// from a shared counter, and the caller returns as soon as every piece is done. A worker that
// has not woken up yet finds nothing left to do; only a piece already taken is waited for.
//
// Which thread runs a piece varies, the pieces do not: they depend only on n, grain and the
// thread count, so results are the same from run to run.
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace mmg::cpu {

int num_threads();            // threads the kernels use now (the caller included)
void set_num_threads(int n);  // n <= 0 means "all cores"; not while a parallel_for runs
bool in_parallel();           // whether this thread is running a piece of a parallel_for

namespace detail {
using PieceFn = void (*)(void* body, int64_t begin, int64_t end);
// Runs body over [0,n) in `pieces` pieces of ceil(n/pieces) on the pool; rethrows the first
// exception a piece threw, after every piece has finished.
void run_pieces(int64_t n, int64_t pieces, PieceFn fn, void* body);
}  // namespace detail

// fn(begin, end) is called on disjoint pieces covering [0, n): at most ceil(n/grain) pieces and
// four per thread, of equal size ceil(n/pieces) but the last.
template <class F>
void parallel_for(int64_t n, int64_t grain, F&& fn) {
  if (n <= 0) return;
  const int threads = num_threads();
  if (threads <= 1 || n <= grain || in_parallel()) {
    fn(int64_t{0}, n);
    return;
  }
  // Four pieces per thread let a running thread take over from a descheduled one.
  const int64_t most = (n + grain - 1) / std::max<int64_t>(grain, 1);
  const int64_t pieces = std::min<int64_t>(most, 4 * static_cast<int64_t>(threads));
  using Body = std::remove_reference_t<F>;
  detail::run_pieces(
      n, pieces, [](void* body, int64_t b, int64_t e) { (*static_cast<Body*>(body))(b, e); },
      const_cast<void*>(static_cast<const void*>(&fn)));
}

}  // namespace mmg::cpu
