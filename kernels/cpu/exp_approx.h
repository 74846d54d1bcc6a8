// e^x in plain float arithmetic, so that a loop of them vectorises.
//
// std::exp is a call into libm per element, and a loop that calls it stays scalar. Softmax
// rows need e^(s − max) for every score; written as below, `#pragma omp simd` can turn a row
// of them into a few instructions per 8 or 16 values. GCC 12 does so only with
// -fno-trapping-math: by default it must assume the range checks' float compares may trap,
// cannot turn them into selects, and keeps the loop scalar ("control flow in loop" in
// -fopt-info-vec-missed; seen on an AVX2 machine for softmax, attention and the losses).
// The build sets the flag for one file only, kernels/cpu/attention_lanes.cpp, whose
// exponentials run over whole tiles of vectors; set for every CPU kernel, it vectorised those
// loops too but the demo's training step did not get faster (2026-12-07, 2 AVX2 cores: 274 ms
// without, 286 ms with, within run-to-run noise).
//
// Why not Eigen's array .exp() (gelu.cpp uses it): it is the same Cephes method, but for
// x = −∞ it returns a denormal (it clamps x to −88.7 and keeps max(result, x)), not 0, so a
// masked key would keep a weight; and an Eigen expression computes the tail of a row that
// does not fill a vector with std::exp, which rounds differently from the vector lanes. Here
// every element, lane or tail, takes the same arithmetic.
//
// The method (Cody and Waite's range reduction):
//   n = round(x / ln 2),   r = x − n·ln 2 ∈ [−ln2/2, ln2/2]   (ln 2 in two parts, so r is exact)
//   e^x = 2ⁿ · e^r,   e^r by a polynomial (below)
//   2ⁿ made directly as the float's exponent bits.
// The rounding uses the 1.5·2²³ trick (adding it leaves n in the low mantissa bits), so no
// float-to-int conversion is needed and NaN stays NaN. Accuracy: within 1 ulp of e^x for
// x ∈ [−87.3, 88.3] (0.97 at worst; tests/kernels/test_exp_approx.cpp measures it). Below −87.3 — where
// e^x is under the smallest normal float — the result is 0, also for x = −∞; softmax relies
// on exp(−∞) = 0 for masked scores. Above 88.3 the result is +∞ (a little early: e^x
// overflows a float at 88.72; softmax only ever asks for x ≤ 0).
#pragma once
#include <bit>
#include <cstdint>
#include <limits>

namespace mmg::cpu {

inline float exp_approx(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;  // ln 2 = kLn2Hi + kLn2Lo; kLn2Hi has 10 significant bits
  constexpr float kLn2Lo = -2.12194440e-4f;
  constexpr float kRound = 12582912.0f;  // 1.5 · 2²³
  const float xc = x > 88.3f ? 88.3f : x;  // keeps n ≤ 127 (NaN passes through)
  const float t = xc * kLog2e + kRound;    // n sits in t's low mantissa bits
  const float n = t - kRound;
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  // e^r = 1 + r + r²·P(r), P a degree-5 fit (Cephes' expf coefficients): 1 + r is exact
  // enough and the fitted tail carries the rest, which keeps the rounding error small.
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  // 2ⁿ as the bits (n + 127) << 23, n ∈ [−126, 127] here (unsigned: wraps, never overflows).
  const uint32_t n_bits = std::bit_cast<uint32_t>(t) - std::bit_cast<uint32_t>(kRound);
  const float y = p * std::bit_cast<float>((n_bits + 127u) << 23);
  if (x > 88.3f) return std::numeric_limits<float>::infinity();
  return x < -87.33f ? 0.0f : y;
}

}  // namespace mmg::cpu
