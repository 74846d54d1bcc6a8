// CPU kernels of kernels/index.h: cat, index_select, gather, masked_fill, embedding.
#include "kernels/index.h"

#include <algorithm>

#include "kernels/cpu/parallel.h"
#include "kernels/half.h"
#include "kernels/strided.h"

namespace mmg::cpu {

// Rows of `work` elements each: enough rows per chunk that a chunk is worth a thread.
static int64_t rows_grain(int64_t work) { return std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(work, 1)); }

// ---- cat ----
// The piece is one contiguous run of outer·cols elements; a thread takes a range of it and
// copies it row segment by row segment (a range may start or end inside a row).
template <class T>
void cat_piece(const T* piece, T* out, int64_t outer, int64_t cols, int64_t out_cols, int64_t col0) {
  parallel_for(outer * cols, 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e;) {
      int64_t r = k / cols, c = k % cols;
      int64_t len = std::min(cols - c, e - k);
      std::copy(piece + k, piece + k + len, out + r * out_cols + col0 + c);
      k += len;
    }
  });
}

// ---- index_select ----
// One output row (o, j) is a copy of the input row (o, index[j]).
template <class T>
void index_select_forward(const T* x, const int64_t* index, T* out, int64_t outer, int64_t size, int64_t inner,
                          int64_t n) {
  parallel_for(outer * n, rows_grain(inner), [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e; ++k) {
      int64_t o = k / n, j = k % n;
      const T* src = x + (o * size + index[j]) * inner;
      std::copy(src, src + inner, out + k * inner);
    }
  });
}

// The (o, i) columns are numbered o·inner + i; a thread takes a range of them, and for each
// stretch of one o walks j = 0..n-1 adding g's row (o, j) into gx's row (o, index[j]).
template <class T>
void index_select_backward(const T* g, const int64_t* index, T* gx, int64_t outer, int64_t size, int64_t inner,
                           int64_t n) {
  parallel_for(outer * inner, rows_grain(n), [&](int64_t b, int64_t e) {
    for (int64_t k = b; k < e;) {
      int64_t o = k / inner, i0 = k % inner;
      int64_t len = std::min(inner - i0, e - k);
      for (int64_t j = 0; j < n; ++j) {
        const T* src = g + (o * n + j) * inner + i0;
        T* dst = gx + (o * size + index[j]) * inner + i0;
        for (int64_t t = 0; t < len; ++t) dst[t] += src[t];
      }
      k += len;
    }
  });
}

// ---- copy_rows ----
template <class T>
void copy_rows(const T* x, const int64_t* source, T* out, int64_t n, int64_t inner) {
  parallel_for(n, rows_grain(inner), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      T* dst = out + i * inner;
      if (source[i] < 0)
        std::fill(dst, dst + inner, T{});
      else
        std::copy(x + source[i] * inner, x + (source[i] + 1) * inner, dst);
    }
  });
}

// ---- gather ----
// Walk the index's shape with x's strides, except along `dim` (stride 0 there): that gives
// the offset of the position in x with coordinate 0 along dim; index[p] supplies the rest.
template <class T>
void gather_forward(const T* x, const int64_t* x_strides, const int64_t* index, T* out, int ndim,
                    const int64_t* shape, int64_t dim) {
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= shape[d];
  int64_t walk[kMaxDims];
  std::copy(x_strides, x_strides + ndim, walk);
  walk[dim] = 0;
  int64_t step = x_strides[dim];
  parallel_for(n, 1 << 15, [&](int64_t b, int64_t e) {
    Odometer<1> it(ndim, shape, {walk});
    it.seek(b);
    for (int64_t p = b; p < e; ++p, it.next()) out[p] = x[it.offset[0] + index[p] * step];
  });
}

