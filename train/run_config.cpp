#include "train/run_config.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "models/config.h"

namespace mmg {

using models::ConfigReader;
using nlohmann::json;

namespace {

void read_doubles(const json& j, const char* what, const char* key, std::vector<double>& out) {
  if (j.is_number()) {
    out = {j.get<double>()};
    return;
  }
  MMG_CHECK(j.is_array() && !j.empty() && j.size() <= 4, "{}: key '{}' must be a number or a list of 1 to 4 numbers, got {}",
            what, key, j.dump());
  out.clear();
  for (const auto& v : j) {
    MMG_CHECK(v.is_number(), "{}: key '{}' must hold numbers, got {}", what, key, v.dump());
    out.push_back(v.get<double>());
  }
}

}  // namespace

// ---- data ----

json DataConfig::to_json() const {
  json j = {{"source", source}, {"n", n}, {"image_size", image_size}, {"seed", seed}, {"gallery", gallery},
            {"mean", mean}, {"std", std}, {"edit_negatives", edit_negatives}};
  if (!path.empty()) j["path"] = path;
  if (!question_types.empty()) j["question_types"] = question_types;
  if (!question_weights.empty()) j["question_weights"] = question_weights;
  j["augment"] = {{"enabled", augment.enabled}, {"min_scale", augment.min_scale}, {"brightness", augment.brightness},
                  {"contrast", augment.contrast}, {"saturation", augment.saturation}, {"hflip", augment.hflip}};
  return j;
}

DataConfig DataConfig::from_json(const json& j) {
  DataConfig c;
  json rest = j;
  if (j.is_object() && j.contains("mean")) {
    read_doubles(j["mean"], "DataConfig", "mean", c.mean);
    rest.erase("mean");
  }
  if (j.is_object() && j.contains("std")) {
    read_doubles(j["std"], "DataConfig", "std", c.std);
    rest.erase("std");
  }
  if (j.is_object() && j.contains("question_types")) {
    const json& q = j["question_types"];
    MMG_CHECK(q.is_array(), "DataConfig: key 'question_types' must be a list of question types, got {}", q.dump());
    for (const auto& t : q) {
      MMG_CHECK(t.is_string() && !t.get<std::string>().empty(),
                "DataConfig: key 'question_types' must hold non-empty strings, got {}", t.dump());
      c.question_types.push_back(t.get<std::string>());
    }
    rest.erase("question_types");
  }
  if (j.is_object() && j.contains("question_weights")) {
    const json& q = j["question_weights"];
    MMG_CHECK(q.is_object(), "DataConfig: key 'question_weights' must map question types to weights, got {}", q.dump());
    for (const auto& [type, w] : q.items()) {
      MMG_CHECK(!type.empty() && w.is_number() && std::isfinite(w.get<double>()) && w.get<double>() > 0,
                "DataConfig: question_weights['{}'] must be a positive number, got {} (question_types drops a type)",
                type, w.dump());
      c.question_weights[type] = w.get<double>();
    }
    rest.erase("question_weights");
  }
  ConfigReader r(rest, "DataConfig", "");
  r.read("source", c.source);
  r.read("path", c.path);
  r.read("n", c.n);
  r.read("image_size", c.image_size);
  r.read("seed", c.seed);
  r.read("gallery", c.gallery);
  r.read("edit_negatives", c.edit_negatives);
  if (const json* a = r.object("augment")) {
    ConfigReader ar(*a, "DataConfig augment", "");
    ar.read("enabled", c.augment.enabled);
    ar.read("min_scale", c.augment.min_scale);
    ar.read("brightness", c.augment.brightness);
    ar.read("contrast", c.augment.contrast);
    ar.read("saturation", c.augment.saturation);
    ar.read("hflip", c.augment.hflip);
    ar.finish();
    MMG_CHECK(c.augment.min_scale > 0 && c.augment.min_scale <= 1, "DataConfig augment: min_scale must be in (0, 1], got {}",
              c.augment.min_scale);
  }
  r.finish();
  models::check_choice("DataConfig", "source", c.source, {"scenes", "fashion-scenes", "fashion-mnist", "folder"});
  MMG_CHECK(c.source != "folder" || !c.path.empty(), "DataConfig: source 'folder' needs a \"path\"");
  MMG_CHECK(c.n > 0 && c.image_size > 0 && c.gallery > 0, "DataConfig: n ({}), image_size ({}) and gallery ({}) must be positive",
            c.n, c.image_size, c.gallery);
  for (double s : c.std) MMG_CHECK(s > 0, "DataConfig: std values must be positive, got {}", s);
  return c;
}

// ---- the run ----

const models::ObjectiveWeights& TrainConfig::objectives_at(int64_t step) const {
  for (const Phase& p : phases)
    if (step < p.until) return p.objectives;
  return model.objectives;
}

namespace {

// "cpu", "auto", "cuda", "cuda:N" (else an Error naming the run).
void check_device_name(const std::string& run, const std::string& device) {
  if (device == "auto") return;
  try {
    Device::parse(device);
  } catch (const Error&) {
    MMG_FAIL("TrainConfig '{}': device '{}' is not one of cpu, cuda, cuda:N or auto", run, device);
  }
}

}  // namespace

Device TrainConfig::resolve_device() const {
  check_device_name(name, device);
  if (device == "auto") return device_unusable_reason(Device::cuda(0)).empty() ? Device::cuda(0) : Device::cpu();
  const Device d = Device::parse(device);
  const std::string why = device_unusable_reason(d);
  MMG_CHECK(why.empty(), "TrainConfig '{}': cannot train on device '{}': {}; use \"device\": \"cpu\" or \"auto\" "
            "(or --device cpu)", name, device, why);
  return d;
}

void TrainConfig::validate() const {
  MMG_CHECK(steps > 0 && batch_size >= 2, "TrainConfig '{}': steps ({}) must be positive and batch_size ({}) at least 2",
            name, steps, batch_size);
  MMG_CHECK(lr > 0 && min_lr >= 0 && min_lr <= lr, "TrainConfig '{}': need 0 <= min_lr ({}) <= lr ({}), lr > 0", name,
            min_lr, lr);
  MMG_CHECK(warmup >= 0 && warmup < steps, "TrainConfig '{}': warmup ({}) must be in [0, steps={})", name, warmup, steps);
  for (const auto& [prefix, scale] : lr_scales)
    MMG_CHECK(!prefix.empty() && std::isfinite(scale) && scale > 0, "TrainConfig '{}': lr_scales needs non-empty name "
              "prefixes and finite scales > 0, got '{}': {}", name, prefix, scale);
  MMG_CHECK(clip >= 0 && weight_decay >= 0, "TrainConfig '{}': clip ({}) and weight_decay ({}) must be >= 0", name,
            clip, weight_decay);
  MMG_CHECK(vocab_size > 5 && max_len >= 4, "TrainConfig '{}': vocab_size ({}) must exceed the 5 special tokens and "
            "max_len ({}) be at least 4", name, vocab_size, max_len);
  MMG_CHECK(max_len <= model.max_text_len(), "TrainConfig '{}': tokenizer max_len {} exceeds the model's {}", name,
            max_len, model.max_text_len());
  MMG_CHECK(eval_every >= 0 && checkpoint_every >= 0 && log_every >= 0 && eval_samples > 0,
            "TrainConfig '{}': eval_every, checkpoint_every, log_every must be >= 0 and eval_samples > 0", name);
  check_device_name(name, device);
  MMG_CHECK(precision == "f32" || precision == "bf16" || precision == "f16",
            "TrainConfig '{}': precision '{}' is not one of f32, bf16, f16", name, precision);
  int64_t previous = 0;
  for (const Phase& p : phases) {
    MMG_CHECK(p.until > previous, "TrainConfig '{}': phases must end in increasing order, got until={} after {}", name,
              p.until, previous);
    previous = p.until;
    for (const auto& [objective, weight] : p.objectives.weights)
      MMG_CHECK(weight == 0 || model.objectives.enabled(objective),
                "TrainConfig '{}': phase until {} uses objective '{}', which the model's \"objectives\" do not enable",
                name, p.until, objective);
  }
  model.validate();
}

json TrainConfig::to_json() const {
  json phase_list = json::array();
  for (const Phase& p : phases) phase_list.push_back({{"until", p.until}, {"objectives", p.objectives.to_json()}});
  return {{"name", name},
          {"data", data.to_json()},
          {"tokenizer", {{"vocab_size", vocab_size}, {"max_len", max_len}}},
          {"model", model.to_json()},
          {"phases", phase_list},
          {"steps", steps},
          {"batch_size", batch_size},
          {"lr", lr},
          {"weight_decay", weight_decay},
          {"min_lr", min_lr},
          {"lr_scales", lr_scales},
          {"clip", clip},
          {"warmup", warmup},
          {"eval_every", eval_every},
          {"checkpoint_every", checkpoint_every},
          {"log_every", log_every},
          {"eval_samples", eval_samples},
          {"seed", seed},
          {"device", device},
          {"precision", precision}};
}

TrainConfig TrainConfig::from_json(const json& j) {
  TrainConfig c;
  MMG_CHECK(j.is_object(), "TrainConfig: expected a JSON object, got {}", j.type_name());
  json rest = j;
  if (j.contains("phases")) {
    MMG_CHECK(j["phases"].is_array(), "TrainConfig: key 'phases' must be a list, got {}", j["phases"].type_name());
    for (const auto& p : j["phases"]) {
      ConfigReader pr(p, "TrainConfig phase", "");
      Phase phase;
      pr.read("until", phase.until);
      if (const json* o = pr.object("objectives")) phase.objectives = models::ObjectiveWeights::from_json(*o);
      pr.finish();
      c.phases.push_back(phase);
    }
    rest.erase("phases");
  }
  ConfigReader r(rest, "TrainConfig", "");
  r.read("name", c.name);
  if (const json* d = r.object("data")) c.data = DataConfig::from_json(*d);
  if (const json* t = r.object("tokenizer")) {
    ConfigReader tr(*t, "TrainConfig tokenizer", "");
    tr.read("vocab_size", c.vocab_size);
    tr.read("max_len", c.max_len);
    tr.finish();
  }
  if (const json* m = r.object("model")) c.model = models::VLMConfig::from_json(*m);
  r.read("steps", c.steps);
  r.read("batch_size", c.batch_size);
  r.read("lr", c.lr);
  r.read("weight_decay", c.weight_decay);
  r.read("min_lr", c.min_lr);
  if (const json* s = r.object("lr_scales")) {
    for (const auto& [prefix, scale] : s->items()) {
      MMG_CHECK(scale.is_number(), "TrainConfig: lr_scales['{}'] must be a number, got {}", prefix, scale.type_name());
      c.lr_scales[prefix] = scale.get<double>();
    }
  }
  r.read("clip", c.clip);
  r.read("warmup", c.warmup);
  r.read("eval_every", c.eval_every);
  r.read("checkpoint_every", c.checkpoint_every);
  r.read("log_every", c.log_every);
  r.read("eval_samples", c.eval_samples);
  r.read("seed", c.seed);
  r.read("device", c.device);
  r.read("precision", c.precision);
  r.finish();
  c.validate();
  return c;
}

TrainConfig TrainConfig::load(const std::string& path) {
  std::ifstream in(path);
  MMG_CHECK(in.good(), "TrainConfig: cannot open config file '{}'", path);
  std::stringstream text;
  text << in.rdbuf();
  json j;
  try {
    j = json::parse(text.str());
  } catch (const json::parse_error& e) {
    MMG_FAIL("TrainConfig: {} is not valid JSON: {}", path, e.what());
  }
  try {
    return from_json(j);
  } catch (const Error& e) {
    MMG_FAIL("{}: {}", path, e.what());
  }
}

// ---- presets ----

namespace {

// The demo's model: a small ALBEF-style model for 32×32 scenes. ViT (patch 8, 16 patches + [CLS],
// width 64, 4 layers), text encoder (2 layers), cross-attention fusion (2 layers), 64-d contrastive
// embeddings; objectives contrastive + matching + masked LM + VQA. The contrastive embeddings
// read mean-pooled tokens: from [CLS] tokens the contrastive loss sat on its initial plateau for
// about 175 of the demo's steps, from means it falls from the first ones. The ViT's positions are
// MAE's fixed 2-D sine table, not learned: where things are is known from the first step, and in
// 900 demo steps recall@1 rose from 0.45 to 0.53 (image→text) over learned positions. The heads
// read the mean of the fused text tokens, not the fused [CLS]: a question word's own query reads
// the image in one hop. Over the demo's 1500 steps that raised VQA from 0.488 to 0.540 (existence
// 0.53 → 0.74, colour 0.57 → 0.61) and text→image R@1 from 0.580 to 0.596 (2026-11-24).
models::VLMConfig scenes_model(int64_t dim, int64_t vision_depth, int64_t patch, int64_t image_size, int64_t vocab,
                               int64_t max_len, int64_t num_answers) {
  json j = {{"family", "vlm"},
            {"fusion",
             {{"family", "cross"},
              {"embed_dim", 64},
              {"vision", {{"family", "vit"}, {"image_size", image_size}, {"patch_size", patch}, {"dim", dim},
                          {"depth", vision_depth}, {"heads", 4}, {"mlp_ratio", 4.0}, {"pool", "mean"},
                          {"pos", "sincos"}}},
              {"text", {{"family", "text"}, {"vocab_size", vocab}, {"max_len", max_len}, {"dim", dim}, {"depth", 2},
                        {"heads", 4}, {"mlp_ratio", 4.0}, {"pool", "mean"}}},
              {"fusion", {{"depth", 2}, {"heads", 4}, {"mlp_ratio", 4.0}, {"pool", "mean"}}}}},
            {"objectives", {{"itc", 1.0}, {"itm", 0.5}, {"mlm", 0.5}, {"vqa", 1.0}}},
            {"num_answers", num_answers},
            {"decoder", {{"family", "decoder"}, {"dim", dim}, {"depth", 1}, {"heads", 4}, {"max_len", max_len}}}};
  return models::VLMConfig::from_json(j);
}

// A ViT image classifier (family "vision") for 28×28 grey Fashion-MNIST: 7×7 patches of 4×4 pixels,
// embedded by a convolutional stem (two 3×3 stride-2 convolutions): over 6000 steps it reached
// 0.901 test accuracy where the patch projection reached 0.890.
models::VLMConfig fashion_classifier() {
  json j = {{"family", "vlm"},
            {"fusion",
             {{"family", "vision"},
              {"vision", {{"family", "vit"}, {"image_size", 28}, {"patch_size", 4}, {"channels", 1}, {"dim", 64},
                          {"depth", 4}, {"heads", 4}, {"mlp_ratio", 4.0}, {"pool", "mean"}, {"stem", "conv"}}}}},
            {"objectives", {{"cls", 1.0}}},
            {"num_classes", 10}};
  return models::VLMConfig::from_json(j);
}

}  // namespace

std::vector<std::string> TrainConfig::preset_names() {
  return {"demo", "demo-quick", "scenes-full", "fashion-vit", "fashion-scenes"};
}

TrainConfig TrainConfig::preset(const std::string& name) {
  TrainConfig c;
  c.name = name;
  if (name == "demo" || name == "demo-quick" || name == "scenes-full") {
    const bool quick = name == "demo-quick", full = name == "scenes-full";
    c.data.source = "scenes";
    c.data.n = quick ? 6000 : full ? 120000 : 40000;
    c.data.gallery = quick ? 300 : 1000;
    c.vocab_size = 300;
    c.max_len = 32;
    c.model = scenes_model(64, 4, 8, 32, c.vocab_size, c.max_len, /*num_answers=*/24);
    // A convolutional stem (three 3×3 stride-2 convolutions) instead of the 8×8 patch
    // projection: its windows overlap the patch borders that cut the small shapes. And the
    // ViT's positions added again to the image tokens every fusion layer reads, so that
    // cross-attention knows where a token is. Over the demo's 1500 steps the two together took
    // R@1 from 0.612 / 0.592 to 0.742 / 0.694, VQA from 0.539 to 0.568 and place questions from
    // 0.132 to 0.290, at about the same time per step (2026-11-24).
    c.model.fusion.dual.vision.stem = "conv";
    c.model.fusion.fusion.image_pos = true;
    if (!full) {
      // Fusion layers with 8 heads and GEGLU feed-forward blocks (scenes-full keeps the plain
      // ones its numbers were measured with). "Is A left of B?" needs the positions of two named
      // objects, kept apart, then a product with the direction word; more heads give more ways to
      // route the two objects apart, the gated block computes the product. With both, the
      // demo's relation questions left chance in 8 of the 9 runs tried (0.71–0.91); with
      // neither, for one seed in three; with either alone, not reliably (docs/models.md, README;
      // 2026-11-24 and 11-25).
      c.model.fusion.fusion.heads = 8;
      c.model.fusion.fusion.gated_mlp = true;
      // And causal self-attention in the fusion, its weights drawn at 1/sqrt(64) instead of 0.02.
      // At 0.02 the attention logits start near 0 (every word sees every patch alike) and place
      // questions start late for some seeds; at 0.125 they start early. Under bidirectional
      // self-attention the two named objects of "A left of B" read each other alike and their
      // comparisons cancel in the mean the heads read; under causal attention only B reads A
      // and the direction word. With both, relation questions crossed by step 1900 for every seed
      // tried on a machine where the preset without them crossed for none of those seeds
      // (README, 2026-12-07).
      c.model.fusion.fusion.causal = true;
      c.model.fusion.fusion.init_std = 0.125;
    }
    // demo-quick: 400 steps of 64 (under a minute on 2 idle cores) leave the VQA loss's
    // answer-prior plateau, where 150 steps of 128 in the same time did not: VQA 0.37–0.41 against
    // a question-only 0.29, counting 0.72–0.81, over three seeds (2026-11-24).
    c.steps = quick ? 400 : full ? 12000 : 800;  // demo: 5 minutes on 2 idle cores, evaluation included
    c.batch_size = quick ? 64 : 128;
    c.lr = 1.5e-3;
    c.min_lr = 2e-5;
    c.warmup = quick ? 40 : 50;
    c.weight_decay = 0.05;
    c.eval_every = quick ? 0 : full ? 2000 : 500;
    c.checkpoint_every = full ? 2000 : 500;
    c.eval_samples = quick ? 200 : 500;
    c.log_every = quick ? 10 : 25;
    if (name == "demo") {
      // Three phases: all four objectives; then contrastive + matching + VQA; then contrastive +
      // VQA alone, whose steps cost under half a full one. The matching head, trained at weight 2
      // against each caption's minimal edit ("A right of B" for "A left of B"), is what first
      // learns to compare two positions; relation questions follow. Batches of 64, not 128: a
      // step of 64 costs 0.44 of one of 128, so the 5 minutes hold 2.4× the updates
      // (README, 2026-11-24). Matching at weight 2 from the first step and the masked LM for 200
      // steps only (it costs another text and fusion pass a step) let relations come sooner: for
      // seed 0 the matching head on relation edits was at 0.95 by step 1800, where the previous
      // 3800-step schedule (400 steps of all four at matching weight 0.5) had 0.77 at step 1900;
      // relation questions 0.82–0.90 over seeds 0–4, every goal met, the whole run 286–296 s on
      // this project's 2-core machine when its host is quiet (README, 2026-12-07).
      using models::ObjectiveWeights;
      c.batch_size = 64;
      c.steps = 2400;
      c.warmup = 100;
      c.eval_every = 600;
      c.checkpoint_every = 600;
      ObjectiveWeights all_four = c.model.objectives;
      all_four.weights["itm"] = 2.0;
      c.phases = {{.until = 200, .objectives = all_four},
                  {.until = 1800, .objectives = ObjectiveWeights::from_json({{"itc", 1.0}, {"itm", 2.0}, {"vqa", 1.0}})},
                  {.until = c.steps, .objectives = ObjectiveWeights::from_json({{"itc", 1.0}, {"vqa", 1.0}})}};
    }
  } else if (name == "fashion-vit") {
    c.data.source = "fashion-mnist";
    c.data.mean = {0.2860};  // Fashion-MNIST's pixel mean and standard deviation (train split)
    c.data.std = {0.3530};
    c.data.augment = {.enabled = true, .min_scale = 0.9, .brightness = 0.0, .contrast = 0.0, .saturation = 0.0,
                      .hflip = true};  // no relations in a class label: flipping is safe here
    c.model = fashion_classifier();
    c.vocab_size = 64;
    c.steps = 8000;
    c.batch_size = 128;
    c.lr = 2e-3;
    c.min_lr = 1e-5;
    c.warmup = 300;
    c.weight_decay = 0.05;
    c.eval_every = 2000;
    c.checkpoint_every = 2000;
    c.eval_samples = 2000;
    c.log_every = 50;
  } else if (name == "fashion-scenes") {
    c.data.source = "fashion-scenes";
    c.data.n = 30000;
    c.data.image_size = 56;
    c.vocab_size = 300;
    c.max_len = 32;
    c.model = scenes_model(64, 4, 8, 56, c.vocab_size, c.max_len, /*num_answers=*/24);
    c.model.fusion.dual.vision.channels = 1;
    c.steps = 2000;
    c.batch_size = 128;
    c.lr = 2e-3;
    c.min_lr = 2e-5;
    c.warmup = 100;
    c.eval_every = 500;
    c.checkpoint_every = 500;
    c.log_every = 25;
  } else {
    MMG_FAIL("TrainConfig: unknown preset '{}' (valid: {})", name, fmt::join(preset_names(), ", "));
  }
  c.validate();
  return c;
}

}  // namespace mmg
