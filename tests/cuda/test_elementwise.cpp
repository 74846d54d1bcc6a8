// Elementwise ops on CUDA against the CPU: binary ops with broadcasting (arithmetic,
// pow, maximum/minimum with NaN, comparisons), where, the unary ops, clamp, pow by a
// constant and GELU — forward on poisoned outputs and backward through autograd, on fresh
// random inputs of odd sizes and non-contiguous layouts. Both versions of the kernel family
// "elementwise" (v2: 16-byte packs) on views at aligned and misaligned addresses, every tail
// length, every dtype, same-shape, scalar and bias-row operands; and v2 against v1 bit for bit.
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

TEST_CASE("cuda geglu: the composed CUDA path against the CPU's fused kernel, forward and backward") {
  require_gpu();
  for (DType dt : {DType::f32, DType::f64})
    for (GeluApprox approx : {GeluApprox::none, GeluApprox::tanh}) {
      const std::string name = std::string("geglu ") + (approx == GeluApprox::tanh ? "tanh " : "") + dtype_name(dt);
      for (const Shape& s : {Shape{7, 10}, Shape{3, 5, 34}, Shape{1, 2}})
        check_op(name, {uniform(s, dt, -5, 5)}, [approx](const auto& v) { return geglu(v[0], approx); },
                 rtol_for(dt) * 4, atol_for(dt) * 4);
      check_op(name + " of a transpose", {uniform({10, 33}, dt, -5, 5)},
               [approx](const auto& v) { return geglu(v[0].transpose(0, 1), approx); }, rtol_for(dt) * 4,
               atol_for(dt) * 4);
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

// ---- both versions of the "elementwise" family (v2: 16-byte packs) ----

namespace {

// The body once for each version of the family, that version set.
template <class F>
void for_each_elementwise_version(F body) {
  const KernelFamily* fam = nullptr;
  for (const KernelFamily& f : kernel_families())
    if (f.name == "elementwise") fam = &f;
  REQUIRE_MESSAGE(fam != nullptr, "no kernel family elementwise");
  for (int v = 1; v <= static_cast<int>(fam->versions.size()); ++v) {
    KernelVersionGuard guard("elementwise", v);
    INFO("elementwise version " << v);
    body();
  }
}

// Sizes around a pack of every width (2, 4, 16) and a long odd one: every tail length.
const int64_t kPackSizes[] = {1, 3, 4, 15, 16, 17, 33, 4097};

// The views an input of n + 1 elements is taken as on each device: aligned (its first n
// elements, at the storage's start) or misaligned (its last n, one element in, so the
// pointer is no multiple of 16 bytes and v2 must fall back to the scalar kernel).
Tensor aligned_view(const Tensor& t) { return t.slice(0, 0, t.size(0) - 1); }
Tensor shifted_view(const Tensor& t) { return t.slice(0, 1, t.size(0)); }

}  // namespace

TEST_CASE("cuda elementwise v1 and v2: unary ops and GELU on aligned and misaligned views, every tail") {
  require_gpu();
  struct Op {
    const char* name;
    std::function<Tensor(const Tensor&)> f;
    double lo, hi;
  };
  const std::vector<Op> ops = {
      {"exp", [](const Tensor& x) { return exp(x); }, -4, 4},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, 0.01, 9},
      {"relu", [](const Tensor& x) { return relu(x); }, -2, 2},
      {"clamp", [](const Tensor& x) { return clamp(x, -0.5, 0.75); }, -2, 2},
      {"pow 3", [](const Tensor& x) { return pow(x, 3.0); }, -2, 2},
      {"gelu", [](const Tensor& x) { return gelu(x); }, -5, 5},
      {"gelu tanh", [](const Tensor& x) { return gelu(x, GeluApprox::tanh); }, -5, 5},
  };
  for_each_elementwise_version([&] {
    for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16}) {
      const bool half = dt == DType::bf16 || dt == DType::f16;
      const double rtol = half ? 1e-2 : rtol_for(dt) * 4, atol = half ? 1e-2 : atol_for(dt) * 4;
      for (const Op& op : ops) {
        for (int64_t n : kPackSizes) {
          Tensor x = uniform({n + 1}, dt, op.lo, op.hi);
          const auto f = op.f;
          check_op(std::string(op.name) + " aligned " + dtype_name(dt), {x},
                   [f](const auto& v) { return f(aligned_view(v[0])); }, rtol, atol);
          check_op(std::string(op.name) + " misaligned " + dtype_name(dt), {x},
                   [f](const auto& v) { return f(shifted_view(v[0])); }, rtol, atol);
        }
      }
    }
    // Integer unary ops (abs, relu, clamp) in their own dtypes: 16 u8 a pack.
    for (DType dt : {DType::i32, DType::i64, DType::u8}) {
      for (int64_t n : kPackSizes) {
        Tensor x = dt == DType::u8 ? integers({n + 1}, dt, 0, 255) : integers({n + 1}, dt, -50, 50);
        for (auto* view : {&aligned_view, &shifted_view}) {
          const std::string where = view == &aligned_view ? " aligned " : " misaligned ";
          check_op("abs" + where + dtype_name(dt), {x}, [view](const auto& v) { return abs(view(v[0])); }, 0, 0);
          check_op("relu" + where + dtype_name(dt), {x}, [view](const auto& v) { return relu(view(v[0])); }, 0, 0);
          check_op("clamp" + where + dtype_name(dt), {x},
                   [view](const auto& v) { return clamp(view(v[0]), 7.0, 40.0); }, 0, 0);
        }
      }
    }
  });
}

