#include "nn/grad_scaler.h"

#include <cmath>
#include <map>

#include "core/autograd.h"
#include "core/error.h"
#include "core/ops.h"

namespace mmg::nn {

GradScaler::GradScaler(const GradScalerOptions& options)
    : options_(options), scale_(options.enabled ? options.init_scale : 1.0) {
  MMG_CHECK(std::isfinite(options.init_scale) && options.init_scale > 0,
            "GradScaler: init_scale must be finite and > 0, got {}", options.init_scale);
  MMG_CHECK(options.growth > 1 && std::isfinite(options.growth), "GradScaler: growth must be > 1, got {}",
            options.growth);
  MMG_CHECK(options.backoff > 0 && options.backoff < 1, "GradScaler: backoff must be in (0, 1), got {}",
            options.backoff);
  MMG_CHECK(options.growth_interval >= 1, "GradScaler: growth_interval must be >= 1, got {}",
            options.growth_interval);
}

Tensor GradScaler::scale(const Tensor& loss) const {
  MMG_CHECK(loss.defined(), "GradScaler::scale: undefined loss");
  return options_.enabled ? loss * scale_ : loss;
}

bool GradScaler::unscale(const std::vector<Tensor>& params) const {
  NoGradGuard no_grad;
  // 0·x is 0 for finite x and NaN for ±inf and NaN, so Σ 0·g is 0 exactly when every element
  // is finite: one sum per gradient, added up per device, one host read per device.
  std::map<std::string, Tensor> probe;
  const double inv = 1.0 / scale_;
  for (const Tensor& p : params) {
    Tensor g = p.defined() ? p.grad() : Tensor();
    if (!g.defined()) continue;
    Tensor z = sum((g * 0.0).to(DType::f64));
    const std::string key = g.device().str();
    probe[key] = probe.count(key) ? probe[key] + z : z;
    if (options_.enabled) g.copy_(g * inv);
  }
  for (const auto& [device, z] : probe)
    if (!std::isfinite(z.item())) return false;
  return true;
}

void GradScaler::update(bool grads_finite) {
  if (!grads_finite) {
    ++skipped_;
    good_steps_ = 0;
    if (options_.enabled) scale_ *= options_.backoff;
    return;
  }
  if (!options_.enabled) return;
  if (++good_steps_ >= options_.growth_interval) {
    const double grown = scale_ * options_.growth;
    if (std::isfinite(grown)) scale_ = grown;
    good_steps_ = 0;
  }
}

void GradScaler::load_state(const State& s) {
  MMG_CHECK(std::isfinite(s.scale) && s.scale > 0 && s.good_steps >= 0 && s.skipped >= 0,
            "GradScaler::load_state: bad state (scale {}, good steps {}, skipped {})", s.scale, s.good_steps,
            s.skipped);
  scale_ = s.scale;
  good_steps_ = s.good_steps;
  skipped_ = s.skipped;
}

}  // namespace mmg::nn