// A line is every position that differs only along `dim`. Lines are numbered over the shape
// with `dim` removed; the odometer over that reduced shape gives each line's start in gx and
// in g/index (both contiguous of `shape`).
template <class T>
void gather_backward(const T* g, const int64_t* index, T* gx, const int64_t* gx_strides, int ndim,
                     const int64_t* shape, int64_t dim) {
  int64_t strides[kMaxDims];  // contiguous strides of `shape` (g and index)
  for (int64_t d = ndim - 1, s = 1; d >= 0; --d) { strides[d] = s; s *= shape[d]; }
  int64_t line_shape[kMaxDims], line_gx[kMaxDims], line_g[kMaxDims];
  int rdim = 0;
  int64_t lines = 1;
  for (int d = 0; d < ndim; ++d) {
    if (d == dim) continue;
    line_shape[rdim] = shape[d];
    line_gx[rdim] = gx_strides[d];
    line_g[rdim] = strides[d];
    lines *= shape[d];
    ++rdim;
  }
  int64_t len = shape[dim], g_step = strides[dim], gx_step = gx_strides[dim];
  if (len == 0) return;
  parallel_for(lines, rows_grain(len), [&](int64_t b, int64_t e) {
    Odometer<2> it(rdim, line_shape, {line_gx, line_g});
    it.seek(b);
    for (int64_t l = b; l < e; ++l, it.next()) {
      for (int64_t j = 0; j < len; ++j) {
        int64_t p = it.offset[1] + j * g_step;
        gx[it.offset[0] + index[p] * gx_step] += g[p];
      }
    }
  });
}

// ---- masked_fill ----
template <class T>
void masked_fill(const T* x, const int64_t* x_strides, const bool* mask, const int64_t* mask_strides, T value,
                 T* out, int ndim, const int64_t* shape) {
  int64_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= shape[d];
  parallel_for(n, 1 << 15, [&](int64_t b, int64_t e) {
    Odometer<2> it(ndim, shape, {x_strides, mask_strides});
    it.seek(b);
    for (int64_t p = b; p < e; ++p, it.next()) out[p] = mask[it.offset[1]] ? value : x[it.offset[0]];
  });
}

// ---- embedding ----
template <class T>
void embedding_forward(const T* weight, const int64_t* indices, T* out, int64_t n, int64_t D) {
  parallel_for(n, rows_grain(D), [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) {
      const T* row = weight + indices[j] * D;
      std::copy(row, row + D, out + j * D);
    }
  });
}

template <class T>
void embedding_backward(const T* dout, const int64_t* indices, T* dweight, int64_t n, int64_t D) {
  parallel_for(D, rows_grain(n), [&](int64_t b, int64_t e) {
    for (int64_t j = 0; j < n; ++j) {
      const T* src = dout + j * D;
      T* dst = dweight + indices[j] * D;
      for (int64_t d = b; d < e; ++d) dst[d] += src[d];
    }
  });
}

// ---- instantiations: the copies for every storage type, the scatter-adds for floats ----
#define MMG_INDEX_COPIES(T)                                                                                    \
  template void cat_piece<T>(const T*, T*, int64_t, int64_t, int64_t, int64_t);                                \
  template void index_select_forward<T>(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t);      \
  template void copy_rows<T>(const T*, const int64_t*, T*, int64_t, int64_t);                                   \
  template void gather_forward<T>(const T*, const int64_t*, const int64_t*, T*, int, const int64_t*, int64_t);  \
  template void masked_fill<T>(const T*, const int64_t*, const bool*, const int64_t*, T, T*, int, const int64_t*); \
  template void embedding_forward<T>(const T*, const int64_t*, T*, int64_t, int64_t);
MMG_INDEX_COPIES(float)
MMG_INDEX_COPIES(double)
MMG_INDEX_COPIES(bf16)
MMG_INDEX_COPIES(f16)
MMG_INDEX_COPIES(int32_t)
MMG_INDEX_COPIES(int64_t)
MMG_INDEX_COPIES(uint8_t)
MMG_INDEX_COPIES(bool)
#undef MMG_INDEX_COPIES

#define MMG_INDEX_ADDS(T)                                                                                      \
  template void index_select_backward<T>(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t);     \
  template void gather_backward<T>(const T*, const int64_t*, T*, const int64_t*, int, const int64_t*, int64_t); \
  template void embedding_backward<T>(const T*, const int64_t*, T*, int64_t, int64_t);
MMG_INDEX_ADDS(float)
MMG_INDEX_ADDS(double)
#undef MMG_INDEX_ADDS

}  // namespace mmg::cpu
