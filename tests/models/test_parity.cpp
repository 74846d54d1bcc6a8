// Parity with PyTorch: mmgrad's layers and models against the same architectures built in
// PyTorch (tests/reference/make_fixtures.py; fixtures committed in tests/reference/fixtures/,
// described in tests/reference/README.md). Torch is not needed to run this test.
//
// For each fixture: build the mmgrad module named by the metadata "kind" from its "config",
// load the weights by parameter name (strict: the fixture and the module hold exactly the same
// names and shapes), run the forward pass on the fixture's inputs, the same scalar loss and the
// backward pass, and compare with PyTorch's results (computed in float64 from the same f32
// weights and inputs, stored in f32):
//   every output, the loss, every parameter's gradient and every float input's gradient.
//
// The criterion, per tensor a (mmgrad, f32) against b (reference):
//   norm-wise    ‖a − b‖₂ / ‖b‖₂ ≤ 1e-5                                    (the requirement)
//   elementwise  |a_i − b_i| ≤ 1e-6 · G + 1e-5 · max_j |b_j| + 1e-4 · |b_i|   for every i
// where G is the scale of the tensor's kind: for a gradient, the largest |value| among all the
// fixture's reference gradients; for an output or the loss, its own max |b_j|.
// The elementwise bound catches one wrong element hiding in a large tensor. Its absolute parts
// are for tiny values: an element near zero is the result of cancellation and carries an f32
// error of the size of the terms it was summed from, not of itself. A tensor whose exact value
// is zero (max |b| ≤ 1e-6 · G) is held to the elementwise bound alone, the norm-wise ratio being
// meaningless there. Such tensors exist: the gradient of every attention's k_proj.bias is
// exactly 0 (adding q·b_k to all scores of a query leaves its softmax unchanged); PyTorch's
// float64 gives ~1e-15 there, and f32 — mmgrad's or PyTorch's alike — ~5e-7 for G ~ 10.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/io/safetensors.h"
#include "core/mmgrad.h"
#include "models/caption_decoder.h"
#include "models/fusion.h"
#include "models/objectives.h"
#include "models/text_encoder.h"
#include "models/vit.h"
#include "nn/attention.h"
#include "nn/transformer.h"

using namespace mmg;
using namespace mmg::nn;

namespace {

constexpr double kNormTol = 1e-5;   // ‖a − b‖ / ‖b‖
constexpr double kAtol = 1e-6;      // elementwise, times G; also what counts as a zero reference
constexpr double kMaxTol = 1e-5;    // elementwise, times max |b|
constexpr double kElemRel = 1e-4;   // elementwise, times |b_i|

std::string fixture_path(const std::string& name) {
  return std::string(MMG_SOURCE_DIR) + "/tests/reference/fixtures/" + name + ".safetensors";
}

struct Fixture {
  std::string name;
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;
  nlohmann::json config, call;

