// scaled_dot_product_attention with dropout on the attention weights (dropout_p, gen): the
// mask against Philox at the weight's flat index computed here, the kept fraction and the
// exact scale, values and gradients against a composition of plain ops with the same mask,
// gradcheck with a fixed seed, p = 0 as the op without dropout, reproducibility, thread
// counts, half precision, autocast, and the errors.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>

#include "core/mmgrad.h"
#include "kernels/cpu/parallel.h"
#include "kernels/philox.h"
#include "tests/compare.h"

using namespace mmg;

namespace {

using mmg::test::max_abs_diff;

const TensorOptions f64o{.dtype = DType::f64};

Tensor random(const Shape& s, uint64_t seed, double scale = 1.0) {
  Generator gen(seed);
  return randn(s, f64o, &gen) * scale;
}

// The reference keep decision of weight (b, h, i, j): Philox at counter base + the flat
// index of [B,H,Sq,Sk], compared with p in f32 (kernels/attention.h).
bool keep_ref(uint64_t seed, uint64_t base, int64_t n, double p) {
  return philox_uniform_f32(seed, base + static_cast<uint64_t>(n)) >= static_cast<float>(p);
}

// Z = keep / (1−p) for every weight, [B,H,Sq,Sk] row-major.
std::vector<double> z_ref(uint64_t seed, uint64_t base, int64_t count, double p) {
  std::vector<double> z(static_cast<size_t>(count));
  for (int64_t n = 0; n < count; ++n) z[n] = keep_ref(seed, base, n, p) ? 1.0 / (1.0 - p) : 0.0;
  return z;
}

// May query i see key j?
bool seen(const std::vector<double>& mask, int64_t b, int64_t i, int64_t j, int64_t Sk, bool causal) {
  return (mask.empty() || mask[b * Sk + j] != 0) && !(causal && j > i);
}

// out_i = Σ_j Z_ij P_ij v_j by loops, P = softmax over the visible keys; 0 for a row that sees none.
std::vector<double> ref_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
                                  bool causal, double scale, const std::vector<double>& z) {
  const int64_t B = q.size(0), H = q.size(1), Sq = q.size(2), D = q.size(3), Sk = k.size(2);
  auto qv = q.to_vector<double>(), kv = k.to_vector<double>(), vv = v.to_vector<double>();
  std::vector<double> mv = key_mask.defined() ? key_mask.to_vector<double>() : std::vector<double>();
  std::vector<double> out(qv.size(), 0.0);
  for (int64_t bh = 0; bh < B * H; ++bh)
    for (int64_t i = 0; i < Sq; ++i) {
      const int64_t b = bh / H;
      std::vector<double> s(Sk);
      double m = -INFINITY;
      for (int64_t j = 0; j < Sk; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < D; ++d) dot += qv[(bh * Sq + i) * D + d] * kv[(bh * Sk + j) * D + d];
        s[j] = scale * dot;
        if (seen(mv, b, i, j, Sk, causal)) m = std::max(m, s[j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < Sk; ++j) sum += seen(mv, b, i, j, Sk, causal) ? std::exp(s[j] - m) : 0.0;
      for (int64_t j = 0; j < Sk; ++j) {
        if (!seen(mv, b, i, j, Sk, causal)) continue;
        const double w = z[(bh * Sq + i) * Sk + j] * std::exp(s[j] - m) / sum;
        for (int64_t d = 0; d < D; ++d) out[(bh * Sq + i) * D + d] += w * vv[(bh * Sk + j) * D + d];
      }
    }
  return out;
}

// The same attention composed of plain ops (matmul, softmax, where, mul), so autograd gives
// its gradients independently of the fused kernel. Every query must see some key.
Tensor composed_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask, bool causal,
                          double scale, const Tensor& z) {
  const int64_t B = q.size(0), Sq = q.size(2), Sk = k.size(2);
  Tensor scores = matmul(q, transpose(k, -2, -1)) * scale;
  Tensor visible = ones({B, 1, Sq, Sk}, {.dtype = DType::boolean});
  if (key_mask.defined()) visible = expand(view(key_mask, {B, 1, 1, Sk}), {B, 1, Sq, Sk});
  if (causal) {
    Tensor lower = ge(view(arange(Sq), {Sq, 1}), view(arange(Sk), {1, Sk}));
    visible = where(lower, visible, zeros({}, {.dtype = DType::boolean}));
  }
  Tensor p = softmax(where(visible, scores, scalar_like(scores, -1e30)), -1);
  return matmul(mul(where(visible, p, scalar_like(p, 0.0)), z), v);
}

