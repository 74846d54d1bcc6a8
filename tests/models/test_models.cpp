// The models: ViT, text encoder, the fusion families. Shapes for every preset, parameter counts
// against the published ones (by formula), configs through JSON and their errors, gradchecks of
// micro instances in f64, gradients reaching every parameter, padding invariance, state-dict
// round trips and freezing.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "core/mmgrad.h"
#include "tests/nn/module_test_util.h"
#include "models/fusion.h"
#include "models/caption_decoder.h"
#include "models/presets.h"
#include "models/vlm.h"
#include "train/commands.h"

using namespace mmg;
using namespace mmg::nn;
using namespace mmg::models;
using namespace mmg::test;
using nlohmann::json;

namespace {

Tensor make_ids(const std::vector<std::vector<int64_t>>& rows) {
  std::vector<int64_t> v;
  for (auto& r : rows) v.insert(v.end(), r.begin(), r.end());
  return from_vector(v, {static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())});
}

// Ids with [CLS]=1 first, then random words in [2, vocab); positions where mask is 0 hold pad 0.
Tensor random_ids(const Tensor& mask, int64_t vocab, Generator* gen = nullptr) {
  auto m = mask.to_vector<bool>();
  auto r = randint(2, vocab, mask.shape(), {.dtype = DType::i64}, gen).to_vector<int64_t>();
  const int64_t S = mask.size(1);
  for (size_t i = 0; i < r.size(); ++i) r[i] = !m[i] ? 0 : (i % S == 0 ? 1 : r[i]);
  return from_vector(r, mask.shape());
}

// The inputs, then the module's parameters, all in f64: the module is converted first (its
// buffers too), since gradcheck passes the inputs it does not check through unconverted.
std::vector<Tensor> f64_inputs_and_parameters(std::vector<Tensor> inputs, Module& m) {
  m.to(DType::f64);
  for (Tensor& x : inputs) x = x.to(DType::f64);
  for (const Tensor& p : m.parameters()) inputs.push_back(p.detach());
  return inputs;
}

// gradcheck's `check` flags: the first `n_inputs` inputs, and the parameters named in `names`.
std::vector<bool> check_flags(const Module& m, size_t n_inputs, const std::set<std::string>& names) {
  std::vector<bool> flags(n_inputs, true);
  size_t found = 0;
  for (auto& [n, p] : m.named_parameters()) {
    flags.push_back(names.count(n) > 0);
    found += names.count(n);
  }
  REQUIRE(found == names.size());  // every name exists
  return flags;
}

// A scalar that sees every element of t: Σ t ⊙ r for a fixed random r (the sum of a
// LayerNorm's output alone has zero gradient).
Tensor project(const Tensor& t) { return sum(t * randn(t.shape(), {.dtype = t.dtype()})); }

bool same_values(const Tensor& a, const Tensor& b) { return a.shape() == b.shape() && allclose(a, b, 0, 0); }

// Parameter counts by formula: an encoder layer of width D with MLP width 4D is
// 2 LayerNorms (4D) + q,k,v,out projections 4(D² + D) + fc1 (4D² + 4D) + fc2 (4D² + D).
int64_t layer_params(int64_t D) { return 4 * D + 4 * (D * D + D) + (4 * D * D + 4 * D) + (4 * D * D + D); }
int64_t vit_params(const ViTConfig& c) {
  const int64_t D = c.dim, P = c.patch_size;
  return (D * c.channels * P * P + D) + D + (1 + c.num_patches()) * D + c.depth * layer_params(D) + 2 * D;
}
int64_t text_params(const TextEncoderConfig& c) {
  const int64_t D = c.dim;
  return (c.vocab_size + c.max_len + c.type_vocab_size) * D + 2 * D + c.depth * layer_params(D) + 2 * D;
}

