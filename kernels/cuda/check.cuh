// Error checks for the .cu files: every CUDA runtime and cuBLAS(Lt) call goes through a
// check, and every kernel launch is followed by MMG_CUDA_LAUNCH_CHECK(), so a failure
// becomes an mmg::Error naming the call, the error and the source line — never a crash or a
// wrong result read later.
//
// The engine's one error type is mmg::Error (core/error.h). Kernels reach it through this
// declaration of the function that throws it, so .cu files need neither core/ nor fmt.
#pragma once
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

namespace mmg {
[[noreturn]] void throw_error(const char* file, int line, const std::string& message);
}

namespace mmg::cuda {

[[noreturn]] inline void fail_cuda(const char* what, cudaError_t err, const char* file, int line) {
  cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  throw_error(file, line,
              std::string("CUDA: ") + what + " failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

[[noreturn]] inline void fail_cublas(const char* what, cublasStatus_t s, const char* file, int line) {
  throw_error(file, line, std::string("cuBLASLt: ") + what + " failed: " + cublasLtGetStatusName(s) + " (" +
                              cublasLtGetStatusString(s) + ")");
}

// The compute stream of the current device (kernels/cuda/runtime.cu).
cudaStream_t current_stream();

// Blocks for a grid-stride loop over n elements: enough to fill the device several times
// over, never more than the grid allows.
inline unsigned grid_for(int64_t n, int block) {
  int64_t blocks = (n + block - 1) / block;
  const int64_t cap = int64_t(1) << 16;  // 65536 blocks of 256: 16M threads, each looping on
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

}  // namespace mmg::cuda

#define MMG_CUDA_CHECK(call)                                                       \
  do {                                                                             \
    cudaError_t mmg_err_ = (call);                                                 \
    if (mmg_err_ != cudaSuccess) ::mmg::cuda::fail_cuda(#call, mmg_err_, __FILE__, __LINE__); \
  } while (0)

// After every <<<...>>>: a bad launch configuration shows up here, at the launch that caused it.
#define MMG_CUDA_LAUNCH_CHECK()                                                    \
  do {                                                                             \
    cudaError_t mmg_err_ = cudaGetLastError();                                     \
    if (mmg_err_ != cudaSuccess) ::mmg::cuda::fail_cuda("kernel launch", mmg_err_, __FILE__, __LINE__); \
  } while (0)

#define MMG_CUBLAS_CHECK(call)                                                     \
  do {                                                                             \
    cublasStatus_t mmg_st_ = (call);                                               \
    if (mmg_st_ != CUBLAS_STATUS_SUCCESS) ::mmg::cuda::fail_cublas(#call, mmg_st_, __FILE__, __LINE__); \
  } while (0)
