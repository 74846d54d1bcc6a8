// Gradcheck cases for max/min (along a dim and over all elements), var, std, logsumexp and
// norm: one dim and several, negative dims, keepdim both ways, a non-contiguous input.
// Inputs are N(0,1) draws: ties (where max/min and norm(p = inf) have no derivative) have
// probability 0, and no element is within the finite-difference step of another.
#include <limits>

#include "core/gradcheck/cases.h"

namespace mmg::gradcheck_cases {

void add_reduce_more_cases(std::vector<GradcheckCase>& c) {
  const double inf = std::numeric_limits<double>::infinity();
  // ---- max / min ----
  add(c, "max", "[4,6] dim 1", {f64({4, 6})}, [](const Args& x) { return max(x[0], 1).values; });
  add(c, "max", "[3,5,4] dim -3 keepdim", {f64({3, 5, 4})}, [](const Args& x) { return max(x[0], -3, true).values; });
  add(c, "max", "transposed [5,3] dim 0", {f64({3, 5})},
      [](const Args& x) { return max(transpose(x[0], 0, 1), 0).values; });
  add(c, "min", "[5,4] dim 0 keepdim", {f64({5, 4})}, [](const Args& x) { return min(x[0], 0, true).values; });
  add(c, "min", "[2,3,7] dim -1", {f64({2, 3, 7})}, [](const Args& x) { return min(x[0], -1).values; });
  add(c, "max", "[3,5] all elements", {f64({3, 5})}, [](const Args& x) { return max(x[0]); });
  add(c, "min", "[2,3,4] all elements", {f64({2, 3, 4})}, [](const Args& x) { return min(x[0]); });
  // ---- var / std ----
  add(c, "var", "[4,7] dim 1", {f64({4, 7})}, [](const Args& x) { return var(x[0], {1}); });
  add(c, "var", "[3,4,5] dims (0,2) keepdim correction 0", {f64({3, 4, 5})},
      [](const Args& x) { return var(x[0], {0, 2}, 0, true); });
  add(c, "var", "[3,5] all", {f64({3, 5})}, [](const Args& x) { return var(x[0]); });
  add(c, "std", "[5,6] dim -1", {f64({5, 6})}, [](const Args& x) { return mmg::std(x[0], {-1}); });
  add(c, "std", "[3,4,5] dims (2,0) keepdim correction 2", {f64({3, 4, 5})},
      [](const Args& x) { return mmg::std(x[0], {2, 0}, 2, true); });
  add(c, "std", "permuted [4,3,5] dims (-2,-1)", {f64({3, 5, 4})},
      [](const Args& x) { return mmg::std(permute(x[0], {2, 0, 1}), {-2, -1}); });
  // ---- logsumexp ----
  add(c, "logsumexp", "[4,7] dim 1", {f64({4, 7})}, [](const Args& x) { return logsumexp(x[0], {1}); });
  add(c, "logsumexp", "[3,4,5] dims (0,2) keepdim", {f64({3, 4, 5})},
      [](const Args& x) { return logsumexp(x[0], {0, 2}, true); });
  add(c, "logsumexp", "[3,5] all, scaled by 30", {f64({3, 5})},
      [](const Args& x) { return logsumexp(x[0] * 30.0, {}); });
  // ---- norm ----
  add(c, "norm", "p=2 [3,5] all", {f64({3, 5})}, [](const Args& x) { return norm(x[0]); });
  add(c, "norm", "p=2 [4,6] dim 1 keepdim", {f64({4, 6})}, [](const Args& x) { return norm(x[0], 2, {1}, true); });
  add(c, "norm", "p=1 [3,4,5] dims (0,2)", {f64({3, 4, 5})}, [](const Args& x) { return norm(x[0], 1, {0, 2}); });
  add(c, "norm", "p=inf [5,4] dim 0", {f64({5, 4})}, [inf](const Args& x) { return norm(x[0], inf, {0}); });
  add(c, "norm", "p=3 [3,6] dim -1", {f64({3, 6})}, [](const Args& x) { return norm(x[0], 3, {-1}); });
  add(c, "norm", "p=0.5 [4,5] dim -1 keepdim", {f64({4, 5})}, [](const Args& x) { return norm(x[0], 0.5, {-1}, true); });
  add(c, "norm", "p=1.5 transposed [5,3] all", {f64({3, 5})},
      [](const Args& x) { return norm(transpose(x[0], 0, 1), 1.5); });
}

}  // namespace mmg::gradcheck_cases
