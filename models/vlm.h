// VLM: a vision–language model trained on several objectives at once.
//
// It owns a FusionModel (models/fusion.h: the encoders and the fusion of one family) and the
// heads its objectives need, and turns a batch into a Losses report (models/objectives.h):
//
//   objective  families               what it runs
//   itc        dual, cross            contrastive_loss(image_emb, text_emb, logit_scale): clip or hinge;
//                                     with the batch's edited captions, contrastive_loss_with_negatives
//   itm        cross, single, pooled  itm_head on the fused [CLS] of B positive pairs and B pairs of
//                                     each image with its caption's minimal edit (itm_loss_edits),
//                                     or, when the batch has no edits, 2B hard negatives drawn from
//                                     the contrastive similarities (single, pooled: uniformly)
//   mlm        all                    mask_tokens(text); the masked text through the text encoder
//                                     (dual, pooled), then the fusion (cross: with the batch's
//                                     image tokens), or through the joint encoder (single);
//                                     mlm_head on its tokens
//   vqa        cross, single, pooled  vqa_head on the fused [CLS] (pooled: the fused vector)
//   cls        all                    cls_head on the ViT's pooled output (single: the mean of
//                                     the image tokens of the joint encoder run on an empty
//                                     text, [CLS] [SEP], so that no caption leaks in)
//   cap        all                    caption_decoder over the image tokens (the ViT's; single:
//                                     as for cls), captioning LM loss
//
// A batch has one text per image: the caption for itc/itm/mlm/cap, the question for vqa; or
// both, the questions in their own fields, so that one step trains every objective and the
// two-tower families run the ViT once for both texts.
//
// Parameter names: the FusionModel's under "model." (model.vision.*, model.text.*,
// model.image_proj.weight, model.logit_scale, model.fusion.*), then the heads that the enabled
// objectives need: itm_head.{weight,bias}, mlm_head.{dense,layer_norm,decoder}.*,
// vqa_head.{fc1,layer_norm,fc2}.*, cls_head.{norm,fc}.*, caption_decoder.* (CaptionDecoder's).
// Heads of disabled objectives are not built.
//
// Presets: "vlm-micro" (albef-micro: for tests) and "vlm-tiny" (albef-tiny, 32×32 images, 32
// tokens), both with every objective at weight 1.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/caption_decoder.h"
#include "models/fusion.h"
#include "models/heads.h"
#include "models/objectives.h"

namespace mmg::models {

// The tokenizer's special ids (train/tokenizer.h lists [PAD] [UNK] [CLS] [SEP] [MASK] first).
struct SpecialTokens {
  int64_t pad_id = 0, unk_id = 1, cls_id = 2, sep_id = 3, mask_id = 4;
  // Every field, once: VLMConfig's to_json and from_json both walk this list (models/config.h).
  template <class Self, class F>
  static void fields(Self& c, F&& f) {
    f("pad_id", c.pad_id), f("unk_id", c.unk_id), f("cls_id", c.cls_id), f("sep_id", c.sep_id);
    f("mask_id", c.mask_id);
  }
  std::vector<int64_t> all() const {
    std::vector<int64_t> ids;
    fields(*this, [&](const char*, int64_t id) { ids.push_back(id); });
    return ids;
  }
  bool operator==(const SpecialTokens&) const = default;
};

struct VLMConfig {
  FusionModelConfig fusion = FusionModelConfig::preset("albef-tiny");
  ObjectiveWeights objectives;
  int64_t num_classes = 10;  // cls
  int64_t num_answers = 32;  // vqa
  // cap. Its vocab_size, memory_dim and bos/eos/pad ids follow the encoders and `tokens`
  // (BOS = [CLS], EOS = [SEP]): from_json fills them in when the JSON leaves them out.
  CaptionDecoderConfig decoder;
  SpecialTokens tokens;
  double mlm_prob = 0.15;
  std::string contrastive = "clip";  // "clip" | "hinge"
  double margin = 0.2;               // hinge
  // itm: how many of the batch's samples the matching loss scores (the first ones; the batch is
  // shuffled); 0 = all. The fusion of its pairs is the largest cost of a step with itm.
  int64_t itm_samples = 0;

  // The plain fields (fusion, objectives, decoder and tokens are written and read by hand,
  // models/config.h).
  template <class Self, class F>
  static void fields(Self& c, F&& f) {
    f("num_classes", c.num_classes), f("num_answers", c.num_answers);
    f("mlm_prob", c.mlm_prob), f("contrastive", c.contrastive), f("margin", c.margin);
    f("itm_samples", c.itm_samples);
  }

