#include "models/fusion.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "core/autograd.h"
#include "models/config.h"
#include "models/init_weights.h"
#include "nn/init.h"

namespace mmg::models {

using nlohmann::json;

Tensor l2_normalize(const Tensor& x, double eps) {
  Tensor n = norm(x, 2.0, {-1}, /*keepdim=*/true);
  return x / clamp(n, eps, std::nullopt);
}

// A sub-config's JSON inside a bigger one: without its "family" key (the outer one says it).
static json nested(json j) {
  j.erase("family");
  return j;
}

// ---------------------------------------------------------------------------------------------
// DualEncoderConfig

void DualEncoderConfig::validate() const {
  vision.validate();
  text.validate();
  MMG_CHECK(embed_dim > 0, "DualEncoderConfig: embed_dim must be positive, got {}", embed_dim);
}

json DualEncoderConfig::to_json() const {
  return write_fields(*this,
                      {{"family", "dual"}, {"vision", nested(vision.to_json())}, {"text", nested(text.to_json())}});
}

// The keys shared by the families built on a dual encoder (dual, cross, pooled).
static void read_dual_fields(ConfigReader& r, DualEncoderConfig& c) {
  if (const json* v = r.object("vision")) c.vision = ViTConfig::from_json(*v);
  if (const json* t = r.object("text")) c.text = TextEncoderConfig::from_json(*t);
  read_fields(r, c);
}

DualEncoderConfig DualEncoderConfig::from_json(const json& j) {
  DualEncoderConfig c;
  ConfigReader r(j, "DualEncoderConfig", "dual");
  read_dual_fields(r, c);
  r.finish();
  c.validate();
  return c;
}

std::vector<std::string> DualEncoderConfig::preset_names() { return {"clip-micro", "clip-tiny"}; }

DualEncoderConfig DualEncoderConfig::preset(const std::string& name) {
  DualEncoderConfig c;
  if (name == "clip-micro") {
    c.vision = ViTConfig::preset("vit-micro");
    c.text = TextEncoderConfig::preset("text-micro");
    c.embed_dim = 8;
  } else if (name == "clip-tiny") {
    c.vision = ViTConfig::preset("vit-tiny");
    c.text = TextEncoderConfig::preset("text-tiny");
    c.embed_dim = 64;
  } else {
    MMG_FAIL("DualEncoderConfig: unknown preset '{}' (valid: {})", name, fmt::join(preset_names(), ", "));
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// DualEncoder

DualEncoder::DualEncoder(const DualEncoderConfig& cfg, Generator* gen) : config(cfg) {
  config.validate();
  vision = register_module("vision", std::make_shared<ViT>(config.vision, gen));
  text = register_module("text", std::make_shared<TextEncoder>(config.text, gen));
  image_proj = register_module("image_proj", std::make_shared<nn::Linear>(config.vision.dim, config.embed_dim, false, gen));
  text_proj = register_module("text_proj", std::make_shared<nn::Linear>(config.text.dim, config.embed_dim, false, gen));
  init_transformer_weights(*image_proj, gen);
  init_transformer_weights(*text_proj, gen);
  // CLIP's temperature 0.07, stored as a log so it stays positive while it learns.
  logit_scale = register_parameter("logit_scale", scalar_tensor(std::log(1.0 / 0.07)));
}

Tensor DualEncoder::embed_image(const ViTOutput& image) const { return l2_normalize(image_proj->forward(image.pooled)); }

Tensor DualEncoder::embed_text(const TextOutput& t) const { return l2_normalize(text_proj->forward(t.pooled)); }

// clamp passes the gradient inside the range only: once the scale reaches 100 it stops growing.
Tensor DualEncoder::clamped_logit_scale() const {
  return clamp(logit_scale, std::nullopt, std::log(max_logit_scale_exp));
}

DualOutput DualEncoder::forward(const Tensor& images, const Tensor& ids, const Tensor& attention_mask,
                                const Tensor& token_type_ids) const {
  DualOutput out;
  out.image = vision->forward(images);
  out.text = text->forward(ids, attention_mask, token_type_ids);
  MMG_CHECK(out.image.pooled.size(0) == out.text.pooled.size(0), "DualEncoder: {} images but {} texts",
            out.image.pooled.size(0), out.text.pooled.size(0));
  out.image_emb = embed_image(out.image);
  out.text_emb = embed_text(out.text);
  out.logit_scale = clamped_logit_scale();
  return out;
}

// ---------------------------------------------------------------------------------------------
// SingleStreamConfig

void SingleStreamConfig::validate() const {
  MMG_CHECK(image_size > 0 && patch_size > 0 && channels > 0,
            "SingleStreamConfig: image_size {}, patch_size {} and channels {} must be positive", image_size,
            patch_size, channels);
  MMG_CHECK(image_size % patch_size == 0, "SingleStreamConfig: image_size {} is not divisible by patch_size {}",
            image_size, patch_size);
  MMG_CHECK(vocab_size > 0 && max_len > 0, "SingleStreamConfig: vocab_size {} and max_len {} must be positive",
            vocab_size, max_len);
  MMG_CHECK(pad_id >= 0 && pad_id < vocab_size, "SingleStreamConfig: pad_id {} is outside the vocabulary [0, {})",
            pad_id, vocab_size);
  MMG_CHECK(dim > 0 && heads > 0 && depth >= 0,
            "SingleStreamConfig: dim {} and heads {} must be positive, depth {} >= 0", dim, heads, depth);
  MMG_CHECK(dim % heads == 0, "SingleStreamConfig: dim {} is not divisible by heads {}", dim, heads);
  MMG_CHECK(mlp_ratio > 0, "SingleStreamConfig: mlp_ratio must be positive, got {}", mlp_ratio);
  MMG_CHECK(dropout >= 0 && dropout < 1, "SingleStreamConfig: dropout must be in [0, 1), got {}", dropout);
  MMG_CHECK(attn_dropout >= 0 && attn_dropout < 1, "SingleStreamConfig: attn_dropout must be in [0, 1), got {}",
            attn_dropout);
  MMG_CHECK(eps > 0, "SingleStreamConfig: eps must be positive, got {}", eps);
  check_choice("SingleStreamConfig", "pos", pos, {"learned", "sincos"});
  MMG_CHECK(pos != "sincos" || dim % 2 == 0, "SingleStreamConfig: pos 'sincos' needs an even dim, got {}", dim);
}

json SingleStreamConfig::to_json() const { return write_fields(*this, {{"family", "single"}}); }

SingleStreamConfig SingleStreamConfig::from_json(const json& j) {
  return read_config<SingleStreamConfig>(j, "SingleStreamConfig", "single");
}

std::vector<std::string> SingleStreamConfig::preset_names() { return {"vilt-micro", "vilt-tiny"}; }

SingleStreamConfig SingleStreamConfig::preset(const std::string& name) {
  SingleStreamConfig c;  // the defaults are vilt-tiny
  if (name == "vilt-micro") {
    c.image_size = 8, c.patch_size = 4, c.vocab_size = 50, c.max_len = 8, c.dim = 16, c.depth = 1, c.heads = 2;
  } else if (name == "vilt-tiny") {
  } else {
    MMG_FAIL("SingleStreamConfig: unknown preset '{}' (valid: {})", name, fmt::join(preset_names(), ", "));
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// SingleStreamEncoder

FixedPositionalEmbedding::FixedPositionalEmbedding(const Tensor& table) {
  MMG_CHECK(table.defined() && table.dim() == 2, "FixedPositionalEmbedding: table {} must be [len,D]",
            table.defined() ? shape_str(table.shape()) : "undefined");
  weight = register_buffer("weight", table);
}

Tensor FixedPositionalEmbedding::forward(const Tensor& x) const {
  MMG_CHECK(x.defined() && x.dim() >= 2 && x.size(-1) == weight.size(1) && x.size(-2) <= weight.size(0),
            "FixedPositionalEmbedding: x {} must be [...,S,{}] with S <= {}",
            x.defined() ? shape_str(x.shape()) : "undefined", weight.size(1), weight.size(0));
  return x + weight.slice(0, 0, x.size(-2));
}

SingleStreamEncoder::SingleStreamEncoder(const SingleStreamConfig& cfg, Generator* gen) : config(cfg) {
  config.validate();
  const int64_t D = config.dim, N = config.num_patches();
  word_embeddings = register_module("word_embeddings", std::make_shared<nn::Embedding>(config.vocab_size, D, gen));
  position_embeddings = register_module("position_embeddings", std::make_shared<nn::Embedding>(config.max_len, D, gen));
  embeddings_ln = register_module("embeddings_ln", std::make_shared<nn::LayerNorm>(D, config.eps));
  patch_embed = register_module(
      "patch_embed", std::make_shared<nn::PatchEmbedding>(config.image_size, config.patch_size, config.channels, D, gen));
  if (config.pos == "learned") {
    learned_pos = register_module("image_pos_embed", std::make_shared<nn::LearnedPositionalEmbedding>(N, D, gen));
  } else {
    const int64_t g = config.image_size / config.patch_size;
    fixed_pos = register_module("image_pos_embed", std::make_shared<FixedPositionalEmbedding>(nn::sinusoidal_2d(g, g, D)));
  }
  modality_embeddings = register_parameter("modality_embeddings", zeros({2, D}));
  drop = register_module("drop", std::make_shared<nn::Dropout>(config.dropout));
  nn::TransformerOptions o{.dim = D, .heads = config.heads, .mlp_ratio = config.mlp_ratio, .dropout = config.dropout,
                           .attn_dropout = config.attn_dropout, .eps = config.eps};
  encoder = register_module("encoder", std::make_shared<nn::TransformerEncoder>(o, config.depth, true, gen));

  init_transformer_weights(*this, gen);  // (LearnedPositionalEmbedding is trunc_normal(0.02) already)
  nn::init::trunc_normal_(modality_embeddings, 0.02, 0.0, std::nullopt, std::nullopt, gen);
}

SingleStreamEncoder::Joint SingleStreamEncoder::embed(const Tensor& images, const Tensor& ids,
                                                      const Tensor& attention_mask) const {
  const int64_t S = config.image_size, C = config.channels;
  MMG_CHECK(images.defined() && images.dim() == 4 && images.size(1) == C && images.size(2) == S && images.size(3) == S,
            "SingleStreamEncoder: images {} must be [B,{},{},{}]",
            images.defined() ? shape_str(images.shape()) : "undefined", C, S, S);
  check_token_ids("SingleStreamEncoder", ids, config.max_len);
  Tensor text_mask = text_key_mask("SingleStreamEncoder", ids, attention_mask, config.pad_id);
  const int64_t B = ids.size(0), L = ids.size(1), N = config.num_patches();
  MMG_CHECK(images.size(0) == B, "SingleStreamEncoder: {} images but {} texts", images.size(0), B);

  const Tensor positions = arange(L, {.dtype = DType::i64, .device = ids.device()});
  Tensor text = embeddings_ln->forward(word_embeddings->forward(ids) + position_embeddings->forward(positions));
  text = text + select(modality_embeddings, 0, 0);
  Tensor image = patch_embed->forward(images);
  image = (learned_pos ? learned_pos->forward(image) : fixed_pos->forward(image)) + select(modality_embeddings, 0, 1);
  // Image patches are never padding: their keys are always attended.
  Tensor mask = cat({text_mask, ones({B, N}, {.dtype = DType::boolean, .device = text_mask.device()})}, 1);
  return {drop->forward(cat({text, image}, 1)), mask};
}

SingleStreamOutput SingleStreamEncoder::forward(const Tensor& images, const Tensor& ids,
                                                const Tensor& attention_mask) const {
  Joint j = embed(images, ids, attention_mask);
  Tensor tokens = encoder->forward(j.x, j.mask);
  const int64_t L = ids.size(1);
  return {tokens, tokens.slice(1, 0, L), tokens.slice(1, L, tokens.size(1)), select(tokens, 1, 0)};
}

std::vector<Tensor> SingleStreamEncoder::attention_maps(const Tensor& images, const Tensor& ids,
                                                        const Tensor& attention_mask) const {
  Joint j = embed(images, ids, attention_mask);
  return encoder->forward_with_weights(j.x, j.mask).weights;
}

// ---------------------------------------------------------------------------------------------
// CrossAttentionFusion

void CrossAttentionFusionConfig::validate() const {
  MMG_CHECK(dim > 0 && image_dim > 0 && heads > 0 && depth >= 0,
            "CrossAttentionFusionConfig: dim {}, image_dim {} and heads {} must be positive, depth {} >= 0", dim,
            image_dim, heads, depth);
  MMG_CHECK(dim % heads == 0, "CrossAttentionFusionConfig: dim {} is not divisible by heads {}", dim, heads);
  MMG_CHECK(mlp_ratio > 0, "CrossAttentionFusionConfig: mlp_ratio must be positive, got {}", mlp_ratio);
  MMG_CHECK(dropout >= 0 && dropout < 1, "CrossAttentionFusionConfig: dropout must be in [0, 1), got {}", dropout);
  MMG_CHECK(attn_dropout >= 0 && attn_dropout < 1, "CrossAttentionFusionConfig: attn_dropout must be in [0, 1), got {}",
            attn_dropout);
  MMG_CHECK(eps > 0, "CrossAttentionFusionConfig: eps must be positive, got {}", eps);
  MMG_CHECK(init_std >= 0 && std::isfinite(init_std),
            "CrossAttentionFusionConfig: init_std must be >= 0 (0: the shared 0.02), got {}", init_std);
  MMG_CHECK(qk_init_std >= 0 && std::isfinite(qk_init_std),
            "CrossAttentionFusionConfig: qk_init_std must be >= 0 (0: init_std), got {}", qk_init_std);
  check_choice("CrossAttentionFusionConfig", "pool", pool, {"cls", "mean"});
}

json CrossAttentionFusionConfig::to_json() const { return write_fields(*this); }

CrossAttentionFusionConfig CrossAttentionFusionConfig::from_json(const json& j) {
  return read_config<CrossAttentionFusionConfig>(j, "CrossAttentionFusionConfig", "");
}

CrossAttentionFusion::CrossAttentionFusion(const CrossAttentionFusionConfig& cfg, Generator* gen) : config(cfg) {
  config.validate();
  nn::TransformerOptions o{.dim = config.dim, .heads = config.heads, .mlp_ratio = config.mlp_ratio,
                           .dropout = config.dropout, .attn_dropout = config.attn_dropout,
                           .gated_mlp = config.gated_mlp, .eps = config.eps, .memory_dim = config.image_dim};
  layers = register_module("layers", std::make_shared<nn::ModuleList<nn::CrossAttentionLayer>>());
  for (int64_t i = 0; i < config.depth; ++i) layers->push_back(std::make_shared<nn::CrossAttentionLayer>(o, config.causal, gen));
  ln_f = register_module("ln_f", std::make_shared<nn::LayerNorm>(config.dim, config.eps));
  const double base_std = config.init_std > 0 ? config.init_std : kTransformerInitStd;
  init_transformer_weights(*this, gen, base_std);
  if (config.qk_init_std > 0) {
    NoGradGuard no_grad;
    const double scale = config.qk_init_std / base_std;
    for (size_t i = 0; i < layers->size(); ++i)
      for (nn::MultiHeadAttention* attn : {(*layers)[i].self_attn.get(), (*layers)[i].cross_attn.get()})
        for (nn::Linear* proj : {attn->q_proj.get(), attn->k_proj.get()}) proj->weight.copy_(proj->weight * scale);
  }
}

CrossFusionOutput CrossAttentionFusion::forward(const Tensor& text_tokens, const Tensor& text_mask,
                                                const Tensor& image_tokens, const Tensor& image_mask,
                                                bool with_attention, const Tensor& image_pos) const {
  MMG_CHECK(text_tokens.defined() && text_tokens.dim() == 3 && text_tokens.size(2) == config.dim,
            "CrossAttentionFusion: text_tokens {} must be [B,S,{}]",
            text_tokens.defined() ? shape_str(text_tokens.shape()) : "undefined", config.dim);
  MMG_CHECK(image_tokens.defined() && image_tokens.dim() == 3 && image_tokens.size(2) == config.image_dim,
            "CrossAttentionFusion: image_tokens {} must be [B,N,{}]",
            image_tokens.defined() ? shape_str(image_tokens.shape()) : "undefined", config.image_dim);
  MMG_CHECK(!image_pos.defined() || (image_pos.dim() == 3 && image_pos.size(0) == 1 &&
                                      image_pos.size(1) == image_tokens.size(1) && image_pos.size(2) == config.image_dim),
            "CrossAttentionFusion: image_pos {} must be [1,{},{}] for image_tokens {}",
            image_pos.defined() ? shape_str(image_pos.shape()) : "", image_tokens.size(1), config.image_dim,
            shape_str(image_tokens.shape()));
  const Tensor memory = image_pos.defined() ? image_tokens + image_pos : image_tokens;
  CrossFusionOutput out;
  Tensor h = text_tokens;
  if (config.text_pos) {
    Tensor table = nn::sinusoidal_1d(text_tokens.size(1), config.dim, text_tokens.dtype());
    h = text_tokens + unsqueeze(table, 0).to(text_tokens.device());
  }
  // The layers on the real text tokens alone, when asked and there are pads (nn/packed_tokens.h).
  const std::optional<nn::PackedTokens> rows =
      config.skip_padding ? nn::PackedTokens::if_padded(text_mask) : std::nullopt;
  const nn::PackedTokens* r = rows ? &*rows : nullptr;
  if (r) h = r->pack(h);
  const size_t n = layers->size();
  for (size_t i = 0; i < n; ++i) {
    const nn::CrossAttentionLayer& layer = (*layers)[i];
    if (with_attention && i + 1 == n) {
      nn::LayerOutput o = layer.forward_with_weights(h, memory, text_mask, image_mask, r);
      h = o.out;
      out.cross_attention = o.weights;
    } else {
      h = layer.forward(h, memory, text_mask, image_mask, r);
    }
  }
  out.tokens = ln_f->forward(h);
  if (r) out.tokens = r->unpack(out.tokens);
  if (config.pool == "cls") {
    out.pooled = select(out.tokens, 1, 0);
  } else {  // Σ_s mask[b,s]·tokens[b,s,:] / Σ_s mask[b,s], as the text encoder's mean pool
    MMG_CHECK(text_mask.defined(), "CrossAttentionFusion: pool 'mean' needs the text mask");
    Tensor weights = unsqueeze(text_mask.to(out.tokens.dtype()), -1);
    out.pooled = sum(mul(out.tokens, weights), {1}) / sum(weights, {1});
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// PooledFusion

void PooledFusionConfig::validate() const {
  check_choice("PooledFusionConfig", "mode", mode, {"concat", "add", "mul", "gated"});
  MMG_CHECK(dim > 0, "PooledFusionConfig: dim must be positive, got {}", dim);
}

json PooledFusionConfig::to_json() const { return write_fields(*this); }

PooledFusionConfig PooledFusionConfig::from_json(const json& j) {
  return read_config<PooledFusionConfig>(j, "PooledFusionConfig", "");
}

PooledFusion::PooledFusion(const PooledFusionConfig& cfg, Generator* gen) : config(cfg) {
  config.validate();
  const int64_t D = config.dim;
  if (config.mode == "concat") proj = register_module("proj", std::make_shared<nn::Linear>(2 * D, D, true, gen));
  if (config.mode == "gated") gate = register_module("gate", std::make_shared<nn::Linear>(2 * D, D, true, gen));
  init_transformer_weights(*this, gen);
}

Tensor PooledFusion::forward(const Tensor& a, const Tensor& b) const {
  const int64_t D = config.dim;
  MMG_CHECK(a.defined() && b.defined() && a.dim() == 2 && a.size(1) == D && a.shape() == b.shape(),
            "PooledFusion ({}): a {} and b {} must both be [B,{}]", config.mode,
            a.defined() ? shape_str(a.shape()) : "undefined", b.defined() ? shape_str(b.shape()) : "undefined", D);
  if (config.mode == "add") return a + b;
  if (config.mode == "mul") return a * b;
  Tensor ab = cat({a, b}, 1);
  if (config.mode == "concat") return proj->forward(ab);
  Tensor g = sigmoid(gate->forward(ab));  // "gated": per feature, how much of a to keep
  return g * a + (1.0 - g) * b;
}

// ---------------------------------------------------------------------------------------------
// FusionModelConfig

static const std::vector<std::string> kFamilies = {"dual", "single", "cross", "pooled", "vision"};

void FusionModelConfig::validate() const {
  check_choice("FusionModelConfig", "family", family, kFamilies);
  if (family == "single") {
    single.validate();
    return;
  }
  if (family == "vision") {
    dual.vision.validate();
    return;
  }
  dual.validate();
  if (family == "cross") {
    fusion.validate();
    MMG_CHECK(fusion.dim == dual.text.dim && fusion.image_dim == dual.vision.dim,
              "FusionModelConfig (cross): fusion dim {} and image_dim {} must equal the text dim {} and the vision dim "
              "{}",
              fusion.dim, fusion.image_dim, dual.text.dim, dual.vision.dim);
  }
  if (family == "pooled") {
    pooled.validate();
    MMG_CHECK(pooled.dim == dual.embed_dim, "FusionModelConfig (pooled): fusion dim {} must equal embed_dim {}",
              pooled.dim, dual.embed_dim);
  }
}

json FusionModelConfig::to_json() const {
  if (family == "single") return single.to_json();
  if (family == "vision") return {{"family", family}, {"vision", dual.vision.to_json()}};
  json j = dual.to_json();
  j["family"] = family;
  if (family == "cross") j["fusion"] = fusion.to_json();
  if (family == "pooled") j["fusion"] = pooled.to_json();
  return j;
}

FusionModelConfig FusionModelConfig::from_json(const json& j) {
  MMG_CHECK(j.is_object(), "FusionModelConfig: a config must be a JSON object, got {}", j.type_name());
  auto f = j.find("family");
  MMG_CHECK(f != j.end() && f->is_string(), "FusionModelConfig: needs a \"family\" key: one of {}",
            fmt::join(kFamilies, ", "));
  FusionModelConfig c;
  c.family = f->get<std::string>();
  check_choice("FusionModelConfig", "family", c.family, kFamilies);
  if (c.family == "single") {
    c.single = SingleStreamConfig::from_json(j);
    return c;
  }
  ConfigReader r(j, "FusionModelConfig (" + c.family + ")", c.family);
  if (c.family == "vision") {
    if (const json* v = r.object("vision")) c.dual.vision = ViTConfig::from_json(*v);
    r.finish();
    c.validate();
    return c;
  }
  read_dual_fields(r, c.dual);
  if (c.family == "cross" || c.family == "pooled") {
    const json* fusion_json = r.object("fusion");
    // Widths left out follow from the encoders; validate() below checks the whole.
    if (c.family == "cross") {
      c.fusion.dim = c.dual.text.dim;
      c.fusion.image_dim = c.dual.vision.dim;
      if (fusion_json) read_over(*fusion_json, "CrossAttentionFusionConfig", "", c.fusion);
    } else {
      c.pooled.dim = c.dual.embed_dim;
      if (fusion_json) read_over(*fusion_json, "PooledFusionConfig", "", c.pooled);
    }
  }
  r.finish();
  c.validate();
  return c;
}

std::vector<std::string> FusionModelConfig::preset_names() {
  return {"clip-micro", "clip-tiny",  "vilt-micro",   "vilt-tiny",
          "albef-micro", "albef-tiny", "pooled-micro", "pooled-tiny"};
}

FusionModelConfig FusionModelConfig::preset(const std::string& name) {
  auto names = preset_names();
  MMG_CHECK(std::find(names.begin(), names.end(), name) != names.end(),
            "FusionModelConfig: unknown preset '{}' (valid: {})", name, fmt::join(names, ", "));
  const bool micro = name.ends_with("-micro");
  const std::string size = micro ? "micro" : "tiny";
  FusionModelConfig c;
  if (name.starts_with("vilt-")) {
    c.family = "single";
    c.single = SingleStreamConfig::preset(name);
    return c;
  }
  c.dual = DualEncoderConfig::preset("clip-" + size);
  if (name.starts_with("clip-")) {
    c.family = "dual";
  } else if (name.starts_with("albef-")) {
    c.family = "cross";
    c.fusion = {.dim = c.dual.text.dim, .image_dim = c.dual.vision.dim, .depth = micro ? 1 : 2,
                .heads = c.dual.text.heads};
  } else {
    c.family = "pooled";
    c.pooled = {.mode = "gated", .dim = c.dual.embed_dim};
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// FusionModel

void FusionModel::adopt(const nn::Module& part, const std::vector<std::string>& skip) {
  auto skipped = [&](const std::string& n) { return std::find(skip.begin(), skip.end(), n) != skip.end(); };
  for (auto& [n, p] : part.named_parameters(false))
    if (!skipped(n)) register_parameter(n, p);
  MMG_CHECK(part.named_buffers(false).empty(), "FusionModel: cannot adopt the buffers of a {}", part.type_name());
  for (auto& [n, c] : part.named_children())
    if (!skipped(n)) register_module(n, c);
}

FusionModel::FusionModel(const FusionModelConfig& cfg, Generator* gen) : config(cfg) {
  config.validate();
  if (config.family == "single") {
    single = std::make_shared<SingleStreamEncoder>(config.single, gen);
    adopt(*single);
    return;
  }
  if (config.family == "vision") {
    vision = register_module("vision", std::make_shared<ViT>(config.dual.vision, gen));
    return;
  }
  dual = std::make_shared<DualEncoder>(config.dual, gen);
  // The pooled family has no contrastive loss, so no temperature to learn.
  adopt(*dual, config.family == "pooled" ? std::vector<std::string>{"logit_scale"} : std::vector<std::string>{});
  if (config.family == "cross") fusion = register_module("fusion", std::make_shared<CrossAttentionFusion>(config.fusion, gen));
  if (config.family == "pooled") pooled = register_module("fusion", std::make_shared<PooledFusion>(config.pooled, gen));
}

CrossFusionOutput FusionModel::fuse(const Tensor& text_tokens, const Tensor& text_mask, const Tensor& image_tokens,
                                    bool with_attention) const {
  MMG_CHECK(fusion != nullptr, "FusionModel: fuse() needs the family 'cross', this model is '{}'", config.family);
  const Tensor image_pos = fusion->config.image_pos ? dual->vision->pos_embed : Tensor();
  return fusion->forward(text_tokens, text_mask, image_tokens, Tensor(), with_attention, image_pos);
}

const ViT& FusionModel::image_encoder() const {
  MMG_CHECK(!single, "FusionModel (single): the joint encoder has no image encoder of its own");
  return vision ? *vision : *dual->vision;
}

FusionOutput FusionModel::forward(const Tensor& images, const Tensor& ids, const Tensor& attention_mask,
                                  const Tensor& token_type_ids, bool with_attention) const {
  MMG_CHECK(!vision, "FusionModel (vision): this family has no text; encode images with image_encoder()");
  FusionOutput out;
  if (single) {
    MMG_CHECK(!token_type_ids.defined(), "FusionModel (single): token_type_ids are not used by this family");
    SingleStreamOutput s = single->forward(images, ids, attention_mask);
    out.text_mask = text_key_mask("FusionModel", ids, attention_mask, config.single.pad_id);
    out.text_tokens = s.text_tokens;
    out.image_tokens = s.image_tokens;
    out.fused_tokens = s.tokens;
    out.fused_pooled = s.pooled;
    return out;
  }
  return forward_encoded(dual->vision->forward(images), ids, attention_mask, token_type_ids, with_attention);
}

FusionOutput FusionModel::forward_encoded(const ViTOutput& image, const Tensor& ids, const Tensor& attention_mask,
                                          const Tensor& token_type_ids, bool with_attention, bool fuse) const {
  MMG_CHECK(!single, "FusionModel (single): forward_encoded needs a two-tower family, the joint encoder reads pixels");
  MMG_CHECK(!vision, "FusionModel (vision): this family has no text encoder");
  FusionOutput out;
  TextOutput text = dual->text->forward(ids, attention_mask, token_type_ids);
  MMG_CHECK(image.pooled.size(0) == text.pooled.size(0), "FusionModel: {} images but {} texts",
            image.pooled.size(0), text.pooled.size(0));
  out.text_mask = dual->text->key_mask(ids, attention_mask);
  out.image_tokens = image.tokens;
  out.text_tokens = text.tokens;
  out.image_pooled = image.pooled;
  out.text_pooled = text.pooled;
  if (pooled) {
    if (fuse)
      out.fused_pooled = pooled->forward(dual->image_proj->forward(image.pooled), dual->text_proj->forward(text.pooled));
    return out;
  }
  out.image_emb = dual->embed_image(image);
  out.text_emb = dual->embed_text(text);
  out.logit_scale = dual->clamped_logit_scale();
  if (fusion && fuse) {
    CrossFusionOutput f = this->fuse(text.tokens, out.text_mask, image.tokens, with_attention);
    out.fused_tokens = f.tokens;
    out.fused_pooled = f.pooled;
    out.cross_attention = f.cross_attention;
  }
  return out;
}

}  // namespace mmg::models
