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
// poison the result. The emulation itself lives in tests/kernels/mma_attention_emulation.h,
// shared with the v4 tests (test_attention_short.cpp).
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "tests/kernels/mma_attention_emulation.h"

using namespace mmg::cuda;
using namespace mmg::testing::mma_emu;

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

void check_emulated_case(const Case& c, Mode mode, std::mt19937& gen) {
  const CaseData d = make_case(c, mode, gen);
  const std::string name = case_name(c, mode);
  const float nan = std::nanf("");  // poisoned: an element the emulation forgets fails
  std::vector<float> out(d.q.size(), nan), lse(d.lse_ref.size(), nan), dq(d.q.size(), nan), dk(d.k.size(), nan),
      dv(d.v.size(), nan);
  forward_emulated(mode, d.q, d.k, d.v, d.mask_ptr(), out, lse, d.z, c.causal, d.scale, d.drop);
  const Tol tol = tolerance(mode);
  check_close(out, d.out_ref, tol.rtol, tol.scaled, name + " out", tol.floor);
  check_close(lse, d.lse_ref, 1e-4, 1e-6, name + " lse");  // f32 exp2/log2 of f32 scores
  const int64_t tiles = backward_emulated(mode, d.q, d.k, d.v, d.mask_ptr(), out, d.dout, lse, dq, dk, dv, d.z,
                                          c.causal, d.scale, d.drop);
  check_close(dq, d.dq_ref, tol.rtol, tol.scaled, name + " dq", tol.floor);
  check_close(dk, d.dk_ref, tol.rtol, tol.scaled, name + " dk", tol.floor);
  check_close(dv, d.dv_ref, tol.rtol, tol.scaled, name + " dv", tol.floor);

  // Causal skips work: the warps that ran (dK/dV and dQ) are fewer than without causal,
  // wherever a tile lies wholly above the diagonal.
  if (c.causal && c.Sq >= 64 && c.Sk >= 64) {
    std::vector<float> a(d.q.size()), b(d.k.size()), e(d.v.size());
    const int64_t all =
        backward_emulated(mode, d.q, d.k, d.v, d.mask_ptr(), out, d.dout, lse, a, b, e, d.z, false, d.scale, d.drop);
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
