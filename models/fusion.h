// Vision–language fusion: the three families of multimodal encoders, and the simple fusions of
// two pooled vectors.
//
//   DualEncoder (CLIP, Radford et al. 2021): two separate encoders; each pooled vector is
//     projected (no bias) to a shared embed_dim and L2-normalised; a learnable temperature
//     logit_scale = ln(1/0.07) at init, used as exp(min(logit_scale, ln 100)). The image–text
//     similarity is the dot product; clip_loss(image_emb, text_emb, logit_scale) trains it.
//   SingleStreamEncoder (ViLT, Kim et al. 2021): image patches and word embeddings, each plus a
//     modality-type embedding, concatenated into one sequence for one transformer.
//   CrossAttentionFusion (ALBEF, Li et al. 2021): the text tokens of a text encoder attend to
//     themselves, then to the image tokens of a ViT (cross-attention), then an MLP, per layer.
//   PooledFusion: one vector from two, by concatenation + Linear, sum, product, or a gate.
//
// FusionModel builds any family from one JSON config whose "family" key picks it:
//   "dual"    ViT + TextEncoder + projections (CLIP)
//   "single"  SingleStreamEncoder (ViLT)
//   "cross"   the dual encoder's parts + CrossAttentionFusion (ALBEF: contrastive on the
//             unimodal embeddings, matching / masked LM on the fused tokens)
//   "pooled"  ViT + TextEncoder + projections + PooledFusion of the two projections (a late
//             fusion baseline)
// Its parameter names are those of the parts it is made of, without a prefix of its own: a
// FusionModel of family "dual" has exactly DualEncoder's names (vision.*, text.*, image_proj.*,
// text_proj.*, logit_scale), so checkpoints do not depend on which class built the model.
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <vector>

#include "models/text_encoder.h"
#include "models/vit.h"

namespace mmg::models {

// x / max(‖x‖₂, eps) over the last dim (the gradient is that of the composed ops).
Tensor l2_normalize(const Tensor& x, double eps = 1e-12);

// ---------------------------------------------------------------------------------------------
// Dual encoder (CLIP)

struct DualEncoderConfig {
  ViTConfig vision;
  TextEncoderConfig text;
  int64_t embed_dim = 64;

  // The plain fields (vision and text are written and read by hand, models/config.h).
  template <class Self, class F>
  static void fields(Self& c, F&& f) {
    f("embed_dim", c.embed_dim);
  }

  void validate() const;
  nlohmann::json to_json() const;
  static DualEncoderConfig from_json(const nlohmann::json& j);
  static DualEncoderConfig preset(const std::string& name);
  static std::vector<std::string> preset_names();
  bool operator==(const DualEncoderConfig&) const = default;
};

struct DualOutput {
  Tensor image_emb;    // [B,E], unit rows
  Tensor text_emb;     // [B,E], unit rows
  Tensor logit_scale;  // 0-d: min(logit_scale, ln 100), to pass to clip_loss (which applies exp)
  ViTOutput image;     // the encoders' outputs, for heads that need tokens
  TextOutput text;
};

// Parameters: vision.* (ViT), text.* (TextEncoder), image_proj.weight [E,Dv],
// text_proj.weight [E,Dt], logit_scale (0-d).
class DualEncoder : public nn::Module {
 public:
  explicit DualEncoder(const DualEncoderConfig& config, Generator* gen = nullptr);
  DualOutput forward(const Tensor& images, const Tensor& ids, const Tensor& attention_mask = Tensor(),
                     const Tensor& token_type_ids = Tensor()) const;
  // Unit embeddings of one side: [B,E] (for retrieval over a gallery encoded once).
  Tensor embed_image(const ViTOutput& image) const;
  Tensor embed_text(const TextOutput& text) const;
  Tensor clamped_logit_scale() const;  // min(logit_scale, ln 100), 0-d
  std::string type_name() const override { return "DualEncoder"; }

