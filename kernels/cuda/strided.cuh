// Strided walks in CUDA kernels: the layout of K operands passed by value to a kernel, and
// the offsets of one linear element index.
//
// The host first merges dims (MergedDims, kernels/strided.h): size-1 dims vanish and dims
// that every operand walks as one become one, so a contiguous operand set is a single dim
// and a [B,S,D] + [D] broadcast is [B·S, D]. A thread then turns its linear index into a
// multi-index with one div/mod per remaining dim (right to left, row-major) and sums
// index·stride per operand.
#pragma once
#include <cstdint>

#include "kernels/strided.h"

namespace mmg::cuda {

template <int K>
struct StridedLayout {
  int ndim;
  int64_t shape[kMaxDims];
  int64_t strides[K][kMaxDims];
  bool contiguous;  // one dim, every stride 1: offset = linear index for every operand

  explicit StridedLayout(const MergedDims<K>& m) : ndim(m.ndim), contiguous(m.ndim == 1) {
    for (int d = 0; d < m.ndim; ++d) {
      shape[d] = m.shape[d];
      for (int k = 0; k < K; ++k) {
        strides[k][d] = m.strides[k][d];
        if (m.strides[k][d] != 1) contiguous = false;
      }
    }
  }

  // Offsets (in elements) of operand k's element at linear position i, for every k.
  __device__ void offsets(int64_t i, int64_t* off) const {
    for (int k = 0; k < K; ++k) off[k] = 0;
    if (contiguous) {
      for (int k = 0; k < K; ++k) off[k] = i;
      return;
    }
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t idx = i % shape[d];
      i /= shape[d];
      for (int k = 0; k < K; ++k) off[k] += idx * strides[k][d];
    }
  }
};

}  // namespace mmg::cuda
