// Attention on CUDA: every version of the "attention" family (core/kernel_versions.h),
// through the op scaled_dot_product_attention on device tensors, in f32, bf16 and f16 inputs
// (--dtype); v3 and v4 (tensor cores) take bf16 and f16 only and get a row saying so for f32.
// v4 is v3 with a forward for short keys (Sk ≤ 256); on the long cases it runs v3's forward,
// and its rows say so.
//
// Three rows per case and version: the forward; forward + backward; the backward alone
// (the op's recorded backward on the saved tensors of a forward made beforehand). TFLOP/s
// count 4·B·H·Sq·Sk·D forward, 2.5× that backward, halved when causal
// (bench/bench_math.h), as a fraction of the device's bf16 GEMM rate measured in the same
// run. Before timing, each case's output and gradients for batch 0, head 0 are checked
// against the CPU op on the same inputs.
//
// Shapes (the issue's): ViT-B/16 self-attention; text of 32 and 77 tokens with key-padding
// masks (bench_math.h's padded_length); text-to-image cross-attention (64 queries over 197
// keys); long sequences of 1k and 4k tokens at head dim 128, causal and not. A version that
// cannot run a case — out of memory, for one that keeps the S² scores — gets a row saying why.
// One case repeats ViT-B/16 with dropout 0.1 on the attention weights (dropout_p): the cost
// of drawing the mask (one Philox call per weight, in the forward and in both backward
// kernels). Every call draws from a fresh generator of the same seed, so the mask of batch 0,
// head 0 — flat indices i·Sk + j in either tensor — is the CPU reference's too.
#ifdef MMG_WITH_CUDA
#include <optional>

#include "bench/cuda_bench.h"
#include "kernels/cuda/attention_short_plan.h"

namespace mmg::bench {

struct AttCase {
  const char* what;
  int64_t B, H, Sq, Sk, D;
  bool causal, padded;
  bool multimodal;  // the goal is against PyTorch (bench/torch_compare.py), else in TFLOP/s
  double dropout = 0.0;  // dropout_p on the attention weights
};

static std::vector<AttCase> attention_cases(bool quick) {
  if (quick)
    return {{"vit-b/16 self", 8, 12, 197, 197, 64, false, false, true},
            {"vit-b/16 self dropout 0.1", 8, 12, 197, 197, 64, false, false, true, 0.1},
            {"text S32 padded", 32, 12, 32, 32, 64, false, true, true},
            {"text S77 padded", 32, 12, 77, 77, 64, false, true, true},
            {"text->image cross", 8, 12, 64, 197, 64, false, false, true},
            {"long S1k causal", 2, 16, 1024, 1024, 128, true, false, false}};
  return {{"vit-b/16 self", 64, 12, 197, 197, 64, false, false, true},
          {"vit-b/16 self dropout 0.1", 64, 12, 197, 197, 64, false, false, true, 0.1},
          {"text S32 padded", 256, 12, 32, 32, 64, false, true, true},
          {"text S77 padded", 256, 12, 77, 77, 64, false, true, true},
          {"text->image cross", 64, 12, 64, 197, 64, false, false, true},
          {"long S1k", 16, 16, 1024, 1024, 128, false, false, false},
          {"long S1k causal", 16, 16, 1024, 1024, 128, true, false, false},
          {"long S4k", 4, 16, 4096, 4096, 128, false, false, false},
          {"long S4k causal", 4, 16, 4096, 4096, 128, true, false, false}};
}

static std::string goal_of(const AttCase& c, Direction d) {
  if (c.multimodal) return d == Direction::fwd_bwd ? "≥ 1.25× PyTorch's best (torch_compare.py)" : "";
  if (d == Direction::fwd) return "≥ 550 TFLOP/s";
  if (d == Direction::bwd) return "≥ 450 TFLOP/s";
  return "";
}

// key_mask [B,Sk], true = attend: sequence b keeps its first padded_length(b, Sk) keys.
static Tensor padding_mask(const AttCase& c, Device dev) {
  std::vector<uint8_t> m(static_cast<size_t>(c.B * c.Sk));
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t j = 0; j < c.Sk; ++j) m[b * c.Sk + j] = j < padded_length(b, c.Sk) ? 1 : 0;
  return from_vector<uint8_t>(m, {c.B, c.Sk}, {.dtype = DType::boolean, .device = dev});
}

// Batch 0, head 0 of a [B,H,S,D] tensor (or batch 0 of a [B,Sk] mask), on the CPU.
static Tensor head0(const Tensor& t) {
  Tensor s = t.slice(0, 0, 1);
  return on_cpu(t.dim() == 4 ? s.slice(1, 0, 1) : s);
}

