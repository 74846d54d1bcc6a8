#include "nn/schedule.h"

#include <cmath>
#include <numbers>

#include "core/error.h"

namespace mmg::nn {

static void check_lr(const char* schedule, const char* what, double lr) {
  MMG_CHECK(std::isfinite(lr) && lr >= 0.0, "{}: {} must be finite and >= 0, got {}", schedule, what, lr);
}

static void check_step(const char* schedule, int64_t step) {
  MMG_CHECK(step >= 0, "{}.lr_at: step {} is negative (steps count from 0)", schedule, step);
}

ConstantLR::ConstantLR(double lr) : lr_(lr) { check_lr("ConstantLR", "lr", lr); }

double ConstantLR::lr_at(int64_t step) const {
  check_step("ConstantLR", step);
  return lr_;
}

WarmupCosine::WarmupCosine(double base_lr, int64_t warmup_steps, int64_t total_steps, double min_lr)
    : base_lr_(base_lr), min_lr_(min_lr), warmup_(warmup_steps), total_(total_steps) {
  check_lr("WarmupCosine", "base_lr", base_lr);
  check_lr("WarmupCosine", "min_lr", min_lr);
  MMG_CHECK(min_lr <= base_lr, "WarmupCosine: min_lr {} is above base_lr {}", min_lr, base_lr);
  MMG_CHECK(total_steps > 0, "WarmupCosine: total_steps must be > 0, got {}", total_steps);
  MMG_CHECK(warmup_steps >= 0 && warmup_steps <= total_steps,
            "WarmupCosine: warmup_steps must be in [0, total_steps = {}], got {}", total_steps, warmup_steps);
}

double WarmupCosine::lr_at(int64_t step) const {
  check_step("WarmupCosine", step);
  if (step < warmup_) return base_lr_ * static_cast<double>(step) / static_cast<double>(warmup_);
  if (step >= total_) return min_lr_;
  double progress = static_cast<double>(step - warmup_) / static_cast<double>(total_ - warmup_);  // in [0, 1)
  return min_lr_ + 0.5 * (base_lr_ - min_lr_) * (1.0 + std::cos(std::numbers::pi * progress));
}

StepLR::StepLR(double base_lr, int64_t step_size, double gamma) : base_lr_(base_lr), gamma_(gamma), step_size_(step_size) {
  check_lr("StepLR", "base_lr", base_lr);
  MMG_CHECK(step_size > 0, "StepLR: step_size must be > 0, got {}", step_size);
  MMG_CHECK(std::isfinite(gamma) && gamma > 0.0, "StepLR: gamma must be finite and > 0, got {}", gamma);
}

double StepLR::lr_at(int64_t step) const {
  check_step("StepLR", step);
  return base_lr_ * std::pow(gamma_, static_cast<double>(step / step_size_));
}

}  // namespace mmg::nn
