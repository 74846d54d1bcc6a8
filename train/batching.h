// From samples to the tensors of a training or evaluation batch.
//
// Texts are tokenized when a batch is made (on the loader's background thread), not ahead of
// time: a few hundred short captions take well under a millisecond, and nothing large stays in
// memory. Images are 8-bit in the Dataset and normalised here, x = (v/255 − mean[c]) / std[c].
//
// A training batch pairs each image with ONE of its captions and ONE of its questions, drawn
// afresh at every step, so an epoch shows each image with a different text. Those draws (and
// the augmentation) come from Philox with key = seed and a counter stream per (step, slot):
// the batch of step s is a pure function of s, which is what makes a resumed run identical.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/vlm.h"
#include "train/augment.h"
#include "train/dataset.h"
#include "train/tokenizer.h"

namespace mmg {

// The answers a VQA head chooses from: every answer of the train split, sorted (id = position),
// and the answers of each question type (for per-type chance levels and for restricting a
// prediction to answers of the question's type).
struct AnswerVocab {
  std::vector<std::string> answers;
  std::map<std::string, std::vector<int64_t>> by_type;  // type -> answer ids

  int64_t size() const { return static_cast<int64_t>(answers.size()); }
  int64_t id(const std::string& answer) const;  // -1 when unknown
  nlohmann::json to_json() const;
  static AnswerVocab from_json(const nlohmann::json& j);
  static AnswerVocab from_samples(const std::vector<Sample>& train);
};

// Every text of the split (captions and questions), for learning a vocabulary.
std::vector<std::string> texts_of(const std::vector<Sample>& samples);

struct ImageNorm {
  std::vector<double> mean{0.5}, std{0.5};  // one value per channel, or one for all
};

// Images → [B,C,H,W] f32, normalised. Every image must have the same size and channels
// (an Error names the sample that differs).
Tensor images_to_tensor(const std::vector<const Sample*>& samples, const ImageNorm& norm);
Tensor images_to_tensor(const std::vector<const Image*>& images, const ImageNorm& norm,
                        const std::string& what = "images");

class BatchMaker {
 public:
  // `samples` and `tokenizer` must outlive the maker. `with_questions`: add one question per
  // image (question_ids, question_mask, answer_ids; ignore_index -100 for an image without a
  // question or with an answer outside the vocabulary); `with_labels`: class_ids;
  // `with_negatives`: negative_ids, one minimal edit of each image's drawn caption, when every
  // caption of the batch has one (else the field stays undefined and itm mines its negatives). With
  // augment.enabled, each image is augmented (train/augment.h) with draws of its (step, slot).
  // `question_weights`: an image's question is drawn with probability proportional to its
  // type's weight (1 for a type not named); empty: uniformly, the same draws as ever.
  BatchMaker(const std::vector<Sample>& samples, const WordPieceTokenizer& tokenizer, const AnswerVocab& answers,
             int64_t max_len, ImageNorm norm, uint64_t seed, bool with_questions, bool with_labels,
             bool with_negatives = false, AugmentOptions augment = {},
             std::map<std::string, double> question_weights = {});

  // The training batch of `step` over the samples at `indices`.
  models::VLMBatch make(const std::vector<int64_t>& indices, int64_t step) const;

  // Which of an image's questions a draw u ∈ [0,1) picks (the weights above).
  size_t pick_question(const std::vector<QuestionAnswer>& questions, double u) const;

 private:
  const std::vector<Sample>& samples_;
  const WordPieceTokenizer& tokenizer_;
  const AnswerVocab& answers_;
  int64_t max_len_;
  ImageNorm norm_;
  uint64_t seed_;
  bool with_questions_, with_labels_, with_negatives_;
  AugmentOptions augment_;
  std::map<std::string, double> question_weights_;
};

// Tokenized texts (truncated to max_len), padded to the longest text of the batch.
TokenBatch encode_texts(const WordPieceTokenizer& tokenizer, const std::vector<std::string>& texts, int64_t max_len);

}  // namespace mmg
