// A whole run: load the data, train (or resume), evaluate on the test split, write the run
// directory (train/trainer.h lists its files, plus metrics.json and attention/*.png) and print
// the results table. What `mmg train` and `mmg demo` do.
#pragma once
#include <cstdint>
#include <string>

#include "train/evaluate.h"
#include "train/run_config.h"

namespace mmg {

struct TrainRunOptions {
  std::string out;          // the run directory
  bool resume = false;      // continue from its latest checkpoint
  int64_t stop_after = 0;   // > 0: stop after this step, before the end (no evaluation then)
  bool verbose = true;      // progress, evaluation lines and the table on stdout
  std::string device;       // overrides the config's "device" (resumed runs too); empty: the config's
  bool profile = false;     // time every op of the training steps: out/profile.md (core/profile.h)
};

// How metrics.json and the progress lines name a device: "cpu (2 threads)", "cuda:0 (NVIDIA H100 80GB HBM3)".
std::string device_description(Device device);

// The test split's report (empty when the run stopped early).
EvalReport run_training(const TrainConfig& config, const TrainRunOptions& options);

}  // namespace mmg
