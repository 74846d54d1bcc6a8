// The pinned-memory pool's policy (core/pinned_memory.h), run over plain host memory with
// fences the test completes by hand: the same class holds the page-locked blocks of a CUDA
// run, but its rules — size classes, reuse only after every copy that read a block has run,
// statistics, emptying the cache (waiting for copies in flight), the retry when the system
// refuses — do not depend on where the bytes come from, so they are tested on every machine.
// The tensor-level tests at the end hold on machines with and without a GPU.
#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/cuda_memory.h"
#include "core/error.h"
#include "core/pinned_memory.h"
#include "core/mmgrad.h"

using namespace mmg;

namespace {

// A fence that passes when the test says so (a CUDA event passes when the copy has run).
struct FakeFence {
  int device = 0;
  bool done = false;
  int records = 0;  // how often it was recorded
};

// Host memory with a capacity, and fences the test controls.
struct FakeHost {
  explicit FakeHost(size_t capacity_bytes) : capacity(capacity_bytes) {}
  size_t capacity = 0;
  size_t in_use = 0;
  int mallocs = 0, frees = 0, waits = 0, fences_made = 0, fences_destroyed = 0;
  std::map<void*, size_t> live;
  std::vector<FakeFence*> fences;  // every fence made, in order

  PinnedPool::Backend backend() {
    PinnedPool::Backend b;
    b.malloc = [this](size_t n) -> void* {
      if (in_use + n > capacity) return nullptr;
      void* p = std::malloc(n);
      in_use += n;
      ++mallocs;
      live[p] = n;
      return p;
    };
    b.free = [this](void* p) {
      REQUIRE(live.count(p) == 1);  // only blocks it handed out, each once
      in_use -= live[p];
      live.erase(p);
      ++frees;
      std::free(p);
    };
    b.record = [this](int device, void* fence) -> void* {
      auto* f = static_cast<FakeFence*>(fence);
      if (f == nullptr) {
        f = new FakeFence{device};
        fences.push_back(f);
        ++fences_made;
      }
      REQUIRE(f->device == device);  // a fence is re-recorded only on its own device
      f->done = false;               // a new mark: passes once the newly queued work has run
      ++f->records;
      return f;
    };
    b.done = [](void* fence) { return static_cast<FakeFence*>(fence)->done; };
    b.wait = [this](void* fence) {
      static_cast<FakeFence*>(fence)->done = true;  // what waiting on the device achieves
      ++waits;
    };
    b.destroy = [this](void* fence) {
      delete static_cast<FakeFence*>(fence);
      ++fences_destroyed;
    };
    return b;
  }
  // Fences are deleted by the pool; the test keeps its pointers only while the blocks live.
};

}  // namespace

TEST_CASE("pinned pool: blocks come in the device allocator's size classes and are reused") {
  FakeHost host(size_t{1} << 30);
  PinnedPool pool(host.backend());
  size_t cap = 0;
  void* a = pool.allocate(1, &cap);
  REQUIRE(a != nullptr);
  CHECK(cap == device_size_class(1));
  CHECK(cap == 512);
  void* b = pool.allocate(3'000'000, &cap);
  CHECK(cap == device_size_class(3'000'000));
  CHECK(host.mallocs == 2);
  pool.deallocate(a);
  size_t cap2 = 0;
  void* c = pool.allocate(300, &cap2);  // same class as 1 byte: the idle block, not a new one
  CHECK(c == a);
  CHECK(cap2 == 512);
  CHECK(host.mallocs == 2);
  const PinnedMemoryStats s = pool.stats();
  CHECK(s.hits == 1);
  CHECK(s.misses == 2);
  CHECK(s.live_blocks == 2);
  pool.deallocate(b);
  pool.deallocate(c);
}

