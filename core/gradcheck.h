// gradcheck: compare the analytic gradients of a function with central finite differences.
//
// For f: inputs -> output, gradcheck draws a fixed random tensor r of the output's shape and
// checks the scalar L = Σ f(x) ⊙ r (a random projection sees every output element):
//   analytic  ∂L/∂x_i  from one backward pass
//   numeric   (L(x_i + ε) − L(x_i − ε)) / 2ε  for every element i of every checked input
// in f64 (inputs are converted), and passes when |analytic − numeric| ≤ atol + rtol·|numeric|
// everywhere. The result names the worst element: input, index, both values, the errors.
//
// Inputs may live on a CUDA device: the f64 copies stay there, each perturbation is written
// on the device, and every evaluation of fn runs there — so the device's kernels are checked,
// forward and backward, not the CPU's.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace mmg {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-6;
  double rtol = 1e-4;
  // Which inputs to differentiate; empty = every floating input. Integer/bool inputs
  // (indices, masks) are passed through unchanged.
  std::vector<bool> check;
};

struct GradcheckResult {
  bool ok = true;
  double max_abs_err = 0, max_rel_err = 0;
  int64_t worst_input = -1;  // which input the worst element is in
  Shape worst_index;         // its multi-index
  double analytic = 0, numeric = 0;
  int64_t elements_checked = 0;
  std::string message;       // one line: PASS/FAIL and the worst element
};

using GradcheckFn = std::function<Tensor(const std::vector<Tensor>&)>;

GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs, const GradcheckOptions& options = {});

// The built-in battery behind `mmg gradcheck`: one case per op and interesting shape
// (odd sizes, broadcasting, masks, causal, Sq ≠ Sk...). Cases build their own inputs from a
// fixed seed, so every run checks the same numbers.
struct GradcheckCase {
  std::string op;      // op name, for --op filtering
  std::string detail;  // input shapes and options, e.g. "[3,5] + [5]"
  std::function<std::vector<Tensor>()> make_inputs;
  GradcheckFn fn;
  GradcheckOptions options;
};

std::vector<GradcheckCase> gradcheck_battery();
GradcheckResult run_case(const GradcheckCase& c);

}  // namespace mmg
