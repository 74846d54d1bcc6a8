// scaled_dot_product_attention op: values against loops over the definition (masks, causal,
// Sq != Sk, default scale), gradcheck in f64, fully masked rows, every input receiving its
// gradient, half precision, and errors.
#include <doctest/doctest.h>

#include <cmath>

#include "core/mmgrad.h"
#include "tests/compare.h"

using namespace mmg;

namespace {

using mmg::test::max_abs_diff;

Tensor random(const Shape& s, DType dtype, uint64_t seed) {
  Generator gen(seed);
  return randn(s, {.dtype = DType::f64}, &gen).to(dtype);
}

// softmax(scale·q kᵀ with masked/causal scores removed) v by loops; a row that sees no key is 0.
std::vector<double> ref_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& mask, bool causal,
                                  double scale) {
  const int64_t B = q.size(0), H = q.size(1), Sq = q.size(2), D = q.size(3), Sk = k.size(2);
  auto qv = q.to_vector<double>(), kv = k.to_vector<double>(), vv = v.to_vector<double>();
  std::vector<double> mv = mask.defined() ? mask.to_vector<double>() : std::vector<double>(B * Sk, 1.0);
  std::vector<double> out(qv.size(), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < Sq; ++i) {
        const int64_t bh = b * H + h;
        std::vector<double> s(Sk);
        std::vector<bool> seen(Sk);
        double m = -INFINITY;
        for (int64_t j = 0; j < Sk; ++j) {
          seen[j] = mv[b * Sk + j] != 0 && !(causal && j > i);
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += qv[(bh * Sq + i) * D + d] * kv[(bh * Sk + j) * D + d];
          s[j] = scale * dot;
          if (seen[j]) m = std::max(m, s[j]);
        }
        double z = 0;
        for (int64_t j = 0; j < Sk; ++j) z += seen[j] ? std::exp(s[j] - m) : 0.0;
        for (int64_t j = 0; j < Sk; ++j) {
          if (!seen[j]) continue;
          for (int64_t d = 0; d < D; ++d)
            out[(bh * Sq + i) * D + d] += std::exp(s[j] - m) / z * vv[(bh * Sk + j) * D + d];
        }
      }
  return out;
}

Tensor mask_from(std::vector<bool> values, int64_t B, int64_t Sk) { return from_vector<bool>(values, {B, Sk}); }

}  // namespace

TEST_CASE("scaled_dot_product_attention matches the definition") {
  struct Case {
    int64_t B, H, Sq, Sk, D;
    bool masked, causal;
    std::optional<double> scale;
  };
  const Case cases[] = {
      {2, 3, 7, 7, 5, false, false, std::nullopt}, {2, 2, 5, 11, 4, true, false, 0.3},
      {1, 2, 13, 4, 3, false, true, std::nullopt}, {2, 1, 4, 9, 6, true, true, 1.7},
      {1, 1, 97, 130, 8, true, true, std::nullopt},
  };
  for (const Case& c : cases) {
    CAPTURE(c.Sq);
    CAPTURE(c.Sk);
    CAPTURE(c.masked);
    CAPTURE(c.causal);
    Tensor q = random({c.B, c.H, c.Sq, c.D}, DType::f64, 1), k = random({c.B, c.H, c.Sk, c.D}, DType::f64, 2),
           v = random({c.B, c.H, c.Sk, c.D}, DType::f64, 3);
    Tensor mask;
    if (c.masked) {
      Generator gen(4);
      mask = lt(rand({c.B, c.Sk}, {}, &gen), scalar_tensor(0.7));
    }
    double scale = c.scale.value_or(1.0 / std::sqrt(static_cast<double>(c.D)));
    auto ref = ref_attention(q, k, v, mask, c.causal, scale);
    Tensor out = scaled_dot_product_attention(q, k, v, mask, c.causal, c.scale);
    CHECK(out.shape() == q.shape());
    CHECK(out.dtype() == DType::f64);
    CHECK(max_abs_diff(out.to_vector<double>(), ref) < 1e-12);
    Tensor outf = scaled_dot_product_attention(q.to(DType::f32), k.to(DType::f32), v.to(DType::f32), mask, c.causal,
                                               c.scale);
    CHECK(outf.dtype() == DType::f32);
    CHECK(max_abs_diff(outf.to_vector<double>(), ref) < 1e-5);
  }
}

