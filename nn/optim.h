// Optimisers: SGD (with momentum, Nesterov, L2 weight decay) and AdamW, over parameter groups.
//
// An optimiser holds parameter groups: lists of (name, parameter) with the group's learning rate
// and weight decay. The names are the module's dotted parameter names ("encoder.ln.weight"); they
// key the optimiser's state, so a checkpoint's state finds its parameter by name, not by position.
//
// A training step:
//
//     nn::AdamW opt(model);                 // lr 1e-3, weight decay 0.01 (not on 1-D parameters)
//     opt.zero_grad();                      // drop the old gradients
//     Tensor loss = model.loss(batch);
//     loss.backward();                      // leaves' .grad filled
//     nn::clip_grad_norm(model.trainable_parameters(), 1.0);   // optional (nn/clip.h)
//     opt.set_lr(schedule.lr_at(opt.step_count()));            // optional (nn/schedule.h)
//     opt.step();                           // parameters updated in place
//
// Gradient accumulation. backward() adds into .grad (the engine sums every gradient that reaches a
// leaf), so k calls of backward() before one step() use the SUM of the k gradients. To train on the
// mean over k micro-batches — the gradient of one batch k times as large — scale each micro-batch
// loss by 1/k:
//
//     opt.zero_grad();
//     for (auto& micro : split(batch, k)) (model.loss(micro) / double(k)).backward();
//     opt.step();
//
// (With a loss that is itself a mean over equal-sized micro-batches this gives exactly the gradient
// of the whole batch; tests/nn/test_optim.cpp checks it.)
//
// Parameters whose .grad is undefined (frozen, or not used by this step's graph) are skipped: no
// update, no weight decay, and their state is left as it was — as PyTorch does.
//
// Updates run under NoGradGuard. The math is written with ops on detached tensors, in the
// parameter's compute dtype (f32 for bf16/f16 parameters, see core/dispatch.h), and the result is
// copied into the parameter in place, so every holder of the parameter's handle sees it. State
// tensors (momentum, moments) live in that compute dtype on the parameter's device; they are
// replaced by new tensors at each step, never written in place, so a state_dict() is a snapshot.
//
// State, for save and load (keys of state_dict()):
//   "step"                    0-d i64: how many times step() ran
//   SGD   "momentum_buffer.<name>"   (only with momentum != 0)
//   AdamW "exp_avg.<name>", "exp_avg_sq.<name>", and "step.<name>" (0-d i64: the steps that
//         updated this parameter, which its bias correction uses — as PyTorch's per-parameter step)
// Hyperparameters (lr, betas, weight decay, ...) are not state: they come from the constructor
// and from the schedule, which the trainer applies from step_count() after a reload.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "nn/module.h"

namespace mmg::nn {

struct ParamGroup {
  std::vector<std::pair<std::string, Tensor>> params;  // (dotted name, parameter)
  double lr = 1e-3;
  double weight_decay = 0.0;
  double lr_scale = 1.0;  // set_lr(x) gives this group the rate x·lr_scale (e.g. 0.1 for a backbone)
};

// The default grouping of a model's trainable parameters (frozen ones are left out):
//   group 0, weight decay `weight_decay`: the weight matrices (Linear, Embedding, ...)
//   group 1, weight decay 0: every parameter with dim() < 2 — biases, LayerNorm weights, scalars
//            such as a logit scale — and every parameter whose name ends in one of
//            `no_decay_suffixes`: by default "bias", "_token" (ViT's cls_token, mask_token) and
//            "position_embeddings" / "pos_embed" (a ViT position table registered directly as a
//            parameter, shape [1,N,D]; an Embedding's table is ".weight" and keeps its decay).
// Decaying a bias, a normalisation gain or a learned token toward 0 only fights the model's
// freedom to shift and scale, so the usual transformer recipes (BERT, ViT, CLIP) leave them out.
// Empty groups are dropped; both groups have lr_scale 1.
std::vector<ParamGroup> param_groups_for(const Module& model, double lr, double weight_decay,
                                         const std::vector<std::string>& no_decay_suffixes = {
                                             "bias", "_token", "position_embeddings", "pos_embed"});

// The groups with some parameters' learning rates scaled by name: a parameter whose dotted name
// starts with a key of `lr_scales` (the longest matching key wins) moves to a copy of its group
// with lr_scale (and lr) multiplied by that key's value, e.g. {"model.fusion.": 0.3,
// "vqa_head.": 0.3} trains the fusion layers and the VQA head at 0.3× the base rate. Groups keep
// their weight decay; empty groups are dropped; the unscaled groups come first, so lr() stays the
// base rate. A key that matches no parameter, or a scale that is not finite and > 0, is an Error
// naming the key (a misspelt prefix would otherwise change nothing, silently).
std::vector<ParamGroup> with_lr_scales(std::vector<ParamGroup> groups, const std::map<std::string, double>& lr_scales);

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  const std::string& type_name() const { return type_; }  // "SGD", "AdamW"

