// Gradcheck cases for matmul (every NumPy case: dot, 1-D promotion, broadcast batch,
// transposed views) and linear.
#include "core/gradcheck/cases.h"

namespace mmg::gradcheck_cases {

void add_matmul_cases(std::vector<GradcheckCase>& c) {
  add(c, "matmul", "[3,4] @ [4,5]", {f64({3, 4}), f64({4, 5})}, [](const Args& x) { return matmul(x[0], x[1]); });
  add(c, "matmul", "[5] @ [5] (dot)", {f64({5}), f64({5})}, [](const Args& x) { return matmul(x[0], x[1]); });
  add(c, "matmul", "[4] @ [2,4,3] (1-D left)", {f64({4}), f64({2, 4, 3})},
      [](const Args& x) { return matmul(x[0], x[1]); });
  add(c, "matmul", "[2,3,4] @ [4] (1-D right)", {f64({2, 3, 4}), f64({4})},
      [](const Args& x) { return matmul(x[0], x[1]); });
  add(c, "matmul", "[2,1,3,4] @ [5,4,2] (broadcast batch)", {f64({2, 1, 3, 4}), f64({5, 4, 2})},
      [](const Args& x) { return matmul(x[0], x[1]); });
  add(c, "matmul", "[2,3,4] @ [4,5] (shared right)", {f64({2, 3, 4}), f64({4, 5})},
      [](const Args& x) { return matmul(x[0], x[1]); });
  add(c, "matmul", "[3,4] @ [2,4,5] (shared left)", {f64({3, 4}), f64({2, 4, 5})},
      [](const Args& x) { return matmul(x[0], x[1]); });
  add(c, "matmul", "[4,3]ᵀ @ [5,4]ᵀ (transposed views)", {f64({4, 3}), f64({5, 4})},
      [](const Args& x) { return matmul(transpose(x[0], 0, 1), transpose(x[1], 0, 1)); });
  add(c, "linear", "x [2,3,4], W [5,4], b [5]", {f64({2, 3, 4}), f64({5, 4}), f64({5})},
      [](const Args& x) { return linear(x[0], x[1], x[2]); });
  add(c, "linear", "x [7,4], W [3,4], no bias", {f64({7, 4}), f64({3, 4})},
      [](const Args& x) { return linear(x[0], x[1]); });
  add(c, "linear", "x [4] (1-D), W [3,4], b [3]", {f64({4}), f64({3, 4}), f64({3})},
      [](const Args& x) { return linear(x[0], x[1], x[2]); });
}

}  // namespace mmg::gradcheck_cases
