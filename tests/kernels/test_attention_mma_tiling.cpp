// The tensor-core attention kernels (CUDA v3, kernels/cuda/attention_mma.cu) emulated on the
// host, lane by lane, with the same fragment index functions and tile geometry
// (kernels/cuda/mma_fragment.h), so that every build checks their index arithmetic, GPU or not:
//   1. the fragment maps of mma.m16n8k16 (A, B, C/D) are bijections onto their tiles; the pairs a
//      kernel loads as one 32-bit word are neighbours; the C → A hand-over of P is exact;
//   2. mma.m16n8k16 emulated from those maps (D = A·B + C over a warp's registers): tiled Q·Kᵀ
//      and P·V assembled from fragments loaded as the kernels load them (padded shared rows,
//      zero-filled ragged tiles, the two-16-bit-load B of a row-major V) equal plain matmuls;
//   3. the three tile kernels (forward; dK/dV; dQ) written once more on the host with the
//      kernels' loops — block tiles, key/query tile bounds, causal skips per block and per
//      warp, warps past the end, quad shuffles, the online softmax in exp2 units, dropout from
//      the flat index — equal the CPU kernel (kernels/attention.h) on odd sizes: exactly (f32
//      round-off) when P and dS are not rounded, and within the CUDA tests' tolerances when P,
//      dS and the outputs are rounded to bf16 or f16 as on the GPU.
// The padding columns of every emulated shared tile hold NaN: a fragment that read one would
// poison the result.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/mma_fragment.h"
#include "kernels/half.h"

using namespace mmg::cuda;

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// How 16-bit operands are rounded: not at all (the tiling alone), or to bf16 / f16 as the GPU.
enum class Mode { exact, bf16, f16 };

float round_to(Mode mode, float x) {
  if (mode == Mode::bf16) return static_cast<float>(mmg::bf16(x));
  if (mode == Mode::f16) return static_cast<float>(mmg::f16(x));
  return x;
}

const char* mode_name(Mode m) { return m == Mode::exact ? "exact" : (m == Mode::bf16 ? "bf16" : "f16"); }

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
// fragment maps, multiplied, and handed back to the lanes by the C map.
void mma_emulated(WarpC& d, const WarpA& a, const WarpB& b) {
  float A[16][16], B[16][8];
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

// ---- shared memory and the kernels' loaders ----

// An emulated shared tile: R rows of mma_ld(Dp) elements; rows [r0, r0 + R) of the row-major
// [rows, D] matrix at m, zeros past its rows and columns, NaN in the padding columns.
struct Tile {
  int ld;
  std::vector<float> x;
};

Tile load_rows(const float* m, int64_t r0, int R, int64_t rows, int D, int Dp) {
  Tile t{mma_ld(Dp), std::vector<float>(static_cast<size_t>(R) * mma_ld(Dp), std::nanf(""))};
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < Dp; ++c) t.x[r * t.ld + c] = (r0 + r < rows && c < D) ? m[(r0 + r) * D + c] : 0.f;
  return t;
}

// As the kernel: one 32-bit word per register, half 1 next to half 0.
WarpA load_a(const Tile& t, int r0, int c0) {
  WarpA a;
  for (int lane = 0; lane < 32; ++lane)
    for (int reg = 0; reg < 4; ++reg) {
      const MmaIndex e = mma_a_element(lane, reg, 0);
      const float* w = &t.x[(r0 + e.row) * t.ld + c0 + e.col];
      a.v[lane][reg][0] = w[0];
      a.v[lane][reg][1] = w[1];
    }
  return a;
}

WarpB load_b_nk(const Tile& t, int n0, int k0) {
  WarpB b;
  for (int lane = 0; lane < 32; ++lane)
    for (int reg = 0; reg < 2; ++reg) {
      const MmaIndex e = mma_b_element(lane, reg, 0);
      const float* w = &t.x[(n0 + e.col) * t.ld + k0 + e.row];
      b.v[lane][reg][0] = w[0];
      b.v[lane][reg][1] = w[1];
    }
  return b;
}

WarpB load_b_kn(const Tile& t, int k0, int n0) {
  WarpB b;
  for (int lane = 0; lane < 32; ++lane)
    for (int reg = 0; reg < 2; ++reg)
      for (int h = 0; h < 2; ++h) {
        const MmaIndex e = mma_b_element(lane, reg, h);
        b.v[lane][reg][h] = t.x[(k0 + e.row) * t.ld + n0 + e.col];
      }
  return b;
}

// The kernel's a_from_c: C tiles c0 (columns 0..7) and c1 (8..15) as an A fragment, rounded.
WarpA a_from_c(Mode mode, const WarpC& c0, const WarpC& c1) {
  WarpA a;
  for (int lane = 0; lane < 32; ++lane)
    for (int reg = 0; reg < 4; ++reg) {
      const MmaCSource s = mma_a_from_c(reg);
      const WarpC& c = s.tile == 0 ? c0 : c1;
      a.v[lane][reg][0] = round_to(mode, c.v[lane][s.reg]);
      a.v[lane][reg][1] = round_to(mode, c.v[lane][s.reg + 1]);
    }
  return a;
}