  // One update of every parameter that has a .grad; then step_count() grows by one.
  virtual void step();
  // Drops every parameter's .grad (the next backward starts from zero).
  void zero_grad();

  // The base learning rate: the first group's lr divided by its lr_scale.
  double lr() const;
  // Sets every group's lr to lr·lr_scale (a schedule calls this before each step).
  void set_lr(double lr);
  int64_t step_count() const { return counters_.at("step"); }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }

  // The state (see the top of this file). Tensors are shared with the optimiser, which never
  // writes them in place while anyone else holds them.
  StateDict state_dict() const;
  // Replaces the state with copies of `state`'s tensors (converted to each parameter's compute
  // dtype and device). The keys must match state_dict()'s exactly and each tensor must have the
  // right shape; otherwise throws an Error listing every missing, unexpected and mis-shaped key,
  // and nothing is changed.
  void load_state_dict(const StateDict& state);
  // Throws what load_state_dict would throw for `state`; changes nothing.
  void check_state_dict(const StateDict& state) const;

 protected:
  // Checks the groups (names unique and non-empty, parameters defined, floating, leaves, no
  // parameter twice, lr and weight decay finite and >= 0) and sets the "step" counter to 0.
  Optimizer(std::vector<ParamGroup> groups, const std::string& type);

  // Updates one parameter. `param` is a detached handle on the parameter's storage (copy_ into
  // it); `grad` is its gradient in the parameter's compute dtype. Runs under NoGradGuard.
  virtual void update(const ParamGroup& group, const std::string& name, Tensor& param, const Tensor& grad) = 0;

  // A zero state tensor shaped like `param`, in its compute dtype, on its device.
  static Tensor zero_state_like(const Tensor& param);
  // The state tensor `key` of `param`, first moved to param's device when the parameter has
  // moved since (Module::to(Device) after the optimiser was built).
  Tensor& state_for(const std::string& key, const Tensor& param);
  // The same for a state tensor already in hand: moved to param's device if it is elsewhere.
  static Tensor& on_param_device(Tensor& state, const Tensor& param);

  std::string type_;
  std::vector<ParamGroup> groups_;
  std::map<std::string, Tensor> state_;     // "exp_avg.<name>" -> tensor
  std::map<std::string, int64_t> counters_;  // "step", "step.<name>" -> count (saved as 0-d i64)
};

// Stochastic gradient descent, as torch.optim.SGD with dampening 0:
//   g ← ∇θ + λ·θ                  (weight decay as an L2 penalty on the gradient)
//   b ← μ·b + g                   (momentum buffer, b₀ = 0, so b₁ = g)
//   g ← g + μ·b  if Nesterov, else g ← b
//   θ ← θ − η·g
struct SGDOptions {
  double momentum = 0.0;
  bool nesterov = false;  // needs momentum > 0
};

class SGD : public Optimizer {
 public:
  // Each group keeps its own lr and weight decay.
  SGD(std::vector<ParamGroup> groups, SGDOptions options = {});
  // The model's trainable parameters grouped by param_groups_for(model, lr, weight_decay).
  SGD(const Module& model, double lr, double weight_decay = 0.0, SGDOptions options = {});

 protected:
  void update(const ParamGroup& group, const std::string& name, Tensor& param, const Tensor& grad) override;

 private:
  SGDOptions options_;
};

// AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization"), as torch.optim.AdamW:
//   t ← t + 1                                 (per parameter: the steps that updated it)
//   θ ← θ − η·λ·θ                             (decoupled weight decay)
//   m ← β₁·m + (1−β₁)·g
//   v ← β₂·v + (1−β₂)·g²
//   m̂ = m/(1−β₁ᵗ),  v̂ = v/(1−β₂ᵗ)
//   θ ← θ − η·m̂/(√v̂ + ε)
// On CUDA, the f32 and f64 parameters of a step (contiguous, as Module's are) are updated
// by one fused multi-tensor kernel per device and dtype (kernels/adamw.h) — the same
// operations in the same order, bit-identical to the op-by-op update, which remains the
// path for the CPU and for bf16/f16 parameters.
struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

class AdamW : public Optimizer {
 public:
  // Each group keeps its own lr and weight decay.
  AdamW(std::vector<ParamGroup> groups, AdamWOptions options = {});
  // The model's trainable parameters grouped by param_groups_for(model, lr, weight_decay).
  explicit AdamW(const Module& model, double lr = 1e-3, double weight_decay = 0.01, AdamWOptions options = {});

  void step() override;

 protected:
  void update(const ParamGroup& group, const std::string& name, Tensor& param, const Tensor& grad) override;

 private:
  // Each parameter's state, in the order of the groups: the entries of state_ and counters_,
  // looked up once here rather than by name every step (the maps' nodes never move, and the
  // optimiser can be neither copied nor moved).
  struct Slot {
    Tensor* exp_avg;
    Tensor* exp_avg_sq;
    int64_t* step;
  };
  AdamWOptions options_;
  std::vector<Slot> slots_;
};

}  // namespace mmg::nn
