// CUDA memory as the engine's users see it: one caching allocator per device
// (core/caching_allocator.h), its statistics, and emptying its cache; and the process's pool
// of pinned host memory (core/pinned_memory.h), through which host-to-device copies go.
//
// Every function that takes a device index throws an mmg::Error when that device is not
// usable (no GPU, or a build without CUDA), saying why.
#pragma once
#include <cstddef>

#include "core/caching_allocator.h"
#include "core/pinned_memory.h"

namespace mmg {

// A block of at least nbytes on cuda:device (*capacity: its real size, for cuda_deallocate).
void* cuda_allocate(int device, size_t nbytes, size_t* capacity);
void cuda_deallocate(int device, void* p, size_t capacity);

DeviceMemoryStats cuda_memory_stats(int device = 0);
void cuda_reset_peak_memory(int device = 0);
// Returns the idle cached blocks of the device to the driver (like torch.cuda.empty_cache).
void cuda_empty_cache(int device = 0);
// Waits for all work queued on the device.
void cuda_synchronize(int device = 0);

// ---- pinned host memory (one pool for the process) ----
// Whether pinned memory can be had: a build with CUDA and a usable GPU. Elsewhere pinning is
// skipped (Tensor::pin_memory() returns the tensor as it is) and nothing here is needed.
bool pinned_memory_available();
// A pinned block of at least nbytes (*capacity: its real size); mmg::Error when pinned memory
// is not available or the system will not page-lock more.
void* pinned_allocate(size_t nbytes, size_t* capacity);
void pinned_deallocate(void* p);
// All zero until pinned memory is first used.
PinnedMemoryStats pinned_memory_stats();
void pinned_reset_peak_memory();
// Returns the idle pinned blocks to the system (waiting for copies that still read them).
// Without it, at most MMG_PINNED_CACHE MiB (default 256) of idle blocks are kept; the system
// takes the rest back when the process ends.
void pinned_empty_cache();

// Copies `bytes` from host memory src to device memory dst on cuda:device, queued on the
// device's stream. The host does not wait for the DMA, and src may be reused at once:
//  - pinned_block: the pinned block src lies in (a pinned tensor's storage), or nullptr.
//    With non_blocking and a pinned_block, the DMA reads src itself — one copy, no host
//    work — so src must keep its bytes until the copy has run; the block's fence keeps the
//    pool from handing it out again before then.
//  - Otherwise (pageable memory, or a blocking copy), up to kStagingLimit bytes are first
//    copied into a pinned staging block of the pool, and the DMA reads that. Larger copies,
//    or a system that refuses pinned memory, take the driver's own path: a copy the host
//    waits for.
inline constexpr size_t kStagingLimit = size_t{32} << 20;
void cuda_copy_from_host(void* dst, int device, const void* src, size_t bytes, void* pinned_block, bool non_blocking);

}  // namespace mmg