// The butterfly over the 4 lanes of each quad (__shfl_xor_sync with 1, then 2).
template <class Op>
void quad_all(float (&x)[32], Op op) {
  for (int offset : {1, 2}) {
    float y[32];
    for (int lane = 0; lane < 32; ++lane) y[lane] = op(x[lane], x[lane ^ offset]);
    std::copy(y, y + 32, x);
  }
}

int padded_dim(int64_t D) { return D <= 32 ? 32 : (D <= 64 ? 64 : 128); }

struct Sizes {
  int64_t B, H, Sq, Sk, D;
};

// ---- the forward kernel, block by block, warp by warp, lane by lane ----

void forward_emulated(Mode mode, const std::vector<float>& q, const std::vector<float>& k,
                      const std::vector<float>& v, const uint8_t* key_mask, std::vector<float>& out,
                      std::vector<float>& lse, const Sizes& z, bool causal, float scale,
                      const mmg::AttentionDropout& drop) {
  const int64_t Sq = z.Sq, Sk = z.Sk;
  const int D = static_cast<int>(z.D), Dp = padded_dim(D);
  const int KD = Dp / 16, NS = kMmaForwardKeys / 8, KS = kMmaForwardKeys / 16, NO = Dp / 8;
  const float scale2 = scale * kLog2e, kept = static_cast<float>(drop.scale);
  for (int64_t bh = 0; bh < z.B * z.H; ++bh) {
    const uint8_t* mask = key_mask ? key_mask + (bh / z.H) * Sk : nullptr;
    for (int64_t i0 = 0; i0 < Sq; i0 += kMmaBlockRows) {
      const Tile Qs = load_rows(q.data() + bh * Sq * D, i0, kMmaBlockRows, Sq, D, Dp);
      std::vector<std::vector<WarpA>> qf(kMmaWarps);
      std::vector<std::vector<WarpC>> o(kMmaWarps, std::vector<WarpC>(NO));
      float m[kMmaWarps][32][2], l[kMmaWarps][32][2];
      for (int w = 0; w < kMmaWarps; ++w) {
        for (int kk = 0; kk < KD; ++kk) qf[w].push_back(load_a(Qs, w * kMmaWarpRows, kk * 16));
        for (int lane = 0; lane < 32; ++lane)
          for (int h = 0; h < 2; ++h) m[w][lane][h] = kNegInf, l[w][lane][h] = 0.f;
      }
      const int64_t kend = mma_key_end(causal, i0, kMmaBlockRows, Sk);
      for (int64_t j0 = 0; j0 < kend; j0 += kMmaForwardKeys) {
        const Tile Ks = load_rows(k.data() + bh * Sk * D, j0, kMmaForwardKeys, Sk, D, Dp);
        const Tile Vs = load_rows(v.data() + bh * Sk * D, j0, kMmaForwardKeys, Sk, D, Dp);
        std::vector<uint8_t> key_ok(kMmaForwardKeys);
        for (int j = 0; j < kMmaForwardKeys; ++j) key_ok[j] = j0 + j < Sk && (!mask || mask[j0 + j]);
        for (int w = 0; w < kMmaWarps; ++w) {
          const int64_t w0 = i0 + w * kMmaWarpRows;
          if (w0 >= Sq || !mma_tiles_meet(causal, w0 + kMmaWarpRows - 1, j0)) continue;
          std::vector<WarpC> s(NS);
          for (int kk = 0; kk < KD; ++kk)
            for (int n = 0; n < NS; ++n) mma_emulated(s[n], qf[w][kk], load_b_nk(Ks, n * 8, kk * 16));
          float mx[2][32];
          for (int lane = 0; lane < 32; ++lane) {
            mx[0][lane] = mx[1][lane] = kNegInf;
            for (int n = 0; n < NS; ++n)
              for (int r = 0; r < 4; ++r) {
                const MmaIndex e = mma_c_element(lane, r);
                const int jl = n * 8 + e.col;
                const bool visible = key_ok[jl] && (!causal || j0 + jl <= w0 + e.row);
                float& x = s[n].v[lane][r];
                x = visible ? x * scale2 : kNegInf;
                mx[r >> 1][lane] = std::max(mx[r >> 1][lane], x);
              }
          }
          for (int h = 0; h < 2; ++h) quad_all(mx[h], [](float a, float b) { return std::max(a, b); });
          for (int lane = 0; lane < 32; ++lane) {
            float alpha[2];
            for (int h = 0; h < 2; ++h) {
              const float m_new = std::max(m[w][lane][h], mx[h][lane]);
              alpha[h] = m_new == kNegInf ? 1.f : std::exp2(m[w][lane][h] - m_new);
              m[w][lane][h] = m_new;
              l[w][lane][h] *= alpha[h];
            }
            for (int n = 0; n < NO; ++n)
              for (int r = 0; r < 4; ++r) o[w][n].v[lane][r] *= alpha[r >> 1];
            for (int n = 0; n < NS; ++n)
              for (int r = 0; r < 4; ++r) {
                float& x = s[n].v[lane][r];
                const float p = x == kNegInf ? 0.f : std::exp2(x - m[w][lane][r >> 1]);
                l[w][lane][r >> 1] += p;
                float pv = p;
                if (drop.p > 0) {
                  const MmaIndex e = mma_c_element(lane, r);
                  const int64_t i = w0 + e.row, j = j0 + n * 8 + e.col;
                  if (p != 0.f && i < Sq)
                    pv = mmg::attention_dropout_keep(drop, (bh * Sq + i) * Sk + j) ? p * kept : 0.f;
                }
                x = pv;
              }
          }
          for (int kk = 0; kk < KS; ++kk) {
            const WarpA pa = a_from_c(mode, s[2 * kk], s[2 * kk + 1]);
            for (int n = 0; n < NO; ++n) mma_emulated(o[w][n], pa, load_b_kn(Vs, kk * 16, n * 8));
          }
        }
      }
      for (int w = 0; w < kMmaWarps; ++w) {
        const int64_t w0 = i0 + w * kMmaWarpRows;
        for (int h = 0; h < 2; ++h) {
          float sum[32];
          for (int lane = 0; lane < 32; ++lane) sum[lane] = l[w][lane][h];
          quad_all(sum, [](float a, float b) { return a + b; });
          for (int lane = 0; lane < 32; ++lane) {
            const int64_t i = w0 + mma_group(lane) + 8 * h;
            if (i >= Sq) continue;
            const float inv = sum[lane] > 0.f ? 1.f / sum[lane] : 0.f;
            for (int n = 0; n < NO; ++n)
              for (int c = 0; c < 2; ++c) {
                const int col = n * 8 + 2 * mma_quad(lane) + c;
                if (col < D) out[(bh * Sq + i) * D + col] = round_to(mode, o[w][n].v[lane][2 * h + c] * inv);
              }
            if (mma_quad(lane) == 0)
              lse[bh * Sq + i] = sum[lane] > 0.f ? (m[w][lane][h] + std::log2(sum[lane])) * kLn2 : kNegInf;
          }
        }
      }
    }
  }
}

