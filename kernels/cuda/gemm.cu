// Matrix products through cuBLASLt.
//
// cuBLAS(Lt) thinks in column-major, the engine in row-major. A row-major matrix with
// leading dimension ld is, byte for byte, its transpose in column-major with the same ld. So
// the row-major product C = op(A)·op(B) (M×N) is computed as the column-major product
//   Cᵀ = op(B)ᵀ · op(A)ᵀ        (N×M, m = N, n = M, k = K)
// with B passed as cuBLAS's first operand and A as its second, each keeping its own trans
// flag: a row-major B stored K×N is the column-major N×K matrix op(B)ᵀ itself (no
// transpose), and one stored N×K (trans_b) is its transpose. No data moves.
//
// Each call describes the operation (compute type, transposes) and the three layouts, asks
// the heuristic for the best algorithm with a fixed workspace, and queues the product on
// the device's compute stream. Batches go in one call with strided batch offsets; a batch
// that shares one operand (stride 0) runs as one call per product instead, since cuBLASLt's
// documentation does not promise stride-0 batches.
//
// The handle and the 32 MiB workspace are made once per device and kept for the process.
#include <cublasLt.h>

#include <atomic>
#include <mutex>
#include <type_traits>
#include <vector>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/copy.h"
#include "kernels/cuda/gemm.h"

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

struct MatmulDesc {
  cublasLtMatmulDesc_t desc = nullptr;
  MatmulDesc(cublasComputeType_t compute, cudaDataType_t scale, bool trans_first, bool trans_second) {
    MMG_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, compute, scale));
    const cublasOperation_t ta = trans_first ? CUBLAS_OP_T : CUBLAS_OP_N, tb = trans_second ? CUBLAS_OP_T : CUBLAS_OP_N;
    MMG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    MMG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
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

// One cuBLASLt call: `batch` products with the given batch strides (row-major arguments).
template <class T>
static void lt_matmul(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, gemm_scalar_t<T> alpha,
                      const T* A, int64_t lda, const T* B, int64_t ldb, gemm_scalar_t<T> beta, T* C, int64_t ldc,
                      int64_t batch, int64_t stride_a, int64_t stride_b, int64_t stride_c) {
  const cudaDataType_t type = LtTypes<T>::data();
  const cudaDataType_t scale = std::is_same_v<T, double> ? CUDA_R_64F : CUDA_R_32F;
  LtDevice& dev = lt_device();
  // cuBLAS's first operand is B: stored column-major as (trans_b ? K×N : N×K), ld = ldb.
  MatmulDesc op(LtTypes<T>::compute(), scale, trans_b, trans_a);
  Layout first(type, trans_b ? K : N, trans_b ? N : K, ldb, batch, stride_b);
  // Its second operand is A: stored column-major as (trans_a ? M×K : K×M), ld = lda.
  Layout second(type, trans_a ? M : K, trans_a ? K : M, lda, batch, stride_a);
  Layout out(type, N, M, ldc, batch, stride_c);
  const int64_t sz = sizeof(T);
  Preference pref(alignment_of(B, batch > 1 ? stride_b * sz : 0), alignment_of(A, batch > 1 ? stride_a * sz : 0),
                  alignment_of(C, batch > 1 ? stride_c * sz : 0));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  MMG_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(dev.handle, op.desc, first.desc, second.desc, out.desc, out.desc,
                                                  pref.pref, 1, &result, &found));
  if (found == 0) throw_error(__FILE__, __LINE__, "cuBLASLt: no algorithm for this matrix product");
  MMG_CUBLAS_CHECK(cublasLtMatmul(dev.handle, op.desc, &alpha, B, first.desc, A, second.desc, &beta, C, out.desc, C,
                                  out.desc, &result.algo, dev.workspace, kWorkspaceBytes, current_stream()));
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

#define MMG_GEMM_INSTANTIATE(T)                                                                              \
  template void gemm_batched<T>(bool, bool, int64_t, int64_t, int64_t, gemm_scalar_t<T>, const T*, int64_t,        \
                                const T*, int64_t, gemm_scalar_t<T>, T*, int64_t, int64_t, int64_t, int64_t, int64_t);
MMG_GEMM_INSTANTIATE(float)
MMG_GEMM_INSTANTIATE(double)
MMG_GEMM_INSTANTIATE(bf16)
MMG_GEMM_INSTANTIATE(f16)

}  // namespace mmg::cuda