  static constexpr double max_logit_scale_exp = 100.0;  // exp(logit_scale) never exceeds this
  DualEncoderConfig config;
  std::shared_ptr<ViT> vision;
  std::shared_ptr<TextEncoder> text;
  std::shared_ptr<nn::Linear> image_proj, text_proj;
  Tensor logit_scale;  // 0-d, ln(1/0.07) at init
};

// ---------------------------------------------------------------------------------------------
// Single-stream encoder (ViLT)

struct SingleStreamConfig {
  int64_t image_size = 32;
  int64_t patch_size = 4;
  int64_t channels = 3;
  int64_t vocab_size = 1000;
  int64_t max_len = 32;
  int64_t dim = 128;
  int64_t depth = 4;
  int64_t heads = 4;
  double mlp_ratio = 4.0;
  double dropout = 0.0;
  double attn_dropout = 0.0;  // on the attention probabilities (nn/attention.h), training only
  double eps = 1e-6;
  int64_t pad_id = 0;
  std::string pos = "learned";  // image positions: "learned" | "sincos"

  // Every field, once: to_json and from_json both walk this list (models/config.h).
  template <class Self, class F>
  static void fields(Self& c, F&& f) {
    f("image_size", c.image_size), f("patch_size", c.patch_size), f("channels", c.channels);
    f("vocab_size", c.vocab_size), f("max_len", c.max_len);
    f("dim", c.dim), f("depth", c.depth), f("heads", c.heads), f("mlp_ratio", c.mlp_ratio);
    f("dropout", c.dropout), f("attn_dropout", c.attn_dropout);
    f("eps", c.eps), f("pad_id", c.pad_id), f("pos", c.pos);
  }

  int64_t num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
  void validate() const;
  nlohmann::json to_json() const;
  static SingleStreamConfig from_json(const nlohmann::json& j);
  static SingleStreamConfig preset(const std::string& name);
  static std::vector<std::string> preset_names();
  bool operator==(const SingleStreamConfig&) const = default;
};

struct SingleStreamOutput {
  Tensor tokens;        // [B,S+N,D]: the text tokens, then the image patches
  Tensor text_tokens;   // [B,S,D]  = tokens[:, :S]
  Tensor image_tokens;  // [B,N,D]  = tokens[:, S:]
  Tensor pooled;        // [B,D]    = tokens[:,0], the text's [CLS]
};

// A fixed table added to tokens: x [B,S,D] -> x + weight[0..S), weight [len,D] a buffer
// (saved with the model, never trained). The sinusoidal counterpart of
// nn::LearnedPositionalEmbedding, with the same name for its table.
class FixedPositionalEmbedding : public nn::Module {
 public:
  explicit FixedPositionalEmbedding(const Tensor& table);
  Tensor forward(const Tensor& x) const;
  std::string type_name() const override { return "FixedPositionalEmbedding"; }
  Tensor weight;
};

//   text  = embeddings_ln(word_embeddings[ids] + position_embeddings[0..S)) + modality_embeddings[0]
//   image = patch_embed(images) + image_pos_embed[0..N)                 + modality_embeddings[1]
//   tokens = encoder(dropout([text ; image]), key mask = [attention_mask ; all true])
// Parameters: word_embeddings.weight, position_embeddings.weight, embeddings_ln.*,
// patch_embed.proj.*, image_pos_embed.weight [N,D] (trunc_normal(0.02), or with pos = "sincos"
// the 2-D sinusoidal table as a buffer), modality_embeddings [2,D] (row 0 text, row 1 image),
// encoder.layers.{i}.*, encoder.ln_f.*.
class SingleStreamEncoder : public nn::Module {
 public:
  explicit SingleStreamEncoder(const SingleStreamConfig& config, Generator* gen = nullptr);
  SingleStreamOutput forward(const Tensor& images, const Tensor& ids, const Tensor& attention_mask = Tensor()) const;
  // Every layer's attention weights [B,S+N,S+N] (averaged over heads).
  std::vector<Tensor> attention_maps(const Tensor& images, const Tensor& ids,
                                     const Tensor& attention_mask = Tensor()) const;
  std::string type_name() const override { return "SingleStreamEncoder"; }

