// The trainer: a TrainConfig and a Dataset in, a trained model, its metrics and pictures out.
//
// One step:
//   batch  = the loader's batch of this step (made ahead on a background thread, train/data_loader.h)
//   losses = model.compute_losses(batch, objectives of this step's phase)   (models/vlm.h)
//   losses.total.backward();  clip the global gradient norm;  lr ← warmup + cosine(step);  AdamW step
//
// The run directory (`out`) holds everything a person or a later command needs:
//   config.json       the run's TrainConfig, with the sizes that follow from the data filled in
//   vocab.txt         the WordPiece vocabulary learnt from the train split's texts
//   answers.json      the answer vocabulary of the VQA head
//   classes.json      the class names of the classifier (an empty list for unlabelled data)
//   metrics.jsonl     one JSON object per log line ({"step", "loss", "itc", ..., "lr"}) and per
//                     evaluation ({"step", "split": "val", "vqa_accuracy", ...})
//   checkpoints/step-NNNNNN/{state.safetensors,trainer.json}, and checkpoints/latest naming the
//                     newest; each written to a temporary folder and renamed, so a crash never
//                     leaves a half checkpoint
//   loss_curve.png    at the end
//   profile.md        with `profile`: where the steps' time went, op by op (core/profile.h)
//
// Resuming (`resume = true`) loads the latest checkpoint — model, AdamW moments, step, the
// generators' states — and continues; since the batch of a step and every random draw are
// functions of the seed and the step, the resumed run's losses equal the uninterrupted run's
// (tests/train/test_trainer.cpp checks it bit for bit).
//
// Device: the config's "device" (TrainConfig::resolve_device). The model is built on the CPU from
// the seed, as always, and then moved there; each batch is made on the host and moved before its
// step; checkpoints are written from host copies and loaded back onto the device. A resumed run
// trains on the device of the config it is given (for `mmg train --resume`: the saved config's,
// or --device), so a run may also continue on another device — exactly only on the same one.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/vlm.h"
#include "nn/grad_scaler.h"
#include "nn/optim.h"
#include "train/batching.h"
#include "train/dataset.h"
#include "train/plot.h"
#include "train/run_config.h"
#include "train/tokenizer.h"

namespace mmg {

struct TrainerOptions {
  std::string out;         // the run directory
  bool resume = false;     // continue from out/checkpoints/latest
  bool verbose = true;     // progress line and messages on stdout
  int64_t stop_after = 0;  // > 0: stop after this step (as if interrupted), without the final evaluation
  bool profile = false;    // time every op of the steps (core/profile.h): out/profile.md, and printed
};

// One logged step.
struct StepRecord {
  int64_t step = 0;
  double loss = 0, lr = 0, grad_norm = 0;
  std::map<std::string, double> losses;  // per objective
  bool skipped = false;  // f16: the scaled gradients overflowed and the update was skipped
};

// The loss curves of a run: the total and each objective's loss, each a running mean over
// `window` consecutive steps that trained it. An objective that a phase switches off is
// plotted over its own steps only: the curve breaks (a NaN point) where it is absent.
std::vector<PlotSeries> loss_series(const std::vector<StepRecord>& history, size_t window);

class Trainer {
 public:
  // Builds (or, with resume, reloads) the tokenizer, the answers and the model, on the device of
  // `config` (an Error naming the run when it is unusable). `data` must outlive the trainer.
  Trainer(TrainConfig config, const Dataset& data, TrainerOptions options);

  // Trains up to config.steps (or options.stop_after), evaluating and checkpointing as the
  // config says, and always checkpointing the last step it ran. Returns the steps run by this call.
  int64_t train();

  const TrainConfig& config() const { return config_; }
  models::VLM& model() { return *model_; }
  const WordPieceTokenizer& tokenizer() const { return *tokenizer_; }
  const AnswerVocab& answers() const { return answers_; }
  int64_t step() const { return step_; }  // steps done
  Device device() const { return device_; }  // where the model trains
  const std::vector<StepRecord>& history() const { return history_; }
  double train_seconds() const { return train_seconds_; }
  // With options.profile: the report of the last train() (profile.md's table); empty otherwise.
  const std::string& profile_report() const { return profile_report_; }

  // Saves a checkpoint of the current state now (what checkpoint_every does).
  void save_checkpoint();
  // Appends one JSON object to metrics.jsonl.
  void log_json(const nlohmann::json& record);
  // An evaluation hook, run every eval_every steps on the val split (set by the caller, e.g. to
  // evaluate_vlm); its JSON is logged with "step" and "split".
  std::function<nlohmann::json(Trainer&)> on_eval;

 private:
  TrainConfig config_;
  const Dataset& data_;
  TrainerOptions options_;
  std::unique_ptr<WordPieceTokenizer> tokenizer_;
  AnswerVocab answers_;
  std::unique_ptr<models::VLM> model_;
  std::unique_ptr<nn::AdamW> optimizer_;
  nn::GradScaler scaler_{{.enabled = false}};  // enabled for precision "f16"
  Device device_;
  Generator generator_;  // masking, negatives
  int64_t step_ = 0;
  double train_seconds_ = 0;  // over every call of train(), resumed runs included
  std::vector<StepRecord> history_;
  std::string profile_report_;

  void prepare_new_run();
  void load_latest_checkpoint();
  StepRecord train_step(const models::VLMBatch& batch);
  void write_loss_curve() const;
};

// Reads a run directory written by the trainer: its config, tokenizer, answers, and the model
// and AdamW state of its latest checkpoint (or of `checkpoint`, a checkpoints/step-N folder),
// with the model and the AdamW moments on `device`.
struct LoadedRun {
  TrainConfig config;
  std::unique_ptr<WordPieceTokenizer> tokenizer;
  AnswerVocab answers;
  std::vector<std::string> class_names;  // classes.json: empty when the data had no labels
  std::unique_ptr<models::VLM> model;
  std::unique_ptr<nn::AdamW> optimizer;  // with the checkpoint's moments (what a resumed run continues)
  std::string checkpoint;                // the checkpoints/step-N folder read
  int64_t step = 0;
};
LoadedRun load_run(const std::string& dir, Device device = Device::cpu());
// The config.json of a run directory (errors name the file).
TrainConfig load_run_config(const std::string& config_json_path);

}  // namespace mmg