  bool has(const std::string& key) const { return tensors.count(key) > 0; }
  Tensor at(const std::string& key) const {
    auto it = tensors.find(key);
    if (it == tensors.end()) FAIL("fixture ", name, " has no tensor '", key, "'");
    return it->second;
  }
  // The tensors whose names start with `prefix`, keyed by the rest of the name.
  std::map<std::string, Tensor> with_prefix(const std::string& prefix) const {
    std::map<std::string, Tensor> out;
    for (const auto& [k, t] : tensors)
      if (k.rfind(prefix, 0) == 0) out[k.substr(prefix.size())] = t;
    return out;
  }
  std::string meta(const std::string& key) const {
    auto it = metadata.find(key);
    if (it == metadata.end()) FAIL("fixture ", name, " has no metadata '", key, "'");
    return it->second;
  }
};

Fixture load_fixture(const std::string& name) {
  SafetensorsFile file = load_safetensors(fixture_path(name));
  Fixture f;
  f.name = name;
  for (auto& [k, t] : file.tensors) f.tensors[k] = t;
  f.metadata = file.metadata;
  f.config = nlohmann::json::parse(f.meta("config"));
  f.call = nlohmann::json::parse(f.meta("call"));
  return f;
}

using Tensors = std::map<std::string, Tensor>;

// A built module and how to call it: inputs by the fixture's names -> outputs by name.
struct Built {
  std::shared_ptr<Module> module;
  std::function<Tensors(const Tensors&)> forward;
};

TransformerOptions options_from(const nlohmann::json& c) {
  TransformerOptions o;
  o.dim = c.at("dim").get<int64_t>();
  o.heads = c.at("heads").get<int64_t>();
  o.mlp_ratio = c.value("mlp_ratio", 4.0);
  o.eps = c.value("eps", 1e-5);
  o.activation = activation_from_name(c.value("activation", std::string("gelu")));
  o.memory_dim = c.value("memory_dim", int64_t{0});
  return o;
}

Tensor opt(const Tensors& in, const std::string& key) {
  auto it = in.find(key);
  return it == in.end() ? Tensor() : it->second;
}

Built build(const Fixture& f) {
  const std::string kind = f.meta("kind");
  const nlohmann::json& c = f.config;
  const bool causal = f.call.value("causal", false);
  if (kind == "mha") {
    auto m = std::make_shared<MultiHeadAttention>(c.at("dim").get<int64_t>(), c.at("heads").get<int64_t>(), 0.0,
                                                  c.value("kv_dim", int64_t{0}));
    return {m, [m, causal](const Tensors& in) -> Tensors {
              Tensor x = in.at("x"), kv = in.count("memory") ? in.at("memory") : x;
              return {{"out", m->forward(x, kv, opt(in, "key_mask"), causal)}};
            }};
  }
  if (kind == "encoder_layer") {
    auto m = std::make_shared<TransformerEncoderLayer>(options_from(c));
    return {m, [m, causal](const Tensors& in) -> Tensors {
              return {{"out", m->forward(in.at("x"), opt(in, "key_mask"), causal)}};
            }};
  }
  if (kind == "encoder") {
    auto m = std::make_shared<TransformerEncoder>(options_from(c), c.at("depth").get<int64_t>(),
                                                  c.value("final_norm", true));
    return {m, [m, causal](const Tensors& in) -> Tensors {
              return {{"out", m->forward(in.at("x"), opt(in, "key_mask"), causal)}};
            }};
  }
  if (kind == "cross_attention_layer" || kind == "decoder_layer") {
    std::shared_ptr<CrossAttentionLayer> m;
    if (kind == "decoder_layer")
      m = std::make_shared<TransformerDecoderLayer>(options_from(c));
    else
      m = std::make_shared<CrossAttentionLayer>(options_from(c), causal);
    return {m, [m](const Tensors& in) -> Tensors {
              return {{"out", m->forward(in.at("x"), in.at("memory"), opt(in, "x_mask"), opt(in, "memory_mask"))}};
            }};
  }
  if (kind == "vit") {
    auto m = std::make_shared<models::ViT>(models::ViTConfig::from_json(c));
    return {m, [m](const Tensors& in) -> Tensors {
              models::ViTOutput o = m->forward(in.at("images"));
              return {{"tokens", o.tokens}, {"pooled", o.pooled}};
            }};
  }
  if (kind == "text_encoder") {
    auto m = std::make_shared<models::TextEncoder>(models::TextEncoderConfig::from_json(c));
    return {m, [m](const Tensors& in) -> Tensors {
              models::TextOutput o = m->forward(in.at("ids"), opt(in, "attention_mask"), opt(in, "token_type_ids"));
              return {{"tokens", o.tokens}, {"pooled", o.pooled}};
            }};
  }
  if (kind == "cross_fusion") {
    auto m = std::make_shared<models::CrossAttentionFusion>(models::CrossAttentionFusionConfig::from_json(c));
    return {m, [m](const Tensors& in) -> Tensors {
              models::CrossFusionOutput o =
                  m->forward(in.at("text_tokens"), in.at("text_mask"), in.at("image_tokens"), opt(in, "image_mask"));
              return {{"tokens", o.tokens}, {"pooled", o.pooled}};
            }};
  }
  if (kind == "caption_decoder") {
    auto m = std::make_shared<models::CaptionDecoder>(models::CaptionDecoderConfig::from_json(c));
    return {m, [m](const Tensors& in) -> Tensors {
              return {{"logits", m->forward(in.at("tokens"), in.at("image_tokens"), opt(in, "image_mask"))}};
            }};
  }
  FAIL("fixture ", f.name, ": unknown kind '", kind, "'");
  return {};
}

// ---- comparison ----

struct Mismatch {
  bool zero_reference = false;  // max |b| <= kAtol·G: judged by the elementwise bound alone
  double norm_rel = 0;          // ‖a − b‖ / ‖b‖
  double max_abs = 0;           // max |a_i − b_i|
  double elem = 0;              // max_i |a_i − b_i| / (kAtol·G + kMaxTol·max|b| + kElemRel·|b_i|): <= 1 passes
  bool ok() const { return (zero_reference || norm_rel <= kNormTol) && elem <= 1.0; }
};

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector<double>()) m = std::max(m, std::abs(v));
  return m;
}