  SingleStreamConfig config;
  std::shared_ptr<nn::Embedding> word_embeddings, position_embeddings;
  std::shared_ptr<nn::LayerNorm> embeddings_ln;
  std::shared_ptr<nn::PatchEmbedding> patch_embed;
  // The image positions: one of the two (the other null), registered as "image_pos_embed".
  std::shared_ptr<nn::LearnedPositionalEmbedding> learned_pos;
  std::shared_ptr<FixedPositionalEmbedding> fixed_pos;
  Tensor modality_embeddings;  // [2,D]
  std::shared_ptr<nn::Dropout> drop;
  std::shared_ptr<nn::TransformerEncoder> encoder;

 private:
  struct Joint {
    Tensor x, mask;
  };
  Joint embed(const Tensor& images, const Tensor& ids, const Tensor& attention_mask) const;
};

// ---------------------------------------------------------------------------------------------
// Cross-attention fusion encoder (ALBEF)

struct CrossAttentionFusionConfig {
  int64_t dim = 128;        // the text tokens' width
  int64_t image_dim = 128;  // the image tokens' width
  int64_t depth = 2;
  int64_t heads = 4;
  double mlp_ratio = 4.0;
  double dropout = 0.0;
  double attn_dropout = 0.0;  // on the attention probabilities (nn/attention.h), training only
  double eps = 1e-6;
  // What the heads (matching, VQA) read: "cls", the fused [CLS] token, or "mean", the mean of
  // the fused text tokens under the text mask. With "mean" a question word's own query ("red")
  // reads the image and reaches the head in one hop; from [CLS] it first has to move into the
  // [CLS] query by self-attention.
  std::string pool = "cls";
  // With image_pos, every fusion layer reads the image tokens plus the ViT's position embeddings
  // (as DETR adds positions at each attention over the image): after the ViT's layers the
  // tokens' own trace of where they came from is faint, and a question about a place needs it.
  bool image_pos = false;
  // With gated_mlp, each layer's feed-forward block is GEGLU (nn::MLP): a question about how two
  // objects lie needs a product (which one the words name first × where each one is), and a
  // gated block computes products directly. Its halves are dim · mlp_ratio wide each.
  bool gated_mlp = false;
  // With text_pos, the fusion's input is the text tokens plus a fixed 1-D sine table of their
  // positions (nn::sinusoidal_1d): after the text encoder's layers which word came first is faint,
  // and "is A left of B?" needs it (A is the one to compare, B the reference).
  bool text_pos = false;
  // With causal, the fusion's self-attention lets each word see only itself and the words before
  // it (the text encoder below stays bidirectional, so every token already knows its sentence).
  // "Is A left of B?" compares two grounded objects, and which is the subject depends on order:
  // under bidirectional attention A and B read each other alike and their comparisons cancel in
  // a mean; under causal attention B reads A (and the relation word) and A cannot read B.
  bool causal = false;
  // The initial std of the fusion's Linear weights (0: the 0.02 of every other transformer here),
  // and of its query and key projections alone (self- and cross-attention; 0: init_std). At 0.02
  // and width 64 a head's attention logits start with a std of about 0.03 — every word looks at
  // every patch alike, and the gradient of W_q is proportional to W_k and back: a bilinear saddle
  // whose escape time varies with the draw (the value path W_o·W_v is another). At 1/sqrt(dim)
  // the logits start at unit scale. Either way the same draws, scaled: a seed gives the same
  // model otherwise.
  double init_std = 0.0;
  double qk_init_std = 0.0;
  // With skip_padding, the layers run on the real text tokens alone (nn/packed_tokens.h): the
  // same numbers for every real token, zeros at the pads, and work in proportion to the real
  // tokens instead of the longest text of the batch. Off: every pad row is computed (PyTorch's
  // layers do that; the parity tests compare against them).
  bool skip_padding = true;