// v = the identity per (b, h) (D = Sk) and q = 0: every visible weight is 1/(visible keys),
// and out[b,h,i,j] is the dropped weight Z_ij P_ij itself.
struct Revealing {
  Tensor q, k, v;
};
Revealing revealing(int64_t B, int64_t H, int64_t Sq, int64_t Sk, DType dt) {
  Tensor eye = where(eq(view(arange(Sk), {Sk, 1}), view(arange(Sk), {1, Sk})), ones({Sk, Sk}, f64o),
                     zeros({Sk, Sk}, f64o));
  return {zeros({B, H, Sq, Sk}, {.dtype = dt}), random({B, H, Sk, Sk}, 1).to(dt),
          expand(view(eye, {1, 1, Sk, Sk}), {B, H, Sk, Sk}).to(dt).contiguous()};
}

}  // namespace

TEST_CASE("attention dropout keeps weight (b,h,i,j) iff philox_uniform_f32(seed, offset + flat index) >= p") {
  const int64_t B = 2, H = 3, Sq = 5, Sk = 7;
  Tensor mask = from_vector<bool>({true, true, false, true, true, true, false,  //
                                   true, false, true, true, true, true, true},
                                  {B, Sk});
  auto mv = mask.to_vector<double>();
  for (bool causal : {false, true})
    for (bool masked : {false, true}) {
      CAPTURE(causal);
      CAPTURE(masked);
      Revealing r = revealing(B, H, Sq, Sk, DType::f64);
      Generator g(42);
      g.reserve(17);  // the draw starts at counter 17
      const double p = 0.4;
      auto out = scaled_dot_product_attention(r.q, r.k, r.v, masked ? mask : Tensor(), causal, std::nullopt, p, &g)
                     .to_vector<double>();
      CHECK(g.offset() == 17 + B * H * Sq * Sk);  // one counter per weight
      const double kept = 1.0 / (1.0 - p);
      int mismatches = 0;
      for (int64_t bh = 0; bh < B * H; ++bh)
        for (int64_t i = 0; i < Sq; ++i) {
          const int64_t b = bh / H;
          int64_t nvis = 0;
          for (int64_t j = 0; j < Sk; ++j) nvis += seen(masked ? mv : std::vector<double>(), b, i, j, Sk, causal);
          for (int64_t j = 0; j < Sk; ++j) {
            const int64_t n = (bh * Sq + i) * Sk + j;
            const bool vis = seen(masked ? mv : std::vector<double>(), b, i, j, Sk, causal);
            const double want = vis && keep_ref(42, 17, n, p) ? (1.0 / static_cast<double>(nvis)) * kept : 0.0;
            mismatches += out[n] != want;
          }
        }
      CHECK(mismatches == 0);
    }
}

TEST_CASE("attention dropout keeps a fraction 1-p of the weights, each scaled by exactly 1/(1-p)") {
  // 2·4·128·128 = 131072 weights; q = 0 makes each 1/128 exactly, so a kept one is exactly
  // (1/128)·(1/(1−p)) in the output (v is the identity).
  const int64_t B = 2, H = 4, S = 128, n = B * H * S * S;
  for (DType dt : {DType::f64, DType::f32})
    for (double p : {0.1, 0.5, 0.9}) {
      CAPTURE(p);
      CAPTURE(dtype_name(dt));
      Revealing r = revealing(B, H, S, S, dt);
      Generator g(100 + static_cast<uint64_t>(p * 10));
      auto out = scaled_dot_product_attention(r.q, r.k, r.v, Tensor(), false, std::nullopt, p, &g).to_vector<double>();
      const double want = dt == DType::f64 ? (1.0 / 128) * (1.0 / (1.0 - p))
                                           : double(float(1.0 / 128) * static_cast<float>(1.0 / (1.0 - p)));
      int64_t kept = 0, wrong = 0;
      for (double o : out) {
        kept += o != 0;
        wrong += o != 0 && o != want;
      }
      CHECK(wrong == 0);
      // kept ~ Binomial(n, 1−p): within 5 standard deviations.
      CHECK(std::abs(double(kept) - double(n) * (1 - p)) < 5 * std::sqrt(double(n) * p * (1 - p)));
    }
}