TEST_CASE("scaled_dot_product_attention: causal is top-left aligned like PyTorch's is_causal") {
  // Sq = 2 < Sk = 4: query 0 sees key 0 only, query 1 keys 0 and 1 (bottom-right alignment
  // would let them see keys 0..2 and 0..3).
  Tensor q = random({1, 1, 2, 3}, DType::f64, 5), k = random({1, 1, 4, 3}, DType::f64, 6),
         v = random({1, 1, 4, 3}, DType::f64, 7);
  auto out = scaled_dot_product_attention(q, k, v, Tensor(), true).to_vector<double>();
  auto vv = v.to_vector<double>();
  for (int d = 0; d < 3; ++d) CHECK(out[d] == doctest::Approx(vv[d]).epsilon(1e-14));
  auto no_late_keys = scaled_dot_product_attention(q, slice(k, 2, 0, 2), slice(v, 2, 0, 2)).to_vector<double>();
  for (int d = 0; d < 3; ++d) CHECK(out[3 + d] == doctest::Approx(no_late_keys[3 + d]).epsilon(1e-14));
}

TEST_CASE("scaled_dot_product_attention passes gradcheck") {
  struct Case {
    int64_t B, H, Sq, Sk, D;
    bool masked, causal;
    std::optional<double> scale;
  };
  const Case cases[] = {
      {1, 1, 1, 1, 1, false, false, std::nullopt}, {2, 2, 5, 5, 3, false, false, std::nullopt},
      {1, 2, 6, 6, 4, false, true, std::nullopt},  {2, 1, 3, 7, 4, true, false, 0.7},
      {2, 2, 7, 3, 2, true, true, std::nullopt},   {1, 1, 4, 9, 3, true, true, 1.3},
  };
  for (const Case& c : cases) {
    CAPTURE(c.Sq);
    CAPTURE(c.Sk);
    CAPTURE(c.masked);
    CAPTURE(c.causal);
    Tensor mask;
    if (c.masked) {
      Generator gen(8);
      mask = lt(rand({c.B, c.Sk}, {}, &gen), scalar_tensor(0.7));
    }
    GradcheckFn fn = [&](const std::vector<Tensor>& x) {
      return scaled_dot_product_attention(x[0], x[1], x[2], mask, c.causal, c.scale);
    };
    GradcheckResult r = gradcheck(fn, {random({c.B, c.H, c.Sq, c.D}, DType::f64, 9),
                                       random({c.B, c.H, c.Sk, c.D}, DType::f64, 10),
                                       random({c.B, c.H, c.Sk, c.D}, DType::f64, 11)});
    CAPTURE(r.message);
    CHECK(r.ok);
    CHECK(r.elements_checked == c.B * c.H * (c.Sq + 2 * c.Sk) * c.D);
  }
}

TEST_CASE("scaled_dot_product_attention: a query that sees no key gives zeros and zero gradients") {
  // Batch 0: key 0 masked, so with causal its query 0 sees nothing. Batch 1: every key masked.
  Tensor mask = mask_from({false, true, true, true, false, false, false, false}, 2, 4);
  Tensor q = random({2, 2, 3, 5}, DType::f64, 12).requires_grad_();
  Tensor k = random({2, 2, 4, 5}, DType::f64, 13).requires_grad_();
  Tensor v = random({2, 2, 4, 5}, DType::f64, 14).requires_grad_();
  Tensor out = scaled_dot_product_attention(q, k, v, mask, true);
  sum(mul(out, random({2, 2, 3, 5}, DType::f64, 15))).backward();
  auto o = out.to_vector<double>(), gq = q.grad().to_vector<double>(), gk = k.grad().to_vector<double>(),
       gv = v.grad().to_vector<double>();
  for (double g : gq) CHECK(std::isfinite(g));
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t d = 0; d < 5; ++d) {  // batch 0, query 0
      CHECK(o[((0 * 2 + h) * 3 + 0) * 5 + d] == 0.0);
      CHECK(gq[((0 * 2 + h) * 3 + 0) * 5 + d] == 0.0);
    }
    for (int64_t i = 0; i < 3 * 5; ++i) {  // batch 1, every query
      CHECK(o[(1 * 2 + h) * 15 + i] == 0.0);
      CHECK(gq[(1 * 2 + h) * 15 + i] == 0.0);
    }
    for (int64_t i = 0; i < 4 * 5; ++i) {  // batch 1: no key is used
      CHECK(gk[(1 * 2 + h) * 20 + i] == 0.0);
      CHECK(gv[(1 * 2 + h) * 20 + i] == 0.0);
    }
  }
  CHECK(std::abs(o[((0 * 2 + 0) * 3 + 1) * 5]) > 0.0);  // batch 0, query 1 sees key 1
}

