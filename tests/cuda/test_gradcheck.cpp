// gradcheck of CUDA inputs: the f64 copies stay on the device, every evaluation of the
// function runs there, and the CUDA kernels' gradients (forward and backward in f64) pass
// against finite differences — the whole gradcheck battery, moved to the GPU.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

using namespace mmg;
using namespace mmg::testing;

TEST_CASE("cuda gradcheck: the function sees its inputs on the device") {
  require_gpu();
  int calls = 0;
  Tensor x = uniform({3, 4}, DType::f64, -1, 1).to(kGpu);
  GradcheckResult r = gradcheck(
      [&](const std::vector<Tensor>& a) {
        CHECK(a[0].device() == kGpu);
        ++calls;
        return softmax(a[0] * a[0], 1);
      },
      {x});
  CHECK_MESSAGE(r.ok, r.message);
  CHECK(r.elements_checked == 12);
  CHECK(calls == 1 + 2 * 12);  // one backward pass, two evaluations per element
  CHECK(x.device() == kGpu);   // the caller's tensor is not touched
}

TEST_CASE("cuda gradcheck: a wrong CUDA gradient fails") {
  require_gpu();
  // e + (e − e.detach()) has the value of exp(x) and the gradient 2·exp(x).
  Tensor x = uniform({5}, DType::f64, -1, 1).to(kGpu);
  GradcheckResult r = gradcheck(
      [](const std::vector<Tensor>& a) {
        Tensor e = exp(a[0]);
        return e + (e - e.detach());
      },
      {x});
  CHECK_FALSE(r.ok);
}

TEST_CASE("cuda gradcheck: the new CUDA ops") {
  require_gpu();
  auto on_gpu = [](Tensor t) { return t.to(kGpu); };
  auto f64 = [&](const Shape& s) { return on_gpu(uniform(s, DType::f64, -1, 1)); };
  struct Named {
    std::string name;
    std::vector<Tensor> inputs;
    GradcheckFn fn;
  };
  Tensor mask = on_gpu(gt(uniform({2, 7}, DType::f32, 0, 1), scalar_tensor(0.3)));
  Tensor index = on_gpu(integers({4, 6}, DType::i64, 0, 5));
  const std::vector<Named> cases = {
      {"var dim 1", {f64({4, 9})}, [](const std::vector<Tensor>& a) { return var(a[0], {1}); }},
      {"std all", {f64({3, 5})}, [](const std::vector<Tensor>& a) { return mmg::std(a[0]); }},
      {"logsumexp dim 0", {f64({6, 3})}, [](const std::vector<Tensor>& a) { return logsumexp(a[0], {0}); }},
      {"norm p 2", {f64({4, 5})}, [](const std::vector<Tensor>& a) { return norm(a[0], 2.0, {1}); }},
      {"norm p 3", {f64({4, 5})}, [](const std::vector<Tensor>& a) { return norm(a[0], 3.0, {1}); }},
      {"gather dim 1", {f64({4, 5}), index}, [](const std::vector<Tensor>& a) { return gather(a[0], 1, a[1]); }},
      {"dropout p 0.4",
       {f64({6, 7})},
       [](const std::vector<Tensor>& a) {
         Generator g(99);  // the same mask at every evaluation
         return dropout(a[0], 0.4, true, &g);
       }},
      {"attention cross, masked, causal",
       {f64({2, 2, 4, 3}), f64({2, 2, 7, 3}), f64({2, 2, 7, 3}), mask},
       [](const std::vector<Tensor>& a) { return scaled_dot_product_attention(a[0], a[1], a[2], a[3], true); }},
      {"clip_loss", {f64({5, 4}), f64({5, 4}), on_gpu(full({}, 0.3, {.dtype = DType::f64}))},
       [](const std::vector<Tensor>& a) { return clip_loss(a[0], a[1], a[2]); }},
      {"hinge_ranking_loss", {f64({5, 4}), f64({5, 4})},
       [](const std::vector<Tensor>& a) { return hinge_ranking_loss(a[0], a[1], 0.5); }},
  };
  for (const Named& c : cases) {
    GradcheckResult r = gradcheck(c.fn, c.inputs);
    CHECK_MESSAGE(r.ok, c.name << ": " << r.message);
    CHECK(r.elements_checked > 0);
  }
}

TEST_CASE("cuda gradcheck: the battery of mmg gradcheck on the GPU") {
  require_gpu();
  // Every case's inputs moved to the GPU; the functions make any tensor of their own on
  // their inputs' device, so every case runs there.
  const std::vector<GradcheckCase> battery = gradcheck_battery();
  REQUIRE(battery.size() > 100);
  for (const GradcheckCase& c : battery) {
    std::vector<Tensor> inputs;
    for (const Tensor& t : c.make_inputs()) inputs.push_back(t.defined() ? t.to(kGpu) : t);
    GradcheckResult r = gradcheck(c.fn, inputs, c.options);
    CHECK_MESSAGE(r.ok, c.op << " " << c.detail << ": " << r.message);
  }
}
