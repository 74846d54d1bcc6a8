// The CPU bench: the ops on the CPU's threads, timed on the host clock.
//
// Each row times one op (forward, or forward + backward) with warm-up and the median of
// repeated runs, and reports it against a baseline measured in the same run:
//   gemm        GFLOP/s (2·M·N·K per product), and the ratio to a bare Eigen product: square
//               products through the matmul op, then the demo's thin products through
//               cpu::gemm (version 2, the f32 register tiles, where the CPU has AVX2 + FMA)
//   softmax,    GB/s (bytes that must move: bench/bench_math.h), and the fraction of the
//   layer_norm  measured memcpy bandwidth
//   attention   GFLOP/s (4·B·H·Sq·Sk·D forward, 3.5× that forward + backward); the op, then
//               each of the kernel's two CPU paths on its own (kernels/attention.h), the
//               query-lanes path as a fraction of the query-blocks path's rate
// Numbers are for reading, never asserted: they depend on the machine.
#include <Eigen/Dense>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "bench/bench_math.h"
#include "bench/benches.h"
#include "core/mmgrad.h"
#include "kernels/attention.h"
#include "kernels/cpu/gemm_tiles.h"
#include "kernels/gemm.h"
#include "kernels/cpu/parallel.h"

namespace mmg::bench {

// Median wall time of fn in seconds, after warm-up, over enough runs to fill ~min_seconds.
static double time_median(const std::function<void()>& fn, double min_seconds = 0.3) {
  using clock = std::chrono::steady_clock;
  for (int i = 0; i < 2; ++i) fn();
  std::vector<double> runs;
  auto start = clock::now();
  while (runs.size() < 5 ||
         (std::chrono::duration<double>(clock::now() - start).count() < min_seconds && runs.size() < 200)) {
    auto t0 = clock::now();
    fn();
    runs.push_back(std::chrono::duration<double>(clock::now() - t0).count());
  }
  return median(runs);
}

// Copy bandwidth in GB/s counting read + write bytes, on a buffer far larger than the caches.
static double memcpy_bandwidth() {
  const size_t bytes = size_t{256} << 20;
  std::vector<char> a(bytes, 1), b(bytes, 0);
  double t = time_median([&] {
    cpu::parallel_for(static_cast<int64_t>(bytes), 1 << 22, [&](int64_t lo, int64_t hi) {
      std::memcpy(b.data() + lo, a.data() + lo, static_cast<size_t>(hi - lo));
    });
  });
  return copy_bytes(bytes) / t / 1e9;
}

// A row timed at `seconds`, with its rate from the work it did.
static Row timed(Row r, double seconds, double work, const char* unit, double baseline_rate, const char* baseline) {
  r.ms = seconds * 1e3;
  r.rate = work / seconds / 1e9;
  r.unit = unit;
  if (baseline_rate > 0) {
    r.fraction = r.rate / baseline_rate;
    r.baseline = baseline;
  }
  return r;
}

static void bench_gemm(Report& report, bool quick) {
  for (int64_t n : quick ? std::vector<int64_t>{128, 256} : std::vector<int64_t>{128, 256, 512, 1024}) {
    Tensor a = randn({n, n}), b = randn({n, n});
    double t = time_median([&] { matmul(a, b); });
    Eigen::MatrixXf ea = Eigen::MatrixXf::Random(n, n), eb = Eigen::MatrixXf::Random(n, n), ec(n, n);
    Eigen::setNbThreads(cpu::num_threads());
    double te = time_median([&] { ec.noalias() = ea * eb; });
    Row r("gemm", "", fmt::format("{}x{}x{}", n, n, n), {{"M", n}, {"N", n}, {"K", n}});
    r.version = cpu::kGemmTiles ? 2 : 1;
    r.note = fmt::format("Eigen {:.1f} GFLOP/s", gemm_flops(n, n, n) / te / 1e9);
    report.add(timed(r, t, gemm_flops(n, n, n), "GFLOP/s", gemm_flops(n, n, n) / te / 1e9, "eigen"));
  }
}

// The products of a transformer layer of width 64 over the demo's token rows, in the three
// orientations a linear layer runs: y = x·Wᵀ (forward), g·W (input gradient) and gᵀ·x (weight
// gradient); and the convolutional stem's first layer (16 channels from 3×3×3 windows). These
// are tall and thin, where the f32 register tiles (kernels/cpu/gemm_tiles.cpp) and Eigen
// differ most. The baseline is Eigen's own product on the same row-major operands, on its own
// threads (Eigen::setNbThreads), in the same run.
static void bench_gemm_thin(Report& report, bool quick) {
  using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  struct Case {
    const char* label;
    int64_t rows, out, in;
  };
  const std::vector<Case> cases = quick ? std::vector<Case>{{"demo attention projection", 4352, 64, 64}}
                                        : std::vector<Case>{{"demo attention projection", 4352, 64, 64},
                                                            {"demo MLP up", 4352, 256, 64},
                                                            {"demo MLP down", 4352, 64, 256},
                                                            {"demo conv stem", 65536, 16, 27}};
  Eigen::setNbThreads(cpu::num_threads());
  for (const Case& c : cases) {
    RowMajor x = RowMajor::Random(c.rows, c.in), w = RowMajor::Random(c.out, c.in), g = RowMajor::Random(c.rows, c.out);
    RowMajor y(c.rows, c.out), gx(c.rows, c.in), gw(c.out, c.in), ey(c.rows, c.out), egx(c.rows, c.in), egw(c.out, c.in);
    struct Orientation {
      const char* name;
      std::function<void()> ours, eigen;
      const RowMajor *got, *want;
    };
    const std::vector<Orientation> orientations = {
        {"x·Wᵀ", [&] { cpu::gemm<float>(false, true, c.rows, c.out, c.in, 1.0f, x.data(), c.in, w.data(), c.in, 0.0f, y.data(), c.out); },
         [&] { ey.noalias() = x * w.transpose(); }, &y, &ey},
        {"g·W", [&] { cpu::gemm<float>(false, false, c.rows, c.in, c.out, 1.0f, g.data(), c.out, w.data(), c.in, 0.0f, gx.data(), c.in); },
         [&] { egx.noalias() = g * w; }, &gx, &egx},
        {"gᵀ·x", [&] { cpu::gemm<float>(true, false, c.out, c.in, c.rows, 1.0f, g.data(), c.out, x.data(), c.in, 0.0f, gw.data(), c.in); },
         [&] { egw.noalias() = g.transpose() * x; }, &gw, &egw}};
    for (const Orientation& o : orientations) {
      const double flops = gemm_flops(c.rows, c.out, c.in);
      const double t = time_median(o.ours), te = time_median(o.eigen);
      const double err = (*o.got - *o.want).cwiseAbs().maxCoeff() / std::max(1.0f, o.want->cwiseAbs().maxCoeff());
      Row r("gemm", fmt::format("{} {}", c.label, o.name), fmt::format("{}x{}x{}", c.rows, c.out, c.in),
            {{"rows", c.rows}, {"out", c.out}, {"in", c.in}});
      r.version = cpu::kGemmTiles ? 2 : 1;
      r.check = err < 1e-5 ? "ok" : fmt::format("FAILED: max relative difference {:.1e} from Eigen", err);
      r.note = fmt::format("Eigen {:.1f} GFLOP/s", flops / te / 1e9);
      report.add(timed(r, t, flops, "GFLOP/s", flops / te / 1e9, "eigen"));
    }
  }
}

static std::vector<std::pair<int64_t, int64_t>> row_shapes(bool quick) {
  if (quick) return {{197 * 8, 768}};
  return {{197 * 64, 768}, {512 * 16, 768}, {197 * 64, 3072}};
}

static void bench_softmax(Report& report, bool quick, double bw) {
  for (auto [r, c] : row_shapes(quick)) {
    const Row like("softmax", "", fmt::format("[{},{}]", r, c), {{"rows", r}, {"cols", c}});
    Tensor x = randn({r, c});
    double t = time_median([&] { softmax(x, -1); });
    report.add(timed(like, t, softmax_bytes(r, c, 4, Direction::fwd), "GB/s", bw, "memcpy"));
    Tensor xg = x.detach().requires_grad_();
    Tensor g = randn({r, c});
    double tb = time_median([&] {
      softmax(xg, -1).backward(g);
      xg.zero_grad();
    });
    Row both = like;
    both.direction = Direction::fwd_bwd;
    report.add(timed(both, tb, softmax_bytes(r, c, 4, Direction::fwd_bwd), "GB/s", bw, "memcpy"));
  }
}

static void bench_layer_norm(Report& report, bool quick, double bw) {
  for (auto [r, c] : row_shapes(quick)) {
    const Row like("layer_norm", "", fmt::format("[{},{}]", r, c), {{"rows", r}, {"cols", c}});
    Tensor x = randn({r, c}), w = randn({c}), bias = randn({c});
    double t = time_median([&] { layer_norm(x, {c}, w, bias); });
    report.add(timed(like, t, layer_norm_bytes(r, c, 4, Direction::fwd), "GB/s", bw, "memcpy"));
    Tensor xg = x.detach().requires_grad_(), wg = w.detach().requires_grad_(), bg = bias.detach().requires_grad_();
    Tensor g = randn({r, c});
    double tb = time_median([&] {
      layer_norm(xg, {c}, wg, bg).backward(g);
      xg.zero_grad();
      wg.zero_grad();
      bg.zero_grad();
    });
    Row both = like;
    both.direction = Direction::fwd_bwd;
    report.add(timed(both, tb, layer_norm_bytes(r, c, 4, Direction::fwd_bwd), "GB/s", bw, "memcpy"));
  }
}

// The kernel's two CPU paths on packed [B, H, S, D] buffers, each named outright: forward, and
// forward + backward; the query-lanes path twice, with P recomputed in the backward and with P
// kept by the forward (as the op runs it when a gradient follows). The query-lanes rows report
// their rates as fractions of the query-blocks one.
static void bench_attention_paths(Report& report, int64_t B, int64_t H, int64_t Sq, int64_t Sk, int64_t D, bool causal,
                                  const Row& like) {
  using cpu::CpuAttentionPath;
  std::vector<float> q(B * H * Sq * D), k(B * H * Sk * D), v(k.size()), dout(q.size());
  for (auto* x : {&q, &k, &v, &dout})
    for (size_t i = 0; i < x->size(); ++i) (*x)[i] = static_cast<float>((i * 2654435761u) % 1000) / 500.0f - 1.0f;
  std::vector<float> out(q.size()), lse(B * H * Sq), dq(q.size()), dk(k.size()), dv(v.size());
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  std::vector<float> weights(cpu::cpu_attention_saved_weights(B, H, Sq, Sk, D, CpuAttentionPath::query_lanes));
  double blocks_rate[2] = {0, 0};
  for (int variant = 0; variant < 3; ++variant) {
    const CpuAttentionPath path = variant == 0 ? CpuAttentionPath::query_blocks : CpuAttentionPath::query_lanes;
    const bool lanes = variant > 0;
    float* kept = variant == 2 ? weights.data() : nullptr;
    auto forward = [&] {
      cpu::attention_forward<float>(q.data(), k.data(), v.data(), nullptr, nullptr, out.data(), lse.data(), B, H, Sq,
                                    Sk, D, causal, scale, {}, path, kept);
    };
    const double t = time_median(forward);
    const double tb = time_median([&] {
      forward();
      cpu::attention_backward<float>(q.data(), k.data(), v.data(), nullptr, nullptr, out.data(), dout.data(),
                                     lse.data(), dq.data(), dk.data(), dv.data(), B, H, Sq, Sk, D, causal, scale, {},
                                     path, kept);
    });
    Row r = like;
    r.label = like.label + (variant == 0   ? ", kernel: query blocks"
                            : variant == 1 ? ", kernel: query lanes, P recomputed"
                                           : ", kernel: query lanes, P kept");
    const double flops[2] = {attention_flops(B, H, Sq, Sk, D, causal, Direction::fwd),
                             attention_flops(B, H, Sq, Sk, D, causal, Direction::fwd_bwd)};
    for (int dir = 0; dir < 2; ++dir) {
      r.direction = dir == 0 ? Direction::fwd : Direction::fwd_bwd;
      const double secs = dir == 0 ? t : tb;
      Row row = timed(r, secs, flops[dir], "GFLOP/s", lanes ? blocks_rate[dir] : 0, lanes ? "query blocks" : "");
      if (!lanes) blocks_rate[dir] = row.rate;
      if (cpu::cpu_attention_path_for(Sk, D) == path && variant != 1) row.note = "the op's path at this size";
      report.add(row);
    }
  }
}

// Padded texts: the demo's fusion calls over 128 captions padded to 28 tokens (lengths 6–28), the
// op with and without a query mask over the pads (what nn::MultiHeadAttention passes for packed
// tokens). Both rows count the padded work, so the masked row's rate is an effective one and its
// fraction is the speed-up.
static void bench_attention_padded(Report& report) {
  const int64_t B = 128, H = 8, S = 28, D = 8;
  std::vector<bool> real(static_cast<size_t>(B * S));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < S; ++i) real[b * S + i] = i < (b % 16 == 0 ? S : 6 + (b * 7) % 16);
  const Tensor mask = from_vector<bool>(real, {B, S});
  for (const bool self : {true, false}) {
    const int64_t Sk = self ? S : 17;  // self: causal, the key mask too; cross: 17 image tokens
    Tensor q = randn({B, H, S, D}), k = randn({B, H, Sk, D}), v = randn({B, H, Sk, D}), g = randn({B, H, S, D});
    const Tensor key_mask = self ? mask : Tensor();
    double base[2] = {0, 0};
    for (const bool masked : {false, true}) {
      const Tensor query_mask = masked ? mask : Tensor();
      auto op = [&](const Tensor& a, const Tensor& b, const Tensor& c) {
        return scaled_dot_product_attention(a, b, c, key_mask, self, std::nullopt, 0.0, nullptr, query_mask);
      };
      const Row like("attention", fmt::format("demo fusion {}, padded texts, query mask: {}",
                                              self ? "self causal" : "cross", masked ? "the pads" : "none"),
                     fmt::format("{}x{}x{}x{}x{}{}", B, H, S, Sk, D, self ? " causal" : ""),
                     {{"B", B}, {"H", H}, {"Sq", S}, {"Sk", Sk}, {"D", D}, {"causal", self}, {"query_mask", masked}});
      Tensor qg = q.detach().requires_grad_(), kg = k.detach().requires_grad_(), vg = v.detach().requires_grad_();
      const double t[2] = {time_median([&] { op(q, k, v); }), time_median([&] {
                             op(qg, kg, vg).backward(g);
                             qg.zero_grad();
                             kg.zero_grad();
                             vg.zero_grad();
                           })};
      for (int dir = 0; dir < 2; ++dir) {
        Row r = like;
        r.direction = dir == 0 ? Direction::fwd : Direction::fwd_bwd;
        const double flops = attention_flops(B, H, S, Sk, D, self, r.direction);
        r = timed(r, t[dir], flops, "GFLOP/s", masked ? base[dir] : 0, masked ? "no query mask" : "");
        if (!masked) base[dir] = r.rate;
        r.note = "rate counts the padded work";
        report.add(r);
      }
    }
  }
}

