// The benchmarks' pure logic (bench/bench_*.h), which runs on every machine: what each
// kernel must move or compute, the rotation of input sets against the L2 cache, the median,
// the result check, the JSON and table rows, and the options' errors. The timing itself
// needs a GPU and is not tested here.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <string>

#include "bench/bench_math.h"
#include "bench/bench_options.h"
#include "bench/bench_report.h"

using namespace mmg;
using namespace mmg::bench;

// ---- bytes and FLOPs, against counts made from the tensors and loops themselves ----

// Bytes of a list of tensors given by their element counts.
static double bytes_of_tensors(std::initializer_list<double> numels, double elem) {
  double b = 0;
  for (double n : numels) b += n * elem;
  return b;
}

TEST_CASE("bench counts: bytes of the memory-bound kernels are their tensors read once and written once") {
  const int64_t M = 64 * 197, N = 768;
  const double mn = static_cast<double>(M) * N;
  // softmax: forward reads x, writes y; backward reads y and dy, writes dx.
  CHECK(softmax_bytes(M, N, 4, Direction::fwd) == bytes_of_tensors({mn, mn}, 4));
  CHECK(softmax_bytes(M, N, 4, Direction::bwd) == bytes_of_tensors({mn, mn, mn}, 4));
  CHECK(softmax_bytes(M, N, 2, Direction::fwd_bwd) == bytes_of_tensors({mn, mn, mn, mn, mn}, 2));
  // layer_norm: forward reads x, γ, β and writes y, mean, rstd; backward reads x, dy, γ,
  // mean, rstd and writes dx, dγ, dβ.
  CHECK(layer_norm_bytes(M, N, 4, Direction::fwd) == bytes_of_tensors({mn, N, N, mn, M, M}, 4));
  CHECK(layer_norm_bytes(M, N, 4, Direction::bwd) == bytes_of_tensors({mn, mn, N, M, M, mn, N, N}, 4));
  CHECK(layer_norm_bytes(M, N, 4, Direction::fwd_bwd) ==
        layer_norm_bytes(M, N, 4, Direction::fwd) + layer_norm_bytes(M, N, 4, Direction::bwd));
  // add: a [M,N] + bias [N] reads both, writes [M,N]; same shapes read two, write one.
  CHECK(add_broadcast_bytes(M, N, 4) == bytes_of_tensors({mn, N, mn}, 4));
  CHECK(add_bytes(M * N, 4) == bytes_of_tensors({mn, mn, mn}, 4));
  CHECK(gelu_bytes(M * N, 4, Direction::fwd) == bytes_of_tensors({mn, mn}, 4));
  CHECK(gelu_bytes(M * N, 4, Direction::bwd) == bytes_of_tensors({mn, mn, mn}, 4));
  CHECK(copy_bytes(1 << 20) == 2 << 20);
  // ViT-B/16 softmax forward at 64 images: 77.5 MB.
  CHECK(softmax_bytes(M, N, 4, Direction::fwd) / 1e6 == doctest::Approx(77.4636).epsilon(1e-5));
}

TEST_CASE("bench counts: GEMM and attention FLOPs are twice the multiply-adds of their loops") {
  // Multiply-adds of the naive loops, counted one by one.
  auto gemm_macs = [](int M, int N, int K) {
    double macs = 0;
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j)
        for (int k = 0; k < K; ++k) macs += 1;
    return macs;
  };
  CHECK(gemm_flops(7, 5, 3) == 2 * gemm_macs(7, 5, 3));
  CHECK(gemm_flops(12608, 2304, 768) == doctest::Approx(4.4619e10).epsilon(1e-3));

  // Attention forward per (b, h): S = QKᵀ (Sq·Sk·D multiply-adds) and O = PV (Sq·Sk·D).
  const int B = 2, H = 3, Sq = 5, Sk = 7, D = 4;
  double macs = 0;
  for (int bh = 0; bh < B * H; ++bh) macs += gemm_macs(Sq, Sk, D) + gemm_macs(Sq, D, Sk);
  CHECK(attention_flops(B, H, Sq, Sk, D, false, Direction::fwd) == 2 * macs);
  CHECK(attention_flops(B, H, Sq, Sk, D, false, Direction::bwd) == 2.5 * 2 * macs);
  CHECK(attention_flops(B, H, Sq, Sk, D, false, Direction::fwd_bwd) == 3.5 * 2 * macs);
  // Causal: half, by convention (the published figures count it so).
  CHECK(attention_flops(B, H, Sq, Sk, D, true, Direction::fwd) == macs);
  // ViT-B/16 at 64 images: 4·64·12·197²·64 = 7.63 GFLOP forward.
  CHECK(attention_flops(64, 12, 197, 197, 64, false, Direction::fwd) / 1e9 == doctest::Approx(7.63016).epsilon(1e-5));

  // clip_loss: logits img·txtᵀ forward; d(img) = dL·txt and d(txt) = dLᵀ·img backward.
  const int N = 9, d = 4;
  CHECK(clip_loss_flops(N, d, Direction::fwd) == 2 * gemm_macs(N, N, d));
  CHECK(clip_loss_flops(N, d, Direction::bwd) == 2 * (gemm_macs(N, d, N) + gemm_macs(N, d, N)));
  CHECK(clip_loss_flops(N, d, Direction::fwd_bwd) == 6 * gemm_macs(N, N, d));
  CHECK(clip_loss_flops(32768, 512, Direction::fwd) / 1e12 == doctest::Approx(1.0995).epsilon(1e-4));
}

