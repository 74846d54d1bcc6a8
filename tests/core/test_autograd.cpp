// The autograd engine: accumulation, retain_graph, NoGradGuard, detach, DOT export.
#include <doctest/doctest.h>

#include "core/autograd.h"
#include "core/gradcheck.h"
#include "core/ops.h"

using namespace mmg;

TEST_CASE("a tensor used twice receives the sum of both gradients") {
  Tensor x = tensor({1, 2, 3}, {.dtype = DType::f64, .requires_grad = true});
  Tensor y = sum(x * x + x);  // dy/dx = 2x + 1
  y.backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{3, 5, 7});
  CHECK(x.is_leaf());
  CHECK(!y.is_leaf());
  CHECK(y.grad_fn()->name == "sum");
}

TEST_CASE("gradients accumulate across backward calls until zero_grad") {
  Tensor x = tensor({2.0}, {.dtype = DType::f64, .requires_grad = true});
  sum(x * 3.0).backward();
  sum(x * 3.0).backward();
  CHECK(x.grad().item() == 6.0);
  x.zero_grad();
  CHECK(!x.grad().defined());
  sum(x * x).backward();
  CHECK(x.grad().item() == 4.0);
}

// Sums of gradients go in place into a tensor nobody else holds (core/autograd.cpp), and never
// into one that someone does: a .grad the caller kept, a tensor passed to two inputs.
TEST_CASE("gradient sums go in place only into tensors nobody else holds") {
  Tensor x = tensor({1.0, -2.0, 0.5}, {.dtype = DType::f64, .requires_grad = true});
  auto loss = [&] { return sum(x * x * 2.0 + x); };  // d/dx = 4x + 1
  loss().backward();
  const void* first = x.grad().data_ptr();  // the handle is dropped at once
  loss().backward();
  CHECK(x.grad().data_ptr() == first);  // summed in place
  CHECK(x.grad().to_vector<double>() == std::vector<double>{10, -14, 6});

  Tensor kept = x.grad();  // a caller holds .grad: the next sum is a new tensor
  loss().backward();
  CHECK(kept.to_vector<double>() == std::vector<double>{10, -14, 6});
  CHECK(x.grad().to_vector<double>() == std::vector<double>{15, -21, 9});
  CHECK(x.grad().data_ptr() != kept.data_ptr());
  Tensor view = x.grad().view({3, 1});  // so does a view of it
  loss().backward();
  CHECK(view.to_vector<double>() == std::vector<double>{15, -21, 9});
  CHECK(x.grad().to_vector<double>() == std::vector<double>{20, -28, 12});

  // add passes one gradient tensor to both of its inputs; y then reaches x along three paths,
  // and a, b's sums must not write through each other.
  Tensor a = tensor({1.0, 2.0}, {.dtype = DType::f64, .requires_grad = true});
  Tensor b = tensor({3.0, 5.0}, {.dtype = DType::f64, .requires_grad = true});
  Tensor s = a + b;
  sum(s * 3.0 + s + a * 2.0 + b).backward();  // d/da = 3 + 1 + 2, d/db = 3 + 1 + 1
  CHECK(a.grad().to_vector<double>() == std::vector<double>{6, 6});
  CHECK(b.grad().to_vector<double>() == std::vector<double>{5, 5});
}

TEST_CASE("a second backward through a freed graph is a clear error, retain_graph keeps it") {
  Tensor x = tensor({1.0, 2.0}, {.requires_grad = true});
  Tensor y = sum(exp(x));
  y.backward(Tensor(), /*retain_graph=*/true);
  y.backward();
  CHECK(allclose(x.grad(), exp(x.detach()) * 2.0));
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("backward: the graph through 'sum' was already freed"), Error);
}

TEST_CASE("backward of a non-scalar needs a gradient of its shape") {
  Tensor x = tensor({1, 2, 3}, {.requires_grad = true});
  Tensor y = x * 2.0;
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("gradient can be implied only for a one-element output"), Error);
  CHECK_THROWS_WITH_AS(y.backward(ones({2})), doctest::Contains("gradient shape [2] does not match output shape [3]"),
                       Error);
  y.backward(tensor({1, 10, 100}));
  CHECK(x.grad().to_vector<float>() == std::vector<float>{2, 20, 200});
}

TEST_CASE("NoGradGuard records nothing, detach cuts the graph") {
  Tensor x = ones({2}, {.requires_grad = true});
  {
    NoGradGuard g;
    Tensor y = x * 2.0;
    CHECK(!y.requires_grad());
    CHECK(!grad_mode_enabled());
  }
  CHECK(grad_mode_enabled());
  Tensor d = (x * 2.0).detach();
  CHECK(!d.requires_grad());
  CHECK_THROWS_WITH_AS(sum(d).backward(), doctest::Contains("does not require grad"), Error);
  // A detached branch contributes no gradient.
  Tensor z = sum(x * x.detach());
  z.backward();
  CHECK(x.grad().to_vector<float>() == std::vector<float>{1, 1});
}

