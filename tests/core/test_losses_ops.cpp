// cross_entropy, clip_loss, hinge_ranking_loss ops: values against naive loops, gradcheck in
// f64 (ignore_index, label smoothing, several row tiles), dtypes, and the error messages.
#include <doctest/doctest.h>

#include <cmath>

#include "core/mmgrad.h"

using namespace mmg;

namespace {

Tensor rnd(const Shape& s, uint64_t seed, DType dtype = DType::f64) {
  Generator gen(seed);
  return randn(s, {.dtype = dtype}, &gen);
}

Tensor targets(std::vector<int64_t> t) { return from_vector(t); }

void check_grad(const GradcheckFn& fn, const std::vector<Tensor>& inputs) {
  GradcheckResult r = gradcheck(fn, inputs);
  INFO(r.message);
  CHECK(r.ok);
}

// −Σ q log softmax, mean over kept rows, in double from the tensor's values.
double reference_ce(const Tensor& logits, const std::vector<int64_t>& t, int64_t ignore, double eps) {
  const int64_t N = logits.size(0), C = logits.size(1);
  auto x = logits.to_vector<double>();
  double total = 0;
  int64_t n = 0;
  for (int64_t i = 0; i < N; ++i) {
    if (t[i] == ignore) continue;
    ++n;
    double m = -INFINITY, s = 0;
    for (int64_t c = 0; c < C; ++c) m = std::max(m, x[i * C + c]);
    for (int64_t c = 0; c < C; ++c) s += std::exp(x[i * C + c] - m);
    for (int64_t c = 0; c < C; ++c) {
      const double q = (c == t[i] ? 1 - eps : 0.0) + eps / C;
      total -= q * (x[i * C + c] - m - std::log(s));
    }
  }
  return n ? total / n : 0.0;
}

// CLIP loss and hinge loss from the full score matrix, in double.
std::vector<double> scores(const Tensor& u, const Tensor& v) {
  const int64_t N = u.size(0), d = u.size(1);
  auto a = u.to_vector<double>(), b = v.to_vector<double>();
  std::vector<double> S(N * N, 0.0);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < N; ++j)
      for (int64_t k = 0; k < d; ++k) S[i * N + j] += a[i * d + k] * b[j * d + k];
  return S;
}
double reference_clip(const Tensor& u, const Tensor& v, double t) {
  const int64_t N = u.size(0);
  auto S = scores(u, v);
  double total = 0;
  for (int64_t i = 0; i < N; ++i) {
    double row = 0, col = 0;
    for (int64_t j = 0; j < N; ++j) row += std::exp(std::exp(t) * S[i * N + j]);
    for (int64_t j = 0; j < N; ++j) col += std::exp(std::exp(t) * S[j * N + i]);
    total += std::log(row) + std::log(col) - 2 * std::exp(t) * S[i * N + i];
  }
  return total / (2.0 * N);
}
double reference_hinge(const Tensor& u, const Tensor& v, double m) {
  const int64_t N = u.size(0);
  auto S = scores(u, v);
  double total = 0;
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < N; ++j)
      if (j != i)
        total += std::max(0.0, m - S[i * N + i] + S[i * N + j]) + std::max(0.0, m - S[i * N + i] + S[j * N + i]);
  return total / N;
}

}  // namespace

// ---- cross_entropy ----

TEST_CASE("cross_entropy values: plain, ignore_index, label smoothing, i32 targets") {
  Tensor x = rnd({6, 5}, 1);
  std::vector<int64_t> t = {0, 4, -100, 2, 2, 1};
  CHECK(cross_entropy(x, targets(t)).item() == doctest::Approx(reference_ce(x, t, -100, 0.0)).epsilon(1e-12));
  CHECK(cross_entropy(x, targets(t), -100, 0.3).item() ==
        doctest::Approx(reference_ce(x, t, -100, 0.3)).epsilon(1e-12));
  std::vector<int64_t> t2 = {0, 4, 3, 2, 2, 1};
  CHECK(cross_entropy(x, targets(t2), 2).item() == doctest::Approx(reference_ce(x, t2, 2, 0.0)).epsilon(1e-12));
  Tensor t32 = targets(t2).to(DType::i32);
  CHECK(cross_entropy(x, t32).item() == doctest::Approx(reference_ce(x, t2, -100, 0.0)).epsilon(1e-12));
}

TEST_CASE("cross_entropy gradcheck (f64): plain, ignore_index, label smoothing, one class") {
  auto ce = [](int64_t ignore, double eps) {
    return [=](const std::vector<Tensor>& x) { return cross_entropy(x[0], x[1], ignore, eps); };
  };
  check_grad(ce(-100, 0.0), {rnd({7, 13}, 2), targets({0, 12, 5, 5, 1, 7, 3})});
  check_grad(ce(-100, 0.0), {rnd({7, 13}, 3), targets({0, -100, 5, -100, 1, 7, 3})});
  check_grad(ce(-100, 0.2), {rnd({7, 13}, 4), targets({0, -100, 5, -100, 1, 7, 3})});
  check_grad(ce(5, 1.0), {rnd({4, 6}, 5), targets({0, 5, 5, 2})});
  check_grad(ce(-100, 0.0), {rnd({3, 1}, 6), targets({0, 0, 0})});
}

