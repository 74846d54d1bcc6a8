// Where the elements of mma.sync.aligned.m16n8k16 live, and the tile geometry of the tensor-core
// attention kernels (v3, kernels/cuda/attention_mma.cu) — plain constexpr functions, compiled
// for the device by the kernels and for the host by tests/kernels/test_attention_mma_tiling.cpp,
// which emulates the instruction and the kernels' tiling with these same functions.
//
// ---- the instruction ----
// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32 d, a, b, c computes, for one
// warp, D = A·B + C with A 16×16 (m × k, 16-bit), B 16×8 (k × n, 16-bit), C and D 16×8 (f32).
// Each of the 32 lanes holds a fixed piece of each matrix in its registers ("fragments"). PTX ISA,
// section "Matrix Fragments for mma.m16n8k16 with floating point type", with
//   group = lane / 4  (groupID),   quad = lane % 4  (threadID_in_group):
//   A  4 registers × 2 halves, element a_i, i = 2·reg + half (half 0 = the low 16 bits):
//        row = group      for i ∈ {0,1,4,5},   group + 8  for i ∈ {2,3,6,7}
//        col = 2·quad + (i & 1)  for i < 4,    2·quad + (i & 1) + 8  for i ≥ 4
//   B  2 registers × 2 halves, element b_i, i = 2·reg + half:
//        row = 2·quad + (i & 1)  for i < 2,    2·quad + (i & 1) + 8  for i ≥ 2;   col = group
//   C, D  4 f32 registers c_i:
//        row = group  for i < 2,   group + 8  for i ≥ 2;     col = 2·quad + (i & 1)
// So a register of A holds two neighbours of one row (cols 2·quad, 2·quad + 1), a register of B
// two neighbours of one column (rows 2·quad, 2·quad + 1), and a lane's pair of C registers
// c0,c1 (or c2,c3) two neighbours of one row — the same place as A's pairs. That is what lets
// the softmax's P, computed as C fragments of S = Q·Kᵀ, feed the next product P·V as an A
// fragment straight from the registers (FlashAttention-2 does the same): a_from_c below.
#pragma once
#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define MMG_MMA_HD __host__ __device__
#else
#define MMG_MMA_HD
#endif

