// The thread pool behind parallel_for (kernels/cpu/parallel.h).
//
//   caller                                   worker (num_threads − 1 of them)
//   job = {body, pieces, next = 0, done = 0}   wait for a new job (spin a little, then sleep)
//   publish it, wake the workers               take pieces: c = next++ while c < pieces
//   take pieces: c = next++ while c < pieces   run piece c, done++
//   wait until done == pieces                  back to waiting
//
// The job lives in a shared_ptr: a worker that wakes late still holds it, finds next >= pieces
// and never calls the body, which lives on the caller's stack and is gone by then.
#include "kernels/cpu/parallel.h"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define MMG_CPU_RELAX() _mm_pause()
#else
#define MMG_CPU_RELAX() std::this_thread::yield()
#endif

namespace mmg::cpu {

static int default_threads() {
  if (const char* env = std::getenv("MMG_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

static int g_threads = default_threads();
static thread_local bool t_in_parallel = false;

int num_threads() { return g_threads; }
void set_num_threads(int n) { g_threads = n > 0 ? n : default_threads(); }
bool in_parallel() { return t_in_parallel; }

namespace {

struct Job {
  detail::PieceFn fn = nullptr;
  void* body = nullptr;
  int64_t n = 0, pieces = 0, step = 0;
  std::atomic<int64_t> next{0}, done{0};
  std::mutex error_mutex;
  std::exception_ptr error;  // the first exception a piece threw

  // Takes pieces until none is left.
  void work() {
    for (int64_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < pieces;) {
      const int64_t b = c * step, e = std::min(n, b + step);
      if (b < e) {
        try {
          fn(body, b, e);
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_mutex);
          if (!error) error = std::current_exception();
        }
      }
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

// Spin this many rounds for a new job (or for the last piece) before sleeping (or yielding):
// a training step runs its regions back to back, tens of microseconds apart, and waking a
// sleeping thread costs about as much as a small region.
constexpr int kSpinRounds = 4000;

class Pool {
 public:
  ~Pool() { resize(0); }

  void run(int64_t n, int64_t pieces, detail::PieceFn fn, void* body) {
    // One job at a time: a second thread calling in (the data loader's) runs its work inline.
    std::unique_lock<std::mutex> submit(submit_mutex_, std::try_to_lock);
    if (!submit.owns_lock()) {
      run_inline(n, fn, body);
      return;
    }
    const int wanted = std::max(0, num_threads() - 1);
    if (static_cast<int>(workers_.size()) != wanted) resize(wanted);

    auto job = std::make_shared<Job>();
    job->fn = fn;
    job->body = body;
    job->n = n;
    job->pieces = pieces;
    job->step = (n + pieces - 1) / pieces;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = job;
      generation_.store(generation_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    }
    wake_.notify_all();

    t_in_parallel = true;
    job->work();
    t_in_parallel = false;
    for (int spin = 0; job->done.load(std::memory_order_acquire) < pieces; ++spin) {
      if (spin < kSpinRounds) MMG_CPU_RELAX();
      else std::this_thread::yield();  // a worker holds the last pieces: let it run
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_.reset();
    }
    if (job->error) std::rethrow_exception(job->error);
  }

 private:
  static void run_inline(int64_t n, detail::PieceFn fn, void* body) {
    t_in_parallel = true;
    try {
      fn(body, 0, n);
    } catch (...) {
      t_in_parallel = false;
      throw;
    }
    t_in_parallel = false;
  }

  void resize(int count) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : workers_) t.join();
    workers_.clear();
    stop_ = false;
    for (int i = 0; i < count; ++i) workers_.emplace_back([this] { worker(); });
  }

  void worker() {
    t_in_parallel = true;
    uint64_t seen = generation_.load(std::memory_order_acquire);
    for (;;) {
      for (int spin = 0; spin < kSpinRounds && generation_.load(std::memory_order_acquire) == seen; ++spin)
        MMG_CPU_RELAX();
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_.load(std::memory_order_relaxed) != seen; });
        if (stop_) return;
        seen = generation_.load(std::memory_order_relaxed);
        job = job_;  // null when the caller has already finished it
      }
      if (job) job->work();
    }
  }

  std::mutex submit_mutex_;  // held by the thread whose job runs
  std::mutex mutex_;         // guards job_ and stop_; generation_ changes under it
  std::condition_variable wake_;
  std::shared_ptr<Job> job_;
  std::atomic<uint64_t> generation_{0};
  bool stop_ = false;
  std::vector<std::thread> workers_;
};

Pool& pool() {
  static Pool p;
  return p;
}

}  // namespace

namespace detail {
void run_pieces(int64_t n, int64_t pieces, PieceFn fn, void* body) { pool().run(n, pieces, fn, body); }
}  // namespace detail

}  // namespace mmg::cpu
