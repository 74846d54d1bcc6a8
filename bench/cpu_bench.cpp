// mmg_bench: CPU kernel benchmarks, printed as a table.
//
// Each row times one op (forward, or forward + backward) with warm-up and the median of
// repeated runs, and reports it against a baseline measured in the same run:
//   matmul      GFLOP/s (2·M·N·K per product), and the ratio to a bare Eigen product
//   softmax,    GB/s (bytes that must move: read x + write y forward; read y, dy +
//   layer_norm  write dx backward), and the fraction of the measured memcpy bandwidth
//   attention   milliseconds and GFLOP/s (4·B·H·Sq·Sk·D forward, 2.5× that backward)
// Numbers are for reading, never asserted: they depend on the machine.
#include <CLI/CLI.hpp>
#include <Eigen/Dense>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <vector>

#include "core/mmgrad.h"
#include "kernels/cpu/parallel.h"

using namespace mmg;

// Median wall time of fn in seconds, after warm-up, over enough runs to fill ~min_seconds.
static double time_median(const std::function<void()>& fn, double min_seconds = 0.3) {
  using clock = std::chrono::steady_clock;
  for (int i = 0; i < 2; ++i) fn();
  std::vector<double> runs;
  auto start = clock::now();
  while (runs.size() < 5 || (std::chrono::duration<double>(clock::now() - start).count() < min_seconds && runs.size() < 200)) {
    auto t0 = clock::now();
    fn();
    runs.push_back(std::chrono::duration<double>(clock::now() - t0).count());
  }
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
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
  return 2.0 * bytes / t / 1e9;
}

static void row(const char* op, const std::string& shape, double ms, const std::string& rate, const std::string& ref) {
  std::printf("%-22s %-26s %10.3f  %-16s %s\n", op, shape.c_str(), ms, rate.c_str(), ref.c_str());
}

