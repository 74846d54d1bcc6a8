// Which copies the v2 copy kernel (kernels/cuda/copy.cu) runs as a tiled transpose, and the
// index arithmetic of that kernel, as plain C++: the kernel calls these same functions, and
// the CPU suite (tests/kernels/test_copy_plan.cpp) runs them for every thread of the grid to
// check that every element is copied once, from the right place, on odd shapes.
//
// A copy walks its merged dims (kernels/strided.h; operand 0 the source, 1 the destination).
// It is a transpose when the destination's unit-stride dim j (along which consecutive threads
// write) has a source stride other than 1 (and other than 0, a broadcast, which reads one
// element over and over and is fine as it is), while some other dim i has source stride 1:
// [B,S,D]ᵀ, kᵀ of attention, a [C,H·W] → [H·W,C] image layout. One thread an element would
// then read 32 addresses a warp that lie far apart (a 32-byte sector each, for 4 bytes used).
//
// The tiled kernel instead moves a 32×32 tile of the (i, j) plane of one batch entry (the
// other dims, any number, any strides) through shared memory, with 32×8 threads:
//   phase 1  thread (x, y), steps k = 0…3: source element (i0 + x, j0 + y + 8k) into
//            tile[y + 8k][x]: a warp (32 x's, one y) reads 32 consecutive source elements
//   phase 2  thread (x, y), steps k = 0…3: tile[x][y + 8k] to destination element
//            (i0 + y + 8k, j0 + x): a warp writes 32 consecutive destination elements
// The tile's rows are padded (tile_pitch: 33 elements of 4 or 8 bytes, 34 of 2, 36 of 1) so
// that the column a warp reads in phase 2 (rows x = 0…31 of one column) falls in 32
// different banks of 4 bytes. Elements past the plane's edge (a ragged last tile)
// are neither read nor written. Blocks loop over the tiles (tile t, t + gridDim.x, …), so
// any number of tiles fits one 1-D grid, with no limit on the batch.
#pragma once
#include <algorithm>
#include <cstdint>

#include "kernels/strided.h"

#ifdef __CUDACC__
#define MMG_HOST_DEVICE __host__ __device__
#else
#define MMG_HOST_DEVICE
#endif

namespace mmg::cuda {

constexpr int kTile = 32;       // a tile is kTile × kTile elements
constexpr int kTileRows = 8;    // threads a block: kTile × kTileRows (256)
constexpr int kTileSteps = kTile / kTileRows;  // elements a thread moves in each phase
constexpr int64_t kMinTiledSide = 8;           // a thinner plane wastes most of each tile
constexpr int64_t kMaxTileBlocks = int64_t(1) << 16;

// Elements a tile row takes in shared memory, for elements of `bytes` bytes: one row is an
// odd number of 4-byte words (33, 17, 9), so rows x = 0…31 of a column start in 32 different
// banks; 8-byte elements are read by half-warps, whose 16 rows of 66 words apart do too.
MMG_HOST_DEVICE constexpr int tile_pitch(int bytes) { return bytes == 1 ? 36 : bytes == 2 ? 34 : kTile + 1; }

struct TransposeCopyPlan {
  bool tiled = false;
  int64_t size_i = 0, size_j = 0;  // i: the source's unit-stride dim; j: the destination's
  int64_t src_stride_j = 0;        // the source's stride along j (along i it is 1)
  int64_t dst_stride_i = 0;        // the destination's stride along i (along j it is 1)
  int batch_ndim = 0;              // the other dims, in their order
  int64_t batch_shape[kMaxDims] = {}, batch_src[kMaxDims] = {}, batch_dst[kMaxDims] = {};
  int64_t batch = 1, tiles_i = 0, tiles_j = 0;

