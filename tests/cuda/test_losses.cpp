// cross_entropy on CUDA against the CPU: classes fewer and more than the warp-per-row
// limit (1024), ignored rows, label smoothing, every row ignored (loss 0, gradient 0), i32
// targets, out-of-range targets (an error naming the row) — the loss and the gradient of
// 3·loss (so the incoming gradient's scale is read by the kernel).
#include <doctest/doctest.h>

#include <string>

#include "tests/cuda/cuda_test_util.h"

using namespace mmg;
using namespace mmg::testing;

namespace {

void check_ce(int64_t N, int64_t C, DType dt, double smoothing, bool ignore_some, bool ignore_all, DType tdt) {
  const std::string name = "cross_entropy " + dtype_name(dt) + " N " + std::to_string(N) + " C " + std::to_string(C) +
                           " smoothing " + std::to_string(smoothing) + (ignore_some ? " some ignored" : "") +
                           (ignore_all ? " all ignored" : "");
  Tensor x = uniform({N, C}, dt, -4, 4);
  Tensor t = integers({N}, DType::i64, 0, C);
  if (ignore_some) t = where(lt(uniform({N}, DType::f32, 0, 1), scalar_tensor(0.3)), full({N}, -100, {.dtype = DType::i64}), t);
  if (ignore_all) t = full({N}, -100, {.dtype = DType::i64});
  t = t.to(tdt);
  Tensor xc = x.clone().detach().requires_grad_(true), xg = x.to(kGpu).detach().requires_grad_(true);
  Tensor want = cross_entropy(xc, t, -100, smoothing);
  Tensor got = cross_entropy(xg, t.to(kGpu), -100, smoothing);
  CHECK(got.device() == kGpu);
  check_parity(got, want, rtol_for(dt) * 10, atol_for(dt) * 10, name + " loss");
  (want * 3.0).backward();
  (got * 3.0).backward();
  check_parity(xg.grad(), xc.grad(), rtol_for(dt) * 10, atol_for(dt) * 10, name + " gradient");
}

}  // namespace

TEST_CASE("cuda cross_entropy: class counts around the kernel switch, ignored rows, label smoothing") {
  require_gpu();
  for (DType dt : {DType::f32, DType::f64}) {
    for (int64_t N : {1, 7, 257}) {
      for (int64_t C : {1, 5, 1024, 1025, 3001}) {
        check_ce(N, C, dt, 0.0, false, false, DType::i64);
        check_ce(N, C, dt, 0.1, true, false, DType::i64);
      }
    }
    check_ce(9, 33, dt, 0.0, false, true, DType::i64);  // every row ignored
    check_ce(9, 33, dt, 0.2, true, false, DType::i32);  // i32 targets
  }
}

TEST_CASE("cuda cross_entropy: an out-of-range target is an error naming the row") {
  require_gpu();
  Tensor x = uniform({3, 4}, DType::f32, -1, 1).to(kGpu);
  Tensor t = tensor({0, 4, 1}, {.dtype = DType::i64}).to(kGpu);
  CHECK_THROWS_WITH_AS(cross_entropy(x, t), doctest::Contains("target 4 at row 1 is out of range for 4 classes"), Error);
}