// ---- timing arithmetic ----

TEST_CASE("bench median: the middle sample, or the mean of the middle two") {
  CHECK(median({3.0}) == 3.0);
  CHECK(median({5.0, 1.0, 3.0}) == 3.0);
  CHECK(median({4.0, 1.0, 3.0, 2.0}) == 2.5);
  CHECK(median({1.0, 100.0, 2.0, 2.0, 1e9}) == 2.0);  // outliers do not move it
  CHECK_THROWS_AS(median({}), std::invalid_argument);
}

TEST_CASE("bench rotation: enough input sets that their total exceeds twice the L2, at least two") {
  const double L2 = 50 * 1048576.0;  // H100
  // ViT-B/16 softmax input, 38.7 MB: three sets (116 MB > 100 MiB).
  CHECK(rotation_count(38.7e6, L2, 256, 1e12) == 3);
  // Sets larger than the L2: still two, so no run finds the previous run's tail in the cache.
  CHECK(rotation_count(4.3e9, L2, 256, 1e12) == 2);
  // Small sets: many, up to the cap.
  CHECK(rotation_count(1048576.0, L2, 256, 1e12) == 101);
  CHECK(rotation_count(1024.0, L2, 256, 1e12) == 256);
  CHECK(rotation_count(1024.0, L2, 32, 1e12) == 32);
  // Memory decides last: what fits, at least one.
  CHECK(rotation_count(1e9, L2, 256, 2.5e9) == 2);
  CHECK(rotation_count(3e9, L2, 256, 2.5e9) == 1);
  CHECK(rotation_count(1048576.0, L2, 256, 10 * 1048576.0) == 10);
  CHECK(rotation_count(0, L2, 256, 1e12) == 1);

  // Over a range of sizes: the total exceeds 2·L2 and one set fewer would not (unless two).
  for (double set = 1e5; set < 3e8; set *= 1.37) {
    const int n = rotation_count(set, L2, 100000, 1e15);
    INFO("set bytes " << set << " -> " << n);
    CHECK(n >= 2);
    CHECK(n * set > 2 * L2);
    if (n > 2) CHECK((n - 1) * set <= 2 * L2);
  }
}

TEST_CASE("bench samples: runs per sample fill the sample's time") {
  CHECK(reps_per_sample(0.01, 1.0, 1000) == 100);
  CHECK(reps_per_sample(0.3, 1.0, 1000) == 4);  // 3.33 rounds up
  CHECK(reps_per_sample(0.5, 1.0, 1000) == 2);
  CHECK(reps_per_sample(40.0, 1.0, 1000) == 1);
  CHECK(reps_per_sample(1e-6, 1.0, 1000) == 1000);
  CHECK(reps_per_sample(0.0, 1.0, 1000) == 1000);
}

TEST_CASE("bench text shapes: padded lengths run between half and all of S, all of them along the batch") {
  for (int64_t S : {32, 77}) {
    const int64_t half = (S + 1) / 2;
    CHECK(padded_length(0, S) == S);
    std::set<int64_t> seen;
    for (int64_t b = 0; b < 256; ++b) {
      const int64_t L = padded_length(b, S);
      CHECK(L >= S - half + 1);
      CHECK(L <= S);
      seen.insert(L);
    }
    CHECK(static_cast<int64_t>(seen.size()) == half);  // every length from S − half + 1 to S
  }
}

