// CaptionDecoder: a small GPT-style decoder that writes a caption while looking at an image.
//
//   tokens [B,T] i64 ──token_embedding + position_embedding──> x [B,T,D]
//   x = TransformerDecoderLayer_l(x, image_tokens)   for l = 0 … depth−1
//        (pre-LN: causal self-attention, cross-attention to the image tokens, MLP)
//   logits = lm_head(ln_f(x))                                          [B,T,V]
//
// Position t's logits predict token t+1: a caption is fed as [BOS, w1, …, wn, EOS, PAD…] and
// the loss (caption_lm_loss in models/objectives.h) compares logits[:, :-1] with tokens[:, 1:],
// ignoring PAD. Padding is on the right, so the causal mask alone keeps real tokens from
// seeing it; no key mask is needed for the self-attention.
//
// Parameters (state-dict keys):
//   token_embedding.weight        [V,D]
//   position_embedding.weight     [max_len,D]
//   layers.{l}.ln_1 / self_attn / ln_2 / cross_attn / ln_3 / mlp.{fc1,fc2}   (nn/transformer.h)
//   ln_f.weight, ln_f.bias        [D]
//   lm_head.weight [V,D], lm_head.bias [V]   — only when the head is untied (the default).
// Init as the encoders (models/init_weights.h): every Linear weight and both tables
// ~ trunc_normal(0.02), biases 0, LayerNorms 1/0.
// With tie_word_embeddings the output projection reuses token_embedding.weight (logits = x·Eᵀ,
// no bias, as GPT-2): the state dict then has no lm_head keys. The presets keep it untied so the
// input and output tables can learn different things on a small vocabulary; tying halves the
// embedding parameters when the vocabulary is large.
//
// Decoding recomputes the whole prefix at every step (no key/value cache): the decoders here are
// small and captions short, and a cache would add state that the readable forward does not need.
// Both decoders run under NoGradGuard in eval mode (the module's mode is restored afterwards).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nn/embeddings.h"
#include "nn/layers.h"
#include "nn/module_list.h"
#include "nn/transformer.h"

namespace mmg::models {

struct CaptionDecoderConfig {
  int64_t vocab_size = 1000;
  int64_t max_len = 32;      // longest token sequence (BOS included) the positions cover
  int64_t dim = 128;
  int64_t depth = 2;
  int64_t heads = 4;
  double mlp_ratio = 4.0;
  double dropout = 0.0;
  double attn_dropout = 0.0;  // on the attention probabilities (nn/attention.h), training only
  int64_t memory_dim = 128;  // width of the image tokens the decoder attends to
  // The tokenizer's [CLS], [SEP] and [PAD] (train/tokenizer.h puts [PAD] [UNK] [CLS] [SEP] [MASK]
  // first), so a caption encoded as "[CLS] words [SEP] [PAD]..." is the decoder's input as it is.
  int64_t bos_id = 2;
  int64_t eos_id = 3;
  int64_t pad_id = 0;
  bool tie_word_embeddings = false;

  // Every field, once: to_json and from_json both walk this list (models/config.h).
  template <class Self, class F>
  static void fields(Self& c, F&& f) {
    f("vocab_size", c.vocab_size), f("max_len", c.max_len);
    f("dim", c.dim), f("depth", c.depth), f("heads", c.heads), f("mlp_ratio", c.mlp_ratio);
    f("dropout", c.dropout), f("attn_dropout", c.attn_dropout), f("memory_dim", c.memory_dim);
    f("bos_id", c.bos_id), f("eos_id", c.eos_id), f("pad_id", c.pad_id);
    f("tie_word_embeddings", c.tie_word_embeddings);
  }

