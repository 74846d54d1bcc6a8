#include "train/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "core/autocast.h"
#include "core/error.h"
#include "core/io/atomic_file.h"
#include "core/profile.h"
#include "nn/checkpoint.h"
#include "nn/clip.h"
#include "nn/schedule.h"
#include "train/data_loader.h"
#include "train/plot.h"

namespace mmg {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kCheckpointsKept = 3;

std::string checkpoint_name(int64_t step) { return fmt::format("step-{:06d}", step); }

json read_json_file(const std::string& path) {
  std::string text = read_file(path);
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    MMG_FAIL("{}: not valid JSON: {}", path, e.what());
  }
}

// AdamW over the model's default groups (decay / no decay), with the config's per-prefix
// learning-rate scales applied.
std::unique_ptr<nn::AdamW> make_optimizer(const models::VLM& model, const TrainConfig& c) {
  return std::make_unique<nn::AdamW>(nn::with_lr_scales(nn::param_groups_for(model, c.lr, c.weight_decay), c.lr_scales));
}

// "2m13s", "45s", "1h02m".
std::string duration_str(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

// The sizes of the model that follow from the data: the vocabulary, the answers, the classes,
// and the special token ids of the tokenizer.
void fit_model_to_data(models::VLMConfig& m, const WordPieceTokenizer& tok, const AnswerVocab& answers,
                       const Dataset& data) {
  if (m.fusion.family == "single")
    m.fusion.single.vocab_size = tok.size();
  else
    m.fusion.dual.text.vocab_size = tok.size();
  m.tokens = {tok.pad_id(), tok.unk_id(), tok.cls_id(), tok.sep_id(), tok.mask_id()};
  if (m.fusion.family == "single")
    m.fusion.single.pad_id = tok.pad_id();
  else
    m.fusion.dual.text.pad_id = tok.pad_id();
  if (answers.size() > 0) m.num_answers = answers.size();
  if (!data.class_names.empty()) m.num_classes = static_cast<int64_t>(data.class_names.size());
  m.derive_decoder_fields();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Setting up

Trainer::Trainer(TrainConfig config, const Dataset& data, TrainerOptions options)
    : config_(std::move(config)), data_(data), options_(std::move(options)) {
  MMG_CHECK(!options_.out.empty(), "Trainer: no run directory given");
  MMG_CHECK(!data_.train.empty(), "Trainer: data set '{}' has an empty train split", data_.name);
  fs::create_directories(options_.out);
  if (options_.resume)
    load_latest_checkpoint();
  else
    prepare_new_run();
}

void Trainer::prepare_new_run() {
  config_.validate();
  device_ = config_.resolve_device();  // before anything is written: an unusable device fails at once
  tokenizer_ = std::make_unique<WordPieceTokenizer>(train_wordpiece(texts_of(data_.train), config_.vocab_size));
  answers_ = AnswerVocab::from_samples(data_.train);
  fit_model_to_data(config_.model, *tokenizer_, answers_, data_);
  config_.validate();
  tokenizer_->save(options_.out + "/vocab.txt");
  write_file_atomic(options_.out + "/answers.json", answers_.to_json().dump(1));
  write_file_atomic(options_.out + "/config.json", config_.to_json().dump(2));
  write_file_atomic(options_.out + "/classes.json", json(data_.class_names).dump(1));
  write_file_atomic(options_.out + "/metrics.jsonl", "");

  // Initialised on the CPU whatever the device, then moved: the same seed, the same weights.
  Generator init(static_cast<uint64_t>(config_.seed));
  model_ = std::make_unique<models::VLM>(config_.model, &init);
  model_->to(device_);
  optimizer_ = make_optimizer(*model_, config_);
  scaler_ = nn::GradScaler({.enabled = config_.precision == "f16"});
  generator_ = Generator(static_cast<uint64_t>(config_.seed) + 1);
  step_ = 0;
}

void Trainer::load_latest_checkpoint() {
  const std::string latest_path = options_.out + "/checkpoints/latest";
  MMG_CHECK(fs::exists(latest_path), "Trainer: cannot resume: {} does not exist (no checkpoint was written)",
            latest_path);
  // The device of the config given (the saved one, or another: --device), not the saved config's.
  const std::string device = config_.device;
  device_ = config_.resolve_device();
  LoadedRun run = load_run(options_.out, device_);
  config_ = run.config;
  config_.device = device;
  tokenizer_ = std::move(run.tokenizer);
  answers_ = run.answers;
  model_ = std::move(run.model);
  optimizer_ = std::move(run.optimizer);
  step_ = run.step;
  json state = read_json_file(run.checkpoint + "/trainer.json");
  generator_.set_state(state.at("generator").at(0).get<uint64_t>(), state.at("generator").at(1).get<uint64_t>());
  default_generator().set_state(state.at("default_generator").at(0).get<uint64_t>(),
                                state.at("default_generator").at(1).get<uint64_t>());
  train_seconds_ = state.at("train_seconds").get<double>();
  scaler_ = nn::GradScaler({.enabled = config_.precision == "f16"});
  if (state.contains("grad_scaler")) {
    const json& s = state.at("grad_scaler");
    scaler_.load_state({s.at("scale").get<double>(), s.at("good_steps").get<int64_t>(), s.at("skipped").get<int64_t>()});
  }
  for (const json& r : state.at("history")) {
    StepRecord rec;
    rec.step = r.at("step").get<int64_t>();
    rec.loss = r.at("loss").get<double>();
    rec.lr = r.at("lr").get<double>();
    // No norm (clip 0, a skipped step) was written as NaN, which JSON stores as null.
    rec.grad_norm = r.at("grad_norm").is_number() ? r.at("grad_norm").get<double>() : std::nan("");
    rec.losses = r.at("losses").get<std::map<std::string, double>>();
    rec.skipped = r.value("skipped", false);
    history_.push_back(rec);
  }
  // The log keeps what happened up to the checkpoint; lines of steps after it (from the run
  // that was interrupted) are dropped, since this run does those steps again.
  std::ifstream in(options_.out + "/metrics.jsonl");
  std::string line, kept;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("step") && j["step"].get<int64_t>() <= step_) kept += line + "\n";
  }
  write_file_atomic(options_.out + "/metrics.jsonl", kept);
  if (options_.verbose) std::printf("resuming %s at step %lld of %lld\n", options_.out.c_str(), (long long)step_,
                                    (long long)config_.steps);
}