  MMG_HOST_DEVICE int64_t tiles() const { return batch * tiles_i * tiles_j; }
  int64_t blocks() const { return std::min(tiles(), kMaxTileBlocks); }
};

// The tiles of the (i, j) plane of a copy over the merged layout m, i and j two different
// dims, every other dim a batch dim. Any i and j give a correct copy (the CPU tests tile
// planes of every shape); plan_transpose_copy picks the ones where tiling pays.
inline TransposeCopyPlan tile_plan(const MergedDims<2>& m, int i, int j) {
  TransposeCopyPlan p;
  p.tiled = true;
  p.size_i = m.shape[i];
  p.size_j = m.shape[j];
  p.src_stride_j = m.strides[0][j];
  p.dst_stride_i = m.strides[1][i];
  for (int d = 0; d < m.ndim; ++d) {
    if (d == i || d == j) continue;
    p.batch_shape[p.batch_ndim] = m.shape[d];
    p.batch_src[p.batch_ndim] = m.strides[0][d];
    p.batch_dst[p.batch_ndim] = m.strides[1][d];
    p.batch *= m.shape[d];
    ++p.batch_ndim;
  }
  p.tiles_i = (p.size_i + kTile - 1) / kTile;
  p.tiles_j = (p.size_j + kTile - 1) / kTile;
  return p;
}

// The tiled plan of a copy over the merged layout m (source strides first), or tiled =
// false when the copy is no transpose, or its plane is thinner than kMinTiledSide on either
// side (a [H·W,3] → [3,H·W] image would fill 3 of a tile's 32 columns).
inline TransposeCopyPlan plan_transpose_copy(const MergedDims<2>& m) {
  int i = -1, j = -1;
  for (int d = m.ndim - 1; d >= 0 && j < 0; --d)
    if (m.strides[1][d] == 1) j = d;
  if (j < 0 || m.strides[0][j] == 1 || m.strides[0][j] == 0) return {};
  for (int d = m.ndim - 1; d >= 0 && i < 0; --d)
    if (d != j && m.strides[0][d] == 1) i = d;
  if (i < 0 || m.shape[i] < kMinTiledSide || m.shape[j] < kMinTiledSide) return {};
  return tile_plan(m, i, j);
}

// Tile t: its batch entry's offsets in the source and the destination, and its first i and j.
// Tiles run j fastest, then i, then the batch entry.
struct TileOrigin {
  int64_t src, dst, i0, j0;
};

MMG_HOST_DEVICE inline TileOrigin tile_origin(const TransposeCopyPlan& p, int64_t t) {
  const int64_t tj = t % p.tiles_j;
  t /= p.tiles_j;
  const int64_t ti = t % p.tiles_i;
  t /= p.tiles_i;
  TileOrigin o{0, 0, ti * kTile, tj * kTile};
  for (int d = p.batch_ndim - 1; d >= 0; --d) {  // t is the batch entry now, row-major over the batch dims
    const int64_t idx = t % p.batch_shape[d];
    t /= p.batch_shape[d];
    o.src += idx * p.batch_src[d];
    o.dst += idx * p.batch_dst[d];
  }
  return o;
}

// One element a thread moves: whether it lies inside the plane, its offset in the source
// (phase 1) or the destination (phase 2), and its place in the tile, tile[row][col] with
// row = j − j0 and col = i − i0.
struct TileStep {
  bool inside;
  int64_t offset;
  int row, col;
};

// Phase 1, thread (x, y), step k: source element (i0 + x, j0 + y + 8k).
MMG_HOST_DEVICE inline TileStep tile_read(const TransposeCopyPlan& p, const TileOrigin& o, int x, int y, int k) {
  const int row = y + k * kTileRows, col = x;
  const int64_t i = o.i0 + col, j = o.j0 + row;
  return {i < p.size_i && j < p.size_j, o.src + i + j * p.src_stride_j, row, col};
}

// Phase 2, thread (x, y), step k: destination element (i0 + y + 8k, j0 + x).
MMG_HOST_DEVICE inline TileStep tile_write(const TransposeCopyPlan& p, const TileOrigin& o, int x, int y, int k) {
  const int row = x, col = y + k * kTileRows;
  const int64_t i = o.i0 + col, j = o.j0 + row;
  return {i < p.size_i && j < p.size_j, o.dst + j + i * p.dst_stride_i, row, col};
}

}  // namespace mmg::cuda
