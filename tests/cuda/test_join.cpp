// cat, stack and masked_fill on CUDA against the CPU: pieces of different lengths along
// the first, a middle and the last dim, a transposed piece, mixed dtypes (promoted), a mask
// broadcast over leading dims — forward on poisoned outputs and the gradients.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

using namespace mmg;
using namespace mmg::testing;

TEST_CASE("cuda cat and stack: dims, odd lengths, a strided piece, mixed dtypes, gradients") {
  require_gpu();
  for (int64_t d : {0, 1, 2, -1}) {
    std::vector<Tensor> cpu_parts, gpu_parts;
    for (int64_t len : {1, 7, 33}) {
      Shape s = {3, 5, 4};
      s[d < 0 ? 2 : d] = len;
      Tensor t = uniform(s, DType::f32, -1, 1);
      cpu_parts.push_back(t.clone().detach().requires_grad_(true));
      gpu_parts.push_back(t.to(kGpu).detach().requires_grad_(true));
    }
    Tensor want = cat(cpu_parts, d);
    poison_like(want.shape(), want.dtype());
    Tensor got = cat(gpu_parts, d);
    check_parity(got, want, 0, 0, "cat dim " + std::to_string(d));
    Tensor r = uniform(want.shape(), DType::f32, -1, 1);
    (want * r).sum().backward();
    (got * r.to(kGpu)).sum().backward();
    for (size_t i = 0; i < cpu_parts.size(); ++i)
      check_parity(gpu_parts[i].grad(), cpu_parts[i].grad(), 0, 0, "cat gradient of piece " + std::to_string(i));
  }
  // A transposed piece and an i64 piece with an f32 one: promoted to f32.
  Tensor a = uniform({6, 5}, DType::f32, -1, 1), b = integers({5, 6}, DType::i64, -9, 9);
  check_parity(cat({a.to(kGpu), b.to(kGpu).transpose(0, 1)}, 1), cat({a, b.transpose(0, 1)}, 1), 0, 0,
               "cat of a transposed i64 piece with f32");
  Tensor p = uniform({4, 7}, DType::f64, -1, 1), q = uniform({4, 7}, DType::f64, -1, 1);
  for (int64_t d : {0, 1, 2})
    check_parity(stack({p.to(kGpu), q.to(kGpu)}, d), stack({p, q}, d), 0, 0, "stack dim " + std::to_string(d));
}

TEST_CASE("cuda masked_fill: broadcast masks, every dtype, -inf for attention scores, gradient") {
  require_gpu();
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::i64, DType::u8}) {
    Tensor x = is_floating(dt) ? uniform({2, 3, 33}, dt, -2, 2) : integers({2, 3, 33}, dt, 0, 50);
    for (const Shape& ms : {Shape{2, 3, 33}, Shape{33}, Shape{2, 1, 33}, Shape{3, 1}}) {
      Tensor mask = integers(ms, DType::boolean, 0, 2);
      poison_like(x.shape(), dt);
      check_parity(masked_fill(x.to(kGpu), mask.to(kGpu), 7.0), masked_fill(x, mask, 7.0), 0, 0,
                   "masked_fill " + dtype_name(dt) + " mask " + shape_str(ms));
    }
  }
  Tensor s = uniform({2, 4, 5, 9}, DType::f32, -3, 3);
  Tensor keep = integers({2, 1, 1, 9}, DType::boolean, 0, 2);
  Tensor sc = s.clone().detach().requires_grad_(true), sg = s.to(kGpu).detach().requires_grad_(true);
  Tensor want = masked_fill(sc, keep, -INFINITY), got = masked_fill(sg, keep.to(kGpu), -INFINITY);
  check_parity(got, want, 0, 0, "masked_fill with -inf");
  Tensor r = uniform(want.shape(), DType::f32, -1, 1);
  (masked_fill(want, keep, 0.0) * r).sum().backward();
  (masked_fill(got, keep.to(kGpu), 0.0) * r.to(kGpu)).sum().backward();
  check_parity(sg.grad(), sc.grad(), 0, 0, "masked_fill gradient");
}
