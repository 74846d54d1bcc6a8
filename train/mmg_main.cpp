// mmg: the command-line program. Subcommands: demo, train, eval, predict, data, tokenizer, inspect,
// gradcheck, bench, info.
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "core/gradcheck.h"
#include "core/tensor.h"
#include "kernels/cpu/parallel.h"
#include "train/commands.h"

// `mmg bench ARGS`: the benchmarks are their own program (bench/, built beside mmg as
// mmg_bench), so that timing code stays out of the engine; this runs it with the same arguments.
static int run_bench(const std::vector<std::string>& args) {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  std::filesystem::path bench = self.parent_path() / "mmg_bench";
  if (ec || !std::filesystem::exists(bench)) {
    std::fprintf(stderr, "error: mmg bench: %s not found (build it: make build, or cmake --build build --target mmg_bench)\n",
                 bench.string().c_str());
    return 1;
  }
  std::vector<std::string> owned = {bench.string()};
  owned.insert(owned.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : owned) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  execv(argv[0], argv.data());
  std::fprintf(stderr, "error: mmg bench: cannot run %s: %s\n", argv[0], std::strerror(errno));
  return 1;
}

int main(int argc, char** argv) {
  CLI::App app{"mmg — the mmgrad engine: train, evaluate and inspect multimodal transformers"};
  app.require_subcommand(1);

  auto* demo = app.add_subcommand(
      "demo", "The main job: generate scenes, train a small vision-language model, evaluate it (runs/demo)");
  mmg::DemoOptions demo_opts;
  demo->add_option("--seed", demo_opts.seed, "Random seed")->capture_default_str();
  demo->add_option("--steps", demo_opts.steps, "Training steps (default: the preset's)");
  demo->add_flag("--quick", demo_opts.quick, "A short variant (under a minute): preset demo-quick");
  demo->add_option("--out", demo_opts.out, "Run directory")->capture_default_str();
  demo->add_flag("--resume", demo_opts.resume, "Continue from the run directory's latest checkpoint");
  demo->add_option("--device", demo_opts.device, "cpu, cuda, cuda:N or auto (a GPU when one is usable); default cpu");
  demo->add_flag("--profile", demo_opts.profile, "Time every op of the training steps; writes profile.md in the run directory");

  auto* train = app.add_subcommand("train", "Train a model from a config file or a preset");
  mmg::TrainCommandOptions train_opts;
  train->add_option("--preset", train_opts.preset, "A run preset: demo, demo-quick, scenes-full, fashion-vit, ...");
  train->add_option("--config", train_opts.config_path, "A run config (JSON; see docs/training.md)");
  train->add_option("--out", train_opts.out, "Run directory (default runs/<name>)");
  train->add_option("--steps", train_opts.steps, "Override the number of steps");
  train->add_option("--stop-after", train_opts.stop_after, "Stop after this step (continue later with --resume)");
  train->add_flag("--resume", train_opts.resume, "Continue from the run directory's latest checkpoint");
  train->add_option("--device", train_opts.device,
                    "cpu, cuda, cuda:N or auto (a GPU when one is usable); default: the config's \"device\"");
  train->add_flag("--profile", train_opts.profile, "Time every op of the training steps; writes profile.md in the run directory");

  auto* eval = app.add_subcommand("eval", "Evaluate a trained run on a split of its data");
  mmg::EvalCommandOptions eval_opts;
  eval->add_option("--checkpoint", eval_opts.checkpoint, "A run directory or one of its checkpoints/step-N")->required();
  eval->add_option("--split", eval_opts.split, "train, val or test")->capture_default_str();
  eval->add_option("--gallery", eval_opts.gallery, "Retrieval gallery size (default: the run's)");
  eval->add_option("--max-samples", eval_opts.max_samples, "Evaluate only this many samples");
  eval->add_option("--json", eval_opts.json_out, "Also write the metrics to this JSON file");
  eval->add_option("--device", eval_opts.device,
                   "cpu, cuda, cuda:N or auto (a GPU when one is usable); default: the run config's \"device\"");

  auto* predict = app.add_subcommand("predict", "Run a trained model on one image: answer, caption or text scores");
  mmg::PredictOptions predict_opts;
  predict->add_option("--checkpoint", predict_opts.checkpoint, "A run directory or one of its checkpoints")->required();
  predict->add_option("--image", predict_opts.image, "An image file (PNG, JPEG, BMP)")->required();
  predict->add_option("--question", predict_opts.question, "A question about the image");
  predict->add_option("--texts", predict_opts.texts, "Texts to score against the image");
  predict->add_flag("--caption", predict_opts.caption, "Caption the image (models trained with cap)");
  predict->add_flag("--classify", predict_opts.classify, "The most likely classes (models trained with cls)");
  predict->add_option("--top", predict_opts.top, "How many answers to show")->capture_default_str();

  auto* gc = app.add_subcommand("gradcheck", "Check every op's gradient against central finite differences (f64)");
  std::string op;
  bool all = false, list = false;
  gc->add_option("--op", op, "Check only the cases of this op (e.g. softmax)");
  gc->add_flag("--all", all, "Check every case of the built-in battery (the default)");
  gc->add_flag("--list", list, "List the cases without running them");

  auto* tk = app.add_subcommand("tokenizer", "Train a WordPiece vocabulary, or encode texts with one");
  tk->require_subcommand(1);
  auto* tk_train = tk->add_subcommand("train", "Learn a WordPiece vocab.txt from captions (.txt lines or .jsonl)");
  mmg::TokenizerTrainOptions tk_train_opts;
  tk_train->add_option("--input", tk_train_opts.input, "captions.txt (one per line) or captions.jsonl")->required();
  tk_train->add_option("--vocab-size", tk_train_opts.vocab_size, "Vocabulary size, special tokens included");
  tk_train->add_option("--min-frequency", tk_train_opts.min_frequency, "Merge only pairs seen this often");
  tk_train->add_option("--out", tk_train_opts.out, "Where to write the vocab.txt");
  auto* tk_encode = tk->add_subcommand("encode", "Show the tokens and ids of texts under a vocab.txt");
  mmg::TokenizerEncodeOptions tk_encode_opts;
  tk_encode->add_option("--vocab", tk_encode_opts.vocab, "A vocab.txt (Hugging Face format)")->required();
  tk_encode->add_option("--max-len", tk_encode_opts.max_len, "Truncate to this many tokens, [CLS] and [SEP] included");
  tk_encode->add_flag("--pad", tk_encode_opts.pad, "Pad with [PAD] up to --max-len and print the attention mask");
  tk_encode->add_option("texts", tk_encode_opts.texts, "Texts to encode")->required();

  auto* inspect = app.add_subcommand("inspect", "Print a model's config, parameter names, shapes and count");
  mmg::InspectOptions inspect_opts;
  inspect->add_option("--preset", inspect_opts.preset, "A model preset, e.g. vit-tiny or albef-micro");
  inspect->add_option("--config", inspect_opts.config_path, "A model config file (JSON with a \"family\" key)");
  inspect->add_flag("--list", inspect_opts.list, "List the presets");
  auto* data = app.add_subcommand("data", "Write data sets to disk");
  data->require_subcommand(1);
  auto* scenes = data->add_subcommand("scenes", "Generated scenes: PNG images + captions.jsonl (captions, negatives, questions)");
  mmg::DataScenesOptions scenes_opts;
  scenes->add_option("--out", scenes_opts.out, "Output folder")->required();
  scenes->add_option("--n", scenes_opts.n, "Number of scenes (train + val + test)")->capture_default_str();
  scenes->add_option("--seed", scenes_opts.seed, "Random seed")->capture_default_str();
  scenes->add_option("--size", scenes_opts.size, "Image side in pixels (32 or 64)")->capture_default_str();

  auto* bench = app.add_subcommand(
      "bench", "Kernel benchmarks against same-run baselines, on the GPU when one is usable (runs mmg_bench; --help there)");
  bench->allow_extras();
  bench->prefix_command();
  bench->set_help_flag();  // --help goes to mmg_bench

  auto* info = app.add_subcommand("info", "Print the build configuration and the devices found");

  CLI11_PARSE(app, argc, argv);
  try {
    if (demo->parsed()) return mmg::run_demo(demo_opts);
    if (train->parsed()) return mmg::run_train_command(train_opts);
    if (eval->parsed()) return mmg::run_eval_command(eval_opts);
    if (predict->parsed()) return mmg::run_predict_command(predict_opts);
    if (gc->parsed()) return mmg::run_gradcheck_command(op, list);
    if (tk_train->parsed()) return mmg::run_tokenizer_train(tk_train_opts);
    if (tk_encode->parsed()) return mmg::run_tokenizer_encode(tk_encode_opts);
    if (inspect->parsed()) return mmg::run_inspect_command(inspect_opts);
    if (scenes->parsed()) return mmg::run_data_scenes(scenes_opts);
    if (bench->parsed()) return run_bench(bench->remaining());
    if (info->parsed()) {
      std::printf("mmgrad: CPU threads %d; CUDA compiled: %s; %s\n", mmg::cpu::num_threads(),
                  mmg::cuda_compiled() ? "yes" : "no", mmg::cuda_status().c_str());
      return 0;
    }
  } catch (const mmg::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  (void)all;
  return 0;
}
