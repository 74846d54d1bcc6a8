// Dropout on the attention weights (scaled_dot_product_attention's dropout_p) on CUDA, in
// every version of the attention family that computes f32 and f64 (v1 through the scores, v2
// flash; v3, 16-bit only, in test_attention_mma.cpp), against the CPU op with the same
// generator state:
//   - the mask itself: with q = 0 and v the identity (D = Sk) the output is the dropped
//     weight matrix, so its zeros are the dropped weights — they must be the CPU's, exactly;
//   - forward and backward on random inputs with outputs and gradients poisoned first, over
//     lengths 1, 7, 197, 257, Sq != Sk, causal, key masks with a fully masked batch row,
//     head dims 32, 64, 128 (v2's instances), 24 and 100 (padded), 200 (v1's path);
//   - gradcheck in f64 on the device with a fixed seed; reruns give the same bits, another
//     seed another mask; p = 0 is the op without dropout.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/cuda/attention_test_util.h"

using namespace mmg;
using namespace mmg::testing;

namespace {

struct Case {
  int64_t B, H, Sq, Sk, D;
  bool causal, mask;
  double p;
};

std::string name_of(const Case& c, DType dt, int version) {
  return "attention dropout v" + std::to_string(version) + " " + dtype_name(dt) + " B " + std::to_string(c.B) +
         " H " + std::to_string(c.H) + " Sq " + std::to_string(c.Sq) + " Sk " + std::to_string(c.Sk) + " D " +
         std::to_string(c.D) + (c.causal ? " causal" : "") + (c.mask ? " masked" : "") + " p " + std::to_string(c.p);
}

// A fresh random (seed, offset) for one comparison: the CPU and the GPU get equal copies.
Generator random_generator() {
  Generator g(static_cast<uint64_t>(integers({1}, DType::i64, 0, int64_t(1) << 40).item()));
  g.reserve(static_cast<uint64_t>(integers({1}, DType::i64, 0, 1000).item()));
  return g;
}

void check_case(const Case& c, DType dt, int version, double rtol, double atol) {
  Tensor q = uniform({c.B, c.H, c.Sq, c.D}, dt, -1, 1);
  Tensor k = uniform({c.B, c.H, c.Sk, c.D}, dt, -1, 1);
  Tensor v = uniform({c.B, c.H, c.Sk, c.D}, dt, -1, 1);
  Tensor mask = c.mask ? key_mask_for(c.B, c.Sk) : Tensor();
  Tensor r = uniform({c.B, c.H, c.Sq, c.D}, dt, -1, 1);
  Generator gc = random_generator(), gg = gc;
  const bool causal = c.causal;
  const double p = c.p;
  check_attention_parity(
      name_of(c, dt, version), q, k, v, mask, r, dt,
      [&gc, &gg, causal, p](const Tensor& a, const Tensor& b, const Tensor& w, const Tensor& m, bool gpu) {
        return scaled_dot_product_attention(a, b, w, m, causal, std::nullopt, p, gpu ? &gg : &gc);
      },
      {.rtol = rtol, .abs = atol});
  CHECK(gg.offset() == gc.offset());
}

}  // namespace