int main(int argc, char** argv) {
  CLI::App app{"mmg_bench: CPU kernel benchmarks"};
  bool quick = false;
  app.add_flag("--quick", quick, "Fewer, smaller shapes (a smoke run)");
  CLI11_PARSE(app, argc, argv);

  manual_seed(0);
  double bw = memcpy_bandwidth();
  std::printf("mmgrad CPU benchmarks: %d threads (MMG_NUM_THREADS), memcpy bandwidth %.1f GB/s (read + write)\n\n",
              cpu::num_threads(), bw);
  std::printf("%-22s %-26s %10s  %-16s %s\n", "op", "shape", "ms", "rate", "vs baseline");

  // ---- matmul against a bare Eigen product of the same size ----
  for (int64_t n : quick ? std::vector<int64_t>{128, 256} : std::vector<int64_t>{128, 256, 512, 1024}) {
    Tensor a = randn({n, n}), b = randn({n, n});
    double t = time_median([&] { matmul(a, b); });
    Eigen::MatrixXf ea = Eigen::MatrixXf::Random(n, n), eb = Eigen::MatrixXf::Random(n, n), ec(n, n);
    Eigen::setNbThreads(cpu::num_threads());
    double te = time_median([&] { ec.noalias() = ea * eb; });
    double gf = 2.0 * n * n * n / t / 1e9, gfe = 2.0 * n * n * n / te / 1e9;
    row("matmul f32", fmt::format("{}x{}x{}", n, n, n), t * 1e3, fmt::format("{:.1f} GFLOP/s", gf),
        fmt::format("{:.2f}x of Eigen ({:.1f} GFLOP/s)", gf / gfe, gfe));
  }

  // ---- softmax and layer_norm: memory-bound, reported against memcpy ----
  std::vector<std::pair<int64_t, int64_t>> rows_cols =
      quick ? std::vector<std::pair<int64_t, int64_t>>{{197 * 8, 768}}
            : std::vector<std::pair<int64_t, int64_t>>{{197 * 64, 768}, {512 * 16, 768}, {197 * 64, 3072}};
  for (auto [r, c] : rows_cols) {
    std::string shape = fmt::format("[{},{}]", r, c);
    double bytes = 4.0 * r * c;
    Tensor x = randn({r, c});
    double t = time_median([&] { softmax(x, -1); });
    row("softmax fwd", shape, t * 1e3, fmt::format("{:.1f} GB/s", 2 * bytes / t / 1e9),
        fmt::format("{:.0f}% of memcpy", 100 * 2 * bytes / t / 1e9 / bw));
    Tensor xg = x.detach().requires_grad_();
    Tensor g = randn({r, c});
    double tb = time_median([&] {
      Tensor y = softmax(xg, -1);
      y.backward(g);
      xg.zero_grad();
    });
    row("softmax fwd+bwd", shape, tb * 1e3, fmt::format("{:.1f} GB/s", 5 * bytes / tb / 1e9),
        fmt::format("{:.0f}% of memcpy", 100 * 5 * bytes / tb / 1e9 / bw));
    Tensor w = randn({c}), bias = randn({c});
    double tl = time_median([&] { layer_norm(x, {c}, w, bias); });
    row("layer_norm fwd", shape, tl * 1e3, fmt::format("{:.1f} GB/s", 2 * bytes / tl / 1e9),
        fmt::format("{:.0f}% of memcpy", 100 * 2 * bytes / tl / 1e9 / bw));
    Tensor wg = w.detach().requires_grad_(), bg = bias.detach().requires_grad_();
    double tlb = time_median([&] {
      Tensor y = layer_norm(xg, {c}, wg, bg);
      y.backward(g);
      xg.zero_grad();
      wg.zero_grad();
      bg.zero_grad();
    });
    row("layer_norm fwd+bwd", shape, tlb * 1e3, fmt::format("{:.1f} GB/s", 5 * bytes / tlb / 1e9),
        fmt::format("{:.0f}% of memcpy", 100 * 5 * bytes / tlb / 1e9 / bw));
  }

  // ---- attention: the multimodal shapes, forward and forward + backward ----
  struct Att { int64_t b, h, sq, sk, d; bool causal; const char* what; };
  std::vector<Att> atts = quick ? std::vector<Att>{{2, 4, 65, 65, 32, false, "vit-tiny"}}
                                : std::vector<Att>{{8, 12, 197, 197, 64, false, "vit-b/16 self"},
                                                   {8, 12, 64, 197, 64, false, "text->image cross"},
                                                   {8, 12, 77, 77, 64, true, "caption causal"}};
  for (const Att& a : atts) {
    Tensor q = randn({a.b, a.h, a.sq, a.d}), k = randn({a.b, a.h, a.sk, a.d}), v = randn({a.b, a.h, a.sk, a.d});
    double flops = 4.0 * a.b * a.h * a.sq * a.sk * a.d * (a.causal ? 0.5 : 1.0);
    std::string shape = fmt::format("{} {}x{}x{}x{}x{}", a.what, a.b, a.h, a.sq, a.sk, a.d);
    double t = time_median([&] { scaled_dot_product_attention(q, k, v, Tensor(), a.causal); });
    row("attention fwd", shape, t * 1e3, fmt::format("{:.1f} GFLOP/s", flops / t / 1e9), "");
    Tensor qg = q.detach().requires_grad_(), kg = k.detach().requires_grad_(), vg = v.detach().requires_grad_();
    Tensor g = randn({a.b, a.h, a.sq, a.d});
    double tb = time_median([&] {
      scaled_dot_product_attention(qg, kg, vg, Tensor(), a.causal).backward(g);
      qg.zero_grad();
      kg.zero_grad();
      vg.zero_grad();
    });
    row("attention fwd+bwd", shape, tb * 1e3, fmt::format("{:.1f} GFLOP/s", 3.5 * flops / tb / 1e9), "");
  }
  return 0;
}
