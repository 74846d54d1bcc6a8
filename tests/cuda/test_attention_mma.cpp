// Attention v3 (flash attention on tensor cores, kernels/cuda/attention_mma.cu) against the CPU
// op in f32 on the same rounded inputs, for bf16 and f16, forward and backward (dq, dk, dv),
// with outputs and gradients poisoned first: lengths 1, 7, 197, 257 (not multiples of the
// 64-row blocks or the 32/64-row streamed tiles), Sq = Sk, Sq < Sk and Sq > Sk with causal,
// cross-attention 64 over 197, key-padding masks with a fully masked batch row, head dims 32,
// 64, 128 (own instances), 24 (16-byte copies on the 32 instance), 100 and 7 (element copies,
// odd stores), 200 (past the tiles: v1 runs), B·H = 70000 (more tiles than blocks); dropout
// (the CPU's mask, forward and backward); the same bits on a rerun; and the error for f32,
// f64 and mixed inputs, which reserves no dropout counters. Tolerances: half_attention_tolerance
// (tests/cuda/attention_test_util.h), checked on the host by test_attention_mma_tiling.cpp.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/cuda/attention_test_util.h"

using namespace mmg;
using namespace mmg::testing;

namespace {

using Case = HalfAttentionCase;

void check_case(const Case& c, DType dt) { check_half_attention_case("attention v3", c, dt); }

}  // namespace

TEST_CASE("cuda attention v3: bf16 and f16 forward and backward against the f32 CPU op") {
  require_gpu();
  REQUIRE(attention_version_count() >= 3);
  const std::vector<Case> cases = {
      {2, 3, 197, 197, 64, false, false},  // ViT
      {2, 2, 77, 77, 32, false, true},     // text with padding, batch row 0 fully masked
      {3, 2, 32, 32, 64, true, true},      // causal text, one streamed tile
      {2, 2, 64, 197, 64, false, true},    // cross-attention: 64 queries over 197 image tokens
      {2, 1, 7, 33, 32, true, false},      // causal, Sq < Sk (keys 7.. seen by no query)
      {2, 1, 33, 7, 128, true, true},      // causal, Sq > Sk (queries 7.. see every key)
      {1, 2, 1, 1, 24, false, false},      // one query, one key; D 24 on the 32 instance
      {1, 2, 1, 257, 128, false, true},    // one query over 257 keys
      {2, 1, 257, 1, 24, true, true},      // 257 queries over one key, masked in batch 0
      {1, 2, 257, 257, 128, true, false},  // causal over 5 blocks a side
      {2, 2, 7, 7, 7, true, true},         // D 7: element copies, odd stores
      {2, 2, 197, 197, 24, false, true},
      {1, 3, 13, 29, 100, true, true},     // D 100 on the 128 instance
      {2, 1, 257, 197, 100, false, false},
      {2, 2, 9, 11, 200, false, true},     // D 200: past the tiles, v1 runs
      {1000, 70, 1, 5, 32, false, true},   // B·H 70000: more tiles than blocks
  };
  KernelVersionGuard guard("attention", 3);
  for (DType dt : {DType::bf16, DType::f16})
    for (const Case& c : cases) check_case(c, dt);
}

TEST_CASE("cuda attention v3: dropout forward and backward against the f32 CPU op with the same generator") {
  require_gpu();
  REQUIRE(attention_version_count() >= 3);
  const std::vector<Case> cases = {
      {2, 3, 197, 197, 64, false, false, 0.1}, {2, 2, 77, 77, 32, false, true, 0.3},
      {2, 2, 64, 197, 64, false, true, 0.2},   {2, 1, 7, 33, 32, true, false, 0.4},
      {2, 1, 33, 7, 128, true, true, 0.6},     {1, 2, 1, 257, 128, false, true, 0.3},
      {1, 2, 257, 257, 128, true, false, 0.1}, {2, 2, 7, 7, 24, true, true, 0.9},
      {1, 3, 13, 29, 100, true, true, 0.3},    {500, 70, 1, 5, 32, false, true, 0.5},
  };
  KernelVersionGuard guard("attention", 3);
  for (DType dt : {DType::bf16, DType::f16})
    for (const Case& c : cases) check_case(c, dt);
}

