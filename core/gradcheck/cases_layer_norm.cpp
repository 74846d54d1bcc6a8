// Gradcheck cases for layer_norm: one and two normalised dims, with and without affine.
#include "core/gradcheck/cases.h"

namespace mmg::gradcheck_cases {

void add_layer_norm_cases(std::vector<GradcheckCase>& c) {
  add(c, "layer_norm", "[4,7] over [7], weight and bias", {f64({4, 7}), f64({7}), f64({7})},
      [](const Args& x) { return layer_norm(x[0], {7}, x[1], x[2]); });
  add(c, "layer_norm", "[2,3,5] over [3,5], weight and bias", {f64({2, 3, 5}), f64({3, 5}), f64({3, 5})},
      [](const Args& x) { return layer_norm(x[0], {3, 5}, x[1], x[2]); });
  add(c, "layer_norm", "[3,6] over [6], no affine", {f64({3, 6})},
      [](const Args& x) { return layer_norm(x[0], {6}); });
  add(c, "layer_norm", "[5,1,4] over [4], weight only, eps 0.1", {f64({5, 1, 4}), f64({4})},
      [](const Args& x) { return layer_norm(x[0], {4}, x[1], Tensor(), 0.1); });
}

}  // namespace mmg::gradcheck_cases
