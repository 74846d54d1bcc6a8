// CPU storage and its caching allocator.
//
// Why a cache: one training step allocates hundreds of activation and gradient buffers and
// frees them all by the next step. glibc serves large blocks with mmap and returns them with
// munmap, so every step the kernel maps fresh pages and zero-fills each one on first touch:
// on the demo's VLM that was a fifth of the step time, spent in page faults. The sizes repeat
// exactly from step to step, so keeping freed blocks and handing them out again removes
// nearly all of it. (glibc's own knobs, mallopt(M_MMAP_THRESHOLD / M_TRIM_THRESHOLD), would
// change the whole process's malloc behaviour behind the program's back; a cache of our own
// is local, measurable — cpu_cache_stats() — and can be switched off.)
//
// Design, kept deliberately small:
//  - Sizes are rounded up to a size class: multiples of 64 bytes up to 4 KiB, then eight
//    classes per power of two (at most 12.5 % waste). Each class has a free list (a stack,
//    so the most recently freed, cache-warm block is reused first).
//  - One mutex guards the lists: allocations are few (hundreds per step) against the work
//    done on each block, and tensors may be freed on any thread (data loader threads).
//  - Idle bytes are bounded by cpu_cache_limit(); a block freed beyond it goes straight back
//    to the system. A failed system allocation first releases the cache and retries.
//  - The cache object is never destroyed: tensors held in static objects may be freed after
//    static destructors run, and must still find it.
#include "core/storage.h"

#include <bit>
#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "core/cuda_memory.h"
#include "core/error.h"

namespace mmg {

// 64-byte alignment: a cache line, and enough for any vector load.
static constexpr size_t kAlign = 64;

// The size class of an n-byte request: the block size actually allocated.
static size_t size_class(size_t n) {
  n = std::max<size_t>(n, 1);
  if (n <= 4096) return (n + kAlign - 1) / kAlign * kAlign;
  const size_t step = std::bit_floor(n) / 8;  // eight classes per power of two
  return (n + step - 1) / step * step;
}

static size_t default_limit() {
  if (const char* env = std::getenv("MMG_CPU_CACHE")) return static_cast<size_t>(std::strtoull(env, nullptr, 10)) << 20;
  return size_t{2} << 30;
}

namespace {

class BlockCache {
 public:
  void* allocate(size_t capacity) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(capacity);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_bytes_ -= capacity;
        --cached_blocks_;
        ++hits_;
        return p;
      }
      ++misses_;
    }
    void* p = std::aligned_alloc(kAlign, capacity);
    if (p == nullptr) {  // the idle blocks may be what the system is missing
      release();
      p = std::aligned_alloc(kAlign, capacity);
    }
    return p;
  }

  void deallocate(void* p, size_t capacity) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (cached_bytes_ + capacity <= limit_) {
        free_[capacity].push_back(p);
        cached_bytes_ += capacity;
        ++cached_blocks_;
        return;
      }
    }
    std::free(p);
  }

  void release() {
    std::unordered_map<size_t, std::vector<void*>> idle;
    {
      std::lock_guard<std::mutex> lock(mu_);
      idle.swap(free_);
      cached_bytes_ = 0;
      cached_blocks_ = 0;
    }
    for (auto& [capacity, blocks] : idle)
      for (void* p : blocks) std::free(p);
  }

  size_t limit() {
    std::lock_guard<std::mutex> lock(mu_);
    return limit_;
  }

  void set_limit(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      limit_ = bytes;
      if (cached_bytes_ <= limit_) return;
    }
    release();
  }

  CpuCacheStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return {hits_, misses_, cached_bytes_, cached_blocks_};
  }

 private:
  std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;  // size class -> idle blocks
  size_t limit_ = default_limit();
  size_t cached_bytes_ = 0;
  int64_t cached_blocks_ = 0;
  int64_t hits_ = 0, misses_ = 0;
};

BlockCache& cache() {
  static BlockCache* c = new BlockCache();  // never destroyed, see the file comment
  return *c;
}

}  // namespace

size_t cpu_cache_limit() { return cache().limit(); }
void set_cpu_cache_limit(size_t bytes) { cache().set_limit(bytes); }
CpuCacheStats cpu_cache_stats() { return cache().stats(); }
void cpu_cache_release() { cache().release(); }

Storage::Storage(size_t nbytes, Device device, bool pinned) : nbytes_(nbytes), device_(device) {
  if (pinned) {
    MMG_CHECK(device.is_cpu(), "storage: pinned memory is host memory; {} bytes were asked for on {}", nbytes,
              device.str());
    data_ = pinned_allocate(nbytes, &capacity_);  // throws, saying why, when the system refuses
    pinned_ = true;
    return;
  }
  if (device.is_cuda()) {
    data_ = cuda_allocate(device.index, nbytes, &capacity_);  // throws, saying why, when cuda:N is not usable
    return;
  }
  capacity_ = size_class(nbytes);
  data_ = cache().allocate(capacity_);
  MMG_CHECK(data_ != nullptr, "storage: out of memory allocating {} bytes on cpu", nbytes);
}

Storage::Storage(void* data, size_t nbytes, Device device, std::function<void(void*)> release)
    : data_(data), nbytes_(nbytes), capacity_(nbytes), device_(device), external_(true), release_(std::move(release)) {}

Storage::~Storage() {
  if (external_) {
    if (release_) release_(data_);
  } else if (pinned_) {
    pinned_deallocate(data_);
  } else if (device_.is_cuda()) {
    cuda_deallocate(device_.index, data_, capacity_);
  } else {
    cache().deallocate(data_, capacity_);
  }
}

}  // namespace mmg
