#include "core/ops/device_checks.h"

namespace mmg {

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  MMG_CHECK(a.device() == b.device(), "{}: tensors on different devices: {} {} on {} and {} {} on {}", op,
            dtype_name(a.dtype()), shape_str(a.shape()), a.device().str(), dtype_name(b.dtype()),
            shape_str(b.shape()), b.device().str());
}

bool on_cuda(const char* op, const Tensor& x) {
  if (!x.device().is_cuda()) return false;
  MMG_CHECK(kWithCuda, "{}: {} {} is on {}, but this build has no CUDA kernels ({})", op, dtype_name(x.dtype()),
            shape_str(x.shape()), x.device().str(), cuda_status());
  return true;
}

}  // namespace mmg
