// Optimisers, LR schedules, gradient clipping, accumulation and training-state checkpoints.
//
// Every update is checked against the paper's formula run in plain double loops (the reference
// below), never against numbers the code under test produced.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <numbers>

#include "core/mmgrad.h"
#include "kernels/cpu/parallel.h"
#include "nn/checkpoint.h"
#include "nn/clip.h"
#include "nn/layers.h"
#include "nn/optim.h"
#include "nn/schedule.h"
#include "tests/temp_dir.h"

using namespace mmg;
namespace fs = std::filesystem;

namespace {

// A tiny model: y = x·Wᵀ + b with W [2,3] and b [2], written with mul and sum (no matmul needed).
struct Tiny : nn::Module {
  Tensor weight, bias;
  explicit Tiny(DType dtype = DType::f64, double shift = 0.0) {
    std::vector<double> w = {0.5, -0.3, 0.8, 0.1, 0.7, -0.6}, b = {0.2, -0.4};
    for (auto& x : w) x += shift;
    for (auto& x : b) x += shift;
    weight = register_parameter("weight", from_vector(w, {2, 3}).to(dtype));
    bias = register_parameter("bias", from_vector(b, {2}).to(dtype));
  }
  std::string type_name() const override { return "Tiny"; }
  // x [N,3] -> [N,2]
  Tensor forward(const Tensor& x) const { return sum(x.unsqueeze(1) * weight, {-1}) + bias; }
  // mean squared error against t [N,2]
  Tensor loss(const Tensor& x, const Tensor& t) const {
    Tensor d = forward(x) - t;
    return mean(d * d);
  }
};

// A deterministic "gradient" for step k of a parameter with n elements.
std::vector<double> fake_grad(int64_t n, int k, double phase) {
  std::vector<double> g(n);
  for (int64_t i = 0; i < n; ++i) g[i] = std::sin(1.3 * i + 0.7 * k + phase) * (1.0 + 0.5 * k);
  return g;
}

std::vector<double> values(const Tensor& t) { return t.to_vector<double>(); }

void check_close(const std::vector<double>& got, const std::vector<double>& want, double rtol, double atol = 0.0) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element " << i << ": got " << got[i] << ", want " << want[i]);
    CHECK(std::abs(got[i] - want[i]) <= atol + rtol * std::abs(want[i]));
  }
}

// ---- references: the formulas, in plain double loops ----

struct SGDRef {
  double lr, wd, mu;
  bool nesterov;
  std::vector<double> buf;
  void step(std::vector<double>& theta, const std::vector<double>& grad) {
    if (buf.empty()) buf.assign(theta.size(), 0.0);
    for (size_t i = 0; i < theta.size(); ++i) {
      double g = grad[i] + wd * theta[i];
      if (mu != 0.0) {
        buf[i] = mu * buf[i] + g;
        g = nesterov ? g + mu * buf[i] : buf[i];
      }
      theta[i] -= lr * g;
    }
  }
};

