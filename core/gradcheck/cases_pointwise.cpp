// Gradcheck cases for the pointwise ops: unary math, clamp, pow, maximum/minimum, where.
//
// Random inputs must stay away from kinks, where finite differences straddle two slopes:
// relu, abs and clamp see ±[0.5, 2) (a positive draw with random signs from a mask), and
// clamp bounds sit at fixed points the draws rarely come within ε of. pow(a, b) takes a
// positive base, since ∂/∂b needs ln a.
#include "core/gradcheck/cases.h"

namespace mmg::gradcheck_cases {

// ±x: the sign from a bool mask, so |result| ≥ 0.5 when x is a pos() draw.
static Tensor signed_away_from_zero(const Tensor& x, const Tensor& sign_mask) { return where(sign_mask, x, neg(x)); }

void add_pointwise_cases(std::vector<GradcheckCase>& c) {
  // ---- unary ----
  add(c, "sqrt", "[3,7]", {pos({3, 7})}, [](const Args& x) { return sqrt(x[0]); });
  add(c, "rsqrt", "[5,3]", {pos({5, 3})}, [](const Args& x) { return rsqrt(x[0]); });
  add(c, "rsqrt", "transposed [3,5]", {pos({3, 5})}, [](const Args& x) { return rsqrt(transpose(x[0], 0, 1)); });
  add(c, "abs", "[4,7] (|x| ≥ 0.5)", {pos({4, 7}), mask({4, 7})},
      [](const Args& x) { return abs(signed_away_from_zero(x[0], x[1])); });
  add(c, "tanh", "[3,11]", {f64({3, 11})}, [](const Args& x) { return tanh(x[0]); });
  add(c, "tanh", "[13] scaled ×3 (saturating)", {f64({13})}, [](const Args& x) { return tanh(x[0] * 3.0); });
  add(c, "sigmoid", "[5,7]", {f64({5, 7})}, [](const Args& x) { return sigmoid(x[0]); });
  add(c, "sigmoid", "[11] scaled ×6 (both branches)", {f64({11})}, [](const Args& x) { return sigmoid(x[0] * 6.0); });
  add(c, "relu", "[6,5] (|x| ≥ 0.5)", {pos({6, 5}), mask({6, 5})},
      [](const Args& x) { return relu(signed_away_from_zero(x[0], x[1])); });
  add(c, "gelu", "[3,13] erf", {f64({3, 13})}, [](const Args& x) { return gelu(x[0]); });
  add(c, "gelu", "[17] erf, scaled ×3", {f64({17})}, [](const Args& x) { return gelu(x[0] * 3.0); });
  add(c, "gelu", "[3,13] tanh", {f64({3, 13})}, [](const Args& x) { return gelu(x[0], GeluApprox::tanh); });
  add(c, "gelu", "[17] tanh, scaled ×3", {f64({17})},
      [](const Args& x) { return gelu(x[0] * 3.0, GeluApprox::tanh); });
  add(c, "geglu", "[3,14] erf", {f64({3, 14})}, [](const Args& x) { return geglu(x[0]); });
  add(c, "geglu", "[2,3,10] tanh, scaled ×3", {f64({2, 3, 10})},
      [](const Args& x) { return geglu(x[0] * 3.0, GeluApprox::tanh); });
  add(c, "geglu", "transposed [10,3] erf", {f64({10, 3})}, [](const Args& x) { return geglu(transpose(x[0], 0, 1)); });
  add(c, "clamp", "[5,7] [-0.5, 0.7]", {f64({5, 7})}, [](const Args& x) { return clamp(x[0], -0.5, 0.7); });
  add(c, "clamp", "[9] min 0.3", {f64({9})}, [](const Args& x) { return clamp(x[0], 0.3, std::nullopt); });
  add(c, "clamp", "[9] max -0.2", {f64({9})}, [](const Args& x) { return clamp(x[0], std::nullopt, -0.2); });

  // ---- pow ----
  add(c, "pow", "[3,5] ^ [3,5]", {pos({3, 5}), f64({3, 5})}, [](const Args& x) { return pow(x[0], x[1]); });
  add(c, "pow", "[3,1] ^ [4]", {pos({3, 1}), f64({4})}, [](const Args& x) { return pow(x[0], x[1]); });
  add(c, "pow", "[] ^ [7]", {pos({}), f64({7})}, [](const Args& x) { return pow(x[0], x[1]); });
  add(c, "pow", "[2,5] ^ []", {pos({2, 5}), f64({})}, [](const Args& x) { return pow(x[0], x[1]); });
  add(c, "pow", "[5,3] ^ 3 (any sign)", {f64({5, 3})}, [](const Args& x) { return pow(x[0], 3.0); });
  add(c, "pow", "[7] ^ 2", {f64({7})}, [](const Args& x) { return pow(x[0], 2.0); });
  add(c, "pow", "[7] ^ 1", {f64({7})}, [](const Args& x) { return pow(x[0], 1.0); });
  add(c, "pow", "[7] ^ 0", {f64({7})}, [](const Args& x) { return pow(x[0], 0.0); });
  add(c, "pow", "[4,3] ^ 0.5", {pos({4, 3})}, [](const Args& x) { return pow(x[0], 0.5); });
  add(c, "pow", "[4,3] ^ -1.5", {pos({4, 3})}, [](const Args& x) { return pow(x[0], -1.5); });

  // ---- maximum, minimum (random draws never tie) ----
  add(c, "maximum", "[3,5] vs [3,5]", {f64({3, 5}), f64({3, 5})}, [](const Args& x) { return maximum(x[0], x[1]); });
  add(c, "maximum", "[4,1] vs [5]", {f64({4, 1}), f64({5})}, [](const Args& x) { return maximum(x[0], x[1]); });
  add(c, "maximum", "[2,3,5] vs []", {f64({2, 3, 5}), f64({})}, [](const Args& x) { return maximum(x[0], x[1]); });
  add(c, "minimum", "[3,5] vs [3,5]", {f64({3, 5}), f64({3, 5})}, [](const Args& x) { return minimum(x[0], x[1]); });
  add(c, "minimum", "[7] vs [3,1]", {f64({7}), f64({3, 1})}, [](const Args& x) { return minimum(x[0], x[1]); });

  // ---- where ----
  add(c, "where", "[3,5] ? [3,5] : [3,5]", {mask({3, 5}), f64({3, 5}), f64({3, 5})},
      [](const Args& x) { return where(x[0], x[1], x[2]); });
  add(c, "where", "[3,1,1] ? [1,4,1] : [5]", {mask({3, 1, 1}), f64({1, 4, 1}), f64({5})},
      [](const Args& x) { return where(x[0], x[1], x[2]); });
  add(c, "where", "[4,3] ? [] : [3]", {mask({4, 3}), f64({}), f64({3})},
      [](const Args& x) { return where(x[0], x[1], x[2]); });
  add(c, "where", "[] ? [2,3] : transposed [2,3]", {mask({}), f64({2, 3}), f64({3, 2})},
      [](const Args& x) { return where(x[0], x[1], transpose(x[2], 0, 1)); });
}

}  // namespace mmg::gradcheck_cases
