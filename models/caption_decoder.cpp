#include "models/caption_decoder.h"

#include <algorithm>
#include <cmath>

#include "core/autograd.h"
#include "models/config.h"
#include "models/init_weights.h"

namespace mmg::models {

// ---------------------------------------------------------------------------------------------
// Config

nlohmann::json CaptionDecoderConfig::to_json() const { return write_fields(*this, {{"family", "decoder"}}); }

CaptionDecoderConfig CaptionDecoderConfig::from_json(const nlohmann::json& j) {
  return read_config<CaptionDecoderConfig>(j, "CaptionDecoderConfig", "decoder");
}

CaptionDecoderConfig CaptionDecoderConfig::preset(const std::string& name) {
  CaptionDecoderConfig c;
  if (name == "decoder-tiny") {
    c.vocab_size = 1000, c.max_len = 32, c.dim = 128, c.depth = 2, c.heads = 4, c.mlp_ratio = 4.0;
    c.dropout = 0.1, c.memory_dim = 128;
  } else if (name == "decoder-micro") {
    c.vocab_size = 50, c.max_len = 8, c.dim = 16, c.depth = 1, c.heads = 2, c.mlp_ratio = 2.0;
    c.dropout = 0.0, c.memory_dim = 16;
  } else {
    MMG_FAIL("CaptionDecoderConfig: unknown preset '{}' (known: {})", name, fmt::join(preset_names(), ", "));
  }
  c.validate();
  return c;
}

std::vector<std::string> CaptionDecoderConfig::preset_names() { return {"decoder-tiny", "decoder-micro"}; }

void CaptionDecoderConfig::validate() const {
  MMG_CHECK(vocab_size > 0 && max_len > 0 && dim > 0 && depth >= 0 && heads > 0 && memory_dim > 0,
            "CaptionDecoderConfig: sizes must be positive (vocab_size {}, max_len {}, dim {}, depth {} >= 0, heads "
            "{}, memory_dim {})",
            vocab_size, max_len, dim, depth, heads, memory_dim);
  MMG_CHECK(dim % heads == 0, "CaptionDecoderConfig: dim {} is not divisible by heads {}", dim, heads);
  MMG_CHECK(mlp_ratio > 0, "CaptionDecoderConfig: mlp_ratio must be positive, got {}", mlp_ratio);
  MMG_CHECK(dropout >= 0 && dropout < 1, "CaptionDecoderConfig: dropout must be in [0,1), got {}", dropout);
  MMG_CHECK(attn_dropout >= 0 && attn_dropout < 1, "CaptionDecoderConfig: attn_dropout must be in [0,1), got {}",
            attn_dropout);
  for (auto [name, id] : {std::pair{"bos_id", bos_id}, {"eos_id", eos_id}, {"pad_id", pad_id}})
    MMG_CHECK(id >= 0 && id < vocab_size, "CaptionDecoderConfig: {} {} is outside the vocabulary [0,{})", name, id,
              vocab_size);
  MMG_CHECK(bos_id != eos_id && eos_id != pad_id && bos_id != pad_id,
            "CaptionDecoderConfig: bos_id {}, eos_id {} and pad_id {} must differ", bos_id, eos_id, pad_id);
}

// ---------------------------------------------------------------------------------------------
// Model

CaptionDecoder::CaptionDecoder(const CaptionDecoderConfig& c, Generator* gen) : config(c) {
  config.validate();
  token_embedding = register_module("token_embedding", std::make_shared<nn::Embedding>(c.vocab_size, c.dim, gen));
  position_embedding =
      register_module("position_embedding", std::make_shared<nn::LearnedPositionalEmbedding>(c.max_len, c.dim, gen));
  dropout = register_module("dropout", std::make_shared<nn::Dropout>(c.dropout));  // masks from the global generator
  layers = register_module("layers", std::make_shared<nn::ModuleList<nn::TransformerDecoderLayer>>());
  const nn::TransformerOptions o{
      .dim = c.dim,
      .heads = c.heads,
      .mlp_ratio = c.mlp_ratio,
      .dropout = c.dropout,
      .attn_dropout = c.attn_dropout,
      .memory_dim = c.memory_dim};
  for (int64_t l = 0; l < c.depth; ++l) layers->push_back(std::make_shared<nn::TransformerDecoderLayer>(o, gen));
  ln_f = register_module("ln_f", std::make_shared<nn::LayerNorm>(c.dim));
  if (!c.tie_word_embeddings)
    lm_head = register_module("lm_head", std::make_shared<nn::Linear>(c.dim, c.vocab_size, true, gen));
  // As the encoders (models/init_weights.h): Linear weights and the token table ~ trunc_normal(0.02),
  // biases 0. (N(0,1) token rows would also make a tied head's first logits huge.)
  init_transformer_weights(*this, gen);
}

Tensor CaptionDecoder::project(const Tensor& hidden) const {
  return lm_head ? lm_head->forward(hidden) : linear(hidden, token_embedding->weight);
}

Tensor CaptionDecoder::forward(const Tensor& tokens, const Tensor& image_tokens, const Tensor& image_mask) const {
  MMG_CHECK(tokens.defined() && image_tokens.defined(), "CaptionDecoder: undefined tokens or image tokens");
  MMG_CHECK(tokens.dim() == 2 && (tokens.dtype() == DType::i64 || tokens.dtype() == DType::i32),
            "CaptionDecoder: tokens {} {} must be [B,T] i64", shape_str(tokens.shape()), dtype_name(tokens.dtype()));
  MMG_CHECK(tokens.size(1) >= 1 && tokens.size(1) <= config.max_len,
            "CaptionDecoder: tokens {} has {} positions; max_len is {}", shape_str(tokens.shape()), tokens.size(1),
            config.max_len);
  MMG_CHECK(image_tokens.dim() == 3 && image_tokens.size(0) == tokens.size(0) &&
                image_tokens.size(2) == config.memory_dim,
            "CaptionDecoder: image tokens {} must be [B={},N,{}] for tokens {}", shape_str(image_tokens.shape()),
            tokens.size(0), config.memory_dim, shape_str(tokens.shape()));
  Tensor x = position_embedding->forward(token_embedding->forward(tokens));
  x = dropout->forward(x);
  for (const auto& layer : *layers) x = layer->forward(x, image_tokens, Tensor(), image_mask);
  return project(ln_f->forward(x));
}

// ---------------------------------------------------------------------------------------------
// Decoding

namespace {

// Switches a module to eval mode for the life of the guard, then restores its mode.
class EvalGuard {
 public:
  explicit EvalGuard(nn::Module& m) : m_(m), was_training_(m.is_training()) { m_.eval(); }
  ~EvalGuard() { m_.train(was_training_); }
  EvalGuard(const EvalGuard&) = delete;
  EvalGuard& operator=(const EvalGuard&) = delete;