TrainConfig load_run_config(const std::string& path) {
  json j = read_json_file(path);
  try {
    return TrainConfig::from_json(j);
  } catch (const Error& e) {
    MMG_FAIL("{}: {}", path, e.what());
  }
}

LoadedRun load_run(const std::string& dir_or_checkpoint, Device device) {
  // Accept the run directory or one of its checkpoints/step-N folders.
  fs::path path(dir_or_checkpoint);
  fs::path run_dir = path, checkpoint;
  if (fs::exists(path / "state.safetensors")) {
    checkpoint = path;
    run_dir = path.parent_path().parent_path();
  }
  MMG_CHECK(fs::exists(run_dir / "config.json"), "load_run: {} is not a run directory (no config.json)",
            run_dir.string());
  LoadedRun run;
  run.config = load_run_config((run_dir / "config.json").string());
  run.tokenizer = std::make_unique<WordPieceTokenizer>(WordPieceTokenizer::load((run_dir / "vocab.txt").string()));
  run.answers = AnswerVocab::from_json(read_json_file((run_dir / "answers.json").string()));
  if (fs::exists(run_dir / "classes.json"))
    run.class_names = read_json_file((run_dir / "classes.json").string()).get<std::vector<std::string>>();
  run.model = std::make_unique<models::VLM>(run.config.model);
  if (checkpoint.empty()) {
    fs::path latest = run_dir / "checkpoints" / "latest";
    MMG_CHECK(fs::exists(latest), "load_run: {} has no checkpoint ({} is missing)", run_dir.string(), latest.string());
    // Trimmed: a `latest` written by hand (an editor adds a newline) names the same folder.
    std::string name = read_file(latest.string());
    const auto last = name.find_last_not_of(" \t\r\n");
    name.erase(last == std::string::npos ? 0 : last + 1);
    MMG_CHECK(!name.empty(), "load_run: {} is empty", latest.string());
    checkpoint = run_dir / "checkpoints" / name;
  }
  // The model moves first, so the AdamW moments are made, and loaded, on its device.
  run.model->to(device);
  run.optimizer = make_optimizer(*run.model, run.config);
  nn::load_training_state((checkpoint / "state.safetensors").string(), *run.model, *run.optimizer);
  run.checkpoint = checkpoint.string();
  run.step = read_json_file((checkpoint / "trainer.json").string()).at("step").get<int64_t>();
  return run;
}

