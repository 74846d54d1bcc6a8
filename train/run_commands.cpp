// `mmg demo`, `mmg train`, `mmg eval`, `mmg predict`: a run from data to an evaluated model,
// and the commands that read a run directory back.
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "core/io/atomic_file.h"
#include "kernels/cpu/parallel.h"
#include "train/commands.h"
#include "train/data_sources.h"
#include "train/evaluate.h"
#include "train/run.h"
#include "train/trainer.h"

namespace mmg {

namespace fs = std::filesystem;
using nlohmann::json;

std::string device_description(Device device) {
  if (device.is_cpu()) return fmt::format("cpu ({} threads)", cpu::num_threads());
  const std::string name = cuda_device_name(device.index);
  return name.empty() ? device.str() : fmt::format("{} ({})", device.str(), name);
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string describe(const Dataset& d) {
  return fmt::format("{}: {} train / {} val / {} test samples", d.name, d.train.size(), d.val.size(), d.test.size());
}

// Trains (or resumes) the run, evaluates it on the test split, writes metrics.json and the
// pictures, prints the table. Returns the report.
EvalReport train_and_evaluate(const TrainConfig& given, const TrainRunOptions& opt) {
  const bool verbose = opt.verbose;
  // A resumed run is the run on disk: its own config (and so its own data), whatever was given.
  const fs::path saved = fs::path(opt.out) / "config.json";
  TrainConfig config = opt.resume && fs::exists(saved) ? load_run_config(saved.string()) : given;
  if (!opt.device.empty()) config.device = opt.device;
  config.resolve_device();  // an unusable device fails here, before the data is made
  auto t0 = std::chrono::steady_clock::now();
  if (verbose) std::printf("data: generating/loading '%s' ...\n", config.data.source.c_str());
  Dataset data = load_dataset(config.data);
  const double data_seconds = seconds_since(t0);
  if (verbose) std::printf("data: %s (%.1fs)\n", describe(data).c_str(), data_seconds);

  if (!opt.resume) fs::remove_all(fs::path(opt.out) / "checkpoints");
  TrainerOptions topt{.out = opt.out, .resume = opt.resume, .verbose = verbose, .stop_after = opt.stop_after,
                     .profile = opt.profile};
  Trainer trainer(config, data, topt);
  const TrainConfig& cfg = trainer.config();
  EvalContext ctx{trainer.model(), trainer.tokenizer(), trainer.answers(), cfg};
  trainer.on_eval = [&](Trainer&) {
    EvalReport r = evaluate_vlm(ctx, data, "val", {.gallery = cfg.eval_samples, .max_samples = cfg.eval_samples});
    if (verbose) {
      std::string line;
      for (const char* key : {"retrieval_i2t_r1", "retrieval_t2i_r1", "vqa_accuracy", "classification_accuracy"})
        if (r.metrics.contains(key)) line += fmt::format("  {} {:.3f}", key, r.metrics[key].get<double>());
      std::printf("  eval (val, %lld samples):%s\n", (long long)cfg.eval_samples, line.c_str());
    }
    return r.metrics;
  };
  if (verbose) {
    int64_t params = 0;
    for (const Tensor& p : trainer.model().trainable_parameters()) params += p.numel();
    std::printf("model: %s fusion, %lld parameters; tokenizer %lld tokens; %lld answers\n",
                cfg.model.fusion.family.c_str(), (long long)params, (long long)trainer.tokenizer().size(),
                (long long)trainer.answers().size());
    std::printf("training: %lld steps of %lld on %s\n", (long long)cfg.steps, (long long)cfg.batch_size,
                device_description(trainer.device()).c_str());
  }
  trainer.train();
  if (trainer.step() < cfg.steps) {
    if (verbose) std::printf("stopped at step %lld of %lld (resume with --resume)\n", (long long)trainer.step(),
                             (long long)cfg.steps);
    return {};
  }

  auto te = std::chrono::steady_clock::now();
  EvalReport report = evaluate_vlm(ctx, data, "test", {.gallery = cfg.data.gallery});
  const double eval_seconds = seconds_since(te);
  json& m = report.metrics;
  m["run"] = cfg.name;
  m["steps"] = cfg.steps;
  m["batch_size"] = cfg.batch_size;
  m["train_seconds"] = trainer.train_seconds();
  m["data_seconds"] = data_seconds;
  m["eval_seconds"] = eval_seconds;
  m["total_seconds"] = seconds_since(t0);
  m["device"] = device_description(trainer.device());
  m["final_loss"] = trainer.history().empty() ? 0.0 : trainer.history().back().loss;
  m["dataset"] = describe(data);
  std::vector<std::string> pictures = write_attention_maps(ctx, data.test, 6, opt.out + "/attention");
  pictures.insert(pictures.begin(), opt.out + "/loss_curve.png");
  m["pictures"] = pictures;
  write_file_atomic(opt.out + "/metrics.json", m.dump(2));
  json final_record = m;
  final_record["step"] = cfg.steps;
  final_record["split"] = "test";
  trainer.log_json(final_record);

  if (verbose) {
    std::printf("\nresults on the test split (%s):\n%s", describe(data).c_str(),
                format_results_table(report.rows).c_str());
    std::printf("\ntrain %.1fs, data %.1fs, evaluation %.1fs, total %.1fs on %s\n", trainer.train_seconds(),
                data_seconds, eval_seconds, seconds_since(t0), device_description(trainer.device()).c_str());
    std::printf("wrote %s/metrics.json, %s/metrics.jsonl, %s/loss_curve.png, %zu attention maps in %s/attention\n",
                opt.out.c_str(), opt.out.c_str(), opt.out.c_str(), pictures.size() - 1, opt.out.c_str());
  }
  return report;
}

}  // namespace

EvalReport run_training(const TrainConfig& config, const TrainRunOptions& options) {
  return train_and_evaluate(config, options);
}

int run_demo(const DemoOptions& options) {
  TrainConfig config = TrainConfig::preset(options.quick ? "demo-quick" : "demo");
  config.seed = options.seed;
  if (options.steps > 0) config.steps = options.steps, config.warmup = std::min(config.warmup, config.steps / 10);
  std::printf(
      "mmg demo: generate scenes, train a small vision-language model (contrastive + matching + masked LM + VQA),\n"
      "and evaluate it on held-out scenes. No downloads; writes %s.\n\n",
      options.out.c_str());
  run_training(config,
               {.out = options.out, .resume = options.resume, .device = options.device, .profile = options.profile});
  return 0;
}

int run_train_command(const TrainCommandOptions& options) {
  MMG_CHECK(options.preset.empty() != options.config_path.empty(),
            "mmg train: give exactly one of --preset NAME or --config FILE");
  TrainConfig config = options.preset.empty() ? TrainConfig::load(options.config_path) : TrainConfig::preset(options.preset);
  if (options.steps > 0) {
    config.steps = options.steps;
    config.warmup = std::min(config.warmup, config.steps / 10);
    config.validate();
  }
  const std::string out = options.out.empty() ? "runs/" + config.name : options.out;
  run_training(config,
               {.out = out,
                .resume = options.resume,
                .stop_after = options.stop_after,
                .device = options.device,
                .profile = options.profile});
  return 0;
}

int run_eval_command(const EvalCommandOptions& options) {
  LoadedRun run = load_run(options.checkpoint);
  if (!options.device.empty()) run.config.device = options.device;
  const Device device = run.config.resolve_device();
  run.model->to(device);  // the AdamW moments follow at a step; evaluation takes none
  std::printf("evaluating %s (step %lld) on the %s split, on %s\n", options.checkpoint.c_str(), (long long)run.step,
              options.split.c_str(), device_description(device).c_str());
  Dataset data = load_dataset(run.config.data);
  EvalContext ctx{*run.model, *run.tokenizer, run.answers, run.config};
  EvalReport report = evaluate_vlm(ctx, data, options.split,
                                   {.gallery = options.gallery > 0 ? options.gallery : run.config.data.gallery,
                                    .max_samples = options.max_samples});
  std::printf("%s", format_results_table(report.rows).c_str());
  if (!options.json_out.empty()) write_file_atomic(options.json_out, report.metrics.dump(2));
  return 0;
}

}  // namespace mmg
