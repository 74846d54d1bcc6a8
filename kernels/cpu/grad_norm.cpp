// Gradient clipping's sum of squares and in-place scale over many tensors (kernels/grad_norm.h).
#include "kernels/grad_norm.h"

#include <algorithm>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/cpu/tensor_ranges.h"

namespace mmg::cpu {

template <class T>
double sum_of_squares(const T* const* data, const int64_t* sizes, int64_t count) {
  const std::vector<int64_t> start = tensor_starts(count, [&](int64_t t) { return sizes[t]; });
  const int64_t total = start[count], blocks = (total + kGradNormBlock - 1) / kGradNormBlock;
  std::vector<double> block_sum(static_cast<size_t>(blocks), 0.0);
  parallel_for(blocks, 2, [&](int64_t b0, int64_t b1) {
    for (int64_t blk = b0; blk < b1; ++blk) {
      double s = 0.0;
      for_each_tensor_part(start, blk * kGradNormBlock, std::min(total, (blk + 1) * kGradNormBlock),
                           [&](int64_t t, int64_t b, int64_t e) {
                             const T* x = data[t];
#pragma omp simd reduction(+ : s)
                             for (int64_t i = b; i < e; ++i) s += static_cast<double>(x[i]) * static_cast<double>(x[i]);
                           });
      block_sum[blk] = s;
    }
  });
  double sum = 0.0;
  for (double s : block_sum) sum += s;
  return sum;
}

template <class T>
void scale_in_place(T* const* data, const int64_t* sizes, int64_t count, double s) {
  const std::vector<int64_t> start = tensor_starts(count, [&](int64_t t) { return sizes[t]; });
  const T scale = static_cast<T>(s);
  parallel_for(start[count], kGradNormBlock, [&](int64_t lo, int64_t hi) {
    for_each_tensor_part(start, lo, hi, [&](int64_t t, int64_t b, int64_t e) {
      T* x = data[t];
#pragma omp simd
      for (int64_t i = b; i < e; ++i) x[i] *= scale;
    });
  });
}

template double sum_of_squares<float>(const float* const*, const int64_t*, int64_t);
template double sum_of_squares<double>(const double* const*, const int64_t*, int64_t);
template void scale_in_place<float>(float* const*, const int64_t*, int64_t, double);
template void scale_in_place<double>(double* const*, const int64_t*, int64_t, double);

}  // namespace mmg::cpu
