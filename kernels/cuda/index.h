// Row gathers and their scatter-add backward on a CUDA device (kernels/cuda/index.cu): the
// kernels behind index_select, gather and embedding (an embedding is index_select of the rows of
// its weight: outer = 1, size = V, inner = D). Plain C++ declarations; device memory of the
// current device; indices already checked to lie in [0, size).
#pragma once
#include <cstdint>

#include "kernels/half.h"

namespace mmg::cuda {

// x viewed as [outer, size, inner], index [n], out [outer, n, inner]:
//   out[o, j, i] = x[o, index[j], i]
// T: float, double, bf16, f16, int32_t, int64_t, uint8_t, bool.
template <class T>
void index_select_forward(const T* x, const int64_t* index, T* out, int64_t outer, int64_t size, int64_t inner,
                          int64_t n);

// The backward, an index_add, without atomics:
//   gx[o, k, i] = Σ_{j : index[j] = k} g[o, j, i]
// given the index inverted on the host (CSR): the positions j with index[j] = k are
// positions[offsets[k] .. offsets[k+1]), in increasing j. Each element of gx is written by
// one thread, which adds its terms in that order: the same sum on every run (and as the
// CPU's order). gx is overwritten (rows no index names get 0). T: float, double.
template <class T>
void index_select_backward(const T* g, const int64_t* offsets, const int64_t* positions, T* gx, int64_t outer,
                           int64_t size, int64_t inner, int64_t n);

// torch.gather, the contract of cpu::gather_forward (kernels/index.h): `shape` is the index's
// (and the output's) shape, ndim dims (host arrays); index and out contiguous, x strided by
// x_strides (its sizes may exceed `shape` outside `dim`):
//   out[p] = x[p with its coordinate along dim replaced by index[p]]
// T: every storage type, as index_select_forward.
template <class T>
void gather_forward(const T* x, const int64_t* x_strides, const int64_t* index, T* out, int ndim, const int64_t* shape,
                    int64_t dim);

// The backward, a scatter-add into gx (strided by gx_strides, zeroed by the caller; g
// contiguous of `shape`):  gx[p with coordinate dim replaced by index[p]] += g[p]
// Only positions on one line along `dim` can collide, so a thread owns a whole line and
// adds its terms in order j = 0, 1, ...: no atomics, the CPU's sum order. T: float, double.
template <class T>
void gather_backward(const T* g, const int64_t* index, T* gx, const int64_t* gx_strides, int ndim,
                     const int64_t* shape, int64_t dim);

}  // namespace mmg::cuda