TEST_CASE("cuda attention dropout, every version: the dropped weights are the CPU's, exactly") {
  require_gpu();
  REQUIRE(attention_version_count() >= 2);
  // q = 0 and v = I (D = Sk): out[b,h,i,:] is row i of Z ⊙ P, and each kept visible weight
  // is (1/visible keys)·1/(1−p) ≠ 0, so the zeros of out are exactly the dropped or hidden
  // weights.
  struct Shape4 {
    int64_t B, H, Sq, Sk;
    bool causal, mask;
  };
  const std::vector<Shape4> shapes = {{2, 3, 7, 7, false, true},   {1, 2, 197, 64, true, false},
                                      {3, 2, 1, 32, false, true},  {2, 2, 33, 128, true, true},
                                      {2, 1, 257, 100, false, false}};
  for (DType dt : {DType::f32, DType::f64})
    for (int version : attention_versions_for(dt)) {
      KernelVersionGuard guard("attention", version);
      for (const Shape4& s : shapes) {
        const std::string name = "mask v" + std::to_string(version) + " " + dtype_name(dt) + " Sq " +
                                 std::to_string(s.Sq) + " Sk " + std::to_string(s.Sk);
        Tensor eye = where(eq(view(arange(s.Sk), {s.Sk, 1}), view(arange(s.Sk), {1, s.Sk})),
                           ones({s.Sk, s.Sk}, {.dtype = dt}), zeros({s.Sk, s.Sk}, {.dtype = dt}));
        Tensor q = zeros({s.B, s.H, s.Sq, s.Sk}, {.dtype = dt});
        Tensor k = uniform({s.B, s.H, s.Sk, s.Sk}, dt, -1, 1);
        Tensor v = expand(view(eye, {1, 1, s.Sk, s.Sk}), {s.B, s.H, s.Sk, s.Sk}).contiguous();
        Tensor mask = s.mask ? key_mask_for(s.B, s.Sk) : Tensor();
        Generator gc = random_generator(), gg = gc;
        Tensor want = scaled_dot_product_attention(q, k, v, mask, s.causal, std::nullopt, 0.4, &gc);
        poison_like(want.shape(), dt);
        Tensor got = scaled_dot_product_attention(q.to(kGpu), k.to(kGpu), v.to(kGpu),
                                                  s.mask ? mask.to(kGpu) : Tensor(), s.causal, std::nullopt, 0.4, &gg);
        const std::vector<double> w = want.to_vector<double>(), g = got.to_vector<double>();
        int64_t zero_mismatch = 0, zeros_seen = 0;
        for (size_t n = 0; n < w.size(); ++n) {
          zero_mismatch += (w[n] == 0) != (g[n] == 0);
          zeros_seen += w[n] == 0;
        }
        INFO(name);
        CHECK(zero_mismatch == 0);
        CHECK(zeros_seen > 0);
        check_parity(got, want, dt == DType::f64 ? 1e-12 : 1e-6, 0, name + " values");
      }
    }
}

TEST_CASE("cuda attention dropout, every version: forward and backward against the CPU op") {
  require_gpu();
  const std::vector<Case> cases = {
      {2, 3, 197, 197, 64, false, false, 0.1},  // ViT
      {2, 2, 77, 77, 32, false, true, 0.3},     // text with padding, batch row 0 fully masked
      {3, 2, 32, 32, 64, true, true, 0.5},      // causal, one tile
      {2, 2, 64, 197, 64, false, true, 0.2},    // cross-attention
      {2, 1, 7, 33, 32, true, false, 0.4},      // causal, Sq < Sk
      {2, 1, 33, 7, 128, true, true, 0.6},      // causal, Sq > Sk
      {1, 2, 1, 1, 24, false, false, 0.5},      // one query, one key
      {1, 2, 1, 257, 128, false, true, 0.3},
      {2, 1, 257, 1, 24, true, true, 0.3},
      {1, 2, 257, 257, 128, true, false, 0.1},
      {2, 2, 7, 7, 24, true, true, 0.9},
      {1, 3, 13, 29, 100, true, true, 0.3},     // D 100 on the 128 instance
      {2, 2, 9, 11, 200, false, true, 0.3},     // D 200: v1's path under either version
      {500, 70, 1, 5, 32, false, true, 0.5},    // B·H 35000 tiles
  };
  REQUIRE(attention_version_count() >= 2);
  for (DType dt : {DType::f32, DType::f64}) {
    const double rtol = dt == DType::f64 ? 1e-10 : 1e-5;
    const double atol = dt == DType::f64 ? 1e-10 : 5e-5;  // kept weights are up to 10x larger at p 0.9
    for (int version : attention_versions_for(dt)) {
      KernelVersionGuard guard("attention", version);
      for (const Case& c : cases) check_case(c, dt, version, rtol, atol);
    }
  }
}

