#include "models/presets.h"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "models/fusion.h"

namespace mmg::models {

std::vector<std::string> preset_names() {
  std::vector<std::string> names = ViTConfig::preset_names();
  for (auto& n : TextEncoderConfig::preset_names()) names.push_back(n);
  for (auto& n : FusionModelConfig::preset_names()) names.push_back(n);
  return names;
}

static bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

nlohmann::json preset_config(const std::string& name) {
  if (contains(ViTConfig::preset_names(), name)) return ViTConfig::preset(name).to_json();
  if (contains(TextEncoderConfig::preset_names(), name)) return TextEncoderConfig::preset(name).to_json();
  if (contains(FusionModelConfig::preset_names(), name)) return FusionModelConfig::preset(name).to_json();
  MMG_FAIL("unknown model preset '{}' (valid: {})", name, fmt::join(preset_names(), ", "));
}

std::shared_ptr<nn::Module> build_model(const nlohmann::json& config, Generator* gen) {
  MMG_CHECK(config.is_object() && config.contains("family") && config["family"].is_string(),
            "build_model: the config needs a \"family\" key (vit, text, dual, single, cross or pooled)");
  const std::string family = config["family"].get<std::string>();
  if (family == "vit") return std::make_shared<ViT>(ViTConfig::from_json(config), gen);
  if (family == "text") return std::make_shared<TextEncoder>(TextEncoderConfig::from_json(config), gen);
  if (family == "dual" || family == "single" || family == "cross" || family == "pooled")
    return std::make_shared<FusionModel>(FusionModelConfig::from_json(config), gen);
  MMG_FAIL("build_model: unknown family '{}' (valid: vit, text, dual, single, cross, pooled)", family);
}

}  // namespace mmg::models
