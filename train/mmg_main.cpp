// mmg: the command-line program. Subcommands: demo, gradcheck, data, info.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

#include "core/gradcheck.h"
#include "core/tensor.h"
#include "kernels/cpu/parallel.h"
#include "train/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"mmg — the mmgrad engine: train, evaluate and inspect multimodal transformers"};
  app.require_subcommand(1);

  auto* demo = app.add_subcommand("demo", "Run the main job: train a small model on generated data and report it");
  mmg::DemoOptions demo_opts;
  demo->add_option("--steps", demo_opts.steps, "Training steps");
  demo->add_option("--seed", demo_opts.seed, "Random seed");

  auto* gc = app.add_subcommand("gradcheck", "Check every op's gradient against central finite differences (f64)");
  std::string op;
  bool all = false, list = false;
  gc->add_option("--op", op, "Check only the cases of this op (e.g. softmax)");
  gc->add_flag("--all", all, "Check every case of the built-in battery (the default)");
  gc->add_flag("--list", list, "List the cases without running them");

  auto* data = app.add_subcommand("data", "Write data sets to disk");
  data->require_subcommand(1);
  auto* scenes = data->add_subcommand("scenes", "Generated scenes: PNG images + captions.jsonl (captions, negatives, questions)");
  mmg::DataScenesOptions scenes_opts;
  scenes->add_option("--out", scenes_opts.out, "Output folder")->required();
  scenes->add_option("--n", scenes_opts.n, "Number of scenes (train + val + test)")->capture_default_str();
  scenes->add_option("--seed", scenes_opts.seed, "Random seed")->capture_default_str();
  scenes->add_option("--size", scenes_opts.size, "Image side in pixels (32 or 64)")->capture_default_str();

  auto* info = app.add_subcommand("info", "Print the build configuration and the devices found");

  CLI11_PARSE(app, argc, argv);
  try {
    if (demo->parsed()) return mmg::run_demo(demo_opts);
    if (gc->parsed()) return mmg::run_gradcheck_command(op, list);
    if (scenes->parsed()) return mmg::run_data_scenes(scenes_opts);
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