TEST_CASE("cross_entropy with every row ignored is 0 with zero gradient (PyTorch: NaN)") {
  Tensor x = rnd({3, 4}, 7);
  x.requires_grad_();
  Tensor loss = cross_entropy(x, targets({-100, -100, -100}));
  CHECK(loss.item() == 0.0);
  loss.backward();
  for (double g : x.grad().to_vector<double>()) CHECK(g == 0.0);
  // no rows at all: also 0
  CHECK(cross_entropy(zeros({0, 4}), from_vector(std::vector<int64_t>{})).item() == 0.0);
}

TEST_CASE("cross_entropy in bf16 and f32: computed in f32, returned in the input dtype") {
  Tensor x = rnd({5, 9}, 8, DType::f32);
  std::vector<int64_t> t = {1, 2, 3, 4, 8};
  Tensor l32 = cross_entropy(x, targets(t));
  CHECK(l32.dtype() == DType::f32);
  CHECK(l32.item() == doctest::Approx(reference_ce(x, t, -100, 0.0)).epsilon(1e-6));
  Tensor xh = x.to(DType::bf16);
  xh.requires_grad_();
  Tensor lh = cross_entropy(xh, targets(t));
  CHECK(lh.dtype() == DType::bf16);
  CHECK(lh.item() == doctest::Approx(reference_ce(xh, t, -100, 0.0)).epsilon(1e-2));
  lh.backward();
  CHECK(xh.grad().dtype() == DType::bf16);
  CHECK(xh.grad().shape() == Shape{5, 9});
}

TEST_CASE("cross_entropy errors name the op and the shapes") {
  CHECK_THROWS_WITH_AS(cross_entropy(ones({4, 3}), targets({0, 1, 2})),
                       doctest::Contains("cross_entropy: logits [4,3] need target [4], got [3]"), Error);
  CHECK_THROWS_WITH_AS(cross_entropy(ones({4}), targets({0})),
                       doctest::Contains("cross_entropy: logits must be [N,C], got [4]"), Error);
  CHECK_THROWS_WITH_AS(cross_entropy(ones({2, 3}), targets({0, 3})),
                       doctest::Contains("cross_entropy: target 3 at row 1 is out of range for 3 classes"), Error);
  CHECK_THROWS_WITH_AS(cross_entropy(ones({2, 3}), targets({-1, 0})),
                       doctest::Contains("cross_entropy: target -1 at row 0 is out of range"), Error);
  CHECK_THROWS_WITH_AS(cross_entropy(ones({2, 3}), ones({2})),
                       doctest::Contains("cross_entropy: target must be i64 or i32 class indices, got f32 [2]"), Error);
  CHECK_THROWS_WITH_AS(cross_entropy(ones({2, 3}), targets({0, 1}), -100, 1.5),
                       doctest::Contains("cross_entropy: label_smoothing 1.5 is outside [0, 1]"), Error);
  CHECK_THROWS_WITH_AS(cross_entropy(ones({2, 3}, {.dtype = DType::i64}), targets({0, 1})),
                       doctest::Contains("cross_entropy: logits must be floating, got i64 [2,3]"), Error);
  CHECK_THROWS_WITH_AS(cross_entropy(ones({2, 0}), targets({0, 1})),
                       doctest::Contains("cross_entropy: logits [2,0] have no classes"), Error);
}

// ---- clip_loss ----

TEST_CASE("clip_loss values against the full-matrix formula, one and several row tiles") {
  for (auto [N, d] : {std::pair<int64_t, int64_t>{1, 4}, {7, 5}, {300, 3}}) {
    Tensor u = rnd({N, d}, 10), v = rnd({N, d}, 11);
    for (double t : {0.0, -1.0, 1.5}) {
      CAPTURE(N);
      CAPTURE(t);
      const double want = reference_clip(u, v, t);
      CHECK(clip_loss(u, v, scalar_tensor(t, {.dtype = DType::f64})).item() == doctest::Approx(want).epsilon(1e-10));
      CHECK(clip_loss(u, v, full({1}, t, {.dtype = DType::f32})).item() == doctest::Approx(want).epsilon(1e-6));
    }
  }
}

