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

namespace mmg {

// A strided walk simplified before it starts: size-1 dims dropped, and neighbouring dims
// merged wherever every operand steps through them as through one dim
// (stride[outer] = stride[inner] · size[inner]). A contiguous tensor becomes one dim; a
// [B,S,D] + [D] bias add becomes [B·S, D] with strides (D, 1) and (0, 1). Kernels then run a
// tight loop along the last (innermost) dim and walk only the dims before it.
// A 0-d walk (one element) comes out as one dim of size 1.
template <int K>
struct MergedDims {
  int ndim = 0;
  int64_t shape[kMaxDims];
  int64_t strides[K][kMaxDims];

  MergedDims(int ndim_in, const int64_t* shape_in, std::array<const int64_t*, K> strides_in) {
    for (int d = 0; d < ndim_in; ++d) {
      if (shape_in[d] == 1) continue;
      bool merge = ndim > 0;
      for (int k = 0; k < K && merge; ++k)
        merge = strides[k][ndim - 1] == strides_in[k][d] * shape_in[d];
      if (merge) {
        shape[ndim - 1] *= shape_in[d];
        for (int k = 0; k < K; ++k) strides[k][ndim - 1] = strides_in[k][d];
      } else {
        shape[ndim] = shape_in[d];
        for (int k = 0; k < K; ++k) strides[k][ndim] = strides_in[k][d];
        ++ndim;
      }
    }
    if (ndim == 0) {
      shape[0] = 1;
      for (int k = 0; k < K; ++k) strides[k][0] = 0;
      ndim = 1;
    }
  }

  std::array<const int64_t*, K> stride_ptrs() const {
    std::array<const int64_t*, K> p;
    for (int k = 0; k < K; ++k) p[k] = strides[k];
    return p;
  }
};

}  // namespace mmg
