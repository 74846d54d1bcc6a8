// Storage: a block of bytes on one device, shared by every tensor that views it.
//
// CPU blocks come from a caching allocator (core/storage.cpp): a freed block is kept in a
// free list for its size class and handed to the next allocation of that class, so a
// training loop, which allocates the same sizes every step, stops going to the system.
// CUDA blocks come from the device's caching allocator (core/cuda_memory.h) in the same way.
// Pinned CPU blocks (page-locked, for fast copies to a GPU) come from the process's pinned pool
// (core/pinned_memory.h).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "core/device.h"

namespace mmg {

class Storage {
 public:
  // Uninitialised memory; pinned: page-locked host memory (device must be the CPU; mmg::Error
  // where pinned memory is not available, see pinned_memory_available()).
  Storage(size_t nbytes, Device device, bool pinned = false);
  // Memory owned elsewhere (a buffer from another library, a memory-mapped file): the
  // storage views `data` on `device` and calls release(data) when the last tensor lets go
  // (release may be empty: the owner outlives every tensor).
  Storage(void* data, size_t nbytes, Device device, std::function<void(void*)> release);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  bool pinned() const { return pinned_; }

  // How many in-place writes the bytes have had: Tensor::copy_ and fill_, and the fused
  // optimiser step, bump it. Every view of the storage shares it (PyTorch's version counter),
  // so a cache of something computed from the bytes (the autocast weight-cast cache,
  // core/autocast.h) can tell they changed, whichever handle wrote them. Code that writes an
  // existing tensor through a raw pointer bumps it itself.
  uint64_t version() const { return version_.load(std::memory_order_relaxed); }
  void bump_version() { version_.fetch_add(1, std::memory_order_relaxed); }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  size_t capacity_ = 0;  // the block's real size: nbytes_ rounded up to its size class
  Device device_;
  bool external_ = false;                 // memory owned elsewhere
  bool pinned_ = false;                   // a block of the pinned pool
  std::function<void(void*)> release_;    // for external memory
  std::atomic<uint64_t> version_{0};
};

// ---- the CPU block cache ----
// Limit on the bytes kept idle in the cache; a block freed beyond it goes back to the
// system. 0 turns the cache off (every block is allocated and freed directly). The default
// comes from MMG_CPU_CACHE (MiB; MMG_CPU_CACHE=0 disables it, for debugging with tools that
// track each allocation), else 2 GiB.
size_t cpu_cache_limit();
void set_cpu_cache_limit(size_t bytes);  // also releases what no longer fits

struct CpuCacheStats {
  int64_t hits = 0;         // allocations served from the cache
  int64_t misses = 0;       // allocations that went to the system
  size_t cached_bytes = 0;  // idle bytes held now
  int64_t cached_blocks = 0;
};
CpuCacheStats cpu_cache_stats();

// Returns every idle block to the system (the live ones are untouched).
void cpu_cache_release();

}  // namespace mmg
