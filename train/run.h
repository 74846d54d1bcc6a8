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
};

// The test split's report (empty when the run stopped early).
EvalReport run_training(const TrainConfig& config, const TrainRunOptions& options);

}  // namespace mmg
