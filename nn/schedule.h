// Learning-rate schedules: the rate to use at each optimiser step, as a pure function of the step.
//
// A schedule holds no state, so resuming a run only needs the step count (Optimizer::step_count()
// is saved with the optimiser's state):
//
//     nn::WarmupCosine schedule(3e-4, /*warmup_steps=*/100, /*total_steps=*/10000, /*min_lr=*/3e-5);
//     opt.set_lr(schedule.lr_at(opt.step_count()));
//     opt.step();
//
// Steps count from 0 (the first update). A negative step is an Error.
#pragma once
#include <cstdint>
#include <string>

namespace mmg::nn {

class LRSchedule {
 public:
  virtual ~LRSchedule() = default;
  virtual double lr_at(int64_t step) const = 0;
};

// η(t) = lr
class ConstantLR : public LRSchedule {
 public:
  explicit ConstantLR(double lr);
  double lr_at(int64_t step) const override;

 private:
  double lr_;
};

// Linear warmup from 0, then a half cosine down to min_lr (as the usual transformer recipes):
//   t < W:       η(t) = η_max · t/W
//   W ≤ t < T:   η(t) = η_min + ½(η_max − η_min)(1 + cos(π·(t−W)/(T−W)))
//   t ≥ T:       η(t) = η_min
// So η(0) = 0, η(W) = η_max, η at the middle of the decay = (η_max + η_min)/2, η(T) = η_min.
// Needs 0 ≤ W ≤ T, T > 0 and 0 ≤ η_min ≤ η_max. With W = 0 there is no warmup.
class WarmupCosine : public LRSchedule {
 public:
  WarmupCosine(double base_lr, int64_t warmup_steps, int64_t total_steps, double min_lr = 0.0);
  double lr_at(int64_t step) const override;

 private:
  double base_lr_, min_lr_;
  int64_t warmup_, total_;
};

// Decay by γ every `step_size` steps: η(t) = lr · γ^⌊t / step_size⌋
class StepLR : public LRSchedule {
 public:
  StepLR(double base_lr, int64_t step_size, double gamma = 0.1);
  double lr_at(int64_t step) const override;

 private:
  double base_lr_, gamma_;
  int64_t step_size_;
};

}  // namespace mmg::nn