TEST_CASE("cuda attention dropout, every version: gradcheck in f64 on the device with a fixed seed") {
  require_gpu();
  REQUIRE(attention_version_count() >= 2);
  const std::vector<Case> cases = {{2, 1, 5, 7, 3, false, true, 0.3}, {1, 2, 6, 4, 5, true, false, 0.5},
                                   {2, 1, 4, 6, 3, true, true, 0.4},  {2, 2, 3, 3, 8, true, true, 0.2}};
  for (int version : attention_versions_for(DType::f64)) {
    KernelVersionGuard guard("attention", version);
    for (const Case& c : cases) {
      Tensor q = uniform({c.B, c.H, c.Sq, c.D}, DType::f64, -1, 1).to(kGpu);
      Tensor k = uniform({c.B, c.H, c.Sk, c.D}, DType::f64, -1, 1).to(kGpu);
      Tensor v = uniform({c.B, c.H, c.Sk, c.D}, DType::f64, -1, 1).to(kGpu);
      Tensor mask = c.mask ? key_mask_for(c.B, c.Sk).to(kGpu) : Tensor();
      const bool causal = c.causal;
      const double p = c.p;
      GradcheckResult res = gradcheck(
          [causal, p](const std::vector<Tensor>& a) {
            Generator g(4242);  // the same mask in every call
            return scaled_dot_product_attention(a[0], a[1], a[2], a.size() > 3 ? a[3] : Tensor(), causal,
                                                std::nullopt, p, &g);
          },
          c.mask ? std::vector<Tensor>{q, k, v, mask} : std::vector<Tensor>{q, k, v});
      INFO(name_of(c, DType::f64, version));
      CHECK_MESSAGE(res.ok, res.message);
      CHECK(res.elements_checked == q.numel() + k.numel() + v.numel());
    }
  }
}

TEST_CASE("cuda attention dropout: reruns give the same bits, another seed another mask, p = 0 no dropout") {
  require_gpu();
  REQUIRE(attention_version_count() >= 2);
  Tensor q = uniform({2, 3, 197, 64}, DType::f32, -1, 1).to(kGpu);
  Tensor k = uniform({2, 3, 197, 64}, DType::f32, -1, 1).to(kGpu);
  Tensor v = uniform({2, 3, 197, 64}, DType::f32, -1, 1).to(kGpu);
  Tensor r = uniform({2, 3, 197, 64}, DType::f32, -1, 1);
  Tensor mask = key_mask_for(2, 197).to(kGpu);
  for (int version : attention_versions_for(DType::f32)) {
    KernelVersionGuard guard("attention", version);
    auto run = [&](uint64_t seed, double p) {
      Tensor qg = leaf(q, kGpu), kg = leaf(k, kGpu), vg = leaf(v, kGpu);
      Generator g(seed);
      Tensor out = scaled_dot_product_attention(qg, kg, vg, mask, false, std::nullopt, p, &g);
      sum(mul(out, r.to(kGpu))).backward();
      return std::vector<Tensor>{out.detach().to(Device::cpu()), qg.grad().to(Device::cpu()),
                                 kg.grad().to(Device::cpu()), vg.grad().to(Device::cpu())};
    };
    const std::vector<Tensor> a = run(1, 0.3), b = run(1, 0.3), c = run(2, 0.3), z = run(1, 0.0);
    const char* names[] = {"out", "dq", "dk", "dv"};
    for (size_t i = 0; i < a.size(); ++i)
      check_parity(b[i], a[i], 0.0, 0.0, "v" + std::to_string(version) + " rerun " + names[i]);
    CHECK(a[0].to_vector<double>() != c[0].to_vector<double>());
    // p = 0 is the op called without dropout, bit for bit.
    Tensor plain = scaled_dot_product_attention(q, k, v, mask, false);
    check_parity(z[0], plain.to(Device::cpu()), 0.0, 0.0, "v" + std::to_string(version) + " p 0");
  }
}

TEST_CASE("cuda attention dropout: the default generator gives the CPU's mask") {
  require_gpu();
  Tensor q = uniform({2, 2, 40, 64}, DType::f32, -1, 1), k = uniform({2, 2, 50, 64}, DType::f32, -1, 1);
  Tensor v = uniform({2, 2, 50, 64}, DType::f32, -1, 1);
  manual_seed(99);
  Tensor want = scaled_dot_product_attention(q, k, v, Tensor(), true, std::nullopt, 0.25);
  manual_seed(99);
  Tensor got = scaled_dot_product_attention(q.to(kGpu), k.to(kGpu), v.to(kGpu), Tensor(), true, std::nullopt, 0.25);
  check_parity(got, want, 1e-5, 3e-5, "dropout with the default generator");
}
