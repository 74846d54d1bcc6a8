// Every named model preset, and building any model from its JSON config.
//
//   preset_config("vit-tiny")   -> {"family": "vit", "image_size": 32, ...}
//   build_model(preset_config("albef-micro"))  -> a FusionModel of family "cross"
//
// Families: "vit" (ViT), "text" (TextEncoder), and "dual", "single", "cross", "pooled"
// (FusionModel, see models/fusion.h).
#pragma once
#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <vector>

#include "core/rng.h"
#include "nn/module.h"

namespace mmg::models {

// All preset names: the ViTs, the text encoders, then the fusion models.
std::vector<std::string> preset_names();

// The config of a preset, with its "family" key; an unknown name is an Error listing the valid ones.
nlohmann::json preset_config(const std::string& name);

// Builds the model a config describes (its "family" key picks the class), e.g. to inspect it.
std::shared_ptr<nn::Module> build_model(const nlohmann::json& config, Generator* gen = nullptr);

}  // namespace mmg::models