TEST_CASE("cuda elementwise v1 and v2: same-shape, scalar and row-bias binary ops, aligned and misaligned") {
  require_gpu();
  for_each_elementwise_version([] {
    for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64, DType::u8}) {
      const bool integral = is_integral(dt), half = dt == DType::bf16 || dt == DType::f16;
      const double rtol = half ? 1e-2 : (integral ? 0 : rtol_for(dt)), atol = half ? 1e-2 : (integral ? 0 : atol_for(dt));
      auto sample = [&](const Shape& s) { return integral ? integers(s, dt, 1, 12) : uniform(s, dt, 0.5, 3); };
      const std::string name = " " + dtype_name(dt);
      // Same shape (the flat path) and a scalar (a repeated operand), every tail length.
      for (int64_t n : kPackSizes) {
        std::vector<Tensor> xs = {sample({n + 1}), sample({n + 1})};
        for (auto* va : {&aligned_view, &shifted_view}) {
          for (auto* vb : {&aligned_view, &shifted_view}) {
            const std::string how = std::string(va == &aligned_view ? " a aligned" : " a misaligned") +
                                    (vb == &aligned_view ? ", b aligned" : ", b misaligned");
            check_op("add" + how + name, xs, [va, vb](const auto& v) { return va(v[0]) + vb(v[1]); }, rtol, atol);
            check_op("mul" + how + name, xs, [va, vb](const auto& v) { return va(v[0]) * vb(v[1]); }, rtol, atol);
            check_op("maximum" + how + name, xs, [va, vb](const auto& v) { return maximum(va(v[0]), vb(v[1])); }, rtol,
                     atol);
            check_op("lt" + how + name, xs, [va, vb](const auto& v) { return lt(va(v[0]), vb(v[1])); }, 0, 0);
          }
          if (!integral) {
            check_op("div, scalar on the left" + name, xs, [va](const auto& v) { return 2.5 / va(v[0]); }, rtol, atol);
            check_op("sub, scalar on the right" + name, xs, [va](const auto& v) { return va(v[0]) - 0.75; }, rtol, atol);
          }
          check_op("eq with a one-element tensor" + name, xs,
                   [va](const auto& v) { return eq(va(v[0]), v[1].slice(0, 0, 1)); }, 0, 0);
        }
      }
      // A bias row [N] over [M,N] (the rows path when N is a multiple of 16 bytes' worth),
      // on either side, and [B,S,N] + [N]; N = 7 and 33 fall back to the scalar kernel.
      for (int64_t N : {int64_t{7}, int64_t{16}, int64_t{33}, int64_t{48}, int64_t{768}}) {
        for (int64_t M : {int64_t{1}, int64_t{5}, int64_t{197}}) {
          std::vector<Tensor> xs = {sample({M, N}), sample({N + 1})};
          check_op("add bias [" + std::to_string(N) + "] to [" + std::to_string(M) + "," + std::to_string(N) + "]" + name,
                   xs, [](const auto& v) { return v[0] + aligned_view(v[1]); }, rtol, atol);
          check_op("bias minus rows" + name, xs, [](const auto& v) { return aligned_view(v[1]) - v[0]; }, rtol, atol);
          check_op("add a misaligned bias" + name, xs, [](const auto& v) { return v[0] + shifted_view(v[1]); }, rtol,
                   atol);
          check_op("ge against a bias row" + name, xs, [](const auto& v) { return ge(v[0], aligned_view(v[1])); }, 0, 0);
        }
        std::vector<Tensor> xs3 = {sample({3, 7, N}), sample({N + 1})};
        check_op("mul [3,7,N] by a bias" + name, xs3, [](const auto& v) { return v[0] * aligned_view(v[1]); }, rtol,
                 atol);
        // Rows that start one element into their storage: a misaligned [M,N] operand.
        std::vector<Tensor> flat = {sample({5 * N + 1}), sample({N})};
        check_op("add a bias to misaligned rows" + name, flat,
                 [N](const auto& v) { return shifted_view(v[0]).view({5, N}) + v[1]; }, rtol, atol);
      }
    }
  });
}

