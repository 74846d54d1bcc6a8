// The memory-bound kernels on CUDA: copy (the ceiling), softmax, layer_norm, elementwise.
//
// Each is timed through its op on device tensors, the forward as the op itself and the
// backward as the op's recorded backward (the closure autograd would call) run on the
// forward's saved tensors: exactly the kernels, with no gradient accumulation around them.
// GB/s counts the bytes that must move (bench/bench_math.h) over the median time; the
// fraction is of the copy bandwidth measured first in the same run. The goals
// (forward ≥ 90 %, backward ≥ 80 % of copy for softmax and layer_norm) are printed beside.
// softmax and layer_norm run in each dtype of --dtype (f32, bf16, f16): the 16-bit kernels
// read and write 2-byte elements (f32 math inside), so their bytes are counted at 2 per
// element; layer_norm's 16-bit runs take f32 γ and β (PyTorch's usual mix), whose 4 bytes
// per column are counted at 2 as well — N elements beside M·N, a rounding of the total.
// elementwise runs every version of its family (v1 scalar, v2 16-byte packs), f32. The
// transposing copies (under "copy") run every version of the family "copy" (v2 tiles
// transposes through shared memory), f32 and bf16, as fractions of the copy bandwidth.
#ifdef MMG_WITH_CUDA
#include <cuda_runtime.h>

#include <optional>

#include "bench/cuda_bench.h"
#include "kernels/copy.h"

namespace mmg::bench {

static constexpr const char* kForwardGoal = "≥ 90% copy";
static constexpr const char* kBackwardGoal = "≥ 80% copy";

// Sets the family's version for a scope when the kernel has a family (else it has one version).
struct VersionScope {
  std::optional<KernelVersionGuard> guard;
  VersionScope(const CudaBench& b, const std::string& kernel, int version) {
    if (b.has_family(kernel)) guard.emplace(kernel, version);
  }
};

// ---- copy: the ceiling every GB/s is measured against ----

static void bench_transposing_copies(CudaBench& b);

void measure_copy_bandwidth(CudaBench& b) {
  const Device dev = Device::cuda(b.device);
  const int64_t n = int64_t{b.quick ? 64 : 128} << 20;  // floats: 256 or 512 MiB, far beyond any L2
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  Tensor src = randn({n}, {.device = dev}), dst = empty({n}, {.device = dev});
  cudaStream_t stream = cuda::current_stream();
  const Timing t = time_on_device(
      [&](int) {
        MMG_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), bytes, cudaMemcpyDeviceToDevice, stream));
      },
      1, b.budget);
  b.copy_gbps = copy_bytes(static_cast<double>(bytes)) / (t.ms * 1e-3) / 1e9;
  if (!b.wants("copy")) return;

  const Row like("copy", "", dims({n}), {{"n", n}});
  Row memcpy_row = like;
  memcpy_row.label = "cudaMemcpyAsync";
  memcpy_row.ms = t.ms;
  memcpy_row.check = check_all({{dst, on_cpu(src)}}, 0);
  b.add_gbps(memcpy_row, copy_bytes(static_cast<double>(bytes)));

  // The engine's own copy kernel (behind contiguous(), clone(), to(dtype)), 1-D contiguous.
  Row kernel_row = like;
  kernel_row.label = "copy_cast kernel";
  run_case(b, kernel_row, [&] {
    const int64_t stride = 1;
    auto run = [&](int) {
      cuda::copy_cast<float, float>(src.data<float>(), &stride, dst.data<float>(), &stride, 1, &n, n);
    };
    dst.fill_(NAN);
    run(0);
    kernel_row.check = check_all({{dst, on_cpu(src)}}, 0);
    kernel_row.ms = time_on_device(run, 1, b.budget).ms;
    b.add_gbps(kernel_row, copy_bytes(static_cast<double>(bytes)));
  });
  bench_transposing_copies(b);
}

// contiguous() of a permuted view: the copies attention's layouts make. ViT-B/16 with 64
// images: q, k, v [B,S,H,D] <-> [B,H,S,D] (rows of D stay contiguous on both sides: a copy of
// 256-byte runs, no transpose for version 2 to tile), kᵀ [B·H,S,D] → [B·H,D,S] (a batched
// transpose, tiled by version 2), and a [B·S,768] activation transposed (a weight
// gradient's operand). Bytes: each element read once and written once.
struct PermuteCase {
  const char* what;
  Shape shape;                 // the source, contiguous
  std::vector<int64_t> order;  // its permutation
};

