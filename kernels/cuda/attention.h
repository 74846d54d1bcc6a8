// Scaled dot-product attention on a CUDA device, "v1": the plain path through the scores.
// (kernels/cuda/attention.cu; the semantics are those of kernels/attention.h.)
//
// Per (b, h), the op (core/ops/attention.cpp) runs
//   S = scale · Q Kᵀ                 gemm_batched, S [B·H, Sq, Sk] in device memory
//   P = masked_softmax_rows(S)       the kernel below, in place
//   O = P V                          gemm_batched
// and keeps P for the backward:
//   dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ⊙ (dP − Σ_j dP ⊙ P)  (softmax_backward),
//   dQ = scale · dS K,  dK = scale · dSᵀ Q.
// Memory is O(B·H·Sq·Sk), unlike the fused CPU kernel: this is the version that is easy to
// check; a fused (flash) kernel is the next one.
#pragma once
#include <cstdint>

namespace mmg::cuda {

// In place over s [B·H·Sq, Sk] (row r = ((b·H + h)·Sq + i)): key j is visible to query i
// when key_mask is null or key_mask[b·Sk + j] != 0, and (causal) j <= i. Then
//   s_ij ← exp(s_ij − m_i) / Σ_{visible j'} exp(s_ij' − m_i)   for visible j,  0 otherwise,
// m_i the max over visible keys. A row with no visible key becomes all zeros (the CPU op's
// zero output and zero gradient for such a query). T: float, double.
template <class T>
void attention_masked_softmax(T* s, const uint8_t* key_mask, int64_t B, int64_t H, int64_t Sq, int64_t Sk,
                              bool causal);

}  // namespace mmg::cuda
