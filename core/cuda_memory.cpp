// One CachingAllocator per CUDA device, created on first use and never destroyed (tensors
// held by static objects may be freed after static destructors have run).
#include "core/cuda_memory.h"

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

}  // namespace mmg
