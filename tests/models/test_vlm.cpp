// VLM: config and presets, names, the loss report (each objective, the weighted total), every
// parameter reached by one backward (each fusion family), each objective's loss falls with
// training, determinism per seed, captions, and the errors for bad batches and configs.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <set>

#include "core/mmgrad.h"
#include "models/vlm.h"
#include "tests/models/model_test_util.h"

using namespace mmg;
using namespace mmg::models;
using namespace mmg::test;

namespace {

// A fixed batch for the micro presets: 8×8 images, texts "[CLS] words [SEP] [PAD]..." of 8
// tokens over a vocabulary of 50 (ids 5..49 are words).
VLMBatch micro_batch(int64_t B, uint64_t seed, int64_t num_classes = 4, int64_t num_answers = 6) {
  Generator g(seed);
  VLMBatch b;
  b.images = randn({B, 3, 8, 8}, {}, &g);
  const int64_t S = 8;
  std::vector<int64_t> words = randint(5, 50, {B, S}, {.dtype = DType::i64}, &g).to_vector<int64_t>();
  std::vector<int64_t> ids(static_cast<size_t>(B * S), 0);
  std::vector<bool> mask(static_cast<size_t>(B * S), false);
  for (int64_t i = 0; i < B; ++i) {
    const int64_t len = 4 + i % 5;  // 4..8 tokens, [CLS] and [SEP] included
    for (int64_t t = 0; t < len; ++t) {
      ids[i * S + t] = t == 0 ? 2 : t == len - 1 ? 3 : words[i * S + t];
      mask[i * S + t] = true;
    }
  }
  b.text_ids = from_vector(ids, {B, S});
  b.text_mask = from_vector(mask, {B, S});
  b.class_ids = randint(0, num_classes, {B}, {.dtype = DType::i64}, &g);
  b.answer_ids = randint(0, num_answers, {B}, {.dtype = DType::i64}, &g);
  return b;
}

// The batch with an "edit" of each caption: its first word replaced by another word.
VLMBatch with_edits(VLMBatch b) {
  std::vector<int64_t> ids = b.text_ids.to_vector<int64_t>();
  const int64_t S = b.text_ids.size(1);
  for (int64_t i = 0; i < b.text_ids.size(0); ++i) ids[i * S + 1] = 5 + (ids[i * S + 1] - 5 + 17) % 45;
  b.negative_ids = from_vector(ids, b.text_ids.shape());
  b.negative_mask = b.text_mask;
  return b;
}

VLMConfig micro_config(const std::string& fusion_preset, const nlohmann::json& objectives) {
  VLMConfig c = VLMConfig::preset("vlm-micro");
  c.fusion = FusionModelConfig::preset(fusion_preset);
  c.objectives = ObjectiveWeights::from_json(objectives);
  c.derive_decoder_fields();
  c.validate();
  return c;
}

}  // namespace

TEST_CASE("VLMConfig: presets, JSON round trip, the decoder's derived fields, and errors") {
  for (const std::string& name : VLMConfig::preset_names()) {
    CAPTURE(name);
    VLMConfig c = VLMConfig::preset(name);
    CHECK(VLMConfig::from_json(c.to_json()).to_json() == c.to_json());
    CHECK(c.decoder.vocab_size == c.fusion.dual.text.vocab_size);
    CHECK(c.decoder.memory_dim == c.fusion.dual.vision.dim);
    CHECK(c.decoder.bos_id == c.tokens.cls_id);
    CHECK(c.decoder.eos_id == c.tokens.sep_id);
    CHECK(c.fusion.family == "cross");
    for (const std::string& o : ObjectiveWeights::known()) CHECK(c.objectives.weight(o) == 1.0);
  }
  // A short config: the fusion by its JSON, the decoder's sizes derived from it.
  nlohmann::json j = {{"family", "vlm"},
                      {"fusion", FusionModelConfig::preset("vilt-micro").to_json()},
                      {"objectives", {{"itm", 1}, {"cap", 0.5}}},
                      {"decoder", {{"dim", 8}, {"heads", 2}, {"max_len", 8}}}};
  VLMConfig c = VLMConfig::from_json(j);
  CHECK(c.fusion.family == "single");
  CHECK(c.decoder.vocab_size == 50);
  CHECK(c.decoder.memory_dim == 16);
  CHECK(c.decoder.dim == 8);
  CHECK(c.objectives.weight("cap") == 0.5);

  nlohmann::json bad = j;
  bad["objectives"] = {{"itc", 1}};
  CHECK_THROWS_WITH_AS(VLMConfig::from_json(bad), doctest::Contains("objective 'itc' needs a fusion family that supports it; 'single' does not"), Error);
  bad = j;
  bad["objectives"] = {{"itm", 0}};
  CHECK_THROWS_WITH_AS(VLMConfig::from_json(bad), doctest::Contains("no objective has a non-zero weight"), Error);
  bad = j;
  bad["decoder"]["vocab_size"] = 60;
  CHECK_THROWS_WITH_AS(VLMConfig::from_json(bad), doctest::Contains("the decoder (vocab_size 60"), Error);
  bad = j;
  bad["mlm_probability"] = 0.2;
  CHECK_THROWS_WITH_AS(VLMConfig::from_json(bad), doctest::Contains("unknown key 'mlm_probability'"), Error);
  bad = j;
  bad["tokens"] = {{"mask_id", 77}};
  CHECK_THROWS_WITH_AS(VLMConfig::from_json(bad), doctest::Contains("tokens.mask_id 77 is outside the text vocabulary [0,50)"), Error);
  bad = j;
  bad["contrastive"] = "triplet";
  CHECK_THROWS_WITH_AS(VLMConfig::from_json(bad), doctest::Contains("contrastive must be one of clip, hinge, got 'triplet'"), Error);
  CHECK_THROWS_WITH_AS(VLMConfig::preset("vlm-huge"), doctest::Contains("unknown preset 'vlm-huge' (valid: vlm-micro, vlm-tiny)"), Error);
}