// scale: G of the criterion; 0 means the reference's own max |b|.
Mismatch compare(const Tensor& actual, const Tensor& expected, double scale = 0) {
  std::vector<double> a = actual.to_vector<double>(), b = expected.to_vector<double>();
  double diff2 = 0, ref2 = 0, ref_max = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    diff2 += (a[i] - b[i]) * (a[i] - b[i]);
    ref2 += b[i] * b[i];
    ref_max = std::max(ref_max, std::abs(b[i]));
  }
  if (scale == 0) scale = ref_max;
  Mismatch e;
  e.zero_reference = ref_max <= kAtol * scale;
  e.norm_rel = ref2 > 0 ? std::sqrt(diff2 / ref2) : (diff2 > 0 ? INFINITY : 0.0);
  for (size_t i = 0; i < b.size(); ++i) {
    const double d = std::abs(a[i] - b[i]);
    const double bound = kAtol * scale + kMaxTol * ref_max + kElemRel * std::abs(b[i]);
    e.max_abs = std::max(e.max_abs, d);
    e.elem = std::max(e.elem, bound > 0 ? d / bound : (d > 0 ? INFINITY : 0.0));
  }
  return e;
}

// The worst errors of a fixture, for the message: norm-wise relative error per kind of tensor,
// the worst elementwise ratio, and the largest absolute error of the zero references.
struct Summary {
  double out = 0, loss = 0, grad = 0, input_grad = 0, elem = 0, zero_abs = 0, grad_scale = 0;
  int zero_refs = 0;
  int failed = 0;             // tensors outside the criterion
  bool expect_match = true;  // false: a negative control, which counts failures instead of asserting
};

void check_tensor(const std::string& fixture, const std::string& what, const Tensor& actual, const Tensor& expected,
                  double scale, double& worst, Summary& s) {
  INFO(fixture, ": ", what, " ", shape_str(actual.shape()));
  REQUIRE(actual.defined());
  REQUIRE(actual.shape() == expected.shape());
  Mismatch e = compare(actual, expected, scale);
  if (e.zero_reference) {
    s.zero_refs++;
    s.zero_abs = std::max(s.zero_abs, e.max_abs);
  } else {
    worst = std::max(worst, e.norm_rel);
  }
  s.elem = std::max(s.elem, e.elem);
  INFO("norm-wise relative error ", e.norm_rel, " (tolerance ", kNormTol,
       e.zero_reference ? ", not applied: zero reference" : "", "), max abs error ", e.max_abs,
       ", elementwise ratio ", e.elem, " (tolerance 1)");
  if (!e.ok()) s.failed++;
  if (s.expect_match) CHECK(e.ok());
}

