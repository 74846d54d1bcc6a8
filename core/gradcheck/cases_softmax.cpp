// Gradcheck cases for softmax and log_softmax: last and inner dims, odd and size-1 dims.
#include "core/gradcheck/cases.h"

namespace mmg::gradcheck_cases {

void add_softmax_cases(std::vector<GradcheckCase>& c) {
  add(c, "softmax", "[3,7] dim -1", {f64({3, 7})}, [](const Args& x) { return softmax(x[0], -1); });
  add(c, "softmax", "[4,5,3] dim 1", {f64({4, 5, 3})}, [](const Args& x) { return softmax(x[0], 1); });
  add(c, "softmax", "[13] dim 0", {f64({13})}, [](const Args& x) { return softmax(x[0], 0); });
  add(c, "softmax", "[2,1,5] dim 1 (size 1)", {f64({2, 1, 5})}, [](const Args& x) { return softmax(x[0], 1); });
  add(c, "log_softmax", "[3,7] dim -1", {f64({3, 7})}, [](const Args& x) { return log_softmax(x[0], -1); });
  add(c, "log_softmax", "[4,5,3] dim 0", {f64({4, 5, 3})}, [](const Args& x) { return log_softmax(x[0], 0); });
  add(c, "log_softmax", "transposed [5,6] dim 1", {f64({6, 5})},
      [](const Args& x) { return log_softmax(transpose(x[0], 0, 1), 1); });
}

}  // namespace mmg::gradcheck_cases
