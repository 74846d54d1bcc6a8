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

struct InspectOptions {
  std::string preset;       // a preset name (see `mmg inspect --list`)
  std::string config_path;  // or a JSON config file
  bool list = false;        // list the presets instead
};

// The text `mmg inspect` prints for a model config: the config as JSON, then one line per
// parameter (name, shape) and the parameter count.
std::string inspect_report(const std::string& title, const std::string& config_json);

// `mmg inspect`: prints inspect_report for a preset or a config file, or the preset list.
int run_inspect_command(const InspectOptions& options);

}  // namespace mmg
