// One warp's tensor-core instruction emulated on the host, shared by the host emulations of
// the mma kernels (tests/kernels/mma_attention_emulation.h for attention v3/v4,
// test_contrastive_mma_tiling.cpp for clip_loss v3): a warp's registers lane by lane, and
// mma.m16n8k16 rebuilt from the fragment maps of kernels/cuda/mma_fragment.h. Also the
// rounding modes the emulations run in and the log2 constants the kernels use.
#pragma once
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cuda/mma_fragment.h"
#include "kernels/half.h"

namespace mmg::testing::mma_emu {

using namespace mmg::cuda;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// How 16-bit operands are rounded: not at all (the tiling alone), or to bf16 / f16 as the GPU.
enum class Mode { exact, bf16, f16 };

inline float round_to(Mode mode, float x) {
  if (mode == Mode::bf16) return static_cast<float>(mmg::bf16(x));
  if (mode == Mode::f16) return static_cast<float>(mmg::f16(x));
  return x;
}

inline const char* mode_name(Mode m) { return m == Mode::exact ? "exact" : (m == Mode::bf16 ? "bf16" : "f16"); }

// ---- one warp's registers, and the instruction ----

struct WarpA {
  float v[32][4][2];  // lane, register, half
};
struct WarpB {
  float v[32][2][2];
};
struct WarpC {
  float v[32][4] = {};
};

// D += A·B on one m16n8k16 tile: the matrices rebuilt from the lanes' registers with the
// fragment maps (starting as NaN, so a map that misses an element poisons the result),
// multiplied in f32, and handed back to the lanes by the C map.
inline void mma_emulated(WarpC& d, const WarpA& a, const WarpB& b) {
  float A[16][16], B[16][8];
  std::fill(&A[0][0], &A[0][0] + 256, std::nanf(""));
  std::fill(&B[0][0], &B[0][0] + 128, std::nanf(""));
  for (int lane = 0; lane < 32; ++lane)
    for (int reg = 0; reg < 4; ++reg)
      for (int h = 0; h < 2; ++h) {
        const MmaIndex e = mma_a_element(lane, reg, h);
        A[e.row][e.col] = a.v[lane][reg][h];
      }
  for (int lane = 0; lane < 32; ++lane)
    for (int reg = 0; reg < 2; ++reg)
      for (int h = 0; h < 2; ++h) {
        const MmaIndex e = mma_b_element(lane, reg, h);
        B[e.row][e.col] = b.v[lane][reg][h];
      }
  for (int lane = 0; lane < 32; ++lane)
    for (int reg = 0; reg < 4; ++reg) {
      const MmaIndex e = mma_c_element(lane, reg);
      float acc = d.v[lane][reg];
      for (int k = 0; k < 16; ++k) acc += A[e.row][k] * B[k][e.col];
      d.v[lane][reg] = acc;
    }
}

}  // namespace mmg::testing::mma_emu
