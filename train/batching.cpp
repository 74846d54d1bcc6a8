#include "train/batching.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "core/error.h"
#include "kernels/philox.h"

namespace mmg {

using nlohmann::json;

// ---- answers ----

int64_t AnswerVocab::id(const std::string& answer) const {
  auto it = std::lower_bound(answers.begin(), answers.end(), answer);
  return it != answers.end() && *it == answer ? it - answers.begin() : -1;
}

json AnswerVocab::to_json() const {
  json types = json::object();
  for (const auto& [type, ids] : by_type) types[type] = ids;
  return {{"answers", answers}, {"by_type", types}};
}

AnswerVocab AnswerVocab::from_json(const json& j) {
  MMG_CHECK(j.is_object() && j.contains("answers") && j["answers"].is_array(),
            "AnswerVocab: expected {{\"answers\": [...], \"by_type\": {{...}}}}, got {}", j.dump().substr(0, 80));
  AnswerVocab v;
  v.answers = j["answers"].get<std::vector<std::string>>();
  MMG_CHECK(std::is_sorted(v.answers.begin(), v.answers.end()), "AnswerVocab: answers must be sorted");
  if (j.contains("by_type"))
    for (auto it = j["by_type"].begin(); it != j["by_type"].end(); ++it) {
      v.by_type[it.key()] = it.value().get<std::vector<int64_t>>();
      for (int64_t id : v.by_type[it.key()])
        MMG_CHECK(id >= 0 && id < v.size(), "AnswerVocab: type '{}' lists answer id {} outside [0,{})", it.key(), id,
                  v.size());
    }
  return v;
}

AnswerVocab AnswerVocab::from_samples(const std::vector<Sample>& train) {
  std::set<std::string> all;
  std::map<std::string, std::set<std::string>> typed;
  for (const Sample& s : train)
    for (const QuestionAnswer& qa : s.questions) {
      all.insert(qa.answer);
      typed[qa.type].insert(qa.answer);
    }
  AnswerVocab v;
  v.answers.assign(all.begin(), all.end());
  for (const auto& [type, answers] : typed)
    for (const std::string& a : answers) v.by_type[type].push_back(v.id(a));
  return v;
}

std::vector<std::string> texts_of(const std::vector<Sample>& samples) {
  std::vector<std::string> texts;
  for (const Sample& s : samples) {
    texts.insert(texts.end(), s.captions.begin(), s.captions.end());
    for (const auto& negatives : s.negatives) texts.insert(texts.end(), negatives.begin(), negatives.end());
    for (const QuestionAnswer& qa : s.questions) {
      texts.push_back(qa.question);
      texts.push_back(qa.answer);
    }
  }
  return texts;
}

// ---- images ----

Tensor images_to_tensor(const std::vector<const Image*>& images, const ImageNorm& norm, const std::string& what) {
  MMG_CHECK(!images.empty(), "images_to_tensor: no images");
  const Image& first = *images.front();
  const int64_t B = static_cast<int64_t>(images.size()), C = first.channels, H = first.height, W = first.width;
  auto per_channel = [&](const std::vector<double>& v, const char* name) {
    MMG_CHECK(v.size() == 1 || static_cast<int64_t>(v.size()) == C,
              "images_to_tensor: {} has {} values for {}-channel images (give 1 or {})", name, v.size(), C, C);
    std::vector<float> out(static_cast<size_t>(C));
    for (int64_t c = 0; c < C; ++c) out[c] = static_cast<float>(v.size() == 1 ? v[0] : v[c]);
    return out;
  };
  const std::vector<float> mean = per_channel(norm.mean, "mean"), std = per_channel(norm.std, "std");
  Tensor out = empty({B, C, H, W});
  float* dst = out.data<float>();
  for (int64_t b = 0; b < B; ++b) {
    const Image& im = *images[b];
    MMG_CHECK(im.channels == C && im.height == H && im.width == W,
              "images_to_tensor: {} {} is {}x{}x{}, the first is {}x{}x{} (channels x height x width)", what, b,
              im.channels, im.height, im.width, C, H, W);
    // HWC bytes → CHW floats: the model's layout.
    for (int64_t c = 0; c < C; ++c) {
      const float scale = 1.0f / (255.0f * std[c]), shift = mean[c] / std[c];
      float* plane = dst + (b * C + c) * H * W;
      for (int64_t p = 0; p < H * W; ++p) plane[p] = im.data[p * C + c] * scale - shift;
    }
  }
  return out;
}

Tensor images_to_tensor(const std::vector<const Sample*>& samples, const ImageNorm& norm) {
  std::vector<const Image*> images;
  images.reserve(samples.size());
  for (const Sample* s : samples) images.push_back(&s->image);
  return images_to_tensor(images, norm, "image");
}

TokenBatch encode_texts(const WordPieceTokenizer& tokenizer, const std::vector<std::string>& texts, int64_t max_len) {
  TokenBatch full = tokenizer.encode_batch(texts, max_len, /*truncate=*/true);
  // Cut the padding columns no text of the batch uses: a batch of short questions then costs
  // what its longest question costs, not max_len tokens each.
  const int64_t S = full.ids.size(1);
  std::vector<uint8_t> mask = full.attention_mask.to(DType::u8).to_vector<uint8_t>();
  int64_t longest = 1;
  for (size_t i = 0; i < mask.size(); ++i)
    if (mask[i]) longest = std::max<int64_t>(longest, static_cast<int64_t>(i) % S + 1);
  if (longest == S) return full;
  return {narrow(full.ids, 1, 0, longest).contiguous(), narrow(full.attention_mask, 1, 0, longest).contiguous()};
}

// ---- training batches ----

BatchMaker::BatchMaker(const std::vector<Sample>& samples, const WordPieceTokenizer& tokenizer,
                       const AnswerVocab& answers, int64_t max_len, ImageNorm norm, uint64_t seed, bool with_questions,
                       bool with_labels, bool with_negatives, AugmentOptions augment,
                       std::map<std::string, double> question_weights)
    : samples_(samples),
      tokenizer_(tokenizer),
      answers_(answers),
      max_len_(max_len),
      norm_(std::move(norm)),
      seed_(seed),
      with_questions_(with_questions),
      with_labels_(with_labels),
      with_negatives_(with_negatives),
      augment_(augment),
      question_weights_(std::move(question_weights)) {
  for (const auto& [type, w] : question_weights_)
    MMG_CHECK(std::isfinite(w) && w > 0, "BatchMaker: question_weights['{}'] must be positive, got {}", type, w);
}

// The question whose share of the weights' total holds u ∈ [0,1): with no weights that is
// question ⌊u·n⌋, as a uniform pick.
size_t BatchMaker::pick_question(const std::vector<QuestionAnswer>& questions, double u) const {
  const size_t n = questions.size();
  if (question_weights_.empty()) return std::min(n - 1, static_cast<size_t>(u * static_cast<double>(n)));
  auto weight = [&](const QuestionAnswer& q) {
    auto it = question_weights_.find(q.type);
    return it == question_weights_.end() ? 1.0 : it->second;
  };
  double total = 0;
  for (const QuestionAnswer& q : questions) total += weight(q);
  double left = u * total;
  for (size_t i = 0; i + 1 < n; ++i) {
    left -= weight(questions[i]);
    if (left < 0) return i;
  }
  return n - 1;
}

models::VLMBatch BatchMaker::make(const std::vector<int64_t>& indices, int64_t step) const {
  constexpr int64_t kIgnore = -100;  // cross_entropy's ignore_index
  const int64_t B = static_cast<int64_t>(indices.size());
  std::vector<const Sample*> batch;
  std::vector<std::string> captions, questions, edits;
  bool every_caption_edited = with_negatives_;
  std::vector<int64_t> answer_ids, labels;
  for (int64_t slot = 0; slot < B; ++slot) {
    const int64_t i = indices[slot];
    MMG_CHECK(i >= 0 && i < static_cast<int64_t>(samples_.size()), "BatchMaker: sample index {} outside [0,{})", i,
              samples_.size());
    const Sample& s = samples_[i];
    batch.push_back(&s);
    // Three draws per slot: which caption, which question, which edit of the caption. Stream
    // (step, slot) keeps them independent of every other step's.
    const uint64_t counter = (static_cast<uint64_t>(step) << 24 | static_cast<uint64_t>(slot)) << 4;
    auto pick = [&](size_t n, uint64_t k) {
      return std::min(n - 1, static_cast<size_t>(philox_uniform_f64(seed_, counter + k) * static_cast<double>(n)));
    };
    const size_t caption = s.captions.empty() ? 0 : pick(s.captions.size(), 0);
    captions.push_back(s.captions.empty() ? std::string() : s.captions[caption]);
    if (every_caption_edited) {
      if (caption < s.negatives.size() && !s.negatives[caption].empty())
        edits.push_back(s.negatives[caption][pick(s.negatives[caption].size(), 2)]);
      else
        every_caption_edited = false;
    }
    if (with_questions_) {
      if (s.questions.empty()) {
        questions.emplace_back();
        answer_ids.push_back(kIgnore);
      } else {
        const QuestionAnswer& qa = s.questions[pick_question(s.questions, philox_uniform_f64(seed_, counter + 1))];
        questions.push_back(qa.question);
        const int64_t id = answers_.id(qa.answer);
        answer_ids.push_back(id < 0 ? kIgnore : id);
      }
    }
    if (with_labels_) labels.push_back(s.label < 0 ? kIgnore : s.label);
  }
  models::VLMBatch out;
  if (augment_.enabled) {
    std::vector<Image> augmented;
    std::vector<const Image*> pointers;
    augmented.reserve(static_cast<size_t>(B));
    for (int64_t slot = 0; slot < B; ++slot) {
      // Augmentation draws from its own stream: key seed+1, counters from (step, slot).
      Generator g;
      g.set_state(seed_ + 1, (static_cast<uint64_t>(step) << 24 | static_cast<uint64_t>(slot)) << 12);
      augmented.push_back(augment(batch[slot]->image, augment_, batch[slot]->image.width, g));
      pointers.push_back(&augmented.back());
    }
    out.images = images_to_tensor(pointers, norm_, "image");
  } else {
    out.images = images_to_tensor(batch, norm_);
  }
  if (every_caption_edited) {  // captions and edits padded alike: rows B+i are the edits
    std::vector<std::string> both = captions;
    both.insert(both.end(), edits.begin(), edits.end());
    TokenBatch text = encode_texts(tokenizer_, both, max_len_);
    out.text_ids = narrow(text.ids, 0, 0, B).contiguous();
    out.text_mask = narrow(text.attention_mask, 0, 0, B).contiguous();
    out.negative_ids = narrow(text.ids, 0, B, B).contiguous();
    out.negative_mask = narrow(text.attention_mask, 0, B, B).contiguous();
  } else {
    TokenBatch text = encode_texts(tokenizer_, captions, max_len_);
    out.text_ids = text.ids;
    out.text_mask = text.attention_mask;
  }
  if (with_questions_) {
    TokenBatch q = encode_texts(tokenizer_, questions, max_len_);
    out.question_ids = q.ids;
    out.question_mask = q.attention_mask;
    out.answer_ids = from_vector(answer_ids, {B});
  }
  if (with_labels_) out.class_ids = from_vector(labels, {B});
  return out;
}

}  // namespace mmg
