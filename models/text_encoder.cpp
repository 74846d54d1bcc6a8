#include "models/text_encoder.h"

#include "models/config.h"
#include "models/init_weights.h"

namespace mmg::models {

// ---- config ----

void TextEncoderConfig::validate() const {
  MMG_CHECK(vocab_size > 0 && max_len > 0 && type_vocab_size > 0,
            "TextEncoderConfig: vocab_size {}, max_len {} and type_vocab_size {} must be positive", vocab_size, max_len,
            type_vocab_size);
  MMG_CHECK(dim > 0 && heads > 0 && depth >= 0, "TextEncoderConfig: dim {} and heads {} must be positive, depth {} >= 0",
            dim, heads, depth);
  MMG_CHECK(dim % heads == 0, "TextEncoderConfig: dim {} is not divisible by heads {}", dim, heads);
  MMG_CHECK(mlp_ratio > 0, "TextEncoderConfig: mlp_ratio must be positive, got {}", mlp_ratio);
  MMG_CHECK(dropout >= 0 && dropout < 1, "TextEncoderConfig: dropout must be in [0, 1), got {}", dropout);
  MMG_CHECK(attn_dropout >= 0 && attn_dropout < 1, "TextEncoderConfig: attn_dropout must be in [0, 1), got {}",
            attn_dropout);
  MMG_CHECK(eps > 0, "TextEncoderConfig: eps must be positive, got {}", eps);
  check_choice("TextEncoderConfig", "pool", pool, {"cls", "mean"});
  MMG_CHECK(pad_id >= 0 && pad_id < vocab_size, "TextEncoderConfig: pad_id {} is outside the vocabulary [0, {})", pad_id,
            vocab_size);
}

nlohmann::json TextEncoderConfig::to_json() const { return write_fields(*this, {{"family", "text"}}); }

TextEncoderConfig TextEncoderConfig::from_json(const nlohmann::json& j) {
  return read_config<TextEncoderConfig>(j, "TextEncoderConfig", "text");
}

std::vector<std::string> TextEncoderConfig::preset_names() { return {"text-micro", "text-tiny", "bert-base"}; }

TextEncoderConfig TextEncoderConfig::preset(const std::string& name) {
  TextEncoderConfig c;  // the defaults are text-tiny: vocab 1000, length 32, dim 128, depth 2, heads 4
  if (name == "text-micro") {  // for tests
    c.vocab_size = 50, c.max_len = 8, c.dim = 16, c.depth = 1, c.heads = 2;
  } else if (name == "text-tiny") {
  } else if (name == "bert-base") {  // BERT-base's shapes (uncased WordPiece vocabulary)
    c.vocab_size = 30522, c.max_len = 512, c.dim = 768, c.depth = 12, c.heads = 12;
  } else {
    MMG_FAIL("TextEncoderConfig: unknown preset '{}' (valid: {})", name, fmt::join(preset_names(), ", "));
  }
  return c;
}

// ---- inputs ----

void check_token_ids(const char* who, const Tensor& ids, int64_t max_len) {
  MMG_CHECK(ids.defined() && ids.dim() == 2, "{}: ids {} must be [B,S]", who,
            ids.defined() ? shape_str(ids.shape()) : "undefined");
  MMG_CHECK(ids.dtype() == DType::i64 || ids.dtype() == DType::i32, "{}: ids must be i64 or i32, got {} {}", who,
            dtype_name(ids.dtype()), shape_str(ids.shape()));
  MMG_CHECK(ids.size(1) >= 1 && ids.size(1) <= max_len, "{}: ids {} have {} tokens; the model takes 1 to max_len {}",
            who, shape_str(ids.shape()), ids.size(1), max_len);
}

Tensor text_key_mask(const char* who, const Tensor& ids, const Tensor& attention_mask, int64_t pad_id) {
  if (!attention_mask.defined()) return ne(ids, scalar_like(ids, static_cast<double>(pad_id)));
  MMG_CHECK(attention_mask.dtype() == DType::boolean, "{}: attention_mask must be bool (true = real token), got {} {}",
            who, dtype_name(attention_mask.dtype()), shape_str(attention_mask.shape()));
  MMG_CHECK(attention_mask.shape() == ids.shape(), "{}: attention_mask {} must have the shape of ids {}", who,
            shape_str(attention_mask.shape()), shape_str(ids.shape()));
  return attention_mask;
}

// ---- model ----

TextEncoder::TextEncoder(const TextEncoderConfig& cfg, Generator* gen) : config(cfg) {
  config.validate();
  const int64_t D = config.dim;
  word_embeddings = register_module("word_embeddings", std::make_shared<nn::Embedding>(config.vocab_size, D, gen));
  position_embeddings = register_module("position_embeddings", std::make_shared<nn::Embedding>(config.max_len, D, gen));
  token_type_embeddings =
      register_module("token_type_embeddings", std::make_shared<nn::Embedding>(config.type_vocab_size, D, gen));
  embeddings_ln = register_module("embeddings_ln", std::make_shared<nn::LayerNorm>(D, config.eps));
  embeddings_drop = register_module("embeddings_drop", std::make_shared<nn::Dropout>(config.dropout));
  nn::TransformerOptions o{.dim = D, .heads = config.heads, .mlp_ratio = config.mlp_ratio, .dropout = config.dropout,
                           .attn_dropout = config.attn_dropout, .eps = config.eps,
                           .skip_padding = config.skip_padding};
  encoder = register_module("encoder", std::make_shared<nn::TransformerEncoder>(o, config.depth, true, gen));
  init_transformer_weights(*this, gen);
}

Tensor TextEncoder::embed(const Tensor& ids, const Tensor& token_type_ids) const {
  check_token_ids("TextEncoder", ids, config.max_len);
  const int64_t S = ids.size(1);
  const TensorOptions ints{.dtype = DType::i64, .device = ids.device()};  // positions and types follow the ids
  Tensor types = token_type_ids;
  if (types.defined()) {
    MMG_CHECK(types.shape() == ids.shape() && (types.dtype() == DType::i64 || types.dtype() == DType::i32),
              "TextEncoder: token_type_ids {} {} must be integers of the shape of ids {}", dtype_name(types.dtype()),
              shape_str(types.shape()), shape_str(ids.shape()));
  } else {
    types = zeros(ids.shape(), ints);
  }
  Tensor x = word_embeddings->forward(ids) + position_embeddings->forward(arange(S, ints)) +
             token_type_embeddings->forward(types);
  return embeddings_drop->forward(embeddings_ln->forward(x));
}

Tensor TextEncoder::key_mask(const Tensor& ids, const Tensor& attention_mask) const {
  check_token_ids("TextEncoder", ids, config.max_len);
  return text_key_mask("TextEncoder", ids, attention_mask, config.pad_id);
}

TextOutput TextEncoder::forward(const Tensor& ids, const Tensor& attention_mask, const Tensor& token_type_ids) const {
  Tensor mask = key_mask(ids, attention_mask);
  Tensor tokens = encoder->forward(embed(ids, token_type_ids), mask);
  if (config.pool == "cls") return {tokens, select(tokens, 1, 0)};
  // Σ_s mask[b,s]·tokens[b,s,:] / Σ_s mask[b,s]
  Tensor weights = unsqueeze(mask.to(tokens.dtype()), -1);
  return {tokens, sum(mul(tokens, weights), {1}) / sum(weights, {1})};
}

}  // namespace mmg::models
