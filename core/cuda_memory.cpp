// One CachingAllocator per CUDA device and one PinnedPool for the host, created on first use
// and never destroyed (tensors held by static objects may be freed after static destructors
// have run; the system takes pinned memory back when the process ends).
#include "core/cuda_memory.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "core/device.h"
#include "core/error.h"
#include "kernels/cuda/runtime.h"

namespace mmg {

static void check_usable(int device, const std::string& what) {
  const std::string reason = device_unusable_reason(Device::cuda(device));
  MMG_CHECK(reason.empty(), "{} on cuda:{}: {}", what, device, reason);
}

static CachingAllocator& allocator(int device, const std::string& what) {
  static std::mutex mu;
  static auto* allocators = new std::vector<std::unique_ptr<CachingAllocator>>();
  std::lock_guard<std::mutex> lock(mu);
  if (device >= 0 && device < static_cast<int>(allocators->size()) && (*allocators)[device]) return *(*allocators)[device];
  check_usable(device, what);
  if (device >= static_cast<int>(allocators->size())) allocators->resize(device + 1);
  CachingAllocator::Backend backend;
  if constexpr (kWithCuda) {
    backend.malloc = [device](size_t n) { return cuda::raw_malloc(device, n); };
    backend.free = [device](void* p) { cuda::raw_free(device, p); };
    backend.describe = [device]() {
      size_t free_bytes = 0, total = 0;
      cuda::mem_info(device, &free_bytes, &total);
      return fmt::format("the device reports {} free of {}", format_bytes(free_bytes), format_bytes(total));
    };
  }
  (*allocators)[device] = std::make_unique<CachingAllocator>(fmt::format("cuda:{}", device), std::move(backend));
  return *(*allocators)[device];
}

void* cuda_allocate(int device, size_t nbytes, size_t* capacity) {
  return allocator(device, fmt::format("storage: cannot allocate {} bytes", nbytes)).allocate(nbytes, capacity);
}
void cuda_deallocate(int device, void* p, size_t capacity) { allocator(device, "storage").deallocate(p, capacity); }
DeviceMemoryStats cuda_memory_stats(int device) { return allocator(device, "cuda_memory_stats").stats(); }
void cuda_reset_peak_memory(int device) { allocator(device, "cuda_reset_peak_memory").reset_peak(); }
void cuda_empty_cache(int device) { allocator(device, "cuda_empty_cache").empty_cache(); }

void cuda_synchronize(int device) {
  check_usable(device, "cuda_synchronize");
  if constexpr (kWithCuda) cuda::synchronize(device);
}

// ---- pinned host memory ----

bool pinned_memory_available() {
  static const bool available = kWithCuda && cuda_device_count() > 0;  // asked once: GPUs do not come and go
  return available;
}

// Idle pinned bytes kept for reuse: MMG_PINNED_CACHE (MiB), else 256 MiB — a few batches of a
// data loader, the staging blocks of a step's copies — beyond which blocks go back to the system.
static size_t pinned_cache_limit() {
  if (const char* env = std::getenv("MMG_PINNED_CACHE")) return static_cast<size_t>(std::strtoull(env, nullptr, 10)) << 20;
  return size_t{256} << 20;
}

static PinnedPool& pinned_pool() {
  static PinnedPool* pool = [] {
    PinnedPool::Backend backend;
    if constexpr (kWithCuda) {
      backend.malloc = [](size_t n) { return cuda::raw_host_alloc(n); };
      backend.free = [](void* p) { cuda::raw_host_free(p); };
      backend.record = [](int device, void* fence) { return cuda::record_event(device, fence); };
      backend.done = [](void* fence) { return cuda::event_done(fence); };
      backend.wait = [](void* fence) { cuda::wait_event(fence); };
      backend.destroy = [](void* fence) { cuda::destroy_event(fence); };
    }
    return new PinnedPool(std::move(backend), pinned_cache_limit());
  }();
  return *pool;
}

void* pinned_allocate(size_t nbytes, size_t* capacity) {
  MMG_CHECK(pinned_memory_available(), "pin_memory: no pinned memory without a usable GPU ({})", cuda_status());
  void* p = pinned_pool().allocate(nbytes, capacity);
  MMG_CHECK(p != nullptr,
            "pin_memory: the system refused to page-lock {} ({} bytes); this process holds {} of pinned memory "
            "(its idle blocks were returned before retrying)",
            format_bytes(nbytes), nbytes, format_bytes(pinned_pool().stats().reserved));
  return p;
}

void pinned_deallocate(void* p) { pinned_pool().deallocate(p); }
PinnedMemoryStats pinned_memory_stats() { return pinned_pool().stats(); }
void pinned_reset_peak_memory() { pinned_pool().reset_peak(); }
void pinned_empty_cache() { pinned_pool().empty_cache(); }

void cuda_copy_from_host(void* dst, int device, const void* src, size_t bytes, void* pinned_block, bool non_blocking) {
  check_usable(device, "copy to the device");
  if constexpr (kWithCuda) {
    if (bytes == 0) return;
    PinnedPool& pool = pinned_pool();
    if (pinned_block != nullptr && non_blocking) {  // one DMA straight from the tensor's memory
      cuda::copy_host_to_device_async(dst, src, bytes, device);
      pool.record_use(pinned_block, device);
      return;
    }
    size_t capacity = 0;
    void* stage = bytes <= kStagingLimit ? pool.allocate(bytes, &capacity) : nullptr;
    if (stage == nullptr) {
      cuda::copy_host_to_device(dst, src, bytes, device);  // the driver stages it; the host waits
      return;
    }
    std::memcpy(stage, src, bytes);
    try {
      cuda::copy_host_to_device_async(dst, stage, bytes, device);
    } catch (...) {
      pool.deallocate(stage);  // nothing was queued: the block is free at once
      throw;
    }
    pool.record_use(stage, device);  // fails only when CUDA does; the block then stays out of use
    pool.deallocate(stage);          // handed out again once the copy has run
  }
}

}  // namespace mmg
