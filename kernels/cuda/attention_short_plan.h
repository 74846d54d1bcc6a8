// The plan of attention v4 (kernels/cuda/attention_short.cu, short sequences on tensor cores):
// when it runs instead of v3, how the work of B·H heads is cut into CTA units, which warp takes
// which 16-row query chunk, and the shared memory a CTA needs. Plain constexpr functions,
// compiled for the device by the kernel and for the host by tests/kernels/test_attention_short.cpp,
// which checks them and emulates the kernel lane by lane with them.
//
// ---- the rule ----
// v4 runs when 1 ≤ Sk ≤ 256 and 1 ≤ D ≤ 128 (attention_short_supports); otherwise the v4
// forward is v3's (attention_mma_forward), which streams any Sk. Its backward is always v3's.
//
// ---- units, items, chunks ----
// A head's queries are cut into chunks of 16 rows (the m of one mma): ⌈Sq/16⌉ chunks, so a
// ragged end wastes at most 15 rows (197 queries: 13 chunks, 208 rows; v3's 64-row blocks: 256).
// One CTA iteration (a "unit") owns `heads` consecutive (b, h) and a span of their chunks:
//   - heads > 1 only when a head has fewer chunks than the CTA has warps (Sq ≤ 48): up to 4
//     heads then share a CTA, so that its 4 warps all have work (text of 32 tokens: 2 chunks a
//     head, 2 heads a CTA), as long as their K/V fit in kShortGroupBytes;
//   - a head with more than kShortSpanChunks chunks (Sq > 256 over short keys) is split into
//     ⌈chunks/16⌉ spans of near-equal size, one unit each, so that a few long heads still
//     spread over many CTAs (each unit loads the head's K/V once, as v3's blocks load theirs).
// Within a unit the items (head, chunk) are numbered head-major and warp w takes items w,
// w + 4, w + 8, …: every item is one warp's 16 queries over all the resident keys.
//
// ---- shared memory ----
// Per head: K and V as [keys][Dp + 8] 16-bit rows, keys = Sk rounded up to 16 (rows past Sk
// are zeros), then key_ok [keys] bytes; keys·(4·(Dp + 8) + 1) bytes, a multiple of 16, so the
// next head's tiles stay 16-byte aligned. The largest, Sk 256 at Dp 128: 139,520 bytes, under
// sm_80's 163 KB a block may opt into (sm_90: 227 KB).
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/cuda/mma_fragment.h"

