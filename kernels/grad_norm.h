// The two passes of gradient clipping (nn/clip.cpp) over all of a model's gradients at once.
//
// Clipping by global norm reads every gradient once for ‖g‖² = Σ_t Σ_i g_t[i]² and, when the
// norm is too large, scales every gradient in place. As tensor ops that is, per parameter, a
// conversion to f64, a square, a sum and a host read, then a product and a copy: five passes
// and four allocations for each of a model's ~150 small tensors. Here each pass is one
// parallel loop over the elements of all the tensors, taken as one range.
//
// Sums are in double. The range is cut into fixed blocks of kGradNormBlock elements, each
// summed in order, and the block sums are added in order, so the result depends on the data
// alone, never on the thread count.
// CPU only; gradients on a CUDA device take the tensor ops (a few launches per tensor).
#pragma once
#include <cstdint>

namespace mmg::cpu {

constexpr int64_t kGradNormBlock = int64_t{1} << 14;

// Σ_t Σ_i x_t[i]² over tensors t < count: data[t] holds sizes[t] contiguous elements.
// T: float, double.
template <class T>
double sum_of_squares(const T* const* data, const int64_t* sizes, int64_t count);

// x_t[i] ← x_t[i] · s for every element of every tensor (s rounded to T first, as a tensor
// op rounds a double scalar). T: float, double.
template <class T>
void scale_in_place(T* const* data, const int64_t* sizes, int64_t count, double s);

}  // namespace mmg::cpu