static void bench_transposing_copies(CudaBench& b) {
  const Device dev = Device::cuda(b.device);
  const int64_t B = b.quick ? 8 : 64, S = 197, H = 12, D = 64;
  const std::vector<PermuteCase> cases = {
      {"vit-b/16 heads [B,S,H,D] -> [B,H,S,D]", {B, S, H, D}, {0, 2, 1, 3}},
      {"vit-b/16 heads [B,H,S,D] -> [B,S,H,D]", {B, H, S, D}, {0, 2, 1, 3}},
      {"vit-b/16 k^T [B*H,S,D] -> [B*H,D,S]", {B * H, S, D}, {0, 2, 1}},
      {"vit-b/16 activations^T [B*S,768] -> [768,B*S]", {B * S, 768}, {1, 0}},
  };
  for (const std::string dtype : {"f32", "bf16"}) {
    const DType dt = dtype == "bf16" ? DType::bf16 : DType::f32;
    for (const PermuteCase& c : cases) {
      Tensor x0 = randn(c.shape, {.device = dev}).to(dt);
      const Tensor want = on_cpu(x0).permute(c.order).contiguous();
      const int n = b.sets_for(2 * bytes_of({x0}));
      const auto sets = rotating_sets({x0}, n);
      for (int v : b.versions("copy")) {
        VersionScope scope(b, "copy", v);
        Row r("copy", c.what, dims(c.shape) + " permute " + dims(c.order), {{"n", x0.numel()}});
        r.version = v;
        r.dtype = dtype;
        run_case(b, r, [&] {
          r.check = check_all({{sets[0][0].permute(c.order).contiguous(), want}}, 0);
          r.ms = time_on_device([&](int s) { sets[s][0].permute(c.order).contiguous(); }, n, b.budget).ms;
          b.add_gbps(r, copy_bytes(bytes_of({x0})));
        });
      }
      cuda_empty_cache(b.device);
    }
  }
}

// ---- the row shapes of ViT-B/16 and BERT-base ----

struct RowsCase {
  const char* what;
  int64_t rows, cols;
};

static std::vector<RowsCase> row_cases(bool quick) {
  if (quick) return {{"vit-b/16 B8", 8 * 197, 768}, {"bert-base B4 mlp", 4 * 512, 3072}};
  return {{"vit-b/16 B64", 64 * 197, 768},
          {"vit-b/16 B64 mlp", 64 * 197, 3072},
          {"bert-base B32", 32 * 512, 768},
          {"bert-base B32 mlp", 32 * 512, 3072}};
}

static Row rows_row(const char* kernel, const RowsCase& c, int version, Direction d, const std::string& dtype) {
  Row r(kernel, c.what, dims({c.rows, c.cols}), {{"rows", c.rows}, {"cols", c.cols}});
  r.version = version;
  r.direction = d;
  r.goal = d == Direction::fwd ? kForwardGoal : kBackwardGoal;
  r.dtype = dtype;
  return r;
}

static DType row_dtype(const std::string& name) {
  return name == "bf16" ? DType::bf16 : name == "f16" ? DType::f16 : DType::f32;
}

// The check's tolerance (relative error of the whole output, bench/cuda_bench.h): f32 to its
// rounding; 16-bit results are rounded once on both devices and may differ by an ulp here
// and there (2⁻⁸ relative for bf16).
static double row_tolerance(DType dt, double f32_tol) {
  return dt == DType::bf16 ? 1e-2 : dt == DType::f16 ? 2e-3 : f32_tol;
}

// ---- softmax ----