// ---- the result check ----

TEST_CASE("bench check: relative error in the 2-norm, NaN and size mismatch fail") {
  CHECK(relative_error({1, 2, 3}, {1, 2, 3}) == 0);
  CHECK(relative_error({3, 4}, {0, 0}) == INFINITY);
  CHECK(relative_error({0, 0}, {0, 0}) == 0);
  // ‖(0.3, −0.4)‖ / ‖(3, 4)‖ = 0.5 / 5
  CHECK(relative_error({3.3, 3.6}, {3, 4}) == doctest::Approx(0.1));
  CHECK(std::isnan(relative_error({1, NAN}, {1, 2})));
  CHECK(std::isnan(relative_error({1}, {1, 2})));
  CHECK(check_verdict(3e-7, 1e-5).rfind("ok", 0) == 0);
  CHECK(check_verdict(0, 0).rfind("ok", 0) == 0);
  CHECK(check_verdict(0.4, 1e-5).rfind("FAILED", 0) == 0);
  CHECK(check_verdict(NAN, 1e-5).rfind("FAILED", 0) == 0);
}

// ---- rows: JSON and tables ----

static Row sample_row() {
  Row r("softmax", "vit-b/16 B64", "[12608,768]", {{"rows", 12608}, {"cols", 768}});
  r.version = 2;
  r.direction = Direction::bwd;
  r.ms = 0.0412;
  r.rate = 2822.5;
  r.unit = "GB/s";
  r.fraction = 0.941;
  r.baseline = "copy";
  r.goal = "≥ 80% copy";
  r.check = "ok (rel 1.2e-07)";
  return r;
}

TEST_CASE("bench rows: the JSON form has every key torch_compare.py reads") {
  const nlohmann::json j = row_json(sample_row());
  CHECK(j["kernel"] == "softmax");
  CHECK(j["version"] == 2);
  CHECK(j["case"] == "vit-b/16 B64");
  CHECK(j["shape"] == "[12608,768]");
  CHECK(j["params"]["rows"] == 12608);
  CHECK(j["dtype"] == "f32");
  CHECK(j["direction"] == "bwd");
  CHECK(j["median_ms"].get<double>() == 0.0412);
  CHECK(j["gbps"].get<double>() == 2822.5);
  CHECK(!j.contains("tflops"));
  CHECK(j["fraction"].get<double>() == 0.941);
  CHECK(j["baseline"] == "copy");
  CHECK(j["goal"] == "≥ 80% copy");
  CHECK(!j.contains("skipped"));
  CHECK(!j.contains("peak_bytes"));
  // It survives a round trip through text.
  CHECK(nlohmann::json::parse(j.dump()) == j);

  Row t("attention", "long S4k", "B4 H16 Sq4096 Sk4096 D128");
  t.unit = "TFLOP/s";
  t.rate = 41.5;
  t.ms = 12.0;
  t.peak_bytes = 8.6e9;
  t.direction = Direction::fwd_bwd;
  const nlohmann::json k = row_json(t);
  CHECK(k["tflops"].get<double>() == 41.5);
  CHECK(k["direction"] == "fwd+bwd");
  CHECK(k["peak_bytes"].get<double>() == 8.6e9);
  CHECK(k["fraction"].is_null());  // no baseline measured: null, never NaN in the file
}

TEST_CASE("bench rows: a skipped row says why and has no timing keys") {
  Row r = skipped_row(Row("attention", "long S4k", "B4 H16 Sq4096 Sk4096 D128"), "out of memory: asked 4.0 GiB");
  const nlohmann::json j = row_json(r);
  CHECK(j["skipped"] == "out of memory: asked 4.0 GiB");
  CHECK(!j.contains("median_ms"));
  CHECK(!j.contains("fraction"));
  CHECK(format_row(r, false).find("skipped: out of memory") != std::string::npos);
}

