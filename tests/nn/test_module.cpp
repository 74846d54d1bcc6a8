// nn::Module: the tree of parameters, state dicts, modes, freezing; the basic layers.
#include <doctest/doctest.h>

#include "core/mmgrad.h"
#include "nn/init.h"
#include "nn/layers.h"

using namespace mmg;
using namespace mmg::nn;

namespace {
struct Block : Module {
  std::shared_ptr<Linear> proj;
  std::shared_ptr<LayerNorm> norm;
  Tensor scale;
  Block() {
    proj = register_module("proj", std::make_shared<Linear>(4, 3));
    norm = register_module("norm", std::make_shared<LayerNorm>(3));
    scale = register_parameter("scale", ones({1}));
    register_buffer("steps", zeros({}, {.dtype = DType::i64}));
  }
  std::string type_name() const override { return "Block"; }
};
struct Net : Module {
  std::shared_ptr<Block> a, b;
  Net() {
    a = register_module("a", std::make_shared<Block>());
    b = register_module("b", std::make_shared<Block>());
  }
  std::string type_name() const override { return "Net"; }
};
}  // namespace

TEST_CASE("named_parameters gives dotted names: a module's own first, then its children's (as PyTorch)") {
  Net net;
  std::vector<std::string> names;
  for (auto& [n, t] : net.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"a.scale", "a.proj.weight", "a.proj.bias", "a.norm.weight", "a.norm.bias",
                                          "b.scale", "b.proj.weight", "b.proj.bias", "b.norm.weight", "b.norm.bias"});
  CHECK(net.num_parameters() == 2 * (12 + 3 + 3 + 3 + 1));
  CHECK(net.named_buffers().size() == 2);
  CHECK(net.state_dict().size() == 12);
  CHECK(net.named_modules().size() == 7);
  CHECK(net.named_modules()[2].first == "a.proj");
  for (const Tensor& p : net.parameters()) CHECK(p.requires_grad());
}

TEST_CASE("registering a name twice or a bad name is an error") {
  struct Bad : Module {
    void twice() { register_parameter("w", ones({1})); register_parameter("w", ones({1})); }
    void dotted() { register_parameter("a.b", ones({1})); }
    void integral() { register_parameter("i", zeros({2}, {.dtype = DType::i64})); }
  } m;
  CHECK_THROWS_WITH_AS(m.twice(), doctest::Contains("name 'w' is already registered"), Error);
  CHECK_THROWS_WITH_AS(m.dotted(), doctest::Contains("invalid name 'a.b'"), Error);
  CHECK_THROWS_WITH_AS(m.integral(), doctest::Contains("parameter 'i' must be a floating tensor"), Error);
}

TEST_CASE("state_dict round trip gives bit-identical outputs") {
  manual_seed(1);
  Net src;
  manual_seed(2);
  Net dst;
  Tensor x = randn({5, 4});
  auto out = [&](Net& n) { return n.b->norm->forward(n.a->proj->forward(x)); };
  CHECK(!allclose(out(src), out(dst)));
  LoadReport r = dst.load_state_dict(src.state_dict());
  CHECK(r.ok());
  CHECK(allclose(out(src), out(dst), 0, 0));
  // Loading copies values: the parameters keep their identity (optimisers hold them).
  CHECK(dst.a->proj->weight.is_same(dst.named_parameters()[1].second));
}

TEST_CASE("load_state_dict lists missing, unexpected and mis-shaped keys") {
  Net net;
  StateDict sd = net.state_dict();
  sd.erase("a.scale");
  sd["a.extra"] = zeros({1});
  sd["b.proj.weight"] = zeros({4, 3});
  CHECK_THROWS_WITH_AS(net.load_state_dict(sd),
                       doctest::Contains("missing keys: a.scale; unexpected keys: a.extra; mis-shaped: b.proj.weight: "
                                         "expected [3,4], got [4,3]"),
                       Error);
  LoadReport r = net.load_state_dict(sd, /*strict=*/false);
  CHECK(r.missing == std::vector<std::string>{"a.scale"});
  CHECK(r.unexpected == std::vector<std::string>{"a.extra"});
  CHECK(r.mismatched.size() == 1);
}

TEST_CASE("train/eval reaches every module, freezing stops gradients of a sub-tree") {
  Net net;
  net.eval();
  for (auto& [n, m] : net.named_modules()) CHECK(!m->is_training());
  net.train();
  CHECK(net.a->proj->is_training());
  net.a->freeze();
  CHECK(net.num_parameters(true) == 22);
  CHECK(net.trainable_parameters().size() == 5);
  Tensor y = sum(net.b->proj->forward(net.a->proj->forward(randn({2, 4})).slice(1, 0, 3).matmul(ones({3, 4}))));
  y.backward();
  CHECK(!net.a->proj->weight.grad().defined());
  CHECK(net.b->proj->weight.grad().defined());
  net.a->unfreeze();
  CHECK(net.num_parameters(true) == net.num_parameters());
}

