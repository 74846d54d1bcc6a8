// What a training run is: its data, its model, its recipe, where it writes. A JSON file
// (`mmg train --config run.json`) or a preset by name (`mmg train --preset demo`).
//
//   {
//     "name": "demo",
//     "data":  {"source": "scenes", "n": 40000, "image_size": 32, "seed": 0, "gallery": 1000,
//               "augment": {"enabled": false, "min_scale": 0.6, "brightness": 0.2, "contrast": 0.2,
//                           "saturation": 0.2, "hflip": false}},
//     "tokenizer": {"vocab_size": 300, "max_len": 32},
//     "model": { VLMConfig's JSON (models/vlm.h): fusion family, sizes, "objectives" },
//     "steps": 1500, "batch_size": 128, "lr": 2e-3, "weight_decay": 0.05, "warmup": 100,
//     "min_lr": 1e-5, "clip": 1.0, "lr_scales": {"model.fusion.": 0.3, "vqa_head.": 0.3},
//     "phases": [{"until": 500, "objectives": {"itc": 1, "itm": 1, "mlm": 1}}],
//     "eval_every": 500, "checkpoint_every": 500, "log_every": 20, "seed": 0,
//     "device": "cpu", "precision": "f32"
//   }
//
// Objectives: the model's "objectives" are the weights of the multi-task loss; "phases" (optional)
// override them for the steps before each "until" (pre-training, then fine-tuning from there on
// with the model's weights). Every key is optional except that a file must be a JSON object;
// unknown keys are errors naming the key (models/config.h).
//
// Device: "cpu" (the default), "cuda" or "cuda:N" (an error naming the run when no such GPU is
// usable), or "auto" (cuda:0 when a GPU is usable, else the CPU). The model is always built
// (initialised) on the CPU and then moved, so a seed gives the same initial weights everywhere.
//
// Precision: "f32" (the default), "bf16" (the forward under autocast to bf16: products in bf16,
// norms, softmax and losses in f32, f32 parameters and optimiser; core/autocast.h) or "f16"
// (autocast to f16, with dynamic loss scaling: nn/grad_scaler.h). Evaluation runs in f32.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/device.h"
#include "models/vlm.h"
#include "train/augment.h"

namespace mmg {

struct DataConfig {
  std::string source = "scenes";  // scenes | fashion-scenes | fashion-mnist | folder
  std::string path;               // folder: the folder; fashion-*: the IDX folder ("" = Debian's)
  int64_t n = 20000;              // scenes: in all splits; fashion-scenes: train scenes (val, test: n/10)
  int64_t image_size = 32;        // scenes: 32 or 64; folder: resized and centre-cropped to this
  int64_t seed = 0;               // the data's own seed (generation, folder splits)
  int64_t gallery = 1000;         // retrieval gallery: the first `gallery` test samples
  std::vector<double> mean{0.5}, std{0.5};  // per channel (or one for all): x = (v/255 − mean)/std
  AugmentOptions augment;         // applied to the train split's images only
  // Train itm and itc against each caption's minimal edits (Sample::negatives) when the data has
  // them: known-false texts instead of mined, often true, "negatives".
  bool edit_negatives = true;
  // VQA: keep only the questions of these types (e.g. {"relation"} for a study of one type; the
  // types the data's questions carry); empty keeps every question. Images and captions stay.
  std::vector<std::string> question_types;
  // VQA: how often a training image's question of each type is drawn, relative to weight 1 for
  // a type not named (e.g. {"place": 3}: an image's place question three times as often as
  // each of its others). Evaluation still asks every question. Empty: uniform.
  std::map<std::string, double> question_weights;

  nlohmann::json to_json() const;
  static DataConfig from_json(const nlohmann::json& j);
};

struct Phase {
  int64_t until = 0;  // this phase covers the steps before `until`
  models::ObjectiveWeights objectives;
};

struct TrainConfig {
  std::string name = "run";
  DataConfig data;
  int64_t vocab_size = 300, max_len = 32;  // tokenizer: learnt from the train split's texts
  models::VLMConfig model;
  std::vector<Phase> phases;

  int64_t steps = 1000, batch_size = 128;
  double lr = 1e-3, weight_decay = 0.05, min_lr = 1e-5, clip = 1.0;
  // Per-parameter learning-rate multipliers by name prefix (nn::with_lr_scales), e.g.
  // {"model.fusion.": 0.3, "vqa_head.": 0.3}: the schedule's rate times the scale.
  std::map<std::string, double> lr_scales;
  int64_t warmup = 100;
  int64_t eval_every = 0, checkpoint_every = 0, log_every = 20;  // 0: only at the end
  int64_t eval_samples = 500;  // scenes evaluated during training (val split)
  int64_t seed = 0;            // initial weights, batch order, masking, negatives
  std::string device = "cpu";  // cpu | cuda | cuda:N | auto (see above)
  std::string precision = "f32";  // f32 | bf16 | f16 (see above)

  // The objective weights at `step`: the first phase whose `until` is after it, else the model's.
  const models::ObjectiveWeights& objectives_at(int64_t step) const;
  // The device the run trains on: "device" resolved on this machine. "cuda" without a usable GPU
  // is an Error that names the run and says why the GPU is unusable.
  Device resolve_device() const;
  void validate() const;
  nlohmann::json to_json() const;
  static TrainConfig from_json(const nlohmann::json& j);
  static TrainConfig load(const std::string& path);  // errors name the file
  static TrainConfig preset(const std::string& name);
  static std::vector<std::string> preset_names();
};

}  // namespace mmg