FusionModel micro(const std::string& name, uint64_t seed = 1) {
  Generator gen(seed);
  return FusionModel(FusionModelConfig::preset(name), &gen);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ViT

TEST_CASE("ViT: output shapes of every small preset, names, and pooling") {
  Generator gen(1);
  for (const std::string name : {"vit-micro", "vit-tiny", "vit-tiny-64"}) {
    CAPTURE(name);
    ViTConfig c = ViTConfig::preset(name);
    ViT vit(c, &gen);
    CHECK(vit.num_parameters() == vit_params(c));
    ViTOutput out = vit.forward(randn({2, c.channels, c.image_size, c.image_size}));
    CHECK(out.tokens.shape() == Shape{2, 1 + c.num_patches(), c.dim});
    CHECK(out.pooled.shape() == Shape{2, c.dim});
    CHECK(same_values(out.pooled, select(out.tokens, 1, 0)));  // "cls" pooling
  }
  ViTConfig c = ViTConfig::preset("vit-micro");
  CHECK(c.num_patches() == 4);
  ViT vit(c, &gen);
  auto names = names_of(vit);
  CHECK(std::vector<std::string>(names.begin(), names.begin() + 5) ==
        std::vector<std::string>{"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
                                 "encoder.layers.0.ln_1.weight"});
  CHECK(names.back() == "encoder.ln_f.bias");
  CHECK(vit.cls_token.shape() == Shape{1, 1, 16});
  CHECK(vit.pos_embed.shape() == Shape{1, 5, 16});
  auto maps = vit.attention_maps(randn({2, 3, 8, 8}));
  REQUIRE(maps.size() == 1);
  CHECK(maps[0].shape() == Shape{2, 5, 5});
  CHECK(allclose(sum(maps[0], {-1}), ones({2, 5}), 1e-5, 1e-5));

  // Mean pooling: the average of the patch tokens (not the CLS token), by loops.
  c.pool = "mean";
  ViT mean_vit(c, &gen);
  ViTOutput out = mean_vit.forward(randn({3, 3, 8, 8}));
  auto t = out.tokens.to_vector<double>();
  std::vector<double> expected;
  for (int64_t b = 0; b < 3; ++b)
    for (int64_t d = 0; d < 16; ++d) {
      double s = 0;
      for (int64_t n = 1; n < 5; ++n) s += t[(b * 5 + n) * 16 + d];
      expected.push_back(s / 4);
    }
  CHECK(allclose(out.pooled, from_vector(expected, {3, 16}).to(DType::f32), 1e-6, 1e-6));
  CHECK_THROWS_WITH_AS(vit.forward(randn({2, 3, 16, 16})), doctest::Contains("ViT: images [2,3,16,16] must be [B,3,8,8]"),
                       Error);
}

TEST_CASE("ViT: forward equals [cls , patches] + positions through the encoder") {
  Generator gen(2);
  for (const std::string pos : {"learned", "sincos"}) {
    CAPTURE(pos);
    ViTConfig c = ViTConfig::preset("vit-micro");
    c.pos = pos;
    ViT vit(c, &gen);
    Tensor img = randn({2, 3, 8, 8});
    Tensor x = cat({vit.cls_token.expand({2, 1, 16}), vit.patch_embed->forward(img)}, 1) + vit.pos_embed;
    CHECK(same_values(vit.forward(img).tokens, vit.encoder->forward(x)));
    if (pos == "sincos") {
      // A buffer, not a parameter: the CLS row is zero and the rest is the 2-D table.
      CHECK(vit.named_buffers().size() == 1);
      CHECK(vit.num_parameters() == vit_params(c) - 5 * 16);
      CHECK(same_values(vit.pos_embed.view({5, 16}).slice(0, 0, 1), zeros({1, 16})));
      CHECK(allclose(vit.pos_embed.view({5, 16}).slice(0, 1, 5), sinusoidal_2d(2, 2, 16), 0, 0));
    }
  }
}

TEST_CASE("ViT: initialisation as timm, drawn from the generator given") {
  Generator g1(7), g2(7), g3(8);
  ViTConfig c = ViTConfig::preset("vit-tiny");
  c.depth = 1;
  ViT a(c, &g1), b(c, &g2), other(c, &g3);
  for (auto& [name, p] : a.named_parameters()) {
    CAPTURE(name);
    auto v = p.to_vector<double>();
    double mx = 0, sq = 0;
    for (double x : v) mx = std::max(mx, std::abs(x)), sq += x * x;
    const double sd = std::sqrt(sq / v.size());
    const bool is_bias = name.ends_with(".bias");
    if (name.find("ln_") != std::string::npos) {
      CHECK(same_values(p, is_bias ? zeros(p.shape()) : ones(p.shape())));
    } else if (name.starts_with("patch_embed")) {  // PyTorch's Conv2d default, U(±1/√48)
      CHECK(mx <= 1 / std::sqrt(48.0) + 1e-7);
      CHECK(mx > 0.5 / std::sqrt(48.0));
    } else if (is_bias) {
      CHECK(same_values(p, zeros(p.shape())));
    } else {  // trunc_normal(0.02) cut at ±2σ: the std of N(0,1) cut at ±2 is 0.8796
      CHECK(mx <= 0.04 + 1e-7);
      if (v.size() > 1000) CHECK(sd == doctest::Approx(0.02 * 0.8796).epsilon(0.05));
    }
  }
  for (size_t i = 0; i < a.parameters().size(); ++i) {
    CHECK(same_values(a.parameters()[i], b.parameters()[i]));
    if (a.parameters()[i].numel() > 64 && !names_of(a)[i].ends_with("bias") && names_of(a)[i].find("ln_") == std::string::npos)
      CHECK(!allclose(a.parameters()[i], other.parameters()[i]));
  }
}

TEST_CASE("ViT-S/16 and ViT-B/16: the published parameter counts (without a head)") {
  ViTConfig s = ViTConfig::preset("vit-s16"), b = ViTConfig::preset("vit-b16");
  // timm's vit_small_patch16_224 has 22,050,664 parameters with its 1000-class head (384·1000 + 1000).
  CHECK(vit_params(s) == 22050664 - 385000);
  // timm's vit_base_patch16_224 with num_classes=0: 85,798,656 (patch embed, cls, pos, 12 blocks, final norm).
  CHECK(vit_params(b) == 85798656);
  // Building one (the larger) is enough to check the formula against the model: it takes a while.
  ViT vit(b);
  CHECK(vit.num_parameters() == 85798656);
  CHECK(vit.pos_embed.shape() == Shape{1, 197, 768});
  CHECK(vit.encoder->layers->size() == 12);
  CHECK(vit.encoder->layers->begin()->get()->mlp->fc1->weight.shape() == Shape{3072, 768});
}

// ---------------------------------------------------------------------------------------------
// Text encoder

TEST_CASE("TextEncoder: shapes of the small presets, names, [CLS] pooling, the embedding sum") {
  Generator gen(3);
  for (const std::string name : {"text-micro", "text-tiny"}) {
    CAPTURE(name);
    TextEncoderConfig c = TextEncoderConfig::preset(name);
    TextEncoder enc(c, &gen);
    CHECK(enc.num_parameters() == text_params(c));
    std::vector<std::vector<int>> rows(2, std::vector<int>(c.max_len, 1));
    for (int64_t i = c.max_len - 3; i < c.max_len; ++i) rows[1][i] = 0;  // the second text is shorter
    Tensor mask = make_mask(rows);
    TextOutput out = enc.forward(random_ids(mask, c.vocab_size), mask);
    CHECK(out.tokens.shape() == Shape{2, c.max_len, c.dim});
    CHECK(out.pooled.shape() == Shape{2, c.dim});
    CHECK(same_values(out.pooled, select(out.tokens, 1, 0)));
  }
  TextEncoder enc(TextEncoderConfig::preset("text-micro"), &gen);
  auto names = names_of(enc);
  CHECK(std::vector<std::string>(names.begin(), names.begin() + 6) ==
        std::vector<std::string>{"word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight",
                                 "embeddings_ln.weight", "embeddings_ln.bias", "encoder.layers.0.ln_1.weight"});
  // The embedding sum, by gathering rows of the tables by hand.
  Tensor ids = make_ids({{1, 5, 7, 0}, {1, 9, 0, 0}});
  Tensor types = make_ids({{0, 0, 1, 1}, {0, 1, 1, 1}});
  std::vector<double> sum_rows;
  auto W = enc.word_embeddings->weight.to_vector<double>(), P = enc.position_embeddings->weight.to_vector<double>(),
       T = enc.token_type_embeddings->weight.to_vector<double>();
  auto idv = ids.to_vector<int64_t>(), tv = types.to_vector<int64_t>();
  for (int64_t i = 0; i < 8; ++i)
    for (int64_t d = 0; d < 16; ++d) sum_rows.push_back(W[idv[i] * 16 + d] + P[(i % 4) * 16 + d] + T[tv[i] * 16 + d]);
  Tensor expected = enc.embeddings_ln->forward(from_vector(sum_rows, {2, 4, 16}).to(DType::f32));
  CHECK(allclose(enc.embed(ids, types), expected, 1e-5, 1e-6));
  // Without a mask, the mask is ids != pad_id; without types, all types are 0.
  Tensor mask = make_mask({{1, 1, 1, 0}, {1, 1, 0, 0}});
  CHECK(same_values(enc.key_mask(ids, Tensor()), mask));
  CHECK(same_values(enc.forward(ids).tokens, enc.forward(ids, mask, zeros({2, 4}, {.dtype = DType::i64})).tokens));
  CHECK(!allclose(enc.forward(ids, mask, types).pooled, enc.forward(ids, mask).pooled));
  CHECK_THROWS_WITH_AS(enc.forward(make_ids({{1, 2, 3, 4, 5, 6, 7, 8, 9}})),
                       doctest::Contains("ids [1,9] have 9 tokens; the model takes 1 to max_len 8"), Error);
  CHECK_THROWS_WITH_AS(enc.forward(ids, ones({2, 4})), doctest::Contains("attention_mask must be bool"), Error);
  CHECK_THROWS_WITH_AS(enc.forward(randn({2, 4})), doctest::Contains("ids must be i64 or i32, got f32 [2,4]"), Error);
}

TEST_CASE("BERT-base shapes: the published parameter count, less the pooler, plus the final LayerNorm") {
  TextEncoderConfig c = TextEncoderConfig::preset("bert-base");
  // Hugging Face's bert-base-uncased BertModel: 109,482,240 parameters, of which the pooler
  // (Linear 768 -> 768) is 590,592. This encoder has no pooler but a final LayerNorm (pre-LN).
  const int64_t expected = 109482240 - 590592 + 2 * 768;
  CHECK(text_params(c) == expected);
  TextEncoder enc(c);
  CHECK(enc.num_parameters() == expected);
  CHECK(enc.word_embeddings->weight.shape() == Shape{30522, 768});
}

TEST_CASE("padding: what padded positions hold does not change the pooled outputs") {
  Generator gen(4);
  Tensor mask = make_mask({{1, 1, 1, 1, 0, 0, 0, 0}, {1, 1, 1, 1, 1, 1, 0, 0}});
  Tensor ids = random_ids(mask, 50, &gen);
  // Same real tokens; the padded positions hold other (non-pad) words.
  Tensor other = where(mask, ids, randint(2, 50, {2, 8}, {.dtype = DType::i64}, &gen));
  REQUIRE(!same_values(ids, other));
  Tensor img = randn({2, 3, 8, 8}, {}, &gen);

  TextEncoder enc(TextEncoderConfig::preset("text-micro"), &gen);
  TextOutput a = enc.forward(ids, mask), b = enc.forward(other, mask);
  CHECK(allclose(a.pooled, b.pooled, 1e-6, 1e-6));
  CHECK(allclose(a.tokens.slice(1, 0, 4), b.tokens.slice(1, 0, 4), 1e-6, 1e-6));
  // Without the mask they are real tokens and do matter (the test is not vacuous).
  CHECK(!allclose(enc.forward(ids, ones({2, 8}, {.dtype = DType::boolean})).pooled,
                  enc.forward(other, ones({2, 8}, {.dtype = DType::boolean})).pooled, 1e-4, 1e-4));

  for (const std::string name : {"vilt-micro", "albef-micro", "clip-micro", "pooled-micro"}) {
    CAPTURE(name);
    FusionModel m = micro(name);
    FusionOutput x = m.forward(img, ids, mask), y = m.forward(img, other, mask);
    CHECK(allclose(x.text_pooled.defined() ? x.text_pooled : x.fused_pooled,
                   y.text_pooled.defined() ? y.text_pooled : y.fused_pooled, 1e-6, 1e-6));
    if (x.fused_pooled.defined()) CHECK(allclose(x.fused_pooled, y.fused_pooled, 1e-6, 1e-6));
    if (x.text_emb.defined()) CHECK(allclose(x.text_emb, y.text_emb, 1e-6, 1e-6));
  }
}

// ---------------------------------------------------------------------------------------------
// Fusion

TEST_CASE("l2_normalize: unit rows by the formula, a zero row stays zero") {
  Tensor x = tensor({{3, 4}, {0, 0}, {-1, 2}});
  Tensor y = l2_normalize(x);
  CHECK(allclose(y, tensor({{0.6, 0.8}, {0, 0}, {-1 / std::sqrt(5.0), 2 / std::sqrt(5.0)}}), 1e-6, 1e-7));
}

TEST_CASE("DualEncoder (CLIP): unit embeddings, the temperature, clip_loss, clamping at 100") {
  Generator gen(5);
  DualEncoder clip(DualEncoderConfig::preset("clip-micro"), &gen);
  CHECK(clip.logit_scale.dim() == 0);
  CHECK(clip.logit_scale.item() == doctest::Approx(std::log(1 / 0.07)).epsilon(1e-6));
  CHECK(clip.image_proj->weight.shape() == Shape{8, 16});
  CHECK(!clip.image_proj->bias.defined());
  Tensor mask = make_mask({{1, 1, 1, 0, 0, 0, 0, 0}, {1, 1, 1, 1, 1, 0, 0, 0}, {1, 1, 0, 0, 0, 0, 0, 0}});
  Tensor ids = random_ids(mask, 50, &gen), img = randn({3, 3, 8, 8}, {}, &gen);
  DualOutput out = clip.forward(img, ids, mask);
  REQUIRE(out.image_emb.shape() == Shape{3, 8});
  REQUIRE(out.text_emb.shape() == Shape{3, 8});
  CHECK(allclose(norm(out.image_emb, 2, {1}), ones({3}), 1e-5, 1e-6));
  CHECK(allclose(norm(out.text_emb, 2, {1}), ones({3}), 1e-5, 1e-6));
  // The embeddings are the normalised projections of the pooled vectors.
  Tensor proj = matmul(out.image.pooled, clip.image_proj->weight.transpose(0, 1));
  CHECK(allclose(out.image_emb, proj / norm(proj, 2, {1}, true), 1e-5, 1e-6));
  // clip_loss takes them as they are: the loss by its formula, with the temperature 1/0.07.
  Tensor loss = clip_loss(out.image_emb, out.text_emb, out.logit_scale);
  auto sim = (matmul(out.image_emb, out.text_emb.transpose(0, 1)) / 0.07).to(DType::f64).to_vector<double>();
  double expected = 0;
  for (int i = 0; i < 3; ++i) {
    double row = 0, col = 0;
    for (int j = 0; j < 3; ++j) row += std::exp(sim[i * 3 + j]), col += std::exp(sim[j * 3 + i]);
    expected += (std::log(row) - sim[i * 3 + i] + std::log(col) - sim[i * 3 + i]) / 6;
  }
  CHECK(loss.item() == doctest::Approx(expected).epsilon(1e-5));
  loss.backward();
  CHECK(clip.logit_scale.grad().defined());
  CHECK(clip.logit_scale.grad().item() != 0);

  // Above ln 100 the scale is clamped and its gradient stops.
  {
    NoGradGuard no_grad;
    Tensor(clip.logit_scale).detach().fill_(5.0);
  }
  clip.zero_grad();
  out = clip.forward(img, ids, mask);
  CHECK(out.logit_scale.item() == doctest::Approx(std::log(100.0)).epsilon(1e-6));
  clip_loss(out.image_emb, out.text_emb, out.logit_scale).backward();
  CHECK(clip.logit_scale.grad().item() == 0);
  CHECK(clip.image_proj->weight.grad().defined());
}

TEST_CASE("SingleStreamEncoder (ViLT): the joint sequence, its key mask and the outputs") {
  Generator gen(6);
  SingleStreamConfig c = SingleStreamConfig::preset("vilt-micro");
  SingleStreamEncoder m(c, &gen);
  CHECK(m.modality_embeddings.shape() == Shape{2, 16});
  REQUIRE(m.learned_pos != nullptr);
  CHECK(m.learned_pos->weight.shape() == Shape{4, 16});
  Tensor mask = make_mask({{1, 1, 1, 0, 0}, {1, 1, 1, 1, 1}});
  Tensor ids = random_ids(mask, 50, &gen), img = randn({2, 3, 8, 8}, {}, &gen);
  SingleStreamOutput out = m.forward(img, ids, mask);
  CHECK(out.tokens.shape() == Shape{2, 9, 16});
  CHECK(same_values(out.text_tokens, out.tokens.slice(1, 0, 5)));
  CHECK(same_values(out.image_tokens, out.tokens.slice(1, 5, 9)));
  CHECK(same_values(out.pooled, select(out.tokens, 1, 0)));
  // Re-composed from the parts: text + type row 0, image + type row 1, one encoder.
  Tensor text = m.embeddings_ln->forward(m.word_embeddings->forward(ids) + m.position_embeddings->forward(arange(5))) +
                select(m.modality_embeddings, 0, 0);
  Tensor image = m.patch_embed->forward(img) + m.learned_pos->weight + select(m.modality_embeddings, 0, 1);
  Tensor joint_mask = make_mask({{1, 1, 1, 0, 0, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 1, 1}});
  CHECK(allclose(out.tokens, m.encoder->forward(cat({text, image}, 1), joint_mask), 1e-6, 1e-6));
  // Image tokens are attended to: changing the image changes the text's [CLS].
  CHECK(!allclose(m.forward(randn({2, 3, 8, 8}), ids, mask).pooled, out.pooled, 1e-4, 1e-4));
  auto maps = m.attention_maps(img, ids, mask);
  REQUIRE(maps.size() == 1);
  CHECK(maps[0].shape() == Shape{2, 9, 9});
  // No query attends to the two padded keys of the first sequence.
  CHECK(allclose(maps[0].slice(0, 0, 1).slice(2, 3, 5), zeros({1, 9, 2}), 0, 0));
  CHECK_THROWS_WITH_AS(m.forward(randn({3, 3, 8, 8}), ids, mask), doctest::Contains("3 images but 2 texts"), Error);

  // Fixed 2-D sinusoidal positions: a buffer under the same name, in a FusionModel too.
  FusionModelConfig fc = FusionModelConfig::preset("vilt-micro");
  fc.single.pos = "sincos";
  FusionModel sincos(fc, &gen);
  REQUIRE(sincos.named_buffers().size() == 1);
  CHECK(sincos.named_buffers()[0].first == "image_pos_embed.weight");
  CHECK(same_values(sincos.single->fixed_pos->weight, sinusoidal_2d(2, 2, 16)));
  CHECK(sincos.num_parameters() == m.num_parameters() - 4 * 16);
  FusionOutput o32 = sincos.forward(img, ids, mask);
  sincos.to(DType::f64);  // the buffer converts with the parameters: one handle
  CHECK(sincos.single->fixed_pos->weight.dtype() == DType::f64);
  FusionOutput o64 = sincos.forward(img.to(DType::f64), ids, mask);
  CHECK(o64.fused_pooled.dtype() == DType::f64);
  CHECK(allclose(o64.fused_pooled.to(DType::f32), o32.fused_pooled, 1e-4, 1e-5));
}

TEST_CASE("CrossAttentionFusion (ALBEF): layers of different widths, fused CLS, cross-attention maps") {
  Generator gen(7);
  CrossAttentionFusion f({.dim = 16, .image_dim = 12, .depth = 2, .heads = 2}, &gen);
  auto names = names_of(f);
  CHECK(names.front() == "layers.0.ln_1.weight");
  CHECK(names.back() == "ln_f.bias");
  CHECK(f.layers->size() == 2);
  CHECK((*f.layers)[1].cross_attn->k_proj->weight.shape() == Shape{16, 12});
  Tensor text = randn({2, 6, 16}, {}, &gen), image = randn({2, 5, 12}, {}, &gen);
  Tensor mask = make_mask({{1, 1, 1, 1, 0, 0}, {1, 1, 1, 1, 1, 1}});
  CrossFusionOutput out = f.forward(text, mask, image, Tensor(), true);
  CHECK(out.tokens.shape() == Shape{2, 6, 16});
  CHECK(same_values(out.pooled, select(out.tokens, 1, 0)));
  // The layers by hand, every pad row computed; the fusion skips the pads (skip_padding): the
  // same real rows, zeros at the pads.
  Tensor real = unsqueeze(mask.to(DType::f32), -1);
  Tensor h = (*f.layers)[0].forward(text, image, mask);
  CHECK(allclose(out.tokens, f.ln_f->forward((*f.layers)[1].forward(h, image, mask)) * real, 1e-6, 1e-6));
  REQUIRE(out.cross_attention.shape() == Shape{2, 6, 5});
  CHECK(allclose(sum(out.cross_attention, {-1}), ones({2, 6}), 1e-5, 1e-5));  // probabilities over image tokens
  const nn::CrossAttentionLayer& last = (*f.layers)[1];
  Tensor by_hand = last.cross_attn->attention_weights(
      last.ln_2->forward(h + last.self_attn->forward(last.ln_1->forward(h), last.ln_1->forward(h), mask)), image);
  CHECK(allclose(out.cross_attention * real, by_hand * real, 1e-5, 1e-6));
  CHECK(!f.forward(text, mask, image).cross_attention.defined());  // only when asked
  CHECK_THROWS_WITH_AS(f.forward(text, mask, randn({2, 5, 16})),
                       doctest::Contains("image_tokens [2,5,16] must be [B,N,12]"), Error);
}

TEST_CASE("PooledFusion: concat, add, mul and gated by their formulas") {
  Generator gen(8);
  Tensor a = randn({3, 4}, {}, &gen), b = randn({3, 4}, {}, &gen);
  auto av = a.to_vector<double>(), bv = b.to_vector<double>();
  for (const std::string mode : {"concat", "add", "mul", "gated"}) {
    CAPTURE(mode);
    PooledFusion f({.mode = mode, .dim = 4}, &gen);
    Tensor y = f.forward(a, b);
    REQUIRE(y.shape() == Shape{3, 4});
    std::vector<double> expected;
    for (int i = 0; i < 3; ++i)
      for (int d = 0; d < 4; ++d) {
        auto affine = [&](const Linear& l) {  // row d of W·[a_i;b_i] + bias
          auto w = l.weight.to_vector<double>();
          double s = l.bias.to_vector<double>()[d];
          for (int k = 0; k < 4; ++k) s += w[d * 8 + k] * av[i * 4 + k] + w[d * 8 + 4 + k] * bv[i * 4 + k];
          return s;
        };
        double x = av[i * 4 + d], z = bv[i * 4 + d];
        if (mode == "add") expected.push_back(x + z);
        if (mode == "mul") expected.push_back(x * z);
        if (mode == "concat") expected.push_back(affine(*f.proj));
        if (mode == "gated") {
          double g = 1 / (1 + std::exp(-affine(*f.gate)));
          expected.push_back(g * x + (1 - g) * z);
        }
      }
    CHECK(allclose(y, from_vector(expected, {3, 4}).to(DType::f32), 1e-5, 1e-6));
    CHECK(f.num_parameters() == (mode == "concat" || mode == "gated" ? 8 * 4 + 4 : 0));
  }
  PooledFusion f({.mode = "add", .dim = 4});
  CHECK_THROWS_WITH_AS(f.forward(a, randn({3, 5})), doctest::Contains("a [3,4] and b [3,5] must both be [B,4]"), Error);
  CHECK_THROWS_WITH_AS(PooledFusion({.mode = "max", .dim = 4}),
                       doctest::Contains("mode must be one of concat, add, mul, gated, got 'max'"), Error);
}

TEST_CASE("FusionModel: every fusion preset builds and gives the outputs of its family") {
  Tensor img_micro = randn({2, 3, 8, 8}), img_tiny = randn({2, 3, 32, 32});
  for (const std::string& name : FusionModelConfig::preset_names()) {
    CAPTURE(name);
    FusionModelConfig c = FusionModelConfig::preset(name);
    Generator gen(9);
    FusionModel m(c, &gen);
    const bool is_micro = name.ends_with("micro");
    const int64_t S = is_micro ? 8 : 32, D = is_micro ? 16 : 128, N = is_micro ? 4 : 64, E = is_micro ? 8 : 64;
    std::vector<std::vector<int>> rows(2, std::vector<int>(S, 1));
    rows[1][S - 1] = rows[1][S - 2] = 0;
    Tensor mask = make_mask(rows);
    Tensor ids = random_ids(mask, is_micro ? 50 : 1000);
    FusionOutput out = m.forward(is_micro ? img_micro : img_tiny, ids, mask, Tensor(), true);
    CHECK(same_values(out.text_mask, mask));
    CHECK(out.text_tokens.shape() == Shape{2, S, D});
    if (c.family == "single") {
      CHECK(out.image_tokens.shape() == Shape{2, N, D});
      CHECK(out.fused_tokens.shape() == Shape{2, S + N, D});
      CHECK(out.fused_pooled.shape() == Shape{2, D});
      CHECK(!out.image_emb.defined());
      continue;
    }
    CHECK(out.image_tokens.shape() == Shape{2, 1 + N, D});
    CHECK(out.image_pooled.shape() == Shape{2, D});
    CHECK(out.text_pooled.shape() == Shape{2, D});
    CHECK(out.image_emb.defined() == (c.family != "pooled"));
    if (c.family != "pooled") {
      CHECK(out.image_emb.shape() == Shape{2, E});
      CHECK(out.text_emb.shape() == Shape{2, E});
      CHECK(out.logit_scale.dim() == 0);
    }
    if (c.family == "dual") CHECK(!out.fused_pooled.defined());
    if (c.family == "pooled") CHECK(out.fused_pooled.shape() == Shape{2, E});
    if (c.family == "cross") {
      CHECK(out.fused_tokens.shape() == Shape{2, S, D});
      CHECK(out.fused_pooled.shape() == Shape{2, D});
      CHECK(out.cross_attention.shape() == Shape{2, S, 1 + N});
      // fuse() over the unimodal tokens is the same fusion (for matching on other pairs).
      CHECK(same_values(m.fuse(out.text_tokens, mask, out.image_tokens).pooled, out.fused_pooled));
    } else {
      CHECK_THROWS_WITH_AS(m.fuse(out.text_tokens, mask, out.image_tokens), doctest::Contains("needs the family 'cross'"),
                           Error);
    }
  }
}

TEST_CASE("FusionModel: the parameter names are those of its parts, without a prefix") {
  Generator g1(10), g2(10);
  FusionModel m(FusionModelConfig::preset("clip-micro"), &g1);
  DualEncoder d(DualEncoderConfig::preset("clip-micro"), &g2);
  CHECK(names_of(m) == names_of(d));
  CHECK(m.load_state_dict(d.state_dict()).ok());
  auto names = names_of(m);
  CHECK(std::count(names.begin(), names.end(), "logit_scale") == 1);
  CHECK(std::count(names.begin(), names.end(), "image_proj.weight") == 1);

  FusionModel albef = micro("albef-micro");
  auto an = names_of(albef);
  CHECK(std::count(an.begin(), an.end(), "fusion.layers.0.cross_attn.q_proj.weight") == 1);
  CHECK(std::count(an.begin(), an.end(), "vision.cls_token") == 1);
  CHECK(std::count(an.begin(), an.end(), "text.word_embeddings.weight") == 1);
  FusionModel pooled = micro("pooled-micro");
  auto pn = names_of(pooled);
  CHECK(std::count(pn.begin(), pn.end(), "logit_scale") == 0);
  CHECK(std::count(pn.begin(), pn.end(), "fusion.gate.weight") == 1);
  FusionModel vilt = micro("vilt-micro");
  CHECK(names_of(vilt) == names_of(*vilt.single));
  CHECK(vilt.num_parameters() == vilt.single->num_parameters());
  // train()/eval() reach the adopted parts.
  vilt.eval();
  CHECK(!vilt.single->encoder->is_training());
}

// ---------------------------------------------------------------------------------------------
// Configs

TEST_CASE("configs: every preset goes through JSON and back unchanged") {
  for (const std::string& name : preset_names()) {
    CAPTURE(name);
    json j = preset_config(name);
    json reparsed = json::parse(j.dump());
    const std::string family = j.at("family");
    if (family == "vit") {
      CHECK(ViTConfig::from_json(reparsed) == ViTConfig::preset(name));
    } else if (family == "text") {
      CHECK(TextEncoderConfig::from_json(reparsed) == TextEncoderConfig::preset(name));
    } else if (family == "decoder") {
      CHECK(CaptionDecoderConfig::from_json(reparsed).to_json() == j);
    } else if (family == "vlm") {
      CHECK(VLMConfig::from_json(reparsed).to_json() == j);
    } else {
      FusionModelConfig c = FusionModelConfig::from_json(reparsed);
      CHECK(c == FusionModelConfig::preset(name));
      CHECK(c.to_json() == j);
      CHECK(c.family == family);
    }
  }
  CHECK(preset_names().size() ==
        5 + 3 + 8 + CaptionDecoderConfig::preset_names().size() + VLMConfig::preset_names().size());
  CHECK(DualEncoderConfig::from_json(DualEncoderConfig::preset("clip-tiny").to_json()) ==
        DualEncoderConfig::preset("clip-tiny"));
  // Left-out keys keep their defaults; fusion widths follow the encoders.
  FusionModelConfig c = FusionModelConfig::from_json(
      {{"family", "cross"}, {"vision", {{"dim", 32}, {"heads", 2}}}, {"text", {{"dim", 24}, {"heads", 3}}}});
  CHECK(c.fusion.dim == 24);
  CHECK(c.fusion.image_dim == 32);
  CHECK(c.dual.vision.depth == ViTConfig{}.depth);
  FusionModel m(c);
  CHECK(m.fusion->config.image_dim == 32);
  ViTConfig v = ViTConfig::from_json({{"dim", 4.0}, {"heads", 2}, {"pool", "mean"}});
  CHECK(v.dim == 4);
  CHECK(v.pool == "mean");
}

TEST_CASE("configs: unknown keys, wrong types, bad values and unknown presets are clear errors") {
  CHECK_THROWS_WITH_AS(ViTConfig::from_json({{"dimm", 16}}),
                       doctest::Contains("ViTConfig: unknown key 'dimm' (valid keys: family, image_size, patch_size"),
                       Error);
  CHECK_THROWS_WITH_AS(TextEncoderConfig::from_json({{"vocab", 16}}),
                       doctest::Contains("TextEncoderConfig: unknown key 'vocab'"), Error);
  CHECK_THROWS_WITH_AS(FusionModelConfig::from_json({{"family", "dual"}, {"vision", {{"patch", 4}}}}),
                       doctest::Contains("ViTConfig: unknown key 'patch'"), Error);
  CHECK_THROWS_WITH_AS(FusionModelConfig::from_json({{"family", "dual"}, {"fusion", {{"depth", 1}}}}),
                       doctest::Contains("FusionModelConfig (dual): unknown key 'fusion'"), Error);
  CHECK_THROWS_WITH_AS(FusionModelConfig::from_json({{"family", "cross"}, {"fusion", {{"mode", "add"}}}}),
                       doctest::Contains("CrossAttentionFusionConfig: unknown key 'mode'"), Error);
  CHECK_THROWS_WITH_AS(FusionModelConfig::from_json({{"family", "single"}, {"vision", json::object()}}),
                       doctest::Contains("SingleStreamConfig: unknown key 'vision'"), Error);
  CHECK_THROWS_WITH_AS(ViTConfig::from_json({{"dim", "big"}}),
                       doctest::Contains("ViTConfig: key 'dim' must be an integer, got string \"big\""), Error);
  CHECK_THROWS_WITH_AS(ViTConfig::from_json({{"dim", 4.5}}), doctest::Contains("key 'dim' must be an integer"), Error);
  CHECK_THROWS_WITH_AS(ViTConfig::from_json({{"family", "text"}}),
                       doctest::Contains("ViTConfig: family 'text' does not match this model (expected 'vit')"), Error);
  CHECK_THROWS_WITH_AS(ViTConfig::from_json({{"dim", 30}, {"heads", 4}}),
                       doctest::Contains("ViTConfig: dim 30 is not divisible by heads 4"), Error);
  CHECK_THROWS_WITH_AS(ViTConfig::from_json({{"pool", "max"}}),
                       doctest::Contains("ViTConfig: pool must be one of cls, mean, got 'max'"), Error);
  CHECK_THROWS_WITH_AS(ViTConfig::from_json(json::array()), doctest::Contains("must be a JSON object, got array"), Error);
  CHECK_THROWS_WITH_AS(FusionModelConfig::from_json({{"family", "late"}}),
                       doctest::Contains("family must be one of dual, single, cross, pooled, vision, got 'late'"), Error);
  CHECK_THROWS_WITH_AS(
      FusionModelConfig::from_json({{"family", "cross"}, {"fusion", {{"dim", 64}}}}),
      doctest::Contains("fusion dim 64 and image_dim 128 must equal the text dim 128 and the vision dim 128"), Error);
  CHECK_THROWS_WITH_AS(preset_config("vit-huge"),
                       doctest::Contains("unknown model preset 'vit-huge' (valid: vit-micro, vit-tiny"), Error);
  CHECK_THROWS_WITH_AS(build_model({{"family", "resnet"}}), doctest::Contains("build_model: unknown family 'resnet'"),
                       Error);
  CHECK_THROWS_WITH_AS(build_model({{"dim", 3}}), doctest::Contains("needs a \"family\" key"), Error);
}

namespace {

// A config through its JSON text and back gives the same config (so every field was both
// written and read) and the same JSON; with one key too many the JSON is refused, and the
// message lists the valid keys in their order.
template <class Config>
void check_json(const Config& c, const std::string& what, const std::string& valid_keys) {
  json j = c.to_json();
  const Config back = Config::from_json(json::parse(j.dump()));
  CHECK(back == c);
  CHECK(back.to_json() == j);
  j["zzz"] = 1;
  const std::string message = what + ": unknown key 'zzz' (valid keys: " + valid_keys + ")";
  CHECK_THROWS_WITH_AS(Config::from_json(j), doctest::Contains(message.c_str()), Error);
}

}  // namespace

TEST_CASE("configs: every field of every config differs from its default and survives JSON, unknown keys list all") {
  ViTConfig v;
  v.image_size = 16, v.patch_size = 8, v.channels = 1, v.dim = 24, v.depth = 2, v.heads = 3, v.mlp_ratio = 2.5;
  v.dropout = 0.1, v.attn_dropout = 0.2, v.pool = "mean", v.pos = "sincos", v.stem = "conv", v.eps = 1e-5;
  check_json(v, "ViTConfig",
             "family, image_size, patch_size, channels, dim, depth, heads, mlp_ratio, dropout, attn_dropout, pool, "
             "pos, stem, eps");

  TextEncoderConfig t;
  t.vocab_size = 77, t.max_len = 9, t.type_vocab_size = 3, t.dim = 12, t.depth = 1, t.heads = 2, t.mlp_ratio = 3.0;
  t.dropout = 0.05, t.attn_dropout = 0.1, t.eps = 1e-7, t.pad_id = 5, t.pool = "mean", t.skip_padding = false;
  check_json(t, "TextEncoderConfig",
             "family, vocab_size, max_len, type_vocab_size, dim, depth, heads, mlp_ratio, dropout, attn_dropout, eps, "
             "pad_id, pool, skip_padding");

  CaptionDecoderConfig d;
  d.vocab_size = 60, d.max_len = 7, d.dim = 8, d.depth = 1, d.heads = 2, d.mlp_ratio = 2.0, d.dropout = 0.1;
  d.attn_dropout = 0.15, d.memory_dim = 12, d.bos_id = 4, d.eos_id = 5, d.pad_id = 1, d.tie_word_embeddings = true;
  check_json(d, "CaptionDecoderConfig",
             "family, vocab_size, max_len, dim, depth, heads, mlp_ratio, dropout, attn_dropout, memory_dim, bos_id, "
             "eos_id, pad_id, tie_word_embeddings");

  SingleStreamConfig s;
  s.image_size = 16, s.patch_size = 8, s.channels = 1, s.vocab_size = 40, s.max_len = 6, s.dim = 8, s.depth = 1;
  s.heads = 2, s.mlp_ratio = 2.0, s.dropout = 0.1, s.attn_dropout = 0.2, s.eps = 1e-5, s.pad_id = 3, s.pos = "sincos";
  check_json(s, "SingleStreamConfig",
             "family, image_size, patch_size, channels, vocab_size, max_len, dim, depth, heads, mlp_ratio, dropout, "
             "attn_dropout, eps, pad_id, pos");

  CrossAttentionFusionConfig f;
  f.dim = 12, f.image_dim = 24, f.depth = 1, f.heads = 3, f.mlp_ratio = 2.0, f.dropout = 0.1, f.attn_dropout = 0.2;
  f.eps = 1e-5, f.pool = "mean", f.image_pos = true, f.gated_mlp = true, f.text_pos = true;
  f.causal = true, f.init_std = 0.05, f.qk_init_std = 0.125, f.skip_padding = false;
  check_json(f, "CrossAttentionFusionConfig",
             "dim, image_dim, depth, heads, mlp_ratio, gated_mlp, dropout, attn_dropout, eps, pool, image_pos, text_pos, "
             "causal, init_std, qk_init_std, skip_padding");

  PooledFusionConfig p{.mode = "mul", .dim = 6};
  check_json(p, "PooledFusionConfig", "mode, dim");

  DualEncoderConfig dual{.vision = v, .text = t, .embed_dim = 6};
  check_json(dual, "DualEncoderConfig", "family, vision, text, embed_dim");

  // The fusion families made of these parts (cross: the fusion widths are the text and vision dims).
  FusionModelConfig cross;
  cross.family = "cross", cross.dual = dual, cross.fusion = f;
  check_json(cross, "FusionModelConfig (cross)", "family, vision, text, embed_dim, fusion");
  FusionModelConfig pooled;
  pooled.family = "pooled", pooled.dual = dual, pooled.pooled = p;
  check_json(pooled, "FusionModelConfig (pooled)", "family, vision, text, embed_dim, fusion");

  // VLMConfig: its own fields, its tokens, and the decoder's fields that follow from both.
  VLMConfig c = VLMConfig::preset("vlm-micro");
  c.fusion.dual.text.pad_id = 5;
  c.tokens = {.pad_id = 5, .unk_id = 9, .cls_id = 6, .sep_id = 7, .mask_id = 8};
  c.num_classes = 5, c.num_answers = 7, c.mlm_prob = 0.3, c.contrastive = "hinge", c.margin = 0.4;
  c.itm_samples = 3;
  c.derive_decoder_fields();
  check_json(c, "VLMConfig",
             "family, fusion, objectives, tokens, decoder, num_classes, num_answers, mlm_prob, contrastive, margin, "
             "itm_samples");
  json bad_tokens = c.to_json();
  bad_tokens["tokens"]["zzz"] = 1;
  CHECK_THROWS_WITH_AS(
      VLMConfig::from_json(bad_tokens),
      doctest::Contains("VLMConfig.tokens: unknown key 'zzz' (valid keys: pad_id, unk_id, cls_id, sep_id, mask_id)"),
      Error);
}

TEST_CASE("configs: attn_dropout is saved, defaults to 0 when left out, is checked, and reaches every attention") {
  // Saved and read back by every config that has a transformer.
  ViTConfig v = ViTConfig::preset("vit-micro");
  v.attn_dropout = 0.1;
  CHECK(v.to_json().at("attn_dropout") == 0.1);
  CHECK(ViTConfig::from_json(v.to_json()) == v);
  TextEncoderConfig t = TextEncoderConfig::preset("text-micro");
  t.attn_dropout = 0.2;
  CHECK(TextEncoderConfig::from_json(t.to_json()) == t);
  SingleStreamConfig s = SingleStreamConfig::preset("vilt-micro");
  s.attn_dropout = 0.3;
  CHECK(SingleStreamConfig::from_json(s.to_json()) == s);
  CrossAttentionFusionConfig f;
  f.attn_dropout = 0.4;
  CHECK(CrossAttentionFusionConfig::from_json(f.to_json()) == f);
  CaptionDecoderConfig d = CaptionDecoderConfig::preset("decoder-micro");
  d.attn_dropout = 0.5;
  CHECK(CaptionDecoderConfig::from_json(d.to_json()).attn_dropout == 0.5);

  // A config written before the key existed loads as before: no attention dropout.
  json old = ViTConfig::preset("vit-micro").to_json();
  old.erase("attn_dropout");
  CHECK(ViTConfig::from_json(old) == ViTConfig::preset("vit-micro"));
  CHECK(ViTConfig::from_json(old).attn_dropout == 0.0);
  json old_decoder = CaptionDecoderConfig::preset("decoder-micro").to_json();
  old_decoder.erase("attn_dropout");
  CHECK(CaptionDecoderConfig::from_json(old_decoder).attn_dropout == 0.0);

  // Unknown keys are still refused, and the list of valid keys names the new one.
  CHECK_THROWS_WITH_AS(ViTConfig::from_json({{"attn_dropot", 0.1}}),
                       doctest::Contains("ViTConfig: unknown key 'attn_dropot' (valid keys: family, image_size"),
                       Error);
  CHECK_THROWS_WITH_AS(ViTConfig::from_json({{"attn_dropot", 0.1}}), doctest::Contains("dropout, attn_dropout"),
                       Error);
  CHECK_THROWS_WITH_AS(ViTConfig::from_json({{"attn_dropout", 1.0}}),
                       doctest::Contains("ViTConfig: attn_dropout must be in [0, 1), got 1"), Error);
  CHECK_THROWS_WITH_AS(TextEncoderConfig::from_json({{"attn_dropout", -0.1}}),
                       doctest::Contains("TextEncoderConfig: attn_dropout must be in [0, 1), got -0.1"), Error);
  CHECK_THROWS_WITH_AS(FusionModelConfig::from_json({{"family", "single"}, {"attn_dropout", 2.0}}),
                       doctest::Contains("SingleStreamConfig: attn_dropout must be in [0, 1), got 2"), Error);
  CHECK_THROWS_WITH_AS(FusionModelConfig::from_json({{"family", "cross"}, {"fusion", {{"attn_dropout", 1.5}}}}),
                       doctest::Contains("CrossAttentionFusionConfig: attn_dropout must be in [0, 1), got 1.5"), Error);
  json bad_decoder = d.to_json();
  bad_decoder["attn_dropout"] = 1.0;
  CHECK_THROWS_WITH_AS(CaptionDecoderConfig::from_json(bad_decoder),
                       doctest::Contains("CaptionDecoderConfig: attn_dropout must be in [0,1), got 1"), Error);

  // The models hand it to every MultiHeadAttention they build.
  ViT vit(v);
  for (const auto& layer : *vit.encoder->layers) CHECK(layer->attn->attn_dropout == 0.1);
  TextEncoder text(t);
  for (const auto& layer : *text.encoder->layers) CHECK(layer->attn->attn_dropout == 0.2);
  SingleStreamEncoder single(s);
  for (const auto& layer : *single.encoder->layers) CHECK(layer->attn->attn_dropout == 0.3);
  f.dim = f.image_dim = 16, f.heads = 2, f.depth = 1;
  CrossAttentionFusion fusion(f);
  for (const auto& layer : *fusion.layers) {
    CHECK(layer->self_attn->attn_dropout == 0.4);
    CHECK(layer->cross_attn->attn_dropout == 0.4);
  }
  CaptionDecoder decoder(d);
  for (const auto& layer : *decoder.layers) {
    CHECK(layer->self_attn->attn_dropout == 0.5);
    CHECK(layer->cross_attn->attn_dropout == 0.5);
  }
}

TEST_CASE("a ViT with attn_dropout: masks differ between training steps, eval is the model without it") {
  ViTConfig c = ViTConfig::preset("vit-micro");
  c.depth = 2;
  manual_seed(31);
  ViT plain(c);
  c.attn_dropout = 0.3;
  manual_seed(31);
  ViT dropped(c);  // the same weights: attn_dropout draws nothing at initialisation
  Tensor img = randn({2, 3, 8, 8});
  Tensor a = dropped.forward(img).pooled, b = dropped.forward(img).pooled;
  CHECK(!allclose(a, b, 1e-4, 1e-4));
  project(a).backward();
  check_every_parameter_has_a_gradient(dropped);
  dropped.eval();
  plain.eval();
  CHECK(dropped.forward(img).pooled.to_vector<double>() == plain.forward(img).pooled.to_vector<double>());
}

TEST_CASE("build_model and mmg inspect: names, shapes and the count of a preset") {
  auto vit = build_model(preset_config("vit-micro"));
  CHECK(vit->type_name() == "ViT");
  CHECK(vit->num_parameters() == vit_params(ViTConfig::preset("vit-micro")));
  CHECK(build_model(preset_config("text-micro"))->type_name() == "TextEncoder");
  CHECK(build_model(preset_config("albef-micro"))->type_name() == "FusionModel");
  std::string report = inspect_report("albef-micro", preset_config("albef-micro").dump());
  CHECK(report.find("FusionModel, family cross") != std::string::npos);
  CHECK(report.find("fusion.layers.0.cross_attn.k_proj.weight") != std::string::npos);
  CHECK(report.find("[16,16]") != std::string::npos);
  CHECK(report.find(fmt::format("{} parameters", build_model(preset_config("albef-micro"))->num_parameters())) !=
        std::string::npos);
  CHECK_THROWS_WITH_AS(inspect_report("x.json", "{not json"), doctest::Contains("x.json is not valid JSON"), Error);
}

// ---------------------------------------------------------------------------------------------
// Gradients

TEST_CASE("gradcheck (f64) of the micro ViT over its images and a few parameters") {
  manual_seed(20);
  ViTConfig c = ViTConfig::preset("vit-micro");
  c.pool = "mean";
  for (const std::string pos : {"learned", "sincos"}) {
    CAPTURE(pos);
    c.pos = pos;
    ViT vit(c);
    std::set<std::string> checked{"cls_token", "patch_embed.proj.bias", "encoder.layers.0.attn.q_proj.weight",
                                  "encoder.layers.0.mlp.fc1.bias", "encoder.ln_f.weight"};
    if (pos == "learned") checked.insert("pos_embed");
    GradcheckOptions opts;
    opts.check = check_flags(vit, 1, checked);
    std::vector<Tensor> inputs = f64_inputs_and_parameters({randn({2, 3, 8, 8})}, vit);
    auto fn = [&](const std::vector<Tensor>& a) {
      bind_parameters(vit, a, 1);
      ViTOutput o = vit.forward(a[0]);
      return cat({o.tokens.reshape({2, -1}), o.pooled}, 1);
    };
    GradcheckResult r = gradcheck(fn, inputs, opts);
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.elements_checked == 384 + 16 + 16 + 256 + 64 + 16 + (pos == "learned" ? 80 : 0));
    CHECK(vit.cls_token.dtype() == DType::f64);  // it really ran in f64
  }
}