// A masked query is a row nobody reads (a pad token): zero output, no gradient; every other row
// and every gradient as if the call had no query mask and the masked rows' dout were zero.
TEST_CASE("scaled_dot_product_attention: query_mask zeroes the masked rows and passes them no gradient") {
  const int64_t B = 3, H = 2, Sq = 11, Sk = 9, D = 8;
  // Right-padded texts (lengths 4, 11, 0), the first with a gap at position 2.
  std::vector<bool> real(B * Sq);
  for (int64_t i = 0; i < Sq; ++i) {
    real[0 * Sq + i] = i < 4 && i != 2;
    real[1 * Sq + i] = true;
    real[2 * Sq + i] = false;
  }
  Tensor qmask = from_vector<bool>(real, {B, Sq});
  Generator gen(30);
  Tensor kmask = lt(rand({B, Sk}, {}, &gen), scalar_tensor(0.8));
  for (bool causal : {false, true}) {
    CAPTURE(causal);
    Tensor q = random({B, H, Sq, D}, DType::f64, 31).requires_grad_();
    Tensor k = random({B, H, Sk, D}, DType::f64, 32).requires_grad_();
    Tensor v = random({B, H, Sk, D}, DType::f64, 33).requires_grad_();
    Tensor w = random({B, H, Sq, D}, DType::f64, 34);
    Tensor out = scaled_dot_product_attention(q, k, v, kmask, causal, std::nullopt, 0.0, nullptr, qmask);
    sum(mul(out, w)).backward();
    const auto o = out.to_vector<double>(), gq = q.grad().to_vector<double>();

    Tensor q2 = q.detach().requires_grad_(), k2 = k.detach().requires_grad_(), v2 = v.detach().requires_grad_();
    Tensor keep = qmask.view({B, 1, Sq, 1}).to(DType::f64);
    Tensor plain = scaled_dot_product_attention(q2, k2, v2, kmask, causal);
    sum(mul(plain, mul(w, keep))).backward();
    const auto p = plain.to_vector<double>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < Sq; ++i)
          for (int64_t d = 0; d < D; ++d) {
            const int64_t at = ((b * H + h) * Sq + i) * D + d;
            if (real[b * Sq + i]) CHECK(o[at] == p[at]);
            else CHECK((o[at] == 0.0 && gq[at] == 0.0));
          }
    CHECK(max_abs_diff(gq, q2.grad().to_vector<double>()) < 1e-14);
    CHECK(max_abs_diff(k.grad().to_vector<double>(), k2.grad().to_vector<double>()) < 1e-14);
    CHECK(max_abs_diff(v.grad().to_vector<double>(), v2.grad().to_vector<double>()) < 1e-14);
  }
  // u8 like bool.
  Tensor q = random({B, H, Sq, D}, DType::f64, 35), k = random({B, H, Sk, D}, DType::f64, 36),
         v = random({B, H, Sk, D}, DType::f64, 37);
  CHECK(scaled_dot_product_attention(q, k, v, kmask, false, std::nullopt, 0.0, nullptr, qmask).to_vector<double>() ==
        scaled_dot_product_attention(q, k, v, kmask, false, std::nullopt, 0.0, nullptr, qmask.to(DType::u8))
            .to_vector<double>());
}

