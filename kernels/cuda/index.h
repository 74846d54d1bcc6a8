// Row gathers and their scatter-add backward on a CUDA device (kernels/cuda/index.cu): the
// kernels behind index_select and embedding (an embedding is index_select of the rows of
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

}  // namespace mmg::cuda