TEST_CASE("cuda attention v3: the dropped weights are the CPU's, exactly") {
  require_gpu();
  REQUIRE(attention_version_count() >= 3);
  KernelVersionGuard guard("attention", 3);
  // q = 0 and v = I (D = Sk ≤ 128): out[b,h,i,:] is row i of Z ⊙ P, each kept visible weight
  // (1/visible keys)·1/(1−p) ≠ 0 even in 16 bits, so the zeros of out are the dropped or hidden weights.
  struct Shape4 {
    int64_t B, H, Sq, Sk;
    bool causal, mask;
  };
  const std::vector<Shape4> shapes = {{2, 3, 7, 7, false, true},
                                      {1, 2, 197, 64, true, false},
                                      {3, 2, 1, 32, false, true},
                                      {2, 2, 33, 128, true, true},
                                      {2, 1, 257, 100, false, false}};
  for (DType dt : {DType::bf16, DType::f16})
    for (const Shape4& s : shapes) {
      const std::string name = "v3 mask " + dtype_name(dt) + " Sq " + std::to_string(s.Sq) + " Sk " + std::to_string(s.Sk);
      Tensor eye = where(eq(view(arange(s.Sk), {s.Sk, 1}), view(arange(s.Sk), {1, s.Sk})),
                         ones({s.Sk, s.Sk}, {.dtype = dt}), zeros({s.Sk, s.Sk}, {.dtype = dt}));
      Tensor q = zeros({s.B, s.H, s.Sq, s.Sk}, {.dtype = dt});
      Tensor k = uniform({s.B, s.H, s.Sk, s.Sk}, dt, -1, 1);
      Tensor v = expand(view(eye, {1, 1, s.Sk, s.Sk}), {s.B, s.H, s.Sk, s.Sk}).contiguous();
      Tensor mask = s.mask ? key_mask_for(s.B, s.Sk) : Tensor();
      Generator gc(4321), gg(4321);
      Tensor want = scaled_dot_product_attention(q.to(DType::f32), k.to(DType::f32), v.to(DType::f32), mask, s.causal,
                                                 std::nullopt, 0.4, &gc);
      poison_like(want.shape(), dt);
      Tensor got = scaled_dot_product_attention(q.to(kGpu), k.to(kGpu), v.to(kGpu), s.mask ? mask.to(kGpu) : Tensor(),
                                                s.causal, std::nullopt, 0.4, &gg);
      const std::vector<double> w = want.to_vector<double>(), g = got.to_vector<double>();
      int64_t zero_mismatch = 0, zeros_seen = 0;
      for (size_t n = 0; n < w.size(); ++n) {
        zero_mismatch += (w[n] == 0) != (g[n] == 0);
        zeros_seen += w[n] == 0;
      }
      INFO(name);
      CHECK(zero_mismatch == 0);
      CHECK(zeros_seen > 0);
      check_attention_close(got, want, half_attention_tolerance(dt), name + " values");
    }
}

TEST_CASE("cuda attention v3: the backward gives the same bits on every run (no atomics)") {
  require_gpu();
  REQUIRE(attention_version_count() >= 3);
  KernelVersionGuard guard("attention", 3);
  for (DType dt : {DType::bf16, DType::f16}) {
    Tensor q = uniform({2, 3, 197, 64}, dt, -1, 1), k = uniform({2, 3, 197, 64}, dt, -1, 1);
    Tensor v = uniform({2, 3, 197, 64}, dt, -1, 1), r = uniform({2, 3, 197, 64}, dt, -1, 1);
    Tensor mask = key_mask_for(2, 197).to(kGpu);
    std::vector<Tensor> first;
    for (int run = 0; run < 2; ++run) {
      Tensor qg = leaf(q, kGpu), kg = leaf(k, kGpu), vg = leaf(v, kGpu);
      Generator g(99);
      Tensor out = scaled_dot_product_attention(qg, kg, vg, mask, true, std::nullopt, 0.2, &g);
      sum(mul(out, r.to(kGpu))).backward();
      const std::vector<Tensor> now = {out.detach().to(Device::cpu()), qg.grad().to(Device::cpu()),
                                       kg.grad().to(Device::cpu()), vg.grad().to(Device::cpu())};
      for (const Tensor& t : now) CHECK(t.dtype() == dt);  // 16 bits in, 16 bits out
      if (run == 0) {
        first = now;
        continue;
      }
      const char* names[] = {"out", "dq", "dk", "dv"};
      for (size_t i = 0; i < now.size(); ++i)
        check_parity(now[i], first[i], 0.0, 0.0, "v3 " + dtype_name(dt) + " rerun " + names[i]);
    }
  }
}

TEST_CASE("cuda attention v3: f32, f64 and mixed inputs are refused, naming the op and the dtypes") {
  require_gpu();
  REQUIRE(attention_version_count() >= 3);
  KernelVersionGuard guard("attention", 3);
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor q = uniform({2, 2, 5, 8}, dt, -1, 1).to(kGpu), k = uniform({2, 2, 6, 8}, dt, -1, 1).to(kGpu);
    Generator g(5);
    const uint64_t before = g.offset();
    std::string message;
    try {
      scaled_dot_product_attention(q, k, k, Tensor(), false, std::nullopt, 0.5, &g);
    } catch (const Error& e) {
      message = e.what();
    }
    INFO(message);
    CHECK(message.find("scaled_dot_product_attention: attention version 3") != std::string::npos);
    CHECK(message.find("bf16 or f16") != std::string::npos);
    CHECK(message.find("got q " + dtype_name(dt) + " [2,2,5,8]") != std::string::npos);
    CHECK(g.offset() == before);  // refused before the dropout counters are reserved
  }
  // bf16 with f16 promotes to f32: refused too.
  Tensor qb = uniform({1, 1, 4, 8}, DType::bf16, -1, 1).to(kGpu), kh = uniform({1, 1, 4, 8}, DType::f16, -1, 1).to(kGpu);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(qb, kh, kh), doctest::Contains("computed as f32"), Error);
}
