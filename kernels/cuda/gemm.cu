// Matrix products through cuBLASLt.
//
// cuBLAS(Lt) thinks in column-major, the engine in row-major: the row-major C = op(A)·op(B)
// is computed as the column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, B passed as cuBLAS's first operand and
// A as its second, no data moved (kernels/cuda/lt_layout.h spells the mapping out; the CPU
// tests check it against a host emulation of cuBLASLt's definition).
//
// Each call describes the operation (compute type, transposes) and the three layouts, asks
// the heuristic for the best algorithm with a fixed workspace, and queues the product on
// the device's compute stream. Batches go in one call with strided batch offsets; a batch
// that shares one operand (stride 0) runs as one call per product instead, since cuBLASLt's
// documentation does not promise stride-0 batches.
//
// The handle and the 32 MiB workspace are made once per device and kept for the process.
//
// Epilogues (linear's bias, linear_bias_forward / linear_weight_bias_backward): cuBLASLt can
// finish a product with more than alpha·AB + beta·C as it writes D. Two of them save linear a
// pass over memory:
//   BIAS     D = AB + bias·1ᵀ: the bias (one value per row of D) added in the epilogue. Our
//            y [M,N] row-major is D = yᵀ (N×M) column-major, so D's rows are y's columns,
//            the output features, and the bias is the layer's bias vector as it is.
//   BGRADB   D = AB and bias = Σ_k B[k,:]: the sum, over the inner dim k, of cuBLAS's second
//            operand, one value per column of D. For ∂L/∂W = Gᵀ·x, cuBLAS's second operand is
//            our first, Gᵀ (see above: the operands swap), k runs over the rows of G, and D's
//            columns are W's rows: the sum is Σ_m G[m,:] = ∂L/∂b.
// Bias vectors have the type of D (cuBLASLt's default). An epilogue is optional: when the
// heuristic offers no algorithm for it, nothing is queued and the caller composes the steps.
#include <cublasLt.h>

#include <atomic>
#include <mutex>
#include <type_traits>
#include <vector>

#include "kernels/copy.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/lt_layout.h"
#include "kernels/gemm.h"

namespace mmg::cuda {

constexpr size_t kWorkspaceBytes = size_t{32} << 20;

static std::atomic<bool> g_tf32{false};
void set_gemm_tf32(bool allow) { g_tf32 = allow; }

// The cuBLAS types of a product of T: its data type and compute type (the scale type, of
// alpha and beta, is f64 for double and f32 otherwise).
template <class T>
struct LtTypes;
template <>
struct LtTypes<double> {
  static cudaDataType_t data() { return CUDA_R_64F; }
  static cublasComputeType_t compute() { return CUBLAS_COMPUTE_64F; }
};
template <>
struct LtTypes<float> {
  static cudaDataType_t data() { return CUDA_R_32F; }
  static cublasComputeType_t compute() { return g_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F; }
};
template <>
struct LtTypes<bf16> {
  static cudaDataType_t data() { return CUDA_R_16BF; }
  static cublasComputeType_t compute() { return CUBLAS_COMPUTE_32F; }
};
template <>
struct LtTypes<f16> {
  static cudaDataType_t data() { return CUDA_R_16F; }
  static cublasComputeType_t compute() { return CUBLAS_COMPUTE_32F; }
};

struct LtDevice {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
};

static LtDevice& lt_device() {
  static std::mutex mu;
  static auto* devices = new std::vector<LtDevice>();
  int d = 0;
  MMG_CUDA_CHECK(cudaGetDevice(&d));
  std::lock_guard<std::mutex> lock(mu);
  if (d >= static_cast<int>(devices->size())) devices->resize(d + 1);
  LtDevice& dev = (*devices)[d];
  if (dev.handle == nullptr) {
    MMG_CUBLAS_CHECK(cublasLtCreate(&dev.handle));
    MMG_CUDA_CHECK(cudaMalloc(&dev.workspace, kWorkspaceBytes));
  }
  return dev;
}

// A matrix layout descriptor, destroyed on scope exit.
struct Layout {
  cublasLtMatrixLayout_t desc = nullptr;
  Layout(cudaDataType_t type, int64_t rows, int64_t cols, int64_t ld, int64_t batch, int64_t stride) {
    MMG_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&desc, type, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols), ld));
    if (batch > 1) {
      const int32_t count = static_cast<int32_t>(batch);
      MMG_CUBLAS_CHECK(
          cublasLtMatrixLayoutSetAttribute(desc, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count));
      MMG_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(desc, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                        sizeof stride));
    }
  }
  ~Layout() { cublasLtMatrixLayoutDestroy(desc); }
  Layout(const Layout&) = delete;
  Layout& operator=(const Layout&) = delete;
};

// What cuBLASLt does as it writes D (see the file comment): nothing more, or an epilogue
// with its bias vector (read for BIAS, written for BGRADB).
struct Epilogue {
  cublasLtEpilogue_t kind = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;
};

