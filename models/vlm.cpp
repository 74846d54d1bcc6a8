#include "models/vlm.h"

#include <algorithm>
#include <cmath>

#include "core/autograd.h"
#include "models/config.h"

namespace mmg::models {

using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// Config

namespace {

// Which families can train which objective (see the table in vlm.h).
bool family_supports(const std::string& family, const std::string& objective) {
  if (objective == "itc") return family == "dual" || family == "cross";
  if (objective == "itm") return family != "dual";
  if (objective == "vqa") return family != "dual";
  if (family == "vision") return objective == "cls" || objective == "cap";  // no text encoder
  return true;  // mlm, cls, cap
}

std::vector<std::string> enabled_objectives(const ObjectiveWeights& o) {
  std::vector<std::string> names;
  for (const auto& name : ObjectiveWeights::known())
    if (o.enabled(name)) names.push_back(name);
  return names;
}

}  // namespace

int64_t VLMConfig::vocab_size() const { return fusion.family == "single" ? fusion.single.vocab_size : fusion.dual.text.vocab_size; }
int64_t VLMConfig::max_text_len() const { return fusion.family == "single" ? fusion.single.max_len : fusion.dual.text.max_len; }
int64_t VLMConfig::text_dim() const { return fusion.family == "single" ? fusion.single.dim : fusion.dual.text.dim; }
int64_t VLMConfig::image_dim() const { return fusion.family == "single" ? fusion.single.dim : fusion.dual.vision.dim; }

int64_t VLMConfig::fused_dim() const {
  if (fusion.family == "single") return fusion.single.dim;
  if (fusion.family == "pooled") return fusion.dual.embed_dim;
  return fusion.dual.text.dim;  // cross: the fused text tokens (dual has no fusion)
}

void VLMConfig::derive_decoder_fields() {
  decoder.vocab_size = vocab_size();
  decoder.memory_dim = image_dim();
  decoder.bos_id = tokens.cls_id;
  decoder.eos_id = tokens.sep_id;
  decoder.pad_id = tokens.pad_id;
}

void VLMConfig::validate() const {
  fusion.validate();
  const std::string& family = fusion.family;
  bool any = false;
  for (const auto& [name, w] : objectives.weights) {
    if (w == 0.0) continue;
    any = true;
    MMG_CHECK(family_supports(family, name), "VLMConfig: objective '{}' needs a fusion family that supports it; '{}' "
              "does not (itc: dual, cross; itm and vqa: cross, single, pooled)", name, family);
  }
  MMG_CHECK(any, "VLMConfig: no objective has a non-zero weight (objectives: {})", objectives.to_json().dump());
  const int64_t V = vocab_size();
  SpecialTokens::fields(tokens, [&](const char* name, int64_t id) {
    MMG_CHECK(id >= 0 && id < V, "VLMConfig: tokens.{} {} is outside the text vocabulary [0,{})", name, id, V);
  });
  const int64_t text_pad = family == "single" ? fusion.single.pad_id : fusion.dual.text.pad_id;
  MMG_CHECK(tokens.pad_id == text_pad, "VLMConfig: tokens.pad_id {} differs from the text encoder's pad_id {}",
            tokens.pad_id, text_pad);
  if (objectives.enabled("cls"))
    MMG_CHECK(num_classes >= 2, "VLMConfig: num_classes must be >= 2, got {}", num_classes);
  if (objectives.enabled("vqa"))
    MMG_CHECK(num_answers >= 2, "VLMConfig: num_answers must be >= 2, got {}", num_answers);
  if (objectives.enabled("mlm"))
    MMG_CHECK(mlm_prob > 0 && mlm_prob <= 1, "VLMConfig: mlm_prob must be in (0,1], got {}", mlm_prob);
  check_choice("VLMConfig", "contrastive", contrastive, {"clip", "hinge"});
  MMG_CHECK(std::isfinite(margin) && margin >= 0, "VLMConfig: margin must be finite and >= 0, got {}", margin);
  MMG_CHECK(itm_samples >= 0, "VLMConfig: itm_samples must be >= 0 (0: the whole batch), got {}", itm_samples);
  if (objectives.enabled("cap")) {
    decoder.validate();
    MMG_CHECK(decoder.vocab_size == V && decoder.memory_dim == image_dim() && decoder.bos_id == tokens.cls_id &&
                  decoder.eos_id == tokens.sep_id && decoder.pad_id == tokens.pad_id,
              "VLMConfig: the decoder (vocab_size {}, memory_dim {}, bos/eos/pad {}/{}/{}) must match the encoders "
              "(vocabulary {}, image width {}) and the tokens ([CLS] {}, [SEP] {}, [PAD] {})",
              decoder.vocab_size, decoder.memory_dim, decoder.bos_id, decoder.eos_id, decoder.pad_id, V, image_dim(),
              tokens.cls_id, tokens.sep_id, tokens.pad_id);
  }
}

json VLMConfig::to_json() const {
  return write_fields(*this, {{"family", "vlm"},
                              {"fusion", fusion.to_json()},
                              {"objectives", objectives.to_json()},
                              {"decoder", decoder.to_json()},
                              {"tokens", write_fields(tokens)}});
}

VLMConfig VLMConfig::from_json(const json& j) {
  VLMConfig c;
  ConfigReader r(j, "VLMConfig", "vlm");
  if (const json* f = r.object("fusion")) c.fusion = FusionModelConfig::from_json(*f);
  if (const json* o = r.object("objectives")) c.objectives = ObjectiveWeights::from_json(*o);
  if (const json* t = r.object("tokens")) {
    ConfigReader tr(*t, "VLMConfig.tokens", "");
    read_fields(tr, c.tokens);
    tr.finish();
  }
  // The decoder's derived fields come from the encoders unless the JSON names them (then
  // validate() insists they agree).
  c.derive_decoder_fields();
  if (const json* d = r.object("decoder")) {
    json merged = c.decoder.to_json();
    for (auto it = d->begin(); it != d->end(); ++it) merged[it.key()] = it.value();
    c.decoder = CaptionDecoderConfig::from_json(merged);
  }
  read_fields(r, c);
  r.finish();
  c.validate();
  return c;
}

std::vector<std::string> VLMConfig::preset_names() { return {"vlm-micro", "vlm-tiny"}; }

VLMConfig VLMConfig::preset(const std::string& name) {
  VLMConfig c;
  c.objectives = ObjectiveWeights::from_json({{"itc", 1}, {"itm", 1}, {"mlm", 1}, {"vqa", 1}, {"cls", 1}, {"cap", 1}});
  if (name == "vlm-micro") {
    c.fusion = FusionModelConfig::preset("albef-micro");
    c.decoder = CaptionDecoderConfig::preset("decoder-micro");
    c.num_classes = 4;
    c.num_answers = 6;
  } else if (name == "vlm-tiny") {
    c.fusion = FusionModelConfig::preset("albef-tiny");
    c.decoder = CaptionDecoderConfig::preset("decoder-tiny");
    c.num_classes = 10;
    c.num_answers = 32;
  } else {
    MMG_FAIL("VLMConfig: unknown preset '{}' (valid: {})", name, fmt::join(preset_names(), ", "));
  }
  c.derive_decoder_fields();
  c.validate();
  return c;
}

// ---------------------------------------------------------------------------------------------
// Model

VLM::VLM(const VLMConfig& cfg, Generator* gen) : config(cfg) {
  config.validate();
  const ObjectiveWeights& o = config.objectives;
  model = register_module("model", std::make_shared<FusionModel>(config.fusion, gen));
  if (o.enabled("itm")) itm_head = register_module("itm_head", std::make_shared<ITMHead>(config.fused_dim(), gen));
  if (o.enabled("mlm"))
    mlm_head = register_module("mlm_head", std::make_shared<MLMHead>(config.text_dim(), config.vocab_size(), 1e-5, gen));
  if (o.enabled("vqa"))
    vqa_head = register_module("vqa_head", std::make_shared<VQAHead>(config.fused_dim(), config.num_answers, 1e-5, gen));
  if (o.enabled("cls"))
    cls_head =
        register_module("cls_head", std::make_shared<ClassificationHead>(config.image_dim(), config.num_classes, 1e-5, gen));
  if (o.enabled("cap")) caption_decoder = register_module("caption_decoder", std::make_shared<CaptionDecoder>(config.decoder, gen));
}

void VLM::check_batch(const VLMBatch& b, const ObjectiveWeights& o) const {
  MMG_CHECK(b.images.defined() && b.images.dim() == 4, "VLM: images {} must be [B,C,H,W]",
            b.images.defined() ? shape_str(b.images.shape()) : "undefined");
  MMG_CHECK(model->vision || (b.text_ids.defined() && b.text_ids.dim() == 2 && b.text_ids.size(0) == b.images.size(0)),
            "VLM: text ids {} must be [B={},S]", b.text_ids.defined() ? shape_str(b.text_ids.shape()) : "undefined",
            b.images.size(0));
  const int64_t B = b.images.size(0);
  auto check_labels = [&](const char* objective, const char* field, const Tensor& t, int64_t classes) {
    if (!o.enabled(objective)) return;
    MMG_CHECK(t.defined() && t.dim() == 1 && t.size(0) == B, "VLM: objective '{}' needs batch.{} [{}], got {}",
              objective, field, B, t.defined() ? shape_str(t.shape()) : "undefined");
    for (int64_t v : t.to_vector<int64_t>())
      MMG_CHECK((v >= 0 && v < classes) || v == -100, "VLM: batch.{} holds {}, outside [0,{}) (and not -100, ignored)",
                field, v, classes);
  };
  check_labels("cls", "class_ids", b.class_ids, config.num_classes);
  check_labels("vqa", "answer_ids", b.answer_ids, config.num_answers);
  if (o.enabled("itm") || o.enabled("itc"))
    MMG_CHECK(B >= 2, "VLM: itc and itm need at least 2 pairs in a batch, got {}", B);
  if (o.enabled("cap") && b.caption_ids.defined())
    MMG_CHECK(b.caption_ids.dim() == 2 && b.caption_ids.size(0) == B, "VLM: batch.caption_ids {} must be [B={},T]",
              shape_str(b.caption_ids.shape()), B);
  if (b.question_ids.defined())
    MMG_CHECK(b.question_ids.dim() == 2 && b.question_ids.size(0) == B, "VLM: batch.question_ids {} must be [B={},Q]",
              shape_str(b.question_ids.shape()), B);
  if (b.negative_ids.defined()) {
    MMG_CHECK(b.negative_ids.dim() == 2 && b.text_ids.defined() && b.negative_ids.shape() == b.text_ids.shape(),
              "VLM: batch.negative_ids {} must be shaped like text_ids {} (one edit per caption, padded alike)",
              shape_str(b.negative_ids.shape()), b.text_ids.defined() ? shape_str(b.text_ids.shape()) : "undefined");
    MMG_CHECK(!b.negative_mask.defined() || b.negative_mask.shape() == b.negative_ids.shape(),
              "VLM: batch.negative_mask {} must match negative_ids {}", shape_str(b.negative_mask.shape()),
              shape_str(b.negative_ids.shape()));
  }
}

// Each defined tensor of the batch through f.
template <class F>
static VLMBatch map_batch(const VLMBatch& b, F f) {
  auto g = [&](const Tensor& t) { return t.defined() ? f(t) : t; };
  return {g(b.images),       g(b.text_ids),     g(b.text_mask),     g(b.class_ids),    g(b.answer_ids),
          g(b.caption_ids),  g(b.question_ids), g(b.question_mask), g(b.negative_ids), g(b.negative_mask)};
}

VLMBatch to_device(const VLMBatch& b, Device device, bool non_blocking) {
  return map_batch(b, [&](const Tensor& t) { return t.device() != device ? t.to(device, non_blocking) : t; });
}

VLMBatch pin_memory(const VLMBatch& b) {
  return map_batch(b, [](const Tensor& t) { return t.device().is_cpu() ? t.pin_memory() : t; });
}

FusionOutput VLM::encode(const Tensor& images, const Tensor& ids, const Tensor& mask) const {
  return model->forward(images, ids, mask);
}

Tensor VLM::image_tokens(const FusionOutput& out) const { return out.image_tokens; }

FusionOutput VLM::image_only(const Tensor& images) const {
  if (!model->single) {  // the ViT alone: its tokens never see a text
    ViTOutput v = model->image_encoder().forward(images);
    FusionOutput out;
    out.image_tokens = v.tokens;
    out.image_pooled = v.pooled;
    return out;
  }
  // The joint encoder needs a text: the empty one, [CLS] [SEP], for every image.
  const int64_t B = images.size(0);
  std::vector<int64_t> ids;
  for (int64_t b = 0; b < B; ++b) ids.insert(ids.end(), {config.tokens.cls_id, config.tokens.sep_id});
  return encode(images, from_vector(ids, {B, 2}, {.dtype = DType::i64, .device = images.device()}), Tensor());
}

Tensor VLM::image_pooled(const FusionOutput& out) const {
  return out.image_pooled.defined() ? out.image_pooled : out.image_tokens.mean({1});
}

Tensor VLM::mlm_tokens(const VLMBatch& batch, const FusionOutput& out, const Tensor& masked_ids) const {
  if (model->single) {  // the joint encoder again, over the masked text: its text positions
    FusionOutput m = model->forward(batch.images, masked_ids, out.text_mask);
    return m.text_tokens;
  }
  TextOutput text = model->dual->text->forward(masked_ids, out.text_mask);
  if (model->fusion) return model->fuse(text.tokens, out.text_mask, out.image_tokens).tokens;
  return text.tokens;  // dual, pooled: masked language modelling of the text encoder alone
}

FusionOutput VLM::encode_texts(const Tensor& ids, const Tensor& mask) const {
  TextOutput text = model->dual->text->forward(ids, mask);
  FusionOutput out;
  out.text_mask = model->dual->text->key_mask(ids, mask);
  out.text_tokens = text.tokens;
  out.text_pooled = text.pooled;
  if (!model->pooled) out.text_emb = model->dual->embed_text(text);
  return out;
}

ITMResult VLM::itm(const VLMBatch& batch, const FusionOutput& out, const FusionOutput& negatives,
                   Generator* gen) const {
  const int64_t B = batch.images.size(0);
  const bool edits = batch.negative_ids.defined();
  // With edits, text index B+i is the edit of caption i: every text source below is the batch's
  // texts followed by their edits.
  auto with_edits = [&](const Tensor& texts, const Tensor& edited) { return edits ? cat({texts, edited}) : texts; };
  FusePairs fuse;
  Tensor sim;
  if (model->fusion) {  // ALBEF: the fusion encoder over the unimodal tokens of the chosen pairs
    if (!edits) sim = similarity_logits(out.image_emb, out.text_emb, out.logit_scale).detach();
    Tensor tokens = with_edits(out.text_tokens, negatives.text_tokens);
    Tensor mask = with_edits(out.text_mask, negatives.text_mask);
    fuse = [&, tokens, mask](const Tensor& ii, const Tensor& ti) {
      return model->fuse(index_select(tokens, 0, ti), index_select(mask, 0, ti), index_select(out.image_tokens, 0, ii))
          .pooled;
    };
  } else if (model->single) {  // ViLT: the joint encoder over the chosen pairs
    Tensor ids = with_edits(batch.text_ids, batch.negative_ids);
    Tensor mask;  // undefined: ids != pad_id
    if (batch.text_mask.defined() && (!edits || batch.negative_mask.defined()))
      mask = with_edits(batch.text_mask, batch.negative_mask);
    fuse = [&, ids, mask](const Tensor& ii, const Tensor& ti) {
      return model
          ->forward(index_select(batch.images, 0, ii), index_select(ids, 0, ti),
                    mask.defined() ? index_select(mask, 0, ti) : Tensor())
          .fused_pooled;
    };
  } else {  // pooled: the fusion of the two projected pooled vectors
    Tensor pooled = with_edits(out.text_pooled, negatives.text_pooled);
    fuse = [&, pooled](const Tensor& ii, const Tensor& ti) {
      return model->pooled->forward(model->dual->image_proj->forward(index_select(out.image_pooled, 0, ii)),
                                    model->dual->text_proj->forward(index_select(pooled, 0, ti)));
    };
  }
  // Only the first n samples are scored (config.itm_samples); a smaller batch is scored whole.
  const int64_t n = config.itm_samples == 0 ? B : std::min(config.itm_samples, B);
  if (edits) return itm_loss_edits(fuse, *itm_head, B, n);
  // Without contrastive similarities (single, pooled) every other pair is equally likely.
  if (!sim.defined()) sim = zeros({n, n}, {.device = batch.images.device()});
  if (sim.size(0) != n) sim = narrow(narrow(sim, 0, 0, n), 1, 0, n);  // hard negatives among the n
  return itm_loss(fuse, *itm_head, sim, gen);
}

Losses VLM::compute_losses(const VLMBatch& batch, Generator* gen) const {
  return compute_losses(batch, gen, config.objectives);
}

Losses VLM::compute_losses(const VLMBatch& batch, Generator* gen, const ObjectiveWeights& o) const {
  for (const auto& [name, weight] : o.weights)
    MMG_CHECK(weight == 0.0 || config.objectives.enabled(name),
              "VLM: objective '{}' was not built into this model (its config enables: {})", name,
              fmt::join(enabled_objectives(config.objectives), ", "));
  check_batch(batch, o);
  const bool own_questions = batch.question_ids.defined();
  FusionOutput out;
  if (model->single) {
    out = encode(batch.images, batch.text_ids, batch.text_mask);
  } else if (model->vision) {  // an image classifier: no text to read
    ViTOutput v = model->vision->forward(batch.images);
    out.image_tokens = v.tokens;
    out.image_pooled = v.pooled;
  } else {
    // The captions' fused [CLS] is read only by vqa on the same texts; itm fuses its own pairs.
    const bool fuse_captions = o.enabled("vqa") && !own_questions;
    out = model->forward_encoded(model->dual->vision->forward(batch.images), batch.text_ids, batch.text_mask,
                                 Tensor(), false, fuse_captions);
  }
  // The edited captions, through the text encoder once for both itc and itm.
  FusionOutput negatives;
  if (batch.negative_ids.defined() && !model->single && !model->vision && (o.enabled("itc") || o.enabled("itm")))
    negatives = encode_texts(batch.negative_ids, batch.negative_mask);
  Losses losses;
  if (o.enabled("itc")) {
    ContrastiveOptions opts{.kind = config.contrastive == "hinge" ? ContrastiveOptions::Kind::hinge
                                                                   : ContrastiveOptions::Kind::clip,
                            .margin = config.margin};
    losses.add("itc", negatives.text_emb.defined() ? contrastive_loss_with_negatives(out.image_emb, out.text_emb,
                                                                                     negatives.text_emb,
                                                                                     out.logit_scale, opts)
                                                   : contrastive_loss(out.image_emb, out.text_emb, out.logit_scale, opts));
  }
  if (o.enabled("itm")) losses.add("itm", itm(batch, out, negatives, gen).loss);
  if (o.enabled("mlm")) {
    MaskedTokens m = mask_tokens(batch.text_ids, out.text_mask, config.vocab_size(), config.tokens.mask_id,
                                 config.tokens.all(), config.mlm_prob, gen);
    losses.add("mlm", mlm_loss(mlm_head->forward(mlm_tokens(batch, out, m.input_ids)), m.labels));
  }
  if (o.enabled("vqa")) {
    Tensor fused = out.fused_pooled;
    if (own_questions) {
      ViTOutput image{out.image_tokens, out.image_pooled};
      fused = model->single ? encode(batch.images, batch.question_ids, batch.question_mask).fused_pooled
                            : model->forward_encoded(image, batch.question_ids, batch.question_mask).fused_pooled;
    }
    losses.add("vqa", cross_entropy(vqa_head->forward(fused), batch.answer_ids));
  }
  // Captioning and classification read the image alone. The ViT's outputs are that already; the
  // single-stream image tokens have seen the batch's text (for captioning: the answer), so that
  // family encodes the images once more with an empty text, as at inference.
  FusionOutput image = out;
  if (model->single && (o.enabled("cls") || o.enabled("cap"))) image = image_only(batch.images);
  if (o.enabled("cls")) losses.add("cls", cross_entropy(cls_head->forward(image_pooled(image)), batch.class_ids));
  if (o.enabled("cap")) {
    Tensor captions = batch.caption_ids.defined() ? batch.caption_ids : batch.text_ids;
    Tensor logits = caption_decoder->forward(captions, image_tokens(image));
    losses.add("cap", caption_lm_loss(logits, captions, config.tokens.pad_id));
  }
  losses.weigh(o);
  return losses;
}

// ---------------------------------------------------------------------------------------------
// Inference

Tensor VLM::class_logits(const Tensor& images) const {
  MMG_CHECK(cls_head != nullptr, "VLM: class_logits needs the 'cls' objective");
  return cls_head->forward(image_pooled(image_only(images)));
}

Tensor VLM::answer_logits(const Tensor& images, const Tensor& ids, const Tensor& mask) const {
  MMG_CHECK(vqa_head != nullptr, "VLM: answer_logits needs the 'vqa' objective");
  return vqa_head->forward(encode(images, ids, mask).fused_pooled);
}

Tensor VLM::match_logits(const Tensor& images, const Tensor& ids, const Tensor& mask) const {
  MMG_CHECK(itm_head != nullptr, "VLM: match_logits needs the 'itm' objective");
  // The fused [CLS] of the pair, as itm_loss's fuse gives it for each family.
  return itm_head->forward(encode(images, ids, mask).fused_pooled);
}

std::vector<std::vector<int64_t>> VLM::caption(const Tensor& images, int64_t beam, int64_t max_new,
                                               double length_penalty) {
  MMG_CHECK(caption_decoder != nullptr, "VLM: caption needs the 'cap' objective");
  Tensor memory;
  {
    NoGradGuard no_grad;
    const bool was_training = is_training();
    eval();
    memory = image_tokens(image_only(images));
    train(was_training);
  }
  std::vector<std::vector<int64_t>> out;
  for (auto& hyps : caption_decoder->beam_search(memory, beam, max_new, length_penalty))
    out.push_back(hyps.empty() ? std::vector<int64_t>{} : hyps.front().tokens);
  return out;
}

}  // namespace mmg::models