TEST_CASE("bench rows: the plain and markdown tables show the case, time, rate, fraction and goal") {
  const Row r = sample_row();
  const std::string plain = format_row(r, false), md = format_row(r, true);
  for (const std::string& line : {plain, md}) {
    INFO(line);
    CHECK(line.find("softmax") != std::string::npos);
    CHECK(line.find("vit-b/16 B64 [12608,768]") != std::string::npos);
    CHECK(line.find("0.0412") != std::string::npos);
    CHECK(line.find("2822.5 GB/s") != std::string::npos);
    CHECK(line.find("94% copy") != std::string::npos);
    CHECK(line.find("goal ≥ 80% copy") != std::string::npos);
    CHECK(line.find("rel 1.2e-07") == std::string::npos);  // a passed check stays quiet
  }
  // A markdown row has as many cells as its header.
  auto cells = [](const std::string& s) { return std::count(s.begin(), s.end(), '|'); };
  const std::string header = table_header(true);
  CHECK(cells(md) == cells(header.substr(0, header.find('\n'))));
  Row failed = r;
  failed.check = "FAILED: relative error 4.0e-01 > 1e-05";
  CHECK(check_failed(failed));
  CHECK(format_row(failed, false).find("check FAILED") != std::string::npos);
}

TEST_CASE("bench report: markdown keeps the notes for after the one table, the JSON holds meta and rows") {
  std::FILE* out = std::tmpfile();
  REQUIRE(out != nullptr);
  Report report(true, out);
  report.note("a note that the markdown mode keeps for after the table");
  report.add(sample_row());
  report.add(skipped_row(Row("clip_loss", "clip", "N32768 d512"), "no kernel family"));
  const nlohmann::json doc = report.json({{"gpu", "test"}});
  CHECK(doc["meta"]["gpu"] == "test");
  REQUIRE(doc["rows"].size() == 2);
  CHECK(doc["rows"][0]["kernel"] == "softmax");
  CHECK(doc["rows"][1]["skipped"] == "no kernel family");
  report.finish();
  // What was printed: the header, the two rows, then the note.
  std::rewind(out);
  std::string text;
  for (int c; (c = std::fgetc(out)) != EOF;) text += static_cast<char>(c);
  std::fclose(out);
  const size_t header = text.find("| kernel |"), note = text.find("- a note");
  CHECK(header == 0);
  CHECK(text.find("| softmax |") > header);
  CHECK(text.find("| clip_loss |") < note);
  CHECK(note != std::string::npos);
}

// ---- options ----

static std::vector<KernelFamily> fake_families() {
  return {{"attention", {"scores in memory", "flash"}, 2}, {"softmax", {"two pass", "online"}, 2}};
}

static BenchOptions parse(std::vector<std::string> args) {
  CLI::App app;
  BenchOptions o;
  add_bench_options(app, o, fake_families());
  std::reverse(args.begin(), args.end());  // CLI11 takes them last first
  app.parse(args);
  return o;
}

static BenchPlan plan_for(std::vector<std::string> args, int gpus) {
  return resolve_options(parse(std::move(args)), gpus, "no usable GPU: CUDA driver version is insufficient",
                         fake_families());
}

TEST_CASE("bench options: auto picks the GPU when one is usable, else the CPU bench") {
  BenchPlan p = plan_for({}, 0);
  CHECK(!p.cuda);
  CHECK(p.kernels == cpu_bench_kernels());
  p = plan_for({}, 1);
  CHECK(p.cuda);
  CHECK(p.device_index == 0);
  CHECK(p.kernels == cuda_bench_kernels());
  CHECK(p.dtypes == std::vector<std::string>{"f32", "bf16"});
  CHECK(p.clip_dtypes == std::vector<std::string>{"f32", "bf16"});
  CHECK(p.row_dtypes == std::vector<std::string>{"f32", "bf16", "f16"});
  CHECK(p.attention_dtypes == std::vector<std::string>{"f32", "bf16", "f16"});
  p = plan_for({"--device", "cuda:1", "--kernel", "attention", "--version", "2", "--dtype", "bf16"}, 2);
  CHECK(p.cuda);
  CHECK(p.device_index == 1);
  CHECK(p.kernels == std::vector<std::string>{"attention"});
  CHECK(p.version == 2);
  CHECK(p.dtypes == std::vector<std::string>{"bf16"});
  CHECK(p.row_dtypes == std::vector<std::string>{"bf16"});
  CHECK(p.attention_dtypes == std::vector<std::string>{"bf16"});
  // f16 is timed by softmax, layer_norm, attention and clip_loss; gemm's linear cases time nothing then.
  p = plan_for({"--dtype", "f16"}, 1);
  CHECK(p.dtypes.empty());
  CHECK(p.clip_dtypes == std::vector<std::string>{"f16"});
  CHECK(plan_for({"--kernel", "clip_loss", "--dtype", "f16"}, 1).clip_dtypes == std::vector<std::string>{"f16"});
  CHECK(p.row_dtypes == std::vector<std::string>{"f16"});
  CHECK(p.attention_dtypes == std::vector<std::string>{"f16"});
  CHECK(plan_for({"--kernel", "layer_norm", "--dtype", "f16"}, 1).row_dtypes == std::vector<std::string>{"f16"});
  CHECK(plan_for({"--device", "cpu", "--kernel", "softmax"}, 1).kernels == std::vector<std::string>{"softmax"});
  const BenchOptions o = parse({"--json", "out.json", "--markdown", "--quick"});
  CHECK(o.json_path == "out.json");
  CHECK(o.markdown);
  CHECK(o.quick);
}

