// Training objectives of a vision-language model, and how their losses are reported.
//
//   name  objective                                   loss
//   itc   image–text contrastive (CLIP, ALBEF)        contrastive_loss: clip_loss (symmetric InfoNCE)
//                                                     or hinge_ranking_loss on unit embeddings
//   itm   image–text matching (ALBEF)                 itm_loss: 2-way cross-entropy over B positive
//                                                     pairs and 2B hard negatives, or
//                                                     itm_loss_edits: B positives and B known-false edits
//   mlm   masked language modelling (BERT)            mlm_loss: cross-entropy on the masked tokens
//   vqa   VQA as answer classification                cross_entropy(VQAHead logits, answer ids)
//   cls   image classification                        cross_entropy(ClassificationHead logits, class ids)
//   cap   captioning                                  caption_lm_loss: next-token cross-entropy, PAD ignored
//
// Every loss is a 0-d tensor. A model reports them in a Losses: each one by name, and `total`,
// their sum weighted by an ObjectiveWeights ({"itc": 1, "itm": 1, "mlm": 1, ...}, from JSON).
//
// Randomness (which tokens are masked, which negatives are drawn) comes from a Philox
// Generator passed in, so a run is reproducible from its seed.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/ops.h"
#include "core/rng.h"
#include "models/heads.h"

namespace mmg::models {

// ---------------------------------------------------------------------------------------------
// Reporting

// The objectives a model may train, by name, and the weight of each in the total.
struct ObjectiveWeights {
  std::map<std::string, double> weights;  // name -> weight; an absent name is off

  static const std::vector<std::string>& known();  // itc, itm, mlm, vqa, cls, cap
  double weight(const std::string& name) const;     // 0 when absent
  bool enabled(const std::string& name) const { return weight(name) != 0.0; }
  nlohmann::json to_json() const;
  // {"itc": 1, "itm": 1}: unknown names, non-numbers and negative or non-finite weights are errors.
  static ObjectiveWeights from_json(const nlohmann::json& j);
  bool operator==(const ObjectiveWeights&) const = default;
};

struct Losses {
  std::vector<std::pair<std::string, Tensor>> items;  // each 0-d, in the order they were added
  Tensor total;                                       // Σ weight(name)·loss, set by weigh()

