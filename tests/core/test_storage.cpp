// The CPU block cache behind Storage (core/storage.cpp): freed blocks are reused by the next
// allocation of their size class, the idle bytes stay under the limit, a limit of 0 turns the
// cache off, and allocating and freeing from many threads at once hands out each block to
// one owner only.
#include <doctest/doctest.h>

#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "core/storage.h"

using mmg::Device;
using mmg::Storage;

namespace {

// Sets the cache limit for one test and restores the previous limit afterwards.
struct LimitGuard {
  size_t previous = mmg::cpu_cache_limit();
  explicit LimitGuard(size_t bytes) { mmg::set_cpu_cache_limit(bytes); }
  ~LimitGuard() { mmg::set_cpu_cache_limit(previous); }
};

}  // namespace

TEST_CASE("cpu cache: a freed block is handed to the next allocation of its size class") {
  LimitGuard limit(size_t{64} << 20);
  mmg::cpu_cache_release();
  void* first = nullptr;
  {
    Storage s(1000003, Device::cpu());
    first = s.data();
    CHECK(reinterpret_cast<uintptr_t>(first) % 64 == 0);
  }
  const auto idle = mmg::cpu_cache_stats();
  CHECK(idle.cached_blocks == 1);
  CHECK(idle.cached_bytes >= 1000003);
  CHECK(idle.cached_bytes <= 1000003 + 1000003 / 8 + 64);  // at most 12.5 % rounding
  {
    Storage again(1000000, Device::cpu());  // a slightly different size in the same class
    CHECK(again.data() == first);
    CHECK(again.nbytes() == 1000000);
    const auto after = mmg::cpu_cache_stats();
    CHECK(after.hits == idle.hits + 1);
    CHECK(after.cached_blocks == 0);
  }
  {
    Storage other(5000, Device::cpu());  // another class: a fresh block
    CHECK(other.data() != first);
  }
  mmg::cpu_cache_release();
  CHECK(mmg::cpu_cache_stats().cached_bytes == 0);
  CHECK(mmg::cpu_cache_stats().cached_blocks == 0);
}

TEST_CASE("cpu cache: idle bytes stay under the limit, and limit 0 turns the cache off") {
  mmg::cpu_cache_release();
  {
    LimitGuard limit(size_t{1} << 20);  // 1 MiB
    {
      std::vector<std::unique_ptr<Storage>> blocks;
      for (int i = 0; i < 5; ++i) blocks.push_back(std::make_unique<Storage>(300000, Device::cpu()));
    }
    const auto s = mmg::cpu_cache_stats();
    CHECK(s.cached_bytes <= size_t{1} << 20);
    CHECK(s.cached_blocks == 3);  // three 300 kB blocks fit, the other two went back
  }
  {
    LimitGuard off(0);
    CHECK(mmg::cpu_cache_stats().cached_bytes == 0);  // lowering the limit released the idle blocks
    const auto before = mmg::cpu_cache_stats();
    { Storage s(4096, Device::cpu()); }
    { Storage s(4096, Device::cpu()); }
    const auto after = mmg::cpu_cache_stats();
    CHECK(after.hits == before.hits);
    CHECK(after.misses == before.misses + 2);
    CHECK(after.cached_blocks == 0);
  }
}

TEST_CASE("cpu cache: many threads allocating and freeing at once never share a block") {
  LimitGuard limit(size_t{256} << 20);
  constexpr int kThreads = 8, kRounds = 300;
  std::vector<int> failures(kThreads, 0);
  std::vector<std::thread> pool;
  for (int t = 0; t < kThreads; ++t) {
    pool.emplace_back([t, &failures] {
      for (int r = 0; r < kRounds; ++r) {
        // A few live blocks of a few sizes, each filled with this thread's mark; if another
        // thread were handed one of them, the mark would change before it is checked.
        std::vector<std::unique_ptr<Storage>> live;
        for (size_t bytes : {size_t{256}, size_t{8192}, size_t{100000}})
          live.push_back(std::make_unique<Storage>(bytes + static_cast<size_t>(r % 3) * 64, Device::cpu()));
        for (auto& s : live) std::memset(s->data(), t + 1, s->nbytes());
        std::this_thread::yield();
        for (auto& s : live) {
          const auto* p = static_cast<const unsigned char*>(s->data());
          for (size_t i = 0; i < s->nbytes(); i += 61)
            if (p[i] != t + 1) ++failures[t];
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  for (int t = 0; t < kThreads; ++t) CHECK(failures[t] == 0);
  const auto s = mmg::cpu_cache_stats();
  CHECK(s.hits > 0);
  CHECK(s.cached_bytes <= size_t{256} << 20);
}
