#include "models/objectives.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "core/autograd.h"

namespace mmg::models {

// ---------------------------------------------------------------------------------------------
// Reporting

const std::vector<std::string>& ObjectiveWeights::known() {
  static const std::vector<std::string> names{"itc", "itm", "mlm", "vqa", "cls", "cap"};
  return names;
}

double ObjectiveWeights::weight(const std::string& name) const {
  auto it = weights.find(name);
  return it == weights.end() ? 0.0 : it->second;
}

nlohmann::json ObjectiveWeights::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, w] : weights) j[name] = w;
  return j;
}

ObjectiveWeights ObjectiveWeights::from_json(const nlohmann::json& j) {
  MMG_CHECK(j.is_object(), "ObjectiveWeights: expected an object like {{\"itc\": 1, \"itm\": 1}}, got {}", j.dump());
  ObjectiveWeights w;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const auto& names = known();
    MMG_CHECK(std::find(names.begin(), names.end(), it.key()) != names.end(),
              "ObjectiveWeights: unknown objective '{}' (known: {})", it.key(), fmt::join(names, ", "));
    MMG_CHECK(it.value().is_number(), "ObjectiveWeights: weight of '{}' must be a number, got {}", it.key(),
              it.value().dump());
    const double v = it.value().get<double>();
    MMG_CHECK(std::isfinite(v) && v >= 0, "ObjectiveWeights: weight of '{}' must be finite and >= 0, got {}",
              it.key(), v);
    w.weights[it.key()] = v;
  }
  return w;
}

void Losses::add(const std::string& name, const Tensor& loss) {
  MMG_CHECK(loss.defined() && loss.numel() == 1, "Losses: loss '{}' must hold one value, got {}", name,
            loss.defined() ? shape_str(loss.shape()) : "undefined");
  MMG_CHECK(!has(name), "Losses: '{}' was added twice", name);
  items.emplace_back(name, loss.dim() == 0 ? loss : reshape(loss, {}));
}

bool Losses::has(const std::string& name) const {
  return std::any_of(items.begin(), items.end(), [&](const auto& p) { return p.first == name; });
}

const Tensor& Losses::get(const std::string& name) const {
  for (const auto& [n, t] : items)
    if (n == name) return t;
  std::vector<std::string> names;
  for (const auto& [n, t] : items) names.push_back(n);
  MMG_FAIL("Losses: no loss named '{}' (have: {})", name, fmt::join(names, ", "));
}

const Tensor& Losses::weigh(const ObjectiveWeights& w) {
  MMG_CHECK(!items.empty(), "Losses: nothing to weigh (no loss was added)");
  Tensor t;
  for (const auto& [name, loss] : items) {
    Tensor term = loss * w.weight(name);
    t = t.defined() ? t + term : term;
  }
  total = t;
  return total;
}

std::map<std::string, double> Losses::values() const {
  std::map<std::string, double> v;
  for (const auto& [name, loss] : items) v[name] = loss.item();
  if (total.defined()) v["total"] = total.item();
  return v;
}

// ---------------------------------------------------------------------------------------------
// Contrastive

// Rows scaled to unit length, the norm floored at 1e-12 (torch.nn.functional.normalize).
static Tensor unit_rows(const Tensor& x) { return x / clamp(norm(x, 2.0, {-1}, /*keepdim=*/true), 1e-12, std::nullopt); }

static void check_pair(const char* who, const Tensor& img, const Tensor& txt) {
  MMG_CHECK(img.defined() && txt.defined() && img.dim() == 2 && txt.dim() == 2 && img.size(1) == txt.size(1),
            "{}: image embeddings {} and text embeddings {} must be [B,E] and [B',E]", who,
            img.defined() ? shape_str(img.shape()) : "undefined", txt.defined() ? shape_str(txt.shape()) : "undefined");
}

Tensor contrastive_loss(const Tensor& image_emb, const Tensor& text_emb, const Tensor& logit_scale,
                        const ContrastiveOptions& options) {
  check_pair("contrastive_loss", image_emb, text_emb);
  Tensor img = unit_rows(image_emb), txt = unit_rows(text_emb);
  if (options.kind == ContrastiveOptions::Kind::hinge) return hinge_ranking_loss(img, txt, options.margin);
  return clip_loss(img, txt, logit_scale);
}

