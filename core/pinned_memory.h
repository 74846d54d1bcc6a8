// PinnedPool: page-locked ("pinned") host memory kept for reuse — the staging buffers of
// host-to-device copies and the storage of pinned tensors (Tensor::pin_memory()).
//
// Why pinned: a GPU's copy engine reads host memory by DMA, which needs pages the operating
// system will not move. From ordinary (pageable) memory the driver first copies the bytes
// into a pinned buffer of its own and the host waits; from pinned memory the copy is queued
// on the stream like a kernel and the host goes on at once. Page-locking is slow (the
// system maps and locks every page), so blocks are kept once made and handed out again, by
// the device allocator's size classes (device_size_class).
//
// The one rule that makes reuse safe: a block that a queued copy still reads must not be
// handed out again (its next owner would overwrite bytes the DMA has not read yet). So each
// copy from a block records a fence on it — a CUDA event in the stream that runs the copy —
// and allocate() hands out a free block only once every fence on it has passed; when no
// block of the class is ready, it page-locks a new one rather than wait. A block keeps its
// fences (one per device) for its next uses: events are made once, not per copy.
//
// Page-locked memory is taken from the machine's RAM for good, so the idle blocks kept are
// bounded: beyond cache_limit idle bytes, blocks whose copies have run go back to the system
// as they are given back. empty_cache() returns every idle block, first waiting for the
// copies that still read them. Statistics as the device allocator's (allocated, reserved,
// cached, peaks, hits, misses), plus the idle blocks still busy under a copy.
//
// The class knows nothing of CUDA: it is given the raw memory and fence functions, so the
// policy is tested on the CPU with plain memory and fences the test completes by hand
// (tests/core/test_pinned_memory.cpp). core/cuda_memory.cpp makes the process's pool.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mmg {

struct PinnedMemoryStats {
  size_t allocated = 0;       // bytes in blocks held by live tensors or copies being staged
  size_t reserved = 0;        // bytes page-locked in all: allocated + cached
  size_t cached = 0;          // idle bytes kept for reuse
  size_t peak_allocated = 0;  // highest `allocated` since start or reset_peak()
  size_t peak_reserved = 0;
  int64_t hits = 0;           // requests served from the cache
  int64_t misses = 0;         // requests that page-locked a new block
  int64_t live_blocks = 0;
  int64_t cached_blocks = 0;
  int64_t busy_blocks = 0;    // idle blocks that a queued copy still reads (not reusable yet)
  int64_t fences = 0;         // copies recorded on blocks (record_use calls)
};

class PinnedPool {
 public:
  struct Backend {
    std::function<void*(size_t)> malloc;  // page-locked bytes; nullptr when the system refuses
    std::function<void(void*)> free;
    // Records, on `device`'s stream, a fence that passes once the work queued there so far
    // has run. `fence` is the block's earlier fence for that device (re-recorded, so a block
    // needs one per device), or nullptr to make a new one. Returns the fence.
    std::function<void*(int device, void* fence)> record;
    std::function<bool(void*)> done;     // whether the fence has passed (does not wait)
    std::function<void(void*)> wait;     // blocks until it has
    std::function<void(void*)> destroy;
  };

  explicit PinnedPool(Backend backend, size_t cache_limit = SIZE_MAX);
  // Returns the idle blocks (as empty_cache). The process's pool is never destroyed; this is
  // for pools with a shorter life, as in the tests. Live blocks stay their owners'.
  ~PinnedPool();
  PinnedPool(const PinnedPool&) = delete;
  PinnedPool& operator=(const PinnedPool&) = delete;

  // A block of at least nbytes (*capacity: its size class), or nullptr when the system will
  // not page-lock more even after the idle blocks that are ready were returned to it.
  void* allocate(size_t nbytes, size_t* capacity);
  // Gives back a block from allocate(); it is handed out again once its fences have passed.
  void deallocate(void* block);
  // The work queued now on `device` reads `block` (a live block from allocate()): it is not
  // handed out again before that work has run.
  void record_use(void* block, int device);
  // Whether p is a block of this pool (live or idle).
  bool owns(const void* p);

  // Returns every idle block to the system, waiting first for copies that still read it.
  void empty_cache();
  PinnedMemoryStats stats();
  void reset_peak();

 private:
  struct Block {
    size_t size = 0;
    bool live = false;
    std::vector<std::pair<int, void*>> fences;  // (device, fence)
  };
  bool ready_locked(const Block& b);
  // Frees idle blocks whose copies have run until at most `keep` idle bytes remain.
  void release_ready_locked(size_t keep = 0);

  Backend backend_;
  size_t cache_limit_;
  std::mutex mu_;
  std::unordered_map<void*, Block> blocks_;              // every block, live or idle
  std::unordered_map<size_t, std::vector<void*>> free_;  // size class -> idle blocks, oldest first
  PinnedMemoryStats stats_;
};

}  // namespace mmg
