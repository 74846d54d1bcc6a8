// Philox4x32-10: a counter-based random number generator (Salmon et al., SC'11).
//
// A pure function of (key, counter): philox(key, counter) -> four uint32 words. There is
// no sequential state, so element i of a random tensor can be computed on any thread, on
// any device, in any order — the CPU and CUDA kernels draw identical numbers.
//
// mmgrad's convention: a draw of n elements from a generator at (seed, offset) gives
// element i the block philox(key = seed, counter = (offset + i) as 64 bits, 0, 0), and the
// generator's offset then advances by n. Each element uses the words it needs:
//   uniform f32:  word 0                      -> (w0 >> 8) · 2^-24        in [0, 1)
//   uniform f64:  words 0,1                   -> (w1:w0 >> 11) · 2^-53    in [0, 1)
//   normal:       words 0,1 (Box-Muller)      -> sqrt(-2 ln u1) · cos(2π u2), u1 in (0, 1]
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define MMG_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MMG_HOST_DEVICE inline
#endif

namespace mmg {

struct PhiloxOut {
  uint32_t w[4];
};

MMG_HOST_DEVICE void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// Ten rounds of the Philox S-box with the constants of the paper; key (k0, k1), counter
// (c0, c1, c2, c3). Checked against the known-answer vectors of Random123.
MMG_HOST_DEVICE PhiloxOut philox4x32_10(uint32_t k0, uint32_t k1, uint32_t c0, uint32_t c1, uint32_t c2,
                                        uint32_t c3) {
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(0xD2511F53u, c0, hi0, lo0);
    philox_mulhilo(0xCD9E8D57u, c2, hi1, lo1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    k0 += 0x9E3779B9u;  // golden ratio
    k1 += 0xBB67AE85u;  // sqrt(3) - 1
  }
  return {{c0, c1, c2, c3}};
}

// mmgrad's use: key = 64-bit seed, counter = (64-bit element counter, 0, 0).
MMG_HOST_DEVICE PhiloxOut philox4x32_10(uint64_t seed, uint64_t counter) {
  return philox4x32_10(static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                       static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), 0u, 0u);
}

MMG_HOST_DEVICE float philox_uniform_f32(uint64_t seed, uint64_t counter) {
  return static_cast<float>(philox4x32_10(seed, counter).w[0] >> 8) * (1.0f / 16777216.0f);
}

MMG_HOST_DEVICE double philox_uniform_f64(uint64_t seed, uint64_t counter) {
  PhiloxOut r = philox4x32_10(seed, counter);
  uint64_t bits = ((static_cast<uint64_t>(r.w[1]) << 32) | r.w[0]) >> 11;
  return static_cast<double>(bits) * (1.0 / 9007199254740992.0);
}

// Standard normal by Box-Muller, in double so f32 and f64 tensors share the same values.
MMG_HOST_DEVICE double philox_normal(uint64_t seed, uint64_t counter) {
  PhiloxOut r = philox4x32_10(seed, counter);
  double u1 = (static_cast<double>(r.w[0]) + 1.0) * (1.0 / 4294967296.0);  // (0, 1]
  double u2 = static_cast<double>(r.w[1]) * (1.0 / 4294967296.0);          // [0, 1)
  return ::sqrt(-2.0 * ::log(u1)) * ::cos(6.283185307179586 * u2);
}

}  // namespace mmg