// A 3×3, stride-2, padding-1 convolution by its definition, on [B,C,H,W] values (no bias).
static std::vector<double> naive_conv3x3_stride2(const std::vector<double>& x, const std::vector<double>& w, int64_t B,
                                                 int64_t C, int64_t H, int64_t K) {
  const int64_t OH = (H + 1) / 2;
  std::vector<double> out(static_cast<size_t>(B * K * OH * OH), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t oy = 0; oy < OH; ++oy)
        for (int64_t ox = 0; ox < OH; ++ox) {
          double acc = 0;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t ky = 0; ky < 3; ++ky)
              for (int64_t kx = 0; kx < 3; ++kx) {
                const int64_t y = 2 * oy + ky - 1, xx = 2 * ox + kx - 1;
                if (y < 0 || y >= H || xx < 0 || xx >= H) continue;
                acc += w[((k * C + c) * 3 + ky) * 3 + kx] * x[((b * C + c) * H + y) * H + xx];
              }
          out[((b * K + k) * OH + oy) * OH + ox] = acc;
        }
  return out;
}

TEST_CASE("ConvStem: the gather index, the channels, and convolutions by their definition") {
  // 4×4 grid -> 2×2: output (0,0) reads padding at tap (0,0) and input 0 at the centre tap;
  // output (1,1) reads inputs 5 and 15 at its first and last taps.
  std::vector<int64_t> taps = nn::ConvStem::conv3x3_stride2_taps(4, 4);
  REQUIRE(taps.size() == 4 * 9);
  CHECK(taps[0] == 16);
  CHECK(taps[4] == 0);
  CHECK(taps[3 * 9 + 0] == 5);
  CHECK(taps[3 * 9 + 8] == 15);
  CHECK(nn::ConvStem::conv3x3_stride2_taps(7, 7).size() == 16 * 9);  // odd sides round up: 7 -> 4

  Generator gen(12);
  nn::ConvStem stem(8, 4, 3, 32, &gen);  // two convolutions: 8 -> 4 -> 2, channels 16 and 16
  CHECK(stem.channels == std::vector<int64_t>{16, 16});
  CHECK(stem.num_patches == 4);
  std::vector<std::string> names;
  for (const auto& [name, p] : stem.named_parameters()) names.push_back(name);
  CHECK(names == std::vector<std::string>{"convs.0.weight", "convs.1.weight", "norms.0.weight", "norms.0.bias",
                                          "norms.1.weight", "norms.1.bias", "proj.weight", "proj.bias"});
  CHECK(stem.convs->operator[](1).weight.shape() == Shape{16, 16, 3, 3});
  CHECK(nn::ConvStem(32, 8, 3, 64, &gen).channels == std::vector<int64_t>{16, 16, 32});

  // The whole stem by loops: conv, then LayerNorm over channels and GELU, twice, then 1×1.
  stem.to(DType::f64);
  Tensor img = randn({2, 3, 8, 8}, {.dtype = DType::f64}, &gen);
  Tensor x = img;
  int64_t side = 8, c = 3;
  for (size_t i = 0; i < 2; ++i) {
    const Tensor& w = stem.convs->operator[](i).weight;
    const int64_t k = w.size(0);
    std::vector<double> y = naive_conv3x3_stride2(x.to_vector<double>(), w.to_vector<double>(), 2, c, side, k);
    side = (side + 1) / 2, c = k;
    Tensor t = from_vector(y, {2, c, side * side}).permute({0, 2, 1});  // channels last for the norm
    t = gelu(stem.norms->operator[](i).forward(t));
    x = t.permute({0, 2, 1}).contiguous().reshape({2, c, side, side});
  }
  Tensor tokens = linear(x.reshape({2, c, side * side}).permute({0, 2, 1}), stem.proj->weight.view({32, c}),
                         stem.proj->bias);
  CHECK(allclose(stem.forward(img), tokens, 1e-12, 1e-12));
  CHECK_THROWS_WITH_AS(stem.forward(randn({2, 3, 16, 16})), doctest::Contains("ConvStem: images [2,3,16,16]"), Error);
  CHECK_THROWS_WITH_AS(nn::ConvStem(24, 6, 3, 32), doctest::Contains("power of 2"), Error);
}

