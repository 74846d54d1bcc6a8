// CachingAllocator: the policy that keeps device memory for reuse (the CUDA allocator).
//
// cudaMalloc and cudaFree are slow (cudaFree also waits for the whole device), and a training
// step allocates and frees hundreds of activation and gradient buffers whose sizes repeat
// exactly from step to step. So a freed block is not returned to the driver: it goes to a
// free list for its size class, and the next request of that class takes it back.
//
//  - Size classes: multiples of 512 bytes up to 1 MiB, then eight classes per power of two
//    (at most 12.5 % of a block unused). A block serves only requests of its own class.
//  - Reuse is safe without events because the engine queues all work on a device in one
//    stream (kernels/cuda/runtime.h): a kernel that uses a reused block is queued after
//    every kernel that used it before.
//  - When the device refuses a block, the allocator returns its idle blocks to the driver
//    and tries once more; if that fails too, it throws an mmg::Error saying how much was
//    asked for, how much the process holds, and what the device reports free.
//  - Statistics: allocated (bytes in live blocks), reserved (live + idle, all obtained from
//    the device), their peaks, and hit/miss counts.
//
// The class knows nothing of CUDA: it is given the raw allocation functions, so the policy
// is tested on the CPU too (tests/core/test_caching_allocator.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace mmg {

struct DeviceMemoryStats {
  size_t allocated = 0;       // bytes in blocks held by live tensors (block sizes, not requests)
  size_t reserved = 0;        // bytes obtained from the device: allocated + cached
  size_t cached = 0;          // idle bytes kept for reuse
  size_t peak_allocated = 0;  // highest `allocated` since start or reset_peak()
  size_t peak_reserved = 0;
  int64_t hits = 0;           // requests served from the cache
  int64_t misses = 0;         // requests that went to the device
  int64_t live_blocks = 0;
  int64_t cached_blocks = 0;
};

// The block size a request of n bytes gets.
size_t device_size_class(size_t n);

class CachingAllocator {
 public:
  struct Backend {
    std::function<void*(size_t)> malloc;    // nullptr when the device is out of memory
    std::function<void(void*)> free;
    std::function<std::string()> describe;  // e.g. "the device reports 1.2 GiB free of 79.1 GiB"
  };

  CachingAllocator(std::string device_name, Backend backend);
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // A block of at least nbytes; *capacity receives its real size (to pass to deallocate).
  void* allocate(size_t nbytes, size_t* capacity);
  void deallocate(void* p, size_t capacity);
  // Returns every idle block to the device (live blocks are untouched).
  void empty_cache();
  DeviceMemoryStats stats();
  void reset_peak();

 private:
  void release_idle_locked();

  std::string device_name_;
  Backend backend_;
  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;  // size class -> idle blocks
  DeviceMemoryStats stats_;
};

// "1.50 GiB", "512 B": sizes in error messages and docs.
std::string format_bytes(size_t bytes);

}  // namespace mmg