  // Appends a one-element loss as a 0-d tensor; a name may appear once.
  void add(const std::string& name, const Tensor& loss);
  bool has(const std::string& name) const;
  const Tensor& get(const std::string& name) const;  // Error when absent
  // total = Σ_items weights.weight(name)·loss (an item with weight 0 is reported but adds nothing).
  const Tensor& weigh(const ObjectiveWeights& weights);
  // The values as numbers, "total" included (for logs).
  std::map<std::string, double> values() const;
};

// ---------------------------------------------------------------------------------------------
// Contrastive (itc)

struct ContrastiveOptions {
  enum class Kind { clip, hinge } kind = Kind::clip;
  double margin = 0.2;  // hinge only
};

// image_emb, text_emb [B,E] (row i of each is a pair), e.g. FusionOutput's; both are
// L2-normalised here (x / max(‖x‖₂, 1e-12) per row: the identity on unit rows). clip:
// clip_loss(img, txt, logit_scale) with logits exp(logit_scale)·img·txtᵀ; hinge:
// hinge_ranking_loss(img, txt, margin) (the scale is not used: cosine similarities).
Tensor contrastive_loss(const Tensor& image_emb, const Tensor& text_emb, const Tensor& logit_scale,
                        const ContrastiveOptions& options = {});

// The same with one known-false text per image (NegCLIP, Yuksekgonul et al. 2023): negative_emb
// [B,E], row i a minimal edit of text i ("red" → "blue", "left" → "right") that does not describe
// image i. The edits are extra candidates for their own image only, so a model that reads a
// caption as a bag of words cannot separate them from the truth:
//   clip:  ½·[CE(s·img·[txt; neg]ᵀ, diag) + CE(s·txt·imgᵀ, diag)]    (image→text over 2B texts)
//   hinge: hinge_ranking_loss(img, txt) + (1/B)·Σ_i [m − img_i·txt_i + img_i·neg_i]₊
Tensor contrastive_loss_with_negatives(const Tensor& image_emb, const Tensor& text_emb, const Tensor& negative_emb,
                                       const Tensor& logit_scale, const ContrastiveOptions& options = {});

// exp(logit_scale)·normalize(img)·normalize(txt)ᵀ, [B_img, B_txt]: the similarity logits.
Tensor similarity_logits(const Tensor& image_emb, const Tensor& text_emb, const Tensor& logit_scale);

// ---------------------------------------------------------------------------------------------
// Image–text matching (itm) with hard negatives

struct HardNegatives {
  Tensor text_for_image;  // [B] i64: for image i, a text j != i
  Tensor image_for_text;  // [B] i64: for text j, an image i != j
};

// ALBEF's hard-negative mining. sim [B,B]: row i = image i against every text (no gradient is
// taken through it). For image i, text j != i is drawn with probability
//   p(j | i) = exp(sim_ij) / Σ_{k≠i} exp(sim_ik)     (softmax of the row with the diagonal masked)
// and for text j, image i != j with p(i | j) ∝ exp(sim_ij) over the column. Draws are inverse-CDF
// lookups of uniforms from `gen` (row draws first, then column draws), so a seed fixes them. A row
// whose masked softmax underflows to all zeros falls back to a uniform choice among the others.
// Needs B >= 2 (a batch of one has no negative). The uniforms are drawn and the choices made on
// the host (the same numbers on every device); the indices come back on sim's device.
HardNegatives sample_hard_negatives(const Tensor& sim, Generator* gen = nullptr);

// The fusion encoder's forward, as ITM sees it: fuse image image_index[k] with text text_index[k]
// for every k (both [n] i64, indices into the batch) and return the fused [CLS] [n,D].
using FusePairs = std::function<Tensor(const Tensor& image_index, const Tensor& text_index)>;

struct ITMResult {
  Tensor loss;         // 0-d
  Tensor logits;       // [3B,2]
  Tensor labels;       // [3B] i64: 1 for the B positives, then 0 for the 2B negatives
  Tensor image_index;  // [3B]: 0..B−1, 0..B−1,              image_for_text
  Tensor text_index;   // [3B]: 0..B−1, text_for_image,      0..B−1
};

// Builds the batch of B positive pairs (i,i), B pairs (image i, a hard negative text) and B pairs
// (a hard negative image, text j), fuses them in one call of `fuse`, and takes the cross-entropy
// of head(fused CLS) against labels 1/0.
ITMResult itm_loss(const FusePairs& fuse, const ITMHead& head, const Tensor& sim, Generator* gen = nullptr);

// Matching against known-false texts instead of mined ones. Mined "hard negatives" are often
// true: when a caption names part of a scene ("a cyan square below a green triangle"), the
// most similar other caption of the batch often describes image i as well, the labels then
// contradict each other and the head learns nothing but the prior. Here text index B+i names
// the minimal edit of text i (a negative by construction): the B pairs (i, i) are labelled 1
// and the B pairs (i, B+i) 0, fused in one call of `fuse`. The indices and labels are made on
// the head's device, where the model and its batch are. `samples` (1..batch, 0 = batch): only
// the first `samples` images are scored, with their caption and its edit (texts 0..samples−1
// and B..B+samples−1): the fusion, the matching objective's largest cost, runs on 2·samples
// pairs instead of 2B. The batch is shuffled, so the first ones are a random subset.
ITMResult itm_loss_edits(const FusePairs& fuse, const ITMHead& head, int64_t batch, int64_t samples = 0);

// ---------------------------------------------------------------------------------------------
// Masked language modelling (mlm)

struct MaskedTokens {
  Tensor input_ids;  // [B,S] i64: the ids with the selected tokens replaced
  Tensor labels;     // [B,S] i64: the original id where selected, ignore_index (−100) elsewhere
};

inline constexpr int64_t kIgnoreIndex = -100;

struct MaskingOptions {
  double mask_frac = 0.8;    // of the selected: replaced by mask_id
  double random_frac = 0.1;  // of the selected: replaced by a random non-special id; the rest stay
};

// BERT's masking. A token is eligible when attention_mask says it is real (nonzero / true;
// undefined = all real) and its id is not in special_ids (PAD, CLS, SEP, MASK...). Each eligible
// token is selected with probability `prob`; a selected token becomes mask_id with probability
// mask_frac, a uniformly drawn non-special id with probability random_frac, and stays itself
// otherwise — its label is its original id in every case. Three uniforms per position come from
// `gen` (select, action, which random id), so the result is a function of the seed. The draws
// and choices are made on the host (the same on every device); the result is on ids' device.
MaskedTokens mask_tokens(const Tensor& ids, const Tensor& attention_mask, int64_t vocab_size, int64_t mask_id,
                         const std::vector<int64_t>& special_ids, double prob = 0.15, Generator* gen = nullptr,
                         const MaskingOptions& options = {});

// logits [B,S,V], labels [B,S] (kIgnoreIndex where not selected): mean cross-entropy over the
// selected tokens (0 when none is selected).
Tensor mlm_loss(const Tensor& logits, const Tensor& labels);

// ---------------------------------------------------------------------------------------------
// Captioning (cap)

// logits [B,T,V] from CaptionDecoder::forward(tokens), tokens [B,T]: position t predicts token
// t+1, so the loss is cross_entropy(logits[:, :T−1], tokens[:, 1:]) with ignore_index = pad_id.
Tensor caption_lm_loss(const Tensor& logits, const Tensor& tokens, int64_t pad_id);

}  // namespace mmg::models