// ---- the backward: Δ, then the dK/dV kernel, then the dQ kernel ----
// Returns the (block tile, streamed tile) pairs each warp computed, to check the causal skips.

int64_t backward_emulated(Mode mode, const std::vector<float>& q, const std::vector<float>& k,
                          const std::vector<float>& v, const uint8_t* key_mask, const std::vector<float>& out,
                          const std::vector<float>& dout, const std::vector<float>& lse, std::vector<float>& dq,
                          std::vector<float>& dk, std::vector<float>& dv, const Sizes& z, bool causal, float scale,
                          const mmg::AttentionDropout& drop) {
  const int64_t Sq = z.Sq, Sk = z.Sk;
  const int D = static_cast<int>(z.D), Dp = padded_dim(D);
  const int KD = Dp / 16, NO = Dp / 8, Bs = kMmaBackwardStream, NT = Bs / 8, KT = Bs / 16;
  const float scale2 = scale * kLog2e, kept = static_cast<float>(drop.scale);
  int64_t warp_tiles = 0;
  std::vector<float> delta(static_cast<size_t>(z.B * z.H * Sq));
  for (size_t r = 0; r < delta.size(); ++r) {
    float s = 0.f;
    for (int d = 0; d < D; ++d) s += dout[r * D + d] * out[r * D + d];
    delta[r] = s;
  }
  auto zf = [&](bool visible, int64_t bh, int64_t i, int64_t j) {
    if (drop.p <= 0) return 1.f;
    return visible && mmg::attention_dropout_keep(drop, (bh * Sq + i) * Sk + j) ? kept : 0.f;
  };
  // Writes the pair of C registers (2h, 2h + 1) of `lane` into row `row` of an [rows, D] matrix.
  auto store = [&](std::vector<float>& m, int64_t base, int64_t row, int lane, const WarpC& c, int n, int h,
                   float f) {
    for (int e = 0; e < 2; ++e) {
      const int col = n * 8 + 2 * mma_quad(lane) + e;
      if (col < D) m[base + row * D + col] = round_to(mode, f * c.v[lane][2 * h + e]);
    }
  };

  for (int64_t bh = 0; bh < z.B * z.H; ++bh) {
    const uint8_t* mask = key_mask ? key_mask + (bh / z.H) * Sk : nullptr;
    // dK/dV: a block per 64 keys, the query tiles streaming past.
    for (int64_t j0 = 0; j0 < Sk; j0 += kMmaBlockRows) {
      const Tile Ks = load_rows(k.data() + bh * Sk * D, j0, kMmaBlockRows, Sk, D, Dp);
      const Tile Vs = load_rows(v.data() + bh * Sk * D, j0, kMmaBlockRows, Sk, D, Dp);
      std::vector<uint8_t> key_ok(kMmaBlockRows);
      for (int j = 0; j < kMmaBlockRows; ++j) key_ok[j] = j0 + j < Sk && (!mask || mask[j0 + j]);
      std::vector<std::vector<WarpC>> dka(kMmaWarps, std::vector<WarpC>(NO)), dva = dka;
      for (int64_t i0 = mma_query_begin(causal, j0, Bs); i0 < Sq; i0 += Bs) {
        const Tile Qs = load_rows(q.data() + bh * Sq * D, i0, Bs, Sq, D, Dp);
        const Tile dOs = load_rows(dout.data() + bh * Sq * D, i0, Bs, Sq, D, Dp);
        std::vector<float> lse_s(Bs), delta_s(Bs);
        for (int i = 0; i < Bs; ++i) {
          lse_s[i] = i0 + i < Sq ? lse[bh * Sq + i0 + i] * kLog2e : kNegInf;
          delta_s[i] = i0 + i < Sq ? delta[bh * Sq + i0 + i] : 0.f;
        }
        for (int w = 0; w < kMmaWarps; ++w) {
          const int64_t wk0 = j0 + w * kMmaWarpRows;
          if (wk0 >= Sk || !mma_tiles_meet(causal, i0 + Bs - 1, wk0)) continue;
          ++warp_tiles;
          std::vector<WarpC> st(NT), dpt(NT);
          for (int kk = 0; kk < KD; ++kk) {
            const WarpA ka = load_a(Ks, w * kMmaWarpRows, kk * 16), va = load_a(Vs, w * kMmaWarpRows, kk * 16);
            for (int n = 0; n < NT; ++n) {
              mma_emulated(st[n], ka, load_b_nk(Qs, n * 8, kk * 16));
              mma_emulated(dpt[n], va, load_b_nk(dOs, n * 8, kk * 16));
            }
          }
          for (int lane = 0; lane < 32; ++lane)
            for (int n = 0; n < NT; ++n)
              for (int r = 0; r < 4; ++r) {
                const MmaIndex e = mma_c_element(lane, r);
                const int jl = w * kMmaWarpRows + e.row, il = n * 8 + e.col;
                const int64_t j = j0 + jl, i = i0 + il;
                const bool visible = key_ok[jl] && lse_s[il] != kNegInf && (!causal || j <= i);
                const float p = visible ? std::exp2(st[n].v[lane][r] * scale2 - lse_s[il]) : 0.f;
                const float f = zf(visible, bh, i, j);
                st[n].v[lane][r] = f * p;
                dpt[n].v[lane][r] = p * (f * dpt[n].v[lane][r] - delta_s[il]);
              }
          for (int kk = 0; kk < KT; ++kk) {
            const WarpA pa = a_from_c(mode, st[2 * kk], st[2 * kk + 1]);
            const WarpA da = a_from_c(mode, dpt[2 * kk], dpt[2 * kk + 1]);
            for (int n = 0; n < NO; ++n) {
              mma_emulated(dva[w][n], pa, load_b_kn(dOs, kk * 16, n * 8));
              mma_emulated(dka[w][n], da, load_b_kn(Qs, kk * 16, n * 8));
            }
          }
        }
      }
      for (int w = 0; w < kMmaWarps; ++w)
        for (int lane = 0; lane < 32; ++lane)
          for (int h = 0; h < 2; ++h) {
            const int64_t j = j0 + w * kMmaWarpRows + mma_group(lane) + 8 * h;
            if (j >= Sk) continue;
            for (int n = 0; n < NO; ++n) {
              store(dk, bh * Sk * D, j, lane, dka[w][n], n, h, scale);
              store(dv, bh * Sk * D, j, lane, dva[w][n], n, h, 1.f);
            }
          }
    }
    // dQ: a block per 64 queries, the key tiles streaming past.
    for (int64_t i0 = 0; i0 < Sq; i0 += kMmaBlockRows) {
      const Tile Qs = load_rows(q.data() + bh * Sq * D, i0, kMmaBlockRows, Sq, D, Dp);
      const Tile dOs = load_rows(dout.data() + bh * Sq * D, i0, kMmaBlockRows, Sq, D, Dp);
      std::vector<std::vector<WarpC>> dqa(kMmaWarps, std::vector<WarpC>(NO));
      const int64_t kend = mma_key_end(causal, i0, kMmaBlockRows, Sk);
      for (int64_t j0 = 0; j0 < kend; j0 += Bs) {
        const Tile Ks = load_rows(k.data() + bh * Sk * D, j0, Bs, Sk, D, Dp);
        const Tile Vs = load_rows(v.data() + bh * Sk * D, j0, Bs, Sk, D, Dp);
        std::vector<uint8_t> key_ok(Bs);
        for (int j = 0; j < Bs; ++j) key_ok[j] = j0 + j < Sk && (!mask || mask[j0 + j]);
        for (int w = 0; w < kMmaWarps; ++w) {
          const int64_t w0 = i0 + w * kMmaWarpRows;
          if (w0 >= Sq || !mma_tiles_meet(causal, w0 + kMmaWarpRows - 1, j0)) continue;
          ++warp_tiles;
          std::vector<WarpC> s(NT), dp(NT);
          for (int kk = 0; kk < KD; ++kk) {
            const WarpA qa = load_a(Qs, w * kMmaWarpRows, kk * 16), oa = load_a(dOs, w * kMmaWarpRows, kk * 16);
            for (int n = 0; n < NT; ++n) {
              mma_emulated(s[n], qa, load_b_nk(Ks, n * 8, kk * 16));
              mma_emulated(dp[n], oa, load_b_nk(Vs, n * 8, kk * 16));
            }
          }
          for (int lane = 0; lane < 32; ++lane)
            for (int n = 0; n < NT; ++n)
              for (int r = 0; r < 4; ++r) {
                const MmaIndex e = mma_c_element(lane, r);
                const int jl = n * 8 + e.col;
                const int64_t i = w0 + e.row, j = j0 + jl;
                const float lse2 = i < Sq ? lse[bh * Sq + i] * kLog2e : kNegInf;
                const float dl = i < Sq ? delta[bh * Sq + i] : 0.f;
                const bool visible = key_ok[jl] && lse2 != kNegInf && (!causal || j <= i);
                const float p = visible ? std::exp2(s[n].v[lane][r] * scale2 - lse2) : 0.f;
                s[n].v[lane][r] = p * (zf(visible, bh, i, j) * dp[n].v[lane][r] - dl);
              }
          for (int kk = 0; kk < KT; ++kk) {
            const WarpA da = a_from_c(mode, s[2 * kk], s[2 * kk + 1]);
            for (int n = 0; n < NO; ++n) mma_emulated(dqa[w][n], da, load_b_kn(Ks, kk * 16, n * 8));
          }
        }
      }
      for (int w = 0; w < kMmaWarps; ++w)
        for (int lane = 0; lane < 32; ++lane)
          for (int h = 0; h < 2; ++h) {
            const int64_t i = i0 + w * kMmaWarpRows + mma_group(lane) + 8 * h;
            if (i >= Sq) continue;
            for (int n = 0; n < NO; ++n) store(dq, bh * Sq * D, i, lane, dqa[w][n], n, h, scale);
          }
    }
  }
  return warp_tiles;
}

