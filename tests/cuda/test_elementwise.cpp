// Elementwise ops on CUDA against the CPU: binary ops with broadcasting (arithmetic,
// pow, maximum/minimum with NaN, comparisons), where, the unary ops, clamp, pow by a
// constant and GELU — forward on poisoned outputs and backward through autograd, on fresh
// random inputs of odd sizes and non-contiguous layouts.
#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

using namespace mmg;
using namespace mmg::testing;

namespace {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

std::string shapes_of(const std::vector<Tensor>& xs) {
  std::string s;
  for (const Tensor& x : xs) s += shape_str(x.shape()) + " ";
  return s;
}

// f on the CPU inputs and on their CUDA copies (contiguous: a view to test is taken inside f,
// on each device): the outputs agree, and where the output is
// floating, so do the gradients of Σ f(x)·r (r random, the same on both devices) for every
// floating input.
void check_op(const std::string& what, const std::vector<Tensor>& xs, const Fn& f, double rtol, double atol) {
  const std::string name = what + " " + shapes_of(xs);
  std::vector<Tensor> cpu_in, gpu_in;
  for (const Tensor& x : xs) {
    const bool grad = is_floating(x.dtype());
    Tensor c = x.clone().detach();
    Tensor g = x.to(kGpu).detach();
    if (grad) {
      c.requires_grad_(true);
      g.requires_grad_(true);
    }
    cpu_in.push_back(c);
    gpu_in.push_back(g);
  }
  Tensor want = f(cpu_in);
  poison_like(want.shape(), want.dtype());
  Tensor got = f(gpu_in);
  CHECK(got.device() == kGpu);
  check_parity(got, want, rtol, atol, name + " forward");
  if (!is_floating(want.dtype()) || !want.requires_grad()) return;
  Tensor r = uniform(want.shape(), want.dtype(), -1, 1);
  (want * r).sum().backward();
  (got * r.to(kGpu)).sum().backward();
  for (size_t i = 0; i < xs.size(); ++i) {
    if (!cpu_in[i].requires_grad()) continue;
    REQUIRE(cpu_in[i].grad().defined());
    REQUIRE(gpu_in[i].grad().defined());
    CHECK(gpu_in[i].grad().device() == kGpu);
    check_parity(gpu_in[i].grad(), cpu_in[i].grad(), rtol * 10, atol * 10, name + " gradient of input " + std::to_string(i));
  }
}

// Operand pairs that broadcast in every way the kernels must handle, odd sizes throughout.
std::vector<std::pair<Shape, Shape>> broadcast_pairs() {
  return {{{7}, {7}},          {{1}, {1}},           {{5, 33}, {33}},     {{3, 1}, {1, 257}},
          {{2, 3, 31}, {2, 1, 31}}, {{1}, {13, 1, 97}}, {{}, {5, 33}},      {{4, 0}, {4, 1}},
          {{1, 1029}, {1029}}};
}

}  // namespace