TEST_CASE("ViT with stem conv: names, JSON, gradcheck (f64) over the images and the stem") {
  manual_seed(21);
  ViTConfig c = ViTConfig::preset("vit-micro");
  c.stem = "conv";
  CHECK(ViTConfig::from_json(c.to_json()).stem == "conv");
  ViTConfig bad = c;
  bad.patch_size = 6, bad.image_size = 12;
  CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("stem 'conv' needs a patch_size that is a power of 2"),
                       Error);
  ViT vit(c);
  CHECK(vit.patch_embed == nullptr);
  const nn::NamedTensors params = vit.named_parameters();
  CHECK(std::any_of(params.begin(), params.end(), [](const auto& p) { return p.first == "stem.convs.0.weight"; }));
  GradcheckOptions opts;
  opts.check = check_flags(vit, 1, {"stem.convs.1.weight", "stem.norms.0.bias", "stem.proj.weight"});
  std::vector<Tensor> inputs = f64_inputs_and_parameters({randn({2, 3, 8, 8})}, vit);
  auto fn = [&](const std::vector<Tensor>& a) {
    bind_parameters(vit, a, 1);
    ViTOutput o = vit.forward(a[0]);
    return cat({o.tokens.reshape({2, -1}), o.pooled}, 1);
  };
  GradcheckResult r = gradcheck(fn, inputs, opts);
  INFO(r.message);
  CHECK(r.ok);
  CHECK(r.elements_checked == 384 + 16 * 16 * 9 + 16 + 16 * 16);
}