struct AdamWRef {
  double lr, wd, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  std::vector<double> m = {}, v = {};
  int t = 0;
  void step(std::vector<double>& theta, const std::vector<double>& g) {
    if (m.empty()) m.assign(theta.size(), 0.0), v.assign(theta.size(), 0.0);
    ++t;
    for (size_t i = 0; i < theta.size(); ++i) {
      theta[i] -= lr * wd * theta[i];
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      double mhat = m[i] / (1 - std::pow(b1, t));
      double vhat = v[i] / (1 - std::pow(b2, t));
      theta[i] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
  }
};

std::vector<nn::ParamGroup> one_group(const Tiny& m, double lr, double wd) {
  return {nn::ParamGroup{.params = {{"weight", m.weight}, {"bias", m.bias}}, .lr = lr, .weight_decay = wd}};
}

// Runs 3 steps of `opt` on fake gradients and the same 3 steps of the reference on each parameter.
template <class Ref>
void run_against_reference(nn::Optimizer& opt, Tiny& m, Ref ref_w, Ref ref_b, double rtol) {
  std::vector<double> w = values(m.weight), b = values(m.bias);
  for (int k = 0; k < 3; ++k) {
    auto gw = fake_grad(6, k, 0.0), gb = fake_grad(2, k, 1.0);
    m.weight.set_grad(from_vector(gw, {2, 3}).to(m.weight.dtype()));
    m.bias.set_grad(from_vector(gb, {2}).to(m.bias.dtype()));
    // The reference sees the gradient as the optimiser does (rounded to the parameter's dtype).
    ref_w.step(w, values(m.weight.grad()));
    ref_b.step(b, values(m.bias.grad()));
    opt.step();
    INFO("step " << k + 1);
    check_close(values(m.weight), w, rtol, rtol * 1e-3);
    check_close(values(m.bias), b, rtol, rtol * 1e-3);
  }
  CHECK(opt.step_count() == 3);
}

// A temp folder named after this file's tests.
struct TempDir : test::TempDir {
  TempDir() : test::TempDir("mmg_optim") {}
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// SGD

TEST_CASE("optim: SGD plain, momentum, Nesterov and weight decay match the formulas for 3 steps") {
  struct Case {
    const char* name;
    double wd, mu;
    bool nesterov;
  };
  for (Case c : {Case{"plain", 0.0, 0.0, false}, Case{"weight decay", 0.05, 0.0, false},
                 Case{"momentum", 0.0, 0.9, false}, Case{"nesterov", 0.0, 0.9, true},
                 Case{"momentum + weight decay", 0.05, 0.8, false}, Case{"nesterov + weight decay", 0.05, 0.8, true}}) {
    SUBCASE(c.name) {
      Tiny m;
      nn::SGD opt(one_group(m, 0.1, c.wd), {.momentum = c.mu, .nesterov = c.nesterov});
      SGDRef ref{.lr = 0.1, .wd = c.wd, .mu = c.mu, .nesterov = c.nesterov, .buf = {}};
      run_against_reference(opt, m, ref, ref, 1e-13);
    }
  }
}

TEST_CASE("optim: SGD on f32 parameters stays within f32 rounding of the f64 formula") {
  Tiny m(DType::f32);
  nn::SGD opt(one_group(m, 0.1, 0.01), {.momentum = 0.9, .nesterov = true});
  SGDRef ref{.lr = 0.1, .wd = 0.01, .mu = 0.9, .nesterov = true, .buf = {}};
  run_against_reference(opt, m, ref, ref, 1e-5);
  CHECK(m.weight.dtype() == DType::f32);
}

TEST_CASE("optim: SGD state holds one momentum buffer per parameter, and none without momentum") {
  Tiny m;
  nn::SGD with(one_group(m, 0.1, 0.0), {.momentum = 0.9});
  auto s = with.state_dict();
  CHECK(s.size() == 3);
  CHECK(s.count("momentum_buffer.weight"));
  CHECK(s.count("momentum_buffer.bias"));
  CHECK(s.at("step").dim() == 0);
  CHECK(s.at("step").dtype() == DType::i64);
  nn::SGD without(one_group(m, 0.1, 0.0));
  CHECK(without.state_dict().size() == 1);
}

// ---------------------------------------------------------------------------------------------
// AdamW

TEST_CASE("optim: AdamW matches the formulas of Loshchilov & Hutter for 3 steps") {
  for (double wd : {0.0, 0.01, 0.3}) {
    CAPTURE(wd);
    Tiny m;
    nn::AdamW opt(one_group(m, 0.01, wd));
    AdamWRef ref{.lr = 0.01, .wd = wd};
    run_against_reference(opt, m, ref, ref, 1e-12);
  }
}

TEST_CASE("optim: AdamW with other betas and eps, and on f32 parameters") {
  SUBCASE("betas and eps") {
    Tiny m;
    nn::AdamW opt(one_group(m, 0.02, 0.1), {.beta1 = 0.5, .beta2 = 0.9, .eps = 1e-3});
    AdamWRef ref{.lr = 0.02, .wd = 0.1, .b1 = 0.5, .b2 = 0.9, .eps = 1e-3};
    run_against_reference(opt, m, ref, ref, 1e-12);
  }
  SUBCASE("f32") {
    Tiny m(DType::f32);
    nn::AdamW opt(one_group(m, 0.01, 0.01));
    AdamWRef ref{.lr = 0.01, .wd = 0.01};
    run_against_reference(opt, m, ref, ref, 1e-5);
    CHECK(opt.state_dict().at("exp_avg.weight").dtype() == DType::f32);
  }
  SUBCASE("bf16 parameters keep f32 moments") {
    Tiny m(DType::bf16);
    nn::AdamW opt(one_group(m, 0.01, 0.0));
    CHECK(opt.state_dict().at("exp_avg_sq.weight").dtype() == DType::f32);
    std::vector<double> w = values(m.weight);
    m.weight.set_grad(ones_like(m.weight));
    opt.step();
    // The first AdamW step moves every element by lr·g/(|g| + ε) ≈ lr, against the gradient.
    check_close(values(m.weight), {w[0] - 0.01, w[1] - 0.01, w[2] - 0.01, w[3] - 0.01, w[4] - 0.01, w[5] - 0.01},
                1e-2);
    CHECK(m.weight.dtype() == DType::bf16);
  }
}

// Contiguous f32/f64 parameters take the fused kernel (kernels/cpu/adamw.cpp); a strided one
// takes update(), the tensor ops. Same parameters, same gradients: the same bits, over many
// steps (bias corrections change with t), with and without weight decay, over a size big
// enough to be split over threads mid-tensor.
TEST_CASE("optim: the fused CPU AdamW step equals the tensor-op update bit for bit") {
  for (DType dt : {DType::f32, DType::f64}) {
    for (double wd : {0.0, 0.05}) {
      CAPTURE(dtype_name(dt));
      CAPTURE(wd);
      manual_seed(5);
      Tensor base = randn({70, 531}, {.dtype = dt});
      Tensor packed = base.clone().requires_grad_();                       // fused path
      // The same values behind transposed strides.
      Tensor strided = base.transpose(0, 1).contiguous().transpose(0, 1).detach().requires_grad_();
      REQUIRE(packed.is_contiguous());
      REQUIRE_FALSE(strided.is_contiguous());
      Tensor small = randn({3}, {.dtype = dt}).requires_grad_();  // a second tensor in the fused step
      nn::AdamW fused({{.params = {{"w", packed}, {"s", small}}, .lr = 0.01, .weight_decay = wd}}),
          reference({{.params = {{"w", strided}}, .lr = 0.01, .weight_decay = wd}});
      for (int k = 0; k < 6; ++k) {
        Tensor g = randn({70, 531}, {.dtype = dt}) * (1.0 + k);
        packed.set_grad(g.clone());
        strided.set_grad(g.clone());
        small.set_grad(randn({3}, {.dtype = dt}));
        fused.step();
        reference.step();
      }
      const auto a = packed.to_vector<double>(), b = strided.to_vector<double>();
      CHECK(a == b);
      CHECK(a != base.to_vector<double>());  // it moved
      CHECK(fused.state_dict().at("exp_avg.w").to_vector<double>() ==
            reference.state_dict().at("exp_avg.w").to_vector<double>());
      CHECK(fused.state_dict().at("exp_avg_sq.w").to_vector<double>() ==
            reference.state_dict().at("exp_avg_sq.w").to_vector<double>());
    }
  }
}

// The fused step writes the moments in place when nobody else holds them; a state_dict()
// snapshot holds them, and then keeps the values it was taken with while the step writes new
// tensors. Either way the same numbers.
TEST_CASE("optim: AdamW's moments are updated in place unless a state_dict snapshot holds them") {
  manual_seed(9);
  Tensor base = randn({40, 33});
  Tensor a = base.clone().requires_grad_(), b = base.clone().requires_grad_();
  nn::AdamW lone({{.params = {{"w", a}}, .lr = 0.01, .weight_decay = 0.02}}),
      watched({{.params = {{"w", b}}, .lr = 0.01, .weight_decay = 0.02}});
  for (int k = 0; k < 4; ++k) {
    Tensor g = randn({40, 33});
    a.set_grad(g.clone());
    b.set_grad(g.clone());
    const void* lone_before = lone.state_dict().at("exp_avg.w").data_ptr();  // the snapshot is dropped at once
    nn::StateDict snapshot = watched.state_dict();
    const std::vector<double> m_then = snapshot.at("exp_avg.w").to_vector<double>(),
                              v_then = snapshot.at("exp_avg_sq.w").to_vector<double>();
    lone.step();
    watched.step();
    CHECK(lone.state_dict().at("exp_avg.w").data_ptr() == lone_before);  // written in place
    CHECK(watched.state_dict().at("exp_avg.w").data_ptr() != snapshot.at("exp_avg.w").data_ptr());
    CHECK(snapshot.at("exp_avg.w").to_vector<double>() == m_then);  // the snapshot is untouched
    CHECK(snapshot.at("exp_avg_sq.w").to_vector<double>() == v_then);
    CHECK(a.to_vector<double>() == b.to_vector<double>());
    CHECK(lone.state_dict().at("exp_avg_sq.w").to_vector<double>() ==
          watched.state_dict().at("exp_avg_sq.w").to_vector<double>());
  }
  CHECK(a.to_vector<double>() != base.to_vector<double>());
}

TEST_CASE("optim: defaults of AdamW are lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0.01") {
  Tiny m;
  nn::AdamW opt(m);
  CHECK(opt.lr() == 1e-3);
  REQUIRE(opt.param_groups().size() == 2);
  CHECK(opt.param_groups()[0].weight_decay == 0.01);
  // One step on the weight alone (the bias has no gradient) against the reference with the defaults.
  std::vector<double> w = values(m.weight), b = values(m.bias);
  auto g = fake_grad(6, 0, 0.0);
  m.weight.set_grad(from_vector(g, {2, 3}));
  AdamWRef ref{.lr = 1e-3, .wd = 0.01};
  ref.step(w, g);
  opt.step();
  check_close(values(m.weight), w, 1e-13);
  CHECK(values(m.bias) == b);
}

TEST_CASE("optim: parameters without a gradient are skipped, and AdamW counts steps per parameter") {
  Tiny m;
  nn::AdamW opt(one_group(m, 0.01, 0.1));
  std::vector<double> w = values(m.weight), b = values(m.bias);
  AdamWRef ref_w{.lr = 0.01, .wd = 0.1}, ref_b{.lr = 0.01, .wd = 0.1};
  for (int k = 0; k < 4; ++k) {
    auto gw = fake_grad(6, k, 0.0), gb = fake_grad(2, k, 1.0);
    m.weight.set_grad(from_vector(gw, {2, 3}));
    ref_w.step(w, gw);
    if (k >= 2) {  // the bias joins at the third step: its bias correction starts from t = 1
      m.bias.set_grad(from_vector(gb, {2}));
      ref_b.step(b, gb);
    } else {
      m.bias.zero_grad();
    }
    opt.step();
    check_close(values(m.weight), w, 1e-12);
    check_close(values(m.bias), b, 1e-12);  // unchanged (no decay either) while it has no gradient
  }
  auto s = opt.state_dict();
  CHECK(s.at("step").item() == 4);
  CHECK(s.at("step.weight").item() == 4);
  CHECK(s.at("step.bias").item() == 2);
}

TEST_CASE("optim: zero_grad drops every gradient") {
  Tiny m;
  nn::SGD opt(one_group(m, 0.1, 0.0));
  m.loss(ones({1, 3}, {.dtype = DType::f64}), zeros({1, 2}, {.dtype = DType::f64})).backward();
  CHECK(m.weight.grad().defined());
  CHECK(m.bias.grad().defined());
  opt.zero_grad();
  CHECK(!m.weight.grad().defined());
  CHECK(!m.bias.grad().defined());
  std::vector<double> w = values(m.weight);
  opt.step();  // nothing to do
  CHECK(values(m.weight) == w);
}

TEST_CASE("optim: set_lr sets every group's rate scaled by its lr_scale") {
  Tiny m;
  std::vector<nn::ParamGroup> groups{
      {.params = {{"weight", m.weight}}, .lr = 0.1, .weight_decay = 0.0, .lr_scale = 1.0},
      {.params = {{"bias", m.bias}}, .lr = 0.01, .weight_decay = 0.0, .lr_scale = 0.1}};
  nn::SGD opt(groups);
  CHECK(opt.lr() == 0.1);
  opt.set_lr(0.5);
  CHECK(opt.lr() == 0.5);
  CHECK(opt.param_groups()[0].lr == 0.5);
  CHECK(opt.param_groups()[1].lr == doctest::Approx(0.05).epsilon(1e-15));
  // The new rates are the ones used.
  std::vector<double> w = values(m.weight), b = values(m.bias);
  m.weight.set_grad(ones_like(m.weight));
  m.bias.set_grad(ones_like(m.bias));
  opt.step();
  check_close(values(m.weight), {w[0] - 0.5, w[1] - 0.5, w[2] - 0.5, w[3] - 0.5, w[4] - 0.5, w[5] - 0.5}, 1e-15);
  check_close(values(m.bias), {b[0] - 0.05, b[1] - 0.05}, 1e-15);
}

// ---------------------------------------------------------------------------------------------
// parameter groups

namespace {
// A model with the kinds of parameters the no-decay rule is about, and a frozen child.
struct Mixed : nn::Module {
  struct Child : nn::Module {
    Tensor weight;
    Child() { weight = register_parameter("weight", zeros({3, 3})); }
  };
  Tensor proj_weight, proj_bias, ln_weight, cls_token, position_embeddings, logit_scale, table;
  std::shared_ptr<Child> frozen;
  Mixed() {
    proj_weight = register_parameter("proj_weight", zeros({4, 3}));
    proj_bias = register_parameter("proj_bias", zeros({4}));
    ln_weight = register_parameter("ln_weight", ones({4}));
    cls_token = register_parameter("cls_token", zeros({1, 1, 4}));
    position_embeddings = register_parameter("position_embeddings", zeros({1, 5, 4}));
    logit_scale = register_parameter("logit_scale", zeros({}));
    table = register_parameter("table", zeros({10, 4}));
    frozen = register_module("frozen", std::make_shared<Child>());
    frozen->freeze();
  }
};

std::vector<std::string> names_of(const nn::ParamGroup& g) {
  std::vector<std::string> out;
  for (auto& [n, p] : g.params) out.push_back(n);
  return out;
}
}  // namespace

TEST_CASE("optim: param_groups_for puts 1-D parameters, biases and tokens in a no-decay group, skipping frozen ones") {
  Mixed model;
  auto groups = nn::param_groups_for(model, 3e-4, 0.05);
  REQUIRE(groups.size() == 2);
  CHECK(names_of(groups[0]) == std::vector<std::string>{"proj_weight", "table"});
  CHECK(groups[0].weight_decay == 0.05);
  CHECK(names_of(groups[1]) ==
        std::vector<std::string>{"proj_bias", "ln_weight", "cls_token", "position_embeddings", "logit_scale"});
  CHECK(groups[1].weight_decay == 0.0);
  for (auto& g : groups) CHECK(g.lr == 3e-4);

  SUBCASE("the suffix list can be changed") {
    auto only_dims = nn::param_groups_for(model, 3e-4, 0.05, {});
    CHECK(names_of(only_dims[0]) == std::vector<std::string>{"proj_weight", "cls_token", "position_embeddings", "table"});
  }
}

TEST_CASE("optim: with_lr_scales moves parameters to scaled copies of their groups by the longest name prefix") {
  Mixed model;
  auto groups = nn::with_lr_scales(nn::param_groups_for(model, 1e-3, 0.05), {{"proj_", 0.5}, {"proj_bias", 0.1}});
  REQUIRE(groups.size() == 4);
  // The unscaled groups first, so the optimiser's lr() is still the base rate.
  CHECK(names_of(groups[0]) == std::vector<std::string>{"table"});
  CHECK(names_of(groups[1]) == std::vector<std::string>{"ln_weight", "cls_token", "position_embeddings", "logit_scale"});
  CHECK(names_of(groups[2]) == std::vector<std::string>{"proj_weight"});
  CHECK(groups[2].weight_decay == 0.05);  // a weight keeps its decay
  CHECK(groups[2].lr == doctest::Approx(5e-4));
  CHECK(groups[2].lr_scale == doctest::Approx(0.5));
  CHECK(names_of(groups[3]) == std::vector<std::string>{"proj_bias"});  // "proj_bias" is longer than "proj_"
  CHECK(groups[3].weight_decay == 0.0);
  CHECK(groups[3].lr_scale == doctest::Approx(0.1));

  nn::AdamW opt(std::move(groups));
  CHECK(opt.lr() == doctest::Approx(1e-3));
  opt.set_lr(2e-3);  // a schedule's rate reaches each group times its scale
  CHECK(opt.param_groups()[0].lr == doctest::Approx(2e-3));
  CHECK(opt.param_groups()[2].lr == doctest::Approx(1e-3));
  CHECK(opt.param_groups()[3].lr == doctest::Approx(2e-4));

  SUBCASE("no scales: the groups unchanged") {
    auto same = nn::with_lr_scales(nn::param_groups_for(model, 1e-3, 0.05), {});
    REQUIRE(same.size() == 2);
    CHECK(names_of(same[0]) == std::vector<std::string>{"proj_weight", "table"});
  }
  SUBCASE("a prefix that matches nothing, or a bad scale, is an error naming it") {
    CHECK_THROWS_WITH_AS(nn::with_lr_scales(nn::param_groups_for(model, 1e-3, 0.05), {{"fusion.", 0.3}}),
                         doctest::Contains("'fusion.'"), Error);
    CHECK_THROWS_WITH_AS(nn::with_lr_scales(nn::param_groups_for(model, 1e-3, 0.05), {{"table", 0.0}}),
                         doctest::Contains("'table'"), Error);
    CHECK_THROWS_WITH_AS(nn::with_lr_scales(nn::param_groups_for(model, 1e-3, 0.05), {{"", 0.5}}),
                         doctest::Contains("empty"), Error);
  }
}

TEST_CASE("optim: AdamW built from a model decays weights but not 1-D parameters") {
  Tiny m;
  // A zero gradient isolates the weight decay: m = v = 0, so the Adam step is 0 and only θ ← θ(1 − ηλ) acts.
  nn::AdamW opt(m, 0.1, 0.5);
  std::vector<double> w = values(m.weight), b = values(m.bias);
  m.weight.set_grad(zeros_like(m.weight));
  m.bias.set_grad(zeros_like(m.bias));
  opt.step();
  for (auto& x : w) x *= 1.0 - 0.1 * 0.5;
  check_close(values(m.weight), w, 1e-15);
  CHECK(values(m.bias) == b);
}

// ---------------------------------------------------------------------------------------------
// errors

TEST_CASE("optim: bad optimiser arguments are errors that say what is wrong") {
  Tiny m;
  CHECK_THROWS_WITH_AS((nn::SGD(one_group(m, 0.1, 0.0), {.momentum = 0.0, .nesterov = true})),
                       doctest::Contains("SGD: Nesterov momentum needs momentum > 0"), Error);
  CHECK_THROWS_WITH_AS(nn::SGD(one_group(m, -0.1, 0.0)), doctest::Contains("SGD: lr must be finite and >= 0, got -0.1"),
                       Error);
  CHECK_THROWS_WITH_AS(nn::AdamW(one_group(m, 0.1, 0.0), {.beta1 = 1.0}),
                       doctest::Contains("AdamW: beta1 must be in [0, 1), got 1"), Error);
  CHECK_THROWS_WITH_AS(nn::AdamW(std::vector<nn::ParamGroup>{}), doctest::Contains("AdamW: no parameters to optimise"),
                       Error);
  m.freeze();
  CHECK_THROWS_WITH_AS(nn::AdamW{m}, doctest::Contains("AdamW: no parameters to optimise (are they all frozen?)"), Error);
  m.unfreeze();
  std::vector<nn::ParamGroup> twice{{.params = {{"weight", m.weight}, {"weight", m.bias}}}};
  CHECK_THROWS_WITH_AS(nn::AdamW{twice}, doctest::Contains("AdamW: parameter name 'weight' appears twice"), Error);
  std::vector<nn::ParamGroup> same{{.params = {{"a", m.weight}, {"b", m.weight}}}};
  CHECK_THROWS_WITH_AS(nn::AdamW{same}, doctest::Contains("AdamW: parameter 'b' is the same tensor"), Error);
  std::vector<nn::ParamGroup> computed{{.params = {{"w2", m.weight * 2.0}}}};
  CHECK_THROWS_WITH_AS(nn::SGD{computed}, doctest::Contains("SGD: parameter 'w2' [2,3] is not a leaf"), Error);
  nn::SGD ok(one_group(m, 0.1, 0.0));
  CHECK_THROWS_WITH_AS(ok.set_lr(std::nan("")), doctest::Contains("SGD: lr must be finite and >= 0, got nan"), Error);
}

TEST_CASE("optim: load_state_dict names every missing, unexpected and mis-shaped key and changes nothing") {
  Tiny m;
  nn::AdamW opt(one_group(m, 0.01, 0.0));
  m.weight.set_grad(ones_like(m.weight));
  m.bias.set_grad(ones_like(m.bias));
  opt.step();
  nn::StateDict good = opt.state_dict();
  std::vector<double> before = values(good.at("exp_avg.weight"));

  nn::StateDict bad = good;
  bad.erase("exp_avg_sq.bias");
  bad["exp_avg.weight"] = zeros({3, 2}, {.dtype = DType::f64});
  bad["momentum_buffer.weight"] = zeros({2, 3}, {.dtype = DType::f64});
  CHECK_THROWS_WITH_AS(opt.load_state_dict(bad),
                       doctest::Contains("AdamW.load_state_dict: missing keys: exp_avg_sq.bias; unexpected keys: "
                                         "momentum_buffer.weight; mis-shaped or invalid: exp_avg.weight: expected "
                                         "[2,3], got [3,2]"),
                       Error);
  CHECK(values(opt.state_dict().at("exp_avg.weight")) == before);

  nn::StateDict bad_step = good;
  bad_step["step"] = tensor({1.0, 2.0});
  CHECK_THROWS_WITH_AS(opt.load_state_dict(bad_step), doctest::Contains("step: expected a 0-d count, got [2]"), Error);
  bad_step["step"] = scalar_tensor(2.5);
  CHECK_THROWS_WITH_AS(opt.load_state_dict(bad_step),
                       doctest::Contains("step: expected a count (an integer >= 0), got 2.5"), Error);
  nn::StateDict bad_dtype = good;
  bad_dtype["exp_avg.bias"] = zeros({2}, {.dtype = DType::i64});
  CHECK_THROWS_WITH_AS(opt.load_state_dict(bad_dtype),
                       doctest::Contains("exp_avg.bias: expected a floating tensor, got i64"), Error);
  CHECK(opt.step_count() == 1);
}

TEST_CASE("optim: a loaded state is the optimiser's own copy, converted to the parameter's dtype") {
  Tiny m;
  nn::AdamW opt(one_group(m, 0.01, 0.0));
  nn::StateDict s = opt.state_dict();
  Tensor mine = full({2, 3}, 0.25, {.dtype = DType::f32});
  s["exp_avg.weight"] = mine;
  s["step.weight"] = full({}, 7, {.dtype = DType::i64});
  opt.load_state_dict(s);
  mine.fill_(9.0);  // must not reach the optimiser
  Tensor loaded = opt.state_dict().at("exp_avg.weight");
  CHECK(loaded.dtype() == DType::f64);
  CHECK(values(loaded) == std::vector<double>(6, 0.25));
  CHECK(opt.state_dict().at("step.weight").item() == 7);
}

// ---------------------------------------------------------------------------------------------
// schedules

TEST_CASE("schedule: ConstantLR, WarmupCosine and StepLR at their key steps") {
  SUBCASE("constant") {
    nn::ConstantLR s(3e-4);
    CHECK(s.lr_at(0) == 3e-4);
    CHECK(s.lr_at(123456) == 3e-4);
  }
  SUBCASE("warmup cosine") {
    const double base = 1e-3, min = 1e-5;
    nn::WarmupCosine s(base, 10, 110, min);
    CHECK(s.lr_at(0) == 0.0);                                         // warmup starts from 0
    CHECK(s.lr_at(5) == doctest::Approx(base / 2).epsilon(1e-14));    // linear
    CHECK(s.lr_at(10) == doctest::Approx(base).epsilon(1e-14));       // end of warmup: the peak
    CHECK(s.lr_at(60) == doctest::Approx((base + min) / 2).epsilon(1e-14));  // middle of the decay
    CHECK(s.lr_at(35) ==
          doctest::Approx(min + 0.5 * (base - min) * (1 + std::cos(std::numbers::pi * 0.25))).epsilon(1e-14));
    CHECK(s.lr_at(110) == min);  // end
    CHECK(s.lr_at(1000) == min);
    CHECK(s.lr_at(109) > min);
    for (int64_t t = 10; t < 110; ++t) CHECK(s.lr_at(t + 1) <= s.lr_at(t));  // decreasing after warmup
  }
  SUBCASE("cosine without warmup") {
    nn::WarmupCosine s(2.0, 0, 4);
    CHECK(s.lr_at(0) == 2.0);
    CHECK(s.lr_at(2) == doctest::Approx(1.0).epsilon(1e-14));
    CHECK(s.lr_at(4) == 0.0);
  }
  SUBCASE("step") {
    nn::StepLR s(0.1, 30, 0.5);
    CHECK(s.lr_at(0) == 0.1);
    CHECK(s.lr_at(29) == 0.1);
    CHECK(s.lr_at(30) == 0.05);
    CHECK(s.lr_at(89) == doctest::Approx(0.025).epsilon(1e-15));
    CHECK(s.lr_at(90) == doctest::Approx(0.0125).epsilon(1e-15));
  }
}

TEST_CASE("schedule: bad arguments are errors") {
  CHECK_THROWS_WITH_AS(nn::WarmupCosine(1e-3, 20, 10), doctest::Contains("WarmupCosine: warmup_steps must be in [0, total_steps = 10], got 20"), Error);
  CHECK_THROWS_WITH_AS(nn::WarmupCosine(1e-3, 0, 0), doctest::Contains("WarmupCosine: total_steps must be > 0, got 0"), Error);
  CHECK_THROWS_WITH_AS(nn::WarmupCosine(1e-3, 1, 10, 1e-2), doctest::Contains("WarmupCosine: min_lr 0.01 is above base_lr 0.001"), Error);
  CHECK_THROWS_WITH_AS(nn::StepLR(0.1, 0), doctest::Contains("StepLR: step_size must be > 0, got 0"), Error);
  CHECK_THROWS_WITH_AS(nn::ConstantLR(-1.0), doctest::Contains("ConstantLR: lr must be finite and >= 0, got -1"), Error);
  CHECK_THROWS_WITH_AS(nn::ConstantLR(1.0).lr_at(-1), doctest::Contains("ConstantLR.lr_at: step -1 is negative"), Error);
}

TEST_CASE("schedule: driving an optimiser through set_lr") {
  Tiny m;
  nn::SGD opt(one_group(m, 0.0, 0.0));
  nn::StepLR s(0.1, 2, 0.5);
  std::vector<double> w = values(m.weight);
  for (int k = 0; k < 4; ++k) {
    opt.set_lr(s.lr_at(opt.step_count()));
    m.weight.set_grad(ones_like(m.weight));
    opt.step();
    for (auto& x : w) x -= s.lr_at(k);
  }
  check_close(values(m.weight), w, 1e-15);
}

// ---------------------------------------------------------------------------------------------
// clipping

TEST_CASE("clip: clip_grad_norm returns the global norm and scales every gradient when it is too large") {
  Tiny m;
  auto gw = fake_grad(6, 1, 0.0), gb = fake_grad(2, 1, 1.0);
  double ss = 0;
  for (double x : gw) ss += x * x;
  for (double x : gb) ss += x * x;
  const double norm = std::sqrt(ss);

  SUBCASE("above max_norm: scaled by max_norm/(norm + 1e-6)") {
    m.weight.set_grad(from_vector(gw, {2, 3}));
    m.bias.set_grad(from_vector(gb, {2}));
    const double max_norm = norm / 3;
    CHECK(nn::clip_grad_norm(m.parameters(), max_norm) == doctest::Approx(norm).epsilon(1e-14));
    const double c = max_norm / (norm + 1e-6);
    for (auto& x : gw) x *= c;
    for (auto& x : gb) x *= c;
    check_close(values(m.weight.grad()), gw, 1e-14);
    check_close(values(m.bias.grad()), gb, 1e-14);
    CHECK(nn::grad_norm(m.parameters()) == doctest::Approx(max_norm).epsilon(1e-6));
  }
  SUBCASE("below max_norm: untouched") {
    m.weight.set_grad(from_vector(gw, {2, 3}));
    m.bias.set_grad(from_vector(gb, {2}));
    CHECK(nn::clip_grad_norm(m.parameters(), norm * 2) == doctest::Approx(norm).epsilon(1e-14));
    CHECK(values(m.weight.grad()) == gw);
  }
  SUBCASE("parameters without a gradient do not count") {
    m.weight.set_grad(from_vector(gw, {2, 3}));
    double only_w = 0;
    for (double x : gw) only_w += x * x;
    CHECK(nn::clip_grad_norm(m.parameters(), 1e9) == doctest::Approx(std::sqrt(only_w)).epsilon(1e-14));
    CHECK(nn::grad_norm({}) == 0.0);
  }
  SUBCASE("f32 gradients: the norm is summed in f64") {
    // 10⁶ elements of 1e-3: f32 running sums drift, f64 gives sqrt(10⁶·10⁻⁶) = 1 to ~1e-9.
    Tensor big = zeros({1000, 1000}).requires_grad_();
    big.set_grad(full({1000, 1000}, 1e-3));
    const double want = std::sqrt(1e6 * std::pow(static_cast<double>(1e-3f), 2));
    CHECK(nn::clip_grad_norm({big}, 10.0) == doctest::Approx(want).epsilon(1e-9));
  }
  SUBCASE("a non-finite norm is returned and nothing is scaled") {
    gw[2] = std::numeric_limits<double>::infinity();
    m.weight.set_grad(from_vector(gw, {2, 3}));
    m.bias.set_grad(from_vector(gb, {2}));
    CHECK(std::isinf(nn::clip_grad_norm(m.parameters(), 1.0)));
    CHECK(values(m.bias.grad()) == gb);
    gw[2] = std::nan("");
    m.weight.set_grad(from_vector(gw, {2, 3}));
    CHECK(std::isnan(nn::clip_grad_norm(m.parameters(), 1.0)));
    CHECK(values(m.bias.grad()) == gb);
  }
  SUBCASE("max_norm must be positive") {
    CHECK_THROWS_WITH_AS(nn::clip_grad_norm(m.parameters(), 0.0),
                         doctest::Contains("clip_grad_norm: max_norm must be finite and > 0, got 0"), Error);
  }
}

TEST_CASE("clip: f32 and f64 gradients, strided and bf16 ones, and tensors across the fused pass's blocks") {
  // Sizes around cpu::kGradNormBlock (16384), so blocks start and end inside tensors; a
  // transposed and a bf16 gradient take the tensor ops beside the fused pass.
  Generator gen(7);
  std::vector<Tensor> params;
  auto add = [&](const Shape& shape, DType dtype) {
    Tensor p = zeros(shape, {.dtype = dtype}).requires_grad_();
    p.set_grad(randn(shape, {.dtype = DType::f64}, &gen).to(dtype));
    params.push_back(p);
  };
  add({3}, DType::f32);
  add({100, 200}, DType::f32);  // 20000: crosses the first block's end
  add({16383}, DType::f32);
  add({5, 7}, DType::f64);
  add({40, 1000}, DType::f64);
  add({2, 9}, DType::bf16);
  {
    Tensor p = zeros({30, 20}).requires_grad_();
    p.set_grad(randn({20, 30}, {}, &gen).transpose(0, 1));  // a strided gradient
    params.push_back(p);
  }
  double ss = 0;
  std::vector<std::vector<double>> before;
  for (const Tensor& p : params) {
    before.push_back(p.grad().to(DType::f64).contiguous().to_vector<double>());
    for (double x : before.back()) ss += x * x;
  }
  const double norm = std::sqrt(ss);

  const int saved = cpu::num_threads();
  cpu::set_num_threads(1);
  const double one_thread = nn::grad_norm(params);
  cpu::set_num_threads(3);
  const double three_threads = nn::grad_norm(params);
  cpu::set_num_threads(saved);
  CHECK(one_thread == three_threads);  // fixed blocks: the same sum on any thread count
  CHECK(one_thread == doctest::Approx(norm).epsilon(1e-13));

  const double max_norm = norm / 4;
  CHECK(nn::clip_grad_norm(params, max_norm) == doctest::Approx(norm).epsilon(1e-13));
  const double c = max_norm / (norm + 1e-6);
  for (size_t i = 0; i < params.size(); ++i) {
    CAPTURE(i);
    const DType dt = params[i].dtype();
    std::vector<double> want = before[i];
    // Each gradient scaled in its own dtype, by the scale rounded to that dtype.
    const double ct = dt == DType::f32 ? static_cast<double>(static_cast<float>(c)) : c;
    for (double& x : want) x *= ct;
    // f64: the norm summed in another order than here moves the scale by ~1e-14.
    const double tol = dt == DType::f64 ? 1e-12 : dt == DType::f32 ? 1e-6 : 1e-2;
    check_close(params[i].grad().to(DType::f64).contiguous().to_vector<double>(), want, tol);
  }
  CHECK(nn::grad_norm(params) == doctest::Approx(max_norm).epsilon(1e-2));  // bf16 rounding
}

// ---------------------------------------------------------------------------------------------
// gradient accumulation

TEST_CASE("optim: accumulating 2 backward calls scaled by 1/2 equals one backward on the whole batch") {
  Tensor x = from_vector(std::vector<double>{0.3, -1.2, 0.5, 2.0, 0.1, -0.7, -0.4, 0.9, 1.5, 0.2, -0.3, 0.8}, {4, 3});
  Tensor t = from_vector(std::vector<double>{1.0, -1.0, 0.5, 0.0, -0.5, 2.0, 0.3, 0.7}, {4, 2});
  Tiny whole, accumulated, summed;
  whole.loss(x, t).backward();

  // Two micro-batches of 2 rows; the loss is a mean over rows, so each half is weighted 1/2.
  for (int64_t k = 0; k < 2; ++k) {
    Tensor xk = x.slice(0, 2 * k, 2 * k + 2), tk = t.slice(0, 2 * k, 2 * k + 2);
    (accumulated.loss(xk, tk) / 2.0).backward();
    summed.loss(xk, tk).backward();  // unscaled: the engine sums
  }
  check_close(values(accumulated.weight.grad()), values(whole.weight.grad()), 1e-14, 1e-15);
  check_close(values(accumulated.bias.grad()), values(whole.bias.grad()), 1e-14, 1e-15);
  // backward k times sums: twice the mean
  std::vector<double> twice = values(whole.weight.grad());
  for (auto& v : twice) v *= 2;
  check_close(values(summed.weight.grad()), twice, 1e-14, 1e-15);

  // And a step from the accumulated gradient is the step from the whole batch.
  nn::AdamW a(one_group(whole, 0.01, 0.01)), b(one_group(accumulated, 0.01, 0.01));
  a.step();
  b.step();
  check_close(values(accumulated.weight), values(whole.weight), 1e-12);
}

// ---------------------------------------------------------------------------------------------
// training state on disk

namespace {
// One training step of Tiny on a batch that depends only on the step number.
void train_step(Tiny& m, nn::Optimizer& opt, const nn::LRSchedule& schedule) {
  const int64_t k = opt.step_count();
  std::vector<double> xs(12), ts(8);
  for (int i = 0; i < 12; ++i) xs[i] = std::sin(0.37 * i + 1.1 * k);
  for (int i = 0; i < 8; ++i) ts[i] = std::cos(0.53 * i - 0.9 * k);
  Tensor x = from_vector(xs, {4, 3}).to(m.weight.dtype()), t = from_vector(ts, {4, 2}).to(m.weight.dtype());
  opt.zero_grad();
  m.loss(x, t).backward();
  nn::clip_grad_norm(m.trainable_parameters(), 0.5);
  opt.set_lr(schedule.lr_at(k));
  opt.step();
}

bool same_bits(const Tensor& a, const Tensor& b) {
  Tensor ca = a.contiguous(), cb = b.contiguous();
  return ca.dtype() == cb.dtype() && ca.numel() == cb.numel() &&
         std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.numel() * dtype_size(ca.dtype())) == 0;
}
}  // namespace

TEST_CASE("optim: training resumed from a saved state ends bit-identical to an uninterrupted run") {
  TempDir dir;
  const std::string path = dir.file("state.safetensors");
  nn::WarmupCosine schedule(0.05, 2, 8, 0.005);
  for (bool adam : {true, false}) {
    CAPTURE(adam);
    auto make = [&](Tiny& m) -> std::unique_ptr<nn::Optimizer> {
      if (adam) return std::make_unique<nn::AdamW>(m, 0.05, 0.1);
      return std::make_unique<nn::SGD>(m, 0.05, 0.1, nn::SGDOptions{.momentum = 0.9, .nesterov = true});
    };
    Tiny straight(DType::f32);
    auto opt_straight = make(straight);
    for (int i = 0; i < 8; ++i) train_step(straight, *opt_straight, schedule);

    Tiny first(DType::f32);
    auto opt_first = make(first);
    for (int i = 0; i < 4; ++i) train_step(first, *opt_first, schedule);
    nn::save_training_state(path, first, *opt_first, {{"epoch", "3"}});

    Tiny resumed(DType::f32, /*shift=*/1.0);  // different values: the load must overwrite them
    auto opt_resumed = make(resumed);
    auto meta = nn::load_training_state(path, resumed, *opt_resumed);
    CHECK(meta == std::map<std::string, std::string>{{"epoch", "3"}});
    CHECK(opt_resumed->step_count() == 4);
    for (int i = 0; i < 4; ++i) train_step(resumed, *opt_resumed, schedule);

    CHECK(same_bits(resumed.weight, straight.weight));
    CHECK(same_bits(resumed.bias, straight.bias));
    CHECK(!same_bits(resumed.weight, first.weight));  // it did train on
    auto s1 = opt_straight->state_dict(), s2 = opt_resumed->state_dict();
    REQUIRE(s1.size() == s2.size());
    for (auto& [k, v] : s1) {
      CAPTURE(k);
      CHECK(same_bits(v, s2.at(k)));
    }
  }
}

TEST_CASE("optim: the training-state file holds model.* and optim.* keys") {
  TempDir dir;
  const std::string path = dir.file("state.safetensors");
  Tiny m;
  nn::AdamW opt(m);
  nn::save_training_state(path, m, opt);
  SafetensorsFile f = load_safetensors(path);
  std::vector<std::string> names;
  for (auto& [n, t] : f.tensors) names.push_back(n);
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"model.bias", "model.weight", "optim.exp_avg.bias", "optim.exp_avg.weight",
                                          "optim.exp_avg_sq.bias", "optim.exp_avg_sq.weight", "optim.step",
                                          "optim.step.bias", "optim.step.weight"});
  CHECK(f.metadata.at("mmgrad.optimizer") == "AdamW");
}

