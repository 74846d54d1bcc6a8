// Tensor core: factories, views, copies, dtypes, printing.
#include <doctest/doctest.h>

#include <cmath>

#include "core/mmgrad.h"
#include "core/rng.h"

using namespace mmg;

TEST_CASE("factories fill what they say") {
  Tensor z = zeros({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.dtype() == DType::f32);
  for (float v : z.to_vector<float>()) CHECK(v == 0.0f);
  for (double v : full({4}, 2.5, {.dtype = DType::f64}).to_vector<double>()) CHECK(v == 2.5);
  CHECK(arange(5).to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(arange(1, 2, 0.25, {.dtype = DType::f32}).to_vector<float>() == std::vector<float>{1, 1.25, 1.5, 1.75});
  auto ls = linspace(-1, 1, 5, {.dtype = DType::f64}).to_vector<double>();
  CHECK(ls == std::vector<double>{-1, -0.5, 0, 0.5, 1});
  Tensor t = tensor({{1, 2}, {3, 4}});
  CHECK(t.shape() == Shape{2, 2});
  CHECK(t.to_vector<float>() == std::vector<float>{1, 2, 3, 4});
  CHECK(from_vector<int64_t>({7, 8, 9}).dtype() == DType::i64);
  CHECK(scalar_tensor(3.0).dim() == 0);
  CHECK(scalar_tensor(3.0).item() == 3.0);
}

TEST_CASE("factories reject bad arguments with clear errors") {
  CHECK_THROWS_WITH_AS(zeros({2, -1}), doctest::Contains("empty: negative size in shape [2,-1]"), Error);
  CHECK_THROWS_WITH_AS(arange(0, 1, 0), doctest::Contains("arange: step must be non-zero"), Error);
  CHECK_THROWS_WITH_AS(randint(3, 3, {2}), doctest::Contains("randint: empty range [3, 3)"), Error);
  CHECK_THROWS_WITH_AS(tensor({1, 2}).item(), doctest::Contains("item: tensor has 2 elements"), Error);
  CHECK_THROWS_WITH_AS(zeros({2}, {.dtype = DType::i64, .requires_grad = true}),
                       doctest::Contains("only floating tensors can require grad"), Error);
}

TEST_CASE("errors name the source file and line of the check") {
  try {
    zeros({-1});
    FAIL("no error thrown");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("(at core/factories.cpp:") != std::string::npos);
  }
}

TEST_CASE("views share storage and write through") {
  Tensor x = arange(0, 12, 1, {.dtype = DType::f32}).view({3, 4});
  Tensor t = x.transpose(0, 1);
  CHECK(t.shape() == Shape{4, 3});
  CHECK(!t.is_contiguous());
  CHECK(t.storage() == x.storage());
  Tensor col = x.slice(1, 1, 2);  // column 1, shape [3,1]
  col.fill_(-1.0);
  auto v = x.to_vector<float>();
  CHECK(v[1] == -1.0f);
  CHECK(v[5] == -1.0f);
  CHECK(v[9] == -1.0f);
  CHECK(t.contiguous().to_vector<float>()[3] == -1.0f);  // t[1,0] = x[0,1]
  Tensor row = select(x, 0, 2);  // [8,9,10,11] with 9 = -1
  CHECK(row.to_vector<float>() == std::vector<float>{8, -1, 10, 11});
  Tensor e = tensor({1, 2, 3}).unsqueeze(0).expand({4, 3});
  CHECK(e.strides()[0] == 0);
  CHECK(e.contiguous().to_vector<float>() == std::vector<float>{1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3});
}

TEST_CASE("view follows PyTorch's stride rule, reshape copies when it must") {
  Tensor x = arange(0, 24, 1, {.dtype = DType::f32}).view({2, 3, 4});
  CHECK(x.view({6, 4}).storage() == x.storage());
  CHECK(x.view({2, -1}).shape() == Shape{2, 12});
  Tensor t = x.transpose(1, 2);  // [2,4,3], not contiguous
  CHECK_THROWS_WITH_AS(t.view({2, 12}), doctest::Contains("view: cannot view [2,4,3] with strides [12,1,4]"), Error);
  CHECK(t.view({2, 4, 3, 1}).shape() == Shape{2, 4, 3, 1});  // adding a 1 is always possible
  Tensor r = t.reshape({2, 12});
  CHECK(r.storage() != x.storage());
  CHECK(r.to_vector<float>()[1] == 4.0f);  // x[0,1,0]
  CHECK_THROWS_WITH_AS(x.view({5, 5}), doctest::Contains("view: cannot view [2,3,4] (24 elements) as [5,5]"), Error);
  CHECK_THROWS_WITH_AS(x.view({-1, -1}), doctest::Contains("only one dim can be -1"), Error);
}

TEST_CASE("slice clamps like Python, narrow and select check bounds") {
  Tensor x = arange(10);
  CHECK(x.slice(0, -3, 100).to_vector<int64_t>() == std::vector<int64_t>{7, 8, 9});
  CHECK(x.slice(0, 1, 8, 3).to_vector<int64_t>() == std::vector<int64_t>{1, 4, 7});
  CHECK(x.slice(0, 5, 2).numel() == 0);
  CHECK_THROWS_WITH_AS(narrow(x, 0, 8, 5), doctest::Contains("narrow: start 8 + length 5 out of range"), Error);
  CHECK_THROWS_WITH_AS(select(x, 0, 10), doctest::Contains("select: index 10 out of range"), Error);
  CHECK_THROWS_WITH_AS(x.transpose(0, 2), doctest::Contains("transpose: dim 2 out of range for [10]"), Error);
  CHECK_THROWS_WITH_AS(permute(zeros({2, 3}), {0, 0}), doctest::Contains("permute: dim 0 repeated"), Error);
  CHECK_THROWS_WITH_AS(zeros({2, 3}).expand({4, 3, 2}), doctest::Contains("expand: cannot expand [2,3] to [4,3,2]"), Error);
}

TEST_CASE("dtype conversions round-trip and round to nearest even") {
  Tensor x = tensor({1.0, -2.5, 3.140625, 65504.0, 1e-7});
  CHECK(x.to(DType::bf16).to(DType::f32).to_vector<float>()[2] == 3.140625f);  // exact in bf16
  CHECK(x.to(DType::f16).to(DType::f32).to_vector<float>()[3] == 65504.0f);    // f16 max
  CHECK(tensor({70000.0}).to(DType::f16).to(DType::f32).item() == INFINITY);
  CHECK(bf16(1.00390625f).bits == bf16(1.0f).bits);       // halfway: ties to even (down)
  CHECK(bf16(1.01171875f).bits == bf16(1.015625f).bits);  // halfway: ties to even (up)
  CHECK(static_cast<float>(f16(std::ldexp(1.0f, -25))) == 0.0f);  // half the smallest subnormal: tie to even (0)
  CHECK(static_cast<float>(f16(std::ldexp(1.5f, -25))) == std::ldexp(1.0f, -24));  // above the tie: rounds up
  CHECK(static_cast<float>(f16(5.9604645e-08f)) == 5.9604645e-08f);  // smallest subnormal
  CHECK(std::isnan(static_cast<float>(bf16(NAN))));
  CHECK(std::isnan(static_cast<float>(f16(NAN))));
  for (int i = -1000; i <= 1000; ++i) {  // every f16 near 0..±65504 is exact through float
    f16 h = f16(static_cast<float>(i) * 0.125f);
    CHECK(static_cast<float>(h) == static_cast<float>(i) * 0.125f);
  }
  CHECK(tensor({1.7, -1.7}).to(DType::i64).to_vector<int64_t>() == std::vector<int64_t>{1, -1});
  CHECK(tensor({0.0, 2.0}).to(DType::boolean).to_vector<bool>() == std::vector<bool>{false, true});
}

TEST_CASE("copy_ broadcasts and converts, clone is independent") {
  Tensor x = zeros({2, 3}, {.dtype = DType::f64});
  x.copy_(tensor({1, 2, 3}));
  CHECK(x.to_vector<double>() == std::vector<double>{1, 2, 3, 1, 2, 3});
  Tensor c = x.clone();
  c.fill_(0);
  CHECK(x.to_vector<double>()[0] == 1.0);
  Tensor sq = arange(0, 4, 1, {.dtype = DType::f32}).view({2, 2});
  sq.copy_(sq.transpose(0, 1));  // overlapping source and destination
  CHECK(sq.to_vector<float>() == std::vector<float>{0, 2, 1, 3});
  CHECK_THROWS_WITH_AS(x.copy_(zeros({4})), doctest::Contains("copy_: cannot broadcast [4] with [2,3]"), Error);
}

TEST_CASE("in-place writes refuse to corrupt the graph") {
  Tensor w = ones({3}, {.requires_grad = true});
  CHECK_THROWS_WITH_AS(w.fill_(2), doctest::Contains("fill_: in-place write into a leaf [3] that requires grad"), Error);
  Tensor y = w * 2.0;
  CHECK_THROWS_WITH_AS(y.zero_(), doctest::Contains("produced by 'mul'"), Error);
  {
    NoGradGuard g;
    w.fill_(2);
  }
  CHECK(w.to_vector<float>()[0] == 2.0f);
}

TEST_CASE("printing looks like PyTorch") {
  CHECK(tensor({{1.5, -2}, {3, 4}}).str() == "tensor([[ 1.5000, -2.0000],\n        [ 3.0000,  4.0000]])");
  CHECK(arange(3).str() == "tensor([0, 1, 2])");
  CHECK(tensor({1, 2}).str() == "tensor([1., 2.])");
  CHECK(tensor({1e-6, 1}, {.dtype = DType::f64}).str() == "tensor([1.0000e-06, 1.0000e+00], dtype=f64)");
  CHECK(scalar_tensor(2.5).str() == "tensor(2.5000)");
  std::string big = arange(0, 2000, 1, {.dtype = DType::f32}).str();
  CHECK(big == "tensor([   0.,    1.,    2., ..., 1997., 1998., 1999.])");
  CHECK(ones({2}, {.requires_grad = true}).str() == "tensor([1., 1.], requires_grad=true)");
}

TEST_CASE("devices: parsing, and a clear error where CUDA storage is not available") {
  CHECK(Device::parse("cuda:1").index == 1);
  CHECK(Device::parse("cpu").is_cpu());
  CHECK_THROWS_WITH_AS(Device::parse("gpu"), doctest::Contains("device: cannot parse 'gpu'"), Error);
  CHECK_THROWS_WITH_AS(zeros({2}).to(Device::cuda(0)), doctest::Contains("to: cannot move f32 [2] from cpu to cuda:0"),
                       Error);
}

TEST_CASE("allclose") {
  CHECK(allclose(tensor({1, 2}), tensor({1, 2.000001})));
  CHECK(!allclose(tensor({1, 2}), tensor({1, 2.1})));
  CHECK(allclose(tensor({1, 1}), tensor({1})));  // broadcasts
  CHECK(!allclose(tensor({NAN}), tensor({NAN})));
  CHECK(allclose(tensor({NAN}), tensor({NAN}), 1e-5, 1e-8, true));
}
