// The tile geometry of clip_loss version 3 (kernels/cuda/contrastive_mma.cu): plain constexpr
// constants and functions, compiled for the device by the kernels and for the host by
// tests/kernels/test_contrastive_mma_tiling.cpp, which emulates the kernels lane by lane with
// these same functions and the fragment maps of kernels/cuda/mma_fragment.h.
//
// A block is 4 warps; warp w owns rows a0 + 16w … a0 + 16w + 15 of A (the m of one mma), so a
// block owns 64 rows. The rows of B stream past in tiles of 64 (eight n8 tiles of scores per
// warp). Both sides are brought to shared memory by chunks of 64 elements of d, so any d runs
// with the same 18 KB of shared memory; a shared row is 64 + 8 elements (kMmaPad: 16-byte
// aligned rows, conflict-free fragment loads, mma_fragment.h says why).
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/cuda/mma_fragment.h"

namespace mmg::cuda {

constexpr int kClipMmaWarps = 4;
constexpr int kClipMmaThreads = 32 * kClipMmaWarps;             // 128
constexpr int kClipMmaRows = kClipMmaWarps * kMmaWarpRows;      // 64 rows of A per block
constexpr int kClipMmaStream = 64;                              // rows of B per streamed tile
constexpr int kClipMmaChunk = 64;                               // elements of d per shared chunk
constexpr int kClipMmaLd = kClipMmaChunk + kMmaPad;             // 72: shared row stride
constexpr int kClipMmaScoreTiles = kClipMmaStream / 8;          // n8 tiles of scores per warp
constexpr int kClipMmaStreamSteps = kClipMmaStream / 16;        // k16 steps of G·B over a tile
constexpr int kClipMmaChunkSteps = kClipMmaChunk / 16;          // k16 steps of A·Bᵀ over a chunk
constexpr int kClipMmaChunkTiles = kClipMmaChunk / 8;           // n8 tiles of G·B over a chunk
static_assert(kClipMmaRows == kClipMmaStream, "the diagonal of L lies in the tile b0 = a0");
static_assert(kClipMmaChunk % 16 == 0 && kClipMmaStream % 16 == 0, "whole k16 steps");

// Shared memory of every v3 clip kernel: a chunk of A's 64 rows and one of B's 64 rows.
constexpr size_t kClipMmaSmemBytes = sizeof(uint16_t) * (kClipMmaRows + kClipMmaStream) * kClipMmaLd;
static_assert(kClipMmaSmemBytes == 18432, "64 + 64 rows of 72 16-bit elements");

// G enters the tensor cores as Ĝ = σ·(P + Q − 2δ) rounded to 16 bits, σ = 2^13, and the
// factor s·g/(2N)/σ is applied to the f32 sums: |P + Q − 2δ| ≤ 2, so |Ĝ| ≤ 2^14 stays below
// f16's largest 65504, while the typical entry ~2/N lands at 2^14/N — 0.5 at N = 32k, far
// above f16's smallest normal 2^−14 (unscaled, g/(2N)·P at N = 32k is ~5e−10: zero in f16).
// A power of two, so the scaling itself is exact; bf16 has the range without it.
constexpr float kClipMmaGradScale = 8192.0f;

// Blocks of a pass over the N rows of A.
MMG_MMA_HD constexpr int64_t clip_mma_blocks(int64_t N) { return (N + kClipMmaRows - 1) / kClipMmaRows; }

// Where a lane's C register of n8 tile n of warp `warp`'s scores lies: row a of A and row b of B.
struct ClipMmaPair {
  int64_t a, b;
};
MMG_MMA_HD constexpr ClipMmaPair clip_mma_score_pair(int64_t a0, int64_t b0, int warp, int lane, int n, int reg) {
  const MmaIndex e = mma_c_element(lane, reg);
  return {a0 + warp * kMmaWarpRows + e.row, b0 + n * 8 + e.col};
}

// Where a lane's C register of n8 tile n of G·B over the chunk at k0 lies: row a of dA, column k.
struct ClipMmaOut {
  int64_t a, k;
};
MMG_MMA_HD constexpr ClipMmaOut clip_mma_grad_out(int64_t a0, int64_t k0, int warp, int lane, int n, int reg) {
  const MmaIndex e = mma_c_element(lane, reg);
  return {a0 + warp * kMmaWarpRows + e.row, k0 + n * 8 + e.col};
}

// Element (r, c) of a shared chunk holds row r0 + r, column k0 + c of an [rows, d] matrix, or 0
// past either end. Shared index of (r, c):
MMG_MMA_HD constexpr int clip_mma_smem_index(int r, int c) { return r * kClipMmaLd + c; }

}  // namespace mmg::cuda