// ---- helpers of the tests ----

std::vector<float> random_values(int64_t n, std::mt19937& gen, Mode mode) {
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& e : x) e = round_to(mode, dist(gen));
  return x;
}

std::vector<double> widen(const std::vector<float>& x) { return std::vector<double>(x.begin(), x.end()); }

// |got − want| ≤ rtol·|want| + scaled·max(max|want|, floor) (+ 1e-6), and −∞ exactly where want
// is. The floor is for the 16-bit modes: their error is relative to the terms a gradient sums
// (inputs and dO are O(1) here, kept weights up to 1/(1−p)), which need not show in the result —
// with one key dQ and dK are 0 in exact arithmetic, dS = z·dP − Δ a difference of two rounded
// O(1) numbers, summed over every query.
void check_close(const std::vector<float>& got, const std::vector<double>& want, double rtol, double scaled,
                 const std::string& what, double floor = 0) {
  INFO(what);
  REQUIRE(got.size() == want.size());
  double peak = 0;
  for (double w : want)
    if (std::isfinite(w)) peak = std::max(peak, std::abs(w));
  const double atol = scaled * std::max(peak, floor) + 1e-6;
  int64_t bad = 0, first = -1;
  double worst = 0;
  for (size_t n = 0; n < got.size(); ++n) {
    if (std::isinf(want[n])) {
      if (got[n] != want[n]) ++bad, first = first < 0 ? static_cast<int64_t>(n) : first;
      continue;
    }
    const double err = std::abs(static_cast<double>(got[n]) - want[n]);
    worst = std::max(worst, err / (atol + rtol * std::abs(want[n])));
    if (!(err <= atol + rtol * std::abs(want[n]))) {  // NaN fails
      if (first < 0) first = static_cast<int64_t>(n);
      ++bad;
    }
  }
  if (bad)
    FAIL_CHECK(bad << " of " << got.size() << " differ; first at " << first << ": " << got[first] << " vs "
                   << want[first] << " (peak " << peak << "; worst error " << worst << " times the tolerance)");
}

}  // namespace