TEST_CASE("VLM: parameter names, and heads only for the enabled objectives") {
  manual_seed(1);
  VLM vlm(VLMConfig::preset("vlm-micro"));
  auto sd = vlm.state_dict();
  for (const char* key : {"model.vision.cls_token", "model.text.word_embeddings.weight", "model.logit_scale",
                          "model.image_proj.weight", "model.fusion.layers.0.cross_attn.k_proj.weight",
                          "itm_head.weight", "mlm_head.dense.weight", "mlm_head.layer_norm.weight",
                          "mlm_head.decoder.weight", "vqa_head.fc1.weight", "vqa_head.fc2.bias", "cls_head.norm.weight",
                          "cls_head.fc.weight", "caption_decoder.layers.0.cross_attn.k_proj.weight",
                          "caption_decoder.lm_head.weight"}) {
    CAPTURE(key);
    CHECK(sd.count(key) == 1);
  }
  CHECK(sd.at("itm_head.weight").shape() == Shape{2, 16});
  CHECK(sd.at("mlm_head.decoder.weight").shape() == Shape{50, 16});
  CHECK(sd.at("vqa_head.fc2.weight").shape() == Shape{6, 32});
  CHECK(sd.at("cls_head.fc.weight").shape() == Shape{4, 16});

  VLM only_itc(micro_config("clip-micro", {{"itc", 1}}));
  for (auto& [name, t] : only_itc.named_parameters()) CHECK(name.rfind("model.", 0) == 0);
  CHECK(only_itc.itm_head == nullptr);
  CHECK(only_itc.caption_decoder == nullptr);
}

TEST_CASE("VLM: each loss reported 0-d and finite, the total their weighted sum") {
  manual_seed(2);
  VLMConfig c = VLMConfig::preset("vlm-micro");
  c.objectives = ObjectiveWeights::from_json({{"itc", 1}, {"itm", 0.5}, {"mlm", 2}, {"vqa", 0.25}, {"cls", 1}, {"cap", 3}});
  VLM vlm(c);
  Generator gen(3);
  Losses losses = vlm.compute_losses(micro_batch(6, 4), &gen);
  std::set<std::string> names;
  double weighted = 0;
  for (auto& [name, loss] : losses.items) {
    CAPTURE(name);
    names.insert(name);
    CHECK(loss.dim() == 0);
    CHECK(std::isfinite(loss.item()));
    CHECK(loss.item() > 0);
    weighted += c.objectives.weight(name) * loss.item();
  }
  CHECK(names == std::set<std::string>{"itc", "itm", "mlm", "vqa", "cls", "cap"});
  CHECK(losses.total.dim() == 0);
  CHECK(losses.total.item() == doctest::Approx(weighted).epsilon(1e-5));
  // At initialisation the classifiers are close to uniform: log 4 for 4 classes, log 6 for 6 answers.
  CHECK(losses.get("cls").item() == doctest::Approx(std::log(4.0)).epsilon(0.1));
  CHECK(losses.get("vqa").item() == doctest::Approx(std::log(6.0)).epsilon(0.1));

  // The masking and the negatives come from the generator: the same seed, the same losses.
  Generator a(9), b(9);
  CHECK(vlm.compute_losses(micro_batch(6, 4), &a).values() == vlm.compute_losses(micro_batch(6, 4), &b).values());
}

