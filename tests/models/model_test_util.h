// Helpers shared by the model tests: binding f64 copies of a module's parameters for
// gradcheck, the every-parameter-has-a-gradient check, a short AdamW loop, masks.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/mmgrad.h"
#include "nn/module.h"
#include "nn/optim.h"

namespace mmg::test {

// A bool [B,S] mask from rows of 0/1.
inline Tensor make_mask(const std::vector<std::vector<int>>& rows) {
  std::vector<bool> v;
  for (auto& r : rows)
    for (int x : r) v.push_back(x != 0);
  return from_vector(v, {static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())});
}

// Makes `m` compute with values[first + i] in place of its i-th parameter: each parameter's
// TensorImpl becomes a view of that value, so gradcheck (which perturbs and differentiates only
// the inputs it is handed) checks the gradients of the parameters too, in f64. The module is left
// bound to the last values: use it only for the gradcheck. (As tests/nn/test_transformer.cpp.)
inline void bind_parameters(nn::Module& m, const std::vector<Tensor>& values, size_t first) {
  nn::NamedTensors params = m.named_parameters();
  REQUIRE(values.size() == first + params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& v = values[first + i];
    Tensor alias = v.view(v.shape());
    *params[i].second.impl() = *alias.impl();
  }
}

inline std::vector<Tensor> inputs_and_parameters(std::vector<Tensor> inputs, const nn::Module& m) {
  for (const Tensor& p : m.parameters()) inputs.push_back(p.detach());
  return inputs;
}

// Every trainable parameter received a gradient that is finite everywhere and not zero everywhere.
inline void check_every_parameter_has_a_gradient(const nn::Module& m) {
  int64_t checked = 0;
  for (auto& [name, p] : m.named_parameters()) {
    if (!p.requires_grad()) continue;
    CAPTURE(name);
    Tensor g = p.grad();
    REQUIRE(g.defined());
    double sq = 0;
    bool finite = true;
    for (double x : g.to_vector<double>()) {
      finite = finite && std::isfinite(x);
      sq += x * x;
    }
    CHECK(finite);
    CHECK(sq > 0);
    ++checked;
  }
  CHECK(checked > 0);
}

// Runs `steps` AdamW steps (no weight decay) over `params` on loss_fn() and returns the loss
// before each step and after the last.
inline std::vector<double> train_losses(const nn::NamedTensors& params, const std::function<Tensor()>& loss_fn,
                                        int steps = 20, double lr = 1e-2) {
  nn::ParamGroup group;
  group.params = params;
  group.lr = lr;
  nn::AdamW opt({group});
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    Tensor loss = loss_fn();
    losses.push_back(loss.item());
    loss.backward();
    opt.step();
  }
  losses.push_back(loss_fn().item());
  return losses;
}

// The trainable parameters of a module, by name (for train_losses).
inline nn::NamedTensors trainable(const nn::Module& m) {
  nn::NamedTensors out;
  for (auto& [name, p] : m.named_parameters())
    if (p.requires_grad()) out.emplace_back(name, p);
  return out;
}

}  // namespace mmg::test
