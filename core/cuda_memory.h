// CUDA memory as the engine's users see it: one caching allocator per device
// (core/caching_allocator.h), its statistics, and emptying its cache.
//
// Every function takes a device index and throws an mmg::Error when that device is not
// usable (no GPU, or a build without CUDA), saying why.
#pragma once
#include <cstddef>

#include "core/caching_allocator.h"

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

}  // namespace mmg
