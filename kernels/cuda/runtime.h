// The CUDA runtime as the rest of the engine sees it: plain C++ declarations, so files
// that include this header compile without nvcc. Implemented in kernels/cuda/runtime.cu.
#pragma once
#include <string>

namespace mmg::cuda {

// Number of usable GPUs; 0 when the driver is missing or too old, or no GPU is present
// (any failure of cudaGetDeviceCount counts as "no GPU").
int device_count();
// "2 GPUs: NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB), ..." or why there are none.
std::string status();

}  // namespace mmg::cuda