struct MatmulDesc {
  cublasLtMatmulDesc_t desc = nullptr;
  MatmulDesc(cublasComputeType_t compute, cudaDataType_t scale, bool trans_first, bool trans_second,
             const Epilogue& epilogue) {
    MMG_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, compute, scale));
    const cublasOperation_t ta = trans_first ? CUBLAS_OP_T : CUBLAS_OP_N, tb = trans_second ? CUBLAS_OP_T : CUBLAS_OP_N;
    MMG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    MMG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (epilogue.kind != CUBLASLT_EPILOGUE_DEFAULT) {
      // Set before the heuristic runs: it reads the bias pointer's alignment.
      MMG_CUBLAS_CHECK(
          cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue.kind, sizeof epilogue.kind));
      MMG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &epilogue.bias,
                                                      sizeof epilogue.bias));
    }
  }
  ~MatmulDesc() { cublasLtMatmulDescDestroy(desc); }
  MatmulDesc(const MatmulDesc&) = delete;
  MatmulDesc& operator=(const MatmulDesc&) = delete;
};

// The alignment (a power of two, at most 256 bytes) that every matrix of a batch has: the
// heuristic assumes 256 unless told, and a view (a slice, one matrix of a batch) may start
// anywhere an element can.
static uint32_t alignment_of(const void* p, int64_t batch_stride_bytes) {
  uint64_t bits = reinterpret_cast<uint64_t>(p) | 256u;
  if (batch_stride_bytes != 0) bits |= static_cast<uint64_t>(batch_stride_bytes);
  return static_cast<uint32_t>(bits & (~bits + 1));  // the lowest set bit
}

struct Preference {
  cublasLtMatmulPreference_t pref = nullptr;
  // Alignments of cuBLAS's operands A (first), B (second) and C = D.
  Preference(uint32_t align_a, uint32_t align_b, uint32_t align_c) {
    MMG_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const size_t bytes = kWorkspaceBytes;
    MMG_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &bytes,
                                                          sizeof bytes));
    MMG_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a,
                                                          sizeof align_a));
    MMG_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b,
                                                          sizeof align_b));
    MMG_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c,
                                                          sizeof align_c));
    MMG_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c,
                                                          sizeof align_c));
  }
  ~Preference() { cublasLtMatmulPreferenceDestroy(pref); }
  Preference(const Preference&) = delete;
  Preference& operator=(const Preference&) = delete;
};

// A status that means "not with these settings" rather than a failure: what an optional
// epilogue gets back when cuBLASLt has no kernel for it (the heuristic answers NOT_SUPPORTED,
// or INVALID_VALUE for some shapes, e.g. a single row or column).
static bool refused(cublasStatus_t s) { return s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_INVALID_VALUE; }

// One cuBLASLt call: `batch` products with the given batch strides (row-major arguments).
// With an epilogue, returns false (nothing queued) when cuBLASLt refuses it; without one,
// every failure is an mmg::Error and the result is true.
template <class T>
static bool lt_matmul(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, gemm_scalar_t<T> alpha,
                      const T* A, int64_t lda, const T* B, int64_t ldb, gemm_scalar_t<T> beta, T* C, int64_t ldc,
                      int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c,
                      const Epilogue& epilogue = {}) {
  const cudaDataType_t type = LtTypes<T>::data();
  const cudaDataType_t scale = std::is_same_v<T, double> ? CUDA_R_64F : CUDA_R_32F;
  const bool optional = epilogue.kind != CUBLASLT_EPILOGUE_DEFAULT;
  LtDevice& dev = lt_device();
  // cuBLAS's first operand is our B, its second our A, its D our Cᵀ (lt_layout.h).
  const LtGemm lt = to_column_major({trans_a, trans_b, M, N, K, lda, ldb, ldc});
  MatmulDesc op(LtTypes<T>::compute(), scale, lt.first.trans, lt.second.trans, epilogue);
  Layout first(type, lt.first.rows, lt.first.cols, lt.first.ld, batch, stride_b);
  Layout second(type, lt.second.rows, lt.second.cols, lt.second.ld, batch, stride_a);
  Layout out(type, lt.d.rows, lt.d.cols, lt.d.ld, batch, stride_c);
  const int64_t sz = sizeof(T);
  Preference pref(alignment_of(B, batch > 1 ? stride_b * sz : 0), alignment_of(A, batch > 1 ? stride_a * sz : 0),
                  alignment_of(C, batch > 1 ? stride_c * sz : 0));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t asked = cublasLtMatmulAlgoGetHeuristic(dev.handle, op.desc, first.desc, second.desc, out.desc,
                                                              out.desc, pref.pref, 1, &result, &found);
  if (optional && (refused(asked) || (asked == CUBLAS_STATUS_SUCCESS && found == 0))) return false;
  MMG_CUBLAS_CHECK(asked);
  if (found == 0) throw_error(__FILE__, __LINE__, "cuBLASLt: no algorithm for this matrix product");
  const cublasStatus_t ran = cublasLtMatmul(dev.handle, op.desc, &alpha, B, first.desc, A, second.desc, &beta, C,
                                            out.desc, C, out.desc, &result.algo, dev.workspace, kWorkspaceBytes,
                                            current_stream());
  if (optional && refused(ran)) return false;  // refused before anything was queued
  MMG_CUBLAS_CHECK(ran);
  return true;
}

