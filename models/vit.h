// ViT: the Vision Transformer of Dosovitskiy et al. (2021), pre-LN.
//
//   images [B,C,H,W] -> patches [B,N,D]          (patch_embed: a stride-P "convolution")
//   x = [cls_token ; patches] + pos_embed         [B,1+N,D]
//   x = dropout(x)
//   tokens = encoder(x)                           (depth pre-LN layers, then the final LayerNorm)
//   pooled = tokens[:,0]             (pool "cls")  or  mean of tokens[:,1:]  (pool "mean")
//
// Positions are either learned (the parameter pos_embed, as ViT) or the fixed 2-D sinusoidal
// table of MAE (the buffer pos_embed, with a zero row for the CLS token, as MAE). With stem
// "conv" the patches come from early convolutions (nn::ConvStem, parameters stem.*) instead of
// patch_embed: overlapping, non-linear, and better at shapes a few pixels wide.
//
// Parameter names (timm's for the embeddings; the encoder's are nn/transformer.h's):
//   patch_embed.proj.weight [D,C,P,P], patch_embed.proj.bias [D]
//   cls_token [1,1,D], pos_embed [1,1+N,D]
//   encoder.layers.{i}.{ln_1,attn.{q,k,v,out}_proj,ln_2,mlp.fc1,mlp.fc2}.{weight,bias}
//   encoder.ln_f.{weight,bias}
// Init as timm: cls_token, pos_embed and every Linear weight ~ trunc_normal(0.02), biases 0,
// LayerNorms 1/0; the patch projection keeps PyTorch's Conv2d default, U(±1/√(C·P·P)).
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <vector>

#include "nn/embeddings.h"
#include "nn/transformer.h"

namespace mmg::models {

struct ViTConfig {
  int64_t image_size = 32;  // H = W
  int64_t patch_size = 4;
  int64_t channels = 3;
  int64_t dim = 128;
  int64_t depth = 4;
  int64_t heads = 4;
  double mlp_ratio = 4.0;
  double dropout = 0.0;
  double attn_dropout = 0.0;  // on the attention probabilities (nn/attention.h), training only
  std::string pool = "cls";    // "cls" | "mean"
  std::string pos = "learned";  // "learned" | "sincos"
  std::string stem = "patch";   // "patch": one linear map per patch (ViT) | "conv": nn::ConvStem
  double eps = 1e-6;            // LayerNorm epsilon (timm's ViT)

  // Every field, once: to_json and from_json both walk this list (models/config.h).
  template <class Self, class F>
  static void fields(Self& c, F&& f) {
    f("image_size", c.image_size), f("patch_size", c.patch_size), f("channels", c.channels);
    f("dim", c.dim), f("depth", c.depth), f("heads", c.heads), f("mlp_ratio", c.mlp_ratio);
    f("dropout", c.dropout), f("attn_dropout", c.attn_dropout);
    f("pool", c.pool), f("pos", c.pos), f("stem", c.stem), f("eps", c.eps);
  }
  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
  void validate() const;  // throws an Error naming the bad field
  nlohmann::json to_json() const;
  static ViTConfig from_json(const nlohmann::json& j);
  static ViTConfig preset(const std::string& name);
  static std::vector<std::string> preset_names();
  bool operator==(const ViTConfig&) const = default;
};

struct ViTOutput {
  Tensor tokens;  // [B,1+N,D], after the final LayerNorm; token 0 is the CLS token
  Tensor pooled;  // [B,D]
};

class ViT : public nn::Module {
 public:
  // `gen` draws the initial weights (the global generator when null). As in nn's layers,
  // Dropout layers keep it for their masks: with dropout > 0 it must outlive the model.
  explicit ViT(const ViTConfig& config, Generator* gen = nullptr);
  ViTOutput forward(const Tensor& images) const;
  // The attention weights of every layer, [B,1+N,1+N] each (averaged over heads), with the output.
  std::vector<Tensor> attention_maps(const Tensor& images) const;
  std::string type_name() const override { return "ViT"; }

  ViTConfig config;
  std::shared_ptr<nn::PatchEmbedding> patch_embed;  // stem "patch" (else null)
  std::shared_ptr<nn::ConvStem> stem;               // stem "conv" (else null)
  Tensor cls_token;  // [1,1,D]
  Tensor pos_embed;  // [1,1+N,D]: a parameter (learned) or a buffer (sincos)
  std::shared_ptr<nn::Dropout> pos_drop;
  std::shared_ptr<nn::TransformerEncoder> encoder;

 private:
  Tensor embed(const Tensor& images) const;  // [B,1+N,D], the encoder's input
  ViTOutput pool(const Tensor& tokens) const;
};

}  // namespace mmg::models
