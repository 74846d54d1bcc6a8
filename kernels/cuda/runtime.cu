// Device discovery. Every CUDA call is checked; a machine without a GPU (or with a driver
// older than the toolkit) reports zero devices instead of failing.
#include <cuda_runtime.h>

#include <string>

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

}  // namespace mmg::cuda