TEST_CASE("gradcheck (f64) of the micro text encoder over its embeddings and a few parameters") {
  manual_seed(21);
  TextEncoder enc(TextEncoderConfig::preset("text-micro"));
  Tensor mask = make_mask({{1, 1, 1, 1, 0}, {1, 1, 1, 1, 1}});
  Tensor ids = make_ids({{1, 7, 7, 3, 0}, {1, 4, 9, 2, 8}}), types = make_ids({{0, 0, 1, 1, 1}, {0, 0, 0, 1, 1}});
  GradcheckOptions opts;
  opts.check = check_flags(enc, 0,
                           {"word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight",
                            "embeddings_ln.bias", "encoder.layers.0.attn.v_proj.weight",
                            "encoder.layers.0.mlp.fc2.weight", "encoder.ln_f.bias"});
  auto fn = [&](const std::vector<Tensor>& a) {
    bind_parameters(enc, a, 0);
    TextOutput o = enc.forward(ids, mask, types);
    return cat({o.tokens.slice(1, 0, 4).reshape({2, -1}), o.pooled}, 1);  // the real tokens
  };
  GradcheckResult r = gradcheck(fn, f64_inputs_and_parameters({}, enc), opts);
  INFO(r.message);
  CHECK(r.ok);
  CHECK(r.elements_checked == 50 * 16 + 8 * 16 + 2 * 16 + 16 + 256 + 64 * 16 + 16);
}