// ---------------------------------------------------------------------------------------------
// Checkpoints and logs

void Trainer::save_checkpoint() {
  const fs::path root = fs::path(options_.out) / "checkpoints";
  fs::create_directories(root);
  const std::string name = checkpoint_name(step_);
  const fs::path tmp = root / (name + ".tmp"), final_dir = root / name;
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  nn::save_training_state((tmp / "state.safetensors").string(), *model_, *optimizer_,
                          {{"step", std::to_string(step_)}, {"run", config_.name}});
  json history = json::array();
  for (const StepRecord& r : history_)
    history.push_back({{"step", r.step}, {"loss", r.loss}, {"lr", r.lr}, {"grad_norm", r.grad_norm}, {"losses", r.losses},
                       {"skipped", r.skipped}});
  json state = {{"step", step_},
                {"generator", {generator_.seed(), generator_.offset()}},
                {"default_generator", {default_generator().seed(), default_generator().offset()}},
                {"train_seconds", train_seconds_},
                {"history", history}};
  if (scaler_.enabled()) {
    const nn::GradScaler::State s = scaler_.state();
    state["grad_scaler"] = {{"scale", s.scale}, {"good_steps", s.good_steps}, {"skipped", s.skipped}};
  }
  write_file_atomic((tmp / "trainer.json").string(), state.dump());
  // The folder appears complete or not at all; `latest` moves only once it is in place.
  fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
  write_file_atomic((root / "latest").string(), name);

  std::vector<std::string> steps;
  for (const auto& entry : fs::directory_iterator(root))
    if (entry.is_directory() && entry.path().filename().string().rfind("step-", 0) == 0 &&
        entry.path().extension() != ".tmp")
      steps.push_back(entry.path().filename().string());
  std::sort(steps.begin(), steps.end());
  for (size_t i = 0; i + kCheckpointsKept < steps.size(); ++i) fs::remove_all(root / steps[i]);
}

void Trainer::log_json(const json& record) {
  std::ofstream out(options_.out + "/metrics.jsonl", std::ios::app);
  MMG_CHECK(out.good(), "Trainer: cannot append to {}/metrics.jsonl", options_.out);
  out << record.dump() << "\n";
}

std::vector<PlotSeries> loss_series(const std::vector<StepRecord>& history, size_t window) {
  MMG_CHECK(window >= 1, "loss_series: window must be at least 1");
  // One series per name, in the order the names first appear; "total" is every step's loss.
  std::vector<std::string> names{"total"};
  for (const StepRecord& r : history)
    for (const auto& [name, value] : r.losses)
      if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  std::vector<PlotSeries> out;
  for (const std::string& name : names) {
    auto value_at = [&](size_t i) -> std::optional<double> {
      if (name == "total") return history[i].loss;
      auto it = history[i].losses.find(name);
      return it == history[i].losses.end() ? std::nullopt : std::optional<double>(it->second);
    };
    PlotSeries s;
    s.name = name;
    s.colour = series_colour(static_cast<int>(out.size()));
    double sum = 0;
    size_t run = 0;  // how many consecutive steps up to i have this loss
    for (size_t i = 0; i < history.size(); ++i) {
      std::optional<double> v = value_at(i);
      if (!v) {  // a gap: break the line there and start the window afresh after it
        if (run > 0) s.x.push_back(static_cast<double>(history[i].step)), s.y.push_back(std::nan(""));
        sum = 0, run = 0;
        continue;
      }
      sum += *v, ++run;
      if (run > window) sum -= *value_at(i - window);
      if (run >= window) {
        s.x.push_back(static_cast<double>(history[i].step));
        s.y.push_back(sum / static_cast<double>(window));
      }
    }
    out.push_back(std::move(s));
  }
  return out;
}

