// Dynamic loss scaling for f16 training (as torch.cuda.amp.GradScaler; Micikevicius et al.,
// "Mixed Precision Training", 2018).
//
// f16 holds magnitudes from about 6·10⁻⁸ to 65504. Under autocast(f16) the backward pass
// carries gradients through f16 products, and small gradients flush to zero there. Scaling
// the loss by s before backward() scales every gradient by s, lifting them into f16's range;
// the f32 gradients of the parameters are divided by s again before the optimiser sees them.
// s is chosen on the fly:
//
//   grads finite      the step is taken; after `growth_interval` such steps in a row, s ← s·growth
//   an inf or a NaN   the step is skipped (the parameters and the optimiser's state are left as
//                     they were) and s ← s·backoff
//
//   nn::GradScaler scaler;
//   opt.zero_grad();
//   { AutocastGuard autocast(DType::f16); loss = model.loss(batch); }
//   scaler.scale(loss).backward();
//   bool finite = scaler.unscale(params);        // grads ÷ s; false if any is inf/NaN
//   if (finite) { clip_grad_norm(params, 1.0); opt.step(); }
//   scaler.update(finite);
//
// bf16 has f32's exponent range and trains without a scaler. A disabled scaler (enabled =
// false) passes everything through: scale(loss) is loss, unscale only checks for inf/NaN,
// and the scale stays 1.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace mmg::nn {

struct GradScalerOptions {
  double init_scale = 65536.0;  // 2¹⁶, as PyTorch
  double growth = 2.0;
  double backoff = 0.5;
  int64_t growth_interval = 2000;
  bool enabled = true;
};

class GradScaler {
 public:
  explicit GradScaler(const GradScalerOptions& options = {});

  // loss · s (loss itself when disabled).
  Tensor scale(const Tensor& loss) const;
  // Divides every defined .grad by s, in place; returns whether every gradient is finite.
  // The check runs on each gradient's device and the host reads one number per device.
  bool unscale(const std::vector<Tensor>& params) const;
  // After a step (taken or skipped): grows or backs off s as above.
  void update(bool grads_finite);

  double scale_value() const { return scale_; }
  int64_t good_steps() const { return good_steps_; }  // finite steps since the last change of s
  int64_t skipped_steps() const { return skipped_; }  // steps skipped so far
  bool enabled() const { return options_.enabled; }

  // For checkpoints: the scale and both counters, so that a resumed run scales exactly as the
  // uninterrupted one.
  struct State {
    double scale = 1.0;
    int64_t good_steps = 0;
    int64_t skipped = 0;
  };
  State state() const { return {scale_, good_steps_, skipped_}; }
  void load_state(const State& s);

 private:
  GradScalerOptions options_;
  double scale_;
  int64_t good_steps_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace mmg::nn