namespace mmg::cuda {

constexpr int64_t kShortMaxKeys = 256;
constexpr int kShortChunkRows = kMmaWarpRows;  // 16 queries, one warp's mma rows
constexpr int kShortMaxHeads = kMmaWarps;      // heads sharing a CTA when they have few chunks
constexpr int64_t kShortSpanChunks = 16;       // chunks per unit at most (256 queries)
constexpr size_t kShortGroupBytes = 48 * 1024; // K/V of grouped heads: no opt-in needed

// Whether v4's own kernel takes Sk keys at head dim D (else v4 runs v3's forward).
MMG_MMA_HD constexpr bool attention_short_supports(int64_t Sk, int64_t D) {
  return Sk >= 1 && Sk <= kShortMaxKeys && D >= 1 && D <= 128;
}

// The instance's head dim: 32, 64 or 128 (columns past D are zero-filled), as v3.
MMG_MMA_HD constexpr int short_padded_dim(int64_t D) { return D <= 32 ? 32 : (D <= 64 ? 64 : 128); }

// Keys resident per head: Sk rounded up to 16 (whole k-steps of P·V).
MMG_MMA_HD constexpr int64_t short_resident_keys(int64_t Sk) { return (Sk + 15) / 16 * 16; }

MMG_MMA_HD constexpr int64_t short_chunks(int64_t Sq) { return (Sq + kShortChunkRows - 1) / kShortChunkRows; }

// K [keys][ld], V [keys][ld] (16-bit), key_ok [keys] (bytes).
MMG_MMA_HD constexpr size_t short_head_smem_bytes(int Dp, int64_t keys) {
  return 2 * 2 * static_cast<size_t>(keys) * mma_ld(Dp) + static_cast<size_t>(keys);
}
static_assert(short_head_smem_bytes(128, kShortMaxKeys) == 139520, "the largest head, as the header says");
static_assert(short_head_smem_bytes(128, kShortMaxKeys) <= size_t(163) * 1024, "one head fits sm_80's opt-in limit");
static_assert(short_head_smem_bytes(32, 16) % 16 == 0, "heads stay 16-byte aligned");

// The key tile the forward's step takes next: keys [j0, j0 + n) of a 64-wide tile, n a multiple
// of 16 that covers the keys below kend (the chunk's last visible key + 1, or Sk).
MMG_MMA_HD constexpr int short_tile_keys(int64_t kend, int64_t j0) {
  const int64_t left = (kend - j0 + 15) / 16 * 16;
  return static_cast<int>(left < kMmaForwardKeys ? left : kMmaForwardKeys);
}

struct ShortAttentionPlan {
  bool runs;          // v4's kernel runs (else v3's forward)
  int Dp;             // the instance: 32, 64, 128
  int64_t keys;       // resident keys per head
  int64_t chunks;     // 16-row query chunks per head
  int heads;          // (b, h) per unit
  int64_t span;       // chunks per unit (the last span of a head may be shorter)
  int64_t spans;      // units per head group
  int64_t groups;     // head groups: ⌈BH / heads⌉
  int64_t units;      // groups · spans: the grid-stride loop's length
  size_t head_bytes;  // shared memory per head
  size_t smem_bytes;  // per CTA: heads · head_bytes
};

MMG_MMA_HD constexpr ShortAttentionPlan attention_short_plan(int64_t BH, int64_t Sq, int64_t Sk, int64_t D) {
  ShortAttentionPlan p{};
  p.runs = attention_short_supports(Sk, D) && BH >= 1 && Sq >= 1;
  if (!p.runs) return p;
  p.Dp = short_padded_dim(D);
  p.keys = short_resident_keys(Sk);
  p.chunks = short_chunks(Sq);
  p.head_bytes = short_head_smem_bytes(p.Dp, p.keys);
  p.heads = 1;
  while (p.heads < kShortMaxHeads && p.heads * p.chunks < kMmaWarps && p.heads < BH &&
         (p.heads + 1) * p.head_bytes <= kShortGroupBytes)
    ++p.heads;
  p.spans = (p.chunks + kShortSpanChunks - 1) / kShortSpanChunks;
  p.span = (p.chunks + p.spans - 1) / p.spans;
  p.groups = (BH + p.heads - 1) / p.heads;
  p.units = p.groups * p.spans;
  p.smem_bytes = static_cast<size_t>(p.heads) * p.head_bytes;
  return p;
}

// What unit t owns: heads [bh0, bh0 + heads) (fewer in the last group when heads ∤ BH) and
// chunks [chunk0, chunk0 + chunks) of each.
struct ShortUnit {
  int64_t bh0;
  int heads;
  int64_t chunk0, chunks;
};

MMG_MMA_HD constexpr ShortUnit short_unit(const ShortAttentionPlan& p, int64_t BH, int64_t t) {
  const int64_t group = t / p.spans, s = t % p.spans;
  const int64_t bh0 = group * p.heads, left = BH - bh0;
  const int64_t chunk0 = s * p.span, rest = p.chunks - chunk0;
  return {bh0, static_cast<int>(left < p.heads ? left : p.heads), chunk0, rest < p.span ? rest : p.span};
}

// Item `item` (< heads · chunks) of unit u: the head within the unit and the chunk of it.
struct ShortItem {
  int head;
  int64_t chunk;
};

MMG_MMA_HD constexpr ShortItem short_item(const ShortUnit& u, int64_t item) {
  return {static_cast<int>(item / u.chunks), u.chunk0 + item % u.chunks};
}

}  // namespace mmg::cuda
