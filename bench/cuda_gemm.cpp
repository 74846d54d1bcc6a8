// GEMM on CUDA: the engine's gemm (kernels/gemm.h: cuBLASLt, f32 without TF32, the
// heuristic's first algorithm) against the best cuBLASLt can do on the same product, and the
// device's bf16 GEMM rate, the reference for every TFLOP/s of attention and clip_loss.
//
// "Best" is measured, not assumed: the heuristic proposes up to 8 algorithms for the
// product, each is timed briefly, and the fastest is timed again in full. Three precisions:
//   f32   CUBLAS_COMPUTE_32F            the engine's contract (results match the CPU)
//   tf32  CUBLAS_COMPUTE_32F_FAST_TF32  f32 data on the tensor cores, 10-bit mantissas
//   bf16  bf16 data, f32 accumulation   the rate mixed precision trains at
// Shapes: the linear layers of ViT-B/16 (64 images of 197 tokens) and BERT-base (32
// sequences of 512), and a square.
//
// Then the op `linear` (y = x·Wᵀ + b) at the same layers, forward and backward, in every
// version of its kernel family (v1: the bias copied into y and the GEMM accumulating onto
// it, ∂L/∂b by a reduction; v2: cuBLASLt's BIAS and BGRADB epilogues), f32 and bf16, so
// that a run on a GPU shows which version should be the default. TFLOP/s count the GEMMs
// only (forward 2·M·N·K, backward 4·M·N·K for ∂L/∂x and ∂L/∂W); the note gives each
// version's time as a multiple of version 1's.
#ifdef MMG_WITH_CUDA
#include <cublasLt.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "bench/cuda_bench.h"
#include "kernels/gemm.h"

namespace mmg::bench {

enum class LtType { f32, tf32, bf16 };

static const char* type_name(LtType t) { return t == LtType::f32 ? "f32" : t == LtType::tf32 ? "tf32" : "bf16"; }

// One cuBLASLt handle and workspace for the bench (the engine's are private to gemm.cu).
struct LtHandle {
  static constexpr size_t kWorkspaceBytes = size_t{32} << 20;  // as the engine's
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
};

static LtHandle& lt_handle() {
  static LtHandle lt = [] {
    LtHandle l;
    MMG_CUBLAS_CHECK(cublasLtCreate(&l.handle));
    MMG_CUDA_CHECK(cudaMalloc(&l.workspace, LtHandle::kWorkspaceBytes));
    return l;
  }();
  return lt;
}

// The row-major product C [M,N] = A [M,K] · B [K,N] as cuBLASLt (column-major) sees it:
// Cᵀ [N,M] = Bᵀ [N,K] · Aᵀ [K,M], with B as its first operand and A as its second, and no
// transposes: a row-major X is byte for byte the column-major Xᵀ.
class LtProduct {
 public:
  LtProduct(LtType type, int64_t M, int64_t N, int64_t K) {
    const cudaDataType_t data = type == LtType::bf16 ? CUDA_R_16BF : CUDA_R_32F;
    const cublasComputeType_t compute = type == LtType::tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    MMG_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op_, compute, CUDA_R_32F));
    MMG_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&first_, data, N, K, N));
    MMG_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&second_, data, K, M, K));
    MMG_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&out_, data, N, M, N));
    MMG_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref_));
    const size_t ws = LtHandle::kWorkspaceBytes;
    MMG_CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(pref_, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
  }
  ~LtProduct() {
    cublasLtMatmulPreferenceDestroy(pref_);
    cublasLtMatrixLayoutDestroy(out_);
    cublasLtMatrixLayoutDestroy(second_);
    cublasLtMatrixLayoutDestroy(first_);
    cublasLtMatmulDescDestroy(op_);
  }
  LtProduct(const LtProduct&) = delete;
  LtProduct& operator=(const LtProduct&) = delete;

  // The heuristic's algorithms for this product, its best guess first.
  std::vector<cublasLtMatmulAlgo_t> algorithms(int max) const {
    std::vector<cublasLtMatmulHeuristicResult_t> results(max);
    int found = 0;
    MMG_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(lt_handle().handle, op_, first_, second_, out_, out_, pref_, max,
                                                    results.data(), &found));
    std::vector<cublasLtMatmulAlgo_t> algos;
    for (int i = 0; i < found; ++i)
      if (results[i].state == CUBLAS_STATUS_SUCCESS) algos.push_back(results[i].algo);
    return algos;
  }

  void run(const cublasLtMatmulAlgo_t& algo, const void* A, const void* B, void* C) const {
    const float alpha = 1, beta = 0;
    const LtHandle& lt = lt_handle();
    MMG_CUBLAS_CHECK(cublasLtMatmul(lt.handle, op_, &alpha, B, first_, A, second_, &beta, C, out_, C, out_, &algo,
                                    lt.workspace, LtHandle::kWorkspaceBytes, cuda::current_stream()));
  }

 private:
  cublasLtMatmulDesc_t op_ = nullptr;
  cublasLtMatrixLayout_t first_ = nullptr, second_ = nullptr, out_ = nullptr;
  cublasLtMatmulPreference_t pref_ = nullptr;
};

