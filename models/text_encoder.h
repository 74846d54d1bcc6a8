// A BERT-style text encoder (Devlin et al. 2019), pre-LN.
//
//   x = word_embeddings[ids] + position_embeddings[0..S) + token_type_embeddings[type_ids]
//   x = dropout(embeddings_ln(x))                                    [B,S,D]
//   tokens = encoder(x, key mask = attention_mask)                  (pre-LN layers + final LN)
//   pooled = tokens[:,0]                                             (the [CLS] token)
//
// Padding: attention_mask [B,S] bool, true = a real token. Padded positions are never attended
// to, so the real tokens' outputs (and the pooled [CLS]) do not depend on what the padding
// holds. Without a mask, the mask is ids != pad_id.
//
// Unlike BERT (post-LN, with a tanh "pooler"), the layers are pre-LN with a final LayerNorm and
// the pooled vector is the [CLS] token itself; the embedding names are Hugging Face's.
// Parameter names:
//   word_embeddings.weight [V,D], position_embeddings.weight [max_len,D],
//   token_type_embeddings.weight [T,D], embeddings_ln.{weight,bias},
//   encoder.layers.{i}...., encoder.ln_f.{weight,bias}
// Init as BERT: embeddings and Linear weights ~ trunc_normal(0.02), biases 0, LayerNorms 1/0.
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <vector>

#include "nn/transformer.h"

namespace mmg::models {

struct TextEncoderConfig {
  int64_t vocab_size = 1000;
  int64_t max_len = 32;
  int64_t type_vocab_size = 2;
  int64_t dim = 128;
  int64_t depth = 2;
  int64_t heads = 4;
  double mlp_ratio = 4.0;
  double dropout = 0.0;
  double attn_dropout = 0.0;  // on the attention probabilities (nn/attention.h), training only
  double eps = 1e-12;  // LayerNorm epsilon (BERT)
  int64_t pad_id = 0;
  // pooled: "cls" the [CLS] token (BERT, ALBEF), or "mean" the mean of the real tokens. At
  // initialisation every [CLS] output is nearly the same vector, so a contrastive loss on it
  // sits on a plateau for a while; the mean differs between texts from the first step.
  std::string pool = "cls";
  // With skip_padding, the layers run on the real tokens alone (nn/packed_tokens.h): the same
  // numbers for every real token, zeros at the pads, and work in proportion to the real tokens
  // instead of the longest text of the batch. Off: every pad row is computed (as BERT does).
  bool skip_padding = true;

  // Every field, once: to_json and from_json both walk this list (models/config.h).
  template <class Self, class F>
  static void fields(Self& c, F&& f) {
    f("vocab_size", c.vocab_size), f("max_len", c.max_len), f("type_vocab_size", c.type_vocab_size);
    f("dim", c.dim), f("depth", c.depth), f("heads", c.heads), f("mlp_ratio", c.mlp_ratio);
    f("dropout", c.dropout), f("attn_dropout", c.attn_dropout);
    f("eps", c.eps), f("pad_id", c.pad_id), f("pool", c.pool), f("skip_padding", c.skip_padding);
  }

  void validate() const;
  nlohmann::json to_json() const;
  static TextEncoderConfig from_json(const nlohmann::json& j);
  static TextEncoderConfig preset(const std::string& name);
  static std::vector<std::string> preset_names();
  bool operator==(const TextEncoderConfig&) const = default;
};

struct TextOutput {
  Tensor tokens;  // [B,S,D] after the final LayerNorm (padded positions hold unused values)
  Tensor pooled;  // [B,D], the [CLS] token
};

class TextEncoder : public nn::Module {
 public:
  // `gen` as in ViT: it draws the initial weights and Dropout layers keep it.
  explicit TextEncoder(const TextEncoderConfig& config, Generator* gen = nullptr);
  // ids [B,S] integer; attention_mask [B,S] bool or undefined (then ids != pad_id);
  // token_type_ids [B,S] integer or undefined (then all 0).
  TextOutput forward(const Tensor& ids, const Tensor& attention_mask = Tensor(),
                     const Tensor& token_type_ids = Tensor()) const;
  // The embedding sum after embeddings_ln and dropout, [B,S,D] (the encoder's input).
  Tensor embed(const Tensor& ids, const Tensor& token_type_ids = Tensor()) const;
  // The key mask forward() uses: attention_mask checked, or ids != pad_id.
  Tensor key_mask(const Tensor& ids, const Tensor& attention_mask) const;
  std::string type_name() const override { return "TextEncoder"; }

  TextEncoderConfig config;
  std::shared_ptr<nn::Embedding> word_embeddings, position_embeddings, token_type_embeddings;
  std::shared_ptr<nn::LayerNorm> embeddings_ln;
  std::shared_ptr<nn::Dropout> embeddings_drop;
  std::shared_ptr<nn::TransformerEncoder> encoder;
};

// Checks ids [B,S] (integer dtype, S <= max_len) for the model `who`; shared with the
// single-stream encoder.
void check_token_ids(const char* who, const Tensor& ids, int64_t max_len);
// Checks a key mask [B,S] bool against ids [B,S], or makes one: ids != pad_id.
Tensor text_key_mask(const char* who, const Tensor& ids, const Tensor& attention_mask, int64_t pad_id);

}  // namespace mmg::models