TEST_CASE("CrossAttentionFusion with pool mean: the masked mean of the fused text tokens") {
  Generator gen(9);
  CrossAttentionFusion f({.dim = 16, .image_dim = 12, .depth = 1, .heads = 2, .pool = "mean"}, &gen);
  Tensor text = randn({2, 6, 16}, {}, &gen), image = randn({2, 5, 12}, {}, &gen);
  Tensor mask = make_mask({{1, 1, 1, 0, 0, 0}, {1, 1, 1, 1, 1, 1}});
  CrossFusionOutput out = f.forward(text, mask, image);
  REQUIRE(out.pooled.shape() == Shape{2, 16});
  // Row 0 averages its first three tokens only; row 1 all six.
  CHECK(allclose(select(out.pooled, 0, 0), sum(select(out.tokens, 0, 0).slice(0, 0, 3), {0}) / 3.0, 1e-6, 1e-6));
  CHECK(allclose(select(out.pooled, 0, 1), sum(select(out.tokens, 0, 1), {0}) / 6.0, 1e-6, 1e-6));
  // The config round-trips through JSON; an unknown pool is an error naming the choices.
  CHECK(CrossAttentionFusionConfig::from_json(f.config.to_json()).pool == "mean");
  CHECK_THROWS_WITH_AS(CrossAttentionFusionConfig::from_json({{"pool", "max"}}), doctest::Contains("pool"), Error);
}

TEST_CASE("CrossAttentionFusion with gated_mlp: every layer's feed-forward block is GEGLU") {
  Generator gen(12);
  CrossAttentionFusion f({.dim = 16, .image_dim = 12, .depth = 2, .heads = 2, .mlp_ratio = 2.0, .gated_mlp = true},
                         &gen);
  for (size_t i = 0; i < f.layers->size(); ++i) {
    CHECK((*f.layers)[i].mlp->gated);
    CHECK((*f.layers)[i].mlp->fc1->weight.shape() == Shape{64, 16});  // two halves of 32
  }
  CHECK_FALSE((*CrossAttentionFusion({.dim = 16, .image_dim = 12, .depth = 1, .heads = 2}, &gen).layers)[0].mlp->gated);
  Tensor text = randn({2, 6, 16}, {}, &gen), image = randn({2, 5, 12}, {}, &gen);
  Tensor mask = make_mask({{1, 1, 1, 0, 0, 0}, {1, 1, 1, 1, 1, 1}});
  Tensor out = f.forward(text, mask, image).tokens;
  CHECK(out.shape() == Shape{2, 6, 16});
  // Both halves of every gated block take part: each parameter gets a gradient.
  sum(mul(out, randn({2, 6, 16}, {}, &gen))).backward();
  check_every_parameter_has_a_gradient(f);
}

TEST_CASE("CrossAttentionFusion with image_pos: the layers read image tokens plus the ViT's positions") {
  Generator gen(10);
  CrossAttentionFusion f({.dim = 16, .image_dim = 12, .depth = 2, .heads = 2}, &gen);
  Tensor text = randn({2, 6, 16}, {}, &gen), image = randn({2, 5, 12}, {}, &gen), pos = randn({1, 5, 12}, {}, &gen);
  Tensor mask = make_mask({{1, 1, 1, 0, 0, 0}, {1, 1, 1, 1, 1, 1}});
  // Adding the positions is the same as handing the layers image + pos, and it changes the output.
  CHECK(same_values(f.forward(text, mask, image, Tensor(), false, pos).tokens, f.forward(text, mask, image + pos).tokens));
  CHECK(!allclose(f.forward(text, mask, image, Tensor(), false, pos).tokens, f.forward(text, mask, image).tokens, 1e-3,
                  1e-3));
  CHECK_THROWS_WITH_AS(f.forward(text, mask, image, Tensor(), false, randn({1, 4, 12})),
                       doctest::Contains("image_pos [1,4,12] must be [1,5,12]"), Error);

  // In a FusionModel the flag adds the ViT's pos_embed, in forward() and in fuse() alike.
  FusionModelConfig c = FusionModelConfig::preset("albef-micro");
  c.fusion.image_pos = true;
  CHECK(FusionModelConfig::from_json(c.to_json()).fusion.image_pos);
  Generator gen2(11);
  FusionModel m(c, &gen2);
  Tensor img = randn({2, 3, 8, 8}, {}, &gen);
  Tensor tmask = make_mask({{1, 1, 1, 1, 0, 0, 0, 0}, {1, 1, 1, 1, 1, 1, 1, 1}});
  Tensor ids = random_ids(tmask, 50);
  FusionOutput out = m.forward(img, ids, tmask);
  const Tensor& vit_pos = m.dual->vision->pos_embed;
  CHECK(same_values(out.fused_tokens, m.fusion->forward(out.text_tokens, tmask, out.image_tokens + vit_pos).tokens));
  CHECK(same_values(m.fuse(out.text_tokens, tmask, out.image_tokens).tokens, out.fused_tokens));
}