 private:
  nn::Module& m_;
  bool was_training_;
};

// Rows `rows` of x along dim 0 (images or masks repeated for each live prefix).
Tensor take_rows(const Tensor& x, const std::vector<int64_t>& rows) {
  if (!x.defined()) return x;
  return index_select(x, 0, from_vector(rows, {}, {.dtype = DType::i64, .device = x.device()}));
}

// The live prefixes as [n,t] ids on `device` (the image tokens'): the search itself runs on the host.
Tensor prefixes_tensor(const std::vector<std::vector<int64_t>>& prefixes, Device device) {
  const int64_t n = static_cast<int64_t>(prefixes.size()), t = static_cast<int64_t>(prefixes[0].size());
  std::vector<int64_t> flat;
  flat.reserve(static_cast<size_t>(n * t));
  for (const auto& p : prefixes) flat.insert(flat.end(), p.begin(), p.end());
  return from_vector(flat, {n, t}, {.dtype = DType::i64, .device = device});
}

}  // namespace

int64_t CaptionDecoder::check_decode_args(const char* who, const Tensor& image_tokens, const Tensor& image_mask,
                                          int64_t max_new) const {
  MMG_CHECK(image_tokens.defined() && image_tokens.dim() == 3 && image_tokens.size(0) >= 1 &&
                image_tokens.size(2) == config.memory_dim,
            "CaptionDecoder::{}: image tokens {} must be [B,N,{}] with B >= 1", who,
            image_tokens.defined() ? shape_str(image_tokens.shape()) : "undefined", config.memory_dim);
  if (image_mask.defined())
    MMG_CHECK(image_mask.dim() == 2 && image_mask.size(0) == image_tokens.size(0) &&
                  image_mask.size(1) == image_tokens.size(1),
              "CaptionDecoder::{}: image mask {} must be [B,N] for image tokens {}", who,
              shape_str(image_mask.shape()), shape_str(image_tokens.shape()));
  if (max_new < 0) max_new = config.max_len - 1;
  // The last step feeds BOS and max_new − 1 generated tokens: max_new positions.
  MMG_CHECK(max_new >= 1 && max_new <= config.max_len, "CaptionDecoder::{}: max_new {} must be in [1, max_len {}]",
            who, max_new, config.max_len);
  return max_new;
}

std::vector<std::vector<double>> CaptionDecoder::next_log_probs(const Tensor& prefixes, const Tensor& image_tokens,
                                                                const Tensor& image_mask) const {
  Tensor logits = forward(prefixes, image_tokens, image_mask);  // [n,t,V]
  Tensor last = select(logits, 1, prefixes.size(1) - 1);        // [n,V]
  std::vector<double> lp = log_softmax(last, -1).to_vector<double>();
  const int64_t n = last.size(0), V = last.size(1);
  std::vector<std::vector<double>> rows(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) rows[i].assign(lp.begin() + i * V, lp.begin() + (i + 1) * V);
  return rows;
}

std::vector<std::vector<int64_t>> CaptionDecoder::greedy_decode(const Tensor& image_tokens, int64_t max_new,
                                                                const Tensor& image_mask) {
  max_new = check_decode_args("greedy_decode", image_tokens, image_mask, max_new);
  EvalGuard eval_mode(*this);
  NoGradGuard no_grad;
  const int64_t B = image_tokens.size(0);
  std::vector<std::vector<int64_t>> prefixes(static_cast<size_t>(B), {config.bos_id});
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(B));
  std::vector<bool> done(static_cast<size_t>(B), false);
  for (int64_t step = 0; step < max_new; ++step) {
    // Only the rows still writing are recomputed.
    std::vector<int64_t> live;
    for (int64_t b = 0; b < B; ++b)
      if (!done[b]) live.push_back(b);
    if (live.empty()) break;
    std::vector<std::vector<int64_t>> live_prefixes;
    for (int64_t b : live) live_prefixes.push_back(prefixes[b]);
    auto lp = next_log_probs(prefixes_tensor(live_prefixes, image_tokens.device()), take_rows(image_tokens, live),
                             take_rows(image_mask, live));
    for (size_t i = 0; i < live.size(); ++i) {
      const int64_t b = live[i];
      const int64_t best = std::max_element(lp[i].begin(), lp[i].end()) - lp[i].begin();  // first among ties
      if (best == config.eos_id) {
        done[b] = true;
        continue;
      }
      prefixes[b].push_back(best);
      out[b].push_back(best);
    }
  }
  return out;
}

