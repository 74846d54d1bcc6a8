// Attention v4 (the short-key forward on tensor cores, kernels/cuda/attention_short.cu, with v3's
// backward) against the f32 CPU op on the same rounded inputs, for bf16 and f16, forward and
// backward, outputs and gradients poisoned first: lengths 1, 7, 197, 256 and 257 (257 keys: v4
// runs v3's forward, attention_short_plan.h), Sq ≠ Sk both ways with causal, cross-attention 64
// over 197, key-padding masks with a fully masked batch row, head dims 32, 64, 128, 24 (16-byte
// copies), 100 and 7 (element copies, odd stores, Q by 16-bit loads), 200 (v1 runs), heads
// sharing a CTA (Sq ≤ 48), a head split into spans (Sq 300), more units than the grid has blocks;
// dropout (the CPU's mask); v4's out and gradients equal v3's bit for bit; and the error for
// f32 and f64 inputs. Tolerances: half_attention_tolerance (tests/cuda/attention_test_util.h),
// checked on the host by tests/kernels/test_attention_short.cpp, which also emulates the kernel.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/cuda/attention_test_util.h"

using namespace mmg;
using namespace mmg::testing;

namespace {

using Case = HalfAttentionCase;

void check_case(const Case& c, DType dt) { check_half_attention_case("attention v4", c, dt); }

}  // namespace

TEST_CASE("cuda attention v4: bf16 and f16 forward and backward against the f32 CPU op") {
  require_gpu();
  REQUIRE(attention_version_count() >= 4);
  const std::vector<Case> cases = {
      {2, 3, 197, 197, 64, false, false},  // ViT: 13 chunks, 208 resident keys
      {2, 2, 77, 77, 32, false, true},     // text with padding, batch row 0 fully masked
      {3, 2, 32, 32, 64, true, true},      // causal text: 2 chunks a head, 2 heads a CTA
      {2, 2, 64, 197, 64, false, true},    // cross-attention: 64 queries over 197 image tokens
      {2, 1, 7, 33, 32, true, false},      // causal, Sq < Sk (keys 7.. seen by no query)
      {2, 1, 33, 7, 128, true, true},      // causal, Sq > Sk (queries 7.. see every key)
      {1, 2, 1, 1, 24, false, false},      // one query, one key; D 24 on the 32 instance
      {5, 1, 1, 9, 32, false, true},       // one query: 4 heads a CTA, the last group one head
      {1, 2, 1, 256, 128, false, true},    // one query over the most keys v4 keeps: 139,520 B
      {1, 2, 256, 256, 128, true, false},  // causal, 4 key tiles
      {1, 2, 1, 257, 128, false, true},    // 257 keys: v3's forward runs
      {1, 2, 257, 257, 64, true, true},    // 257 keys, causal: v3's forward
      {2, 1, 257, 1, 24, true, true},      // 257 queries over one key: 17 chunks, two spans
      {1, 1, 300, 40, 32, true, false},    // 19 chunks: two spans of 10 and 9
      {2, 2, 7, 7, 7, true, true},         // D 7: element copies, odd stores, Q by 16-bit loads
      {2, 2, 197, 197, 24, false, true},
      {1, 3, 13, 29, 100, true, true},     // D 100 on the 128 instance
      {2, 1, 197, 256, 100, false, false},
      {2, 2, 9, 11, 200, false, true},     // D 200: past the tiles, v1 runs
      {1000, 300, 1, 5, 32, false, true},  // B·H 300000, 75000 units: more than the grid's blocks
  };
  KernelVersionGuard guard("attention", 4);
  for (DType dt : {DType::bf16, DType::f16})
    for (const Case& c : cases) check_case(c, dt);
}