static void bench_softmax_in(CudaBench& b, const std::string& dtype) {
  const Device dev = Device::cuda(b.device);
  const DType dt = row_dtype(dtype);
  const int64_t elem = dtype_size(dt);
  for (const RowsCase& c : row_cases(b.quick)) {
    // The CPU reference of the first set: y = softmax(x), dx for the gradient g.
    Tensor x0 = randn({c.rows, c.cols}, {.device = dev}).to(dt), g0 = randn({c.rows, c.cols}, {.device = dev}).to(dt);
    Tensor x_ref = on_cpu(x0).requires_grad_(), g_ref = on_cpu(g0);
    Tensor y_ref = softmax(x_ref, -1);
    y_ref.backward(g_ref);
    const Tensor dx_ref = x_ref.grad();
    const int n = b.sets_for(bytes_of({x0, g0}));
    const auto sets = rotating_sets({x0, g0}, n);

    for (int v : b.versions("softmax")) {
      VersionScope scope(b, "softmax", v);
      Row fwd = rows_row("softmax", c, v, Direction::fwd, dtype);
      run_case(b, fwd, [&] {
        fwd.check = check_all({{softmax(sets[0][0], -1), y_ref.detach()}}, row_tolerance(dt, 1e-5));
        fwd.ms = time_on_device([&](int s) { softmax(sets[s][0], -1); }, n, b.budget).ms;
        b.add_gbps(fwd, softmax_bytes(c.rows, c.cols, elem, Direction::fwd));
      });
      Row bwd = rows_row("softmax", c, v, Direction::bwd, dtype);
      run_case(b, bwd, [&] {
        std::vector<Tensor> xs, outs;  // each set's forward, whose backward is timed
        for (const auto& set : sets) {
          xs.push_back(set[0].detach().requires_grad_());
          outs.push_back(softmax(xs.back(), -1));
        }
        auto backward = [&](int s) { return backward_through(outs[s], sets[s][1], {xs[s]}, true); };
        bwd.check = check_all({{backward(0)[0], dx_ref}}, row_tolerance(dt, 1e-5));
        bwd.ms = time_on_device(backward, n, b.budget).ms;
        b.add_gbps(bwd, softmax_bytes(c.rows, c.cols, elem, Direction::bwd));
      });
      cuda_empty_cache(b.device);
    }
  }
}

void bench_softmax(CudaBench& b) {
  for (const std::string& dtype : b.plan.row_dtypes) bench_softmax_in(b, dtype);
}

// ---- layer_norm ----

static void bench_layer_norm_in(CudaBench& b, const std::string& dtype) {
  const Device dev = Device::cuda(b.device);
  const DType dt = row_dtype(dtype);
  const int64_t elem = dtype_size(dt);
  for (const RowsCase& c : row_cases(b.quick)) {
    // x and the gradient in dt; γ and β in f32 (with 16-bit x: PyTorch's mixed layer_norm).
    Tensor x0 = randn({c.rows, c.cols}, {.device = dev}).to(dt), g0 = randn({c.rows, c.cols}, {.device = dev}).to(dt);
    Tensor w = randn({c.cols}, {.device = dev}), bias = randn({c.cols}, {.device = dev});
    Tensor x_ref = on_cpu(x0).requires_grad_(), w_ref = on_cpu(w).requires_grad_(),
           b_ref = on_cpu(bias).requires_grad_();
    Tensor y_ref = layer_norm(x_ref, {c.cols}, w_ref, b_ref);
    y_ref.backward(on_cpu(g0));
    const int n = b.sets_for(bytes_of({x0, g0}));
    const auto sets = rotating_sets({x0, g0}, n);

    for (int v : b.versions("layer_norm")) {
      VersionScope scope(b, "layer_norm", v);
      Row fwd = rows_row("layer_norm", c, v, Direction::fwd, dtype);
      run_case(b, fwd, [&] {
        fwd.check = check_all({{layer_norm(sets[0][0], {c.cols}, w, bias), y_ref.detach()}}, row_tolerance(dt, 1e-5));
        fwd.ms = time_on_device([&](int s) { layer_norm(sets[s][0], {c.cols}, w, bias); }, n, b.budget).ms;
        b.add_gbps(fwd, layer_norm_bytes(c.rows, c.cols, elem, Direction::fwd));
      });
      Row bwd = rows_row("layer_norm", c, v, Direction::bwd, dtype);
      run_case(b, bwd, [&] {
        Tensor wg = w.detach().requires_grad_(), bg = bias.detach().requires_grad_();
        std::vector<Tensor> xs, outs;
        for (const auto& set : sets) {
          xs.push_back(set[0].detach().requires_grad_());
          outs.push_back(layer_norm(xs.back(), {c.cols}, wg, bg));
        }
        auto backward = [&](int s) { return backward_through(outs[s], sets[s][1], {xs[s], wg, bg}, true); };
        const Grads grads = backward(0);
        bwd.check = check_all({{grads[0], x_ref.grad()}, {grads[1], w_ref.grad()}, {grads[2], b_ref.grad()}},
                              row_tolerance(dt, 1e-4));
        bwd.ms = time_on_device(backward, n, b.budget).ms;
        b.add_gbps(bwd, layer_norm_bytes(c.rows, c.cols, elem, Direction::bwd));
      });
      cuda_empty_cache(b.device);
    }
  }
}

