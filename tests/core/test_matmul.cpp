// matmul and linear: values against naive loops (every NumPy case, broadcast batch dims,
// transposed and expanded views), gradcheck in f64, dtypes, and the error messages.
#include <doctest/doctest.h>

#include <cmath>

#include "core/mmgrad.h"

using namespace mmg;

namespace {

Tensor rnd(const Shape& s, uint64_t seed, DType dtype = DType::f64, bool grad = false) {
  Generator gen(seed);
  Tensor t = randn(s, {.dtype = dtype}, &gen);
  if (grad) t.requires_grad_();
  return t;
}

// Row-major flat index of multi-index idx in shape s, where a size-1 dim of s repeats
// (NumPy broadcasting: idx is aligned to the end of s).
int64_t broadcast_offset(const Shape& s, const Shape& idx) {
  int64_t off = 0, lead = static_cast<int64_t>(idx.size() - s.size());
  for (size_t d = 0; d < s.size(); ++d) off = off * s[d] + (s[d] == 1 ? 0 : idx[d + lead]);
  return off;
}

// NumPy matmul by its definition, in double: promote 1-D operands, broadcast the batch dims,
// a triple loop per batch entry, then drop the promoted dims.
struct Ref {
  Shape shape;
  std::vector<double> values;
};
Ref reference_matmul(const Tensor& a, const Tensor& b) {
  Shape sa = a.shape(), sb = b.shape();
  const bool a1 = sa.size() == 1, b1 = sb.size() == 1;
  if (a1) sa.insert(sa.begin(), 1);
  if (b1) sb.push_back(1);
  const int64_t M = sa[sa.size() - 2], K = sa.back(), N = sb.back();
  Shape ba(sa.begin(), sa.end() - 2), bb(sb.begin(), sb.end() - 2);
  const size_t nb = std::max(ba.size(), bb.size());
  Shape batch(nb);
  for (size_t i = 0; i < nb; ++i) {
    int64_t x = i + ba.size() >= nb ? ba[i + ba.size() - nb] : 1;
    int64_t y = i + bb.size() >= nb ? bb[i + bb.size() - nb] : 1;
    batch[i] = std::max(x, y);
  }
  auto va = a.to_vector<double>(), vb = b.to_vector<double>();
  Ref r;
  const int64_t count = numel_of(batch);
  r.values.assign(count * M * N, 0.0);
  Shape idx(nb, 0);
  for (int64_t e = 0; e < count; ++e) {
    int64_t rest = e;
    for (int64_t d = static_cast<int64_t>(nb) - 1; d >= 0; --d) idx[d] = rest % batch[d], rest /= batch[d];
    const int64_t oa = broadcast_offset(ba, idx) * M * K, ob = broadcast_offset(bb, idx) * K * N;
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double acc = 0;
        for (int64_t k = 0; k < K; ++k) acc += va[oa + m * K + k] * vb[ob + k * N + n];
        r.values[(e * M + m) * N + n] = acc;
      }
  }
  r.shape = batch;
  if (!a1) r.shape.push_back(M);
  if (!b1) r.shape.push_back(N);
  return r;
}

void check_matmul_values(const Tensor& a, const Tensor& b, double tol = 1e-12) {
  CAPTURE(shape_str(a.shape()));
  CAPTURE(shape_str(b.shape()));
  Tensor c = matmul(a, b);
  Ref r = reference_matmul(a, b);
  REQUIRE(c.shape() == r.shape);
  auto got = c.to_vector<double>();
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - r.values[i]));
  CHECK(worst <= tol);
}

GradcheckResult check_grad(const GradcheckFn& fn, const std::vector<Tensor>& inputs) {
  GradcheckResult r = gradcheck(fn, inputs);
  INFO(r.message);
  CHECK(r.ok);
  return r;
}

}  // namespace

