// Device discovery, the current device, one compute stream per device, raw device and pinned
// host memory, copies and events. Every CUDA call is checked; a machine without a GPU (or
// with a driver older than the toolkit) reports zero devices instead of failing.
#include <cuda_runtime.h>

#include <mutex>
#include <string>
#include <vector>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/runtime.h"

namespace mmg::cuda {

int device_count() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return 0;
  }
  return n;
}

std::string status() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return std::string("no usable GPU: ") + cudaGetErrorString(err);
  }
  if (n == 0) return "no GPU found";
  std::string s = std::to_string(n) + (n == 1 ? " GPU: " : " GPUs: ");
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    if (i) s += ", ";
    s += std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " +
         std::to_string(p.totalGlobalMem / (1024.0 * 1024 * 1024)).substr(0, 5) + " GiB)";
  }
  return s;
}

std::string device_name(int device) {
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, device) != cudaSuccess) {
    cudaGetLastError();
    return "";
  }
  return p.name;
}

int current_device() {
  int d = 0;
  MMG_CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

void set_device(int device) { MMG_CUDA_CHECK(cudaSetDevice(device)); }

DeviceGuard::DeviceGuard(int device) : previous_(current_device()) {
  if (device != previous_) set_device(device);
}

DeviceGuard::~DeviceGuard() {
  // A destructor must not throw: a failure to switch back is left for the next checked call.
  int now = -1;
  if (cudaGetDevice(&now) == cudaSuccess && now != previous_) cudaSetDevice(previous_);
}

// ---- streams ----
// Created once per device, never destroyed (tensors freed during static destruction may
// still queue work). Non-blocking: they do not wait for the legacy default stream, which
// the engine never uses.
static cudaStream_t stream_of(int device) {
  static std::mutex mu;
  static std::vector<cudaStream_t>* streams = new std::vector<cudaStream_t>();
  std::lock_guard<std::mutex> lock(mu);
  if (device >= static_cast<int>(streams->size())) streams->resize(device + 1, nullptr);
  cudaStream_t& s = (*streams)[device];
  if (s == nullptr) {
    DeviceGuard guard(device);
    MMG_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  }
  return s;
}

cudaStream_t current_stream() { return stream_of(current_device()); }

void synchronize(int device) { MMG_CUDA_CHECK(cudaStreamSynchronize(stream_of(device))); }

// ---- raw memory ----
void* raw_malloc(int device, size_t bytes) {
  DeviceGuard guard(device);
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // out of memory is not sticky: clear it, the caller decides
    return nullptr;
  }
  MMG_CUDA_CHECK(err);
  return p;
}

void raw_free(int device, void* p) {
  DeviceGuard guard(device);
  MMG_CUDA_CHECK(cudaStreamSynchronize(stream_of(device)));
  MMG_CUDA_CHECK(cudaFree(p));
}

void mem_info(int device, size_t* free_bytes, size_t* total_bytes) {
  DeviceGuard guard(device);
  MMG_CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
}

// ---- copies ----
void copy_host_to_device(void* dst, const void* src, size_t bytes, int device) {
  if (bytes == 0) return;
  DeviceGuard guard(device);
  cudaStream_t s = stream_of(device);
  MMG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
  MMG_CUDA_CHECK(cudaStreamSynchronize(s));
}

void copy_device_to_host(void* dst, const void* src, size_t bytes, int device) {
  if (bytes == 0) return;
  DeviceGuard guard(device);
  cudaStream_t s = stream_of(device);
  MMG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));  // after the kernels that wrote src
  MMG_CUDA_CHECK(cudaStreamSynchronize(s));
}

void copy_device_to_device(void* dst, int dst_device, const void* src, int src_device, size_t bytes) {
  if (bytes == 0) return;
  if (dst_device == src_device) {
    DeviceGuard guard(dst_device);
    MMG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_of(dst_device)));
    return;
  }
  synchronize(src_device);  // src is complete
  synchronize(dst_device);  // nothing queued still reads the old contents of dst
  DeviceGuard guard(dst_device);
  cudaStream_t s = stream_of(dst_device);
  MMG_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_device, src, src_device, bytes, s));
  MMG_CUDA_CHECK(cudaStreamSynchronize(s));  // the source's stream may reuse src right after
}

void copy_host_to_device_async(void* dst, const void* src, size_t bytes, int device) {
  if (bytes == 0) return;
  DeviceGuard guard(device);
  MMG_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_of(device)));
}

// ---- pinned host memory ----
void* raw_host_alloc(size_t bytes) {
  void* p = nullptr;
  cudaError_t err = cudaHostAlloc(&p, bytes, cudaHostAllocPortable);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // not sticky: the caller decides
    return nullptr;
  }
  MMG_CUDA_CHECK(err);
  return p;
}

void raw_host_free(void* p) { MMG_CUDA_CHECK(cudaFreeHost(p)); }

// ---- events ----
// Without timing: the cheapest kind, all the pool needs is "has it passed".
void* record_event(int device, void* event) {
  DeviceGuard guard(device);
  cudaEvent_t e = static_cast<cudaEvent_t>(event);
  if (e == nullptr) MMG_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  MMG_CUDA_CHECK(cudaEventRecord(e, stream_of(device)));
  return e;
}

bool event_done(void* event) {
  cudaError_t err = cudaEventQuery(static_cast<cudaEvent_t>(event));
  if (err == cudaSuccess) return true;
  if (err == cudaErrorNotReady) {
    cudaGetLastError();  // "not yet" is an answer, not an error: leave nothing for the next check
    return false;
  }
  MMG_CUDA_CHECK(err);
  return false;
}

void wait_event(void* event) { MMG_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(event))); }

void destroy_event(void* event) { MMG_CUDA_CHECK(cudaEventDestroy(static_cast<cudaEvent_t>(event))); }

}  // namespace mmg::cuda
