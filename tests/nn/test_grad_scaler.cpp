// Dynamic loss scaling (nn/grad_scaler.h): scaling, unscaling, skipping on overflow, growth.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "core/mmgrad.h"
#include "nn/grad_scaler.h"

using namespace mmg;

namespace {

// A parameter with the given gradient.
Tensor param_with_grad(const std::vector<float>& grad) {
  const int64_t n = static_cast<int64_t>(grad.size());
  Tensor p = zeros({n}).requires_grad_(true);
  (p * from_vector<float>(grad, {n})).sum().backward();
  return p;
}

}  // namespace

TEST_CASE("GradScaler: the loss is scaled by s and the gradients divided by s again") {
  nn::GradScaler scaler({.init_scale = 1024.0});
  Tensor loss = from_vector<float>({3.0f}, {});
  CHECK(scaler.scale(loss).item() == 3072.0);
  Tensor a = param_with_grad({1024.0f, -2048.0f}), b = param_with_grad({512.0f});
  CHECK(scaler.unscale({a, b}));
  CHECK(a.grad().to_vector<double>() == std::vector<double>{1.0, -2.0});
  CHECK(b.grad().to_vector<double>() == std::vector<double>{0.5});
  // A parameter without a gradient is skipped.
  Tensor frozen = zeros({2}).requires_grad_(true);
  CHECK(scaler.unscale({frozen}));
}

TEST_CASE("GradScaler: an inf or NaN gradient skips the step and backs the scale off, finite steps grow it") {
  nn::GradScaler scaler({.init_scale = 8.0, .growth = 2.0, .backoff = 0.5, .growth_interval = 3});
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (float bad : {inf, -inf, nan}) {
    Tensor p = param_with_grad({1.0f, bad});
    const bool finite = scaler.unscale({param_with_grad({1.0f}), p});
    CHECK(!finite);
    scaler.update(finite);
  }
  CHECK(scaler.scale_value() == 1.0);  // 8 · ½ · ½ · ½
  CHECK(scaler.skipped_steps() == 3);
  for (int i = 0; i < 2; ++i) scaler.update(true);
  CHECK(scaler.scale_value() == 1.0);  // two finite steps: not yet
  CHECK(scaler.good_steps() == 2);
  scaler.update(true);
  CHECK(scaler.scale_value() == 2.0);  // the third in a row doubles it
  CHECK(scaler.good_steps() == 0);
  scaler.update(true);
  scaler.update(false);  // an overflow resets the run of good steps
  CHECK(scaler.scale_value() == 1.0);
  CHECK(scaler.good_steps() == 0);
}

TEST_CASE("GradScaler: state round trip, disabled pass-through, bad options are errors") {
  nn::GradScaler a({.init_scale = 4.0, .growth_interval = 2});
  a.update(false);
  a.update(true);
  nn::GradScaler b({.init_scale = 4.0, .growth_interval = 2});
  b.load_state(a.state());
  CHECK(b.scale_value() == 2.0);
  CHECK(b.good_steps() == 1);
  CHECK(b.skipped_steps() == 1);
  b.update(true);
  a.update(true);
  CHECK(b.scale_value() == a.scale_value());

  nn::GradScaler off({.enabled = false});
  Tensor loss = from_vector<float>({3.0f}, {});
  CHECK(off.scale(loss).item() == 3.0);
  Tensor p = param_with_grad({5.0f});
  CHECK(off.unscale({p}));
  CHECK(p.grad().to_vector<double>() == std::vector<double>{5.0});  // untouched
  CHECK(!off.unscale({param_with_grad({std::numeric_limits<float>::infinity()})}));  // still checked
  off.update(false);
  CHECK(off.scale_value() == 1.0);

  CHECK_THROWS_WITH_AS(nn::GradScaler({.init_scale = 0.0}), doctest::Contains("init_scale must be finite and > 0"),
                       Error);
  CHECK_THROWS_WITH_AS(nn::GradScaler({.backoff = 1.5}), doctest::Contains("backoff must be in (0, 1)"), Error);
  CHECK_THROWS_WITH_AS(nn::GradScaler({.growth_interval = 0}), doctest::Contains("growth_interval must be >= 1"),
                       Error);
  CHECK_THROWS_WITH_AS(b.load_state({-1.0, 0, 0}), doctest::Contains("bad state"), Error);
}