  // Facts of the fusion family, for the heads.
  int64_t vocab_size() const;     // the text vocabulary
  int64_t text_dim() const;       // width of the text tokens the MLM head reads
  int64_t fused_dim() const;      // width of the fused [CLS] (itm, vqa)
  int64_t image_dim() const;      // width of the image tokens (cap) and pooled image (cls)
  int64_t max_text_len() const;
  // Sets the decoder's derived fields from the encoders and tokens.
  void derive_decoder_fields();
  void validate() const;  // objectives the family cannot train, inconsistent sizes: Error
  // {"family": "vlm", "fusion": {...}, "objectives": {"itc": 1, ...}, "num_classes", "num_answers",
  //  "decoder": {...}, "tokens": {"pad_id", "unk_id", "cls_id", "sep_id", "mask_id"},
  //  "mlm_prob", "contrastive", "margin", "itm_samples"}
  nlohmann::json to_json() const;
  static VLMConfig from_json(const nlohmann::json& j);
  static VLMConfig preset(const std::string& name);
  static std::vector<std::string> preset_names();
  bool operator==(const VLMConfig&) const = default;
};

struct VLMBatch {
  Tensor images;       // [B,C,H,W]
  Tensor text_ids;     // [B,S] integer
  Tensor text_mask;    // [B,S] bool (true = real token) or undefined (ids != pad_id)
  Tensor class_ids;    // [B] i64, for cls
  Tensor answer_ids;   // [B] i64, for vqa
  Tensor caption_ids;  // [B,T] i64 "[CLS] words [SEP] [PAD]...", for cap (undefined: text_ids)
  // Multi-task batches: one question per image, for vqa, while the other objectives read the
  // captions in text_ids. Undefined: vqa reads text_ids (a batch of questions).
  Tensor question_ids;   // [B,Q] i64
  Tensor question_mask;  // [B,Q] bool, or undefined (ids != pad_id)
  // Known-false texts, one per image: a minimal edit of its caption (a colour swapped, left and
  // right exchanged, a count changed), padded like text_ids to the same S. Undefined when the
  // data has none; itm then mines its negatives.
  Tensor negative_ids;   // [B,S] i64
  Tensor negative_mask;  // [B,S] bool, or undefined (ids != pad_id)
};

// The batch with every defined tensor on `device` (batches are made on the host; the trainer
// moves each one to the model's device before the step). A tensor already there is kept as it
// is (the same handle), so on the CPU this returns the batch unchanged. non_blocking: see
// Tensor::to (pinned tensors are then read by the GPU in place, after the call returns).
VLMBatch to_device(const VLMBatch& batch, Device device, bool non_blocking = false);
// The batch with every defined tensor in pinned host memory (Tensor::pin_memory): what the
// data loader's thread makes of each batch for a CUDA run, so the copies of the step are
// single DMAs. Unchanged where no GPU is usable.
VLMBatch pin_memory(const VLMBatch& batch);

class VLM : public nn::Module {
 public:
  // `gen` draws the initial weights (the global generator when null); dropout masks come from
  // the global generator, as in every layer (nn/layers.h).
  explicit VLM(const VLMConfig& config, Generator* gen = nullptr);

  // Every enabled objective's loss, and their weighted sum in `total`. `gen` draws the MLM
  // masking and the ITM hard negatives (the global generator when null).
  Losses compute_losses(const VLMBatch& batch, Generator* gen = nullptr) const;
  // Only the objectives enabled in `weights`, weighed by them (a training phase, e.g. pre-training
  // without vqa). Each must be one the model was built for (its head exists): else an Error.
  Losses compute_losses(const VLMBatch& batch, Generator* gen, const ObjectiveWeights& weights) const;

  // For evaluation (no loss): class logits [B,num_classes], answer logits [B,num_answers], match
  // logits [B,2], and
  // captions (beam search over the image tokens; beam 1 is greedy), the best hypothesis per image.
  Tensor class_logits(const Tensor& images) const;
  Tensor answer_logits(const Tensor& images, const Tensor& ids, const Tensor& mask = Tensor()) const;
  // The matching head's logits [B,2] (column 1: "matches") of image i with text i.
  Tensor match_logits(const Tensor& images, const Tensor& ids, const Tensor& mask = Tensor()) const;
  std::vector<std::vector<int64_t>> caption(const Tensor& images, int64_t beam = 1, int64_t max_new = -1,
                                            double length_penalty = 1.0);

  std::string type_name() const override { return "VLM"; }

  VLMConfig config;
  std::shared_ptr<FusionModel> model;
  std::shared_ptr<ITMHead> itm_head;                 // null unless itm
  std::shared_ptr<MLMHead> mlm_head;                 // null unless mlm
  std::shared_ptr<VQAHead> vqa_head;                 // null unless vqa
  std::shared_ptr<ClassificationHead> cls_head;      // null unless cls
  std::shared_ptr<CaptionDecoder> caption_decoder;   // null unless cap

 private:
  // The parts of one forward that several objectives share.
  FusionOutput encode(const Tensor& images, const Tensor& ids, const Tensor& mask) const;
  // The image encoded without a text (the ViT; single: the joint encoder over [CLS] [SEP]).
  FusionOutput image_only(const Tensor& images) const;
  Tensor image_tokens(const FusionOutput& out) const;  // what the caption decoder attends to
  Tensor image_pooled(const FusionOutput& out) const;  // what the classifier reads
  Tensor mlm_tokens(const VLMBatch& batch, const FusionOutput& out, const Tensor& masked_ids) const;
  // A batch of texts through the text encoder alone (two-tower families): text_mask,
  // text_tokens, text_pooled and, except pooled, text_emb.
  FusionOutput encode_texts(const Tensor& ids, const Tensor& mask) const;
  // `negatives`: the batch's edited captions through encode_texts (undefined fields: none).
  ITMResult itm(const VLMBatch& batch, const FusionOutput& out, const FusionOutput& negatives, Generator* gen) const;
  void check_batch(const VLMBatch& batch, const ObjectiveWeights& objectives) const;
};

}  // namespace mmg::models
