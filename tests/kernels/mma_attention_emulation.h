// The host emulation of the tensor-core attention kernels (CUDA v3, kernels/cuda/attention_mma.cu,
// and v4, attention_short.cu), shared by tests/kernels/test_attention_mma_tiling.cpp (v3) and
// test_attention_short.cpp (v4). On the warp and instruction of tests/kernels/mma_emulation.h:
// emulated shared tiles with the kernels' padding (NaN in the padding columns, bounds-checked
// reads: a fragment that reads padding poisons the result, one that reads past a tile throws),
// the kernels' loaders, the forward's key-tile step and store of attention_mma.cuh, v3's forward
// and backward loops, and the CPU reference of a case. Everything here follows the device code
// statement by statement; a change there is a change here.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/mma_fragment.h"
#include "kernels/half.h"
#include "tests/kernels/mma_emulation.h"

namespace mmg::testing::mma_emu {

using namespace mmg::cuda;

// ---- shared memory and the kernels' loaders ----

// An emulated shared tile: R rows of mma_ld(Dp) elements; rows [r0, r0 + R) of the row-major
// [rows, D] matrix at m, zeros past its rows and columns, NaN in the padding columns.
struct Tile {
  int ld;
  std::vector<float> x;
};

inline Tile load_rows(const float* m, int64_t r0, int R, int64_t rows, int D, int Dp) {
  Tile t{mma_ld(Dp), std::vector<float>(static_cast<size_t>(R) * mma_ld(Dp), std::nanf(""))};
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < Dp; ++c) t.x[r * t.ld + c] = (r0 + r < rows && c < D) ? m[(r0 + r) * D + c] : 0.f;
  return t;
}

// As the kernel: one 32-bit word per register, half 1 next to half 0.
inline WarpA load_a(const Tile& t, int r0, int c0) {
  WarpA a;
  for (int lane = 0; lane < 32; ++lane)
    for (int reg = 0; reg < 4; ++reg) {
      const MmaIndex e = mma_a_element(lane, reg, 0);
      const size_t w = static_cast<size_t>((r0 + e.row) * t.ld + c0 + e.col);
      a.v[lane][reg][0] = t.x.at(w);
      a.v[lane][reg][1] = t.x.at(w + 1);
    }
  return a;
}

inline WarpB load_b_nk(const Tile& t, int n0, int k0) {
  WarpB b;
  for (int lane = 0; lane < 32; ++lane)
    for (int reg = 0; reg < 2; ++reg) {
      const MmaIndex e = mma_b_element(lane, reg, 0);
      const size_t w = static_cast<size_t>((n0 + e.col) * t.ld + k0 + e.row);
      b.v[lane][reg][0] = t.x.at(w);
      b.v[lane][reg][1] = t.x.at(w + 1);
    }
  return b;
}

inline WarpB load_b_kn(const Tile& t, int k0, int n0) {
  WarpB b;
  for (int lane = 0; lane < 32; ++lane)
    for (int reg = 0; reg < 2; ++reg)
      for (int h = 0; h < 2; ++h) {
        const MmaIndex e = mma_b_element(lane, reg, h);
        b.v[lane][reg][h] = t.x.at(static_cast<size_t>((k0 + e.row) * t.ld + n0 + e.col));
      }
  return b;
}

// The kernel's a_from_c: C tiles c0 (columns 0..7) and c1 (8..15) as an A fragment, rounded.
inline WarpA a_from_c(Mode mode, const WarpC& c0, const WarpC& c1) {
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
inline void quad_all(float (&x)[32], Op op) {
  for (int offset : {1, 2}) {
    float y[32];
    for (int lane = 0; lane < 32; ++lane) y[lane] = op(x[lane], x[lane ^ offset]);
    std::copy(y, y + 32, x);
  }
}

inline int padded_dim(int64_t D) { return D <= 32 ? 32 : (D <= 64 ? 64 : 128); }

struct Sizes {
  int64_t B, H, Sq, Sk, D;
};

// ---- inputs and comparisons ----

inline std::vector<float> random_values(int64_t n, std::mt19937& gen, Mode mode) {
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& e : x) e = round_to(mode, dist(gen));
  return x;
}

inline std::vector<double> widen(const std::vector<float>& x) { return std::vector<double>(x.begin(), x.end()); }