TEST_CASE("matmul values: every NumPy case against naive loops") {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{5}, {5}},                 // dot
      {{1}, {1}},
      {{3, 4}, {4, 5}},           // matrix
      {{1, 7}, {7, 1}},
      {{13, 197}, {197, 7}},
      {{4}, {4, 6}},              // 1-D left
      {{4}, {2, 4, 3}},
      {{6, 4}, {4}},              // 1-D right
      {{2, 3, 4}, {4}},
      {{2, 3, 4}, {2, 4, 5}},     // batched
      {{2, 1, 3, 4}, {5, 4, 2}},  // broadcast batch both ways
      {{7, 3, 4}, {4, 5}},        // shared right (one tall product)
      {{3, 4}, {7, 4, 5}},        // shared left (batch stride 0)
      {{1, 3, 4}, {6, 4, 2}},
      {{2, 3, 0}, {0, 5}},        // empty inner dim: zeros
      {{0, 3}, {3, 2}},
  };
  uint64_t seed = 1;
  for (auto& [sa, sb] : cases) {
    Tensor a = rnd(sa, seed++);
    check_matmul_values(a, rnd(sb, seed++));
  }
}

TEST_CASE("matmul reads transposed, sliced and expanded views without changing the result") {
  Tensor a = rnd({5, 4}, 11), b = rnd({6, 5}, 12);
  check_matmul_values(transpose(a, 0, 1), transpose(b, 0, 1));  // [4,5] @ [5,6], both trans
  Tensor c = rnd({3, 7, 8}, 13);
  check_matmul_values(slice(c, 2, 1, 6), rnd({5, 2}, 14));         // row stride 8, 5 columns
  check_matmul_values(slice(c, 2, 0, 8, 2), rnd({4, 2}, 15));      // column stride 2: copied
  check_matmul_values(expand(rnd({1, 4}, 16), {3, 4}), rnd({4, 2}, 17));  // stride-0 rows
  check_matmul_values(expand(rnd({4, 5}, 18), {3, 4, 5}), rnd({3, 5, 2}, 19));
  check_matmul_values(permute(rnd({4, 2, 3}, 20), {1, 0, 2}), rnd({3, 5}, 21));  // batch not outermost
}

TEST_CASE("matmul in f32 and bf16: computed in f32, returned in the input dtype") {
  Tensor a = rnd({7, 13}, 30, DType::f32), b = rnd({13, 5}, 31, DType::f32);
  Tensor c = matmul(a, b);
  CHECK(c.dtype() == DType::f32);
  check_matmul_values(a, b, 1e-5);
  Tensor ah = a.to(DType::bf16), bh = b.to(DType::bf16);
  Tensor ch = matmul(ah, bh);
  CHECK(ch.dtype() == DType::bf16);
  // the exact product of the bf16 inputs, rounded once to bf16 (relative error 2^-8)
  Ref r = reference_matmul(ah, bh);
  auto got = ch.to_vector<double>();
  for (size_t i = 0; i < got.size(); ++i) CHECK(std::abs(got[i] - r.values[i]) <= 1e-5 + std::abs(r.values[i]) / 128);
}

TEST_CASE("matmul gradcheck (f64): dot, 1-D promotion, batch broadcast, shared operands, views") {
  auto mm = [](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); };
  check_grad(mm, {rnd({5}, 40), rnd({5}, 41)});
  check_grad(mm, {rnd({4}, 42), rnd({2, 4, 3}, 43)});
  check_grad(mm, {rnd({2, 3, 4}, 44), rnd({4}, 45)});
  check_grad(mm, {rnd({3, 4}, 46), rnd({4, 5}, 47)});
  check_grad(mm, {rnd({2, 1, 3, 4}, 48), rnd({5, 4, 2}, 49)});
  check_grad(mm, {rnd({2, 3, 4}, 50), rnd({4, 5}, 51)});
  check_grad(mm, {rnd({3, 4}, 52), rnd({2, 4, 5}, 53)});
  check_grad(mm, {rnd({1, 3, 4}, 54), rnd({6, 4, 2}, 55)});
  check_grad([](const std::vector<Tensor>& x) { return matmul(transpose(x[0], 0, 1), transpose(x[1], -1, -2)); },
             {rnd({4, 3}, 56), rnd({2, 5, 4}, 57)});
}

