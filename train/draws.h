// Random choices for the data generators: one Philox stream per item (a scene, a batch slot).
//
// Draws(seed, stream) reads Philox with key = seed and counters stream·2^32, stream·2^32 + 1, ...
// (kernels/philox.h), so item i's choices depend only on (seed, i): any item can be made alone,
// on any thread, in any order, and comes out the same.
#pragma once
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "kernels/philox.h"

namespace mmg {

class Draws {
 public:
  Draws(uint64_t seed, uint64_t stream) : seed_(seed), counter_(stream << 32) {}
  double uniform() { return philox_uniform_f64(seed_, counter_++); }  // [0, 1)
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  int below(int n) { return std::min(n - 1, static_cast<int>(uniform() * n)); }  // 0..n−1
  bool coin() { return uniform() < 0.5; }
  template <class T>
  void shuffle(std::vector<T>& v) {  // Fisher–Yates
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(static_cast<int>(i))]);
  }

 private:
  uint64_t seed_, counter_;
};

}  // namespace mmg