TEST_CASE("VLM: after one backward every trainable parameter has a finite, non-zero gradient (every family)") {
  struct Case {
    const char* fusion;
    nlohmann::json objectives;
  };
  for (const Case& k : {Case{"albef-micro", {{"itc", 1}, {"itm", 1}, {"mlm", 1}, {"vqa", 1}, {"cls", 1}, {"cap", 1}}},
                        Case{"vilt-micro", {{"itm", 1}, {"mlm", 1}, {"vqa", 1}, {"cls", 1}, {"cap", 1}}},
                        Case{"clip-micro", {{"itc", 1}, {"mlm", 1}, {"cls", 1}, {"cap", 1}}},
                        Case{"pooled-micro", {{"itm", 1}, {"mlm", 1}, {"vqa", 1}, {"cls", 1}, {"cap", 1}}}}) {
    CAPTURE(k.fusion);
    manual_seed(5);
    VLMConfig c = micro_config(k.fusion, k.objectives);
    c.contrastive = "clip";
    VLM vlm(c);
    Generator gen(6);
    // A larger batch so that MLM selects tokens of every kind and position.
    vlm.compute_losses(micro_batch(8, 7), &gen).total.backward();
    check_every_parameter_has_a_gradient(vlm);
  }
}

// mlm, vqa, cls and cap fall within 20 steps. itc and itm get 60: at initialisation (BERT's
// trunc_normal(0.02)) the text encoder's [CLS] is the same vector for every text to four decimals
// (cosine 1.0000) and the images' nearly so, so both objectives start on a plateau at chance
// level (ln B for itc, 0.637 for itm: always "no match") that they leave only after some 20-40
// steps, once the encoders have learned to tell their inputs apart.
TEST_CASE("VLM: each objective's loss falls with AdamW steps on a fixed batch") {
  const VLMBatch batch = micro_batch(6, 8);
  auto run = [&](const VLMConfig& c, const std::string& objective) {
    manual_seed(9);
    VLM vlm(c);
    const bool plateau = objective == "itc" || objective == "itm";
    auto losses = train_losses(trainable(vlm), [&] {
      Generator gen(10);  // the same masks and negatives at every step
      return vlm.compute_losses(batch, &gen).get(objective);
    }, plateau ? 60 : 20, 3e-3);
    CAPTURE(losses.front());
    CAPTURE(losses.back());
    for (double l : losses) CHECK(std::isfinite(l));
    CHECK(losses.back() < 0.7 * losses.front());
  };
  for (const std::string& objective : ObjectiveWeights::known()) {
    CAPTURE(objective);
    run(micro_config("albef-micro", {{objective, 1}}), objective);
  }
  // The contrastive objective with the hinge ranking loss instead of InfoNCE.
  VLMConfig c = micro_config("albef-micro", {{"itc", 1}});
  c.contrastive = "hinge";
  run(c, "itc");
}

