// Fused cross-entropy on a CUDA device (kernels/cuda/losses.cu): plain C++ declarations, the
// math of kernels/losses.h (cross_entropy). logits [N, C] contiguous, target [N] i64 with
// every entry in [0, C) or equal to ignore_index (the op checks that first); device memory
// of the current device.
#pragma once
#include <cstdint>

namespace mmg::cuda {

// Per row: lse[i] = log Σ_c exp x_ic, and row_loss[i] = lse_i − (1 − ε)·x_{i,t_i} − (ε/C)·Σ_c x_ic
// (0 for ignored rows), in double so that the op's mean over rows adds them as the CPU does.
// T: float, double.
template <class T>
void cross_entropy_rows(const T* logits, const int64_t* target, int64_t N, int64_t C, int64_t ignore_index,
                        T label_smoothing, T* lse, double* row_loss);

// dlogits[i, c] = g·(p_ic − q_ic)/n for rows not ignored, 0 for ignored rows (and all rows
// when n = 0); p = exp(x − lse), q = (1 − ε)·onehot(t_i) + ε/C, g = grad_loss[0] (a device
// scalar: the host never waits for it), n = the number of rows not ignored.
template <class T>
void cross_entropy_backward(const T* logits, const int64_t* target, const T* lse, int64_t N, int64_t C,
                            int64_t ignore_index, T label_smoothing, const T* grad_loss, int64_t n, T* dlogits);

}  // namespace mmg::cuda
