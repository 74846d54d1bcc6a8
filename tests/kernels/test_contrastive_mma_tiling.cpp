// clip_loss version 3 (the tensor-core kernels of kernels/cuda/contrastive_mma.cu) emulated on
// the host, lane by lane, with the same fragment maps (kernels/cuda/mma_fragment.h) and tile
// functions (kernels/cuda/clip_mma_tiling.h), so that every build checks their index arithmetic,
// GPU or not:
//   - the shared chunk loads as the kernels loop them (128 threads, 16-byte or element copies)
//     write each element of a chunk exactly once, zeros past N and d, and never the padding;
//     16-byte stores and 32-bit fragment loads land on aligned shared addresses;
//   - mma.m16n8k16 emulated from the maps (D = A·B + C over a warp's registers), on fragments
//     loaded as the kernels load them from shared chunks whose padding columns hold NaN (and the
//     16×16 / 16×8 matrices rebuilt from the registers start as NaN, so a map that misses an
//     element poisons the result);
//   - the lse kernel and the grad kernel written once more with the kernels' loops — blocks,
//     warps past N, tiles of 64 columns, chunks of 64 of d, quad shuffles, the online lse in
//     log2 units, the diagonal caught in the row pass, Ĝ = σ·(P + Q − 2δ) rounded to 16 bits as
//     a_from_c rounds it, the f32 partial sums and the last tile's scaled, rounded write — give
//     the loss, row/column lse, d u, d v and d t of the CPU op (kernels/losses.h, in f64 on the
//     same rounded inputs) on N ∈ {1, 7, 65, 197}, d ∈ {8, 24, 64, 100}: within f32 round-off
//     when nothing is rounded, and within the CUDA test's tolerances (tests/cuda/
//     test_contrastive_mma.cpp) with bf16 / f16 inputs, G and outputs.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/clip_mma_tiling.h"
#include "kernels/cuda/mma_fragment.h"
#include "kernels/half.h"
#include "kernels/losses.h"
#include "tests/kernels/mma_emulation.h"

using namespace mmg::cuda;
using namespace mmg::testing::mma_emu;

