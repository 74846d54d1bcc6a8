// Generator: a Philox4x32-10 stream identified by (seed, offset).
//
// Every random op reserves `n` counters from a generator (offset += n) and draws element i
// from counter offset + i (see kernels/philox.h), on whatever device it runs. So the same
// seed gives the same numbers on the CPU and on CUDA, and a generator's state is two
// integers that checkpoints can save and restore.
#pragma once
#include <cstdint>

namespace mmg {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  void manual_seed(uint64_t seed) { seed_ = seed; offset_ = 0; }
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed; offset_ = offset; }
  // Reserve n counters; returns the first.
  uint64_t reserve(uint64_t n) { uint64_t first = offset_; offset_ += n; return first; }

 private:
  uint64_t seed_ = 0;
  uint64_t offset_ = 0;
};

Generator& default_generator();
void manual_seed(uint64_t seed);  // reseeds the default generator

}  // namespace mmg