  nlohmann::json to_json() const;
  // {"family": "decoder", "vocab_size": ..., ...}, read strictly by models/config.h's ConfigReader:
  // keys missing from `j` keep their defaults, an unknown key or a wrong type is an error. The
  // result is validated (see validate()).
  static CaptionDecoderConfig from_json(const nlohmann::json& j);
  // "decoder-tiny": D 128, depth 2, 4 heads, dropout 0.1, vocabulary 1000 and 32 positions
  // (text-tiny's), memory 128 (vit-tiny's width).
  // "decoder-micro": D 16, depth 1, 2 heads, vocabulary 50 and 8 positions (text-micro's),
  // memory 16 (vit-micro's): for tests.
  static CaptionDecoderConfig preset(const std::string& name);
  static std::vector<std::string> preset_names();
  void validate() const;  // throws Error naming the bad field
  bool operator==(const CaptionDecoderConfig&) const = default;
};

// One decoded caption: tokens without BOS, ending before EOS (EOS itself is not included).
struct Hypothesis {
  std::vector<int64_t> tokens;
  double log_prob = 0.0;  // Σ log p(token | prefix, image) over the generated tokens, EOS included if emitted
  double score = 0.0;     // log_prob / length^length_penalty, length = generated tokens incl. EOS
  bool finished = false;  // emitted EOS (false: stopped at max_len)
};

class CaptionDecoder : public nn::Module {
 public:
  // `gen` draws the initial weights (the global generator when null); dropout masks come from
  // the global generator, as in every layer (nn/layers.h).
  explicit CaptionDecoder(const CaptionDecoderConfig& config, Generator* gen = nullptr);

  // tokens [B,T] i64 with T <= max_len; image_tokens [B,N,memory_dim]; image_mask [B,N] bool
  // (true = real token) or undefined. Returns logits [B,T,vocab_size].
  Tensor forward(const Tensor& tokens, const Tensor& image_tokens, const Tensor& image_mask = Tensor()) const;

  // Greedy decoding of B images at once: at each step append argmax log p(· | prefix). A row
  // stops at EOS or after max_new tokens (max_new <= max_len; default max_len − 1). Returns the
  // generated tokens of each image (no BOS, no EOS).
  std::vector<std::vector<int64_t>> greedy_decode(const Tensor& image_tokens, int64_t max_new = -1,
                                                  const Tensor& image_mask = Tensor());

  // Beam search, one image at a time (fairseq's scheme): keep `beam` live prefixes ranked by
  // their summed log-probability. At each step every live prefix is extended by every token and
  // the best 2·beam extensions are taken in order: an extension ending in EOS that ranks among
  // the first `beam` is finished (kept with its score), and the best `beam` extensions without
  // EOS become the next live prefixes. The search for an image stops once `beam` hypotheses are
  // finished, or after max_new tokens (live prefixes are then finished as they are). Finished
  // hypotheses are ranked by the length-normalised score log_prob / length^length_penalty
  // (length = tokens generated, EOS included; penalty 0 = raw sum, 1 = mean log-prob per token).
  // Returns, per image, up to `beam` hypotheses best first. With beam 1 this is greedy decoding.
  std::vector<std::vector<Hypothesis>> beam_search(const Tensor& image_tokens, int64_t beam, int64_t max_new = -1,
                                                   double length_penalty = 1.0,
                                                   const Tensor& image_mask = Tensor());

  // The output projection alone: hidden [...,D] -> logits [...,V] (tied or not).
  Tensor project(const Tensor& hidden) const;

  std::string type_name() const override { return "CaptionDecoder"; }

  CaptionDecoderConfig config;
  std::shared_ptr<nn::Embedding> token_embedding;
  std::shared_ptr<nn::LearnedPositionalEmbedding> position_embedding;
  std::shared_ptr<nn::Dropout> dropout;
  std::shared_ptr<nn::ModuleList<nn::TransformerDecoderLayer>> layers;
  std::shared_ptr<nn::LayerNorm> ln_f;
  std::shared_ptr<nn::Linear> lm_head;  // null when tied

 private:
  // Log-probabilities of the next token after each prefix: prefixes [n,t] -> [n,V] (host values).
  std::vector<std::vector<double>> next_log_probs(const Tensor& prefixes, const Tensor& image_tokens,
                                                  const Tensor& image_mask) const;
  int64_t check_decode_args(const char* who, const Tensor& image_tokens, const Tensor& image_mask,
                            int64_t max_new) const;
};

}  // namespace mmg::models
