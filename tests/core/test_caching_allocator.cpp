// The caching allocator's policy (core/caching_allocator.h), run over host memory: the
// same class serves CUDA devices, but its rules — size classes, reuse, statistics, emptying
// the cache, the retry and the out-of-memory error — do not depend on where the bytes are,
// so they are tested here on every machine. The backend below counts what reaches the
// "device" and refuses to go past a capacity, like a GPU with little memory.
#include <doctest/doctest.h>

#include <cstdlib>
#include <map>
#include <set>
#include <string>

#include "core/caching_allocator.h"
#include "core/error.h"

using namespace mmg;

namespace {

struct CountingDevice {
  explicit CountingDevice(size_t capacity_bytes) : capacity(capacity_bytes) {}
  size_t capacity = 0;  // bytes the device can hand out
  size_t in_use = 0;
  int mallocs = 0, frees = 0;
  std::set<void*> live;

  CachingAllocator::Backend backend() {
    CachingAllocator::Backend b;
    b.malloc = [this](size_t n) -> void* {
      if (in_use + n > capacity) return nullptr;
      void* p = std::malloc(n);
      in_use += n;
      ++mallocs;
      live.insert(p);
      sizes[p] = n;
      return p;
    };
    b.free = [this](void* p) {
      REQUIRE(live.count(p) == 1);  // only blocks it handed out, each once
      in_use -= sizes[p];
      live.erase(p);
      ++frees;
      std::free(p);
    };
    b.describe = [this]() { return "the test device has " + std::to_string(capacity - in_use) + " bytes free"; };
    return b;
  }
  std::map<void*, size_t> sizes;
};

}  // namespace

TEST_CASE("device size classes: 512-byte steps up to 1 MiB, then eight per power of two") {
  CHECK(device_size_class(0) == 512);
  CHECK(device_size_class(1) == 512);
  CHECK(device_size_class(512) == 512);
  CHECK(device_size_class(513) == 1024);
  CHECK(device_size_class(size_t{1} << 20) == (size_t{1} << 20));
  // Above 1 MiB: steps of 2^k / 8 within [2^k, 2^(k+1)), never more than 12.5 % over.
  const size_t n = (size_t{1} << 20) + 1;
  CHECK(device_size_class(n) == (size_t{1} << 20) + (size_t{1} << 17));
  for (size_t req : {size_t{3'000'001}, size_t{77'777'777}, size_t{1} << 33}) {
    const size_t c = device_size_class(req);
    CHECK(c >= req);
    CHECK(static_cast<double>(c - req) <= 0.125 * static_cast<double>(req));
  }
  // An absurd request is not rounded past the largest size (no overflow).
  CHECK(device_size_class(~size_t{0} - 5) == ~size_t{0} - 5);
}

TEST_CASE("caching allocator: a freed block is reused by the next request of its class") {
  CountingDevice dev(size_t{64} << 20);
  CachingAllocator alloc("test:0", dev.backend());
  size_t cap = 0;
  void* a = alloc.allocate(1000, &cap);
  CHECK(cap == 1024);
  alloc.deallocate(a, cap);
  size_t cap2 = 0;
  void* b = alloc.allocate(700, &cap2);  // same class (1024)
  CHECK(b == a);
  CHECK(cap2 == 1024);
  CHECK(dev.mallocs == 1);
  void* c = alloc.allocate(5000, &cap);  // another class: a new block
  CHECK(c != a);
  CHECK(dev.mallocs == 2);
  const DeviceMemoryStats s = alloc.stats();
  CHECK(s.hits == 1);
  CHECK(s.misses == 2);
  alloc.deallocate(b, cap2);
  alloc.deallocate(c, cap);
}