TEST_CASE("gradients of mixed-dtype ops come back in each input's dtype") {
  Tensor a = ones({2}, {.dtype = DType::f32, .requires_grad = true});
  Tensor b = ones({2}, {.dtype = DType::f64, .requires_grad = true});
  Tensor y = sum(a * b);
  CHECK(y.dtype() == DType::f64);
  y.backward();
  CHECK(a.grad().dtype() == DType::f32);
  CHECK(b.grad().dtype() == DType::f64);
}

TEST_CASE("broadcasting: values and summed gradients") {
  Tensor a = tensor({1, 2, 3}).view({3, 1}).detach().requires_grad_();  // [3,1] leaf
  Tensor b = tensor({10, 20, 30, 40}, {.requires_grad = true}); // [4]
  Tensor y = a + b;
  CHECK(y.shape() == Shape{3, 4});
  CHECK(y.to_vector<float>()[5] == 22.0f);
  sum(y).backward();
  CHECK(a.grad().to_vector<float>() == std::vector<float>{4, 4, 4});
  CHECK(b.grad().to_vector<float>() == std::vector<float>{3, 3, 3, 3});
  CHECK_THROWS_WITH_AS(add(zeros({2, 3}), zeros({4})), doctest::Contains("add: cannot broadcast [2,3] with [4]"), Error);
}

TEST_CASE("integer and boolean arithmetic follows promotion") {
  CHECK((arange(3) + 1.0).dtype() == DType::i64);
  CHECK((arange(3) / 2.0).to_vector<float>() == std::vector<float>{0, 0.5, 1});
  CHECK((arange(3) + tensor({0.5, 0.5, 0.5})).dtype() == DType::f32);
  Tensor t = lt(arange(3), scalar_tensor(2, {.dtype = DType::i64}));
  CHECK(t.dtype() == DType::boolean);
  CHECK(t.to_vector<bool>() == std::vector<bool>{true, true, false});
  CHECK(add(t, t).to_vector<int64_t>() == std::vector<int64_t>{2, 2, 0});
  Tensor h = tensor({1.5, 2.5}).to(DType::bf16);
  CHECK((h * h).dtype() == DType::bf16);
  CHECK((h * h).to_vector<float>() == std::vector<float>{2.25f, 6.25f});
}

TEST_CASE("to_dot draws the graph") {
  Tensor w = ones({2, 3}, {.requires_grad = true});
  Tensor x = ones({3});
  Tensor y = sum(w * x);
  std::string dot = to_dot(y);
  CHECK(dot.find("digraph mmgrad") != std::string::npos);
  CHECK(dot.find("label=\"mul\\n-> [2,3]\"") != std::string::npos);
  CHECK(dot.find("label=\"sum\\n-> []\"") != std::string::npos);
  CHECK(dot.find("label=\"f32 [2,3]\"") != std::string::npos);  // the leaf w
}

TEST_CASE("gradcheck reports the worst element of a wrong gradient") {
  // A deliberately wrong op: forward x², backward claims 3x.
  GradcheckFn wrong = [](const std::vector<Tensor>& xs) {
    Tensor x = xs[0];
    Tensor out = (x * x).detach();
    return record_op("wrong_square", out, {x}, [x](const Tensor& g) -> Grads { return {g * x.detach() * 3.0}; });
  };
  GradcheckResult r = gradcheck(wrong, {tensor({1.0, -2.0, 0.5}, {.dtype = DType::f64})});
  CHECK(!r.ok);
  CHECK(r.worst_input == 0);
  CHECK(r.message.find("FAIL") == 0);
  GradcheckFn right = [](const std::vector<Tensor>& xs) { return xs[0] * xs[0]; };
  GradcheckResult ok = gradcheck(right, {tensor({1.0, -2.0, 0.5}, {.dtype = DType::f64})});
  CHECK(ok.ok);
  CHECK(ok.elements_checked == 3);
  CHECK(ok.max_abs_err < 1e-7);
}

TEST_CASE("every case of the gradcheck battery passes") {
  auto cases = gradcheck_battery();
  CHECK(cases.size() >= 15);
  for (const GradcheckCase& c : cases) {
    CAPTURE(c.op);
    CAPTURE(c.detail);
    GradcheckResult r = run_case(c);
    CAPTURE(r.message);
    CHECK(r.ok);
    CHECK(r.elements_checked > 0);
  }
}