Tensor contrastive_loss_with_negatives(const Tensor& image_emb, const Tensor& text_emb, const Tensor& negative_emb,
                                       const Tensor& logit_scale, const ContrastiveOptions& options) {
  check_pair("contrastive_loss_with_negatives", image_emb, text_emb);
  check_pair("contrastive_loss_with_negatives", image_emb, negative_emb);
  const int64_t B = image_emb.size(0);
  MMG_CHECK(text_emb.size(0) == B && negative_emb.size(0) == B,
            "contrastive_loss_with_negatives: {} images, {} texts and {} negatives must be as many",
            B, text_emb.size(0), negative_emb.size(0));
  Tensor img = unit_rows(image_emb), txt = unit_rows(text_emb), neg = unit_rows(negative_emb);
  if (options.kind == ContrastiveOptions::Kind::hinge) {
    Tensor positive = sum(img * txt, {1}), edited = sum(img * neg, {1});
    return hinge_ranking_loss(img, txt, options.margin) + mean(relu(options.margin - positive + edited));
  }
  Tensor scale = exp(logit_scale);
  Tensor diag = arange(static_cast<double>(B), {.dtype = DType::i64, .device = img.device()});
  Tensor image_to_text = scale * matmul(img, transpose(cat({txt, neg}), 0, 1));  // [B,2B]
  Tensor text_to_image = scale * matmul(txt, transpose(img, 0, 1));              // [B,B]
  return 0.5 * (cross_entropy(image_to_text, diag) + cross_entropy(text_to_image, diag));
}

Tensor similarity_logits(const Tensor& image_emb, const Tensor& text_emb, const Tensor& logit_scale) {
  check_pair("similarity_logits", image_emb, text_emb);
  return exp(logit_scale) * matmul(unit_rows(image_emb), transpose(unit_rows(text_emb), 0, 1));
}

// ---------------------------------------------------------------------------------------------
// Hard negatives

namespace {

// Draws index k != skip from p(k) ∝ exp(s_k − max) by inverse CDF with uniform u in [0,1).
int64_t draw_excluding(const std::vector<double>& s, int64_t skip, double u, const char* what, int64_t row) {
  const int64_t n = static_cast<int64_t>(s.size());
  double top = -std::numeric_limits<double>::infinity();
  for (int64_t k = 0; k < n; ++k) {
    MMG_CHECK(!std::isnan(s[k]), "sample_hard_negatives: the similarity of {} {} holds NaN", what, row);
    if (k != skip) top = std::max(top, s[k]);
  }
  std::vector<double> w(static_cast<size_t>(n), 0.0);
  double total = 0.0;
  if (std::isfinite(top))
    for (int64_t k = 0; k < n; ++k)
      if (k != skip) total += (w[k] = std::exp(s[k] - top));
  if (!(total > 0.0) || !std::isfinite(total)) {  // all −inf, or +inf: choose uniformly among the others
    for (int64_t k = 0; k < n; ++k) w[k] = k == skip ? 0.0 : 1.0;
    total = static_cast<double>(n - 1);
  }
  const double target = u * total;
  double cum = 0.0;
  int64_t last = -1;
  for (int64_t k = 0; k < n; ++k) {
    if (k == skip || w[k] == 0.0) continue;
    cum += w[k];
    last = k;
    if (target < cum) return k;
  }
  return last;  // rounding left target at the very end: the last candidate
}

}  // namespace