struct GemmCase {
  const char* what;
  int64_t M, N, K;
};

static Row gemm_row(const GemmCase& c, const std::string& label, const std::string& dtype) {
  Row r("gemm", std::string(c.what) + ", " + label, fmt::format("{}x{}x{}", c.M, c.N, c.K),
        {{"M", c.M}, {"N", c.N}, {"K", c.K}});
  r.dtype = dtype;
  return r;
}

// Rotating sets {A [M,K], B [K,N], C [M,N]} in `dtype`, from random f32 values.
static std::vector<std::vector<Tensor>> gemm_sets(CudaBench& b, const GemmCase& c, DType dtype) {
  const Device dev = Device::cuda(b.device);
  Tensor A = randn({c.M, c.K}, {.device = dev}).to(dtype), B = randn({c.K, c.N}, {.device = dev}).to(dtype);
  Tensor C = empty({c.M, c.N}, {.dtype = dtype, .device = dev});
  const int n = b.sets_for(bytes_of({A, B, C}));
  return rotating_sets({A, B, C}, n);
}

// The first rows of A·B (computed on the CPU in f32 from the inputs as stored) against the
// same rows of C: a wrong layout or a wrong algorithm shows at once.
static std::string check_product(const std::vector<Tensor>& set, double tol) {
  const int64_t rows = std::min<int64_t>(64, set[0].size(0));
  Tensor want = matmul(on_cpu(set[0].slice(0, 0, rows)).to(DType::f32), on_cpu(set[1]).to(DType::f32));
  return check_all({{set[2].slice(0, 0, rows).to(DType::f32), want}}, tol);
}

static double tolerance(LtType t) { return t == LtType::f32 ? 1e-4 : t == LtType::tf32 ? 5e-3 : 2e-2; }

struct LtBest {
  double ms = NAN;
  int rank = 0;   // the heuristic's rank of the fastest (0: its first guess)
  int tried = 0;  // algorithms that ran
  std::string check;
};

// The fastest of the heuristic's algorithms for c in `type`: each timed on a quarter of the
// budget, the winner again on the whole of it.
static LtBest lt_best(CudaBench& b, LtType type, const GemmCase& c, const std::vector<std::vector<Tensor>>& sets) {
  LtProduct p(type, c.M, c.N, c.K);
  const std::vector<cublasLtMatmulAlgo_t> algos = p.algorithms(8);
  TimingBudget quick = b.budget;
  quick.total_ms /= 4;
  quick.min_samples = 5;
  LtBest best;
  for (size_t i = 0; i < algos.size(); ++i) {
    auto run = [&](int s) { p.run(algos[i], sets[s][0].data_ptr(), sets[s][1].data_ptr(), sets[s][2].data_ptr()); };
    double ms = 0;
    try {
      ms = time_on_device(run, static_cast<int>(sets.size()), quick).ms;
    } catch (const Error&) {
      continue;  // an algorithm the heuristic offered but that does not run here
    }
    ++best.tried;
    if (!(ms >= best.ms)) {
      best.ms = ms;
      best.rank = static_cast<int>(i);
    }
  }
  if (best.tried == 0) throw_error(__FILE__, __LINE__, fmt::format("cuBLASLt: no {} algorithm ran", type_name(type)));
  auto run = [&](int s) {
    p.run(algos[best.rank], sets[s][0].data_ptr(), sets[s][1].data_ptr(), sets[s][2].data_ptr());
  };
  Tensor(sets[0][2]).fill_(NAN);  // the other algorithms wrote the same product there: poison it
  run(0);
  best.check = check_product(sets[0], tolerance(type));
  best.ms = time_on_device(run, static_cast<int>(sets.size()), b.budget).ms;
  return best;
}