TEST_CASE("cuda elementwise: add, sub, mul, div, pow, maximum, minimum with broadcasting, f32 and f64") {
  require_gpu();
  struct Op {
    const char* name;
    Fn f;
    double lo, hi;  // input range
  };
  const std::vector<Op> ops = {
      {"add", [](const auto& v) { return v[0] + v[1]; }, -3, 3},
      {"sub", [](const auto& v) { return v[0] - v[1]; }, -3, 3},
      {"mul", [](const auto& v) { return v[0] * v[1]; }, -3, 3},
      {"div", [](const auto& v) { return v[0] / v[1]; }, 0.5, 3},
      {"pow", [](const auto& v) { return pow(v[0], v[1]); }, 0.5, 2},
      {"maximum", [](const auto& v) { return maximum(v[0], v[1]); }, -3, 3},
      {"minimum", [](const auto& v) { return minimum(v[0], v[1]); }, -3, 3},
  };
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Op& op : ops) {
      for (const auto& [sa, sb] : broadcast_pairs()) {
        check_op(std::string(op.name) + " " + dtype_name(dt), {uniform(sa, dt, op.lo, op.hi), uniform(sb, dt, op.lo, op.hi)},
                 op.f, rtol_for(dt), atol_for(dt));
      }
    }
    // A non-contiguous operand (a transpose, made on each device inside f) and a scalar on the left.
    check_op("mul with a transposed operand " + dtype_name(dt), {uniform({33, 5}, dt, 0.5, 2), uniform({5, 33}, dt, -1, 1)},
             [](const auto& v) { return v[0].transpose(0, 1) * v[1]; }, rtol_for(dt), atol_for(dt));
    check_op("div of a strided slice by a broadcast column " + dtype_name(dt),
             {uniform({7, 40}, dt, -1, 1), uniform({7, 1}, dt, 0.5, 2)},
             [](const auto& v) { return v[0].slice(1, 1, 40, 3) / v[1]; }, rtol_for(dt), atol_for(dt));
    check_op("scalar minus tensor " + dtype_name(dt), {uniform({5, 33}, dt, -1, 1)},
             [](const auto& v) { return 2.5 - v[0]; }, rtol_for(dt), atol_for(dt));
  }
}

TEST_CASE("cuda elementwise: ties and NaN in maximum and minimum") {
  require_gpu();
  Tensor a = tensor({1, NAN, 2, NAN, -0.0, 5});
  Tensor b = tensor({1, 3, NAN, NAN, 0.0, 4});
  check_op("maximum with ties and NaN", {a, b}, [](const auto& v) { return maximum(v[0], v[1]); }, 0, 0);
  check_op("minimum with ties and NaN", {a, b}, [](const auto& v) { return minimum(v[0], v[1]); }, 0, 0);
}

TEST_CASE("cuda elementwise: integer arithmetic and comparisons of every numeric dtype") {
  require_gpu();
  for (DType dt : {DType::i32, DType::i64, DType::u8}) {
    for (const auto& [sa, sb] : broadcast_pairs()) {
      std::vector<Tensor> xs = {integers(sa, dt, 0, 12), integers(sb, dt, 0, 12)};
      check_op("add " + dtype_name(dt), xs, [](const auto& v) { return v[0] + v[1]; }, 0, 0);
      check_op("mul " + dtype_name(dt), xs, [](const auto& v) { return v[0] * v[1]; }, 0, 0);
      check_op("maximum " + dtype_name(dt), xs, [](const auto& v) { return maximum(v[0], v[1]); }, 0, 0);
      check_op("div of integers (true division) " + dtype_name(dt), {xs[0], xs[1] + 1},
               [](const auto& v) { return v[0] / v[1]; }, 2e-6, 1e-6);
      check_op("integer tensor / 2.5 and 2.5 / (tensor + 1) " + dtype_name(dt), xs,
               [](const auto& v) { return v[0] / 2.5 + 2.5 / (v[1] + 1); }, 2e-6, 1e-6);
      check_op("eq " + dtype_name(dt), xs, [](const auto& v) { return eq(v[0], v[1]); }, 0, 0);
      check_op("le " + dtype_name(dt), xs, [](const auto& v) { return le(v[0], v[1]); }, 0, 0);
    }
  }
  std::vector<Tensor> fl = {uniform({5, 33}, DType::f32, -1, 1), uniform({33}, DType::f32, -1, 1)};
  fl[1] = where(gt(fl[1], scalar_like(fl[1], 0.5)), fl[1], select(fl[0], 0, 2));  // some exact ties
  for (auto [name, f] : std::vector<std::pair<std::string, Fn>>{
           {"eq", [](const auto& v) { return eq(v[0], v[1]); }}, {"ne", [](const auto& v) { return ne(v[0], v[1]); }},
           {"lt", [](const auto& v) { return lt(v[0], v[1]); }}, {"le", [](const auto& v) { return le(v[0], v[1]); }},
           {"gt", [](const auto& v) { return gt(v[0], v[1]); }}, {"ge", [](const auto& v) { return ge(v[0], v[1]); }}}) {
    check_op(name + " f32", fl, f, 0, 0);
  }
  // bool operands: compared as 0/1; true + true = 2 (i64).
  Tensor p = integers({257}, DType::boolean, 0, 2), q = integers({257}, DType::boolean, 0, 2);
  check_op("eq bool", {p, q}, [](const auto& v) { return eq(v[0], v[1]); }, 0, 0);
  check_op("add bool", {p, q}, [](const auto& v) { return v[0] + v[1]; }, 0, 0);
  // bf16: computed in f32 on both devices, rounded back to bf16.
  check_op("add bf16", {uniform({5, 33}, DType::bf16, -2, 2), uniform({33}, DType::bf16, -2, 2)},
           [](const auto& v) { return v[0] + v[1]; }, 1e-2, 1e-2);
}