// Loads the fixture, runs mmgrad and compares everything; returns the worst errors.
// config_patch (a JSON object) overrides config entries: with expect_match = false it builds a
// deliberately different model, to show the comparison notices.
Summary run_parity(const std::string& name, const nlohmann::json& config_patch = nlohmann::json::object(),
                   bool expect_match = true) {
  Fixture f = load_fixture(name);
  f.config.merge_patch(config_patch);
  Built built = build(f);
  Module& m = *built.module;
  m.eval();

  // Buffers (fixed tables): the module's own must already be the reference's.
  Summary s;
  s.expect_match = expect_match;
  StateDict state;
  for (auto& [k, b] : m.named_buffers()) {
    INFO(name, ": buffer ", k);
    REQUIRE(f.has("buffer." + k));
    double unused = 0;
    check_tensor(name, "buffer " + k, b, f.at("buffer." + k), 0, unused, s);
  }
  for (auto& [k, t] : f.with_prefix("buffer.")) state[k] = t;

  // Weights (and buffers) by name; strict: the module and the fixture hold the same names and shapes.
  for (auto& [k, t] : f.with_prefix("param.")) state[k] = t;
  REQUIRE(!state.empty());
  m.load_state_dict(state, /*strict=*/true);
  for (auto& [k, p] : m.state_dict()) {
    INFO(name, ": parameter or buffer ", k);
    CHECK(compare(p, state.at(k)).norm_rel == 0.0);  // loaded bit for bit
  }

  // Inputs: fresh leaves; the float ones with a reference gradient require grad.
  Tensors inputs;
  for (auto& [k, t] : f.with_prefix("input.")) {
    Tensor x = t.clone();
    if (f.has("input_grad." + k)) x.requires_grad_(true);
    inputs[k] = x;
  }

  Tensors outputs = built.forward(inputs);
  Tensor loss;
  const std::string loss_kind = f.meta("loss");
  if (loss_kind == "weighted_sum") {
    for (auto& [k, out] : outputs) {
      Tensor term = sum(out * f.at("loss_weight." + k));
      loss = loss.defined() ? loss + term : term;
    }
  } else if (loss_kind == "caption_lm") {
    loss = models::caption_lm_loss(outputs.at("logits"), inputs.at("tokens"), f.config.at("pad_id").get<int64_t>());
  } else {
    FAIL("fixture ", name, ": unknown loss '", loss_kind, "'");
  }
  loss.backward();

  auto expected_outputs = f.with_prefix("output.");
  CHECK(expected_outputs.size() == outputs.size());
  for (auto& [k, ref] : expected_outputs) {
    REQUIRE(outputs.count(k));
    check_tensor(name, "output " + k, outputs.at(k), ref, 0, s.out, s);
  }
  check_tensor(name, "loss", loss, f.at("loss"), 0, s.loss, s);

  auto expected_grads = f.with_prefix("grad.");
  for (auto& [k, ref] : expected_grads) s.grad_scale = std::max(s.grad_scale, max_abs(ref));
  for (auto& [k, ref] : f.with_prefix("input_grad.")) s.grad_scale = std::max(s.grad_scale, max_abs(ref));
  REQUIRE(s.grad_scale > 0);
  auto params = m.named_parameters();
  CHECK(expected_grads.size() == params.size());
  for (auto& [k, p] : params) {
    INFO(name, ": gradient of ", k);
    REQUIRE(f.has("grad." + k));
    REQUIRE(p.grad().defined());
    check_tensor(name, "grad " + k, p.grad(), f.at("grad." + k), s.grad_scale, s.grad, s);
  }
  for (auto& [k, ref] : f.with_prefix("input_grad.")) {
    REQUIRE(inputs.at(k).grad().defined());
    check_tensor(name, "input grad " + k, inputs.at(k).grad(), ref, s.grad_scale, s.input_grad, s);
  }
  if (expect_match) {
    const std::string input_grads =
        f.with_prefix("input_grad.").empty() ? std::string("(none)") : fmt::format("{:.3g}", s.input_grad);
    MESSAGE(fmt::format("{}: worst norm-wise relative errors: outputs {:.3g}, loss {:.3g}, parameter grads {:.3g}, "
                        "input grads {}; worst elementwise ratio {:.3g}; {} zero reference(s) (G {:.3g}), max abs "
                        "error {:.3g}",
                        name, s.out, s.loss, s.grad, input_grads, s.elem, s.zero_refs, s.grad_scale, s.zero_abs));
  }
  return s;
}

}  // namespace