TEST_CASE("scaled_dot_product_attention: q, k and v each receive a gradient") {
  Tensor q = random({2, 4, 9, 8}, DType::f32, 16).requires_grad_();
  Tensor k = random({2, 4, 11, 8}, DType::f32, 17).requires_grad_();
  Tensor v = random({2, 4, 11, 8}, DType::f32, 18).requires_grad_();
  Tensor mask = lt(rand({2, 11}), scalar_tensor(0.8));
  sum(mul(scaled_dot_product_attention(q, k, v, mask, true), random({2, 4, 9, 8}, DType::f32, 19))).backward();
  for (Tensor* t : {&q, &k, &v}) {
    REQUIRE(t->grad().defined());
    CHECK(t->grad().shape() == t->shape());
    CHECK(t->grad().dtype() == DType::f32);
    double norm = 0;
    for (double g : t->grad().to_vector<double>()) norm += g * g;
    CHECK(norm > 0);
  }
}

TEST_CASE("scaled_dot_product_attention of bf16 and f16 is computed in f32 and returned in the input dtype") {
  for (DType half : {DType::bf16, DType::f16}) {
    CAPTURE(dtype_name(half));
    Tensor q = random({1, 2, 6, 8}, half, 20).requires_grad_(), k = random({1, 2, 5, 8}, half, 21).requires_grad_(),
           v = random({1, 2, 5, 8}, half, 22).requires_grad_();
    Tensor out = scaled_dot_product_attention(q, k, v, Tensor(), true);
    CHECK(out.dtype() == half);
    auto ref = ref_attention(q.detach(), k.detach(), v.detach(), Tensor(), true, 1.0 / std::sqrt(8.0));
    CHECK(max_abs_diff(out.to_vector<double>(), ref) < 3e-2);
    sum(out).backward();
    for (Tensor* t : {&q, &k, &v}) {
      REQUIRE(t->grad().defined());
      CHECK(t->grad().dtype() == half);
    }
  }
}

TEST_CASE("scaled_dot_product_attention accepts a u8 key_mask like a bool one") {
  Tensor q = random({2, 1, 3, 4}, DType::f64, 23), k = random({2, 1, 5, 4}, DType::f64, 24),
         v = random({2, 1, 5, 4}, DType::f64, 25);
  Tensor mb = mask_from({true, false, true, true, false, false, true, true, true, true}, 2, 5);
  Tensor mu = mb.to(DType::u8);
  CHECK(scaled_dot_product_attention(q, k, v, mb).to_vector<double>() ==
        scaled_dot_product_attention(q, k, v, mu).to_vector<double>());
}

TEST_CASE("scaled_dot_product_attention rejects bad arguments") {
  Tensor q = zeros({2, 3, 4, 8}), k = zeros({2, 3, 6, 8}), v = zeros({2, 3, 6, 8});
  const char* op = "scaled_dot_product_attention: ";
  auto msg = [&](const std::string& s) { return doctest::Contains((op + s).c_str()); };
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(zeros({3, 4, 8}), k, v), msg("q must be 4-D [B,H,S,D], got [3,4,8]"),
                       Error);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, zeros({2, 3, 6, 7}), v),
                       msg("q [2,3,4,8] and k [2,3,6,7] differ in batch, heads or head dim"), Error);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, k, zeros({2, 3, 5, 8})),
                       msg("v [2,3,5,8] must have k's shape [2,3,6,8]"), Error);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, k, v, zeros({2, 6})),
                       msg("key_mask must be bool (true = attend), got f32 [2,6]"), Error);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, k, v, zeros({2, 4}, {.dtype = DType::boolean})),
                       msg("key_mask [2,4] must be [B,Sk] = [2,6]"), Error);
  const Tensor none;
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, k, v, none, false, std::nullopt, 0.0, nullptr, zeros({2, 4})),
                       msg("query_mask must be bool (true = a query), got f32 [2,4]"), Error);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, k, v, none, false, std::nullopt, 0.0, nullptr,
                                                    zeros({2, 6}, {.dtype = DType::boolean})),
                       msg("query_mask [2,6] must be [B,Sq] = [2,4] for q [2,3,4,8] and k [2,3,6,8]"), Error);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(zeros({2, 3, 4, 8}, {.dtype = DType::i32}), k, v),
                       msg("q needs a floating dtype, got i32 [2,3,4,8]"), Error);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, Tensor(), v), msg("k is undefined"), Error);
  CHECK_THROWS_WITH_AS(scaled_dot_product_attention(q, k, v, Tensor(), false, INFINITY),
                       msg("scale must be finite, got inf"), Error);
}