namespace mmg::cuda {

struct MmaIndex {
  int row, col;
};

MMG_MMA_HD constexpr int mma_group(int lane) { return lane >> 2; }
MMG_MMA_HD constexpr int mma_quad(int lane) { return lane & 3; }

// (row, col) in the 16×16 A tile of element `half` of register `reg` (0..3) of `lane`.
MMG_MMA_HD constexpr MmaIndex mma_a_element(int lane, int reg, int half) {
  const int i = 2 * reg + half;
  const bool low_row = i < 2 || (i >= 4 && i < 6);
  return {mma_group(lane) + (low_row ? 0 : 8), 2 * mma_quad(lane) + (i & 1) + (i >= 4 ? 8 : 0)};
}

// (row, col) = (k, n) in the 16×8 B tile of element `half` of register `reg` (0..1).
MMG_MMA_HD constexpr MmaIndex mma_b_element(int lane, int reg, int half) {
  const int i = 2 * reg + half;
  return {2 * mma_quad(lane) + (i & 1) + (i >= 2 ? 8 : 0), mma_group(lane)};
}

// (row, col) in the 16×8 C/D tile of f32 register `reg` (0..3).
MMG_MMA_HD constexpr MmaIndex mma_c_element(int lane, int reg) {
  return {mma_group(lane) + (reg >= 2 ? 8 : 0), 2 * mma_quad(lane) + (reg & 1)};
}

// An A fragment of a 16×16 tile whose columns 0..7 are C tile 0 and columns 8..15 C tile 1
// (two n8 products side by side): A register `reg`, half h holds C tile `tile`, register
// `reg_of_half0 + h`. The same lane holds both, so the move is a conversion to 16 bits, no shuffle.
struct MmaCSource {
  int tile, reg;  // reg: the register of half 0; half 1 is reg + 1
};
MMG_MMA_HD constexpr MmaCSource mma_a_from_c(int reg) { return {reg >> 1, (reg & 1) << 1}; }

// ---- the tiles of the v3 attention kernels ----
// A block is 4 warps; each warp owns 16 rows of the block's own tile (the m of one mma), so a
// block owns 64 queries (forward, dQ) or 64 keys (dK/dV). The other side streams past in tiles
// of 64 keys (forward) or 32 rows (both backward kernels, whose two products per tile and two
// accumulators per row — dK and dV — want the smaller tile to stay within the registers).
constexpr int kMmaWarps = 4;
constexpr int kMmaThreads = 32 * kMmaWarps;
constexpr int kMmaWarpRows = 16;
constexpr int kMmaBlockRows = kMmaWarps * kMmaWarpRows;  // 64
constexpr int kMmaForwardKeys = 64;
constexpr int kMmaBackwardStream = 32;
static_assert(kMmaForwardKeys % 16 == 0 && kMmaBackwardStream % 16 == 0, "streamed tiles are whole k16 steps");

// Shared tiles are row-major [rows][Dp] 16-bit elements with rows of Dp + 8 elements: 16 bytes of
// padding keep each row 16-byte aligned (for 16-byte copies) and shift row r by 4r banks, so the
// 8 groups of a warp, reading 8 different rows at the same column, hit 8 different sets of 4
// banks (Dp/2 words is a multiple of 32 for Dp = 64, 128; for Dp = 32 the shift is 20r mod 32,
// again 8 distinct multiples of 4).
constexpr int kMmaPad = 8;
MMG_MMA_HD constexpr int mma_ld(int Dp) { return Dp + kMmaPad; }

// Shared memory per block, in bytes (16-bit tiles, then f32 and u8 side arrays).
MMG_MMA_HD constexpr size_t mma_forward_smem_bytes(int Dp) {
  // Q [64][ld], K [64][ld], V [64][ld]; key_ok [64]
  return 2 * static_cast<size_t>(kMmaBlockRows + 2 * kMmaForwardKeys) * mma_ld(Dp) + kMmaForwardKeys;
}
MMG_MMA_HD constexpr size_t mma_dkdv_smem_bytes(int Dp) {
  // K, V [64][ld]; Q, dO [32][ld]; lse·log2 e, Δ [32] f32; key_ok [64]
  return 2 * static_cast<size_t>(2 * kMmaBlockRows + 2 * kMmaBackwardStream) * mma_ld(Dp) +
         2 * sizeof(float) * kMmaBackwardStream + kMmaBlockRows;
}
MMG_MMA_HD constexpr size_t mma_dq_smem_bytes(int Dp) {
  // Q, dO [64][ld]; K, V [32][ld]; key_ok [32]
  return 2 * static_cast<size_t>(2 * kMmaBlockRows + 2 * kMmaBackwardStream) * mma_ld(Dp) + kMmaBackwardStream;
}

// Keys [0, end) that some query of [i0, i0 + rows) can see: under causal (top-left) the last
// query, i0 + rows − 1, sees keys j ≤ i0 + rows − 1.
MMG_MMA_HD constexpr int64_t mma_key_end(bool causal, int64_t i0, int64_t rows, int64_t Sk) {
  return causal && i0 + rows < Sk ? i0 + rows : Sk;
}

// The first query tile (of `tile` queries, starting at multiples of it) whose queries can see
// key j0: under causal the queries i < j0 see none of the keys j ≥ j0.
MMG_MMA_HD constexpr int64_t mma_query_begin(bool causal, int64_t j0, int64_t tile) {
  return causal ? (j0 / tile) * tile : 0;
}

// Whether queries [i_first, i_last] and keys [j_first, …) can meet at all: under causal a key
// j is seen only by queries i ≥ j. A warp whose rows and the current tile fail this skips the
// tile's products (a whole tile above the diagonal).
MMG_MMA_HD constexpr bool mma_tiles_meet(bool causal, int64_t i_last, int64_t j_first) {
  return !causal || j_first <= i_last;
}

}  // namespace mmg::cuda