TEST_CASE("VLM with edited captions: itc adds them as candidates, itm pairs each image with its edit") {
  const VLMBatch batch = with_edits(micro_batch(6, 8));
  SUBCASE("itc equals contrastive_loss_with_negatives over the model's own embeddings") {
    manual_seed(21);
    VLM vlm(micro_config("albef-micro", {{"itc", 1}}));
    vlm.eval();
    NoGradGuard g;
    FusionOutput captions = vlm.model->forward(batch.images, batch.text_ids, batch.text_mask);
    FusionOutput edits = vlm.model->forward(batch.images, batch.negative_ids, batch.negative_mask);
    const double expected = contrastive_loss_with_negatives(captions.image_emb, captions.text_emb, edits.text_emb,
                                                            captions.logit_scale).item();
    CHECK(vlm.compute_losses(batch).get("itc").item() == doctest::Approx(expected).epsilon(1e-5));
    CHECK(vlm.compute_losses(micro_batch(6, 8)).get("itc").item() != doctest::Approx(expected).epsilon(1e-3));
  }
  SUBCASE("itm draws nothing (the same loss from any generator) and falls with AdamW steps, every family") {
    for (const char* fusion : {"albef-micro", "vilt-micro", "pooled-micro"}) {
      CAPTURE(fusion);
      manual_seed(22);
      VLM vlm(micro_config(fusion, {{"itm", 1}}));
      Generator a(1), b(2);
      CHECK(vlm.compute_losses(batch, &a).get("itm").item() == vlm.compute_losses(batch, &b).get("itm").item());
      auto losses = train_losses(trainable(vlm), [&] { return vlm.compute_losses(batch).get("itm"); }, 60, 3e-3);
      CAPTURE(losses.front());
      CAPTURE(losses.back());
      CHECK(losses.front() == doctest::Approx(std::log(2.0)).epsilon(0.05));  // half the pairs match
      CHECK(losses.back() < 0.5 * losses.front());
    }
  }
  SUBCASE("itm_samples: the loss over the first n samples is the loss of a batch of those n, every family") {
    const int64_t n = 4;
    auto first = [&](const VLMBatch& all) {
      VLMBatch b = all;
      for (Tensor* t : {&b.images, &b.text_ids, &b.text_mask, &b.class_ids, &b.answer_ids, &b.negative_ids,
                        &b.negative_mask})
        if (t->defined()) *t = slice(*t, 0, 0, n);
      return b;
    };
    for (const char* fusion : {"albef-micro", "vilt-micro", "pooled-micro"})
      for (bool edits : {true, false}) {
        CAPTURE(fusion);
        CAPTURE(edits);
        manual_seed(24);
        VLMConfig c = micro_config(fusion, {{"itm", 1}});
        VLM whole(c);
        c.itm_samples = n;
        VLM subset(c);
        subset.load_state_dict(whole.state_dict());
        subset.eval(), whole.eval();
        const VLMBatch all = edits ? batch : micro_batch(6, 8);
        Generator a(3), b(3);  // without edits: the same hard-negative draws among the n
        const double expected = whole.compute_losses(first(all), &a).get("itm").item();
        CHECK(subset.compute_losses(all, &b).get("itm").item() == doctest::Approx(expected).epsilon(1e-5));
        // More samples than the batch holds: the whole batch.
        c.itm_samples = 50;
        VLM more(c);
        more.load_state_dict(whole.state_dict());
        more.eval();
        Generator d(3), e(3);
        CHECK(more.compute_losses(all, &d).get("itm").item() == whole.compute_losses(all, &e).get("itm").item());
      }
    VLMConfig bad = micro_config("albef-micro", {{"itm", 1}});
    bad.itm_samples = -1;
    CHECK_THROWS_WITH_AS(bad.validate(), doctest::Contains("itm_samples must be >= 0"), Error);
  }
  SUBCASE("edits shaped unlike the captions are an error") {
    VLM vlm(micro_config("albef-micro", {{"itc", 1}, {"itm", 1}}));
    VLMBatch b = batch;
    b.negative_ids = slice(b.negative_ids, 1, 0, 7);
    b.negative_mask = Tensor();
    CHECK_THROWS_WITH_AS(vlm.compute_losses(b), doctest::Contains("batch.negative_ids [6,7] must be shaped like text_ids [6,8]"),
                         Error);
  }
}

TEST_CASE("VLM: skipping the padding (the default) changes no loss and no gradient") {
  // Texts of 4..8 tokens padded to 8, edits and all four pre-training objectives: every text goes
  // through the text encoder and the fusion packed (nn/packed_tokens.h) or padded.
  const VLMBatch batch = with_edits(micro_batch(6, 8));
  const nlohmann::json objectives = {{"itc", 1}, {"itm", 1}, {"mlm", 1}, {"vqa", 1}};
  VLMConfig config = micro_config("albef-micro", objectives);
  REQUIRE(config.fusion.dual.text.skip_padding);
  REQUIRE(config.fusion.fusion.skip_padding);
  config.fusion.fusion.causal = true;  // as the demo's fusion
  config.fusion.fusion.gated_mlp = true;
  VLMConfig padded_config = config;
  padded_config.fusion.dual.text.skip_padding = false;
  padded_config.fusion.fusion.skip_padding = false;
  manual_seed(23);
  VLM packed(config), padded(padded_config);
  padded.load_state_dict(packed.state_dict());
  Generator ga(4), gb(4);  // the same masked-token draws for mlm
  Losses a = packed.compute_losses(batch, &ga), b = padded.compute_losses(batch, &gb);
  for (const char* name : {"itc", "itm", "mlm", "vqa"}) {
    CAPTURE(name);
    CHECK(a.get(name).item() == doctest::Approx(b.get(name).item()).epsilon(1e-5));
  }
  a.total.backward();
  b.total.backward();
  auto pa = packed.named_parameters(), pb = padded.named_parameters();
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    CAPTURE(pa[i].first);
    REQUIRE(pa[i].second.grad().defined());
    CHECK(allclose(pa[i].second.grad(), pb[i].second.grad(), 1e-4, 1e-6));
  }
}