HardNegatives sample_hard_negatives(const Tensor& sim, Generator* gen) {
  MMG_CHECK(sim.defined() && sim.dim() == 2 && sim.size(0) == sim.size(1),
            "sample_hard_negatives: similarities {} must be a square [B,B] matrix",
            sim.defined() ? shape_str(sim.shape()) : "undefined");
  const int64_t B = sim.size(0);
  MMG_CHECK(B >= 2, "sample_hard_negatives: a batch of {} has no negative pair (need B >= 2)", B);
  std::vector<double> s = sim.detach().to_vector<double>();
  std::vector<double> u = rand({2, B}, {.dtype = DType::f64}, gen).to_vector<double>();
  std::vector<int64_t> text_for_image(static_cast<size_t>(B)), image_for_text(static_cast<size_t>(B));
  std::vector<double> line(static_cast<size_t>(B));
  for (int64_t i = 0; i < B; ++i) {  // image i: row i over the texts
    for (int64_t j = 0; j < B; ++j) line[j] = s[i * B + j];
    text_for_image[i] = draw_excluding(line, i, u[i], "image", i);
  }
  for (int64_t j = 0; j < B; ++j) {  // text j: column j over the images
    for (int64_t i = 0; i < B; ++i) line[i] = s[i * B + j];
    image_for_text[j] = draw_excluding(line, j, u[B + j], "text", j);
  }
  const TensorOptions ints{.dtype = DType::i64, .device = sim.device()};
  return {from_vector(text_for_image, {B}, ints), from_vector(image_for_text, {B}, ints)};
}

// Fuses the pairs r.image_index[k], r.text_index[k] in one call and fills r.logits and r.loss
// (the cross-entropy against r.labels).
static void score_pairs(const char* who, const FusePairs& fuse, const ITMHead& head, ITMResult& r) {
  const int64_t n = r.image_index.size(0);
  Tensor fused = fuse(r.image_index, r.text_index);
  MMG_CHECK(fused.defined() && fused.dim() == 2 && fused.size(0) == n && fused.size(1) == head.in_features,
            "{}: the fusion returned {} for {} pairs; expected [{},{}]", who,
            fused.defined() ? shape_str(fused.shape()) : "undefined", n, n, head.in_features);
  r.logits = head.forward(fused);
  r.loss = cross_entropy(r.logits, r.labels);
}

ITMResult itm_loss(const FusePairs& fuse, const ITMHead& head, const Tensor& sim, Generator* gen) {
  HardNegatives neg = sample_hard_negatives(sim, gen);
  const int64_t B = sim.size(0);
  const TensorOptions ints{.dtype = DType::i64, .device = sim.device()};
  Tensor ar = arange(static_cast<double>(B), ints);
  ITMResult r;
  r.image_index = cat({ar, ar, neg.image_for_text});
  r.text_index = cat({ar, neg.text_for_image, ar});
  r.labels = cat({ones({B}, ints), zeros({2 * B}, ints)});
  score_pairs("itm_loss", fuse, head, r);
  return r;
}

