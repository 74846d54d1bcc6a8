// Walking strided tensors: the odometer behind every elementwise and copy kernel.
//
// A tensor element with multi-index (i0, i1, ..., in) lives at offset Σ i_d · stride_d.
// Odometer<K> walks a shape in row-major order and keeps the offsets of K operands at
// once (each with its own strides; stride 0 repeats an operand along a broadcast dim).
// seek() jumps to a linear position (one div/mod per dim), next() steps by one element
// (usually one add per operand), so a thread can start anywhere in the range it owns.
#pragma once
#include <array>
#include <cstdint>

namespace mmg {

constexpr int kMaxDims = 16;

template <int K>
struct Odometer {
  int ndim;
  const int64_t* shape;
  std::array<const int64_t*, K> strides;
  int64_t index[kMaxDims] = {};
  std::array<int64_t, K> offset{};

  Odometer(int ndim_, const int64_t* shape_, std::array<const int64_t*, K> strides_)
      : ndim(ndim_), shape(shape_), strides(strides_) {}

  void seek(int64_t linear) {
    offset.fill(0);
    for (int d = ndim - 1; d >= 0; --d) {
      index[d] = shape[d] ? linear % shape[d] : 0;
      linear = shape[d] ? linear / shape[d] : 0;
      for (int k = 0; k < K; ++k) offset[k] += index[d] * strides[k][d];
    }
  }

  void next() {
    for (int d = ndim - 1; d >= 0; --d) {
      for (int k = 0; k < K; ++k) offset[k] += strides[k][d];
      if (++index[d] < shape[d]) return;
      for (int k = 0; k < K; ++k) offset[k] -= index[d] * strides[k][d];
      index[d] = 0;
    }
  }
};

}  // namespace mmg
