// dropout and gather on CUDA against the CPU.
//
// dropout: the same generator state gives the same mask on both devices (the CPU and CUDA
// kernels evaluate one Philox expression), over sizes 1, primes and more than a grid's
// worth of threads per element, p from 0.1 to 1, f32, f64 and bf16; both advance the
// generator by the same count; the backward multiplies by the same mask.
// gather: every dim, repeated indices (the deterministic scatter-add), an index smaller than
// the input outside dim, a transposed input, i32 indices, integer and bool inputs.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

using namespace mmg;
using namespace mmg::testing;

TEST_CASE("cuda dropout: the same seed drops the same elements as on the CPU") {
  require_gpu();
  const uint64_t seed = static_cast<uint64_t>(integers({1}, DType::i64, 0, int64_t(1) << 40).item());
  for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
    // 17M elements: more than the 65536 × 256 threads of the largest grid, so threads loop.
    std::vector<Shape> shapes = {{1}, {7}, {257}, {5, 33}, {3, 1029}};
    if (dt == DType::f32) shapes.push_back({17000000});
    for (const Shape& shape : shapes) {
      for (double p : {0.1, 0.5, 0.9, 1.0}) {
        const std::string name = "dropout " + dtype_name(dt) + " " + shape_str(shape) + " p " + std::to_string(p);
        Tensor x = uniform(shape, dt, -2, 2);
        Generator gc(seed), gg(seed);
        gc.reserve(11);  // start both mid-stream: the offset counts too
        gg.reserve(11);
        Tensor xc = x.clone().detach().requires_grad_(true), xg = x.to(kGpu).detach().requires_grad_(true);
        Tensor want = dropout(xc, p, true, &gc);
        poison_like(shape, dt);
        Tensor got = dropout(xg, p, true, &gg);
        CHECK(gc.offset() == gg.offset());
        check_parity(got, want, 0, 0, name + " forward");  // the same mask and scale: exactly equal
        if (numel_of(shape) > 1000000 || dt == DType::bf16) continue;  // the mask only
        Tensor r = uniform(shape, dt, -1, 1);
        sum(mul(want, r)).backward();
        sum(mul(got, r.to(kGpu))).backward();
        check_parity(xg.grad(), xc.grad(), 0, 0, name + " gradient");
      }
    }
  }
}

TEST_CASE("cuda dropout: the default generator and evaluation mode") {
  require_gpu();
  Tensor x = uniform({64, 65}, DType::f32, -1, 1);
  manual_seed(1234);
  Tensor want = dropout(x, 0.3);
  manual_seed(1234);
  Tensor got = dropout(x.to(kGpu), 0.3);
  check_parity(got, want, 0, 0, "dropout with the default generator");
  Tensor g = x.to(kGpu);
  CHECK(dropout(g, 0.3, /*training=*/false).is_same(g));
}

namespace {

void check_gather(const Tensor& x, int64_t dim, const Tensor& index, const std::string& name) {
  const double tol = x.dtype() == DType::f64 ? 1e-14 : 1e-6;
  check_op_parity(name, {x, index}, [&](const std::vector<Tensor>& a) { return gather(a[0], dim, a[1]); }, tol, tol);
}

}  // namespace

TEST_CASE("cuda gather: every dim, repeated indices, smaller index shapes, forward and backward") {
  require_gpu();
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = uniform({5, 7, 33}, dt, -2, 2);
    for (int64_t dim = 0; dim < 3; ++dim) {
      Shape ishape = {4, 6, 31};  // smaller than x outside dim
      ishape[dim] = 9;            // longer than x along dim: indices repeat
      Tensor index = integers(ishape, DType::i64, 0, x.shape()[dim]);
      check_gather(x, dim, index, "gather " + dtype_name(dt) + " dim " + std::to_string(dim));
      check_gather(x, dim - 3, index.to(DType::i32), "gather i32 index, negative dim " + std::to_string(dim - 3));
    }
    // A long line with every index the same (one gx element receives every term) and 1-D.
    check_gather(uniform({3, 1500}, dt, -1, 1), 1, zeros({3, 2000}, {.dtype = DType::i64}), "gather all zeros");
    check_gather(uniform({1}, dt, -1, 1), 0, zeros({5}, {.dtype = DType::i64}), "gather 1-d from one element");
    // A transposed (non-contiguous) input.
    Tensor t = transpose(uniform({33, 5}, dt, -1, 1), 0, 1);
    check_gather(t, 1, integers({5, 40}, DType::i64, 0, 33), "gather from a transposed input");
  }
  // Integer and bool inputs (forward only).
  Tensor xi = integers({6, 10}, DType::i64, -100, 100);
  Tensor index = integers({6, 4}, DType::i64, 0, 10);
  check_parity(gather(xi.to(kGpu), 1, index.to(kGpu)), gather(xi, 1, index), 0, 0, "gather i64");
  Tensor xb = gt(xi, scalar_like(xi, 0));
  check_parity(gather(xb.to(kGpu), 1, index.to(kGpu)), gather(xb, 1, index), 0, 0, "gather bool");
}

TEST_CASE("cuda gather: an out-of-range index is an error naming it") {
  require_gpu();
  Tensor x = uniform({2, 3}, DType::f32, -1, 1).to(kGpu);
  Tensor index = tensor({0, 3}, {.dtype = DType::i64}).reshape({2, 1}).to(kGpu);
  CHECK_THROWS_WITH_AS(gather(x, 1, index), doctest::Contains("index 3 is out of range"), Error);
}
