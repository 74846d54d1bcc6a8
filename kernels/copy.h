// Copies and fills: the kernels behind contiguous(), clone(), to(dtype), copy_() and the
// factories' fill.
//
// CPU (mmg::cpu): kernels/cpu/copy.h, templates defined in that header (copy_cast,
// convert_value), so the code that calls them instantiates them.
// CUDA (mmg::cuda): declared below, implemented in kernels/cuda/copy.cu.
//
// copy_cast is the CUDA twin of cpu::copy_cast (kernels/cpu/copy.h): the kernel behind
// contiguous(), clone(), to(dtype) and copy_() of device tensors. Both pointers are device
// memory on the current device; strides are in elements and may be 0 (a broadcast source).
// Conversions follow cpu::convert_value exactly: bf16/f16 go through float with the same
// rounding code (kernels/half.h), to bool is v != 0, everything else a static_cast.
// Dst and Src: float, double, bf16, f16, int32_t, int64_t, uint8_t, bool.
#pragma once
#include <cstdint>

// Declared in every build; defined only where CUDA is compiled, and core/ calls them only
// under `if constexpr (kWithCuda)` (core/device.h).
namespace mmg::cuda {

// dst[i] = Dst(src[i]) over `shape` (ndim dims, n elements), each side with its strides.
// Two versions (the kernel family "copy", core/kernel_versions.h), same contract, same bits:
//   copy_cast     one thread an element; a transposing copy reads with a stride
//   copy_cast_v2  a transposing copy (kernels/cuda/copy_plan.h) through 32×32 tiles of
//                 shared memory, coalesced on both sides; any other copy as copy_cast
template <class Dst, class Src>
void copy_cast(const Src* src, const int64_t* src_strides, Dst* dst, const int64_t* dst_strides, int ndim,
               const int64_t* shape, int64_t n);
template <class Dst, class Src>
void copy_cast_v2(const Src* src, const int64_t* src_strides, Dst* dst, const int64_t* dst_strides, int ndim,
                  const int64_t* shape, int64_t n);

// dst[i] = value for i < n (dst contiguous). T as copy_cast.
template <class T>
void fill(T* dst, int64_t n, T value);

}  // namespace mmg::cuda
