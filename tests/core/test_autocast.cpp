// Autocast (core/autocast.h): which ops run in the low dtype, which in f32, that gradients
// reach f32 parameters in f32, and the guard's scoping.
#include <doctest/doctest.h>

#include <cmath>
#include <optional>
#include <thread>

#include "core/mmgrad.h"

using namespace mmg;

namespace {

Tensor randn_f32(const Shape& s, uint64_t seed) {
  Generator g(seed);
  return randn(s, {.dtype = DType::f32}, &g);
}

// max |a − b| / max(1, max |b|) over all elements, both read as f64.
double rel_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  REQUIRE(x.size() == y.size());
  double worst = 0, scale = 1;
  for (size_t i = 0; i < x.size(); ++i) {
    worst = std::max(worst, std::abs(x[i] - y[i]));
    scale = std::max(scale, std::abs(y[i]));
  }
  return worst / scale;
}

}  // namespace

TEST_CASE("autocast: linear and matmul run in the low dtype, as if their f32 inputs were cast first") {
  for (DType low : {DType::bf16, DType::f16}) {
    CAPTURE(dtype_name(low));
    Tensor x = randn_f32({5, 7}, 1), w = randn_f32({3, 7}, 2), b = randn_f32({3}, 3), m = randn_f32({7, 4}, 4);
    Tensor y, p;
    {
      AutocastGuard autocast(low);
      REQUIRE(autocast_dtype() == low);
      y = linear(x, w, b);
      p = matmul(x, m);
    }
    CHECK(y.dtype() == low);
    CHECK(p.dtype() == low);
    // The same values as the op on inputs cast by hand (f32 accumulation, one rounding).
    CHECK(y.to_vector<double>() == linear(x.to(low), w.to(low), b.to(low)).to_vector<double>());
    CHECK(p.to_vector<double>() == matmul(x.to(low), m.to(low)).to_vector<double>());
    // And close to the f32 result: the inputs' rounding (2⁻⁸ relative for bf16) bounds the error.
    CHECK(rel_diff(y.to(DType::f32), linear(x, w, b)) < 5e-2);
  }
}

TEST_CASE("autocast: norms, softmax, logsumexp and cross-entropy take 16-bit inputs to f32") {
  Tensor x = randn_f32({4, 6}, 5).to(DType::bf16);
  Tensor target = from_vector<int64_t>({0, 5, 2, 3}, {4});
  AutocastGuard autocast(DType::bf16);
  Tensor ln = layer_norm(x, {6});
  CHECK(ln.dtype() == DType::f32);
  CHECK(softmax(x, -1).dtype() == DType::f32);
  CHECK(log_softmax(x, -1).dtype() == DType::f32);
  CHECK(logsumexp(x, {1}).dtype() == DType::f32);
  CHECK(cross_entropy(x, target).dtype() == DType::f32);
  // Computed from the bf16 values exactly, in f32.
  CHECK(ln.to_vector<double>() == layer_norm(x.to(DType::f32), {6}).to_vector<double>());
  // Ops outside the policy keep their dtypes: an f32 + bf16 sum promotes to f32.
  CHECK((x + randn_f32({4, 6}, 6)).dtype() == DType::f32);
  CHECK(relu(x).dtype() == DType::bf16);
}

TEST_CASE("autocast: the gradients of f32 parameters are f32 and close to the f32 gradients") {
  Tensor x = randn_f32({6, 8}, 7);
  Tensor w = (randn_f32({4, 8}, 8) * 0.3).detach().requires_grad_(true);
  Tensor b = zeros({4}).requires_grad_(true);
  Tensor target = from_vector<int64_t>({0, 1, 2, 3, 0, 1}, {6});
  auto loss_of = [&](bool low) {
    std::optional<AutocastGuard> autocast;
    if (low) autocast.emplace(DType::bf16);
    return cross_entropy(gelu(linear(x, w, b)), target);
  };
  Tensor loss32 = loss_of(false);
  loss32.backward();
  const Tensor gw32 = w.grad().clone(), gb32 = b.grad().clone();
  w.zero_grad();
  b.zero_grad();
  Tensor loss16 = loss_of(true);
  CHECK(loss16.dtype() == DType::f32);
  CHECK(std::abs(loss16.item() - loss32.item()) < 2e-2 * std::max(1.0, std::abs(loss32.item())));
  loss16.backward();
  REQUIRE(w.grad().defined());
  CHECK(w.grad().dtype() == DType::f32);
  CHECK(b.grad().dtype() == DType::f32);
  CHECK(rel_diff(w.grad(), gw32) < 3e-2);
  CHECK(rel_diff(b.grad(), gb32) < 3e-2);
}

TEST_CASE("autocast: f64 is left alone, guards nest and restore, the setting is per thread") {
  Tensor a = randn_f32({3, 3}, 9).to(DType::f64);
  CHECK(!autocast_dtype().has_value());
  {
    AutocastGuard outer(DType::bf16);
    CHECK(matmul(a, a).dtype() == DType::f64);
    {
      AutocastGuard off(DType::bf16, /*enabled=*/false);
      CHECK(!autocast_dtype().has_value());
      CHECK(matmul(a.to(DType::f32), a.to(DType::f32)).dtype() == DType::f32);
    }
    {
      AutocastGuard inner(DType::f16);
      CHECK(autocast_dtype() == DType::f16);
    }
    CHECK(autocast_dtype() == DType::bf16);
    bool other_thread_sees_it = true;
    std::thread([&] { other_thread_sees_it = autocast_dtype().has_value(); }).join();
    CHECK(!other_thread_sees_it);
  }
  CHECK(!autocast_dtype().has_value());
  CHECK_THROWS_WITH_AS(AutocastGuard(DType::f32), doctest::Contains("must be bf16 or f16, got f32"), Error);
}

TEST_CASE("allow_tf32: off by default, a switch that reads back (no effect on the CPU)") {
  CHECK(!allow_tf32());
  Tensor a = randn_f32({4, 4}, 10);
  const std::vector<double> before = matmul(a, a).to_vector<double>();
  set_allow_tf32(true);
  CHECK(allow_tf32());
  CHECK(matmul(a, a).to_vector<double>() == before);
  set_allow_tf32(false);
  CHECK(!allow_tf32());
}

TEST_CASE("autocast: attention runs in the low dtype, the image–text losses in f32") {
  Tensor q = randn_f32({2, 2, 5, 8}, 11), k = randn_f32({2, 2, 7, 8}, 12), v = randn_f32({2, 2, 7, 8}, 13);
  Tensor img = randn_f32({4, 6}, 14).to(DType::bf16), txt = randn_f32({4, 6}, 15).to(DType::bf16);
  Tensor t = zeros({});
  AutocastGuard autocast(DType::bf16);
  Tensor o = scaled_dot_product_attention(q, k, v);
  CHECK(o.dtype() == DType::bf16);
  {
    AutocastGuard off(DType::bf16, false);
    CHECK(o.to_vector<double>() ==
          scaled_dot_product_attention(q.to(DType::bf16), k.to(DType::bf16), v.to(DType::bf16)).to_vector<double>());
  }
  CHECK(clip_loss(img, txt, t).dtype() == DType::f32);
  CHECK(hinge_ranking_loss(img, txt).dtype() == DType::f32);
}
