// Fused image–text pair losses on a CUDA device (kernels/cuda/contrastive.cu): CLIP's
// symmetric InfoNCE (clip_loss) and the bidirectional hinge ranking loss, forward and
// backward, with the math of kernels/losses.h — computed by tiles, so the N×N score matrix
// is never stored: memory O(N·d) (plus O(N) of per-row results).
//
// Plain C++ declarations. img u and txt v are [N, d] contiguous, N >= 1; device memory of the
// current device; T: float, double. Scalars that the previous kernel produced (the log scale
// t, the incoming gradient g) are read from device memory, so the host never waits for them.
// Every output is overwritten. Results are deterministic: no atomics, sums in a fixed order.
#pragma once
#include <cstdint>

#include "kernels/half.h"

namespace mmg::cuda {

// The tiling (the host emulation in tests/kernels/test_contrastive_tiling.cpp follows it):
// a block owns kPairTile rows of A and streams the rows of B past them kPairTile at a time;
// a tile of scores is built by steps of kPairChunk elements of d; kPairLanes × kPairLanes
// threads each hold (kPairTile / kPairLanes)² scores — thread (tx, ty) rows ty + kPairLanes·r
// and columns tx + kPairLanes·c; the gradient sums Σ_b G_ab·B_b run by steps of
// kPairGradChunk elements of d.
constexpr int kPairTile = 64;
constexpr int kPairChunk = 16;
constexpr int kPairLanes = 16;
constexpr int kPairGradChunk = 64;

// clip_loss forward: row_lse[i] = r_i = log Σ_j exp L_ij, col_lse[j] = c_j = log Σ_i exp L_ij,
// loss_out[0] = ½·mean(r_i − L_ii) + ½·mean(c_j − L_jj), L = exp(t)·u·vᵀ, t = log_scale[0].
// work: N elements of scratch (the matching scores ⟨u_i, v_i⟩).
template <class T>
void clip_loss_forward(const T* img, const T* txt, int64_t N, int64_t d, const T* log_scale, T* loss_out,
                       T* row_lse, T* col_lse, T* work);

// clip_loss backward, from the forward's row_lse and col_lse and g = grad_loss[0]:
// d_img = s·G·v, d_txt = s·Gᵀ·u, d_log_scale[0] = Σ_ij G_ij·L_ij with
// G_ij = g/(2N)·(P_ij + Q_ij − 2δ_ij). work: N doubles (each row's share of d t).
template <class T>
void clip_loss_backward(const T* img, const T* txt, int64_t N, int64_t d, const T* log_scale, const T* row_lse,
                        const T* col_lse, const T* grad_loss, T* d_img, T* d_txt, T* d_log_scale, double* work);

// hinge_ranking_loss forward: loss_out[0] = (1/N)·Σ_i Σ_{j≠i} [m − S_ii + S_ij]₊ + [m − S_jj + S_ij]₊,
// S = u·vᵀ. diag: N elements of scratch (S_ii); row_work: N doubles (each row's hinges).
template <class T>
void hinge_ranking_loss_forward(const T* img, const T* txt, int64_t N, int64_t d, T margin, T* loss_out, T* diag,
                                double* row_work);

// hinge_ranking_loss backward, g = grad_loss[0]: d_img = G·v, d_txt = Gᵀ·u with the G of
// kernels/losses.h. diag: N elements of scratch; count_work: 2·N doubles (the two margin
// counts of each diagonal element).
template <class T>
void hinge_ranking_loss_backward(const T* img, const T* txt, int64_t N, int64_t d, T margin, const T* grad_loss,
                                 T* d_img, T* d_txt, T* diag, double* count_work);

// ---- version 3: tensor cores (kernels/cuda/contrastive_mma.cu) ----
// clip_loss for T = bf16, f16 embeddings on mma.sync (compute capability 8.0 or newer): the
// same outputs as above with u·vᵀ and G·v on the tensor cores, f32 accumulation; the log scale,
// the incoming gradient, lse, the loss and d t are f32; d img and d txt come back in T. The tile
// geometry is in kernels/cuda/clip_mma_tiling.h.
// forward work: diag, N floats (the matching scores L_ii).
template <class T>
void clip_loss_mma_forward(const T* img, const T* txt, int64_t N, int64_t d, const float* log_scale, float* loss_out,
                           float* row_lse, float* col_lse, float* diag);

// backward work: partial, N·d floats (the running sums of G·v, then of Gᵀ·u); dt_rows, N
// doubles (each row's share of d t).
template <class T>
void clip_loss_mma_backward(const T* img, const T* txt, int64_t N, int64_t d, const float* log_scale,
                            const float* row_lse, const float* col_lse, const float* grad_loss, T* d_img, T* d_txt,
                            float* d_log_scale, float* partial, double* dt_rows);

}  // namespace mmg::cuda