TEST_CASE("cuda attention v4: dropout forward and backward against the f32 CPU op with the same generator") {
  require_gpu();
  REQUIRE(attention_version_count() >= 4);
  const std::vector<Case> cases = {
      {2, 3, 197, 197, 64, false, false, 0.1}, {2, 2, 77, 77, 32, false, true, 0.3},
      {2, 2, 64, 197, 64, false, true, 0.2},   {2, 1, 7, 33, 32, true, false, 0.4},
      {2, 1, 33, 7, 128, true, true, 0.6},     {1, 2, 1, 256, 128, false, true, 0.3},
      {1, 2, 256, 256, 128, true, false, 0.1}, {1, 2, 257, 257, 64, true, false, 0.1},
      {3, 2, 32, 32, 64, false, true, 0.5},    {2, 2, 7, 7, 24, true, true, 0.9},
      {1, 3, 13, 29, 100, true, true, 0.3},    {500, 70, 1, 5, 32, false, true, 0.5},
  };
  KernelVersionGuard guard("attention", 4);
  for (DType dt : {DType::bf16, DType::f16})
    for (const Case& c : cases) check_case(c, dt);
}

TEST_CASE("cuda attention v4: out and the gradients are v3's, bit for bit") {
  require_gpu();
  REQUIRE(attention_version_count() >= 4);
  // v4's key tiles start where v3's do (0, 64, 128, 192) and what v4 leaves out of a tile has
  // weight 0 in v3 (keys past Sk rounded up to 16, or under causal past a chunk's last query),
  // so both run the same instructions on the same values but for mma steps whose P is all zero:
  // out and lse agree bit for bit (the host emulation checks it), and so do the gradients,
  // which v3's backward computes from them. Forward once, backward twice over, per version.
  const std::vector<Case> shapes = {{2, 3, 197, 197, 64, false, true, 0.0}, {3, 2, 32, 32, 64, true, true, 0.2},
                                      {2, 2, 64, 197, 128, false, true, 0.0}, {1, 2, 7, 256, 24, true, false, 0.3},
                                      {2, 1, 300, 40, 7, true, true, 0.0}};
  for (DType dt : {DType::bf16, DType::f16})
    for (const Case& s : shapes) {
      Tensor q = uniform({s.B, s.H, s.Sq, s.D}, dt, -1, 1), k = uniform({s.B, s.H, s.Sk, s.D}, dt, -1, 1);
      Tensor v = uniform({s.B, s.H, s.Sk, s.D}, dt, -1, 1), r = uniform({s.B, s.H, s.Sq, s.D}, dt, -1, 1);
      Tensor mask = s.mask ? key_mask_for(s.B, s.Sk).to(kGpu) : Tensor();
      std::vector<Tensor> results[2];
      for (int version : {3, 4}) {
        KernelVersionGuard guard("attention", version);
        Tensor qg = leaf(q, kGpu), kg = leaf(k, kGpu), vg = leaf(v, kGpu);
        Generator g(77);
        poison_like(q.shape(), dt);
        Tensor out = scaled_dot_product_attention(qg, kg, vg, mask, s.causal, std::nullopt, s.p, &g);
        sum(mul(out, r.to(kGpu))).backward();
        results[version - 3] = {out.detach().to(Device::cpu()), qg.grad().to(Device::cpu()),
                                kg.grad().to(Device::cpu()), vg.grad().to(Device::cpu())};
      }
      const char* names[] = {"out", "dq", "dk", "dv"};
      for (size_t i = 0; i < 4; ++i)
        check_parity(results[1][i], results[0][i], 0.0, 0.0,
                     "v4 vs v3 " + dtype_name(dt) + " Sq " + std::to_string(s.Sq) + " Sk " + std::to_string(s.Sk) +
                         " D " + std::to_string(s.D) + " " + names[i]);
    }
}

TEST_CASE("cuda attention v4: f32 and f64 inputs are refused, naming the op, the version and the dtypes") {
  require_gpu();
  REQUIRE(attention_version_count() >= 4);
  KernelVersionGuard guard("attention", 4);
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
    CHECK(message.find("scaled_dot_product_attention: attention version 4") != std::string::npos);
    CHECK(message.find("bf16 or f16") != std::string::npos);
    CHECK(message.find("got q " + dtype_name(dt) + " [2,2,5,8]") != std::string::npos);
    CHECK(g.offset() == before);  // refused before the dropout counters are reserved
  }
}