TEST_CASE("cuda elementwise: version 2 gives version 1's bits") {
  require_gpu();
  auto both = [](const std::string& what, const std::function<Tensor()>& f) {
    Tensor v1, v2;
    {
      KernelVersionGuard g("elementwise", 1);
      v1 = f();
    }
    {
      KernelVersionGuard g("elementwise", 2);
      poison_like(v1.shape(), v1.dtype());
      v2 = f();
    }
    check_parity(v2.to(Device::cpu()), v1.to(Device::cpu()), 0, 0, what + ": v2 against v1, both on the GPU");
  };
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor x = uniform({197, 768}, dt, -4, 4).to(kGpu), y = uniform({197, 768}, dt, -4, 4).to(kGpu);
    Tensor bias = uniform({768}, dt, -1, 1).to(kGpu), g = uniform({197, 768}, dt, -1, 1).to(kGpu);
    const std::string name = " " + dtype_name(dt);
    both("exp" + name, [&] { return exp(x); });
    both("sigmoid" + name, [&] { return sigmoid(x); });
    both("tanh" + name, [&] { return tanh(x); });
    both("gelu" + name, [&] { return gelu(x); });
    both("gelu tanh" + name, [&] { return gelu(x, GeluApprox::tanh); });
    both("add" + name, [&] { return x + y; });
    both("div" + name, [&] { return x / y; });
    both("add bias" + name, [&] { return x + bias; });
    both("gt" + name, [&] { return gt(x, y); });
    for (GeluApprox approx : {GeluApprox::none, GeluApprox::tanh}) {
      both("gelu backward" + name, [&] {
        Tensor xl = x.detach().requires_grad_(true);
        gelu(xl, approx).backward(g);
        return xl.grad();
      });
    }
  }
}

// The engine sums gradients in place into tensors nobody else holds (core/autograd.cpp:
// accumulate_into, the binary add kernel writing over its first operand), in both versions of
// the family: a leaf reached along several paths and over several backward calls, against the
// CPU, with a caller's kept .grad left as it was.
TEST_CASE("cuda autograd: gradient sums in place, each elementwise version, against the CPU") {
  require_gpu();
  for (int version : {1, 2}) {
    KernelVersionGuard guard("elementwise", version);
    for (DType dt : {DType::f32, DType::f64}) {
      Tensor base = uniform({37, 13}, dt, -1, 1), w = uniform({37, 13}, dt, -1, 1);
      Tensor xc = base.clone().detach().requires_grad_(true), xg = base.to(kGpu).detach().requires_grad_(true);
      auto loss = [](const Tensor& x, const Tensor& r) { return sum(x * x * r + x * 3.0 + exp(x)); };
      loss(xc, w).backward();
      loss(xg, w.to(kGpu)).backward();
      const void* first = xg.grad().data_ptr();
      loss(xc, w).backward();
      loss(xg, w.to(kGpu)).backward();
      CHECK(xg.grad().data_ptr() == first);  // the second call summed in place
      Tensor kept = xg.grad();
      const std::vector<double> kept_values = kept.to_vector<double>();
      loss(xc, w).backward();
      loss(xg, w.to(kGpu)).backward();
      CHECK(kept.to_vector<double>() == kept_values);  // the kept .grad is not written
      check_parity(xg.grad(), xc.grad(), 1e-6, 1e-6,
                   "gradient sums v" + std::to_string(version) + " " + dtype_name(dt));
    }
  }
}
