// Row-major products as cuBLASLt's column-major ones (the mapping kernels/cuda/gemm.cu uses),
// in plain C++ so that the CPU tests can check it against a host emulation of cuBLASLt's own
// definition (tests/kernels/test_lt_layout.cpp), epilogues included.
//
// A row-major matrix with leading dimension ld is, byte for byte, its transpose stored
// column-major with the same ld. So the row-major C [M,N] = op(A)·op(B) is the column-major
//   D = Cᵀ = op(B)ᵀ · op(A)ᵀ        (N×M: m = N, n = M, k = K)
// with B as cuBLASLt's first operand and A as its second, each keeping its own trans flag:
// B stored row-major K×N is the column-major N×K matrix op(B)ᵀ itself (no transpose), and B
// stored N×K (trans_b) is its transpose. No data moves.
#pragma once
#include <cstdint>

namespace mmg::cuda {

// A product as gemm_batched takes it: row-major C [M,N] = op(A) [M,K] · op(B) [K,N].
struct RowMajorGemm {
  bool trans_a = false, trans_b = false;
  int64_t M = 0, N = 0, K = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
};

// A matrix as cuBLASLt describes it: stored column-major rows×cols with leading dimension ld
// (element (r, c) at r + c·ld), used in the product as Xᵀ when trans, else X.
struct LtMatrix {
  bool trans = false;
  int64_t rows = 0, cols = 0, ld = 0;
};

// cuBLASLt's D = op(first) · op(second), D stored column-major (its C has D's layout).
struct LtGemm {
  LtMatrix first, second, d;
};

inline LtGemm to_column_major(const RowMajorGemm& g) {
  LtGemm lt;
  // First: our B, stored column-major as (trans_b ? K×N : N×K).
  lt.first = {g.trans_b, g.trans_b ? g.K : g.N, g.trans_b ? g.N : g.K, g.ldb};
  // Second: our A, stored column-major as (trans_a ? M×K : K×M).
  lt.second = {g.trans_a, g.trans_a ? g.M : g.K, g.trans_a ? g.K : g.M, g.lda};
  lt.d = {false, g.N, g.M, g.ldc};
  return lt;
}

// ---- linear's two products (x [M,K], W [N,K], G [M,N], all contiguous) ----
// y [M,N] = x · Wᵀ. D = yᵀ has one row per output feature: the BIAS epilogue's bias (one
// value per row of D) is the layer's bias vector.
inline RowMajorGemm linear_forward_gemm(int64_t M, int64_t N, int64_t K) { return {false, true, M, N, K, K, K, N}; }

// ∂L/∂W [N,K] = Gᵀ · x, a product of inner size M. cuBLASLt's second operand is Gᵀ, so the
// BGRADB epilogue's sum of it over the inner dim (one value per column of D, i.e. per row of
// ∂L/∂W) is Σ_m G[m,:] = ∂L/∂b.
inline RowMajorGemm linear_weight_grad_gemm(int64_t M, int64_t N, int64_t K) { return {true, false, N, K, M, N, K, K}; }

}  // namespace mmg::cuda
