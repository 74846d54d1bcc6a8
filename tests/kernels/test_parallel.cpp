// parallel_for and its thread pool: every index exactly once, no more pieces than grain allows,
// nesting, exceptions, changing the thread count, two callers at once, many tiny jobs, and a
// worker that is descheduled for a long time.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <numeric>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels/cpu/parallel.h"

using namespace mmg::cpu;

namespace {

// Restores the thread count when a test ends.
struct ThreadCount {
  int saved = num_threads();
  explicit ThreadCount(int n) { set_num_threads(n); }
  ~ThreadCount() { set_num_threads(saved); }
};

}  // namespace

TEST_CASE("parallel_for covers 0 to n-1 exactly once, in at most ceil(n/grain) and 4 per thread pieces") {
  for (int threads : {1, 2, 3, 8}) {
    ThreadCount tc(threads);
    for (int64_t n : {1, 2, 7, 64, 1000, 100003}) {
      for (int64_t grain : {1, 16, 5000}) {
        CAPTURE(threads);
        CAPTURE(n);
        CAPTURE(grain);
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::mutex m;
        std::vector<std::pair<int64_t, int64_t>> pieces;
        parallel_for(n, grain, [&](int64_t b, int64_t e) {
          {
            std::lock_guard<std::mutex> lock(m);
            pieces.emplace_back(b, e);
          }
          for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
        });
        int64_t wrong = 0;
        for (auto& h : hits) wrong += h.load() != 1;
        CHECK(wrong == 0);
        std::sort(pieces.begin(), pieces.end());
        CHECK(pieces.front().first == 0);
        CHECK(pieces.back().second == n);
        for (size_t k = 0; k + 1 < pieces.size(); ++k) CHECK(pieces[k].second == pieces[k + 1].first);
        CHECK(static_cast<int64_t>(pieces.size()) <= 4 * threads);
        CHECK(static_cast<int64_t>(pieces.size()) <= (n + grain - 1) / grain);
        if (threads == 1 || n <= grain) CHECK(pieces.size() == 1);
      }
    }
  }
}

TEST_CASE("parallel_for: more than one thread does take part, and a nested call runs inline") {
  ThreadCount tc(4);
  std::mutex m;
  std::set<std::thread::id> ids;
  std::atomic<int> nested_pieces{0}, inner_outside{0};
  for (int round = 0; round < 50 && ids.size() < 2; ++round)
    parallel_for(64, 1, [&](int64_t, int64_t) {
      CHECK(in_parallel());
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      {
        std::lock_guard<std::mutex> lock(m);
        ids.insert(std::this_thread::get_id());
      }
      const auto me = std::this_thread::get_id();
      parallel_for(1000, 1, [&](int64_t b, int64_t e) {
        nested_pieces.fetch_add(1);
        if (std::this_thread::get_id() != me || b != 0 || e != 1000) inner_outside.fetch_add(1);
      });
    });
  CHECK(ids.size() >= 2);
  CHECK(nested_pieces.load() > 0);
  CHECK(inner_outside.load() == 0);  // one piece, on the thread that asked
  CHECK_FALSE(in_parallel());
}

TEST_CASE("parallel_for rethrows a piece's exception after every piece has run, and stays usable") {
  ThreadCount tc(3);
  std::atomic<int64_t> ran{0};
  CHECK_THROWS_WITH_AS(parallel_for(12, 1,
                                    [&](int64_t b, int64_t e) {
                                      ran.fetch_add(e - b);
                                      if (b <= 5 && 5 < e) throw std::runtime_error("piece with 5 failed");
                                    }),
                       "piece with 5 failed", std::runtime_error);
  CHECK(ran.load() == 12);  // the other pieces still ran: no half-written output is left unnoticed
  CHECK_FALSE(in_parallel());
  int64_t total = 0;
  std::mutex m;
  parallel_for(100, 1, [&](int64_t b, int64_t e) {
    std::lock_guard<std::mutex> lock(m);
    for (int64_t i = b; i < e; ++i) total += i;
  });
  CHECK(total == 4950);
}

TEST_CASE("parallel_for: thousands of tiny jobs, thread counts changing between them, two callers at once") {
  for (int threads : {2, 5, 2, 1, 3}) {
    ThreadCount tc(threads);
    int64_t sum = 0;
    for (int job = 0; job < 2000; ++job) {
      std::atomic<int64_t> s{0};
      parallel_for(8, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) s.fetch_add(i);
      });
      sum += s.load();
    }
    CHECK(sum == 2000 * 28);
  }
  ThreadCount tc(3);
  auto caller = [](int64_t* out) {
    for (int job = 0; job < 500; ++job) {
      std::atomic<int64_t> s{0};
      parallel_for(1000, 10, [&](int64_t b, int64_t e) {
        int64_t local = 0;
        for (int64_t i = b; i < e; ++i) local += i;
        s.fetch_add(local);
      });
      *out += s.load();
    }
  };
  int64_t a = 0, b = 0;
  std::thread other(caller, &b);
  caller(&a);
  other.join();
  CHECK(a == 500 * 499500);
  CHECK(b == 500 * 499500);
}

TEST_CASE("parallel_for: while one piece is slow the other thread does the rest, and the slow one is waited for") {
  ThreadCount tc(2);
  std::atomic<int> after_sleep{0};
  std::atomic<bool> slept{false};
  const auto start = std::chrono::steady_clock::now();
  parallel_for(8, 1, [&](int64_t, int64_t) {
    if (!slept.exchange(true)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      return;
    }
    after_sleep.fetch_add(1);
  });
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  CHECK(after_sleep.load() == 7);
  CHECK(ms >= 50.0);  // the sleeping piece was waited for: it had been taken
}