  // Every field, once: to_json and from_json both walk this list (models/config.h).
  template <class Self, class F>
  static void fields(Self& c, F&& f) {
    f("dim", c.dim), f("image_dim", c.image_dim);
    f("depth", c.depth), f("heads", c.heads), f("mlp_ratio", c.mlp_ratio), f("gated_mlp", c.gated_mlp);
    f("dropout", c.dropout), f("attn_dropout", c.attn_dropout);
    f("eps", c.eps), f("pool", c.pool), f("image_pos", c.image_pos), f("text_pos", c.text_pos);
    f("causal", c.causal);
    f("init_std", c.init_std), f("qk_init_std", c.qk_init_std), f("skip_padding", c.skip_padding);
  }

  void validate() const;
  nlohmann::json to_json() const;  // no "family" key: it lives inside a FusionModel config
  static CrossAttentionFusionConfig from_json(const nlohmann::json& j);
  bool operator==(const CrossAttentionFusionConfig&) const = default;
};

struct CrossFusionOutput {
  Tensor tokens;           // [B,S,D] after the final LayerNorm
  Tensor pooled;           // [B,D] = tokens[:,0], the fused [CLS]
  Tensor cross_attention;  // [B,S,N]: the last layer's text→image attention averaged over heads
                           // (only when asked for: it is computed again with plain ops)
};

// Parameters: layers.{i}.{ln_1,self_attn,ln_2,cross_attn,ln_3,mlp}.* (nn::CrossAttentionLayer),
// ln_f.{weight,bias}.
class CrossAttentionFusion : public nn::Module {
 public:
  explicit CrossAttentionFusion(const CrossAttentionFusionConfig& config, Generator* gen = nullptr);
  // text_tokens [B,S,dim] with text_mask [B,S] bool (true = real token); image_tokens
  // [B,N,image_dim] with image_mask [B,N] bool or undefined (all attended); image_pos
  // [1,N,image_dim] or undefined, added to the image tokens the layers read.
  CrossFusionOutput forward(const Tensor& text_tokens, const Tensor& text_mask, const Tensor& image_tokens,
                            const Tensor& image_mask = Tensor(), bool with_attention = false,
                            const Tensor& image_pos = Tensor()) const;
  std::string type_name() const override { return "CrossAttentionFusion"; }

  CrossAttentionFusionConfig config;
  std::shared_ptr<nn::ModuleList<nn::CrossAttentionLayer>> layers;
  std::shared_ptr<nn::LayerNorm> ln_f;
};

// ---------------------------------------------------------------------------------------------
// Fusion of two pooled vectors

struct PooledFusionConfig {
  std::string mode = "concat";  // "concat" | "add" | "mul" | "gated"
  int64_t dim = 64;

  // Every field, once: to_json and from_json both walk this list (models/config.h).
  template <class Self, class F>
  static void fields(Self& c, F&& f) {
    f("mode", c.mode), f("dim", c.dim);
  }

  void validate() const;
  nlohmann::json to_json() const;  // no "family" key
  static PooledFusionConfig from_json(const nlohmann::json& j);
  bool operator==(const PooledFusionConfig&) const = default;
};

//   concat  proj([a;b])                 proj: Linear(2D -> D)
//   add     a + b
//   mul     a ⊙ b
//   gated   g ⊙ a + (1 − g) ⊙ b,  g = sigmoid(gate([a;b]))   gate: Linear(2D -> D)
class PooledFusion : public nn::Module {
 public:
  explicit PooledFusion(const PooledFusionConfig& config, Generator* gen = nullptr);
  Tensor forward(const Tensor& a, const Tensor& b) const;  // [B,D], [B,D] -> [B,D]
  std::string type_name() const override { return "PooledFusion"; }

  PooledFusionConfig config;
  std::shared_ptr<nn::Linear> proj;  // concat only
  std::shared_ptr<nn::Linear> gate;  // gated only
};

// ---------------------------------------------------------------------------------------------
// One model of any family

struct FusionModelConfig {
  std::string family = "dual";        // "dual" | "single" | "cross" | "pooled" | "vision"
  DualEncoderConfig dual;             // dual, cross, pooled: the encoders and embed_dim
  CrossAttentionFusionConfig fusion;  // cross
  PooledFusionConfig pooled;          // pooled (dim = dual.embed_dim)
  SingleStreamConfig single;          // single