std::vector<std::vector<Hypothesis>> CaptionDecoder::beam_search(const Tensor& image_tokens, int64_t beam,
                                                                 int64_t max_new, double length_penalty,
                                                                 const Tensor& image_mask) {
  max_new = check_decode_args("beam_search", image_tokens, image_mask, max_new);
  MMG_CHECK(beam >= 1, "CaptionDecoder::beam_search: beam must be >= 1, got {}", beam);
  MMG_CHECK(std::isfinite(length_penalty), "CaptionDecoder::beam_search: length_penalty must be finite");
  EvalGuard eval_mode(*this);
  NoGradGuard no_grad;
  const int64_t B = image_tokens.size(0), V = config.vocab_size;
  auto normalised = [&](double log_prob, int64_t length) {
    return log_prob / std::pow(static_cast<double>(length), length_penalty);
  };

  struct Live {
    std::vector<int64_t> prefix;  // BOS first
    double log_prob;
  };
  struct Candidate {
    double log_prob;  // the extended prefix's sum
    double step;      // this token's log-prob (breaks ties so that beam 1 picks greedy's token)
    int64_t from, token;
  };

  std::vector<std::vector<Hypothesis>> results(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    std::vector<Live> live{{{config.bos_id}, 0.0}};
    std::vector<Hypothesis> finished;
    for (int64_t step = 1; step <= max_new && !live.empty(); ++step) {
      std::vector<std::vector<int64_t>> prefixes;
      for (const Live& l : live) prefixes.push_back(l.prefix);
      const std::vector<int64_t> rows(live.size(), b);
      auto lp = next_log_probs(prefixes_tensor(prefixes, image_tokens.device()), take_rows(image_tokens, rows),
                               take_rows(image_mask, rows));

      std::vector<Candidate> cands;
      cands.reserve(live.size() * static_cast<size_t>(V));
      for (size_t i = 0; i < live.size(); ++i)
        for (int64_t v = 0; v < V; ++v)
          cands.push_back({live[i].log_prob + lp[i][v], lp[i][v], static_cast<int64_t>(i), v});
      const size_t keep = std::min(cands.size(), static_cast<size_t>(2 * beam));
      std::partial_sort(cands.begin(), cands.begin() + keep, cands.end(), [](const Candidate& x, const Candidate& y) {
        if (x.log_prob != y.log_prob) return x.log_prob > y.log_prob;
        if (x.step != y.step) return x.step > y.step;
        if (x.from != y.from) return x.from < y.from;
        return x.token < y.token;
      });

      std::vector<Live> next;
      for (size_t r = 0; r < keep; ++r) {
        const Candidate& c = cands[r];
        const std::vector<int64_t>& prefix = live[c.from].prefix;
        if (c.token == config.eos_id) {
          if (r < static_cast<size_t>(beam)) {
            Hypothesis h{{prefix.begin() + 1, prefix.end()}, c.log_prob, normalised(c.log_prob, step), true};
            finished.push_back(std::move(h));
          }
        } else if (next.size() < static_cast<size_t>(beam)) {
          Live l{prefix, c.log_prob};
          l.prefix.push_back(c.token);
          next.push_back(std::move(l));
        }
      }
      live = std::move(next);
      if (finished.size() >= static_cast<size_t>(beam)) break;
      if (step == max_new)  // out of room: the live prefixes end here, without EOS
        for (const Live& l : live)
          finished.push_back({{l.prefix.begin() + 1, l.prefix.end()}, l.log_prob, normalised(l.log_prob, step), false});
    }
    std::stable_sort(finished.begin(), finished.end(),
                     [](const Hypothesis& x, const Hypothesis& y) { return x.score > y.score; });
    if (finished.size() > static_cast<size_t>(beam)) finished.resize(static_cast<size_t>(beam));
    results[b] = std::move(finished);
  }
  return results;
}

}  // namespace mmg::models
