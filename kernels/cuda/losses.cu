// Fused cross-entropy: the math of kernels/losses.h.
//
// cross_entropy_rows_kernel: a row per group (kernels/cuda/row_group.cuh: a warp for rows
//   of up to 1024 classes, else a block). Three butterfly reductions over the row — the max
//   m, Σ exp(x − m) and Σ x (the last only with label smoothing) — give
//   lse = m + log Σ exp(x − m) and the row's loss; one thread of the group writes both. The
//   mean over rows is left to the op (a sum kernel over row_loss), so no atomics and the
//   same result on every run.
// cross_entropy_backward_kernel: a 1-D grid-stride loop over the N·C logits, each thread
//   writing dx_ic = g/n · (exp(x_ic − lse_i) − q_ic) (256 threads a block, grid_for(N·C)).
#include <cmath>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/row_group.cuh"
#include "kernels/losses.h"

namespace mmg::cuda {

constexpr int64_t kWarpRowMax = 1024;

template <bool Block, class T>
__global__ void cross_entropy_rows_kernel(const T* logits, const int64_t* target, int64_t N, int64_t C,
                                          int64_t ignore_index, T eps, T* lse, double* row_loss) {
  __shared__ T shared[kRowWarps];
  __shared__ double shared_sum[kRowWarps];
  const RowGroup<Block> g;
  for (int64_t i = g.first_row; i < N; i += g.row_step) {
    const T* x = logits + i * C;
    T m = -INFINITY;
    for (int64_t c = g.start; c < C; c += g.step) m = fmax(m, x[c]);
    m = group_all<Block>(m, MaxOp{}, shared);
    T s = 0;
    double sx = 0;  // Σ x in double, as on the CPU
    for (int64_t c = g.start; c < C; c += g.step) {
      s += exp(x[c] - m);
      sx += double(x[c]);
    }
    s = group_all<Block>(s, SumOp{}, shared);
    if (eps != T(0)) sx = group_all<Block>(sx, SumOp{}, shared_sum);  // eps is the same for every thread
    if (g.start == 0) {
      const T l = m + log(s);
      lse[i] = l;
      const int64_t t = target[i];
      double loss = 0.0;
      if (t != ignore_index) {
        loss = double(l) - (1.0 - double(eps)) * double(x[t]);
        if (eps != T(0)) loss -= double(eps) / double(C) * sx;
      }
      row_loss[i] = loss;
    }
  }
}

template <class T>
__global__ void cross_entropy_backward_kernel(const T* logits, const int64_t* target, const T* lse, int64_t N,
                                              int64_t C, int64_t ignore_index, T eps, const T* grad_loss, int64_t n,
                                              T* dlogits) {
  const T scale = n > 0 ? grad_loss[0] / T(n) : T(0);
  const T q_off = eps / T(C);        // q_ic for c ≠ t_i
  const T q_on = T(1) - eps + q_off;  // q_ic for c = t_i
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < N * C; k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = k / C, c = k % C;
    const int64_t t = target[i];
    if (t == ignore_index || n == 0) {
      dlogits[k] = T(0);
      continue;
    }
    T d = scale * (exp(logits[k] - lse[i]) - q_off);
    if (c == t) d -= scale * (q_on - q_off);
    dlogits[k] = d;
  }
}

template <class T>
void cross_entropy_rows(const T* logits, const int64_t* target, int64_t N, int64_t C, int64_t ignore_index,
                        T label_smoothing, T* lse, double* row_loss) {
  if (N == 0) return;
  if (C <= kWarpRowMax) {
    cross_entropy_rows_kernel<false, T><<<grid_for(N * 32, kRowBlock), kRowBlock, 0, current_stream()>>>(
        logits, target, N, C, ignore_index, label_smoothing, lse, row_loss);
  } else {
    cross_entropy_rows_kernel<true, T><<<grid_for(N * kRowBlock, kRowBlock), kRowBlock, 0, current_stream()>>>(
        logits, target, N, C, ignore_index, label_smoothing, lse, row_loss);
  }
  MMG_CUDA_LAUNCH_CHECK();
}

template <class T>
void cross_entropy_backward(const T* logits, const int64_t* target, const T* lse, int64_t N, int64_t C,
                            int64_t ignore_index, T label_smoothing, const T* grad_loss, int64_t n, T* dlogits) {
  if (N * C == 0) return;
  cross_entropy_backward_kernel<T><<<grid_for(N * C, kRowBlock), kRowBlock, 0, current_stream()>>>(
      logits, target, lse, N, C, ignore_index, label_smoothing, grad_loss, n, dlogits);
  MMG_CUDA_LAUNCH_CHECK();
}

template void cross_entropy_rows<float>(const float*, const int64_t*, int64_t, int64_t, int64_t, float, float*,
                                        double*);
template void cross_entropy_rows<double>(const double*, const int64_t*, int64_t, int64_t, int64_t, double, double*,
                                         double*);
template void cross_entropy_backward<float>(const float*, const int64_t*, const float*, int64_t, int64_t, int64_t,
                                            float, const float*, int64_t, float*);
template void cross_entropy_backward<double>(const double*, const int64_t*, const double*, int64_t, int64_t, int64_t,
                                             double, const double*, int64_t, double*);

}  // namespace mmg::cuda
