// Training state on disk: a model's parameters and buffers together with its optimiser's state,
// in one safetensors file (core/io/safetensors.h), so a run can stop and resume exactly.
//
//   "model.<name>"   every entry of model.state_dict()      ("model.encoder.ln.weight")
//   "optim.<key>"    every entry of optimizer.state_dict()  ("optim.exp_avg.encoder.ln.weight",
//                                                            "optim.step")
//   __metadata__     the caller's metadata, plus "mmgrad.optimizer" = the optimiser's type
//
// The file is written atomically (a crash never leaves a half-written checkpoint). Resuming with
// the same data order and schedule continues bit for bit as if the run had not stopped
// (tests/nn/test_optim.cpp checks it).
#pragma once
#include <map>
#include <string>

#include "nn/module.h"
#include "nn/optim.h"

namespace mmg::nn {

// `metadata` may not use the key "mmgrad.optimizer" (it is written here).
void save_training_state(const std::string& path, const Module& model, const Optimizer& optimizer,
                         const std::map<std::string, std::string>& metadata = {});

// Loads both states (strictly: every key must match, see Module::load_state_dict and
// Optimizer::load_state_dict). Everything is checked before anything is changed: on an error the
// model and the optimiser are left as they were. Returns the file's metadata.
std::map<std::string, std::string> load_training_state(const std::string& path, Module& model, Optimizer& optimizer);

}  // namespace mmg::nn