TEST_CASE("matmul backward sums over broadcast batch dims (closed form)") {
  // C[b] = A·B[b] with A shared: ∂Σ C/∂A = Σ_b 1·B[b]ᵀ, i.e. row sums of every B[b].
  Tensor A = rnd({2, 3}, 60, DType::f64, true), B = rnd({4, 3, 5}, 61, DType::f64, true);
  sum(matmul(A, B)).backward();
  auto vb = B.to_vector<double>(), ga = A.grad().to_vector<double>();
  REQUIRE(A.grad().shape() == Shape{2, 3});
  for (int64_t m = 0; m < 2; ++m)
    for (int64_t k = 0; k < 3; ++k) {
      double want = 0;
      for (int64_t b = 0; b < 4; ++b)
        for (int64_t n = 0; n < 5; ++n) want += vb[(b * 3 + k) * 5 + n];
      CHECK(ga[m * 3 + k] == doctest::Approx(want).epsilon(1e-12));
    }
}

TEST_CASE("matmul errors name both shapes") {
  CHECK_THROWS_WITH_AS(matmul(ones({2, 3}), ones({4, 5})), doctest::Contains("matmul: [2,3] @ [4,5]: inner sizes 3 and 4 differ"),
                       Error);
  CHECK_THROWS_WITH_AS(matmul(ones({3}), ones({4})), doctest::Contains("matmul: [3] @ [4]: inner sizes 3 and 4 differ"), Error);
  CHECK_THROWS_WITH_AS(matmul(ones({3}), ones({2, 4, 5})),
                       doctest::Contains("matmul: [3] @ [2,4,5]: inner sizes 3 and 4 differ"), Error);
  CHECK_THROWS_WITH_AS(matmul(ones({2, 3, 4}), ones({3, 4, 5})),
                       doctest::Contains("matmul: [2,3,4] @ [3,4,5]: batch dims [2] and [3] do not broadcast"), Error);
  CHECK_THROWS_WITH_AS(matmul(scalar_tensor(2.0), ones({2})),
                       doctest::Contains("matmul: [] @ [2]: both arguments need at least 1 dim"), Error);
  CHECK_THROWS_WITH_AS(matmul(ones({2, 2}), ones({2, 2}, {.dtype = DType::f64})),
                       doctest::Contains("matmul: [2,2] @ [2,2]: needs two tensors of one floating dtype, got f32 and f64"),
                       Error);
  CHECK_THROWS_WITH_AS(matmul(ones({2, 2}, {.dtype = DType::i64}), ones({2, 2}, {.dtype = DType::i64})),
                       doctest::Contains("got i64 and i64"), Error);
  CHECK_THROWS_WITH_AS(matmul(Tensor(), ones({2})), doctest::Contains("matmul: undefined tensor argument"), Error);
}

TEST_CASE("Tensor::matmul is matmul") {
  Tensor a = rnd({3, 4}, 70), b = rnd({4, 2}, 71);
  CHECK(allclose(a.matmul(b), matmul(a, b), 0, 0));
}

// ---------------------------------------------------------------------------------------

TEST_CASE("linear values: x·Wᵀ + b against naive loops, with and without bias, 1-D x") {
  for (auto xs : {Shape{2, 3, 4}, Shape{4}, Shape{197, 4}, Shape{0, 4}}) {
    Tensor x = rnd(xs, 80), W = rnd({5, 4}, 81), b = rnd({5}, 82);
    auto vx = x.to_vector<double>(), vw = W.to_vector<double>(), vb = b.to_vector<double>();
    const int64_t rows = x.numel() / 4;
    for (bool with_bias : {true, false}) {
      Tensor y = with_bias ? linear(x, W, b) : linear(x, W);
      Shape want_shape = xs;
      want_shape.back() = 5;
      REQUIRE(y.shape() == want_shape);
      auto vy = y.to_vector<double>();
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t o = 0; o < 5; ++o) {
          double want = with_bias ? vb[o] : 0.0;
          for (int64_t i = 0; i < 4; ++i) want += vx[r * 4 + i] * vw[o * 4 + i];
          CHECK(vy[r * 5 + o] == doctest::Approx(want).epsilon(1e-12));
        }
    }
  }
}