TEST_CASE("pinned pool: a block read by a queued copy is handed out again only after the copy has run") {
  FakeHost host(size_t{1} << 30);
  PinnedPool pool(host.backend());
  size_t cap = 0;
  void* a = pool.allocate(4096, &cap);
  pool.record_use(a, 0);  // a copy from a is queued on device 0
  REQUIRE(host.fences.size() == 1);
  FakeFence* fence = host.fences[0];
  pool.deallocate(a);  // its tensor is gone, the copy not yet run
  CHECK(pool.stats().busy_blocks == 1);

  void* b = pool.allocate(4096, &cap);  // same class: a is busy, so a new block
  CHECK(b != a);
  CHECK(pool.stats().misses == 2);

  fence->done = true;  // the copy has run
  CHECK(pool.stats().busy_blocks == 0);
  void* c = pool.allocate(4096, &cap);
  CHECK(c == a);
  CHECK(pool.stats().hits == 1);

  // Used again: the same fence is recorded again, not a new one.
  pool.record_use(c, 0);
  CHECK(host.fences_made == 1);
  CHECK(fence->records == 2);
  CHECK_FALSE(fence->done);
  pool.deallocate(c);
  pool.deallocate(b);
  void* d = pool.allocate(4096, &cap);
  CHECK(d == b);  // b had no copy; a's second copy is still queued
  pool.deallocate(d);
}

TEST_CASE("pinned pool: a block copied to two devices waits for both copies") {
  FakeHost host(size_t{1} << 30);
  PinnedPool pool(host.backend());
  size_t cap = 0;
  void* a = pool.allocate(100, &cap);
  pool.record_use(a, 0);
  pool.record_use(a, 1);
  REQUIRE(host.fences.size() == 2);
  CHECK(host.fences[0]->device == 0);
  CHECK(host.fences[1]->device == 1);
  pool.deallocate(a);
  host.fences[0]->done = true;
  void* b = pool.allocate(100, &cap);
  CHECK(b != a);  // device 1's copy still reads a
  host.fences[1]->done = true;
  void* c = pool.allocate(100, &cap);
  CHECK(c == a);
  CHECK(pool.stats().fences == 2);
  pool.deallocate(b);
  pool.deallocate(c);
}

TEST_CASE("pinned pool: allocated, reserved, cached and peaks follow the blocks, reset_peak") {
  FakeHost host(size_t{1} << 30);
  PinnedPool pool(host.backend());
  size_t c1 = 0, c2 = 0;
  void* a = pool.allocate(1000, &c1);
  void* b = pool.allocate(2 << 20, &c2);
  PinnedMemoryStats s = pool.stats();
  CHECK(s.allocated == c1 + c2);
  CHECK(s.reserved == c1 + c2);
  CHECK(s.cached == 0);
  CHECK(s.live_blocks == 2);
  CHECK(s.peak_allocated == c1 + c2);
  pool.deallocate(b);
  s = pool.stats();
  CHECK(s.allocated == c1);
  CHECK(s.cached == c2);
  CHECK(s.cached_blocks == 1);
  CHECK(s.reserved == c1 + c2);
  CHECK(s.peak_allocated == c1 + c2);
  pool.reset_peak();
  s = pool.stats();
  CHECK(s.peak_allocated == c1);
  CHECK(s.peak_reserved == c1 + c2);
  pool.deallocate(a);
  CHECK(pool.stats().allocated == 0);
  CHECK(pool.stats().cached == c1 + c2);
}

TEST_CASE("pinned pool: empty_cache waits for copies in flight, frees the idle blocks and keeps the live ones") {
  FakeHost host(size_t{1} << 30);
  PinnedPool pool(host.backend());
  size_t cap = 0;
  void* live = pool.allocate(700, &cap);
  void* idle = pool.allocate(700, &cap);
  void* busy = pool.allocate(9000, &cap);
  pool.record_use(busy, 0);
  pool.deallocate(idle);
  pool.deallocate(busy);
  CHECK(pool.stats().busy_blocks == 1);
  pool.empty_cache();
  CHECK(host.waits == 1);  // for busy's copy, before freeing it
  CHECK(host.frees == 2);
  CHECK(host.fences_destroyed == 1);
  CHECK(host.live.count(live) == 1);
  const PinnedMemoryStats s = pool.stats();
  CHECK(s.cached == 0);
  CHECK(s.cached_blocks == 0);
  CHECK(s.busy_blocks == 0);
  CHECK(s.reserved == s.allocated);
  CHECK(pool.owns(live));
  CHECK_FALSE(pool.owns(idle));
  pool.deallocate(live);
}