TEST_CASE("layers compute what they say") {
  manual_seed(0);
  Linear lin(3, 2);
  Tensor x = randn({4, 3});
  CHECK(allclose(lin.forward(x), matmul(x, lin.weight.transpose(0, 1)) + lin.bias, 1e-6, 1e-6));
  for (float w : lin.weight.to_vector<float>()) CHECK(std::abs(w) <= 1.0f / std::sqrt(3.0f));
  Linear nobias(3, 2, false);
  CHECK(!nobias.bias.defined());
  CHECK(nobias.num_parameters() == 6);
  Embedding emb(10, 4);
  Tensor idx = from_vector<int64_t>({3, 3, 7}, {3});
  CHECK(allclose(emb.forward(idx).slice(0, 0, 1), emb.weight.slice(0, 3, 4), 0, 0));
  LayerNorm ln(3);
  Tensor y = ln.forward(x);
  CHECK(allclose(mean(y, {-1}), zeros({4}), 0, 1e-6));
  Dropout drop(0.5);
  drop.eval();
  CHECK(drop.forward(x).is_same(x));
  MLP mlp(3, 8);
  CHECK(mlp.forward(x).shape() == Shape{4, 3});
  CHECK(mlp.num_parameters() == 3 * 8 + 8 + 8 * 3 + 3);
  CHECK_THROWS_WITH_AS(activation_from_name("swish"), doctest::Contains("activation: unknown name 'swish'"), Error);
}

TEST_CASE("initialisers: bounds, moments, reproducibility") {
  Generator g(4);
  Tensor w = empty({256, 128});
  init::xavier_uniform_(w, 1.0, &g);
  double bound = std::sqrt(6.0 / (256 + 128));
  for (float v : w.to_vector<float>()) CHECK(std::abs(v) <= bound + 1e-7);
  init::trunc_normal_(w, 0.02, 0.0, std::nullopt, std::nullopt, &g);
  auto v = w.to_vector<double>();
  double m = 0, s = 0;
  for (double x : v) { CHECK(std::abs(x) <= 0.04 + 1e-7); m += x; }
  m /= v.size();
  for (double x : v) s += (x - m) * (x - m);
  s = std::sqrt(s / v.size());
  CHECK(std::abs(m) < 1e-3);
  CHECK(std::abs(s - 0.02 * 0.8796) < 1e-3);  // std of N(0,σ²) truncated at ±2σ is 0.8796σ
  init::kaiming_normal_(w, 0.0, &g);
  v = w.to_vector<double>();
  s = 0;
  for (double x : v) s += x * x;
  CHECK(std::abs(std::sqrt(s / v.size()) - std::sqrt(2.0 / 128)) < 0.005);
  Generator g1(9), g2(9);
  Tensor a = empty({3, 3}), b = empty({3, 3});
  init::trunc_normal_(a, 1.0, 0.0, std::nullopt, std::nullopt, &g1);
  init::trunc_normal_(b, 1.0, 0.0, std::nullopt, std::nullopt, &g2);
  CHECK(allclose(a, b, 0, 0));
}

TEST_CASE("Module::to converts parameters in place, keeping their handles") {
  manual_seed(3);
  Linear lin(3, 2);
  Tensor w = lin.weight;
  Tensor x = randn({4, 3});
  Tensor y32 = lin.forward(x);
  lin.to(DType::f64);
  CHECK(w.dtype() == DType::f64);
  CHECK(lin.named_parameters()[0].second.dtype() == DType::f64);
  Tensor y64 = lin.forward(x.to(DType::f64));
  CHECK(y64.dtype() == DType::f64);
  CHECK(allclose(y64, y32.to(DType::f64), 1e-6, 1e-6));
  // Gradcheck through a module: its parameters are now f64 leaves.
  sum(lin.forward(x.to(DType::f64))).backward();
  CHECK(lin.weight.grad().dtype() == DType::f64);
  CHECK_THROWS_WITH_AS(lin.to(DType::i64), doctest::Contains("Linear.to: parameters need a floating dtype"), Error);
}

TEST_CASE("Module::to a device: the CPU is a no-op, a device without a GPU is an error naming it") {
  Net net;
  Tensor w = net.a->proj->weight;
  const std::vector<float> before = w.to_vector<float>();
  net.to(Device::cpu());
  CHECK(w.device() == Device::cpu());
  CHECK(w.to_vector<float>() == before);
  if (cuda_device_count() > 0) {
    MESSAGE("a GPU is usable here: moving to it is tested in the cuda suite (test_training.cpp)");
    return;
  }
  CHECK_THROWS_WITH_AS(net.to(Device::cuda(0)), doctest::Contains("cannot move f32"), Error);
  for (const auto& [name, t] : net.named_parameters()) CHECK_MESSAGE(t.device() == Device::cpu(), name);
}
