// The demo job's pieces, so tests can run them with fewer steps.
#pragma once
#include "core/rng.h"
#include "core/tensor.h"
#include "train/commands.h"

namespace mmg {

struct SpiralData {
  Tensor x;  // [N,2] f32 points
  Tensor y;  // [N] i64 class of each point
};

// `classes` interleaved spiral arms of `per_class` points each, with angular noise.
SpiralData make_spirals(int64_t per_class, int64_t classes, double noise, Generator& gen);

struct DemoResult {
  double final_loss = 0, train_accuracy = 0, test_accuracy = 0, seconds = 0;
};

DemoResult train_spiral_mlp(const DemoOptions& options, bool verbose);

}  // namespace mmg