// |got − want| ≤ rtol·|want| + scaled·max(max|want|, floor) (+ 1e-6), and −∞ exactly where want
// is. The floor is for the 16-bit modes: their error is relative to the terms a gradient sums
// (inputs and dO are O(1) here, kept weights up to 1/(1−p)), which need not show in the result —
// with one key dQ and dK are 0 in exact arithmetic, dS = z·dP − Δ a difference of two rounded
// O(1) numbers, summed over every query.
inline void check_close(const std::vector<float>& got, const std::vector<double>& want, double rtol, double scaled,
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

// ---- the forward: one warp's key-tile step and its store (attention_mma.cuh), and v3's loops ----

// One warp's registers through the forward: Q's A fragments, the running max and row-sum share
// of rows group and group + 8 per lane, and O's C fragments.
struct WarpRows {
  std::vector<WarpA> qf;
  float m[32][2], l[32][2];
  std::vector<WarpC> o;
  explicit WarpRows(int Dp) : o(Dp / 8) {
    for (int lane = 0; lane < 32; ++lane)
      for (int h = 0; h < 2; ++h) m[lane][h] = kNegInf, l[lane][h] = 0.f;
  }
};

// What the dropout of one (b, h) needs (the kernels' bh, Sq, Sk, drop and kept).
struct DropAt {
  int64_t bh, Sq, Sk;
  const mmg::AttentionDropout& drop;
};

// forward_tile of attention_mma.cuh: keys [j0, j0 + keys) of a Bc-wide tile whose first row is
// row r0 of the emulated shared tiles Ks, Vs and whose first key is key_ok[r0]; the n8 tiles and
// k-steps at or past `keys` are skipped, as the kernel skips them.
inline void forward_tile_emulated(Mode mode, WarpRows& w, const Tile& Ks, const Tile& Vs,
                                  const std::vector<uint8_t>& key_ok, int r0, int64_t j0, int keys, int Bc,
                                  int64_t w0, bool causal, float scale2, const DropAt& da) {
  const int KD = static_cast<int>(w.qf.size()), NS = Bc / 8, KS = Bc / 16, NO = static_cast<int>(w.o.size());
  const float kept = static_cast<float>(da.drop.scale);
  std::vector<WarpC> s(NS);
  for (int kk = 0; kk < KD; ++kk)
    for (int n = 0; n < NS; ++n)
      if (n * 8 < keys) mma_emulated(s[n], w.qf[kk], load_b_nk(Ks, r0 + n * 8, kk * 16));
  float mx[2][32];
  for (int lane = 0; lane < 32; ++lane) {
    mx[0][lane] = mx[1][lane] = kNegInf;
    for (int n = 0; n < NS; ++n)
      for (int r = 0; r < 4; ++r) {
        const MmaIndex e = mma_c_element(lane, r);
        const int jl = n * 8 + e.col;
        const bool visible = n * 8 < keys && key_ok.at(r0 + jl) && (!causal || j0 + jl <= w0 + e.row);
        float& x = s[n].v[lane][r];
        x = visible ? x * scale2 : kNegInf;
        mx[r >> 1][lane] = std::max(mx[r >> 1][lane], x);
      }
  }
  for (int h = 0; h < 2; ++h) quad_all(mx[h], [](float a, float b) { return std::max(a, b); });
  for (int lane = 0; lane < 32; ++lane) {
    float alpha[2];
    for (int h = 0; h < 2; ++h) {
      const float m_new = std::max(w.m[lane][h], mx[h][lane]);
      alpha[h] = m_new == kNegInf ? 1.f : std::exp2(w.m[lane][h] - m_new);
      w.m[lane][h] = m_new;
      w.l[lane][h] *= alpha[h];
    }
    for (int n = 0; n < NO; ++n)
      for (int r = 0; r < 4; ++r) w.o[n].v[lane][r] *= alpha[r >> 1];
    for (int n = 0; n < NS; ++n)
      for (int r = 0; r < 4; ++r) {
        float& x = s[n].v[lane][r];
        const float p = x == kNegInf ? 0.f : std::exp2(x - w.m[lane][r >> 1]);
        w.l[lane][r >> 1] += p;
        float pv = p;
        if (da.drop.p > 0) {
          const MmaIndex e = mma_c_element(lane, r);
          const int64_t i = w0 + e.row, j = j0 + n * 8 + e.col;
          if (p != 0.f && i < da.Sq)
            pv = mmg::attention_dropout_keep(da.drop, (da.bh * da.Sq + i) * da.Sk + j) ? p * kept : 0.f;
        }
        x = pv;
      }
  }
  for (int kk = 0; kk < KS; ++kk) {
    if (kk * 16 >= keys) continue;
    const WarpA pa = a_from_c(mode, s[2 * kk], s[2 * kk + 1]);
    for (int n = 0; n < NO; ++n) mma_emulated(w.o[n], pa, load_b_kn(Vs, r0 + kk * 16, n * 8));
  }
}

// forward_store of attention_mma.cuh: rows [w0, w0 + 16) of one (b, h) into out_bh [Sq, D] and
// lse_bh [Sq]; rows ≥ Sq untouched.
inline void forward_store_emulated(Mode mode, const WarpRows& w, float* out_bh, float* lse_bh, int64_t w0, int64_t Sq,
                                   int D) {
  const int NO = static_cast<int>(w.o.size());
  for (int h = 0; h < 2; ++h) {
    float sum[32];
    for (int lane = 0; lane < 32; ++lane) sum[lane] = w.l[lane][h];
    quad_all(sum, [](float a, float b) { return a + b; });
    for (int lane = 0; lane < 32; ++lane) {
      const int64_t i = w0 + mma_group(lane) + 8 * h;
      if (i >= Sq) continue;
      const float inv = sum[lane] > 0.f ? 1.f / sum[lane] : 0.f;
      for (int n = 0; n < NO; ++n)
        for (int c = 0; c < 2; ++c) {
          const int col = n * 8 + 2 * mma_quad(lane) + c;
          if (col < D) out_bh[i * D + col] = round_to(mode, w.o[n].v[lane][2 * h + c] * inv);
        }
      if (mma_quad(lane) == 0) lse_bh[i] = sum[lane] > 0.f ? (w.m[lane][h] + std::log2(sum[lane])) * kLn2 : kNegInf;
    }
  }
}

// key_ok of keys [j0, j0 + n): the key exists and is not masked.
inline std::vector<uint8_t> key_ok_of(const uint8_t* mask, int64_t j0, int n, int64_t Sk) {
  std::vector<uint8_t> ok(static_cast<size_t>(n));
  for (int j = 0; j < n; ++j) ok[j] = j0 + j < Sk && (!mask || mask[j0 + j]);
  return ok;
}

// v3's forward kernel, block by block (64 queries), warp by warp, key tile by key tile.
inline void forward_emulated(Mode mode, const std::vector<float>& q, const std::vector<float>& k,
                             const std::vector<float>& v, const uint8_t* key_mask, std::vector<float>& out,
                             std::vector<float>& lse, const Sizes& z, bool causal, float scale,
                             const mmg::AttentionDropout& drop) {
  const int64_t Sq = z.Sq, Sk = z.Sk;
  const int D = static_cast<int>(z.D), Dp = padded_dim(D), KD = Dp / 16, Bc = kMmaForwardKeys;
  const float scale2 = scale * kLog2e;
  for (int64_t bh = 0; bh < z.B * z.H; ++bh) {
    const uint8_t* mask = key_mask ? key_mask + (bh / z.H) * Sk : nullptr;
    const DropAt da{bh, Sq, Sk, drop};
    for (int64_t i0 = 0; i0 < Sq; i0 += kMmaBlockRows) {
      const Tile Qs = load_rows(q.data() + bh * Sq * D, i0, kMmaBlockRows, Sq, D, Dp);
      std::vector<WarpRows> warps(kMmaWarps, WarpRows(Dp));
      for (int w = 0; w < kMmaWarps; ++w)
        for (int kk = 0; kk < KD; ++kk) warps[w].qf.push_back(load_a(Qs, w * kMmaWarpRows, kk * 16));
      const int64_t kend = mma_key_end(causal, i0, kMmaBlockRows, Sk);
      for (int64_t j0 = 0; j0 < kend; j0 += Bc) {
        const Tile Ks = load_rows(k.data() + bh * Sk * D, j0, Bc, Sk, D, Dp);
        const Tile Vs = load_rows(v.data() + bh * Sk * D, j0, Bc, Sk, D, Dp);
        const std::vector<uint8_t> key_ok = key_ok_of(mask, j0, Bc, Sk);
        for (int w = 0; w < kMmaWarps; ++w) {
          const int64_t w0 = i0 + w * kMmaWarpRows;
          if (w0 >= Sq || !mma_tiles_meet(causal, w0 + kMmaWarpRows - 1, j0)) continue;
          forward_tile_emulated(mode, warps[w], Ks, Vs, key_ok, 0, j0, Bc, Bc, w0, causal, scale2, da);
        }
      }
      for (int w = 0; w < kMmaWarps; ++w)
        forward_store_emulated(mode, warps[w], out.data() + bh * Sq * D, lse.data() + bh * Sq, i0 + w * kMmaWarpRows,
                               Sq, D);
    }
  }
}

// ---- the backward: Δ, then the dK/dV kernel, then the dQ kernel ----
// Returns the (block tile, streamed tile) pairs each warp computed, to check the causal skips.

inline int64_t backward_emulated(Mode mode, const std::vector<float>& q, const std::vector<float>& k,
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

// ---- one case: inputs, the CPU reference, tolerances ----

struct Case {
  int64_t B, H, Sq, Sk, D;
  bool causal, mask;
  double p;  // dropout
};

inline std::string case_name(const Case& c, Mode mode) {
  return std::string(mode_name(mode)) + " B " + std::to_string(c.B) + " H " + std::to_string(c.H) + " Sq " +
         std::to_string(c.Sq) + " Sk " + std::to_string(c.Sk) + " D " + std::to_string(c.D) +
         (c.causal ? " causal" : "") + (c.mask ? " masked" : "") + (c.p > 0 ? " dropout" : "");
}

// Random inputs rounded as `mode` rounds, a key mask (batch 0 fully masked when B > 1), the
// dropout of the case, and the CPU kernel's results in f64 on the same inputs.
struct CaseData {
  Sizes z;
  std::vector<float> q, k, v, dout;
  std::vector<uint8_t> mask;
  mmg::AttentionDropout drop;
  float scale;
  std::vector<double> out_ref, lse_ref, dq_ref, dk_ref, dv_ref;
  const uint8_t* mask_ptr() const { return mask.empty() ? nullptr : mask.data(); }
};

inline CaseData make_case(const Case& c, Mode mode, std::mt19937& gen) {
  CaseData d;
  d.z = {c.B, c.H, c.Sq, c.Sk, c.D};
  const int64_t BH = c.B * c.H;
  d.q = random_values(BH * c.Sq * c.D, gen, mode);
  d.k = random_values(BH * c.Sk * c.D, gen, mode);
  d.v = random_values(BH * c.Sk * c.D, gen, mode);
  d.dout = random_values(BH * c.Sq * c.D, gen, mode);
  if (c.mask) {
    std::bernoulli_distribution keep(0.7);
    for (int64_t n = 0; n < c.B * c.Sk; ++n) d.mask.push_back(keep(gen) ? 1 : 0);
    if (c.B > 1) std::fill(d.mask.begin(), d.mask.begin() + c.Sk, 0);  // batch 0 sees nothing
  }
  if (c.p > 0) d.drop = {static_cast<float>(c.p), 1.0 / (1.0 - c.p), 1234 + static_cast<uint64_t>(c.Sq), 77};
  d.scale = 1.f / std::sqrt(static_cast<float>(c.D));
  d.out_ref.resize(d.q.size());
  d.lse_ref.resize(BH * c.Sq);
  d.dq_ref.resize(d.q.size());
  d.dk_ref.resize(d.k.size());
  d.dv_ref.resize(d.v.size());
  const std::vector<double> qd = widen(d.q), kd = widen(d.k), vd = widen(d.v), dod = widen(d.dout);
  mmg::cpu::attention_forward<double>(qd.data(), kd.data(), vd.data(), d.mask_ptr(), nullptr, d.out_ref.data(),
                                      d.lse_ref.data(), c.B, c.H, c.Sq, c.Sk, c.D, c.causal, d.scale, d.drop);
  mmg::cpu::attention_backward<double>(qd.data(), kd.data(), vd.data(), d.mask_ptr(), nullptr, d.out_ref.data(),
                                       dod.data(), d.lse_ref.data(), d.dq_ref.data(), d.dk_ref.data(), d.dv_ref.data(), c.B, c.H,
                                       c.Sq, c.Sk, c.D, c.causal, d.scale, d.drop);
  return d;
}

// The tolerances of the 16-bit kernels against the f32/f64 op on the same rounded inputs (the
// CUDA tests use the same numbers, tests/cuda/attention_test_util.h): P and dS are rounded once
// to 8 (bf16) or 11 (f16) bits, and the emulation's worst errors are about half of these.
struct Tol {
  double rtol, scaled, floor;
};
inline Tol tolerance(Mode mode) {
  if (mode == Mode::bf16) return {2e-2, 1e-2, 2.0};
  if (mode == Mode::f16) return {4e-3, 2e-3, 2.0};
  return {1e-4, 2e-6, 0.0};  // exact: f32 sums in another order
}

}  // namespace mmg::testing::mma_emu