TEST_CASE("CrossAttentionFusion with text_pos: the layers read the text tokens plus a sine table of their positions") {
  Generator gen(12);
  CrossAttentionFusionConfig cfg{.dim = 16, .image_dim = 12, .depth = 2, .heads = 2};
  CrossAttentionFusion plain(cfg, &gen);
  cfg.text_pos = true;
  CrossAttentionFusion with_pos(cfg);
  with_pos.load_state_dict(plain.state_dict());  // the same weights: the flag adds no parameter
  CHECK(with_pos.num_parameters() == plain.num_parameters());
  Tensor text = randn({2, 6, 16}, {}, &gen), image = randn({2, 5, 12}, {}, &gen);
  Tensor mask = make_mask({{1, 1, 1, 0, 0, 0}, {1, 1, 1, 1, 1, 1}});
  // The table row s, (sin, cos) pairs at frequencies 1/10000^(2i/16), added to token s of every text.
  Tensor table = nn::sinusoidal_1d(6, 16);
  CHECK(table.to_vector<float>()[16 * 2 + 0] == doctest::Approx(std::sin(2.0)));
  CHECK(table.to_vector<float>()[16 * 3 + 1] == doctest::Approx(std::cos(3.0)));
  CHECK(same_values(with_pos.forward(text, mask, image).tokens,
                    plain.forward(text + unsqueeze(table, 0), mask, image).tokens));
  CHECK(!allclose(with_pos.forward(text, mask, image).tokens, plain.forward(text, mask, image).tokens, 1e-3, 1e-3));
  // Gradients reach the text tokens as without the table (it is a constant shift), in f64 too.
  manual_seed(23);
  CrossAttentionFusion f({.dim = 8, .image_dim = 6, .depth = 1, .heads = 2, .mlp_ratio = 2.0, .text_pos = true});
  std::vector<Tensor> inputs = f64_inputs_and_parameters({randn({2, 4, 8}), randn({2, 3, 6})}, f);
  Tensor m2 = make_mask({{1, 1, 1, 0}, {1, 1, 1, 1}});
  auto fn = [&](const std::vector<Tensor>& a) {
    bind_parameters(f, a, 2);
    return f.forward(a[0], m2, a[1]).tokens;
  };
  GradcheckResult r = gradcheck(fn, inputs);
  INFO(r.message);
  CHECK(r.ok);
  // Through a model config's JSON.
  FusionModelConfig c = FusionModelConfig::preset("albef-micro");
  c.fusion.text_pos = true;
  CHECK(FusionModelConfig::from_json(c.to_json()).fusion.text_pos);
}

TEST_CASE("CrossAttentionFusion causal: a word's fused token depends on the words before it, never on those after") {
  Generator gen(41);
  CrossAttentionFusionConfig cfg{.dim = 16, .image_dim = 12, .depth = 2, .heads = 2};
  CrossAttentionFusion plain(cfg, &gen);
  cfg.causal = true;
  CrossAttentionFusion causal(cfg);
  causal.load_state_dict(plain.state_dict());  // the same weights: the flag adds no parameter
  CHECK(causal.num_parameters() == plain.num_parameters());
  Tensor text = randn({2, 6, 16}, {}, &gen), image = randn({2, 5, 12}, {}, &gen);
  Tensor mask = make_mask({{1, 1, 1, 1, 0, 0}, {1, 1, 1, 1, 1, 1}});
  // Change word 3 of each text: words 0-2 keep their fused tokens under causal, not without it.
  Tensor changed = text.clone();
  changed.slice(1, 3, 4).copy_(randn({2, 1, 16}, {}, &gen));
  const Tensor before = causal.forward(text, mask, image).tokens, after = causal.forward(changed, mask, image).tokens;
  CHECK(same_values(before.slice(1, 0, 3), after.slice(1, 0, 3)));
  CHECK(!allclose(before.slice(1, 3, 4), after.slice(1, 3, 4), 1e-3, 1e-3));
  CHECK(!allclose(plain.forward(text, mask, image).tokens.slice(1, 0, 3),
                  plain.forward(changed, mask, image).tokens.slice(1, 0, 3), 1e-3, 1e-3));
  // Word 0 reads only itself: the same as a fusion run on word 0 alone.
  const Tensor alone = causal.forward(text.slice(1, 0, 1).contiguous(), mask.slice(1, 0, 1).contiguous(), image).tokens;
  CHECK(allclose(before.slice(1, 0, 1), alone, 1e-5, 1e-6));
  // Gradients, in f64.
  manual_seed(43);
  CrossAttentionFusion f({.dim = 8, .image_dim = 6, .depth = 2, .heads = 2, .mlp_ratio = 2.0, .causal = true});
  std::vector<Tensor> inputs = f64_inputs_and_parameters({randn({2, 4, 8}), randn({2, 3, 6})}, f);
  Tensor m2 = make_mask({{1, 1, 1, 0}, {1, 1, 1, 1}});
  auto fn = [&](const std::vector<Tensor>& a) {
    bind_parameters(f, a, 2);
    return f.forward(a[0], m2, a[1]).tokens;
  };
  GradcheckResult r = gradcheck(fn, inputs);
  INFO(r.message);
  CHECK(r.ok);
  // Through a model config's JSON.
  FusionModelConfig c = FusionModelConfig::preset("albef-micro");
  c.fusion.causal = true;
  CHECK(FusionModelConfig::from_json(c.to_json()).fusion.causal);
}

// The weights of `scaled` against those of `plain` (the same seed): the query and key projections
// `qk` times, every other Linear weight `rest` times, everything else equal. Returns how many
// q/k weights it saw.
int check_scaled_init(const CrossAttentionFusion& plain, const CrossAttentionFusion& scaled, double qk, double rest) {
  const auto a = plain.named_parameters(), b = scaled.named_parameters();
  REQUIRE(a.size() == b.size());
  int qk_count = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const std::string& name = a[i].first;
    CAPTURE(name);
    REQUIRE(name == b[i].first);
    const bool is_qk = name.find("q_proj.weight") != std::string::npos || name.find("k_proj.weight") != std::string::npos;
    const bool is_weight = a[i].second.dim() == 2;  // Linear weights; biases and LayerNorms are 1-D
    qk_count += is_qk;
    const double factor = is_qk ? qk : is_weight ? rest : 1.0;
    CHECK(allclose(b[i].second, a[i].second * factor, 1e-6, 0));
  }
  return qk_count;
}

TEST_CASE("CrossAttentionFusion init_std and qk_init_std: the same draws, scaled, and the rest unchanged") {
  CrossAttentionFusionConfig cfg{.dim = 16, .image_dim = 12, .depth = 2, .heads = 2};
  Generator gen_plain(31);
  CrossAttentionFusion plain(cfg, &gen_plain);
  {  // q and k alone at 0.25: 12.5 times the draws of 0.02, nothing else changed, nothing more drawn
    Generator gen(31);
    cfg.qk_init_std = 0.25;
    CrossAttentionFusion scaled(cfg, &gen);
    CHECK(gen.offset() == gen_plain.offset());
    CHECK(check_scaled_init(plain, scaled, 12.5, 1.0) == 2 * 2 * 2);  // 2 layers × (self, cross) × (q, k)
    // The spread asked for: a draw at std 0.25 cut at ±2 std has a std of 0.88 × 0.25.
    const Tensor& w = (*scaled.layers)[0].self_attn->q_proj->weight;
    const double sd = std::sqrt(mean(w * w).item());
    CHECK(sd > 0.25 * 0.7);
    CHECK(sd < 0.25 * 1.1);
  }
  {  // every Linear weight at 0.1, q and k at 0.25
    Generator gen(31);
    cfg.init_std = 0.1;
    CrossAttentionFusion scaled(cfg, &gen);
    CHECK(check_scaled_init(plain, scaled, 12.5, 5.0) == 8);
  }
  {  // every Linear weight at 0.1, q and k with them
    Generator gen(31);
    cfg.qk_init_std = 0;
    CrossAttentionFusion scaled(cfg, &gen);
    CHECK(check_scaled_init(plain, scaled, 5.0, 5.0) == 8);
  }
  cfg.init_std = -0.1;
  CHECK_THROWS_WITH_AS(CrossAttentionFusion{cfg}, doctest::Contains("init_std must be >= 0"), Error);
  cfg.init_std = 0, cfg.qk_init_std = -0.1;
  CHECK_THROWS_WITH_AS(CrossAttentionFusion{cfg}, doctest::Contains("qk_init_std must be >= 0"), Error);
  // Through a model config's JSON.
  FusionModelConfig c = FusionModelConfig::preset("albef-micro");
  c.fusion.init_std = 0.125, c.fusion.qk_init_std = 0.25;
  const FusionModelConfig back = FusionModelConfig::from_json(c.to_json());
  CHECK(back.fusion.init_std == 0.125);
  CHECK(back.fusion.qk_init_std == 0.25);
}

TEST_CASE("gradcheck (f64) of a micro cross-attention fusion over both token inputs and its parameters") {
  manual_seed(22);
  CrossAttentionFusion f({.dim = 8, .image_dim = 6, .depth = 2, .heads = 2, .mlp_ratio = 2.0});
  Tensor mask = make_mask({{1, 1, 1, 0}, {1, 1, 1, 1}});
  std::vector<Tensor> inputs = f64_inputs_and_parameters({randn({2, 4, 8}), randn({2, 3, 6})}, f);
  auto fn = [&](const std::vector<Tensor>& a) {
    bind_parameters(f, a, 2);
    return f.forward(a[0], mask, a[1]).tokens;
  };
  GradcheckResult r = gradcheck(fn, inputs);
  INFO(r.message);
  CHECK(r.ok);
  CHECK(r.elements_checked == 64 + 36 + f.num_parameters());
}

