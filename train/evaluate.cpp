#include "train/evaluate.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "core/autograd.h"
#include "core/error.h"
#include "train/plot.h"

namespace mmg {

using nlohmann::json;

namespace {

// Cosine similarities: the contrastive embeddings are unit vectors (DualEncoder::embed_*), and
// a logit scale of 0 (exp 0 = 1) leaves their dot products unscaled.
Tensor cosine_matrix(const Tensor& image_emb, const Tensor& text_emb) {
  return models::similarity_logits(image_emb, text_emb, scalar_like(image_emb, 0.0));
}

// Row i of a with row i of b, for unit rows: Σ_e a[i,e]·b[i,e].
std::vector<float> row_cosines(const Tensor& a, const Tensor& b) { return sum(mul(a, b), {1}).to_vector<float>(); }

// The model in eval mode and without a graph for the duration of a scope.
class Inference {
 public:
  explicit Inference(models::VLM& m) : model_(m), was_training_(m.is_training()) { model_.eval(); }
  ~Inference() { model_.train(was_training_); }

 private:
  NoGradGuard no_grad_;
  models::VLM& model_;
  bool was_training_;
};

ImageNorm norm_of(const TrainConfig& c) { return {c.data.mean, c.data.std}; }

// Inputs are made on the host and moved to the model's device; what comes back (logits,
// embeddings) is read back to the host by to_vector where the metrics need it.
Tensor on_model(const EvalContext& ctx, const Tensor& t) {
  const Device d = ctx.model.device();
  return t.defined() && t.device() != d ? t.to(d) : t;
}

Tensor images_on_model(const EvalContext& ctx, const std::vector<const Sample*>& samples) {
  return on_model(ctx, images_to_tensor(samples, norm_of(ctx.config)));
}

// Contrastive embeddings of images and of texts, in batches.
Tensor image_embeddings(const EvalContext& ctx, const std::vector<const Sample*>& samples, int64_t batch) {
  const auto& dual = ctx.model.model->dual;
  std::vector<Tensor> parts;
  for (size_t lo = 0; lo < samples.size(); lo += static_cast<size_t>(batch)) {
    std::vector<const Sample*> chunk(samples.begin() + lo, samples.begin() + std::min(samples.size(), lo + batch));
    parts.push_back(dual->embed_image(dual->vision->forward(images_on_model(ctx, chunk))));
  }
  return cat(parts, 0);
}

Tensor text_embeddings(const EvalContext& ctx, const std::vector<std::string>& texts, int64_t batch) {
  const auto& dual = ctx.model.model->dual;
  std::vector<Tensor> parts;
  for (size_t lo = 0; lo < texts.size(); lo += static_cast<size_t>(batch)) {
    std::vector<std::string> chunk(texts.begin() + lo, texts.begin() + std::min(texts.size(), lo + batch));
    TokenBatch t = encode_texts(ctx.tokenizer, chunk, ctx.config.max_len);
    parts.push_back(dual->embed_text(dual->text->forward(on_model(ctx, t.ids), on_model(ctx, t.attention_mask))));
  }
  return cat(parts, 0);
}

// The matching head's score, logit(match) − logit(no match), of image i with texts[i].
std::vector<float> itm_scores(const EvalContext& ctx, const std::vector<const Sample*>& samples,
                              const std::vector<std::string>& texts, int64_t batch) {
  std::vector<float> scores;
  for (size_t lo = 0; lo < samples.size(); lo += static_cast<size_t>(batch)) {
    const size_t hi = std::min(samples.size(), lo + batch);
    std::vector<const Sample*> chunk(samples.begin() + lo, samples.begin() + hi);
    std::vector<std::string> words(texts.begin() + lo, texts.begin() + hi);
    TokenBatch t = encode_texts(ctx.tokenizer, words, ctx.config.max_len);
    Tensor logits =
        ctx.model.match_logits(images_on_model(ctx, chunk), on_model(ctx, t.ids), on_model(ctx, t.attention_mask));
    std::vector<float> l = logits.contiguous().to_vector<float>();
    for (size_t i = 0; i < chunk.size(); ++i) scores.push_back(l[2 * i + 1] - l[2 * i]);
  }
  return scores;
}

void add_row(EvalReport& r, const std::string& key, const std::string& label, double value, double chance,
             const std::string& note = "") {
  r.metrics[key] = value;
  if (std::isfinite(chance)) r.metrics[key + "_chance"] = chance;
  r.rows.push_back({label, value, chance, note});
}

// ---- retrieval ----

void evaluate_retrieval(const EvalContext& ctx, const std::vector<const Sample*>& gallery, const std::string& tag,
                        int64_t batch, EvalReport& report) {
  std::vector<std::string> captions;
  for (const Sample* s : gallery) captions.push_back(s->captions.at(0));
  Tensor sim = cosine_matrix(image_embeddings(ctx, gallery, batch), text_embeddings(ctx, captions, batch));
  const int64_t N = static_cast<int64_t>(gallery.size());
  std::vector<int64_t> text_to_image(static_cast<size_t>(N));
  for (int64_t j = 0; j < N; ++j) text_to_image[j] = j;
  RetrievalResult r = retrieval_metrics(sim, text_to_image, {1, 5, 10});
  const std::string prefix = tag.empty() ? "retrieval" : "retrieval_" + tag;
  const std::string label = tag.empty() ? "" : " (" + tag + ")";
  for (const auto& [K, recall] : r.image_to_text)
    add_row(report, fmt::format("{}_i2t_r{}", prefix, K), fmt::format("image→text R@{}{}", K, label), recall,
            r.image_to_text_chance.at(K), fmt::format("gallery {}", N));
  for (const auto& [K, recall] : r.text_to_image)
    add_row(report, fmt::format("{}_t2i_r{}", prefix, K), fmt::format("text→image R@{}{}", K, label), recall,
            r.text_to_image_chance.at(K), fmt::format("gallery {}", N));
  if (tag.empty()) report.metrics["gallery_size"] = N;
}

// ---- minimal-edit negatives ----

// The share of pairs where the true caption scores above its edit, over all pairs and, where
// the source names the kinds of edit, per kind ("negatives_itc_accuracy_relation", ...): a
// model that sees colours but not left from right shows it here.
void add_win_rows(EvalReport& report, const std::string& key, const std::string& objective,
                  const std::vector<float>& pos, const std::vector<float>& neg, const std::vector<std::string>& kinds) {
  std::map<std::string, std::pair<double, double>> by_kind;  // kind → (wins, pairs)
  double wins = 0;
  for (size_t i = 0; i < pos.size(); ++i) {
    const bool win = pos[i] > neg[i];
    wins += win;
    if (!kinds[i].empty()) {
      by_kind[kinds[i]].first += win;
      by_kind[kinds[i]].second += 1;
    }
  }
  add_row(report, key, fmt::format("true caption > its edit ({})", objective), wins / static_cast<double>(pos.size()),
          0.5, fmt::format("{} pairs", pos.size()));
  for (const auto& [kind, counts] : by_kind)
    add_row(report, key + "_" + kind, fmt::format("  {} edits ({})", kind, objective), counts.first / counts.second, 0.5,
            fmt::format("{} pairs", counts.second));
}

void evaluate_negatives(const EvalContext& ctx, const std::vector<const Sample*>& gallery, int64_t batch,
                        EvalReport& report) {
  std::vector<const Sample*> pair_samples;
  std::vector<std::string> positives, negatives, kinds;
  for (const Sample* s : gallery) {
    if (s->negatives.empty()) continue;
    const bool named = !s->negative_edits.empty() && s->negative_edits[0].size() == s->negatives[0].size();
    for (size_t j = 0; j < s->negatives[0].size(); ++j) {
      pair_samples.push_back(s);
      positives.push_back(s->captions[0]);
      negatives.push_back(s->negatives[0][j]);
      kinds.push_back(named ? s->negative_edits[0][j] : "");
    }
  }
  if (pair_samples.empty()) return;
  Tensor img = image_embeddings(ctx, pair_samples, batch);
  std::vector<float> pos = row_cosines(img, text_embeddings(ctx, positives, batch));
  std::vector<float> neg = row_cosines(img, text_embeddings(ctx, negatives, batch));
  add_win_rows(report, "negatives_itc_accuracy", "itc", pos, neg, kinds);
  if (ctx.model.itm_head) {
    std::vector<float> sp = itm_scores(ctx, pair_samples, positives, batch);
    std::vector<float> sn = itm_scores(ctx, pair_samples, negatives, batch);
    add_win_rows(report, "negatives_itm_accuracy", "itm", sp, sn, kinds);
  }
}

// ---- VQA ----

struct AskedQuestion {
  const Sample* sample;
  const QuestionAnswer* qa;
};

void evaluate_vqa(const EvalContext& ctx, const Dataset& data, const std::vector<const Sample*>& samples,
                  int64_t batch, EvalReport& report) {
  std::vector<AskedQuestion> asked;
  for (const Sample* s : samples)
    for (const QuestionAnswer& qa : s->questions) asked.push_back({s, &qa});
  if (asked.empty()) return;
  std::vector<std::string> predicted, truth, types, blind_predicted;
  std::vector<std::string> held_predicted, held_truth, held_types;
  BlindBaseline blind(data.train);
  for (size_t lo = 0; lo < asked.size(); lo += static_cast<size_t>(batch)) {
    const size_t hi = std::min(asked.size(), lo + batch);
    std::vector<const Sample*> chunk;
    std::vector<std::string> questions;
    for (size_t i = lo; i < hi; ++i) {
      chunk.push_back(asked[i].sample);
      questions.push_back(asked[i].qa->question);
    }
    TokenBatch q = encode_texts(ctx.tokenizer, questions, ctx.config.max_len);
    Tensor logits =
        ctx.model.answer_logits(images_on_model(ctx, chunk), on_model(ctx, q.ids), on_model(ctx, q.attention_mask));
    std::vector<int64_t> best = argmax(logits, 1).to_vector<int64_t>();
    for (size_t i = lo; i < hi; ++i) {
      const QuestionAnswer& qa = *asked[i].qa;
      const int64_t id = best[i - lo];
      const std::string answer = id < ctx.answers.size() ? ctx.answers.answers[id] : std::string();
      predicted.push_back(answer);
      truth.push_back(qa.answer);
      types.push_back(qa.type);
      blind_predicted.push_back(blind.answer(qa));
      if (asked[i].sample->held_out) {
        held_predicted.push_back(answer);
        held_truth.push_back(qa.answer);
        held_types.push_back(qa.type);
      }
    }
  }
  // Chance per type: one over the number of answers the type has (in the train split, plus
  // any the evaluated split adds).
  std::map<std::string, std::set<std::string>> answers_per_type = answers_by_type(truth, types);
  for (const auto& [type, ids] : ctx.answers.by_type)
    for (int64_t id : ids) answers_per_type[type].insert(ctx.answers.answers[id]);
  VqaResult model = vqa_metrics(predicted, truth, types, answers_per_type);
  VqaResult blind_result = vqa_metrics(blind_predicted, truth, types, answers_per_type);
  add_row(report, "vqa_accuracy", "VQA accuracy", model.accuracy, model.chance,
          fmt::format("{} questions", predicted.size()));
  add_row(report, "vqa_blind_accuracy", "VQA question-only baseline", blind_result.accuracy, model.chance,
          "most frequent train answer per question");
  for (const auto& [type, t] : model.per_type) {
    add_row(report, "vqa_accuracy_" + type, "VQA " + type, t.accuracy, t.chance,
            fmt::format("blind {:.3f}, {} questions", blind_result.per_type.at(type).accuracy, t.count));
    report.metrics["vqa_blind_accuracy_" + type] = blind_result.per_type.at(type).accuracy;
  }
  if (!held_predicted.empty()) {
    VqaResult held = vqa_metrics(held_predicted, held_truth, held_types, answers_per_type);
    add_row(report, "vqa_accuracy_held_out", "VQA on held-out combinations", held.accuracy, held.chance,
            fmt::format("{} questions", held_predicted.size()));
  }
}

// ---- classification ----

void evaluate_classification(const EvalContext& ctx, const Dataset& data, const std::vector<const Sample*>& samples,
                             int64_t batch, EvalReport& report) {
  std::vector<int64_t> predicted, truth;
  for (size_t lo = 0; lo < samples.size(); lo += static_cast<size_t>(batch)) {
    std::vector<const Sample*> chunk(samples.begin() + lo, samples.begin() + std::min(samples.size(), lo + batch));
    std::vector<int64_t> best =
        argmax(ctx.model.class_logits(images_on_model(ctx, chunk)), 1).to_vector<int64_t>();
    for (size_t i = 0; i < chunk.size(); ++i) {
      predicted.push_back(best[i]);
      truth.push_back(chunk[i]->label);
    }
  }
  const double classes = std::max<double>(1, static_cast<double>(data.class_names.size()));
  add_row(report, "classification_accuracy", "classification accuracy", accuracy(predicted, truth), 1.0 / classes,
          fmt::format("{} images", predicted.size()));
}

void evaluate_zero_shot(const EvalContext& ctx, const Dataset& data, const std::vector<const Sample*>& samples,
                        int64_t batch, EvalReport& report) {
  std::vector<std::string> prompts;
  for (const std::string& name : data.class_names) prompts.push_back("a photo of a " + name);
  std::vector<int64_t> labels;
  for (const Sample* s : samples) labels.push_back(s->label);
  const double acc = zero_shot_accuracy(image_embeddings(ctx, samples, batch), text_embeddings(ctx, prompts, batch),
                                        labels);
  add_row(report, "zero_shot_accuracy", "zero-shot classification", acc, 1.0 / static_cast<double>(prompts.size()),
          "prompts \"a photo of a <class>\"");
}

// ---- captioning ----

// Corpus BLEU-4 of greedy captions against every caption of each image (the references),
// compared as basic-tokenized words (the WordPiece pieces glued back).
void evaluate_captions(const EvalContext& ctx, const std::vector<const Sample*>& samples, int64_t batch,
                       EvalReport& report) {
  std::vector<Tokens> hypotheses;
  std::vector<std::vector<Tokens>> references;
  for (size_t lo = 0; lo < samples.size(); lo += static_cast<size_t>(batch)) {
    std::vector<const Sample*> chunk(samples.begin() + lo, samples.begin() + std::min(samples.size(), lo + batch));
    std::vector<std::vector<int64_t>> captions =
        ctx.model.caption(images_on_model(ctx, chunk), /*beam=*/1);
    for (size_t i = 0; i < chunk.size(); ++i) {
      if (chunk[i]->captions.empty()) continue;
      hypotheses.push_back(basic_tokenize(ctx.tokenizer.decode(captions[i])));
      std::vector<Tokens> refs;
      for (const std::string& c : chunk[i]->captions) refs.push_back(basic_tokenize(c));
      references.push_back(refs);
    }
  }
  if (hypotheses.empty()) return;
  BleuResult bleu = corpus_bleu(hypotheses, references);
  add_row(report, "caption_bleu4", "captioning BLEU-4", bleu.bleu, std::nan(""),
          fmt::format("{} images, greedy", hypotheses.size()));
}

}  // namespace

// ---------------------------------------------------------------------------------------------

BlindBaseline::BlindBaseline(const std::vector<Sample>& train) {
  std::map<std::string, std::map<std::string, int64_t>> question_counts, type_counts;
  for (const Sample& s : train)
    for (const QuestionAnswer& qa : s.questions) {
      ++question_counts[qa.question][qa.answer];
      ++type_counts[qa.type][qa.answer];
    }
  // The most frequent answer; ties to the first in byte order, so the baseline is deterministic.
  auto most_frequent = [](const std::map<std::string, int64_t>& counts) {
    return std::max_element(counts.begin(), counts.end(), [](auto& a, auto& b) { return a.second < b.second; })->first;
  };
  for (const auto& [q, counts] : question_counts) by_question_[q] = most_frequent(counts);
  for (const auto& [t, counts] : type_counts) by_type_[t] = most_frequent(counts);
}

std::string BlindBaseline::answer(const QuestionAnswer& qa) const {
  if (auto it = by_question_.find(qa.question); it != by_question_.end()) return it->second;
  if (auto it = by_type_.find(qa.type); it != by_type_.end()) return it->second;
  return "";
}

EvalReport evaluate_vlm(const EvalContext& ctx, const Dataset& data, const std::string& split,
                        const EvalOptions& options) {
  const std::vector<Sample>& all = data.split(split);
  MMG_CHECK(!all.empty(), "evaluate: split '{}' of data set '{}' is empty", split, data.name);
  Inference scope(ctx.model);
  EvalReport report;
  const int64_t limit = options.max_samples > 0 ? std::min<int64_t>(options.max_samples, all.size()) : all.size();
  std::vector<const Sample*> samples;
  for (int64_t i = 0; i < limit; ++i) samples.push_back(&all[i]);
  const auto& o = ctx.config.model.objectives;

  if (o.enabled("itc")) {
    std::vector<const Sample*> gallery, held;
    for (const Sample& s : all)
      if (!s.captions.empty() && static_cast<int64_t>(gallery.size()) < options.gallery) gallery.push_back(&s);
    for (const Sample* s : gallery)
      if (s->held_out) held.push_back(s);
    if (gallery.size() >= 2) {
      evaluate_retrieval(ctx, gallery, "", options.batch_size, report);
      if (held.size() >= 10) evaluate_retrieval(ctx, held, "held_out", options.batch_size, report);
      evaluate_negatives(ctx, gallery, options.batch_size, report);
    }
    if (!data.class_names.empty()) evaluate_zero_shot(ctx, data, samples, options.batch_size, report);
  }
  if (o.enabled("vqa")) evaluate_vqa(ctx, data, samples, options.batch_size, report);
  if (o.enabled("cls") && !data.class_names.empty())
    evaluate_classification(ctx, data, samples, options.batch_size, report);
  if (o.enabled("cap")) {
    // Decoding is token by token: caption a gallery-sized subset, not a whole split.
    std::vector<const Sample*> subset(samples.begin(),
                                      samples.begin() + std::min<int64_t>(samples.size(), options.gallery));
    evaluate_captions(ctx, subset, options.batch_size, report);
  }
  return report;
}

// ---------------------------------------------------------------------------------------------

std::vector<std::string> write_attention_maps(const EvalContext& ctx, const std::vector<Sample>& samples,
                                              int64_t count, const std::string& dir) {
  std::vector<std::string> paths;
  if (!ctx.model.model->fusion) return paths;  // only the cross-attention family has text→image attention
  Inference scope(ctx.model);
  std::filesystem::create_directories(dir);
  const auto& v = ctx.config.model.fusion.dual.vision;
  const int64_t grid = v.image_size / v.patch_size;
  for (int64_t i = 0; i < std::min<int64_t>(count, samples.size()); ++i) {
    const Sample& s = samples[i];
    const std::string text = !s.questions.empty() ? s.questions[0].question : s.captions.empty() ? "" : s.captions[0];
    TokenBatch t = encode_texts(ctx.tokenizer, {text}, ctx.config.max_len);
    models::FusionOutput out =
        ctx.model.model->forward(images_on_model(ctx, {&s}), on_model(ctx, t.ids), on_model(ctx, t.attention_mask),
                                 Tensor(), /*with_attention=*/true);
    // [1,S,1+N]: average the rows of the real tokens; drop column 0 (the image's [CLS]).
    const int64_t S = out.cross_attention.size(1), N1 = out.cross_attention.size(2);
    std::vector<float> att = out.cross_attention.contiguous().to_vector<float>();
    std::vector<uint8_t> mask = t.attention_mask.to(DType::u8).to_vector<uint8_t>();
    std::vector<float> weights(static_cast<size_t>(N1 - 1), 0.0f);
    float rows = 0;
    for (int64_t r = 0; r < S; ++r) {
      if (!mask[r]) continue;
      rows += 1;
      for (int64_t n = 1; n < N1; ++n) weights[n - 1] += att[r * N1 + n];
    }
    for (float& w : weights) w /= std::max(rows, 1.0f);
    // The title says what the model answered, and the truth beside it.
    std::string title = text;
    if (!s.questions.empty() && ctx.model.vqa_head) {
      Tensor logits = ctx.model.vqa_head->forward(out.fused_pooled);
      const int64_t best = argmax(logits, 1).to_vector<int64_t>().at(0);
      const std::string said = best < ctx.answers.size() ? ctx.answers.answers[best] : "?";
      title += fmt::format(" -> {} (truth: {})", said, s.questions[0].answer);
    }
    const std::string path = fmt::format("{}/attention_{:02d}.png", dir, i);
    save_png(render_attention_overlay(s.image, weights, static_cast<int>(grid), static_cast<int>(grid), title), path);
    paths.push_back(path);
  }
  return paths;
}

}  // namespace mmg