TEST_CASE("caching allocator: statistics of allocated, reserved, cached and peak bytes") {
  CountingDevice dev(size_t{64} << 20);
  CachingAllocator alloc("test:0", dev.backend());
  size_t ca = 0, cb = 0;
  void* a = alloc.allocate(512, &ca);
  void* b = alloc.allocate(2048, &cb);
  DeviceMemoryStats s = alloc.stats();
  CHECK(s.allocated == 512 + 2048);
  CHECK(s.reserved == 512 + 2048);
  CHECK(s.cached == 0);
  CHECK(s.live_blocks == 2);
  CHECK(s.peak_allocated == 512 + 2048);
  alloc.deallocate(b, cb);
  s = alloc.stats();
  CHECK(s.allocated == 512);
  CHECK(s.reserved == 512 + 2048);  // the block is kept
  CHECK(s.cached == 2048);
  CHECK(s.cached_blocks == 1);
  CHECK(s.peak_allocated == 512 + 2048);
  alloc.reset_peak();
  CHECK(alloc.stats().peak_allocated == 512);
  CHECK(dev.in_use == 512 + 2048);  // the device still holds both
  alloc.deallocate(a, ca);
}

TEST_CASE("caching allocator: empty_cache returns the idle blocks and only those") {
  CountingDevice dev(size_t{64} << 20);
  CachingAllocator alloc("test:0", dev.backend());
  size_t ca = 0, cb = 0;
  void* a = alloc.allocate(4096, &ca);
  void* b = alloc.allocate(8192, &cb);
  alloc.deallocate(b, cb);
  alloc.empty_cache();
  CHECK(dev.frees == 1);
  CHECK(dev.live.count(a) == 1);  // the live block stays
  CHECK(dev.live.count(b) == 0);
  DeviceMemoryStats s = alloc.stats();
  CHECK(s.reserved == 4096);
  CHECK(s.cached == 0);
  CHECK(s.allocated == 4096);
  alloc.deallocate(a, ca);
  alloc.empty_cache();
  CHECK(dev.in_use == 0);
}

TEST_CASE("caching allocator: a refused request first returns the idle blocks, then retries") {
  CountingDevice dev(3 * 4096);
  CachingAllocator alloc("test:0", dev.backend());
  size_t c1 = 0, c2 = 0, c3 = 0;
  void* a = alloc.allocate(4096, &c1);
  void* b = alloc.allocate(4096, &c2);
  alloc.deallocate(a, c1);
  alloc.deallocate(b, c2);
  // 8 KiB idle, 4 KiB free on the device: an 8 KiB block fits only once the idle ones go back.
  void* c = alloc.allocate(8192, &c3);
  CHECK(c != nullptr);
  CHECK(dev.frees == 2);
  CHECK(alloc.stats().cached == 0);
  CHECK(alloc.stats().reserved == 8192);
  alloc.deallocate(c, c3);
}

TEST_CASE("caching allocator: out of memory is an Error saying what was asked for and what is held") {
  CountingDevice dev(size_t{1} << 20);
  CachingAllocator alloc("test:0", dev.backend());
  size_t ca = 0;
  void* a = alloc.allocate(3000, &ca);  // held: 3072 bytes
  const size_t absurd = size_t{1} << 50;
  try {
    size_t cap = 0;
    alloc.allocate(absurd, &cap);
    FAIL("expected an out-of-memory error");
  } catch (const Error& e) {
    const std::string m = e.what();
    CHECK(m.find("test:0: out of memory") != std::string::npos);
    CHECK(m.find("asked for 1.00 PiB (1125899906842624 bytes)") != std::string::npos);
    CHECK(m.find("holds 3.00 KiB in live tensors") != std::string::npos);
    CHECK(m.find("the test device has") != std::string::npos);
  }
  // The failed request leaves the allocator usable and its statistics unchanged.
  CHECK(alloc.stats().allocated == 3072);
  CHECK(alloc.stats().live_blocks == 1);
  size_t cb = 0;
  void* b = alloc.allocate(100, &cb);
  CHECK(b != nullptr);
  alloc.deallocate(b, cb);
  alloc.deallocate(a, ca);
}

TEST_CASE("format_bytes") {
  CHECK(format_bytes(0) == "0 B");
  CHECK(format_bytes(1023) == "1023 B");
  CHECK(format_bytes(1536) == "1.50 KiB");
  CHECK(format_bytes(size_t{3} << 30) == "3.00 GiB");
}
