// Gradcheck cases for the views, the basic arithmetic and sum/mean.
#include "core/gradcheck/cases.h"

namespace mmg::gradcheck_cases {

void add_view_cases(std::vector<GradcheckCase>& c) {
  add(c, "reshape", "[2,3,5] -> [5,6]", {f64({2, 3, 5})}, [](const Args& x) { return reshape(x[0], {5, 6}); });
  add(c, "reshape", "transposed [3,5] -> [15]", {f64({5, 3})},
      [](const Args& x) { return reshape(transpose(x[0], 0, 1), {15}); });
  add(c, "permute", "[2,3,5] (2,0,1)", {f64({2, 3, 5})}, [](const Args& x) { return permute(x[0], {2, 0, 1}); });
  add(c, "transpose", "[4,7] (0,1)", {f64({4, 7})}, [](const Args& x) { return transpose(x[0], 0, 1); });
  add(c, "expand", "[3,1] -> [2,3,5]", {f64({3, 1})}, [](const Args& x) { return expand(x[0], {2, 3, 5}); });
  add(c, "slice", "[7,5] dim 0 1:6:2", {f64({7, 5})}, [](const Args& x) { return slice(x[0], 0, 1, 6, 2); });
  add(c, "narrow", "[4,9] dim 1 start 2 len 5", {f64({4, 9})}, [](const Args& x) { return narrow(x[0], 1, 2, 5); });
  add(c, "squeeze/unsqueeze", "[3,1,5]", {f64({3, 1, 5})},
      [](const Args& x) { return unsqueeze(squeeze(x[0], 1), 0); });
  add(c, "select", "[3,4,5] dim 1 index -1", {f64({3, 4, 5})}, [](const Args& x) { return select(x[0], 1, -1); });
}

void add_elementwise_cases(std::vector<GradcheckCase>& c) {
  add(c, "add", "[3,5] + [5]", {f64({3, 5}), f64({5})}, [](const Args& x) { return add(x[0], x[1]); });
  add(c, "sub", "[3,1] - [1,4]", {f64({3, 1}), f64({1, 4})}, [](const Args& x) { return sub(x[0], x[1]); });
  add(c, "mul", "[2,3,5] * [3,1]", {f64({2, 3, 5}), f64({3, 1})}, [](const Args& x) { return mul(x[0], x[1]); });
  add(c, "mul", "x * x (same input twice)", {f64({7})}, [](const Args& x) { return mul(x[0], x[0]); });
  add(c, "div", "[4,3] / [3] (positive)", {f64({4, 3}), pos({3})}, [](const Args& x) { return div(x[0], x[1]); });
  add(c, "neg", "[5,3]", {f64({5, 3})}, [](const Args& x) { return neg(x[0]); });
  add(c, "exp", "[3,7]", {f64({3, 7})}, [](const Args& x) { return exp(x[0]); });
  add(c, "log", "[11] (positive)", {pos({11})}, [](const Args& x) { return log(x[0]); });
  add(c, "sum_to", "[2,3,5] -> [3,1]", {f64({2, 3, 5})}, [](const Args& x) { return sum_to(x[0], {3, 1}); });
  add(c, "contiguous", "transposed [4,6]", {f64({6, 4})},
      [](const Args& x) { return transpose(x[0], 0, 1).contiguous(); });
  add(c, "to", "f64 -> f32 -> f64 (rounding is below tolerance)", {f64({5})},
      [](const Args& x) { return x[0].to(DType::f32).to(DType::f64) * 1.0; },
      {.eps = 1e-3, .atol = 1e-4, .rtol = 1e-3, .check = {}});
}

void add_reduce_cases(std::vector<GradcheckCase>& c) {
  add(c, "sum", "[3,5,7] all", {f64({3, 5, 7})}, [](const Args& x) { return sum(x[0]); });
  add(c, "sum", "[3,5,7] dims (0,2) keepdim", {f64({3, 5, 7})}, [](const Args& x) { return sum(x[0], {0, 2}, true); });
  add(c, "mean", "[6,5] dim -1", {f64({6, 5})}, [](const Args& x) { return mean(x[0], {-1}); });
}

}  // namespace mmg::gradcheck_cases