static void bench_attention(Report& report, bool quick) {
  struct Att {
    int64_t b, h, sq, sk, d;
    bool causal;
    const char* what;
  };
  std::vector<Att> atts = quick ? std::vector<Att>{{2, 4, 65, 65, 32, false, "vit-tiny"}}
                                : std::vector<Att>{{64, 4, 17, 17, 16, false, "demo vit self"},
                                                   {64, 4, 28, 28, 16, false, "demo text self"},
                                                   {128, 8, 28, 28, 8, true, "demo fusion self causal"},
                                                   {128, 8, 28, 17, 8, false, "demo fusion cross, 2 captions"},
                                                   {192, 8, 15, 17, 8, false, "demo fusion cross"},
                                                   {16, 8, 64, 64, 32, false, "64 tokens, heads of 32"},
                                                   {8, 12, 197, 197, 64, false, "vit-b/16 self"},
                                                   {8, 12, 64, 197, 64, false, "text->image cross"},
                                                   {8, 12, 77, 77, 64, true, "caption causal"}};
  for (const Att& a : atts) {
    Tensor q = randn({a.b, a.h, a.sq, a.d}), k = randn({a.b, a.h, a.sk, a.d}), v = randn({a.b, a.h, a.sk, a.d});
    const Row like("attention", a.what,
                   fmt::format("{}x{}x{}x{}x{}{}", a.b, a.h, a.sq, a.sk, a.d, a.causal ? " causal" : ""),
                   {{"B", a.b}, {"H", a.h}, {"Sq", a.sq}, {"Sk", a.sk}, {"D", a.d}, {"causal", a.causal}});
    double t = time_median([&] { scaled_dot_product_attention(q, k, v, Tensor(), a.causal); });
    report.add(timed(like, t, attention_flops(a.b, a.h, a.sq, a.sk, a.d, a.causal, Direction::fwd), "GFLOP/s", 0, ""));
    Tensor qg = q.detach().requires_grad_(), kg = k.detach().requires_grad_(), vg = v.detach().requires_grad_();
    Tensor g = randn({a.b, a.h, a.sq, a.d});
    double tb = time_median([&] {
      scaled_dot_product_attention(qg, kg, vg, Tensor(), a.causal).backward(g);
      qg.zero_grad();
      kg.zero_grad();
      vg.zero_grad();
    });
    Row both = like;
    both.direction = Direction::fwd_bwd;
    report.add(
        timed(both, tb, attention_flops(a.b, a.h, a.sq, a.sk, a.d, a.causal, Direction::fwd_bwd), "GFLOP/s", 0, ""));
    bench_attention_paths(report, a.b, a.h, a.sq, a.sk, a.d, a.causal, like);
  }
  if (!quick) bench_attention_padded(report);
}

int run_cpu_bench(const BenchPlan& plan, const BenchOptions& opts, Report& report, nlohmann::json& meta) {
  manual_seed(0);
  const double bw = memcpy_bandwidth();
  report.note(
      fmt::format("mmgrad CPU benchmarks: {} threads (MMG_NUM_THREADS), memcpy bandwidth {:.1f} GB/s (read + write)",
                  cpu::num_threads(), bw));
  meta = {{"device", "cpu"}, {"threads", cpu::num_threads()}, {"memcpy_gbps", bw}};
  for (const std::string& k : plan.kernels) {
    if (k == "gemm") {
      bench_gemm(report, opts.quick);
      bench_gemm_thin(report, opts.quick);
    }
    else if (k == "softmax")
      bench_softmax(report, opts.quick, bw);
    else if (k == "layer_norm")
      bench_layer_norm(report, opts.quick, bw);
    else if (k == "attention")
      bench_attention(report, opts.quick);
  }
  return 0;  // the CPU ops are the reference: there is nothing to check them against here
}

}  // namespace mmg::bench