TEST_CASE("optim: load_training_state refuses a wrong file and leaves model and optimiser as they were") {
  TempDir dir;
  const std::string path = dir.file("state.safetensors");
  Tiny m;
  nn::AdamW adam(m);
  nn::save_training_state(path, m, adam);

  SUBCASE("another optimiser's state") {
    Tiny other;
    nn::SGD sgd(other, 0.1);
    CHECK_THROWS_WITH_AS(nn::load_training_state(path, other, sgd),
                         doctest::Contains("holds the state of an AdamW optimiser, but the optimiser is SGD"), Error);
  }
  SUBCASE("a model with other parameters") {
    struct Other : nn::Module {
      Other() { register_parameter("weight", zeros({2, 3}, {.dtype = DType::f64})); }
    };
    Other other;
    nn::AdamW opt(std::vector<nn::ParamGroup>{{.params = {{"weight", other.parameters()[0]}}}});
    CHECK_THROWS_WITH_AS(nn::load_training_state(path, other, opt),
                         doctest::Contains("unexpected keys: exp_avg.bias, exp_avg_sq.bias, step.bias"), Error);
    CHECK(values(other.parameters()[0]) == std::vector<double>(6, 0.0));
  }
  SUBCASE("a model that does not match while the optimiser does: neither is changed") {
    struct WithBuffer : nn::Module {
      Tensor weight, bias;
      WithBuffer() {
        weight = register_parameter("weight", zeros({2, 3}, {.dtype = DType::f64}));
        bias = register_parameter("bias", zeros({2}, {.dtype = DType::f64}));
        register_buffer("running", zeros({4}));  // not in the file
      }
    };
    WithBuffer other;
    nn::AdamW opt(std::vector<nn::ParamGroup>{{.params = {{"weight", other.weight}, {"bias", other.bias}}}});
    other.weight.set_grad(ones_like(other.weight));
    opt.step();
    std::vector<double> w = values(other.weight);
    nn::StateDict before = opt.state_dict();
    const std::string want = fmt::format("load_training_state: {}: load_state_dict (Module): missing keys: running", path);
    CHECK_THROWS_WITH_AS(nn::load_training_state(path, other, opt), doctest::Contains(want.c_str()), Error);
    CHECK(values(other.weight) == w);
    CHECK(opt.step_count() == 1);
    for (auto& [k, v] : opt.state_dict()) {
      CAPTURE(k);
      CHECK(values(v) == values(before.at(k)));
    }
  }
  SUBCASE("a tensor outside model.* and optim.*") {
    save_safetensors(path, {{"stray", zeros({1})}});
    CHECK_THROWS_WITH_AS(nn::load_training_state(path, m, adam),
                         doctest::Contains("tensor 'stray' is neither 'model.*' nor 'optim.*'"), Error);
  }
  SUBCASE("reserved metadata") {
    CHECK_THROWS_WITH_AS(nn::save_training_state(path, m, adam, {{"mmgrad.optimizer", "x"}}),
                         doctest::Contains("metadata key 'mmgrad.optimizer' is reserved"), Error);
  }
}

TEST_CASE("optim: param_groups_for on the library's layers: Linear and Embedding weights decay, the rest does not") {
  struct Net : nn::Module {
    Net() {
      register_module("embed", std::make_shared<nn::Embedding>(10, 4));
      register_module("ln", std::make_shared<nn::LayerNorm>(4));
      register_module("head", std::make_shared<nn::Linear>(4, 3));
    }
  };
  Net net;
  auto groups = nn::param_groups_for(net, 1e-3, 0.01);
  REQUIRE(groups.size() == 2);
  CHECK(names_of(groups[0]) == std::vector<std::string>{"embed.weight", "head.weight"});
  CHECK(names_of(groups[1]) == std::vector<std::string>{"ln.weight", "ln.bias", "head.bias"});
}
