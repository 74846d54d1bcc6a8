// bf16 and f16: 16-bit floating-point storage types.
//
// Both are stored as uint16_t and converted through float. bf16 is the top half of an
// IEEE f32 (8 exponent bits, 7 mantissa bits); f16 is IEEE binary16 (5 exponent bits,
// 10 mantissa bits). Conversions from float round to nearest, ties to even, as the GPU
// hardware does, so CPU and CUDA agree bit for bit: the CUDA kernels use these same
// functions (MMG_HD marks them callable from device code when nvcc compiles them).
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define MMG_HD __host__ __device__
#else
#define MMG_HD
#endif

namespace mmg {

struct bf16 {
  uint16_t bits = 0;
  bf16() = default;
  MMG_HD bf16(float f) : bits(from_float(f)) {}
  MMG_HD operator float() const {
    uint32_t u = static_cast<uint32_t>(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  MMG_HD static uint16_t from_float(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN stays NaN
    uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);                                        // ties to even
    return static_cast<uint16_t>((u + rounding) >> 16);
  }
};

struct f16 {
  uint16_t bits = 0;
  f16() = default;
  MMG_HD f16(float f) : bits(from_float(f)) {}
  MMG_HD operator float() const { return to_float(bits); }

  MMG_HD static float to_float(uint16_t h) {
    uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0) {
      if (man == 0) {
        u = sign;
      } else {  // subnormal: normalise it
        int e = -1;
        do { ++e; man <<= 1; } while ((man & 0x400u) == 0);
        u = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
      }
    } else if (exp == 31) {
      u = sign | 0x7f800000u | (man << 13);  // inf / NaN
    } else {
      u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }

  MMG_HD static uint16_t from_float(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
    if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u); // rounds to inf
    if (abs < 0x38800000u) {  // result is subnormal (or zero) in f16
      if (abs < 0x33000000u) return static_cast<uint16_t>(sign);          // below half the smallest
      uint32_t exp = abs >> 23, man = (abs & 0x7fffffu) | 0x800000u;
      uint32_t shift = 126 - exp;  // 113 - exp + 13
      uint32_t half = 1u << (shift - 1);
      uint32_t rest = man & ((1u << shift) - 1);
      uint32_t r = man >> shift;
      if (rest > half || (rest == half && (r & 1u))) ++r;
      return static_cast<uint16_t>(sign | r);
    }
    uint32_t r = abs - 0x38000000u;             // re-bias exponent 127 -> 15
    r += 0xfffu + ((r >> 13) & 1u);             // round to nearest even on the 13 dropped bits
    return static_cast<uint16_t>(sign | (r >> 13));
  }
};

}  // namespace mmg