TEST_CASE("attention dropout matches the definition, forward and backward, with masks, causal and Sq != Sk") {
  struct Case {
    int64_t B, H, Sq, Sk, D;
    bool masked, causal;
    double p;
  };
  // The last two cross the CPU kernel's blocks of 64 queries.
  const Case cases[] = {{2, 3, 7, 7, 5, false, false, 0.3}, {2, 2, 5, 11, 4, true, false, 0.5},
                        {1, 2, 13, 4, 3, false, true, 0.2}, {2, 1, 4, 9, 6, true, true, 0.7},
                        {1, 1, 97, 130, 8, true, true, 0.1}, {1, 2, 130, 70, 5, true, false, 0.4}};
  for (const Case& c : cases) {
    CAPTURE(c.Sq);
    CAPTURE(c.Sk);
    CAPTURE(c.masked);
    CAPTURE(c.causal);
    Tensor q = random({c.B, c.H, c.Sq, c.D}, 2), k = random({c.B, c.H, c.Sk, c.D}, 3),
           v = random({c.B, c.H, c.Sk, c.D}, 4), r = random({c.B, c.H, c.Sq, c.D}, 5);
    Tensor mask;
    if (c.masked) {
      Generator gen(6);
      mask = lt(rand({c.B, c.Sk}, {}, &gen), scalar_tensor(0.7));
      // Key 0 always attendable, so every query (causal included) sees a key and the
      // composed softmax has no empty row.
      mask = cat({ones({c.B, 1}, {.dtype = DType::boolean}), slice(mask, 1, 1, c.Sk)}, 1);
    }
    const double scale = 1.0 / std::sqrt(double(c.D));
    const int64_t count = c.B * c.H * c.Sq * c.Sk;
    auto z = z_ref(7, 0, count, c.p);

    Tensor qa = q.clone().requires_grad_(), ka = k.clone().requires_grad_(), va = v.clone().requires_grad_();
    Generator g(7);
    Tensor out = scaled_dot_product_attention(qa, ka, va, mask, c.causal, std::nullopt, c.p, &g);
    CHECK(max_abs_diff(out.to_vector<double>(), ref_attention(q, k, v, mask, c.causal, scale, z)) < 1e-12);
    sum(mul(out, r)).backward();

    Tensor qb = q.clone().requires_grad_(), kb = k.clone().requires_grad_(), vb = v.clone().requires_grad_();
    Tensor zt = from_vector<double>(z, {c.B, c.H, c.Sq, c.Sk});
    Tensor want = composed_attention(qb, kb, vb, mask, c.causal, scale, zt);
    CHECK(max_abs_diff(out.to_vector<double>(), want.to_vector<double>()) < 1e-12);
    sum(mul(want, r)).backward();
    CHECK(max_abs_diff(qa.grad().to_vector<double>(), qb.grad().to_vector<double>()) < 1e-11);
    CHECK(max_abs_diff(ka.grad().to_vector<double>(), kb.grad().to_vector<double>()) < 1e-11);
    CHECK(max_abs_diff(va.grad().to_vector<double>(), vb.grad().to_vector<double>()) < 1e-11);
  }
}