void Trainer::write_loss_curve() const {
  if (history_.empty()) return;
  // Running means over a window, so the curve shows the trend rather than batch noise.
  const size_t window = std::max<size_t>(1, std::min<size_t>(50, history_.size() / 20));
  LinePlot plot;
  plot.title = fmt::format("{}: training loss (mean of {} steps)", config_.name, window);
  plot.x_label = "step";
  plot.y_label = "loss";
  plot.series = loss_series(history_, window);
  save_line_plot(plot, options_.out + "/loss_curve.png");
}

// ---------------------------------------------------------------------------------------------
// Training

StepRecord Trainer::train_step(const models::VLMBatch& batch) {
  model_->train();
  {
    profile::PhaseScope phase("optimizer");
    MMG_PROFILE_OP("zero_grad");
    optimizer_->zero_grad();
  }
  models::Losses losses;
  {
    // bf16 / f16: the forward under autocast; the backward follows the casts it recorded.
    std::optional<AutocastGuard> autocast;
    if (config_.precision != "f32") autocast.emplace(config_.precision == "bf16" ? DType::bf16 : DType::f16);
    losses = model_->compute_losses(batch, &generator_, config_.objectives_at(step_));
  }
  StepRecord rec;
  rec.step = step_ + 1;
  const std::vector<Tensor> params = model_->trainable_parameters();
  bool take_step = true;
  if (scaler_.enabled()) {
    scaler_.scale(losses.total).backward();
    take_step = scaler_.unscale(params);
    scaler_.update(take_step);
    rec.skipped = !take_step;
  } else {
    losses.total.backward();
  }
  profile::PhaseScope phase("optimizer");
  {
    MMG_PROFILE_OP("clip_grad_norm");
    rec.grad_norm = take_step && config_.clip > 0 ? nn::clip_grad_norm(params, config_.clip) : std::nan("");
  }
  nn::WarmupCosine schedule(config_.lr, config_.warmup, config_.steps, config_.min_lr);
  rec.lr = schedule.lr_at(step_);
  optimizer_->set_lr(rec.lr);
  if (take_step) {
    MMG_PROFILE_OP("adamw");
    optimizer_->step();
  }
  profile::PhaseScope trainer_phase("trainer");
  MMG_PROFILE_OP("read the losses");
  rec.losses = losses.values();
  rec.loss = rec.losses.at("total");
  rec.losses.erase("total");
  MMG_CHECK(std::isfinite(rec.loss), "Trainer: the loss is {} at step {} (losses: {}); lower the learning rate ({})",
            rec.loss, rec.step, json(rec.losses).dump(), rec.lr);
  return rec;
}

