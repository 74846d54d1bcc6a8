// The subcommands of the `mmg` program, as functions (so tests can run them too).
#pragma once
#include <cstdint>
#include <string>

namespace mmg {

struct DemoOptions {
  int steps = 300;
  uint64_t seed = 0;
};

// Trains and evaluates the demo model, printing progress and a result table. Returns the
// process exit code.
int run_demo(const DemoOptions& options);

// Runs the gradcheck battery (all cases, or those of `op`), one line per case; returns 0
// when every case passes, 1 otherwise (2 when `op` matches no case).
int run_gradcheck_command(const std::string& op, bool list_only);

struct DataScenesOptions {
  std::string out;       // output folder (created if missing)
  int64_t n = 1000;      // scenes in all splits together
  uint64_t seed = 0;
  int size = 32;         // image side in pixels
  bool verbose = true;   // progress and a summary line
};

// `mmg data scenes`: writes the generated scenes as out/images/NNNNNN.png plus
// out/captions.jsonl (one JSON object per image: image file, split, objects, captions with
// their negatives, questions with answers) and out/dataset.json (the vocabulary and the
// held-out combinations). Returns the process exit code.
int run_data_scenes(const DataScenesOptions& options);

}  // namespace mmg
