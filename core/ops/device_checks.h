// Device checks shared by the ops: which device an op runs on, and clear errors where it
// cannot run there.
//
// Every op dispatches on the device of its tensors: CPU kernels (kernels/cpu) or CUDA
// kernels (kernels/cuda). An op never copies to the CPU behind the caller's back, and never
// hands device memory to a CPU kernel.
#pragma once
#include "core/tensor.h"

namespace mmg {

// Throws when a and b are on different devices, naming op and both tensors.
void check_same_device(const char* op, const Tensor& a, const Tensor& b);

// Whether x's kernels run on CUDA. In a build without CUDA a tensor on cuda:N can only wrap
// outside memory (Storage's external constructor); this throws for it, naming op.
bool on_cuda(const char* op, const Tensor& x);

}  // namespace mmg
