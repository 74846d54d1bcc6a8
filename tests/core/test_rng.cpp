// Philox4x32-10 and the random factories.
#include <doctest/doctest.h>

#include <cmath>

#include "core/ops.h"
#include "core/rng.h"
#include "kernels/philox.h"

using namespace mmg;

TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors") {
  PhiloxOut a = philox4x32_10(0u, 0u, 0u, 0u, 0u, 0u);
  CHECK(a.w[0] == 0x6627e8d5u);
  CHECK(a.w[1] == 0xe169c58du);
  CHECK(a.w[2] == 0xbc57ac4cu);
  CHECK(a.w[3] == 0x9b00dbd8u);
  PhiloxOut b = philox4x32_10(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu);
  CHECK(b.w[0] == 0x408f276du);
  CHECK(b.w[1] == 0x41c83b0eu);
  CHECK(b.w[2] == 0xa20bc7c6u);
  CHECK(b.w[3] == 0x6d5451fdu);
  PhiloxOut c = philox4x32_10(0xa4093822u, 0x299f31d0u, 0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u);
  CHECK(c.w[0] == 0xd16cfe09u);
  CHECK(c.w[1] == 0x94fdccebu);
  CHECK(c.w[2] == 0x5001e420u);
  CHECK(c.w[3] == 0x24126ea1u);
}

TEST_CASE("manual_seed makes random tensors reproducible, draws advance the stream") {
  manual_seed(42);
  Tensor a = randn({1000});
  Tensor b = rand({10});
  manual_seed(42);
  CHECK(allclose(randn({1000}), a, 0, 0));
  CHECK(allclose(rand({10}), b, 0, 0));
  CHECK(!allclose(randn({1000}), a));  // the next draw differs
  Generator g(7);
  Tensor x = randn({5}, {}, &g);
  g.manual_seed(7);
  CHECK(allclose(randn({5}, {}, &g), x, 0, 0));
  // Element i depends only on (seed, offset + i): a larger draw starts with the smaller one.
  Generator g1(3), g2(3);
  auto small = rand({7}, {.dtype = DType::f64}, &g1).to_vector<double>();
  auto large = rand({100}, {.dtype = DType::f64}, &g2).to_vector<double>();
  for (int i = 0; i < 7; ++i) CHECK(small[i] == large[i]);
}

TEST_CASE("random tensors have the right moments and ranges") {
  Generator g(123);
  auto n = randn({200000}, {.dtype = DType::f64}, &g).to_vector<double>();
  double m = 0, v = 0;
  for (double x : n) m += x;
  m /= n.size();
  for (double x : n) v += (x - m) * (x - m);
  v /= n.size();
  CHECK(std::abs(m) < 0.01);
  CHECK(std::abs(v - 1) < 0.02);
  auto u = rand({100000}, {}, &g).to_vector<float>();
  double um = 0;
  for (float x : u) {
    CHECK_FALSE((x < 0.0f || x >= 1.0f));
    um += x;
  }
  CHECK(std::abs(um / u.size() - 0.5) < 0.01);
  auto r = randint(-3, 4, {10000}, {.dtype = DType::i64}, &g).to_vector<int64_t>();
  std::vector<int> counts(7, 0);
  for (int64_t x : r) {
    REQUIRE((x >= -3 && x < 4));
    counts[x + 3]++;
  }
  for (int c : counts) CHECK(std::abs(c - 10000 / 7) < 200);
}