TEST_CASE("VLM: captions are the decoder's beam search over the ViT's tokens, class and answer logits") {
  manual_seed(11);
  VLM vlm(VLMConfig::preset("vlm-micro"));
  Tensor images = micro_batch(3, 12).images;
  auto greedy = vlm.caption(images);
  auto beams = vlm.caption(images, 3, 5);
  REQUIRE(greedy.size() == 3);
  REQUIRE(beams.size() == 3);
  NoGradGuard g;
  vlm.eval();
  Tensor memory = vlm.model->dual->vision->forward(images).tokens;
  CHECK(greedy == vlm.caption_decoder->greedy_decode(memory));
  auto direct = vlm.caption_decoder->beam_search(memory, 3, 5);
  for (size_t b = 0; b < 3; ++b) CHECK(beams[b] == direct[b].front().tokens);

  CHECK(vlm.class_logits(images).shape() == Shape{3, 4});
  VLMBatch batch = micro_batch(3, 12);
  CHECK(vlm.answer_logits(batch.images, batch.text_ids, batch.text_mask).shape() == Shape{3, 6});
}

TEST_CASE("VLM: errors for batches that do not fit the objectives") {
  manual_seed(13);
  VLM vlm(VLMConfig::preset("vlm-micro"));
  VLMBatch b = micro_batch(4, 14);
  b.class_ids = Tensor();
  CHECK_THROWS_WITH_AS(vlm.compute_losses(b), doctest::Contains("objective 'cls' needs batch.class_ids [4], got undefined"),
                       Error);
  b = micro_batch(4, 14);
  b.answer_ids = full({4}, 6, {.dtype = DType::i64});
  CHECK_THROWS_WITH_AS(vlm.compute_losses(b), doctest::Contains("batch.answer_ids holds 6, outside [0,6)"), Error);
  CHECK_THROWS_WITH_AS(vlm.compute_losses(micro_batch(1, 14)), doctest::Contains("need at least 2 pairs in a batch, got 1"),
                       Error);
  b = micro_batch(4, 14);
  b.text_ids = b.text_ids.slice(0, 0, 3);
  CHECK_THROWS_WITH_AS(vlm.compute_losses(b), doctest::Contains("text ids [3,8] must be [B=4,S]"), Error);
}

TEST_CASE("VLM: a multi-task batch (captions and their questions) equals the two single-task batches") {
  for (std::string family : {"albef-micro", "vilt-micro"}) {
    CAPTURE(family);
    manual_seed(21);
    const bool cross = family == "albef-micro";
    nlohmann::json objectives = cross ? nlohmann::json{{"itc", 1}, {"mlm", 1}, {"vqa", 2}}
                                      : nlohmann::json{{"mlm", 1}, {"vqa", 2}};
    VLM vlm(micro_config(family, objectives));
    vlm.eval();  // no dropout: the three forwards below must see the same model
    VLMBatch captions = micro_batch(5, 30), questions = micro_batch(5, 31);
    questions.images = captions.images;
    VLMBatch both = captions;
    both.question_ids = questions.text_ids;
    both.question_mask = questions.text_mask;
    both.answer_ids = questions.answer_ids;

    Generator g1(4), g2(4), g3(4);
    Losses joint = vlm.compute_losses(both, &g1);
    nlohmann::json caption_only = objectives;
    caption_only.erase("vqa");
    Losses text = vlm.compute_losses(captions, &g2, ObjectiveWeights::from_json(caption_only));
    Losses vqa = vlm.compute_losses(questions, &g3, ObjectiveWeights::from_json({{"vqa", 2}}));
    CHECK(joint.get("mlm").item() == doctest::Approx(text.get("mlm").item()).epsilon(1e-6));
    if (cross) CHECK(joint.get("itc").item() == doctest::Approx(text.get("itc").item()).epsilon(1e-6));
    CHECK(joint.get("vqa").item() == doctest::Approx(vqa.get("vqa").item()).epsilon(1e-6));
    CHECK(joint.total.item() == doctest::Approx(text.total.item() + vqa.total.item()).epsilon(1e-6));
    // Only the listed objectives run, weighed by the given weights.
    CHECK_FALSE(vqa.has("mlm"));
    CHECK(vqa.total.item() == doctest::Approx(2 * vqa.get("vqa").item()).epsilon(1e-6));
    // An objective the model has no head for is refused, naming what it has.
    CHECK_THROWS_WITH_AS(vlm.compute_losses(captions, &g1, ObjectiveWeights::from_json({{"cls", 1}})),
                         doctest::Contains("objective 'cls' was not built into this model"), Error);
  }
}