TEST_CASE("clip_loss gradcheck (f64): embeddings and logit scale, 0-d and [1], >256 rows") {
  auto fn = [](const std::vector<Tensor>& x) { return clip_loss(x[0], x[1], x[2]); };
  check_grad(fn, {rnd({6, 4}, 20), rnd({6, 4}, 21), rnd({}, 22)});
  check_grad(fn, {rnd({3, 5}, 23), rnd({3, 5}, 24), rnd({1}, 25)});
  check_grad(fn, {rnd({1, 3}, 26), rnd({1, 3}, 27), rnd({}, 28)});
  // Two row tiles (257 rows); the text side and the scale only, to keep the number of
  // forward passes down (the kernel test checks both sides over several tiles).
  GradcheckOptions some;
  some.check = {false, true, true};
  GradcheckResult r = gradcheck(fn, {rnd({257, 1}, 29) * 0.5, rnd({257, 1}, 30) * 0.5, scalar_tensor(0.5, {.dtype = DType::f64})},
                                some);
  INFO(r.message);
  CHECK(r.ok);
  CHECK(r.elements_checked == 258);
}

TEST_CASE("clip_loss: every input receives a gradient, in its own dtype and shape") {
  Tensor u = rnd({4, 3}, 31, DType::bf16), v = rnd({4, 3}, 32, DType::bf16);
  Tensor t = full({1}, 2.0, {.dtype = DType::f32});
  u.requires_grad_();
  v.requires_grad_();
  t.requires_grad_();
  Tensor loss = clip_loss(u, v, t);
  CHECK(loss.dtype() == DType::bf16);
  loss.backward();
  CHECK(u.grad().dtype() == DType::bf16);
  CHECK(v.grad().shape() == Shape{4, 3});
  CHECK(t.grad().dtype() == DType::f32);
  CHECK(t.grad().shape() == Shape{1});
  CHECK(t.grad().item() != 0.0);
  double nu = 0;
  for (double g : u.grad().to_vector<double>()) nu += std::abs(g);
  CHECK(nu > 0);
}

TEST_CASE("clip_loss errors name the op and the shapes") {
  CHECK_THROWS_WITH_AS(clip_loss(ones({4, 3}), ones({5, 3}), ones({})),
                       doctest::Contains("clip_loss: image [4,3] and text [5,3] embeddings must both be [N,d]"), Error);
  CHECK_THROWS_WITH_AS(clip_loss(ones({4, 3}), ones({4, 3}), ones({2})),
                       doctest::Contains("clip_loss: logit_scale must be one floating number (0-d or [1]), got f32 [2]"),
                       Error);
  CHECK_THROWS_WITH_AS(clip_loss(ones({0, 3}), ones({0, 3}), ones({})),
                       doctest::Contains("clip_loss: needs at least one pair, got [0,3]"), Error);
  CHECK_THROWS_WITH_AS(clip_loss(ones({2, 3}), ones({2, 3}, {.dtype = DType::f64}), ones({})),
                       doctest::Contains("clip_loss: image and text embeddings need one floating dtype, got f32 and f64"),
                       Error);
}

// ---- hinge_ranking_loss ----

TEST_CASE("hinge_ranking_loss values against the full-matrix formula") {
  for (auto [N, d] : {std::pair<int64_t, int64_t>{1, 4}, {7, 5}, {300, 3}})
    for (double m : {0.0, 0.2, 1.0}) {
      Tensor u = rnd({N, d}, 40), v = rnd({N, d}, 41);
      CAPTURE(N);
      CHECK(hinge_ranking_loss(u, v, m).item() == doctest::Approx(reference_hinge(u, v, m)).epsilon(1e-10));
    }
}

TEST_CASE("hinge_ranking_loss gradcheck (f64) and dtypes") {
  auto fn = [](double m) { return [=](const std::vector<Tensor>& x) { return hinge_ranking_loss(x[0], x[1], m); }; };
  check_grad(fn(0.2), {rnd({5, 3}, 50), rnd({5, 3}, 51)});
  check_grad(fn(1.0), {rnd({8, 2}, 52), rnd({8, 2}, 53)});
  Tensor u = rnd({3, 2}, 54, DType::f16), v = rnd({3, 2}, 55, DType::f16);
  u.requires_grad_();
  Tensor loss = hinge_ranking_loss(u, v);
  CHECK(loss.dtype() == DType::f16);
  loss.backward();
  CHECK(u.grad().dtype() == DType::f16);
}

TEST_CASE("hinge_ranking_loss errors name the op and the shapes") {
  CHECK_THROWS_WITH_AS(hinge_ranking_loss(ones({4, 3}), ones({4, 2})),
                       doctest::Contains("hinge_ranking_loss: image [4,3] and text [4,2] embeddings must both be [N,d]"),
                       Error);
  CHECK_THROWS_WITH_AS(hinge_ranking_loss(ones({4}), ones({4})),
                       doctest::Contains("hinge_ranking_loss: image [4] and text [4] embeddings must both be [N,d]"), Error);
}