void bench_layer_norm(CudaBench& b) {
  for (const std::string& dtype : b.plan.row_dtypes) bench_layer_norm_in(b, dtype);
}

// ---- elementwise: add with broadcasting, GELU ----

void bench_elementwise(CudaBench& b) {
  const Device dev = Device::cuda(b.device);
  const RowsCase c =
      b.quick ? RowsCase{"vit-b/16 B8 mlp", 8 * 197, 3072} : RowsCase{"vit-b/16 B64 mlp", 64 * 197, 3072};
  const int64_t M = c.rows, N = c.cols;
  Tensor a0 = randn({M, N}, {.device = dev}), g0 = randn({M, N}, {.device = dev}), bias = randn({N}, {.device = dev});
  const int n = b.sets_for(bytes_of({a0, g0}));
  const auto sets = rotating_sets({a0, g0}, n);
  const Tensor a_ref = on_cpu(a0), g_ref = on_cpu(g0), bias_ref = on_cpu(bias);
  for (int v : b.versions("elementwise")) {
    VersionScope scope(b, "elementwise", v);
    auto row = [&](const std::string& what, const std::string& shape, Direction d) {
      Row r("elementwise", what, shape, {{"rows", M}, {"cols", N}});
      r.version = v;
      r.direction = d;
      return r;
    };

    // a [M,N] + bias [N]: the bias broadcast over the rows (a linear layer's bias).
    Row add_b = row("add, bias broadcast", dims({M, N}) + "+" + dims({N}), Direction::fwd);
    run_case(b, add_b, [&] {
      add_b.check = check_all({{add(sets[0][0], bias), add(a_ref, bias_ref)}}, 0);
      add_b.ms = time_on_device([&](int s) { add(sets[s][0], bias); }, n, b.budget).ms;
      b.add_gbps(add_b, add_broadcast_bytes(M, N, 4));
    });
    // a + g, both [M,N] (a residual connection).
    Row add_s = row("add, same shape", dims({M, N}) + "+" + dims({M, N}), Direction::fwd);
    run_case(b, add_s, [&] {
      add_s.check = check_all({{add(sets[0][0], sets[0][1]), add(a_ref, g_ref)}}, 0);
      add_s.ms = time_on_device([&](int s) { add(sets[s][0], sets[s][1]); }, n, b.budget).ms;
      b.add_gbps(add_s, add_bytes(M * N, 4));
    });
    // GELU (exact, erf), forward and backward.
    Row gf = row("gelu", dims({M, N}), Direction::fwd);
    run_case(b, gf, [&] {
      gf.check = check_all({{gelu(sets[0][0]), gelu(a_ref)}}, 1e-5);
      gf.ms = time_on_device([&](int s) { gelu(sets[s][0]); }, n, b.budget).ms;
      b.add_gbps(gf, gelu_bytes(M * N, 4, Direction::fwd));
    });
    Row gb = row("gelu", dims({M, N}), Direction::bwd);
    run_case(b, gb, [&] {
      std::vector<Tensor> xs, outs;
      for (const auto& set : sets) {
        xs.push_back(set[0].detach().requires_grad_());
        outs.push_back(gelu(xs.back()));
      }
      auto backward = [&](int s) { return backward_through(outs[s], sets[s][1], {xs[s]}, true); };
      Tensor x_ref = a_ref.detach().requires_grad_();
      gelu(x_ref).backward(g_ref);
      gb.check = check_all({{backward(0)[0], x_ref.grad()}}, 1e-5);
      gb.ms = time_on_device(backward, n, b.budget).ms;
      b.add_gbps(gb, gelu_bytes(M * N, 4, Direction::bwd));
    });
  }
}

}  // namespace mmg::bench
#endif  // MMG_WITH_CUDA
