// nn::Module: named parameters, buffers and child modules.
//
// A model is a tree of modules. Each module registers its parameters (trainable tensors),
// buffers (state that is saved but not trained) and children under names; the dotted paths
// ("encoder.layers.0.attn.q_proj.weight") are the keys of state_dict(), chosen to follow
// PyTorch / Hugging Face naming so weights map across.
//
// Parameters are Tensor handles shared between the registry and the module's own member
// fields, so load_state_dict() copies values in place and every holder sees them.
//
//   struct Linear : Module {
//     Tensor weight, bias;
//     Linear(int64_t in, int64_t out) {
//       weight = register_parameter("weight", empty({out, in}));
//       bias = register_parameter("bias", zeros({out}));
//     }
//   };
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace mmg::nn {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using StateDict = std::map<std::string, Tensor>;

// What load_state_dict found; with strict = true any problem is an Error listing all of them.
struct LoadReport {
  std::vector<std::string> missing;     // in the module, not in the dict
  std::vector<std::string> unexpected;  // in the dict, not in the module
  std::vector<std::string> mismatched;  // "name: expected [4,3], got [3,4]"
  bool ok() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
};

class Module : public std::enable_shared_from_this<Module> {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // The module's kind, e.g. "Linear" (for printing and errors).
  virtual std::string type_name() const { return "Module"; }

  // ---- the tree ----
  NamedTensors named_parameters(bool recurse = true) const;  // dotted names, registration order
  NamedTensors named_buffers(bool recurse = true) const;
  std::vector<Tensor> parameters(bool recurse = true) const;
  std::vector<Tensor> trainable_parameters() const;  // parameters with requires_grad (not frozen)
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const { return children_; }
  std::vector<std::pair<std::string, Module*>> named_modules();  // this ("") and every descendant
  int64_t num_parameters(bool trainable_only = false) const;

  // ---- state ----
  StateDict state_dict() const;  // parameters and buffers (detached; sharing storage)
  LoadReport load_state_dict(const StateDict& state, bool strict = true);

  // ---- modes ----
  void train(bool on = true);  // recursively; Dropout and friends read is_training()
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void freeze();    // stop training this sub-tree (requires_grad off), for partial fine-tuning
  void unfreeze();
  void zero_grad();  // drops every parameter's .grad
  // Converts every floating parameter and buffer to `dtype` in place (e.g. f64 for
  // gradcheck): the handles the module and an optimiser hold stay the same tensors.
  void to(DType dtype);
  // Moves every parameter and buffer (any dtype) to `device` in place, like to(DType): the
  // handles the module and an optimiser hold stay the same tensors, now over the device's
  // storage; gradients are dropped. An optimiser's state follows its parameters' device at
  // its next step (nn/optim.h).
  void to(Device device);
  // Where the module lives: the device of its first parameter (or buffer); the CPU when it has none.
  Device device() const;

  // A summary: one line per parameter with its shape, then the count.
  std::string summary() const;

 protected:
  // Register a tensor as a trainable parameter (requires_grad on); returns the handle to keep.
  Tensor register_parameter(const std::string& name, Tensor value);
  Tensor register_buffer(const std::string& name, Tensor value);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> child) {
    add_child(name, child);
    return child;
  }

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> child);
  void check_new_name(const std::string& name) const;
  void collect(const std::string& prefix, bool params, bool recurse, NamedTensors& out) const;

  NamedTensors params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

}  // namespace mmg::nn