template <class T>
void gemm_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, gemm_scalar_t<T> alpha, const T* A,
                  int64_t lda, const T* B, int64_t ldb, gemm_scalar_t<T> beta, T* C, int64_t ldc, int64_t batch,
                  int64_t stride_a, int64_t stride_b, int64_t stride_c) {
  if (M == 0 || N == 0 || batch == 0) return;
  if (K == 0) {
    // An empty inner dim: C = beta·C. The engine uses beta = 1 (C unchanged) and beta = 0 (C = 0).
    if (beta == 1) return;
    if (beta != 0) throw_error(__FILE__, __LINE__, "cuda::gemm_batched: K = 0 needs beta = 0 or 1");
    if (ldc == N && (batch == 1 || stride_c == M * N)) {
      fill<T>(C, batch * M * N, T(0));
    } else {
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t m = 0; m < M; ++m) fill<T>(C + b * stride_c + m * ldc, N, T(0));
    }
    return;
  }
  if (batch > 1 && (stride_a == 0 || stride_b == 0)) {
    for (int64_t b = 0; b < batch; ++b)
      lt_matmul<T>(trans_a, trans_b, M, N, K, alpha, A + b * stride_a, lda, B + b * stride_b, ldb, beta,
                   C + b * stride_c, ldc, 1, 0, 0, 0);
    return;
  }
  lt_matmul<T>(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, batch, stride_a, stride_b, stride_c);
}

// ---- linear with epilogues ----

static std::atomic<int64_t> g_fused{0}, g_composed{0};

GemmEpilogueStats gemm_epilogue_stats() { return {g_fused.load(), g_composed.load()}; }

static bool counted(bool fused) {
  ++(fused ? g_fused : g_composed);
  return fused;
}

// Where an epilogue is worth asking for: W with more than one row and column (cuBLASLt's
// heuristic refuses some single-row or single-column shapes; PyTorch keeps them off this path
// too), at least one row of x, and bias vectors on 16 bytes (one vector access).
static bool epilogue_fits(int64_t M, int64_t N, int64_t K, const void* bias) {
  return M >= 1 && N >= 2 && K >= 2 && reinterpret_cast<uintptr_t>(bias) % 16 == 0;
}

// One product of linear with its epilogue: C = op(A)·op(B) as `g` describes it.
template <class T>
static bool linear_lt_matmul(const RowMajorGemm& g, const T* A, const T* B, T* C, const Epilogue& epilogue) {
  return counted(lt_matmul<T>(g.trans_a, g.trans_b, g.M, g.N, g.K, 1, A, g.lda, B, g.ldb, 0, C, g.ldc, 1, 0, 0, 0,
                              epilogue));
}

template <class T>
bool linear_bias_forward(int64_t M, int64_t N, int64_t K, const T* x, const T* w, const T* bias, T* y) {
  if (!epilogue_fits(M, N, K, bias)) return counted(false);
  // y [M,N] = x · (W stored [N,K])ᵀ, + bias on every row of y (every column of D).
  return linear_lt_matmul<T>(linear_forward_gemm(M, N, K), x, w, y, {CUBLASLT_EPILOGUE_BIAS, bias});
}

template <class T>
bool linear_weight_bias_backward(int64_t M, int64_t N, int64_t K, const T* g, const T* x, T* grad_w, T* grad_b) {
  if (!epilogue_fits(M, N, K, grad_b)) return counted(false);
  // ∂L/∂W [N,K] = (G stored [M,N])ᵀ · x, and its second cuBLAS operand Gᵀ summed over the inner dim.
  return linear_lt_matmul<T>(linear_weight_grad_gemm(M, N, K), g, x, grad_w, {CUBLASLT_EPILOGUE_BGRADB, grad_b});
}

#define MMG_GEMM_INSTANTIATE(T)                                                                              \
  template void gemm_batched<T>(bool, bool, int64_t, int64_t, int64_t, gemm_scalar_t<T>, const T*, int64_t,        \
                                const T*, int64_t, gemm_scalar_t<T>, T*, int64_t, int64_t, int64_t, int64_t, int64_t); \
  template bool linear_bias_forward<T>(int64_t, int64_t, int64_t, const T*, const T*, const T*, T*);            \
  template bool linear_weight_bias_backward<T>(int64_t, int64_t, int64_t, const T*, const T*, T*, T*);
MMG_GEMM_INSTANTIATE(float)
MMG_GEMM_INSTANTIATE(double)
MMG_GEMM_INSTANTIATE(bf16)
MMG_GEMM_INSTANTIATE(f16)

}  // namespace mmg::cuda