TEST_CASE("pinned pool: idle bytes beyond the cache limit go back to the system once their copies have run") {
  FakeHost host(size_t{1} << 30);
  PinnedPool pool(host.backend(), /*cache_limit=*/1024);
  size_t cap = 0;
  std::vector<void*> blocks;
  for (int i = 0; i < 4; ++i) blocks.push_back(pool.allocate(10, &cap));  // four 512-byte blocks
  pool.record_use(blocks[0], 0);
  pool.record_use(blocks[1], 0);
  for (void* p : blocks) pool.deallocate(p);
  // 2048 idle bytes, limit 1024: the two blocks without a copy go; the busy ones stay.
  CHECK(host.frees == 2);
  CHECK(pool.stats().cached == 1024);
  CHECK(pool.owns(blocks[0]));
  CHECK(pool.owns(blocks[1]));
  host.fences[0]->done = true;
  host.fences[1]->done = true;
  void* a = pool.allocate(10, &cap);  // a hit: the busy blocks are ready now
  CHECK(host.mallocs == 4);
  pool.deallocate(a);
  CHECK(pool.stats().cached == 1024);
}

TEST_CASE("pinned pool: when the system refuses, the ready idle blocks are returned and the request retried") {
  FakeHost host(2048);  // room for four 512-byte blocks
  PinnedPool pool(host.backend());
  size_t cap = 0;
  std::vector<void*> blocks;
  for (int i = 0; i < 4; ++i) blocks.push_back(pool.allocate(10, &cap));
  pool.record_use(blocks[0], 0);  // busy: must not be freed
  for (void* p : blocks) pool.deallocate(p);
  // 1024 bytes do not fit beside the four idle blocks; three of them are ready and go back.
  void* big = pool.allocate(1024, &cap);
  REQUIRE(big != nullptr);
  CHECK(host.frees == 3);
  CHECK(pool.owns(blocks[0]));
  CHECK(pool.stats().cached_blocks == 1);
  // Nothing more fits, and the one idle block is busy: a null answer, not a wait.
  CHECK(pool.allocate(1024, &cap) == nullptr);
  CHECK(pool.stats().reserved == 512 + 1024);
  pool.deallocate(big);
}

TEST_CASE("pinned pool: giving back or recording on a pointer that is not a live block is an Error") {
  FakeHost host(size_t{1} << 20);
  PinnedPool pool(host.backend());
  int x = 0;
  CHECK_THROWS_WITH_AS(pool.deallocate(&x), doctest::Contains("is not a live block of the pool"), Error);
  size_t cap = 0;
  void* a = pool.allocate(10, &cap);
  pool.deallocate(a);
  CHECK_THROWS_WITH_AS(pool.deallocate(a), doctest::Contains("is not a live block"), Error);
  CHECK_THROWS_WITH_AS(pool.record_use(a, 0), doctest::Contains("is not a live block"), Error);
}

// ---- tensors: the same calls on every machine; pinned only where a GPU is usable ----

TEST_CASE("pin_memory: values, shape and dtype kept, pinned where a GPU is usable, the tensor itself elsewhere") {
  Tensor x = arange(0, 24, 1, {.dtype = DType::f32}).reshape({2, 3, 4});
  Tensor p = x.pin_memory();
  CHECK(p.device().is_cpu());
  CHECK(p.shape() == x.shape());
  CHECK(p.dtype() == x.dtype());
  CHECK(p.to_vector<float>() == x.to_vector<float>());
  if (pinned_memory_available()) {
    CHECK(p.is_pinned());
    CHECK_FALSE(x.is_pinned());
    CHECK(p.pin_memory().is_same(p));  // already pinned
  } else {
    CHECK_FALSE(p.is_pinned());
    CHECK(p.is_same(x));  // nothing to gain without a GPU
  }
  // A strided view is pinned as a contiguous copy of its values.
  Tensor t = x.transpose(0, 2).pin_memory();
  CHECK(t.to_vector<float>() == x.transpose(0, 2).to_vector<float>());
}

TEST_CASE("pinned tensors: empty(pinned) on the CPU, an Error for a device tensor, gradients pass through pin_memory") {
  Tensor e = empty({5, 7}, {.dtype = DType::i64, .pinned = true});
  CHECK(e.is_pinned() == pinned_memory_available());
  CHECK(e.numel() == 35);
  CHECK_THROWS_WITH_AS(empty({3}, {.device = Device::cuda(0), .pinned = true}),
                       doctest::Contains("pinned memory is host memory"), Error);
  Tensor leaf = full({4}, 2.0, {.dtype = DType::f64}).requires_grad_(true);
  Tensor y = (leaf.pin_memory() * 3.0).sum();
  y.backward();
  REQUIRE(leaf.grad().defined());
  CHECK(leaf.grad().to_vector<double>() == std::vector<double>{3, 3, 3, 3});
}
