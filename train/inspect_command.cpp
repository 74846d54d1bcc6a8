// `mmg inspect`: what a model preset or config builds — its config, every parameter's name and
// shape, and the parameter count.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "models/presets.h"
#include "train/commands.h"

namespace mmg {

std::string inspect_report(const std::string& title, const std::string& config_json) {
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(config_json);
  } catch (const nlohmann::json::parse_error& e) {
    MMG_FAIL("inspect: {} is not valid JSON: {}", title, e.what());
  }
  std::shared_ptr<nn::Module> model = models::build_model(config);
  return fmt::format("{} ({}, family {})\nconfig: {}\n\n{}", title, model->type_name(),
                     config["family"].get<std::string>(), config.dump(2), model->summary());
}

int run_inspect_command(const InspectOptions& options) {
  if (options.list) {
    for (const std::string& name : models::preset_names())
      std::printf("%-14s %s\n", name.c_str(), models::preset_config(name)["family"].get<std::string>().c_str());
    return 0;
  }
  MMG_CHECK(options.preset.empty() != options.config_path.empty(),
            "inspect: give either --preset NAME or --config FILE (mmg inspect --list shows the presets)");
  std::string title, text;
  if (!options.preset.empty()) {
    title = options.preset;
    text = models::preset_config(options.preset).dump();
  } else {
    std::ifstream in(options.config_path);
    MMG_CHECK(in.good(), "inspect: cannot open config file '{}'", options.config_path);
    std::stringstream ss;
    ss << in.rdbuf();
    title = options.config_path;
    text = ss.str();
  }
  std::fputs(inspect_report(title, text).c_str(), stdout);
  return 0;
}

}  // namespace mmg