ITMResult itm_loss_edits(const FusePairs& fuse, const ITMHead& head, int64_t batch, int64_t samples) {
  const int64_t B = batch, n = samples == 0 ? batch : samples;
  MMG_CHECK(B >= 1, "itm_loss_edits: a batch of {} pairs", B);
  MMG_CHECK(n >= 1 && n <= B, "itm_loss_edits: samples {} must be in [1,{}] (the batch), or 0 for all of it",
            samples, B);
  const TensorOptions ints{.dtype = DType::i64, .device = head.device()};
  Tensor ar = arange(static_cast<double>(n), ints);
  ITMResult r;
  r.image_index = cat({ar, ar});
  r.text_index = cat({ar, arange(static_cast<double>(B), static_cast<double>(B + n), 1.0, ints)});
  r.labels = cat({ones({n}, ints), zeros({n}, ints)});
  score_pairs("itm_loss_edits", fuse, head, r);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Masked language modelling

MaskedTokens mask_tokens(const Tensor& ids, const Tensor& attention_mask, int64_t vocab_size, int64_t mask_id,
                         const std::vector<int64_t>& special_ids, double prob, Generator* gen,
                         const MaskingOptions& options) {
  MMG_CHECK(ids.defined() && ids.dim() == 2 && (ids.dtype() == DType::i64 || ids.dtype() == DType::i32),
            "mask_tokens: ids {} must be [B,S] of integers", ids.defined() ? shape_str(ids.shape()) : "undefined");
  if (attention_mask.defined())
    MMG_CHECK(attention_mask.shape() == ids.shape(), "mask_tokens: attention mask {} must match ids {}",
              shape_str(attention_mask.shape()), shape_str(ids.shape()));
  MMG_CHECK(vocab_size > 0 && mask_id >= 0 && mask_id < vocab_size,
            "mask_tokens: mask_id {} is outside the vocabulary [0,{})", mask_id, vocab_size);
  MMG_CHECK(prob >= 0 && prob <= 1, "mask_tokens: prob must be in [0,1], got {}", prob);
  MMG_CHECK(options.mask_frac >= 0 && options.random_frac >= 0 && options.mask_frac + options.random_frac <= 1,
            "mask_tokens: mask_frac {} and random_frac {} must be >= 0 with a sum <= 1", options.mask_frac,
            options.random_frac);
  const std::set<int64_t> special(special_ids.begin(), special_ids.end());
  std::vector<int64_t> ordinary;  // the ids a random replacement may take
  for (int64_t v = 0; v < vocab_size; ++v)
    if (!special.count(v)) ordinary.push_back(v);
  MMG_CHECK(!ordinary.empty(), "mask_tokens: every id of the vocabulary of {} is special", vocab_size);

  const int64_t n = ids.numel();
  std::vector<int64_t> in = ids.to_vector<int64_t>();
  std::vector<double> real = attention_mask.defined() ? attention_mask.to_vector<double>()
                                                      : std::vector<double>(static_cast<size_t>(n), 1.0);
  std::vector<double> u = rand({n, 3}, {.dtype = DType::f64}, gen).to_vector<double>();
  std::vector<int64_t> labels(static_cast<size_t>(n), kIgnoreIndex);
  for (int64_t k = 0; k < n; ++k) {
    MMG_CHECK(in[k] >= 0 && in[k] < vocab_size, "mask_tokens: id {} at position {} is outside the vocabulary [0,{})",
              in[k], k, vocab_size);
    if (real[k] == 0.0 || special.count(in[k]) || u[3 * k] >= prob) continue;
    labels[k] = in[k];
    const double action = u[3 * k + 1];
    if (action < options.mask_frac) {
      in[k] = mask_id;
    } else if (action < options.mask_frac + options.random_frac) {
      const auto pick = static_cast<size_t>(u[3 * k + 2] * static_cast<double>(ordinary.size()));
      in[k] = ordinary[std::min(pick, ordinary.size() - 1)];
    }
  }
  const TensorOptions ints{.dtype = DType::i64, .device = ids.device()};
  return {from_vector(in, ids.shape(), ints), from_vector(labels, ids.shape(), ints)};
}

Tensor mlm_loss(const Tensor& logits, const Tensor& labels) {
  MMG_CHECK(logits.defined() && labels.defined() && logits.dim() == 3 && labels.dim() == 2 &&
                logits.size(0) == labels.size(0) && logits.size(1) == labels.size(1),
            "mlm_loss: logits {} must be [B,S,V] for labels {} [B,S]",
            logits.defined() ? shape_str(logits.shape()) : "undefined",
            labels.defined() ? shape_str(labels.shape()) : "undefined");
  return cross_entropy(reshape(logits, {-1, logits.size(2)}), reshape(labels, {-1}), kIgnoreIndex);
}

// ---------------------------------------------------------------------------------------------
// Captioning

Tensor caption_lm_loss(const Tensor& logits, const Tensor& tokens, int64_t pad_id) {
  MMG_CHECK(logits.defined() && tokens.defined() && logits.dim() == 3 && tokens.dim() == 2 &&
                logits.size(0) == tokens.size(0) && logits.size(1) == tokens.size(1) && tokens.size(1) >= 2,
            "caption_lm_loss: logits {} must be [B,T,V] for tokens {} [B,T] with T >= 2",
            logits.defined() ? shape_str(logits.shape()) : "undefined",
            tokens.defined() ? shape_str(tokens.shape()) : "undefined");
  const int64_t T = tokens.size(1), V = logits.size(2);
  Tensor predicted = reshape(slice(logits, 1, 0, T - 1), {-1, V});
  Tensor target = reshape(slice(tokens.to(DType::i64), 1, 1, T), {-1});
  return cross_entropy(predicted, target, pad_id);
}

}  // namespace mmg::models
