// Joining and indexing: cat, index_select, gather, masked_fill, embedding — forward
// copies and their scatter-add backwards.
//
// The forwards only move elements, so they are instantiated for every storage type
// (float, double, bf16, f16, int32_t, int64_t, uint8_t, bool): an i64 token-id tensor can
// be concatenated as well as an f32 activation. The backwards add, so they exist for the
// float compute types only (float, double).
//
// Indices are int64_t and already checked by the op layer: every index lies in [0, size).
// Outputs are overwritten; the backward gradients (`gx`, `dweight`) must arrive zeroed and
// are accumulated into.
//
// Every backward is deterministic: each output element is written by exactly one thread,
// which adds its contributions in index order j = 0, 1, 2, ... So the gradient of a
// repeated index is the same sum, bit for bit, whatever the thread count.
#pragma once
#include <cstdint>

#include "kernels/half.h"

namespace mmg::cpu {

// ---- cat ----
// Copy one piece into its place in the output of a concatenation. The output is viewed as
// [outer, out_cols] and the piece as [outer, cols] (cols = size along the cat dim × the
// product of the dims after it); the piece lands in columns [col0, col0 + cols):
//   out[r, col0 + c] = piece[r, c]
template <class T>
void cat_piece(const T* piece, T* out, int64_t outer, int64_t cols, int64_t out_cols, int64_t col0);

// ---- index_select ----
// x viewed as [outer, size, inner], index [n], out [outer, n, inner]:
//   out[o, j, i] = x[o, index[j], i]
template <class T>
void index_select_forward(const T* x, const int64_t* index, T* out, int64_t outer, int64_t size, int64_t inner,
                          int64_t n);

// The backward scatters back (an index_add):  gx[o, index[j], i] += g[o, j, i]
// Threads own disjoint (o, i) columns of gx; each walks j in order.
template <class T>
void index_select_backward(const T* g, const int64_t* index, T* gx, int64_t outer, int64_t size, int64_t inner,
                           int64_t n);

// ---- copy_rows (take_rows, put_rows) ----
// Rows of `inner` elements, each output row copied from the source row it names or zeroed:
//   out[i, :] = source[i] >= 0 ? x[source[i], :] : 0        i = 0 .. n-1
// take_rows passes its index; put_rows passes, for each output row, the input row put there
// (or -1). Each output row is written once, by one thread.
template <class T>
void copy_rows(const T* x, const int64_t* source, T* out, int64_t n, int64_t inner);

// ---- gather (torch.gather) ----
// `shape` is the index's (and the output's) shape, with ndim dims; index and out are
// contiguous, x is strided (x_strides; its sizes may exceed `shape` outside `dim`):
//   out[p] = x[p with its coordinate along dim replaced by index[p]]
template <class T>
void gather_forward(const T* x, const int64_t* x_strides, const int64_t* index, T* out, int ndim,
                    const int64_t* shape, int64_t dim);

// The backward is a scatter-add into gx (strided by gx_strides; g contiguous of `shape`):
//   gx[p with coordinate dim replaced by index[p]] += g[p]
// Only positions on the same line along `dim` can collide, so threads own whole lines.
template <class T>
void gather_backward(const T* g, const int64_t* index, T* gx, const int64_t* gx_strides, int ndim,
                     const int64_t* shape, int64_t dim);

// ---- masked_fill ----
// out[p] = mask[p] ? value : x[p] over `shape` (ndim dims), x and mask strided (a mask
// broadcast to x's shape has stride 0 along the broadcast dims); out contiguous.
template <class T>
void masked_fill(const T* x, const int64_t* x_strides, const bool* mask, const int64_t* mask_strides, T value,
                 T* out, int ndim, const int64_t* shape);

// ---- embedding ----
// weight [V, D] contiguous, indices [n], out [n, D]:   out[j, :] = weight[indices[j], :]
template <class T>
void embedding_forward(const T* weight, const int64_t* indices, T* out, int64_t n, int64_t D);

// dweight[indices[j], :] += dout[j, :] for j = 0..n-1. A row used k times receives the sum
// of its k gradient rows. Threads own disjoint column ranges of D and walk all n indices
// in order, so no two threads touch one element and the sum order is fixed.
template <class T>
void embedding_backward(const T* dout, const int64_t* indices, T* dweight, int64_t n, int64_t D);

}  // namespace mmg::cpu

// ---- CUDA (kernels/cuda/index.cu) ----
// Row gathers and their scatter-add backward on a CUDA device: the kernels behind
// index_select, gather and embedding (an embedding is index_select of the rows of its weight:
// outer = 1, size = V, inner = D). Plain C++ declarations; device memory of the
// current device; indices already checked to lie in [0, size).
// Declared in every build; defined only where CUDA is compiled, and core/ calls them only
// under `if constexpr (kWithCuda)` (core/device.h).
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

// torch.gather, the contract of cpu::gather_forward above: `shape` is the index's
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
