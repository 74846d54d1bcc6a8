// The masked, causal row softmax of attention v1, and its dropout of the weights
// (kernels/cuda/attention.h).
//
// Softmax launch: like the plain softmax (kernels/cuda/softmax.cu): a warp per row when
// Sk <= 1024 (8 rows per block of 256), else a block of 256 per row; grid-stride over the
// B·H·Sq rows. Three passes over the row: the max over visible keys, the sum of
// exponentials, the write (0 for hidden keys). Which keys are visible is recomputed in each
// pass from the mask byte and j <= i — cheaper than storing a mask of the scores' size.
//
// Dropout launch: a 1-D grid-stride loop over the B·H·Sq·Sk weights, 256 threads a block,
// like kernels/cuda/dropout.cu: element n draws from counter base + n whichever thread
// takes it, so the mask is the one the CPU kernel and v2 draw for the same weight.
#include <cmath>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/row_group.cuh"

namespace mmg::cuda {

constexpr int64_t kAttentionWarpRowMax = 1024;

template <bool Block, class T>
__global__ void attention_masked_softmax_kernel(T* s, const uint8_t* key_mask, int64_t H, int64_t Sq, int64_t Sk,
                                                bool causal, int64_t rows) {
  __shared__ T shared[kRowWarps];
  const RowGroup<Block> g;
  for (int64_t r = g.first_row; r < rows; r += g.row_step) {
    const int64_t i = r % Sq, b = r / (Sq * H);
    const uint8_t* mask = key_mask ? key_mask + b * Sk : nullptr;
    // Keys j > i are hidden under causal: only j < limit are candidates.
    const int64_t limit = causal ? (i + 1 < Sk ? i + 1 : Sk) : Sk;
    T* row = s + r * Sk;
    T m = -INFINITY;
    for (int64_t j = g.start; j < limit; j += g.step)
      if (!mask || mask[j]) m = fmax(m, row[j]);
    m = group_all<Block>(m, MaxOp{}, shared);
    T sum = 0;
    if (m != -INFINITY)
      for (int64_t j = g.start; j < limit; j += g.step)
        if (!mask || mask[j]) sum += exp(row[j] - m);
    sum = group_all<Block>(sum, SumOp{}, shared);
    // No visible key: m = −inf and sum = 0; the row becomes zeros.
    const T inv = sum > T(0) ? T(1) / sum : T(0);
    for (int64_t j = g.start; j < Sk; j += g.step) {
      const bool visible = j < limit && (!mask || mask[j]);
      row[j] = visible ? exp(row[j] - m) * inv : T(0);
    }
  }
}

template <class T>
void attention_masked_softmax(T* s, const uint8_t* key_mask, int64_t B, int64_t H, int64_t Sq, int64_t Sk,
                              bool causal) {
  const int64_t rows = B * H * Sq;
  if (rows == 0 || Sk == 0) return;
  if (Sk <= kAttentionWarpRowMax) {
    attention_masked_softmax_kernel<false, T><<<grid_for(rows * 32, kRowBlock), kRowBlock, 0, current_stream()>>>(
        s, key_mask, H, Sq, Sk, causal, rows);
  } else {
    attention_masked_softmax_kernel<true, T><<<grid_for(rows * kRowBlock, kRowBlock), kRowBlock, 0, current_stream()>>>(
        s, key_mask, H, Sq, Sk, causal, rows);
  }
  MMG_CUDA_LAUNCH_CHECK();
}

constexpr int kDropoutBlock = 256;

template <class T>
__global__ void attention_dropout_weights_kernel(const T* x, T* y, int64_t n, AttentionDropout drop) {
  const T kept = static_cast<T>(drop.scale);
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x)
    y[e] = attention_dropout_keep(drop, e) ? x[e] * kept : T(0);
}

template <class T>
void attention_dropout_weights(const T* x, T* y, int64_t n, const AttentionDropout& drop) {
  if (n == 0) return;
  attention_dropout_weights_kernel<T><<<grid_for(n, kDropoutBlock), kDropoutBlock, 0, current_stream()>>>(x, y, n,
                                                                                                          drop);
  MMG_CUDA_LAUNCH_CHECK();
}

template void attention_masked_softmax<float>(float*, const uint8_t*, int64_t, int64_t, int64_t, int64_t, bool);
template void attention_masked_softmax<double>(double*, const uint8_t*, int64_t, int64_t, int64_t, int64_t, bool);

template void attention_dropout_weights<float>(const float*, float*, int64_t, const AttentionDropout&);
template void attention_dropout_weights<double>(const double*, double*, int64_t, const AttentionDropout&);

}  // namespace mmg::cuda
