// Row statistics: variance / standard deviation, log-sum-exp and p-norms
// (kernels/reduce.h has the formulas, the CPU's and CUDA's alike).
//
// Each row is reduced by a row group (kernels/cuda/row_group.cuh): a warp for rows of at
// most 1024 elements, a block of 256 for longer ones. Every thread of the group gets each
// reduction's result (butterfly shuffles), so the second pass over the row — Σ(x − mean)²
// after the mean, Σ exp(x − m) after the max — needs no broadcast. All arithmetic is in
// double, as on the CPU; only the order of the additions differs from it (a tree here,
// chunks merged left to right there), so results agree to double rounding before the cast
// back to T.
//
// Launch (all three): warp groups grid_for(rows · 32) blocks of 256, block groups
// grid_for(rows · 256) blocks of 256; grid-stride over rows.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/row_group.cuh"
#include "kernels/reduce.h"

namespace mmg::cuda {

constexpr int64_t kStatsWarpRowMax = 1024;

// max that lets a NaN win (p = inf norms: max |x| of a row holding NaN is NaN).
struct NanMaxOp {
  __device__ double operator()(double a, double b) const { return isnan(a) ? a : (isnan(b) ? b : fmax(a, b)); }
};

// ---- var / std ----
// Pass 1: the mean. Pass 2: Σ (x − mean)² (two-pass, no cancellation of Σx² − n·mean²).
template <bool Block, bool Sqrt, class T>
__global__ void var_rows_kernel(const T* x, T* out, T* mean, int64_t rows, int64_t cols, double dof) {
  __shared__ double shared[kRowWarps];
  const RowGroup<Block> g;
  for (int64_t r = g.first_row; r < rows; r += g.row_step) {
    const T* row = x + r * cols;
    double s = 0;
    for (int64_t c = g.start; c < cols; c += g.step) s += double(row[c]);
    s = group_all<Block>(s, SumOp{}, shared);
    const double mu = s / double(cols);  // an empty row: 0/0 = NaN, as on the CPU
    double m2 = 0;
    for (int64_t c = g.start; c < cols; c += g.step) {
      const double d = double(row[c]) - mu;
      m2 += d * d;
    }
    m2 = group_all<Block>(m2, SumOp{}, shared);
    if (g.start == 0) {
      const double v = m2 / dof;  // dof = 0: inf, or NaN when m2 = 0 (as PyTorch)
      out[r] = T(Sqrt ? sqrt(v) : v);
      if (mean) mean[r] = T(mu);
    }
  }
}

// ---- logsumexp ----
// Pass 1: m = the max ignoring NaN (fmax drops a NaN operand). Pass 2: Σ exp(x − shift) with
// shift = m when finite, else 0 (so −inf − (−inf) never appears); a NaN in the row makes the
// sum NaN, a +inf makes it inf.
template <bool Block, class T>
__global__ void logsumexp_rows_kernel(const T* x, T* out, T* shift, int64_t rows, int64_t cols) {
  __shared__ double shared[kRowWarps];
  const RowGroup<Block> g;
  for (int64_t r = g.first_row; r < rows; r += g.row_step) {
    const T* row = x + r * cols;
    double m = -INFINITY;
    for (int64_t c = g.start; c < cols; c += g.step) m = fmax(m, double(row[c]));
    m = group_all<Block>(m, MaxOp{}, shared);
    const double sh = isfinite(m) ? m : 0.0;
    double s = 0;
    for (int64_t c = g.start; c < cols; c += g.step) s += exp(double(row[c]) - sh);
    s = group_all<Block>(s, SumOp{}, shared);
    if (g.start == 0) {
      const double v = sh + log(s);
      out[r] = T(v);
      if (shift) shift[r] = T(v == -INFINITY ? 0.0 : v);
    }
  }
}

// ---- p-norms ----
// P: 1, 2 (no pow), 0 for p = inf (max |x|), −1 for any other p (pow).
template <bool Block, int P, class T>
__global__ void norm_rows_kernel(const T* x, T* out, int64_t rows, int64_t cols, double p) {
  __shared__ double shared[kRowWarps];
  const RowGroup<Block> g;
  for (int64_t r = g.first_row; r < rows; r += g.row_step) {
    const T* row = x + r * cols;
    double acc = 0;
    for (int64_t c = g.start; c < cols; c += g.step) {
      const double a = fabs(double(row[c]));
      if constexpr (P == 0) acc = NanMaxOp{}(acc, a);
      else if constexpr (P == 2) acc += a * a;
      else if constexpr (P == 1) acc += a;
      else acc += pow(a, p);
    }
    if constexpr (P == 0) acc = group_all<Block>(acc, NanMaxOp{}, shared);
    else acc = group_all<Block>(acc, SumOp{}, shared);
    if (g.start == 0) {
      double v = acc;
      if constexpr (P == 2) v = sqrt(acc);
      else if constexpr (P == -1) v = pow(acc, 1.0 / p);
      out[r] = T(v);
    }
  }
}

// ---- launches ----
// Runs `launch(block_bool_constant)` with the row group chosen by the row length.
template <class F>
static void launch_rows(int64_t rows, int64_t cols, F&& launch) {
  if (rows == 0) return;
  if (cols <= kStatsWarpRowMax) launch(std::false_type{}, grid_for(rows * 32, kRowBlock));
  else launch(std::true_type{}, grid_for(rows * kRowBlock, kRowBlock));
  MMG_CUDA_LAUNCH_CHECK();
}

template <bool Sqrt, class T>
static void var_or_std_rows(const T* x, T* out, T* mean, int64_t rows, int64_t cols, int64_t correction) {
  const double dof = std::max(0.0, double(cols - correction));
  launch_rows(rows, cols, [&](auto block, unsigned grid) {
    var_rows_kernel<decltype(block)::value, Sqrt, T><<<grid, kRowBlock, 0, current_stream()>>>(x, out, mean, rows, cols,
                                                                                              dof);
  });
}

template <class T>
void var_rows(const T* x, T* out, T* mean, int64_t rows, int64_t cols, int64_t correction) {
  var_or_std_rows<false>(x, out, mean, rows, cols, correction);
}
template <class T>
void std_rows(const T* x, T* out, T* mean, int64_t rows, int64_t cols, int64_t correction) {
  var_or_std_rows<true>(x, out, mean, rows, cols, correction);
}

template <class T>
void logsumexp_rows(const T* x, T* out, T* shift, int64_t rows, int64_t cols) {
  launch_rows(rows, cols, [&](auto block, unsigned grid) {
    logsumexp_rows_kernel<decltype(block)::value, T><<<grid, kRowBlock, 0, current_stream()>>>(x, out, shift, rows, cols);
  });
}

template <class T>
void norm_rows(const T* x, T* out, int64_t rows, int64_t cols, double p) {
  launch_rows(rows, cols, [&](auto block, unsigned grid) {
    constexpr bool B = decltype(block)::value;
    if (std::isinf(p)) norm_rows_kernel<B, 0, T><<<grid, kRowBlock, 0, current_stream()>>>(x, out, rows, cols, p);
    else if (p == 2) norm_rows_kernel<B, 2, T><<<grid, kRowBlock, 0, current_stream()>>>(x, out, rows, cols, p);
    else if (p == 1) norm_rows_kernel<B, 1, T><<<grid, kRowBlock, 0, current_stream()>>>(x, out, rows, cols, p);
    else norm_rows_kernel<B, -1, T><<<grid, kRowBlock, 0, current_stream()>>>(x, out, rows, cols, p);
  });
}

#define MMG_STATS(T)                                                        \
  template void var_rows<T>(const T*, T*, T*, int64_t, int64_t, int64_t); \
  template void std_rows<T>(const T*, T*, T*, int64_t, int64_t, int64_t); \
  template void logsumexp_rows<T>(const T*, T*, T*, int64_t, int64_t);    \
  template void norm_rows<T>(const T*, T*, int64_t, int64_t, double);
MMG_STATS(float)
MMG_STATS(double)
#undef MMG_STATS

}  // namespace mmg::cuda
