// The CUDA runtime as the rest of the engine sees it: plain C++ declarations, so files
// that include this header compile without nvcc (and in builds without CUDA, where nothing
// here may be called: core/ guards each call with `if constexpr (kWithCuda)`).
// Implemented in kernels/cuda/runtime.cu.
//
// Streams: each device has one compute stream, created on first use. Every kernel, copy and
// cuBLASLt call of the engine runs on the stream of the current device, so work on a device
// is ordered without events; the host waits only where it needs the data (a copy to the
// host) or hands a buffer back to code that does not know about streams.
#pragma once
#include <cstddef>
#include <string>

namespace mmg::cuda {

// Number of usable GPUs; 0 when the driver is missing or too old, or no GPU is present
// (any failure of cudaGetDeviceCount counts as "no GPU").
int device_count();
// "2 GPUs: NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB), ..." or why there are none.
std::string status();
// The name the driver gives device `device` ("NVIDIA H100 80GB HBM3"); empty when it cannot be read.
std::string device_name(int device);

// The current device of the calling thread, and switching it.
int current_device();
void set_device(int device);

// Makes `device` current for its lifetime and restores the previous one on exit. Every op
// that launches work on a tensor's device holds one, so kernels go to the right device
// whatever the caller's current device was.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_;
};

// Waits until all work queued on the device's compute stream has finished.
void synchronize(int device);

// ---- raw device memory, no policy (the caching allocator in core/ decides when) ----
// cudaMalloc on `device`; nullptr when the device is out of memory, mmg::Error on any other
// failure. raw_free returns a block to the driver (after the device's stream is idle, since
// the driver frees at once and queued kernels may still use the block).
void* raw_malloc(int device, size_t bytes);
void raw_free(int device, void* p);
// Free and total memory of the device as the driver reports them.
void mem_info(int device, size_t* free_bytes, size_t* total_bytes);

// ---- copies (bytes; both ranges contiguous) ----
// Host to device and device to host wait for the copy to finish: the host buffer may be
// pageable, reused or freed as soon as the call returns, and a copy to the host is read next.
void copy_host_to_device(void* dst, const void* src, size_t bytes, int device);
void copy_device_to_host(void* dst, const void* src, size_t bytes, int device);
// On one device: queued on its stream. Between two devices: both streams are drained first,
// the copy is made on the destination's stream, and waited for.
void copy_device_to_device(void* dst, int dst_device, const void* src, int src_device, size_t bytes);
// Queued on the device's stream, and returns at once: for src in pinned memory, which must
// keep its bytes until the copy has run (core/pinned_memory.h guards that with an event).
void copy_host_to_device_async(void* dst, const void* src, size_t bytes, int device);

// ---- page-locked ("pinned") host memory, no policy (core/pinned_memory.h decides when) ----
// cudaHostAlloc, portable (every device can read it by DMA); nullptr when the system refuses.
void* raw_host_alloc(size_t bytes);
void raw_host_free(void* p);

// ---- events: a mark in a device's stream, passed once the work queued before it has run ----
// Records `event` (made on `device` when null) on the device's stream; returns it. An event
// belongs to the device it was made on.
void* record_event(int device, void* event);
bool event_done(void* event);  // does not wait
void wait_event(void* event);
void destroy_event(void* event);

}  // namespace mmg::cuda