namespace {

// The tolerance of tests/cuda/test_contrastive_mma.cpp for each dtype (normwise: relative to
// each element and to the tensor's largest element); exact: f32 round-off only.
double tolerance(Mode inputs) { return inputs == Mode::bf16 ? 1e-2 : (inputs == Mode::f16 ? 2e-3 : 2e-5); }

// ---- shared chunks and the kernels' loaders ----

// An emulated shared chunk of R rows × kClipMmaLd, NaN until written.
using Chunk = std::vector<float>;

// load_chunk as the kernel loops it: 128 threads, element e = threadIdx.x + 128·q; the 16-byte
// path (d % 8 == 0) writes 8 elements per e. Each element is written once (checked).
Chunk load_chunk(int R, const std::vector<float>& m, int64_t r0, int64_t rows, int64_t d, int64_t k0) {
  Chunk t(static_cast<size_t>(R) * kClipMmaLd, std::nanf(""));
  std::vector<int> writes(t.size(), 0);
  const bool vec = d % 8 == 0;
  for (int tid = 0; tid < kClipMmaThreads; ++tid) {
    if (vec) {
      constexpr int per_row = kClipMmaChunk / 8;
      for (int e = tid; e < R * per_row; e += kClipMmaThreads) {
        const int r = e / per_row, c = (e % per_row) * 8;
        const int64_t row = r0 + r, k = k0 + c;
        REQUIRE(clip_mma_smem_index(r, c) % 8 == 0);  // a 16-byte store: 16-byte aligned
        for (int j = 0; j < 8; ++j) {
          const bool in = row < rows && k < d;
          if (in) REQUIRE(k + j < d);  // the 16-byte copy stays inside the row
          t[clip_mma_smem_index(r, c + j)] = in ? m[row * d + k + j] : 0.f;
          ++writes[clip_mma_smem_index(r, c + j)];
        }
      }
    } else {
      for (int e = tid; e < R * kClipMmaChunk; e += kClipMmaThreads) {
        const int r = e / kClipMmaChunk, c = e % kClipMmaChunk;
        const int64_t row = r0 + r, k = k0 + c;
        t[clip_mma_smem_index(r, c)] = (row < rows && k < d) ? m[row * d + k] : 0.f;
        ++writes[clip_mma_smem_index(r, c)];
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < kClipMmaLd; ++c) REQUIRE(writes[clip_mma_smem_index(r, c)] == (c < kClipMmaChunk ? 1 : 0));
  return t;
}

// As the kernels' loaders (kernels/cuda/mma_ops.cuh): one 32-bit word per register of A and of
// a [n][k] B, half 1 next to half 0; two 16-bit loads per register of a [k][n] B.
WarpA load_a(const Chunk& t, int r0, int c0) {
  WarpA a;
  for (int lane = 0; lane < 32; ++lane)
    for (int reg = 0; reg < 4; ++reg) {
      const MmaIndex e = mma_a_element(lane, reg, 0);
      REQUIRE(clip_mma_smem_index(r0 + e.row, c0 + e.col) % 2 == 0);  // one 32-bit load: 4-byte aligned
      a.v[lane][reg][0] = t[clip_mma_smem_index(r0 + e.row, c0 + e.col)];
      a.v[lane][reg][1] = t[clip_mma_smem_index(r0 + e.row, c0 + e.col) + 1];
    }
  return a;
}
WarpB load_b_nk(const Chunk& t, int n0, int k0) {
  WarpB b;
  for (int lane = 0; lane < 32; ++lane)
    for (int reg = 0; reg < 2; ++reg) {
      const MmaIndex e = mma_b_element(lane, reg, 0);
      REQUIRE(clip_mma_smem_index(n0 + e.col, k0 + e.row) % 2 == 0);
      b.v[lane][reg][0] = t[clip_mma_smem_index(n0 + e.col, k0 + e.row)];
      b.v[lane][reg][1] = t[clip_mma_smem_index(n0 + e.col, k0 + e.row) + 1];
    }
  return b;
}
WarpB load_b_kn(const Chunk& t, int k0, int n0) {
  WarpB b;
  for (int lane = 0; lane < 32; ++lane)
    for (int reg = 0; reg < 2; ++reg)
      for (int h = 0; h < 2; ++h) {
        const MmaIndex e = mma_b_element(lane, reg, h);
        b.v[lane][reg][h] = t[clip_mma_smem_index(k0 + e.row, n0 + e.col)];
      }
  return b;
}

// The kernel's a_from_c: C tiles c0 (columns 0..7) and c1 (8..15) of each lane as its A
// registers, rounded as cvt.rn rounds (register r's halves: C tile mma_a_from_c(r).tile,
// registers .reg and .reg + 1).
WarpA a_from_c(Mode mode, const float (&c)[32][kClipMmaScoreTiles][4], int tile0) {
  WarpA a;
  for (int lane = 0; lane < 32; ++lane)
    for (int reg = 0; reg < 4; ++reg) {
      const MmaCSource src = mma_a_from_c(reg);
      a.v[lane][reg][0] = round_to(mode, c[lane][tile0 + src.tile][src.reg]);
      a.v[lane][reg][1] = round_to(mode, c[lane][tile0 + src.tile][src.reg + 1]);
    }
  return a;
}

// The shuffles of quad_max and quad_sum: xor 1, then xor 2, in that order.
void quad_max(float (&x)[32]) {
  float y[32];
  for (int l = 0; l < 32; ++l) y[l] = std::max(x[l], x[l ^ 1]);
  for (int l = 0; l < 32; ++l) x[l] = std::max(y[l], y[l ^ 2]);
}
template <class S>
void quad_sum(S (&x)[32]) {
  S y[32];
  for (int l = 0; l < 32; ++l) y[l] = x[l] + x[l ^ 1];
  for (int l = 0; l < 32; ++l) x[l] = y[l] + y[l ^ 2];
}

// ---- the kernels ----

using Scores = float[32][kClipMmaScoreTiles][4];

// score_tile for one block: every warp's C fragments of A·Bᵀ over the chunks of d.
void score_tile(Scores* sc, const std::vector<float>& A, const std::vector<float>& B, int64_t N, int64_t d, int64_t a0,
                int64_t b0) {
  for (int w = 0; w < kClipMmaWarps; ++w)
    for (int l = 0; l < 32; ++l)
      for (int n = 0; n < kClipMmaScoreTiles; ++n)
        for (int r = 0; r < 4; ++r) sc[w][l][n][r] = 0.f;
  for (int64_t k0 = 0; k0 < d; k0 += kClipMmaChunk) {
    const Chunk As = load_chunk(kClipMmaRows, A, a0, N, d, k0);
    const Chunk Bs = load_chunk(kClipMmaStream, B, b0, N, d, k0);
    for (int w = 0; w < kClipMmaWarps; ++w) {
      if (a0 + w * kMmaWarpRows >= N) continue;  // not live
      for (int kk = 0; kk < kClipMmaChunkSteps; ++kk) {
        const WarpA af = load_a(As, w * kMmaWarpRows, kk * 16);
        for (int n = 0; n < kClipMmaScoreTiles; ++n) {
          WarpC c;
          for (int l = 0; l < 32; ++l)
            for (int r = 0; r < 4; ++r) c.v[l][r] = sc[w][l][n][r];
          mma_emulated(c, af, load_b_nk(Bs, n * 8, kk * 16));
          for (int l = 0; l < 32; ++l)
            for (int r = 0; r < 4; ++r) sc[w][l][n][r] = c.v[l][r];
        }
      }
    }
  }
}

// clip_mma_lse_kernel: lse (and diag when not null), f32.
void lse_kernel(const std::vector<float>& A, const std::vector<float>& B, int64_t N, int64_t d, float t,
                std::vector<float>& lse, std::vector<float>* diag) {
  const float s = std::exp(t), s2 = s * kLog2e;
  for (int64_t blk = 0; blk < clip_mma_blocks(N); ++blk) {
    const int64_t a0 = blk * kClipMmaRows;
    float m[kClipMmaWarps][2][32], l[kClipMmaWarps][2][32];
    for (int w = 0; w < kClipMmaWarps; ++w)
      for (int h = 0; h < 2; ++h)
        for (int ln = 0; ln < 32; ++ln) m[w][h][ln] = kNegInf, l[w][h][ln] = 0.f;
    for (int64_t b0 = 0; b0 < N; b0 += kClipMmaStream) {
      Scores sc[kClipMmaWarps];
      score_tile(sc, A, B, N, d, a0, b0);
      for (int w = 0; w < kClipMmaWarps; ++w) {
        if (a0 + w * kMmaWarpRows >= N) continue;
        float mx[2][32];
        for (int ln = 0; ln < 32; ++ln) {
          mx[0][ln] = mx[1][ln] = kNegInf;
          for (int n = 0; n < kClipMmaScoreTiles; ++n)
            for (int r = 0; r < 4; ++r) {
              const ClipMmaPair p = clip_mma_score_pair(a0, b0, w, ln, n, r);
              if (diag && p.a == p.b && p.a < N) (*diag)[p.a] = s * sc[w][ln][n][r];
              const float x = p.b < N ? sc[w][ln][n][r] * s2 : kNegInf;
              sc[w][ln][n][r] = x;
              mx[r >> 1][ln] = std::max(mx[r >> 1][ln], x);
            }
        }
        for (int h = 0; h < 2; ++h) {
          quad_max(mx[h]);
          for (int ln = 0; ln < 32; ++ln) {
            const float m_new = std::max(m[w][h][ln], mx[h][ln]);
            REQUIRE(std::isfinite(m_new));
            l[w][h][ln] *= m[w][h][ln] == kNegInf ? 0.f : std::exp2(m[w][h][ln] - m_new);
            m[w][h][ln] = m_new;
          }
        }
        for (int ln = 0; ln < 32; ++ln)
          for (int n = 0; n < kClipMmaScoreTiles; ++n)
            for (int r = 0; r < 4; ++r)
              if (sc[w][ln][n][r] != kNegInf) l[w][r >> 1][ln] += std::exp2(sc[w][ln][n][r] - m[w][r >> 1][ln]);
      }
    }
    for (int w = 0; w < kClipMmaWarps; ++w) {
      if (a0 + w * kMmaWarpRows >= N) continue;
      for (int h = 0; h < 2; ++h) {
        quad_sum(l[w][h]);
        for (int ln = 0; ln < 32; ++ln) {
          const int64_t a = a0 + w * kMmaWarpRows + mma_group(ln) + 8 * h;
          if (mma_quad(ln) == 0 && a < N) lse[a] = (m[w][h][ln] + std::log2(l[w][h][ln])) * kLn2;
        }
      }
    }
  }
}

// clip_mma_grad_kernel: dA (rounded to `out`), dt_rows when not null. g_mode: how Ĝ is rounded.
void grad_kernel(const std::vector<float>& A, const std::vector<float>& B, int64_t N, int64_t d, float t,
                 const std::vector<float>& lseA, const std::vector<float>& lseB, float g, Mode g_mode, Mode out,
                 std::vector<float>& dA, std::vector<double>* dt_rows) {
  const float s = std::exp(t), s2 = s * kLog2e;
  const double coef = double(g) / (2.0 * double(N));
  const float out_scale = static_cast<float>(double(s) * coef / kClipMmaGradScale);
  const int64_t last_b0 = ((N - 1) / kClipMmaStream) * kClipMmaStream;
  std::vector<float> partial(static_cast<size_t>(N * d), std::nanf(""));  // device scratch: not initialised
  for (int64_t blk = 0; blk < clip_mma_blocks(N); ++blk) {
    const int64_t a0 = blk * kClipMmaRows;
    double dt[kClipMmaWarps][2][32] = {};
    for (int64_t b0 = 0; b0 < N; b0 += kClipMmaStream) {
      Scores sc[kClipMmaWarps];
      score_tile(sc, A, B, N, d, a0, b0);
      WarpA gf[kClipMmaWarps][kClipMmaStreamSteps];
      for (int w = 0; w < kClipMmaWarps; ++w) {
        const int64_t w0 = a0 + w * kMmaWarpRows;
        if (w0 >= N) continue;
        for (int ln = 0; ln < 32; ++ln) {
          float lse2_a[2];
          for (int h = 0; h < 2; ++h) {
            const int64_t a = w0 + mma_group(ln) + 8 * h;
            lse2_a[h] = a < N ? lseA[a] * kLog2e : 0.f;
          }
          float dt_tile[2] = {0.f, 0.f};
          for (int n = 0; n < kClipMmaScoreTiles; ++n)
            for (int r = 0; r < 4; ++r) {
              const ClipMmaPair p = clip_mma_score_pair(a0, b0, w, ln, n, r);
              float gh = 0.f;
              if (p.a < N && p.b < N) {
                const float x = sc[w][ln][n][r] * s2;
                gh = std::exp2(x - lse2_a[r >> 1]) + std::exp2(x - lseB[p.b] * kLog2e);
                if (p.a == p.b) gh -= 2.f;
                dt_tile[r >> 1] += gh * x;
              }
              sc[w][ln][n][r] = gh * kClipMmaGradScale;
            }
          dt[w][0][ln] += double(dt_tile[0]);
          dt[w][1][ln] += double(dt_tile[1]);
        }
        for (int ks = 0; ks < kClipMmaStreamSteps; ++ks) gf[w][ks] = a_from_c(g_mode, sc[w], 2 * ks);
      }
      for (int64_t k0 = 0; k0 < d; k0 += kClipMmaChunk) {
        const Chunk Bs = load_chunk(kClipMmaStream, B, b0, N, d, k0);
        for (int w = 0; w < kClipMmaWarps; ++w) {
          if (a0 + w * kMmaWarpRows >= N) continue;
          for (int n = 0; n < kClipMmaChunkTiles; ++n) {
            WarpC acc;
            for (int ks = 0; ks < kClipMmaStreamSteps; ++ks) mma_emulated(acc, gf[w][ks], load_b_kn(Bs, ks * 16, n * 8));
            for (int ln = 0; ln < 32; ++ln)
              for (int r = 0; r < 4; ++r) {
                const ClipMmaOut o = clip_mma_grad_out(a0, k0, w, ln, n, r);
                if (o.a < N && o.k < d) {
                  float& p = partial[o.a * d + o.k];
                  const float sum = b0 == 0 ? acc.v[ln][r] : p + acc.v[ln][r];
                  if (b0 == last_b0)
                    dA[o.a * d + o.k] = round_to(out, out_scale * sum);
                  else
                    p = sum;
                }
              }
          }
        }
      }
    }
    if (!dt_rows) continue;
    for (int w = 0; w < kClipMmaWarps; ++w) {
      const int64_t w0 = a0 + w * kMmaWarpRows;
      if (w0 >= N) continue;
      for (int h = 0; h < 2; ++h) {
        quad_sum(dt[w][h]);
        for (int ln = 0; ln < 32; ++ln) {
          const int64_t a = w0 + mma_group(ln) + 8 * h;
          if (mma_quad(ln) == 0 && a < N) (*dt_rows)[a] = dt[w][h][ln] * coef * double(kLn2);
        }
      }
    }
  }
}

// ---- the whole op, as clip_loss_mma_forward / _backward run it ----

struct Result {
  double loss, d_t;
  std::vector<double> r, c, du, dv;
};

Result run_v3(const std::vector<float>& u, const std::vector<float>& v, int64_t N, int64_t d, float t, float g,
              Mode inputs, Mode g_mode) {
  std::vector<float> r(N, std::nanf("")), c(N, std::nanf("")), diag(N, std::nanf(""));
  lse_kernel(u, v, N, d, t, r, &diag);
  lse_kernel(v, u, N, d, t, c, nullptr);
  double loss = 0;
  for (int64_t i = 0; i < N; ++i) loss += double(r[i]) + double(c[i]) - 2.0 * double(diag[i]);
  loss = static_cast<float>(loss / (2.0 * double(N)));
  std::vector<float> du(N * d, std::nanf("")), dv(N * d, std::nanf(""));
  std::vector<double> dt_rows(N, std::nan(""));
  grad_kernel(u, v, N, d, t, r, c, g, g_mode, inputs, du, &dt_rows);
  grad_kernel(v, u, N, d, t, c, r, g, g_mode, inputs, dv, nullptr);
  double dt = 0;
  for (double x : dt_rows) dt += x;
  Result out{round_to(inputs, static_cast<float>(loss)), static_cast<float>(dt), {}, {}, {}, {}};
  out.r.assign(r.begin(), r.end());
  out.c.assign(c.begin(), c.end());
  out.du.assign(du.begin(), du.end());
  out.dv.assign(dv.begin(), dv.end());
  return out;
}

Result run_cpu(const std::vector<float>& u, const std::vector<float>& v, int64_t N, int64_t d, float t, float g) {
  const std::vector<double> ud(u.begin(), u.end()), vd(v.begin(), v.end());
  Result out{0, 0, std::vector<double>(N), std::vector<double>(N), std::vector<double>(N * d),
             std::vector<double>(N * d)};
  mmg::cpu::clip_loss_forward<double>(ud.data(), vd.data(), N, d, t, &out.loss, out.r.data(), out.c.data());
  mmg::cpu::clip_loss_backward<double>(ud.data(), vd.data(), N, d, t, out.r.data(), out.c.data(), g, out.du.data(),
                                       out.dv.data(), &out.d_t);
  return out;
}

// |got − want| ≤ tol·|want| + tol·max|want| + floor, element by element (the CUDA test's check).
void check_close(const std::vector<double>& got, const std::vector<double>& want, double tol, double floor,
                 const std::string& what) {
  REQUIRE(got.size() == want.size());
  double max_want = 0;
  for (double x : want) max_want = std::max(max_want, std::abs(x));
  for (size_t i = 0; i < got.size(); ++i) {
    const double bound = tol * std::abs(want[i]) + tol * max_want + floor;
    INFO(what << " element " << i << ": got " << got[i] << ", want " << want[i] << ", bound " << bound);
    REQUIRE(std::abs(got[i] - want[i]) <= bound);
  }
}

// Rows of unit length with uniform entries, rounded to the inputs' dtype.
std::vector<float> unit_rows(std::mt19937& rng, int64_t N, int64_t d, Mode mode) {
  std::uniform_real_distribution<float> U(-1.f, 1.f);
  std::vector<float> x(N * d);
  for (int64_t i = 0; i < N; ++i) {
    double n2 = 0;
    for (int64_t k = 0; k < d; ++k) n2 += double(x[i * d + k] = U(rng)) * x[i * d + k];
    for (int64_t k = 0; k < d; ++k) x[i * d + k] = round_to(mode, static_cast<float>(x[i * d + k] / std::sqrt(n2)));
  }
  return x;
}

}  // namespace

TEST_CASE("clip_loss v3 tiling: the tile constants fit the kernels' assumptions") {
  CHECK(kClipMmaThreads == 128);
  CHECK(kClipMmaRows == 64);
  CHECK(kClipMmaSmemBytes <= 48 * 1024);  // static shared memory, no opt-in
  CHECK((kClipMmaLd * 2) % 16 == 0);     // 16-byte aligned rows for the 16-byte copies
  CHECK(clip_mma_blocks(1) == 1);
  CHECK(clip_mma_blocks(64) == 1);
  CHECK(clip_mma_blocks(65) == 2);
  CHECK(clip_mma_blocks(32768) == 512);
  // Every (warp, lane, n, reg) of a tile is a distinct pair (a, b), and together they cover the
  // 64 × 64 tile; likewise every output of a chunk of G·B.
  std::vector<int> seen(64 * 64, 0), out(64 * 64, 0);
  for (int w = 0; w < kClipMmaWarps; ++w)
    for (int ln = 0; ln < 32; ++ln)
      for (int n = 0; n < kClipMmaScoreTiles; ++n)
        for (int r = 0; r < 4; ++r) {
          const ClipMmaPair p = clip_mma_score_pair(128, 192, w, ln, n, r);
          REQUIRE((p.a >= 128 && p.a < 192 && p.b >= 192 && p.b < 256));
          ++seen[(p.a - 128) * 64 + (p.b - 192)];
        }
  for (int w = 0; w < kClipMmaWarps; ++w)
    for (int ln = 0; ln < 32; ++ln)
      for (int n = 0; n < kClipMmaChunkTiles; ++n)
        for (int r = 0; r < 4; ++r) {
          const ClipMmaOut o = clip_mma_grad_out(64, 128, w, ln, n, r);
          REQUIRE((o.a >= 64 && o.a < 128 && o.k >= 128 && o.k < 192));
          ++out[(o.a - 64) * 64 + (o.k - 128)];
        }
  CHECK(std::all_of(seen.begin(), seen.end(), [](int x) { return x == 1; }));
  CHECK(std::all_of(out.begin(), out.end(), [](int x) { return x == 1; }));
  // Ĝ's scale: a power of two, and 2σ (the largest |Ĝ|) within f16's range.
  CHECK(std::exp2(std::round(std::log2(kClipMmaGradScale))) == kClipMmaGradScale);
  CHECK(2.0f * kClipMmaGradScale <= 65504.0f);
}

TEST_CASE("clip_loss v3 tiling: the emulated kernels give the CPU op's loss, lse and gradients") {
  std::mt19937 rng(2027);
  struct Case {
    Mode inputs, g;
  };
  // Inputs, G and outputs unrounded (the tiling alone); 16-bit inputs and outputs with G in
  // f32 (only the kernels' f32 sums and the outputs' rounding); and the GPU's path, G rounded.
  const std::vector<Case> cases = {{Mode::exact, Mode::exact}, {Mode::bf16, Mode::exact}, {Mode::bf16, Mode::bf16},
                                   {Mode::f16, Mode::f16}};
  for (const Case& cs : cases)
    for (int64_t N : {1, 7, 65, 197})
      for (int64_t d : {8, 24, 64, 100}) {
        const std::vector<float> u = unit_rows(rng, N, d, cs.inputs), v = unit_rows(rng, N, d, cs.inputs);
        for (float t : {0.0f, 4.6051702f}) {  // s = 1 and s = 100
          const float g = 0.7f;
          const std::string name = std::string("inputs ") + mode_name(cs.inputs) + ", G " + mode_name(cs.g) + ", N " +
                                   std::to_string(N) + ", d " + std::to_string(d) + ", t " + std::to_string(t);
          CAPTURE(name);
          const Result got = run_v3(u, v, N, d, t, g, cs.inputs, cs.g);
          const Result want = run_cpu(u, v, N, d, t, g);
          // Without rounding of G or the outputs, only f32 round-off of sums of size ~s.
          const bool rounded = cs.inputs != Mode::exact;
          const double tol = rounded ? tolerance(cs.inputs) : tolerance(Mode::exact);
          const double s = std::exp(double(t));
          check_close({got.loss}, {want.loss}, tol, tol * std::max(1.0, s), name + " loss");
          check_close(got.r, want.r, 2e-5, 2e-5 * std::max(1.0, s), name + " row lse");  // f32 in any mode
          check_close(got.c, want.c, 2e-5, 2e-5 * std::max(1.0, s), name + " column lse");
          check_close(got.du, want.du, tol, tol * g * s / double(N), name + " d image");
          check_close(got.dv, want.dv, tol, tol * g * s / double(N), name + " d text");
          check_close({got.d_t}, {want.d_t}, 2e-5, 2e-5 * 2.0 * g * std::max(1.0, s), name + " d logit_scale");
        }
      }
}
