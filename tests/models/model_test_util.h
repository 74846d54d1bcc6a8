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
#include "tests/nn/module_test_util.h"

namespace mmg::test {

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