TEST_CASE("mma.m16n8k16 fragments: each map is a bijection onto its tile, paired loads are neighbours") {
  int a_hits[16][16] = {}, b_hits[16][8] = {}, c_hits[16][8] = {};
  for (int lane = 0; lane < 32; ++lane) {
    for (int reg = 0; reg < 4; ++reg)
      for (int h = 0; h < 2; ++h) {
        const MmaIndex e = mma_a_element(lane, reg, h);
        REQUIRE((e.row >= 0 && e.row < 16 && e.col >= 0 && e.col < 16));
        ++a_hits[e.row][e.col];
      }
    for (int reg = 0; reg < 2; ++reg)
      for (int h = 0; h < 2; ++h) {
        const MmaIndex e = mma_b_element(lane, reg, h);
        REQUIRE((e.row >= 0 && e.row < 16 && e.col >= 0 && e.col < 8));
        ++b_hits[e.row][e.col];
      }
    for (int reg = 0; reg < 4; ++reg) {
      const MmaIndex e = mma_c_element(lane, reg);
      REQUIRE((e.row >= 0 && e.row < 16 && e.col >= 0 && e.col < 8));
      ++c_hits[e.row][e.col];
    }
    // A and C: half 1 / odd register is the next column of the same row (a 32-bit load, and
    // the pair that a_from_c packs); B: half 1 is the next row (k) of the same column.
    for (int reg = 0; reg < 4; ++reg) {
      const MmaIndex e0 = mma_a_element(lane, reg, 0), e1 = mma_a_element(lane, reg, 1);
      CHECK((e1.row == e0.row && e1.col == e0.col + 1 && e0.col % 2 == 0));
    }
    for (int reg = 0; reg < 2; ++reg) {
      const MmaIndex e0 = mma_b_element(lane, reg, 0), e1 = mma_b_element(lane, reg, 1);
      CHECK((e1.col == e0.col && e1.row == e0.row + 1 && e0.row % 2 == 0));
    }
    for (int reg = 0; reg < 4; reg += 2) {
      const MmaIndex e0 = mma_c_element(lane, reg), e1 = mma_c_element(lane, reg + 1);
      CHECK((e1.row == e0.row && e1.col == e0.col + 1));
    }
  }
  for (int r = 0; r < 16; ++r) {
    for (int c = 0; c < 16; ++c) CHECK(a_hits[r][c] == 1);
    for (int c = 0; c < 8; ++c) {
      CHECK(b_hits[r][c] == 1);
      CHECK(c_hits[r][c] == 1);
    }
  }
  // The spot values of the PTX ISA's figures: lane 0 holds A[0][0..1], A[8][0..1], A[0][8..9],
  // A[8][8..9]; lane 5 (group 1, quad 1) holds B[2..3][1] and B[10..11][1]; lane 31 C[7][6..7], C[15][6..7].
  CHECK((mma_a_element(0, 1, 0).row == 8 && mma_a_element(0, 2, 1).col == 9));
  CHECK((mma_b_element(5, 0, 0).row == 2 && mma_b_element(5, 1, 1).row == 11 && mma_b_element(5, 1, 1).col == 1));
  CHECK((mma_c_element(31, 0).row == 7 && mma_c_element(31, 1).col == 7 && mma_c_element(31, 3).row == 15));
}