int64_t Trainer::train() {
  const int64_t end = options_.stop_after > 0 ? std::min(options_.stop_after, config_.steps) : config_.steps;
  if (step_ >= end) return 0;
  const int64_t first = step_;
  const models::ObjectiveWeights& built = config_.model.objectives;
  const bool vqa = built.enabled("vqa"), cls = built.enabled("cls");
  const bool edits = config_.data.edit_negatives && (built.enabled("itc") || built.enabled("itm"));
  BatchMaker maker(data_.train, *tokenizer_, answers_, config_.max_len, {config_.data.mean, config_.data.std},
                   static_cast<uint64_t>(config_.seed), vqa, cls, edits, config_.data.augment,
                   config_.data.question_weights);
  EpochOrder order(static_cast<int64_t>(data_.train.size()), config_.batch_size, static_cast<uint64_t>(config_.seed),
                   /*drop_last=*/true);
  // For a GPU the loader's thread also copies each batch into pinned memory, so that moving it
  // to the device is one DMA per tensor that the training thread queues without waiting
  // (PyTorch's DataLoader(pin_memory=True)).
  const bool pin = device_.is_cuda();
  Prefetcher<models::VLMBatch> loader(
      [&](int64_t s) {
        models::VLMBatch b = maker.make(order.batch_indices(s), s);
        return pin ? models::pin_memory(b) : b;
      },
      step_, end, /*depth=*/2);

  const bool tty = options_.verbose && isatty(fileno(stdout));
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  auto window_start = start;
  int64_t window_steps = 0;
  const double seconds_before = train_seconds_;
  if (options_.profile) profile::start(device_.is_cuda() ? device_.index : -1);
  for (; step_ < end;) {
    models::VLMBatch batch;
    {
      profile::PhaseScope phase("data");
      MMG_PROFILE_OP("wait for the loader");
      batch = loader.next();
    }
    if (device_.is_cuda()) {
      profile::PhaseScope phase("data");
      MMG_PROFILE_OP("to device");
      // non_blocking: the pinned batch is read by the GPU after this returns; it is never written
      // again, and the pinned pool hands its memory out again only once the copies have run.
      batch = models::to_device(batch, device_, /*non_blocking=*/true);
    }
    StepRecord rec = train_step(batch);
    ++step_;
    profile::PhaseScope trainer_phase("trainer");
    history_.push_back(rec);
    ++window_steps;
    train_seconds_ = seconds_before + std::chrono::duration<double>(clock::now() - start).count();

    const bool log_now = config_.log_every > 0 && (step_ % config_.log_every == 0 || step_ == end);
    if (log_now || tty) {
      MMG_PROFILE_OP("progress and metrics.jsonl");
      const double window_s = std::chrono::duration<double>(clock::now() - window_start).count();
      const double rate = window_s > 0 ? window_steps * config_.batch_size / window_s : 0;
      const double eta = rate > 0 ? (end - step_) * config_.batch_size / rate : std::nan("");
      std::string parts;
      for (const auto& [name, value] : rec.losses) parts += fmt::format(" {} {:.3f}", name, value);
      std::string line = fmt::format("step {}/{} | loss {:.4f} ({}) | lr {:.2e} | {:.0f} samples/s | ETA {}", step_,
                                     config_.steps, rec.loss, parts.substr(1), rec.lr, rate, duration_str(eta));
      if (tty)
        std::printf("\r\033[K%s%s", line.c_str(), log_now ? "\n" : "");
      else if (options_.verbose && log_now)
        std::printf("%s\n", line.c_str());
      std::fflush(stdout);
      if (log_now) {
        json record = {{"step", step_}, {"loss", rec.loss}, {"lr", rec.lr}, {"samples_per_s", rate},
                       {"seconds", train_seconds_}};
        if (std::isfinite(rec.grad_norm)) record["grad_norm"] = rec.grad_norm;
        if (scaler_.enabled()) {
          record["loss_scale"] = scaler_.scale_value();
          record["skipped_steps"] = scaler_.state().skipped;
        }
        for (const auto& [name, value] : rec.losses) record[name] = value;
        log_json(record);
        window_start = clock::now();
        window_steps = 0;
      }
    }
    if (config_.eval_every > 0 && step_ % config_.eval_every == 0 && step_ < config_.steps && on_eval) {
      MMG_PROFILE_OP("evaluate (val)");
      json metrics = on_eval(*this);
      metrics["step"] = step_;
      metrics["split"] = "val";
      log_json(metrics);
    }
    if (config_.checkpoint_every > 0 && step_ % config_.checkpoint_every == 0) {
      MMG_PROFILE_OP("checkpoint");
      save_checkpoint();
    }
  }
  if (options_.profile) {
    profile::stop();
    const double wall = std::chrono::duration<double>(clock::now() - start).count();
    profile_report_ = fmt::format("# Op profile of {} (steps {} to {}, {})\n\n{}", config_.name, first + 1, step_,
                                  device_.str(), profile::table(step_ - first, wall));
    write_file_atomic(options_.out + "/profile.md", profile_report_);
    if (options_.verbose) std::printf("\n%s\nwrote %s/profile.md\n", profile_report_.c_str(), options_.out.c_str());
  }
  // The last step always has a checkpoint: the end of the run, or where --stop-after stopped it
  // (so that --resume can continue from there).
  if (config_.checkpoint_every == 0 || step_ % config_.checkpoint_every != 0) save_checkpoint();
  if (step_ == config_.steps) write_loss_curve();
  return step_ - first;
}

}  // namespace mmg