TEST_CASE("linear gradcheck (f64) and bf16 result dtype") {
  check_grad([](const std::vector<Tensor>& x) { return linear(x[0], x[1], x[2]); },
             {rnd({2, 3, 4}, 90), rnd({5, 4}, 91), rnd({5}, 92)});
  check_grad([](const std::vector<Tensor>& x) { return linear(x[0], x[1]); }, {rnd({7, 4}, 93), rnd({3, 4}, 94)});
  check_grad([](const std::vector<Tensor>& x) { return linear(x[0], x[1], x[2]); },
             {rnd({4}, 95), rnd({3, 4}, 96), rnd({3}, 97)});
  // a transposed (non-contiguous) x
  check_grad([](const std::vector<Tensor>& x) { return linear(transpose(x[0], 0, 1), x[1], x[2]); },
             {rnd({4, 6}, 98), rnd({3, 4}, 99), rnd({3}, 100)});
  Tensor y = linear(ones({2, 4}, {.dtype = DType::bf16}), ones({3, 4}, {.dtype = DType::bf16}),
                    ones({3}, {.dtype = DType::bf16}));
  CHECK(y.dtype() == DType::bf16);
  for (double v : y.to_vector<double>()) CHECK(v == 5.0);
}

TEST_CASE("linear: every parameter receives a gradient") {
  Tensor x = rnd({3, 4}, 101, DType::f32), W = rnd({2, 4}, 102, DType::f32, true);
  Tensor b = zeros({2}, {.requires_grad = true});
  sum(linear(x, W, b)).backward();
  REQUIRE(W.grad().defined());
  REQUIRE(b.grad().defined());
  CHECK(W.grad().shape() == Shape{2, 4});
  for (double v : b.grad().to_vector<double>()) CHECK(v == 3.0);  // ∂Σy/∂b_o = rows
}

TEST_CASE("linear errors name the shapes") {
  CHECK_THROWS_WITH_AS(linear(ones({2, 3}), ones({5, 4})),
                       doctest::Contains("linear: x [2,3] with weight [5,4]: x has 3 features but weight expects 4"), Error);
  CHECK_THROWS_WITH_AS(linear(ones({2, 4}), ones({4})),
                       doctest::Contains("linear: x [2,4] with weight [4]: weight must be 2-D [out, in]"), Error);
  CHECK_THROWS_WITH_AS(linear(ones({2, 4}), ones({5, 4}), ones({4})),
                       doctest::Contains("linear: x [2,4] with weight [5,4]: bias [4] must be [5]"), Error);
}

TEST_CASE("linear: the kernel family 'linear' chooses a CUDA path only, on the CPU every version gives the same bits") {
  Tensor x = rnd({7, 13}, 110, DType::f32, true), W = rnd({5, 13}, 111, DType::f32, true);
  Tensor b = rnd({5}, 112, DType::f32, true);
  Tensor r = rnd({7, 5}, 113, DType::f32);
  std::vector<std::vector<float>> results;
  for (int v : {1, 2}) {
    KernelVersionGuard version("linear", v);
    x.zero_grad(), W.zero_grad(), b.zero_grad();
    Tensor y = linear(x, W, b);
    sum(y * r).backward();
    for (const Tensor& t : {y, x.grad(), W.grad(), b.grad()}) results.push_back(t.to_vector<float>());
  }
  for (size_t i = 0; i < 4; ++i) CHECK(results[i] == results[i + 4]);
}