TEST_CASE("mma.m16n8k16 fragments: the C fragments of two n8 products are the A fragment of the next") {
  for (int lane = 0; lane < 32; ++lane)
    for (int reg = 0; reg < 4; ++reg)
      for (int h = 0; h < 2; ++h) {
        const MmaCSource s = mma_a_from_c(reg);
        const MmaIndex a = mma_a_element(lane, reg, h), c = mma_c_element(lane, s.reg + h);
        CHECK(a.row == c.row);
        CHECK(a.col == c.col + 8 * s.tile);
      }
}

TEST_CASE("mma tiles: shared memory fits a block on sm_80 and sm_90, rows 16-byte aligned") {
  for (int Dp : {32, 64, 128}) {
    CHECK(mma_ld(Dp) % 8 == 0);  // 16-byte rows for the 16-byte copies
    for (size_t bytes : {mma_forward_smem_bytes(Dp), mma_dkdv_smem_bytes(Dp), mma_dq_smem_bytes(Dp)}) {
      CHECK(bytes <= size_t(163) * 1024);  // sm_80's opt-in limit per block (sm_90: 227 KiB)
      if (Dp <= 64) CHECK(bytes <= size_t(48) * 1024);  // no opt-in needed
    }
  }
  CHECK(mma_forward_smem_bytes(128) == 52288);
  CHECK(mma_dkdv_smem_bytes(128) == 52544);
  CHECK(mma_dq_smem_bytes(128) == 52256);
  // Bank check of the two shared access patterns (4-byte banks, 32 of them): for each warp-wide
  // load, the distinct 4-byte words it touches fall in distinct banks.
  for (int Dp : {32, 64, 128}) {
    const int ld = mma_ld(Dp);
    for (int reg = 0; reg < 4; ++reg) {  // load_a / load_b_nk: row r = group, column 2·quad
      std::vector<int> word_of_bank(32, -1);
      for (int lane = 0; lane < 32; ++lane) {
        const MmaIndex e = mma_a_element(lane, reg, 0);
        const int word = (e.row * ld + e.col) / 2, bank = word % 32;
        CHECK((word_of_bank[bank] == -1 || word_of_bank[bank] == word));
        word_of_bank[bank] = word;
      }
    }
    for (int reg = 0; reg < 2; ++reg)  // load_b_kn: rows 2·quad (+1, +8), column group
      for (int h = 0; h < 2; ++h) {
        std::vector<int> word_of_bank(32, -1);
        for (int lane = 0; lane < 32; ++lane) {
          const MmaIndex e = mma_b_element(lane, reg, h);
          const int word = (e.row * ld + e.col) / 2, bank = word % 32;
          CHECK((word_of_bank[bank] == -1 || word_of_bank[bank] == word));
          word_of_bank[bank] = word;
        }
      }
  }
}

