// losses: cross-entropy over class logits, and two image–text matching losses
// (CLIP's symmetric InfoNCE and the hinge ranking loss of VSE models).
//
// All buffers are contiguous row-major. Kernels assume valid input (targets in [0, C) or
// equal to ignore_index, N >= 1); the op layer in core/ checks arguments. Sums that make a
// scalar are taken per row and then added in row order, so results do not depend on the
// number of threads.
#pragma once
#include <cstdint>

namespace mmg::cpu {

// ---------------------------------------------------------------------------------------
// cross_entropy: logits x [N, C], integer targets t [N], label smoothing ε.
//
// Row i's target distribution (as PyTorch): q_i = (1 − ε)·onehot(t_i) + ε/C.
// With lse_i = log Σ_c exp x_ic and log p_ic = x_ic − lse_i:
//   ℓ_i  = −Σ_c q_ic log p_ic = lse_i − (1 − ε)·x_{i,t_i} − (ε/C)·Σ_c x_ic
//   loss = (1/n) Σ_{i : t_i ≠ ignore_index} ℓ_i,   n = number of rows not ignored
//   ∂loss/∂x_ic = (p_ic − q_ic)/n for rows not ignored, 0 for ignored rows.
//
// Every row ignored (n = 0): loss = 0 and all gradients 0. PyTorch returns 0/0 = NaN here;
// we return 0 because such a batch (say, a text batch that is all padding) carries no signal,
// and a NaN would poison the running loss and, through the optimiser, every weight.
//
// forward writes loss_out[0], lse[N] (saved for backward; also for ignored rows) and
// count_out[0] = n. backward writes (overwrites) dlogits[N, C] = grad_loss · ∂loss/∂x.
template <class T>
void cross_entropy_forward(const T* logits, const int64_t* target, int64_t N, int64_t C,
                           int64_t ignore_index, T label_smoothing, T* loss_out, T* lse,
                           int64_t* count_out);
template <class T>
void cross_entropy_backward(const T* logits, const int64_t* target, const T* lse, int64_t N,
                            int64_t C, int64_t ignore_index, T label_smoothing, T grad_loss,
                            T* dlogits);

// ---------------------------------------------------------------------------------------
// clip_loss: symmetric InfoNCE over N matching pairs (CLIP).
// Inputs: img u [N, d], txt v [N, d] (the caller L2-normalises them; this op does not), and
// the log of the temperature scale, t (s = exp t, learned in log space so it stays > 0).
//
//   L_ij = s·⟨u_i, v_j⟩                                     logits, N×N
//   r_i  = log Σ_j exp L_ij     (row lse: image i against every text)
//   c_j  = log Σ_i exp L_ij     (column lse: text j against every image)
//   loss = ½·[ (1/N) Σ_i (r_i − L_ii) + (1/N) Σ_j (c_j − L_jj) ]
//        = ½ CE(L, arange) + ½ CE(Lᵀ, arange)
//
// Backward, with P_ij = exp(L_ij − r_i) (row softmax), Q_ij = exp(L_ij − c_j) (column
// softmax) and g = grad_loss:
//   G_ij  = ∂(g·loss)/∂L_ij = g/(2N) · (P_ij + Q_ij − 2·δ_ij)
//   d u   = s · G · v          (∂L_ij/∂u_i = s·v_j)
//   d v   = s · Gᵀ · u         (∂L_ij/∂v_j = s·u_i)
//   d t   = Σ_ij G_ij · L_ij   (∂L_ij/∂t = ∂(e^t⟨u_i,v_j⟩)/∂t = L_ij)
//
// The N×N logits are never stored: both passes recompute them a tile of rows at a time with
// gemm (memory O(tile·N)). The forward keeps a running (max, sum) per column, so the column
// lse comes out of the same row-tile pass (the online log-sum-exp of flash attention).
// forward writes loss_out[0], row_lse[N], col_lse[N]; backward overwrites d_img, d_txt and
// d_logit_scale[0].
template <class T>
void clip_loss_forward(const T* img, const T* txt, int64_t N, int64_t d, T logit_scale,
                       T* loss_out, T* row_lse, T* col_lse);
template <class T>
void clip_loss_backward(const T* img, const T* txt, int64_t N, int64_t d, T logit_scale,
                        const T* row_lse, const T* col_lse, T grad_loss, T* d_img, T* d_txt,
                        T* d_logit_scale);

// ---------------------------------------------------------------------------------------
// hinge_ranking_loss: bidirectional max-margin ranking loss over N matching pairs (VSE).
//
//   S_ij = ⟨u_i, v_j⟩        (img u [N, d], txt v [N, d]; margin m)
//   loss = (1/N) Σ_i Σ_{j≠i} [ max(0, m − S_ii + S_ij)      image i, wrong text j
//                            + max(0, m − S_ii + S_ji) ]    text i, wrong image j
//
// Backward, with indicators (subgradient 0 at the kink, i.e. strict > 0)
//   a_ij = [m − S_ii + S_ij > 0],  b_ij = [m − S_jj + S_ij > 0]   (i ≠ j)
// where a_ij says "text j violates image i's margin" and b_ij "image i violates text j's":
//   G_ij = g/N · (a_ij + b_ij)                         i ≠ j
//   G_ii = −g/N · Σ_{j≠i} (a_ij + b_ji)
//   d u  = G · v,   d v = Gᵀ · u
// Like clip_loss it runs over row tiles of S and never stores the N×N matrix. The diagonal
// G_ii needs a row count (Σ_j a_ij, inside the tile) and a column count (Σ_j b_ji, spread
// over every tile): the column counts are gathered during the pass and their share of
// d u_i, d v_i (−g/N · count_i · v_i and · u_i) is added at the end.
template <class T>
void hinge_ranking_loss_forward(const T* img, const T* txt, int64_t N, int64_t d, T margin,
                                T* loss_out);
template <class T>
void hinge_ranking_loss_backward(const T* img, const T* txt, int64_t N, int64_t d, T margin,
                                 T grad_loss, T* d_img, T* d_txt);

}  // namespace mmg::cpu

// ---- CUDA (kernels/cuda/losses.cu) ----
// Fused cross-entropy on a CUDA device: plain C++ declarations, the math of cross_entropy
// above. logits [N, C] contiguous, target [N] i64 with
// every entry in [0, C) or equal to ignore_index (the op checks that first); device memory
// of the current device.
// Declared in every build; defined only where CUDA is compiled, and core/ calls them only
// under `if constexpr (kWithCuda)` (core/device.h).
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