void measure_bf16_gemm_rate(CudaBench& b) {
  const GemmCase c{"square", 8192, 8192, 8192};
  const auto sets = gemm_sets(b, c, DType::bf16);
  const LtBest best = lt_best(b, LtType::bf16, c, sets);
  b.bf16_tflops = gemm_flops(c.M, c.N, c.K) / (best.ms * 1e-3) / 1e12;
  if (!b.wants("gemm")) return;
  Row r = gemm_row(c, fmt::format("cuBLASLt best of {}", best.tried), "bf16");
  r.ms = best.ms;
  r.check = best.check;
  r.note = fmt::format("the bf16 reference; heuristic's rank {}", best.rank + 1);
  b.add_tflops(r, gemm_flops(c.M, c.N, c.K));
}

static std::vector<GemmCase> gemm_cases(bool quick) {
  if (quick) return {{"vit-b qkv B8", 8 * 197, 2304, 768}, {"square", 2048, 2048, 2048}};
  return {{"vit-b qkv B64", 64 * 197, 2304, 768},
          {"vit-b mlp up B64", 64 * 197, 3072, 768},
          {"vit-b mlp down B64", 64 * 197, 768, 3072},
          {"bert-base proj B32", 32 * 512, 768, 768},
          {"square", 4096, 4096, 4096}};
}

// ---- linear: every version of its family ----

struct LinearCase {
  const char* what;
  int64_t rows, in, out;  // x [rows, in], W [out, in], b [out]
};

static std::vector<LinearCase> linear_cases(bool quick) {
  if (quick) return {{"vit-b qkv B8", 8 * 197, 768, 2304}, {"bert-base mlp up B4", 4 * 512, 768, 3072}};
  return {{"vit-b qkv B64", 64 * 197, 768, 2304},         {"vit-b mlp up B64", 64 * 197, 768, 3072},
          {"vit-b mlp down B64", 64 * 197, 3072, 768},    {"bert-base proj B32", 32 * 512, 768, 768},
          {"bert-base mlp up B32", 32 * 512, 768, 3072}, {"bert-base mlp down B32", 32 * 512, 3072, 768}};
}

static Row linear_row(const LinearCase& c, int version, Direction d, const std::string& dtype) {
  Row r("linear", c.what, fmt::format("[{},{}]x[{},{}]^T+[{}]", c.rows, c.in, c.out, c.in, c.out),
        {{"rows", c.rows}, {"in", c.in}, {"out", c.out}});
  r.version = version;
  r.direction = d;
  r.dtype = dtype;
  return r;
}