TEST_CASE("mma emulated: tiled Q·Kᵀ and P·V from fragments equal plain matmuls on odd sizes") {
  std::mt19937 gen(7);
  for (int64_t Sq : {1, 7, 197, 257})
    for (int64_t Sk : {1, 7, 197, 257})
      for (int D : {32, 64, 100, 128}) {
        if ((Sq + Sk + D) % 3 != 0 && !(Sq == 257 && Sk == 257)) continue;  // a third of the grid, and the largest
        const int Dp = padded_dim(D);
        const std::vector<float> q = random_values(Sq * D, gen, Mode::bf16), k = random_values(Sk * D, gen, Mode::bf16);
        const std::vector<float> p = random_values(Sq * Sk, gen, Mode::bf16), v = random_values(Sk * D, gen, Mode::bf16);
        std::vector<float> s(Sq * Sk, std::nanf("")), o(Sq * D, std::nanf(""));
        for (int64_t i0 = 0; i0 < Sq; i0 += kMmaWarpRows) {
          const Tile Qs = load_rows(q.data(), i0, kMmaWarpRows, Sq, D, Dp);
          const Tile Ps = load_rows(p.data(), i0, kMmaWarpRows, Sq, static_cast<int>(Sk),
                                    static_cast<int>((Sk + 15) / 16 * 16));
          // Q·Kᵀ over key tiles of 64: B from the rows of K (load_b_nk).
          for (int64_t j0 = 0; j0 < Sk; j0 += kMmaForwardKeys) {
            const Tile Ks = load_rows(k.data(), j0, kMmaForwardKeys, Sk, D, Dp);
            for (int n = 0; n < kMmaForwardKeys / 8; ++n) {
              WarpC c;
              for (int kk = 0; kk < Dp / 16; ++kk)
                mma_emulated(c, load_a(Qs, 0, kk * 16), load_b_nk(Ks, n * 8, kk * 16));
              for (int lane = 0; lane < 32; ++lane)
                for (int r = 0; r < 4; ++r) {
                  const MmaIndex e = mma_c_element(lane, r);
                  const int64_t i = i0 + e.row, j = j0 + n * 8 + e.col;
                  if (i < Sq && j < Sk) s[i * Sk + j] = c.v[lane][r];
                }
            }
          }
          // P·V over key steps of 16: A from P's rows, B from V's rows (load_b_kn).
          for (int n = 0; n < Dp / 8; ++n) {
            WarpC c;
            for (int64_t j0 = 0; j0 < Sk; j0 += 16) {
              const Tile Vs = load_rows(v.data(), j0, 16, Sk, D, Dp);
              mma_emulated(c, load_a(Ps, 0, static_cast<int>(j0)), load_b_kn(Vs, 0, n * 8));
            }
            for (int lane = 0; lane < 32; ++lane)
              for (int r = 0; r < 4; ++r) {
                const MmaIndex e = mma_c_element(lane, r);
                const int64_t i = i0 + e.row;
                const int d = n * 8 + e.col;
                if (i < Sq && d < D) o[i * D + d] = c.v[lane][r];
              }
          }
        }
        std::vector<double> s_ref(Sq * Sk, 0.0), o_ref(Sq * D, 0.0);
        for (int64_t i = 0; i < Sq; ++i) {
          for (int64_t j = 0; j < Sk; ++j)
            for (int d = 0; d < D; ++d) s_ref[i * Sk + j] += double(q[i * D + d]) * k[j * D + d];
          for (int d = 0; d < D; ++d)
            for (int64_t j = 0; j < Sk; ++j) o_ref[i * D + d] += double(p[i * Sk + j]) * v[j * D + d];
        }
        const std::string name = "Sq " + std::to_string(Sq) + " Sk " + std::to_string(Sk) + " D " + std::to_string(D);
        check_close(s, s_ref, 1e-5, 1e-6, name + " Q·Kᵀ");
        check_close(o, o_ref, 1e-5, 1e-6, name + " P·V");
      }
}