// One case, one dtype: every version.
static void bench_case(CudaBench& b, const AttCase& c, const std::string& dtype_name) {
  const Device dev = Device::cuda(b.device);
  const DType dt = dtype_name == "bf16" ? DType::bf16 : (dtype_name == "f16" ? DType::f16 : DType::f32);
  Tensor q = randn({c.B, c.H, c.Sq, c.D}, {.device = dev}).to(dt),
         k = randn({c.B, c.H, c.Sk, c.D}, {.device = dev}).to(dt),
         v = randn({c.B, c.H, c.Sk, c.D}, {.device = dev}).to(dt),
         g = randn({c.B, c.H, c.Sq, c.D}, {.device = dev}).to(dt);
  const Tensor mask = c.padded ? padding_mask(c, dev) : Tensor();
  const int n = b.sets_for(bytes_of({q, k, v, g}));
  const auto sets = rotating_sets({q, k, v, g}, n);
  constexpr uint64_t kDropSeed = 2024;
  auto sdpa = [&](const std::vector<Tensor>& s) {
    Generator gen(kDropSeed);  // the same mask in every call (nothing drawn when dropout is 0)
    return scaled_dot_product_attention(s[0], s[1], s[2], mask, c.causal, std::nullopt, c.dropout, &gen);
  };

  // The CPU reference for batch 0, head 0 (queries of one head see only that head's keys).
  Tensor q0 = head0(q).requires_grad_(), k0 = head0(k).requires_grad_(), v0 = head0(v).requires_grad_();
  Generator gen0(kDropSeed);
  Tensor out0 = scaled_dot_product_attention(q0, k0, v0, mask.defined() ? head0(mask) : Tensor(), c.causal,
                                             std::nullopt, c.dropout, &gen0);
  out0.backward(head0(g));
  const double tol = dt == DType::f32 ? 2e-3 : 3e-2;  // f32 allows a TF32 version; bf16/f16 their rounding

  const std::string shape = fmt::format("B{} H{} Sq{} Sk{} D{}{}{}", c.B, c.H, c.Sq, c.Sk, c.D,
                                        c.causal ? " causal" : "",
                                        c.dropout > 0 ? fmt::format(" dropout {}", c.dropout) : "");
  const nlohmann::json params = {{"B", c.B},           {"H", c.H},           {"Sq", c.Sq},
                                 {"Sk", c.Sk},         {"D", c.D},           {"causal", c.causal},
                                 {"padded", c.padded}, {"dropout", c.dropout}};
  for (int version : b.versions("attention")) {
    if (version >= 3 && dt != DType::bf16 && dt != DType::f16) {  // tensor cores: 16-bit inputs only
      Row r("attention", c.what, shape, params);
      r.version = version;
      r.dtype = dtype_name;
      b.add(skipped_row(r, fmt::format("v{} takes bf16 or f16 inputs", version)));
      continue;
    }
    // v4 past its keys (Sk > 256) is v3 throughout: the row says so rather than pass for v4's kernel.
    const std::string fallback =
        version == 4 && !cuda::attention_short_supports(c.Sk, c.D) ? "v4 runs v3's forward here (Sk > 256)" : "";
    std::optional<KernelVersionGuard> guard;
    if (b.has_family("attention")) guard.emplace("attention", version);
    auto row = [&](Direction d) {
      Row r("attention", c.what, shape, params);
      r.version = version;
      r.dtype = dtype_name;
      r.direction = d;
      r.goal = goal_of(c, d);
      r.note = fallback;
      return r;
    };
    auto flops = [&](Direction d) { return attention_flops(c.B, c.H, c.Sq, c.Sk, c.D, c.causal, d); };

    Row fwd = row(Direction::fwd);
    run_case(b, fwd, [&] {
      fwd.check = check_all({{head0(sdpa(sets[0])), out0.detach()}}, tol);
      fwd.ms = time_on_device([&](int s) { sdpa(sets[s]); }, n, b.budget).ms;
      b.add_tflops(fwd, flops(Direction::fwd));
    });
    cuda_empty_cache(b.device);

    // Leaves that require grad, so that the op records its backward.
    std::vector<std::vector<Tensor>> leaves;
    for (const auto& s : sets)
      leaves.push_back(
          {s[0].detach().requires_grad_(), s[1].detach().requires_grad_(), s[2].detach().requires_grad_(), s[3]});

    // dq, dk, dv of out, computed on set s.
    auto backward = [&](const Tensor& out, int s, bool retain) {
      const std::vector<Tensor>& l = leaves[s];
      return backward_through(out, l[3], {l[0], l[1], l[2]}, retain);
    };

    Row both = row(Direction::fwd_bwd);
    run_case(b, both, [&] {
      // Untimed: the check, and the peak memory of one forward + backward above its inputs.
      cuda_synchronize(b.device);
      const size_t before = cuda_memory_stats(b.device).allocated;
      cuda_reset_peak_memory(b.device);
      {
        Tensor out = sdpa(leaves[0]);
        const Grads gr = backward(out, 0, false);
        cuda_synchronize(b.device);
        both.peak_bytes = static_cast<double>(cuda_memory_stats(b.device).peak_allocated - before);
        both.check = check_all({{head0(out), out0.detach()},
                                {head0(gr[0]), q0.grad()},
                                {head0(gr[1]), k0.grad()},
                                {head0(gr[2]), v0.grad()}},
                               tol);
      }
      both.note = fmt::format("peak {:.0f} MiB above inputs{}", *both.peak_bytes / 1048576.0,
                              fallback.empty() ? "" : "; " + fallback);
      both.ms = time_on_device([&](int s) { backward(sdpa(leaves[s]), s, false); }, n, b.budget).ms;
      b.add_tflops(both, flops(Direction::fwd_bwd));
    });
    cuda_empty_cache(b.device);

    Row bwd = row(Direction::bwd);
    run_case(b, bwd, [&] {
      std::vector<Tensor> outs;  // each set's forward, whose backward is timed
      for (const auto& l : leaves) outs.push_back(sdpa(l));
      bwd.check = both.check;
      bwd.ms = time_on_device([&](int s) { backward(outs[s], s, true); }, n, b.budget).ms;
      b.add_tflops(bwd, flops(Direction::bwd));
    });
    cuda_empty_cache(b.device);
  }
}

void bench_attention(CudaBench& b) {
  for (const AttCase& c : attention_cases(b.quick))
    for (const std::string& dt : b.plan.attention_dtypes) {
      Row like("attention", c.what, "");
      like.dtype = dt;
      run_case(b, like, [&] { bench_case(b, c, dt); });  // inputs that do not fit: one row says so
      cuda_empty_cache(b.device);
    }
}

}  // namespace mmg::bench
#endif  // MMG_WITH_CUDA
