#include "nn/checkpoint.h"

#include "core/io/safetensors.h"

namespace mmg::nn {

static const char* kModelPrefix = "model.";
static const char* kOptimPrefix = "optim.";
static const char* kOptimizerKey = "mmgrad.optimizer";

void save_training_state(const std::string& path, const Module& model, const Optimizer& optimizer,
                         const std::map<std::string, std::string>& metadata) {
  MMG_CHECK(!metadata.count(kOptimizerKey), "save_training_state: {}: metadata key '{}' is reserved", path,
            kOptimizerKey);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (auto& [name, t] : model.state_dict()) tensors.emplace_back(kModelPrefix + name, t);
  for (auto& [key, t] : optimizer.state_dict()) tensors.emplace_back(kOptimPrefix + key, t);
  std::map<std::string, std::string> meta = metadata;
  meta[kOptimizerKey] = optimizer.type_name();
  save_safetensors(path, tensors, meta);
}

std::map<std::string, std::string> load_training_state(const std::string& path, Module& model, Optimizer& optimizer) {
  SafetensorsFile file = load_safetensors(path);
  auto it = file.metadata.find(kOptimizerKey);
  MMG_CHECK(it == file.metadata.end() || it->second == optimizer.type_name(),
            "load_training_state: {} holds the state of an {} optimiser, but the optimiser is {}", path, it->second,
            optimizer.type_name());
  StateDict model_state, optim_state;
  const std::string model_prefix = kModelPrefix, optim_prefix = kOptimPrefix;
  for (auto& [name, t] : file.tensors) {
    if (name.starts_with(model_prefix)) {
      model_state[name.substr(model_prefix.size())] = t;
    } else if (name.starts_with(optim_prefix)) {
      optim_state[name.substr(optim_prefix.size())] = t;
    } else {
      MMG_FAIL("load_training_state: {}: tensor '{}' is neither 'model.*' nor 'optim.*'", path, name);
    }
  }
  // The order makes the load all-or-nothing: the optimiser's check changes nothing, the model's
  // strict load checks everything before it copies, and then the optimiser's load cannot fail.
  try {
    optimizer.check_state_dict(optim_state);
    model.load_state_dict(model_state, /*strict=*/true);
    optimizer.load_state_dict(optim_state);
  } catch (const Error& e) {
    MMG_FAIL("load_training_state: {}: {}", path, e.what());
  }
  file.metadata.erase(kOptimizerKey);
  return file.metadata;
}

}  // namespace mmg::nn