TEST_CASE("attention dropout passes gradcheck with a fixed seed") {
  // A fresh generator in every call: the same (seed, offset) gives the same mask, so the
  // function gradcheck differentiates is a fixed one.
  struct Case {
    int64_t B, H, Sq, Sk, D;
    int mask;  // 0 none, 1 random holes, 2 random holes and batch row 0 fully masked
    bool causal;
    double p;
    std::optional<double> scale;
  };
  const Case cases[] = {
      {1, 1, 1, 1, 1, 0, false, 0.3, std::nullopt}, {2, 2, 5, 5, 3, 0, false, 0.5, std::nullopt},
      {1, 2, 6, 6, 4, 0, true, 0.3, std::nullopt},  {2, 1, 3, 7, 4, 1, false, 0.4, 0.7},
      {2, 2, 7, 3, 2, 1, true, 0.5, std::nullopt},  {1, 1, 4, 9, 3, 1, true, 0.2, 1.3},
      {2, 1, 4, 6, 3, 2, true, 0.5, std::nullopt},
  };
  for (const Case& c : cases) {
    CAPTURE(c.Sq);
    CAPTURE(c.Sk);
    CAPTURE(c.mask);
    CAPTURE(c.causal);
    Tensor mask;
    if (c.mask > 0) {
      Generator gen(8);
      mask = lt(rand({c.B, c.Sk}, {}, &gen), scalar_tensor(0.7));
      if (c.mask == 2) mask = cat({zeros({1, c.Sk}, {.dtype = DType::boolean}), slice(mask, 0, 1, c.B)}, 0);
    }
    GradcheckFn fn = [&](const std::vector<Tensor>& x) {
      Generator g(1234);
      return scaled_dot_product_attention(x[0], x[1], x[2], mask, c.causal, c.scale, c.p, &g);
    };
    GradcheckResult r = gradcheck(fn, {random({c.B, c.H, c.Sq, c.D}, 9), random({c.B, c.H, c.Sk, c.D}, 10),
                                       random({c.B, c.H, c.Sk, c.D}, 11)});
    CAPTURE(r.message);
    CHECK(r.ok);
    CHECK(r.elements_checked == c.B * c.H * (c.Sq + 2 * c.Sk) * c.D);
  }
}

TEST_CASE("attention dropout with p = 0 is the op without dropout, bit for bit, and draws nothing") {
  Tensor q = random({2, 2, 9, 6}, 12), k = random({2, 2, 11, 6}, 13), v = random({2, 2, 11, 6}, 14);
  Tensor r = random({2, 2, 9, 6}, 15);
  Tensor mask = from_vector<bool>(std::vector<bool>{true, true, false, true, true, true, false, true, true, true, true,
                                                    false, true, true, true, false, true, true, true, true, true, true},
                                  {2, 11});
  std::vector<std::vector<double>> results[2];
  const uint64_t default_offset = default_generator().offset();
  for (int with = 0; with < 2; ++with) {
    Tensor qa = q.clone().requires_grad_(), ka = k.clone().requires_grad_(), va = v.clone().requires_grad_();
    Generator g(3);
    Tensor out = with ? scaled_dot_product_attention(qa, ka, va, mask, true, std::nullopt, 0.0, &g)
                      : scaled_dot_product_attention(qa, ka, va, mask, true);
    CHECK(g.offset() == 0);
    sum(mul(out, r)).backward();
    results[with] = {out.to_vector<double>(), qa.grad().to_vector<double>(), ka.grad().to_vector<double>(),
                     va.grad().to_vector<double>()};
  }
  CHECK(default_generator().offset() == default_offset);
  for (size_t i = 0; i < 4; ++i) CHECK(results[0][i] == results[1][i]);
}

TEST_CASE("attention dropout is reproducible: the same seed gives the same mask, another seed another") {
  Tensor q = random({2, 2, 20, 8}, 16), k = random({2, 2, 20, 8}, 17), v = random({2, 2, 20, 8}, 18);
  auto run = [&](Generator* g) {
    return scaled_dot_product_attention(q, k, v, Tensor(), false, std::nullopt, 0.5, g).to_vector<double>();
  };
  Generator g1(9), g2(9), g3(10);
  auto a = run(&g1), b = run(&g2), c = run(&g3);
  CHECK(a == b);
  CHECK(a != c);
  CHECK(run(&g1) != a);  // the stream moved on
  // The default generator, through manual_seed.
  manual_seed(5);
  auto d = run(nullptr);
  manual_seed(5);
  CHECK(run(nullptr) == d);
}

