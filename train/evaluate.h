// Evaluating a trained vision-language model on a split, every number beside its chance level.
//
//   retrieval    the first `gallery` samples: their images against their gallery captions
//                (captions[0]); recall@1/5/10 image→text and text→image; also on the held-out
//                samples alone (combinations never seen in training)
//   negatives    how often the true caption outscores each of its minimal-edit negatives (one
//                colour swapped, left/right flipped, a count changed): by the contrastive
//                similarity and by the matching head; chance 0.5. A bag-of-words model fails here.
//   vqa          accuracy overall and per question type, on held-out samples alone, and the
//                question-only ("blind") baseline: for each question text the answer it most often
//                has in the train split (else the most frequent answer of its type) — the best a
//                model that ignores the image can do on questions it has seen
//   cls          classification accuracy (models with the cls objective)
//   cap          corpus BLEU-4 of greedy captions against all of an image's captions (models with
//                the cap objective; on the first `gallery` samples)
//   zero-shot    classification by prompts "a photo of a <class>" (itc models on labelled data)
//
// Results come back as flat JSON ("vqa_accuracy", "vqa_accuracy_colour", "retrieval_i2t_r1", ...)
// and as rows for the printed table.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/vlm.h"
#include "train/batching.h"
#include "train/dataset.h"
#include "train/metrics.h"
#include "train/run_config.h"
#include "train/tokenizer.h"

namespace mmg {

struct EvalOptions {
  int64_t gallery = 1000;      // retrieval gallery size (at most the split's size)
  int64_t max_samples = 0;     // > 0: evaluate VQA / classification on this many samples only
  int64_t batch_size = 256;
};

struct EvalReport {
  nlohmann::json metrics;        // flat
  std::vector<MetricRow> rows;   // the table
};

struct EvalContext {
  models::VLM& model;
  const WordPieceTokenizer& tokenizer;
  const AnswerVocab& answers;
  const TrainConfig& config;
};

EvalReport evaluate_vlm(const EvalContext& ctx, const Dataset& data, const std::string& split, const EvalOptions& options);

// The question-only baseline's answer for each question (see above).
class BlindBaseline {
 public:
  explicit BlindBaseline(const std::vector<Sample>& train);
  std::string answer(const QuestionAnswer& qa) const;

 private:
  std::map<std::string, std::string> by_question_, by_type_;
};

// Pictures of the fused model's text→image attention: for each of the first `count` samples of
// `samples`, its first question (or caption) over the image, one PNG per sample in `dir`; the
// title gives the model's answer and the true one.
// Returns the paths written.
std::vector<std::string> write_attention_maps(const EvalContext& ctx, const std::vector<Sample>& samples, int64_t count,
                                              const std::string& dir);

}  // namespace mmg