// The CPU references are computed on a part of each result (the first 64 rows of y and
// ∂L/∂x, the first 16 rows of ∂L/∂W, all of ∂L/∂b): a wrong layout or epilogue shows there.
static void bench_linear_case(CudaBench& b, const LinearCase& c, const std::string& dtype) {
  const Device dev = Device::cuda(b.device);
  const DType dt = dtype == "bf16" ? DType::bf16 : DType::f32;
  const double tol = dt == DType::bf16 ? 2e-2 : 1e-4;
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.in));  // keeps y of order 1
  Tensor x0 = randn({c.rows, c.in}, {.device = dev}).to(dt), g0 = randn({c.rows, c.out}, {.device = dev}).to(dt);
  Tensor w = (randn({c.out, c.in}, {.device = dev}) * scale).to(dt), bias = randn({c.out}, {.device = dev}).to(dt);
  const int64_t k = std::min<int64_t>(64, c.rows);
  const Tensor x_cpu = on_cpu(x0), g_cpu = on_cpu(g0), w_cpu = on_cpu(w), b_cpu = on_cpu(bias);
  const Tensor y_ref = linear(x_cpu.slice(0, 0, k), w_cpu, b_cpu);
  const Tensor dx_ref = matmul(g_cpu.slice(0, 0, k), w_cpu);
  const Tensor dw_ref = matmul(transpose(g_cpu.slice(1, 0, 16), 0, 1), x_cpu);
  const Tensor db_ref = sum(g_cpu, {0});
  const int n = b.sets_for(bytes_of({x0, g0}) * 2);
  const auto sets = rotating_sets({x0, g0}, n);
  const double flops = gemm_flops(c.rows, c.out, c.in);
  const KernelFamily* family = family_of("linear", b.families);
  const int versions = family ? static_cast<int>(family->versions.size()) : 1;
  double v1_fwd = NAN, v1_bwd = NAN;
  for (int v = 1; v <= versions; ++v) {
    std::optional<KernelVersionGuard> guard;
    if (family) guard.emplace("linear", v);
    Row fwd = linear_row(c, v, Direction::fwd, dtype);
    run_case(b, fwd, [&] {
      fwd.check = check_all({{linear(sets[0][0], w, bias).slice(0, 0, k), y_ref}}, tol);
      fwd.ms = time_on_device([&](int s) { linear(sets[s][0], w, bias); }, n, b.budget).ms;
      if (v == 1) v1_fwd = fwd.ms;
      else fwd.note = fmt::format("{:.2f}x version 1's time", fwd.ms / v1_fwd);
      b.add_tflops(fwd, flops);
    });
    Row bwd = linear_row(c, v, Direction::bwd, dtype);
    run_case(b, bwd, [&] {
      Tensor wg = w.detach().requires_grad_(), bg = bias.detach().requires_grad_();
      std::vector<Tensor> xs, outs;
      for (const auto& set : sets) {
        xs.push_back(set[0].detach().requires_grad_());
        outs.push_back(linear(xs.back(), wg, bg));
      }
      auto backward = [&](int s) { return backward_through(outs[s], sets[s][1], {xs[s], wg, bg}, true); };
      const Grads grads = backward(0);
      bwd.check = check_all({{grads[0].slice(0, 0, k), dx_ref}, {grads[1].slice(0, 0, 16), dw_ref}, {grads[2], db_ref}},
                            tol);
      bwd.ms = time_on_device(backward, n, b.budget).ms;
      if (v == 1) v1_bwd = bwd.ms;
      else bwd.note = fmt::format("{:.2f}x version 1's time", bwd.ms / v1_bwd);
      b.add_tflops(bwd, 2 * flops);
    });
    cuda_empty_cache(b.device);
  }
}

static void bench_linear(CudaBench& b) {
  for (const LinearCase& c : linear_cases(b.quick))
    for (const std::string& dtype : b.plan.dtypes) bench_linear_case(b, c, dtype);
}

void bench_gemm(CudaBench& b) {
  for (const GemmCase& c : gemm_cases(b.quick)) {
    const double flops = gemm_flops(c.M, c.N, c.K);
    double best_f32_tflops = NAN;
    for (LtType type : {LtType::f32, LtType::tf32, LtType::bf16}) {
      Row r = gemm_row(c, "cuBLASLt best", type_name(type));
      run_case(b, r, [&] {
        const auto sets = gemm_sets(b, c, type == LtType::bf16 ? DType::bf16 : DType::f32);
        const LtBest best = lt_best(b, type, c, sets);
        r.label = fmt::format("{}, cuBLASLt best of {}", c.what, best.tried);
        r.ms = best.ms;
        r.check = best.check;
        r.note = fmt::format("heuristic's rank {}", best.rank + 1);
        if (type == LtType::f32) best_f32_tflops = flops / (best.ms * 1e-3) / 1e12;
        b.add_tflops(r, flops);
      });
    }
    // The engine's gemm, f32: its fraction is of cuBLASLt's best f32 on the same product.
    Row r = gemm_row(c, "engine gemm_batched", "f32");
    run_case(b, r, [&] {
      const auto sets = gemm_sets(b, c, DType::f32);
      auto run = [&](int s) {
        cuda::gemm_batched<float>(false, false, c.M, c.N, c.K, 1.0f, sets[s][0].data<float>(), c.K,
                                  sets[s][1].data<float>(), c.N, 0.0f, sets[s][2].data<float>(), c.N, 1, 0, 0, 0);
      };
      Tensor(sets[0][2]).fill_(NAN);  // poisoned: the check sees any element left unwritten
      run(0);
      r.check = check_product(sets[0], tolerance(LtType::f32));
      r.ms = time_on_device(run, static_cast<int>(sets.size()), b.budget).ms;
      r.rate = flops / (r.ms * 1e-3) / 1e12;
      r.unit = "TFLOP/s";
      r.fraction = r.rate / best_f32_tflops;
      r.baseline = "cuBLASLt f32 best";
      b.add(r);
    });
    cuda_empty_cache(b.device);
  }
  bench_linear(b);
}

}  // namespace mmg::bench
#endif  // MMG_WITH_CUDA