TEST_CASE("attention dropout: any thread count, bf16 inputs and autocast draw the same mask") {
  int saved = cpu::num_threads();
  Tensor q = random({2, 3, 70, 16}, 19), k = random({2, 3, 50, 16}, 20), v = random({2, 3, 50, 16}, 21);
  auto run = [&](const Tensor& a, const Tensor& b, const Tensor& c) {
    Generator g(11);
    return scaled_dot_product_attention(a, b, c, Tensor(), true, std::nullopt, 0.3, &g);
  };
  cpu::set_num_threads(1);
  auto one = run(q, k, v).to_vector<double>();
  cpu::set_num_threads(3);
  auto three = run(q, k, v).to_vector<double>();
  cpu::set_num_threads(saved);
  CHECK(one == three);

  Tensor qh = q.to(DType::bf16), kh = k.to(DType::bf16), vh = v.to(DType::bf16);
  Tensor yh = run(qh, kh, vh);
  CHECK(yh.dtype() == DType::bf16);
  Tensor yf = run(qh.to(DType::f32), kh.to(DType::f32), vh.to(DType::f32));
  CHECK(yh.to_vector<double>() == yf.to(DType::bf16).to_vector<double>());

  Tensor qf = q.to(DType::f32), kf = k.to(DType::f32), vf = v.to(DType::f32);
  Tensor ya;
  {
    AutocastGuard autocast(DType::bf16);
    ya = run(qf, kf, vf);
  }
  CHECK(ya.to_vector<double>() == yh.to_vector<double>());
}

TEST_CASE("attention dropout: a query that sees no key still gives zeros and zero gradients") {
  Tensor mask = from_vector<bool>({false, true, true, true, false, false, false, false}, {2, 4});
  Tensor q = random({2, 2, 3, 5}, 22).requires_grad_(), k = random({2, 2, 4, 5}, 23).requires_grad_(),
         v = random({2, 2, 4, 5}, 24).requires_grad_();
  Generator g(25);
  Tensor out = scaled_dot_product_attention(q, k, v, mask, true, std::nullopt, 0.5, &g);
  sum(mul(out, random({2, 2, 3, 5}, 26))).backward();
  auto o = out.to_vector<double>(), gq = q.grad().to_vector<double>(), gk = k.grad().to_vector<double>();
  for (double x : gq) CHECK(std::isfinite(x));
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t i = 0; i < 3 * 5; ++i) {  // batch 1 sees nothing
      CHECK(o[(1 * 2 + h) * 15 + i] == 0.0);
      CHECK(gq[(1 * 2 + h) * 15 + i] == 0.0);
    }
  for (int64_t i = 0; i < 2 * 4 * 5; ++i) CHECK(gk[2 * 4 * 5 + i] == 0.0);
}

TEST_CASE("attention dropout errors name the op and p, and a refused call draws nothing") {
  Tensor q = zeros({2, 3, 4, 8}), k = zeros({2, 3, 6, 8}), v = zeros({2, 3, 6, 8});
  Generator g(1);
  auto call = [&](double p) { return scaled_dot_product_attention(q, k, v, Tensor(), false, std::nullopt, p, &g); };
  const std::string msg = "scaled_dot_product_attention: dropout_p must be in [0, 1), got ";
  CHECK_THROWS_WITH_AS(call(1.0), doctest::Contains((msg + "1 (q [2,3,4,8])").c_str()), Error);
  CHECK_THROWS_WITH_AS(call(-0.1), doctest::Contains((msg + "-0.1").c_str()), Error);
  CHECK_THROWS_WITH_AS(call(NAN), doctest::Contains((msg + "nan").c_str()), Error);
  // A bad shape is refused before the draw.
  CHECK_THROWS_AS(scaled_dot_product_attention(q, zeros({2, 3, 6, 7}), v, Tensor(), false, std::nullopt, 0.5, &g),
                  Error);
  CHECK(g.offset() == 0);
}