TEST_CASE("parity with PyTorch: fixtures load and describe themselves") {
  Fixture f = load_fixture("mha_self");
  CHECK(f.meta("kind") == "mha");
  CHECK(f.config.at("dim").get<int64_t>() == 8);
  CHECK(f.at("loss").shape() == Shape{});
  CHECK(f.at("input.key_mask").dtype() == DType::boolean);
  CHECK(f.at("param.q_proj.weight").dtype() == DType::f32);
}

TEST_CASE("parity with PyTorch: the comparison tells a slightly different model apart") {
  // The tanh form of GELU differs from the erf form by at most ~5e-4: well inside what a loose
  // check would accept, far outside the criterion. Weights, inputs and shapes are unchanged.
  Summary s = run_parity("encoder_layer", {{"activation", "gelu_tanh"}}, /*expect_match=*/false);
  CHECK(s.failed > 0);
  CHECK(s.out > kNormTol);
  CHECK(s.out < 1e-2);
  // And a LayerNorm epsilon of 1e-3 instead of 1e-5.
  s = run_parity("encoder_layer", {{"eps", 1e-3}}, /*expect_match=*/false);
  CHECK(s.failed > 0);
}

TEST_CASE("parity with PyTorch: nn MultiHeadAttention") {
  SUBCASE("self-attention, padding mask") { run_parity("mha_self"); }
  SUBCASE("cross-attention, kv_dim != dim, padding mask, causal") { run_parity("mha_cross_causal"); }
}

TEST_CASE("parity with PyTorch: nn TransformerEncoderLayer and TransformerEncoder") {
  SUBCASE("encoder layer, padding mask") { run_parity("encoder_layer"); }
  SUBCASE("encoder, 2 layers, final LayerNorm, causal, tanh GELU") { run_parity("encoder"); }
}

TEST_CASE("parity with PyTorch: nn CrossAttentionLayer (fusion) and TransformerDecoderLayer") {
  SUBCASE("cross-attention fusion layer, text and image padding masks") { run_parity("cross_attention_layer"); }
  SUBCASE("decoder layer, causal") { run_parity("decoder_layer"); }
}

TEST_CASE("parity with PyTorch: models ViT, TextEncoder, CrossAttentionFusion") {
  SUBCASE("ViT, CLS token and pooling, learned positions") { run_parity("vit"); }
  SUBCASE("ViT, mean pooling, 2-D sinusoidal positions") { run_parity("vit_mean_sincos"); }
  // Every pad row computed, as PyTorch's layers do (the references' outputs and gradients
  // include the pads' rows); tests/models/test_skip_padding.cpp checks the real rows alone.
  SUBCASE("text encoder, padding mask, token types") { run_parity("text_encoder", {{"skip_padding", false}}); }
  SUBCASE("cross-attention fusion encoder (ALBEF)") { run_parity("cross_fusion", {{"skip_padding", false}}); }
}

TEST_CASE("parity with PyTorch: models CaptionDecoder with caption_lm_loss") {
  SUBCASE("untied lm_head, 2 layers, padded image tokens") { run_parity("caption_decoder"); }
  SUBCASE("output projection tied to the token embedding") { run_parity("caption_decoder_tied"); }
}
