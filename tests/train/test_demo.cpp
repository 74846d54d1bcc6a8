// The demo job: a 2-layer MLP trained through the engine's ops and autograd.
#include <doctest/doctest.h>

#include "core/mmgrad.h"
#include "train/demo.h"

using namespace mmg;

TEST_CASE("the spiral data is balanced, bounded and reproducible") {
  Generator g1(3), g2(3);
  SpiralData a = make_spirals(50, 3, 0.2, g1), b = make_spirals(50, 3, 0.2, g2);
  CHECK(a.x.shape() == Shape{150, 2});
  CHECK(allclose(a.x, b.x, 0, 0));
  auto y = a.y.to_vector<int64_t>();
  for (int c = 0; c < 3; ++c) CHECK(std::count(y.begin(), y.end(), c) == 50);
  for (float v : a.x.to_vector<float>()) CHECK(std::abs(v) <= 1.0f);
}

TEST_CASE("a 2-layer MLP learns the spiral to more than 95% test accuracy") {
  DemoOptions opt;
  opt.seed = 1;
  DemoResult r = train_spiral_mlp(opt, /*verbose=*/false);
  CHECK(r.train_accuracy > 95.0);
  CHECK(r.test_accuracy > 95.0);
  CHECK(r.final_loss < 0.3);
}

TEST_CASE("the same seed gives the same training run") {
  DemoOptions opt;
  opt.steps = 20;
  opt.seed = 9;
  DemoResult a = train_spiral_mlp(opt, false), b = train_spiral_mlp(opt, false);
  CHECK(a.final_loss == b.final_loss);
  CHECK(a.test_accuracy == b.test_accuracy);
}
