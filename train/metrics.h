// Evaluation metrics: numbers that say how good a trained model is, each next to the number
// a model that guesses would reach (its chance level), so a reader can tell learning from luck.
//
//   retrieval     image→text and text→image recall@k from a similarity matrix
//   accuracy      classification / VQA accuracy, overall and per question type
//   BLEU-4        corpus-level BLEU of generated captions (Papineni et al., 2002)
//   zero-shot     classify images by the most similar class-name text (CLIP-style)
//   table         the results printed as aligned "metric | value | chance" columns
//
// Plain numbers in, plain numbers out: no autograd. Tensors are read once into host vectors.
// Every function checks its inputs and throws mmg::Error naming itself and the sizes at fault.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace mmg {

// ------------------------------------------------------------------ retrieval -----

// Recall@k of a retrieval gallery, both directions. For similarity S[i,t] between image i
// and text t, and g(t) the image of text t:
//
//   text→image:  rank(t) = #{ i ≠ g(t) : S[i,t] ≥ S[g(t),t] }          hit@k ⇔ rank(t) < k
//   image→text:  s*(i)   = max_{t : g(t)=i} S[i,t]  (its best text)
//                rank(i) = #{ t : g(t) ≠ i, S[i,t] ≥ s*(i) }           hit@k ⇔ rank(i) < k
//
// so an image counts as a hit when ANY of its texts is among its top-k texts.
// Ties are PESSIMISTIC: a wrong candidate scoring exactly as high as the right one is placed
// ahead of it (the "≥" above). A model whose embeddings collapsed to one point scores 0 for
// k < gallery size, not a perfect 1, which is the honest reading of constant scores.
// recall@k is the fraction of queries that hit; k larger than the gallery always hits.
struct RetrievalResult {
  std::map<int, double> image_to_text;         // k -> recall@k, queries are images
  std::map<int, double> text_to_image;         // k -> recall@k, queries are texts
  std::map<int, double> image_to_text_chance;  // k -> mean over images of recall_chance(N_txt, m_i, k)
  std::map<int, double> text_to_image_chance;  // k -> recall_chance(N_img, 1, k)
  int64_t num_images = 0;                      // gallery size of text→image
  int64_t num_texts = 0;                       // gallery size of image→text
};

// similarity: [N_img, N_txt] floating; text_to_image[t] in [0, N_img) for each text, and
// every image must own at least one text. ks: each k ≥ 1.
RetrievalResult retrieval_metrics(const Tensor& similarity, const std::vector<int64_t>& text_to_image,
                                  const std::vector<int>& ks = {1, 5, 10});

// Chance of a hit at k when the gallery is ranked at random: the probability that a uniform
// random ordering of `gallery` items puts at least one of `positives` items in its first k,
//
//   1 − C(N−m, k) / C(N, k)  =  1 − ∏_{j=0}^{k−1} (N−m−j) / (N−j)      (0 factors give 1)
//
// With one positive this is k/N. Requires 1 ≤ m ≤ N and k ≥ 1.
double recall_chance(int64_t gallery, int64_t positives, int64_t k);

// ------------------------------------------------------------------- accuracy -----

// Fraction of i with pred[i] == target[i]. Sizes must match and be non-zero.
double accuracy(const std::vector<int64_t>& pred, const std::vector<int64_t>& target);

// VQA accuracy: exact match of the predicted answer string, overall and per question type.
// Chance of a type = 1 / (number of answers of that type), the accuracy of guessing uniformly
// among the type's answers; the overall chance is the count-weighted mean of the types'
// chances. A type missing from `answers_of_type` has chance NaN (and so has the overall).
struct VqaTypeResult {
  double accuracy = 0;
  int64_t count = 0;
  double chance = std::numeric_limits<double>::quiet_NaN();
};
struct VqaResult {
  double accuracy = 0;
  int64_t count = 0;
  double chance = std::numeric_limits<double>::quiet_NaN();
  std::map<std::string, VqaTypeResult> per_type;  // question type -> its scores
};

// The distinct true answers of each question type: the answer sets that give the chances.
// Build it from the data a model was trained on (or from everything it could answer).
std::map<std::string, std::set<std::string>> answers_by_type(const std::vector<std::string>& answers,
                                                             const std::vector<std::string>& types);

// predicted, truth, types: one entry per question, same sizes, non-zero. Each true answer
// must lie in its type's answer set when the type has one.
VqaResult vqa_metrics(const std::vector<std::string>& predicted, const std::vector<std::string>& truth,
                      const std::vector<std::string>& types,
                      const std::map<std::string, std::set<std::string>>& answers_of_type = {});

// --------------------------------------------------------------------- BLEU -----

using Tokens = std::vector<std::string>;

// Corpus BLEU (Papineni et al. 2002). Over the whole corpus, for n = 1..max_n:
//
//   p_n = Σ_h Σ_{g ∈ n-grams(h)} min(count_h(g), max_r count_r(g))  /  Σ_h #n-grams(h)
//
// (each n-gram's count clipped by its largest count in any one reference of that hypothesis),
//
//   BP   = 1 if c > r, else exp(1 − r/c)     c = Σ |h|, r = Σ |closest reference of h|
//   BLEU = BP · exp( (1/max_n) Σ_n log p_n )  = 0 when some p_n = 0 (no smoothing).
//
// The closest reference length is the one nearest |h|; between two equally near, the shorter.
struct BleuResult {
  double bleu = 0;
  std::vector<double> precisions;  // p_1 .. p_max_n
  double brevity_penalty = 0;
  int64_t hypothesis_length = 0;   // c
  int64_t reference_length = 0;    // r
};

// references[i]: one or more references of hypotheses[i]. Empty corpus or hypothesis with no
// reference is an error; an empty hypothesis is allowed (it adds no n-grams).
BleuResult corpus_bleu(const std::vector<Tokens>& hypotheses, const std::vector<std::vector<Tokens>>& references,
                       int max_n = 4);

// ---------------------------------------------------------------- zero-shot -----

// For each image, the class whose text embedding has the largest cosine similarity
//   argmax_k  <x_i, c_k> / (|x_i| |c_k|);   ties go to the smaller class index.
// image_emb [N,E], class_text_emb [K,E], both floating; no row may have zero norm.
std::vector<int64_t> zero_shot_predictions(const Tensor& image_emb, const Tensor& class_text_emb);

// Fraction of images whose zero-shot prediction equals labels[i] (labels in [0, K)).
// Its chance level is 1/K for balanced classes.
double zero_shot_accuracy(const Tensor& image_emb, const Tensor& class_text_emb, const std::vector<int64_t>& labels);

// -------------------------------------------------------------------- table -----

struct MetricRow {
  std::string name;
  double value = 0;
  double chance = std::numeric_limits<double>::quiet_NaN();  // NaN: no chance level
  std::string note;
};

// An aligned text table, one line per row after a header and a rule:
//
//   metric    | value  | chance | note
//   ----------+--------+--------+-----
//   i2t R@1   | 0.4500 | 0.0100 | 100 images
//   BLEU-4    | 0.2100 |      - |
//
// Values print with 4 decimals; a NaN chance (or value) prints "-". Lines end without spaces.
std::string format_results_table(const std::vector<MetricRow>& rows);

}  // namespace mmg