TEST_CASE("bench options: the versions run are the family's, or the one asked for") {
  const auto fams = fake_families();
  CHECK(versions_to_run("attention", plan_for({}, 1), fams) == std::vector<int>{1, 2});
  CHECK(versions_to_run("gemm", plan_for({}, 1), fams) == std::vector<int>{1});
  CHECK(versions_to_run("attention", plan_for({"--kernel", "attention", "--version", "2"}, 1), fams) ==
        std::vector<int>{2});
}

TEST_CASE("bench options: the engine's attention family offers version 4 to --version (the short-key forward)") {
  const std::vector<KernelFamily>& fams = kernel_families();
  CLI::App app;
  BenchOptions o;
  add_bench_options(app, o, fams);
  std::vector<std::string> args = {"--kernel", "attention", "--version", "4", "--dtype", "bf16"};
  std::reverse(args.begin(), args.end());
  app.parse(args);
  const BenchPlan p = resolve_options(o, 1, "", fams);
  CHECK(p.version == 4);
  CHECK(versions_to_run("attention", p, fams) == std::vector<int>{4});
  CHECK(versions_to_run("attention", resolve_options(BenchOptions{}, 1, "", fams), fams) ==
        std::vector<int>{1, 2, 3, 4});
}

TEST_CASE("bench options: each error names what is wrong and what exists") {
  auto error_of = [](std::vector<std::string> args, int gpus) -> std::string {
    try {
      plan_for(std::move(args), gpus);
    } catch (const OptionError& e) {
      return e.what();
    }
    return "(no error)";
  };
  CHECK(error_of({"--device", "cuda"}, 0) == "--device cuda: no usable GPU: CUDA driver version is insufficient");
  CHECK(error_of({"--device", "cuda:2"}, 1) == "--device cuda:2: this machine has 1 GPU(s), cuda:0 to cuda:0");
  CHECK(error_of({"--device", "gpu"}, 1) == "--device gpu: expected cpu, cuda, cuda:N or auto");
  CHECK(error_of({"--device", "cuda:x"}, 1) == "--device cuda:x: expected cpu, cuda, cuda:N or auto");
  CHECK(error_of({"--kernel", "conv"}, 1).find("--kernel conv: expected one of copy, softmax") == 0);
  CHECK(error_of({"--kernel", "clip_loss"}, 0).find("--kernel clip_loss: the CPU bench times gemm, softmax") == 0);
  CHECK(error_of({"--kernel", "clip_loss"}, 0).find("no GPU is usable") != std::string::npos);
  CHECK(error_of({"--version", "2"}, 1).find("--version 2 needs --kernel") == 0);
  CHECK(error_of({"--kernel", "attention", "--version", "3"}, 1) == "--version 3: 'attention' has versions 1 to 2");
  CHECK(error_of({"--kernel", "gemm", "--version", "2"}, 1) == "--version 2: 'gemm' has one version");
  CHECK(error_of({"--kernel", "attention", "--version", "-1"}, 1) == "--version -1: versions count from 1");
  CHECK(error_of({"--kernel", "attention", "--version", "2"}, 0).find("--version 2: the CPU has one version") == 0);
  CHECK(error_of({"--dtype", "f64"}, 1) == "--dtype f64: expected f32, bf16, f16 or all");
  CHECK(error_of({"--kernel", "attention", "--dtype", "f16"}, 1) == "(no error)");
  CHECK(error_of({"--kernel", "softmax", "--dtype", "f16"}, 1) == "(no error)");
  CHECK(error_of({"--kernel", "gemm", "--version", "1"}, 1) == "(no error)");  // its one version
  // Syntax is CLI11's: a version that is not a number, an option that does not exist.
  CHECK_THROWS_AS(parse({"--version", "two"}), CLI::ParseError);
  CHECK_THROWS_AS(parse({"--kernels", "gemm"}), CLI::ParseError);
}