TEST_CASE("cuda elementwise: where with broadcast condition and operands") {
  require_gpu();
  for (DType dt : {DType::f32, DType::f64, DType::i64, DType::bf16}) {
    Tensor c = integers({5, 1, 33}, DType::boolean, 0, 2);
    Tensor a = uniform({5, 7, 33}, dt, -2, 2), b = uniform({33}, dt, -2, 2);
    check_op("where " + dtype_name(dt), {c, a, b}, [](const auto& v) { return where(v[0], v[1], v[2]); },
             dt == DType::bf16 ? 1e-2 : rtol_for(dt), dt == DType::bf16 ? 1e-2 : atol_for(dt));
  }
}

TEST_CASE("cuda unary ops: forward and backward, f32 and f64, odd sizes") {
  require_gpu();
  struct Op {
    const char* name;
    Fn f;
    double lo, hi;
  };
  const std::vector<Op> ops = {
      {"neg", [](const auto& v) { return -v[0]; }, -3, 3},
      {"exp", [](const auto& v) { return exp(v[0]); }, -5, 5},
      {"log", [](const auto& v) { return log(v[0]); }, 0.01, 10},
      {"sqrt", [](const auto& v) { return sqrt(v[0]); }, 0.01, 10},
      {"rsqrt", [](const auto& v) { return rsqrt(v[0]); }, 0.01, 10},
      {"abs", [](const auto& v) { return abs(v[0]); }, -3, 3},
      {"tanh", [](const auto& v) { return tanh(v[0]); }, -4, 4},
      {"sigmoid", [](const auto& v) { return sigmoid(v[0]); }, -30, 30},
      {"relu", [](const auto& v) { return relu(v[0]); }, -3, 3},
      {"gelu", [](const auto& v) { return gelu(v[0]); }, -6, 6},
      {"gelu tanh", [](const auto& v) { return gelu(v[0], GeluApprox::tanh); }, -6, 6},
      {"clamp", [](const auto& v) { return clamp(v[0], -0.5, 0.75); }, -2, 2},
      {"clamp min only", [](const auto& v) { return clamp(v[0], 0.25, std::nullopt); }, -2, 2},
      {"pow 2", [](const auto& v) { return pow(v[0], 2.0); }, -3, 3},
      {"pow 1", [](const auto& v) { return pow(v[0], 1.0); }, -3, 3},
      {"pow 0.5", [](const auto& v) { return pow(v[0], 0.5); }, 0.01, 5},
      {"pow -1.5", [](const auto& v) { return pow(v[0], -1.5); }, 0.1, 5},
  };
  for (DType dt : {DType::f32, DType::f64}) {
    for (const Op& op : ops) {
      for (const Shape& s : odd_shapes()) {
        check_op(std::string(op.name) + " " + dtype_name(dt), {uniform(s, dt, op.lo, op.hi)}, op.f,
                 rtol_for(dt) * 4, atol_for(dt) * 4);
      }
      // A non-contiguous input (the transpose is taken on each device inside the function).
      const Fn f = op.f;
      check_op(std::string(op.name) + " of a transpose " + dtype_name(dt), {uniform({33, 6}, dt, op.lo, op.hi)},
               [f](const auto& v) { return f({v[0].transpose(0, 1)}); }, rtol_for(dt) * 4, atol_for(dt) * 4);
    }
  }
}