  void validate() const;
  // The JSON of a family holds only that family's keys:
  //   dual    {"family", "vision", "text", "embed_dim"}             (DualEncoderConfig's)
  //   cross   the same + "fusion": CrossAttentionFusionConfig
  //   pooled  the same + "fusion": PooledFusionConfig
  //   single  SingleStreamConfig's keys
  //   vision  {"family", "vision"}: a ViT alone, for image classification (dual.vision holds it)
  // In "fusion", dim / image_dim may be left out: they follow from the encoders.
  nlohmann::json to_json() const;
  static FusionModelConfig from_json(const nlohmann::json& j);
  // clip-*, vilt-*, albef-*, pooled-* (micro: for tests; tiny: 32×32 images, 32 tokens).
  static FusionModelConfig preset(const std::string& name);
  static std::vector<std::string> preset_names();
  bool operator==(const FusionModelConfig&) const = default;
};

// What a forward pass gives; a field a family does not compute is undefined.
struct FusionOutput {
  Tensor text_mask;  // [B,S] bool, the key mask used for the text
  // The unimodal encoders (dual, cross, pooled); for single, the text and image parts of the
  // joint output.
  Tensor image_tokens;  // [B,1+N,Dv] (single: [B,N,D])
  Tensor text_tokens;   // [B,S,Dt]
  Tensor image_pooled, text_pooled;  // [B,Dv], [B,Dt] (not single)
  // Contrastive embeddings (dual, cross): feed clip_loss(image_emb, text_emb, logit_scale).
  Tensor image_emb, text_emb, logit_scale;
  // Fused (single, cross, pooled).
  Tensor fused_tokens;     // single [B,S+N,D]; cross [B,S,Dt]
  Tensor fused_pooled;     // [B,D]: the fused [CLS] (single, cross), PooledFusion's output (pooled)
  Tensor cross_attention;  // cross, when asked: [B,S,1+N] (column 0 is the image's CLS token)
};

class FusionModel : public nn::Module {
 public:
  explicit FusionModel(const FusionModelConfig& config, Generator* gen = nullptr);
  // images [B,C,H,W]; ids [B,S]; attention_mask [B,S] bool or undefined (ids != pad_id).
  FusionOutput forward(const Tensor& images, const Tensor& ids, const Tensor& attention_mask = Tensor(),
                       const Tensor& token_type_ids = Tensor(), bool with_attention = false) const;
  // The same with the images already through the ViT (not single): a trainer that pairs one
  // batch of images with two texts (a caption and a question) runs the ViT once. With `fuse`
  // off, a cross model stops after the unimodal encoders (fused_* stay undefined).
  FusionOutput forward_encoded(const ViTOutput& image, const Tensor& ids, const Tensor& attention_mask = Tensor(),
                               const Tensor& token_type_ids = Tensor(), bool with_attention = false,
                               bool fuse = true) const;
  // Family "cross": the fusion encoder alone over given unimodal tokens, e.g. on mismatched
  // pairs for image–text matching (text_tokens [B,S,Dt], text_mask [B,S], image_tokens [B,1+N,Dv]).
  CrossFusionOutput fuse(const Tensor& text_tokens, const Tensor& text_mask, const Tensor& image_tokens,
                         bool with_attention = false) const;
  std::string type_name() const override { return "FusionModel"; }

  FusionModelConfig config;
  // The parts (null when the family has none): dual holds vision, text and the projections.
  std::shared_ptr<DualEncoder> dual;
  std::shared_ptr<CrossAttentionFusion> fusion;
  std::shared_ptr<PooledFusion> pooled;
  std::shared_ptr<SingleStreamEncoder> single;
  std::shared_ptr<ViT> vision;  // family "vision": the image encoder alone (an image classifier)

  // The ViT of every family but single (dual->vision, or vision).
  const ViT& image_encoder() const;

 private:
  // Registers the children and own parameters of `part` as this module's own, under the same
  // names (skipping `skip`), so the state dict has no extra prefix. The part must have no
  // buffers of its own (registering one again would make a second handle to it).
  void adopt(const nn::Module& part, const std::vector<std::string>& skip = {});
};

}  // namespace mmg::models
