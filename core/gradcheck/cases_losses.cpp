// Gradcheck cases for the losses: cross_entropy (ignore_index, label smoothing), clip_loss
// (logit scale 0-d and [1]) and hinge_ranking_loss.
#include "core/gradcheck/cases.h"

namespace mmg::gradcheck_cases {

void add_losses_cases(std::vector<GradcheckCase>& c) {
  add(c, "cross_entropy", "[5,7]", {f64({5, 7}), idx({5}, 7)},
      [](const Args& x) { return cross_entropy(x[0], x[1]); });
  // Targets are drawn from [0,7): ignore_index 3 drops the rows that drew class 3.
  add(c, "cross_entropy", "[9,7] ignore_index 3", {f64({9, 7}), idx({9}, 7)},
      [](const Args& x) { return cross_entropy(x[0], x[1], 3); });
  add(c, "cross_entropy", "[9,7] ignore_index 3, label_smoothing 0.1", {f64({9, 7}), idx({9}, 7)},
      [](const Args& x) { return cross_entropy(x[0], x[1], 3, 0.1); });
  add(c, "clip_loss", "[6,4], logit_scale 0-d", {f64({6, 4}), f64({6, 4}), f64({})},
      [](const Args& x) { return clip_loss(x[0], x[1], x[2]); });
  add(c, "clip_loss", "[3,5], logit_scale [1]", {f64({3, 5}), f64({3, 5}), f64({1})},
      [](const Args& x) { return clip_loss(x[0], x[1], x[2]); });
  add(c, "hinge_ranking_loss", "[5,3] margin 0.2", {f64({5, 3}), f64({5, 3})},
      [](const Args& x) { return hinge_ranking_loss(x[0], x[1], 0.2); });
}

}  // namespace mmg::gradcheck_cases
