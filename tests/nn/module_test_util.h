// Helpers shared by the tests of modules (tests/nn, tests/models): masks, gradchecks over a
// module's parameters, and the every-parameter-has-a-gradient check.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/mmgrad.h"
#include "nn/module.h"

namespace mmg::test {

// A bool [B,S] mask from rows of 0/1.
inline Tensor make_mask(const std::vector<std::vector<int>>& rows) {
  std::vector<bool> v;
  for (auto& r : rows)
    for (int x : r) v.push_back(x != 0);
  return from_vector(v, {static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())});
}

// Makes `m` compute with values[first + i] in place of its i-th parameter: each parameter's
// TensorImpl becomes a view of that value (a non-leaf whose graph edge leads to it). This is
// how mmg::gradcheck, which perturbs and differentiates only the inputs it is handed, can check
// the gradients of parameters: pass them as inputs and bind them inside the function. It also
// makes the module compute in f64, since gradcheck hands over f64 copies. The module is left
// bound to the last values: use it only for the gradcheck.
inline void bind_parameters(nn::Module& m, const std::vector<Tensor>& values, size_t first) {
  nn::NamedTensors params = m.named_parameters();
  REQUIRE(values.size() == first + params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& v = values[first + i];
    Tensor alias = v.view(v.shape());
    *params[i].second.impl() = *alias.impl();
  }
}

// The inputs followed by (detached handles of) the module's parameters, for gradcheck.
inline std::vector<Tensor> inputs_and_parameters(std::vector<Tensor> inputs, const nn::Module& m) {
  for (const Tensor& p : m.parameters()) inputs.push_back(p.detach());
  return inputs;
}

inline std::vector<std::string> names_of(const nn::Module& m) {
  std::vector<std::string> out;
  for (auto& [n, t] : m.named_parameters()) out.push_back(n);
  return out;
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

}  // namespace mmg::test