TEST_CASE("cuda unary ops: kinks, NaN and infinities as on the CPU") {
  require_gpu();
  Tensor x = tensor({0.0, -0.0, NAN, INFINITY, -INFINITY, -0.5, 0.75, 1e-30, -700, 700});
  for (auto [name, f] : std::vector<std::pair<std::string, Fn>>{
           {"relu", [](const auto& v) { return relu(v[0]); }},
           {"abs", [](const auto& v) { return abs(v[0]); }},
           {"clamp", [](const auto& v) { return clamp(v[0], -0.5, 0.75); }},
           {"sigmoid", [](const auto& v) { return sigmoid(v[0]); }},
           {"tanh", [](const auto& v) { return tanh(v[0]); }},
           {"exp", [](const auto& v) { return exp(v[0]); }},
           {"gelu", [](const auto& v) { return gelu(v[0]); }}}) {
    for (DType dt : {DType::f32, DType::f64}) {
      // Forward only: at ±inf and NaN the gradient formulas give NaN on both devices.
      Tensor xd = x.to(dt);
      poison_like(xd.shape(), dt);
      check_parity(f({xd.to(kGpu)}), f({xd}), rtol_for(dt) * 4, atol_for(dt), name + " specials " + dtype_name(dt));
    }
  }
  // Gradients at the kinks: relu'(0) = 0, |x|'(0) = 0, clamp passes at both ends.
  Tensor k = tensor({0.0, -0.5, 0.75, 1.0, -1.0}, {.dtype = DType::f64});
  check_op("relu at its kink", {k}, [](const auto& v) { return relu(v[0]); }, 0, 0);
  check_op("abs at its kink", {k}, [](const auto& v) { return abs(v[0]); }, 0, 0);
  check_op("clamp at its ends", {k}, [](const auto& v) { return clamp(v[0], -0.5, 0.75); }, 0, 0);
}

TEST_CASE("cuda unary ops: integer abs, relu, clamp keep their dtype, bf16 computes in f32") {
  require_gpu();
  for (DType dt : {DType::i32, DType::i64}) {
    Tensor x = integers({5, 33}, dt, -20, 20);
    check_op("abs " + dtype_name(dt), {x}, [](const auto& v) { return abs(v[0]); }, 0, 0);
    check_op("relu " + dtype_name(dt), {x}, [](const auto& v) { return relu(v[0]); }, 0, 0);
    check_op("clamp " + dtype_name(dt), {x}, [](const auto& v) { return clamp(v[0], -3.0, 1e10); }, 0, 0);
  }
  Tensor u = integers({257}, DType::u8, 0, 255);
  check_op("clamp u8", {u}, [](const auto& v) { return clamp(v[0], 7.0, 200.0); }, 0, 0);
  check_op("abs u8", {u}, [](const auto& v) { return abs(v[0]); }, 0, 0);
  for (auto [name, f] : std::vector<std::pair<std::string, Fn>>{
           {"exp", [](const auto& v) { return exp(v[0]); }},
           {"gelu", [](const auto& v) { return gelu(v[0]); }},
           {"sigmoid", [](const auto& v) { return sigmoid(v[0]); }}}) {
    check_op(name + " bf16", {uniform({3, 257}, DType::bf16, -3, 3)}, f, 1e-2, 1e-2);
    check_op(name + " f16", {uniform({3, 257}, DType::f16, -3, 3)}, f, 2e-3, 2e-3);
  }
}
