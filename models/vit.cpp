#include "models/vit.h"

#include "models/config.h"
#include "models/init_weights.h"
#include "nn/init.h"

namespace mmg::models {

// ---- config ----

void ViTConfig::validate() const {
  MMG_CHECK(image_size > 0 && patch_size > 0 && channels > 0,
            "ViTConfig: image_size {}, patch_size {} and channels {} must be positive", image_size, patch_size,
            channels);
  MMG_CHECK(image_size % patch_size == 0, "ViTConfig: image_size {} is not divisible by patch_size {}", image_size,
            patch_size);
  MMG_CHECK(dim > 0 && heads > 0 && depth >= 0, "ViTConfig: dim {} and heads {} must be positive, depth {} >= 0", dim,
            heads, depth);
  MMG_CHECK(dim % heads == 0, "ViTConfig: dim {} is not divisible by heads {}", dim, heads);
  MMG_CHECK(mlp_ratio > 0, "ViTConfig: mlp_ratio must be positive, got {}", mlp_ratio);
  MMG_CHECK(dropout >= 0 && dropout < 1, "ViTConfig: dropout must be in [0, 1), got {}", dropout);
  MMG_CHECK(attn_dropout >= 0 && attn_dropout < 1, "ViTConfig: attn_dropout must be in [0, 1), got {}", attn_dropout);
  MMG_CHECK(eps > 0, "ViTConfig: eps must be positive, got {}", eps);
  check_choice("ViTConfig", "pool", pool, {"cls", "mean"});
  check_choice("ViTConfig", "pos", pos, {"learned", "sincos"});
  MMG_CHECK(pos != "sincos" || dim % 2 == 0, "ViTConfig: pos 'sincos' needs an even dim, got {}", dim);
  check_choice("ViTConfig", "stem", stem, {"patch", "conv"});
  MMG_CHECK(stem != "conv" || (patch_size >= 2 && (patch_size & (patch_size - 1)) == 0),
            "ViTConfig: stem 'conv' needs a patch_size that is a power of 2, at least 2, got {}", patch_size);
}

nlohmann::json ViTConfig::to_json() const { return write_fields(*this, {{"family", "vit"}}); }

ViTConfig ViTConfig::from_json(const nlohmann::json& j) { return read_config<ViTConfig>(j, "ViTConfig", "vit"); }

std::vector<std::string> ViTConfig::preset_names() { return {"vit-micro", "vit-tiny", "vit-tiny-64", "vit-s16", "vit-b16"}; }

ViTConfig ViTConfig::preset(const std::string& name) {
  ViTConfig c;  // the defaults are vit-tiny: 32×32 images, patch 4, dim 128, depth 4, heads 4
  if (name == "vit-micro") {  // for tests: 2×2 patches of an 8×8 image
    c.image_size = 8, c.patch_size = 4, c.dim = 16, c.depth = 1, c.heads = 2;
  } else if (name == "vit-tiny") {
  } else if (name == "vit-tiny-64") {
    c.image_size = 64, c.patch_size = 8;
  } else if (name == "vit-s16") {  // ViT-S/16 (DeiT-S)
    c.image_size = 224, c.patch_size = 16, c.dim = 384, c.depth = 12, c.heads = 6;
  } else if (name == "vit-b16") {  // ViT-B/16
    c.image_size = 224, c.patch_size = 16, c.dim = 768, c.depth = 12, c.heads = 12;
  } else {
    MMG_FAIL("ViTConfig: unknown preset '{}' (valid: {})", name, fmt::join(preset_names(), ", "));
  }
  return c;
}

// ---- model ----

ViT::ViT(const ViTConfig& cfg, Generator* gen) : config(cfg) {
  config.validate();
  const int64_t D = config.dim, N = config.num_patches();
  if (config.stem == "patch")
    patch_embed = register_module("patch_embed", std::make_shared<nn::PatchEmbedding>(
                                                     config.image_size, config.patch_size, config.channels, D, gen));
  else
    stem = register_module(
        "stem", std::make_shared<nn::ConvStem>(config.image_size, config.patch_size, config.channels, D, gen));
  cls_token = register_parameter("cls_token", zeros({1, 1, D}));
  if (config.pos == "learned") {
    pos_embed = register_parameter("pos_embed", zeros({1, 1 + N, D}));
  } else {
    const int64_t g = config.image_size / config.patch_size;
    Tensor table = cat({zeros({1, D}), nn::sinusoidal_2d(g, g, D)}, 0);  // the CLS row is zero (MAE)
    pos_embed = register_buffer("pos_embed", table.view({1, 1 + N, D}));
  }
  pos_drop = register_module("pos_drop", std::make_shared<nn::Dropout>(config.dropout));
  nn::TransformerOptions o{.dim = D, .heads = config.heads, .mlp_ratio = config.mlp_ratio, .dropout = config.dropout,
                           .attn_dropout = config.attn_dropout, .eps = config.eps};
  encoder = register_module("encoder", std::make_shared<nn::TransformerEncoder>(o, config.depth, true, gen));

  nn::init::trunc_normal_(cls_token, 0.02, 0.0, std::nullopt, std::nullopt, gen);
  if (config.pos == "learned") nn::init::trunc_normal_(pos_embed, 0.02, 0.0, std::nullopt, std::nullopt, gen);
  init_transformer_weights(*encoder, gen);
}

Tensor ViT::embed(const Tensor& images) const {
  const int64_t S = config.image_size, C = config.channels;
  MMG_CHECK(images.defined() && images.dim() == 4 && images.size(1) == C && images.size(2) == S && images.size(3) == S,
            "ViT: images {} must be [B,{},{},{}]", images.defined() ? shape_str(images.shape()) : "undefined", C, S,
            S);
  Tensor patches = patch_embed ? patch_embed->forward(images) : stem->forward(images);  // [B,N,D]
  const int64_t B = patches.size(0), D = config.dim;
  Tensor x = cat({cls_token.expand({B, 1, D}), patches}, 1) + pos_embed;
  return pos_drop->forward(x);
}

ViTOutput ViT::pool(const Tensor& tokens) const {
  if (config.pool == "cls") return {tokens, select(tokens, 1, 0)};
  return {tokens, mean(tokens.slice(1, 1, tokens.size(1)), {1})};  // the patches only, as timm's "avg"
}

ViTOutput ViT::forward(const Tensor& images) const { return pool(encoder->forward(embed(images))); }

std::vector<Tensor> ViT::attention_maps(const Tensor& images) const {
  return encoder->forward_with_weights(embed(images)).weights;
}

}  // namespace mmg::models