namespace {

struct Case {
  int64_t B, H, Sq, Sk, D;
  bool causal, mask;
  double p;  // dropout
};

// The tolerances of the 16-bit kernels against the f32/f64 op on the same rounded inputs (the
// CUDA tests use the same numbers): P and dS are rounded once to 8 (bf16) or 11 (f16) bits, and
// the emulation's worst errors are about half of these.
struct Tol {
  double rtol, scaled, floor;
};
Tol tolerance(Mode mode) {
  if (mode == Mode::bf16) return {2e-2, 1e-2, 2.0};
  if (mode == Mode::f16) return {4e-3, 2e-3, 2.0};
  return {1e-4, 2e-6, 0.0};  // exact: f32 sums in another order
}

void check_emulated_case(const Case& c, Mode mode, std::mt19937& gen) {
  const Sizes z{c.B, c.H, c.Sq, c.Sk, c.D};
  const int64_t BH = c.B * c.H;
  const std::string name = std::string(mode_name(mode)) + " B " + std::to_string(c.B) + " H " + std::to_string(c.H) +
                           " Sq " + std::to_string(c.Sq) + " Sk " + std::to_string(c.Sk) + " D " +
                           std::to_string(c.D) + (c.causal ? " causal" : "") + (c.mask ? " masked" : "") +
                           (c.p > 0 ? " dropout" : "");
  const std::vector<float> q = random_values(BH * c.Sq * c.D, gen, mode), k = random_values(BH * c.Sk * c.D, gen, mode),
                           v = random_values(BH * c.Sk * c.D, gen, mode),
                           dout = random_values(BH * c.Sq * c.D, gen, mode);
  std::vector<uint8_t> mask;
  if (c.mask) {
    std::bernoulli_distribution keep(0.7);
    for (int64_t n = 0; n < c.B * c.Sk; ++n) mask.push_back(keep(gen) ? 1 : 0);
    if (c.B > 1) std::fill(mask.begin(), mask.begin() + c.Sk, 0);  // batch 0 sees nothing
  }
  const uint8_t* m = c.mask ? mask.data() : nullptr;
  mmg::AttentionDropout drop;
  if (c.p > 0) drop = {static_cast<float>(c.p), 1.0 / (1.0 - c.p), 1234 + static_cast<uint64_t>(c.Sq), 77};
  const float scale = 1.f / std::sqrt(static_cast<float>(c.D));

  // The reference: the CPU kernel in f64 on the same (rounded) inputs.
  std::vector<double> out_ref(q.size()), lse_ref(BH * c.Sq), dq_ref(q.size()), dk_ref(k.size()), dv_ref(v.size());
  const std::vector<double> qd = widen(q), kd = widen(k), vd = widen(v), dod = widen(dout);
  mmg::cpu::attention_forward<double>(qd.data(), kd.data(), vd.data(), m, out_ref.data(), lse_ref.data(), c.B, c.H,
                                      c.Sq, c.Sk, c.D, c.causal, scale, drop);
  mmg::cpu::attention_backward<double>(qd.data(), kd.data(), vd.data(), m, out_ref.data(), dod.data(), lse_ref.data(),
                                       dq_ref.data(), dk_ref.data(), dv_ref.data(), c.B, c.H, c.Sq, c.Sk, c.D, c.causal,
                                       scale, drop);

  const float nan = std::nanf("");  // poisoned: an element the emulation forgets fails
  std::vector<float> out(q.size(), nan), lse(BH * c.Sq, nan), dq(q.size(), nan), dk(k.size(), nan), dv(v.size(), nan);
  forward_emulated(mode, q, k, v, m, out, lse, z, c.causal, scale, drop);
  const Tol tol = tolerance(mode);
  check_close(out, out_ref, tol.rtol, tol.scaled, name + " out", tol.floor);
  check_close(lse, lse_ref, 1e-4, 1e-6, name + " lse");  // f32 exp2/log2 of f32 scores
  const int64_t tiles = backward_emulated(mode, q, k, v, m, out, dout, lse, dq, dk, dv, z, c.causal, scale, drop);
  check_close(dq, dq_ref, tol.rtol, tol.scaled, name + " dq", tol.floor);
  check_close(dk, dk_ref, tol.rtol, tol.scaled, name + " dk", tol.floor);
  check_close(dv, dv_ref, tol.rtol, tol.scaled, name + " dv", tol.floor);

  // Causal skips work: the warps that ran (dK/dV and dQ) are fewer than without causal,
  // wherever a tile lies wholly above the diagonal.
  if (c.causal && c.Sq >= 64 && c.Sk >= 64) {
    std::vector<float> a(q.size()), b(k.size()), e(v.size());
    const int64_t all = backward_emulated(mode, q, k, v, m, out, dout, lse, a, b, e, z, false, scale, drop);
    CHECK(tiles < all);
  }
}

}  // namespace

TEST_CASE("mma emulated: the v3 kernels' tiling equals the CPU kernel, exactly without 16-bit rounding") {
  std::mt19937 gen(11);
  const std::vector<int64_t> lengths = {1, 7, 197, 257};
  const std::vector<int64_t> dims = {32, 64, 100, 128};
  int n = 0;
  for (int64_t Sq : lengths)
    for (int64_t Sk : lengths) {
      const int64_t D = dims[n % 4];
      const bool causal = n % 2 == 0, mask = n % 3 != 1;
      ++n;
      if (Sq * Sk * D > 257 * 257 * 64) continue;  // the largest products: the D sweep below covers them
      check_emulated_case({2, 1, Sq, Sk, D, causal, mask, 0.0}, Mode::exact, gen);
    }
  for (int64_t D : dims) check_emulated_case({1, 1, 197, 197, D, D != 64, true, 0.0}, Mode::exact, gen);
  check_emulated_case({1, 2, 257, 257, 128, true, false, 0.0}, Mode::exact, gen);
  check_emulated_case({2, 2, 70, 33, 24, true, true, 0.0}, Mode::exact, gen);  // D 24, Sq > Sk
}

TEST_CASE("mma emulated: the v3 kernels with dropout draw the CPU's mask") {
  std::mt19937 gen(12);
  check_emulated_case({2, 2, 77, 77, 32, false, true, 0.3}, Mode::exact, gen);
  check_emulated_case({1, 2, 7, 197, 64, true, false, 0.5}, Mode::exact, gen);
  check_emulated_case({2, 1, 197, 7, 100, true, true, 0.2}, Mode::exact, gen);
  check_emulated_case({1, 1, 257, 257, 128, false, false, 0.1}, Mode::exact, gen);
}

TEST_CASE("mma emulated: with bf16 and f16 rounding as on the GPU, within the CUDA tests' tolerances") {
  std::mt19937 gen(13);
  for (Mode mode : {Mode::bf16, Mode::f16}) {
    check_emulated_case({2, 3, 197, 197, 64, false, true, 0.0}, mode, gen);  // ViT, masked
    check_emulated_case({2, 2, 64, 197, 64, false, true, 0.0}, mode, gen);   // cross-attention
    check_emulated_case({1, 2, 257, 257, 128, true, false, 0.0}, mode, gen);
    check_emulated_case({2, 1, 7, 257, 32, true, true, 0.0}, mode, gen);
    check_emulated_case({2, 1, 257, 1, 100, false, true, 0.3}, mode, gen);
    check_emulated_case({2, 2, 77, 77, 32, false, true, 0.9}, mode, gen);
  }
}
