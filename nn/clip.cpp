#include "nn/clip.h"

#include <cmath>

#include "core/autograd.h"
#include "core/ops.h"

namespace mmg::nn {

double grad_norm(const std::vector<Tensor>& params) {
  NoGradGuard no_grad;
  // Σ g² per parameter as a 0-d f64 tensor, added up on the device of the first gradient
  // (every gradient's sum moves there, a no-op when all share it); one host read at the end.
  Tensor total;
  for (size_t i = 0; i < params.size(); ++i) {
    MMG_CHECK(params[i].defined(), "grad_norm: parameter {} of {} is undefined", i, params.size());
    Tensor g = params[i].grad();
    if (!g.defined()) continue;
    Tensor g64 = g.to(DType::f64);
    Tensor squares = sum(g64 * g64);
    total = total.defined() ? total + squares.to(total.device()) : squares;
  }
  return total.defined() ? std::sqrt(total.item()) : 0.0;
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  MMG_CHECK(std::isfinite(max_norm) && max_norm > 0.0, "clip_grad_norm: max_norm must be finite and > 0, got {}",
            max_norm);
  const double norm = grad_norm(params);
  if (!std::isfinite(norm) || norm <= max_norm) return norm;
  const double scale = max_norm / (norm + 1e-6);
  NoGradGuard no_grad;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    // The engine gives each leaf its own .grad tensor, so scaling it in place touches nothing else.
    if (g.defined()) g.copy_(g * scale);
  }
  return norm;
}

}  // namespace mmg::nn