TEST_CASE("gradcheck (f64) of the micro single-stream (ViLT) encoder over its images and a few parameters") {
  manual_seed(24);
  SingleStreamEncoder m(SingleStreamConfig::preset("vilt-micro"));
  Tensor mask = make_mask({{1, 1, 1, 0, 0}, {1, 1, 1, 1, 1}});
  Tensor ids = random_ids(mask, 50);
  GradcheckOptions opts;
  opts.check = check_flags(m, 1, {"modality_embeddings", "patch_embed.proj.bias", "image_pos_embed.weight",
                                  "word_embeddings.weight", "encoder.layers.0.attn.k_proj.weight", "encoder.ln_f.weight"});
  std::vector<Tensor> inputs = f64_inputs_and_parameters({randn({2, 3, 8, 8})}, m);
  auto fn = [&](const std::vector<Tensor>& a) {
    bind_parameters(m, a, 1);
    SingleStreamOutput o = m.forward(a[0], ids, mask);
    return cat({o.image_tokens.reshape({2, -1}), o.pooled}, 1);
  };
  GradcheckResult r = gradcheck(fn, inputs, opts);
  INFO(r.message);
  CHECK(r.ok);
  CHECK(m.modality_embeddings.dtype() == DType::f64);  // it really ran in f64
}

TEST_CASE("gradcheck (f64) of every pooled fusion mode over both vectors and its parameters") {
  manual_seed(25);
  for (const std::string mode : {"concat", "add", "mul", "gated"}) {
    CAPTURE(mode);
    PooledFusion f({.mode = mode, .dim = 5});
    std::vector<Tensor> inputs = f64_inputs_and_parameters({randn({3, 5}), randn({3, 5})}, f);
    auto fn = [&](const std::vector<Tensor>& a) {
      bind_parameters(f, a, 2);
      return f.forward(a[0], a[1]);
    };
    GradcheckResult r = gradcheck(fn, inputs);
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.elements_checked == 30 + f.num_parameters());
  }
}

TEST_CASE("gradcheck (f64) of the micro CLIP loss over the projections and the temperature") {
  manual_seed(23);
  FusionModel m(FusionModelConfig::preset("clip-micro"));
  Tensor mask = make_mask({{1, 1, 1, 0}, {1, 1, 0, 0}, {1, 1, 1, 1}});
  Tensor ids = random_ids(mask, 50), img = randn({3, 3, 8, 8}, {.dtype = DType::f64});
  GradcheckOptions opts;
  opts.check = check_flags(m, 0, {"image_proj.weight", "text_proj.weight", "logit_scale", "vision.cls_token",
                                  "text.embeddings_ln.weight"});
  auto fn = [&](const std::vector<Tensor>& a) {
    bind_parameters(m, a, 0);
    FusionOutput o = m.forward(img, ids, mask);
    return clip_loss(o.image_emb, o.text_emb, o.logit_scale);
  };
  GradcheckResult r = gradcheck(fn, f64_inputs_and_parameters({}, m), opts);
  INFO(r.message);
  CHECK(r.ok);
  CHECK(r.elements_checked == 2 * 8 * 16 + 1 + 16 + 16);
}

TEST_CASE("after one backward of each model every trainable parameter has a finite, non-zero gradient") {
  manual_seed(24);
  Tensor img = randn({2, 3, 8, 8});
  Tensor mask = make_mask({{1, 1, 1, 1, 1, 0}, {1, 1, 1, 0, 0, 0}});
  Tensor ids = random_ids(mask, 50), types = make_ids({{0, 0, 0, 1, 1, 0}, {0, 1, 1, 0, 0, 0}});
  SUBCASE("ViT, both pools and both positions") {
    for (const std::string pool : {"cls", "mean"})
      for (const std::string pos : {"learned", "sincos"}) {
        CAPTURE(pool);
        CAPTURE(pos);
        ViTConfig c = ViTConfig::preset("vit-micro");
        c.pool = pool, c.pos = pos, c.depth = 2, c.dropout = 0.1;
        ViT vit(c);
        project(vit.forward(img).pooled).backward();
        check_every_parameter_has_a_gradient(vit);
      }
  }
  SUBCASE("TextEncoder") {
    TextEncoderConfig c = TextEncoderConfig::preset("text-micro");
    c.dropout = 0.1;
    TextEncoder enc(c);
    project(enc.forward(ids, mask, types).pooled).backward();
    check_every_parameter_has_a_gradient(enc);
  }
  SUBCASE("PooledFusion") {
    for (const std::string mode : {"concat", "gated"}) {
      PooledFusion f({.mode = mode, .dim = 4});
      project(f.forward(randn({3, 4}), randn({3, 4}))).backward();
      check_every_parameter_has_a_gradient(f);
    }
  }
  SUBCASE("every fusion family") {
    for (const std::string name : {"clip-micro", "vilt-micro", "albef-micro", "pooled-micro"}) {
      CAPTURE(name);
      FusionModel m = micro(name);
      FusionOutput o = m.forward(img, ids, mask);
      // Each family's natural losses: contrastive on the embeddings, something on the fused vector.
      Tensor loss = zeros({});
      if (o.image_emb.defined()) loss = loss + clip_loss(o.image_emb, o.text_emb, o.logit_scale);
      if (o.fused_pooled.defined()) loss = loss + project(o.fused_pooled);
      if (name == "vilt-micro") loss = loss + project(o.image_tokens);  // the image patches' own outputs
      loss.backward();
      check_every_parameter_has_a_gradient(m);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// State and freezing

TEST_CASE("state_dict round trip gives bit-identical outputs") {
  Tensor img = randn({2, 3, 8, 8});
  Tensor mask = make_mask({{1, 1, 1, 1, 1, 0}, {1, 1, 1, 0, 0, 0}});
  Tensor ids = random_ids(mask, 50);
  for (const std::string name : {"clip-micro", "vilt-micro", "albef-micro", "pooled-micro"}) {
    CAPTURE(name);
    FusionModel a = micro(name, 1), b = micro(name, 2);
    FusionOutput x = a.forward(img, ids, mask);
    FusionOutput before = b.forward(img, ids, mask);
    CHECK(!allclose(x.text_tokens, before.text_tokens));
    StateDict sd = a.state_dict();
    CHECK(sd.size() == a.named_parameters().size() + a.named_buffers().size());
    CHECK(b.load_state_dict(sd).ok());
    FusionOutput y = b.forward(img, ids, mask);
    const std::vector<std::pair<Tensor, Tensor>> pairs{{x.text_tokens, y.text_tokens},
                                                       {x.image_tokens, y.image_tokens},
                                                       {x.fused_pooled, y.fused_pooled},
                                                       {x.image_emb, y.image_emb},
                                                       {x.text_emb, y.text_emb}};
    for (const auto& [p, q] : pairs) {
      CHECK(p.defined() == q.defined());
      if (p.defined()) CHECK(same_values(p, q));
    }
  }
  // Through a safetensors file, as checkpoints go.
  Generator g1(3), g2(4);
  ViT a(ViTConfig::preset("vit-micro"), &g1), b(ViTConfig::preset("vit-micro"), &g2);
  const std::string path = "test_models_vit_micro.safetensors";
  StateDict sd = a.state_dict();
  save_safetensors(path, NamedTensors(sd.begin(), sd.end()));
  CHECK(b.load_state_dict(load_tensors(path)).ok());
  CHECK(same_values(a.forward(img).tokens, b.forward(img).tokens));
  std::remove(path.c_str());
}

TEST_CASE("freezing the ViT keeps its parameters bit-identical through SGD steps, the rest trains") {
  manual_seed(25);
  FusionModel m = micro("albef-micro");
  m.dual->vision->freeze();
  CHECK(m.num_parameters(true) == m.num_parameters() - m.dual->vision->num_parameters());
  StateDict before;
  for (auto& [n, p] : m.named_parameters()) before[n] = p.detach().clone();
  Tensor img = randn({3, 3, 8, 8});
  Tensor mask = make_mask({{1, 1, 1, 1, 1, 0, 0, 0}, {1, 1, 1, 0, 0, 0, 0, 0}, {1, 1, 1, 1, 1, 1, 1, 1}});
  Tensor ids = random_ids(mask, 50);
  double first = 0, last = 0;
  for (int step = 0; step < 5; ++step) {
    m.zero_grad();
    FusionOutput o = m.forward(img, ids, mask);
    Tensor loss = clip_loss(o.image_emb, o.text_emb, o.logit_scale) + mean(o.fused_pooled * o.fused_pooled);
    loss.backward();
    (step == 0 ? first : last) = loss.item();
    NoGradGuard no_grad;
    for (const Tensor& p : m.trainable_parameters())
      if (p.grad().defined()) Tensor(p).detach().copy_(p.detach() - p.grad() * 0.1);
  }
  CHECK(last < first);
  for (auto& [n, p] : m.named_parameters()) {
    CAPTURE(n);
    const bool frozen = n.starts_with("vision.");
    CHECK(p.requires_grad() == !frozen);
    if (frozen) {
      CHECK(!p.grad().defined());
      CHECK(same_values(p, before.at(n)));
    }
  }
  CHECK(!same_values(m.dual->image_proj->weight, before.at("image_proj.weight")));
  CHECK(!same_values(m.fusion->ln_f->weight, before.at("fusion.ln_f.weight")));
  CHECK(!same_values(m.dual->text->word_embeddings->weight, before.at("text.word_embeddings.weight")));
}

TEST_CASE("TextEncoder: pool \"mean\" is the mean of the real tokens' outputs, \"cls\" the first") {
  manual_seed(31);
  TextEncoderConfig c = TextEncoderConfig::preset("text-micro");
  c.pool = "mean";
  TextEncoder enc(c);
  Tensor ids = from_vector(std::vector<int64_t>{2, 7, 9, 3, 0, 0, 2, 11, 3, 0, 0, 0}, {2, 6});
  TextOutput out = enc.forward(ids);
  std::vector<float> tokens = out.tokens.contiguous().to_vector<float>(), pooled = out.pooled.to_vector<float>();
  const int64_t D = c.dim;
  const int64_t real[2] = {4, 3};
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t d = 0; d < D; ++d) {
      double mean = 0;
      for (int64_t s = 0; s < real[b]; ++s) mean += tokens[(b * 6 + s) * D + d];
      CHECK(pooled[b * D + d] == doctest::Approx(mean / real[b]).epsilon(1e-5));
    }
  c.pool = "first";
  CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("pool must be one of cls, mean"), Error);
  c.pool = "mean";
  CHECK(TextEncoderConfig::from_json(c.to_json()) == c);
}
