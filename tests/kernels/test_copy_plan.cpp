// The tiled transposing copy (kernels/cuda/copy_plan.h, run by copy_cast_v2 in
// kernels/cuda/copy.cu) on the CPU: which copies take it, and an emulation of the kernel —
// every block of the grid looping over its tiles, every thread's four steps of each phase,
// the shared tile in between — built from the kernel's own index functions. On odd shapes
// (1, 7, 33, 197×65, batched, strided destinations) it must write every destination element
// exactly once, with the source element a naive strided copy picks; phase 2 must read only
// tile cells phase 1 wrote for the same tile, and each warp's shared accesses must fall in
// different banks (for elements of 1, 2, 4 and 8 bytes). The kernel itself runs on a GPU in tests/cuda/test_copy.cpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <vector>

#include "kernels/cuda/copy_plan.h"

using namespace mmg;
using namespace mmg::cuda;

namespace {

using Dims = std::vector<int64_t>;

MergedDims<2> merged(const Dims& shape, const Dims& src, const Dims& dst) {
  return MergedDims<2>(static_cast<int>(shape.size()), shape.data(), {src.data(), dst.data()});
}

Dims contiguous(const Dims& shape) {
  Dims s(shape.size());
  int64_t step = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    s[d] = step;
    step *= shape[d];
  }
  return s;
}

// v reordered: the shape or the strides of x.permute(order), from x's.
Dims permuted(const Dims& v, const Dims& order) {
  Dims out;
  for (int64_t d : order) out.push_back(v[static_cast<size_t>(d)]);
  return out;
}

int64_t count(const Dims& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

int64_t offset_of(int64_t i, const Dims& shape, const Dims& strides) {
  int64_t off = 0;
  for (size_t d = shape.size(); d-- > 0;) {
    off += (i % shape[d]) * strides[d];
    i /= shape[d];
  }
  return off;
}

// One past the largest offset of a strided tensor (its storage's size).
int64_t extent(const Dims& shape, const Dims& strides) {
  int64_t e = 1;
  for (size_t d = 0; d < shape.size(); ++d) e += (shape[d] - 1) * strides[d];
  return e;
}

// Runs the tiled kernel's algorithm on the host with `blocks` blocks: src holds its own
// offsets as values, so dst[k] says which source element reached destination offset k.
// Checks every destination element written once, with the element a naive copy picks.
void emulate(const Dims& shape, const Dims& src_strides, const Dims& dst_strides, const TransposeCopyPlan& plan,
             int64_t blocks) {
  INFO("shape of " << shape.size() << " dims, n " << count(shape) << ", " << blocks << " blocks");
  REQUIRE(plan.tiled);
  const int64_t src_size = extent(shape, src_strides), dst_size = extent(shape, dst_strides);
  std::vector<int64_t> dst(static_cast<size_t>(dst_size), -1);
  std::vector<int> writes(static_cast<size_t>(dst_size), 0);
  constexpr int64_t kUnwritten = -2;
  const int pitch = tile_pitch(4);  // the emulation's tile holds offsets; any pitch ≥ kTile works alike
  std::vector<int64_t> tile(static_cast<size_t>(kTile * pitch));
  int64_t bad_reads = 0, stale = 0;
  for (int64_t b = 0; b < blocks; ++b) {
    for (int64_t t = b; t < plan.tiles(); t += blocks) {
      const TileOrigin o = tile_origin(plan, t);
      std::fill(tile.begin(), tile.end(), kUnwritten);
      for (int y = 0; y < kTileRows; ++y)
        for (int x = 0; x < kTile; ++x)
          for (int k = 0; k < kTileSteps; ++k) {
            const TileStep s = tile_read(plan, o, x, y, k);
            if (!s.inside) continue;
            if (s.offset < 0 || s.offset >= src_size) {
              ++bad_reads;
              continue;
            }
            tile[static_cast<size_t>(s.row * pitch + s.col)] = s.offset;  // src[offset] = offset
          }
      // __syncthreads()
      for (int y = 0; y < kTileRows; ++y)
        for (int x = 0; x < kTile; ++x)
          for (int k = 0; k < kTileSteps; ++k) {
            const TileStep s = tile_write(plan, o, x, y, k);
            if (!s.inside) continue;
            if (s.offset < 0 || s.offset >= dst_size) {
              ++bad_reads;
              continue;
            }
            const int64_t v = tile[static_cast<size_t>(s.row * pitch + s.col)];
            if (v == kUnwritten) ++stale;
            dst[static_cast<size_t>(s.offset)] = v;
            ++writes[static_cast<size_t>(s.offset)];
          }
    }
  }
  CHECK(bad_reads == 0);
  CHECK(stale == 0);
  int64_t wrong = 0;
  for (int64_t i = 0; i < count(shape); ++i) {
    const int64_t d = offset_of(i, shape, dst_strides);
    if (writes[static_cast<size_t>(d)] != 1 || dst[static_cast<size_t>(d)] != offset_of(i, shape, src_strides)) ++wrong;
  }
  CHECK_MESSAGE(wrong == 0, wrong << " of " << count(shape) << " elements wrong");
  int64_t total = 0;
  for (int w : writes) total += w;
  CHECK(total == count(shape));  // nothing written outside the destination's elements
}

// Every grid the kernel might run with: its own (min(tiles, 65536)), one block, three.
void emulate_all_grids(const Dims& shape, const Dims& src, const Dims& dst, const TransposeCopyPlan& plan) {
  for (int64_t blocks : {plan.blocks(), int64_t{1}, int64_t{3}}) emulate(shape, src, dst, plan, blocks);
}

}  // namespace

TEST_CASE("copy plan: transposes take the tiled path, other copies do not") {
  // x [65,197] contiguous, copied as xᵀ [197,65] into a contiguous destination.
  TransposeCopyPlan p = plan_transpose_copy(merged({197, 65}, {1, 197}, {65, 1}));
  REQUIRE(p.tiled);
  CHECK(p.size_i == 197);  // the source's unit-stride dim
  CHECK(p.size_j == 65);   // the destination's
  CHECK(p.src_stride_j == 197);
  CHECK(p.dst_stride_i == 65);
  CHECK(p.batch == 1);
  CHECK(p.tiles_i == 7);
  CHECK(p.tiles_j == 3);
  CHECK(p.tiles() == 21);
  CHECK(p.blocks() == 21);

  // [B,S,D].transpose(1,2): batched, the batch dim with its own strides.
  const Dims bsd = {4, 197, 64};
  p = plan_transpose_copy(merged(permuted(bsd, {0, 2, 1}), permuted(contiguous(bsd), {0, 2, 1}),
                                 contiguous(permuted(bsd, {0, 2, 1}))));
  REQUIRE(p.tiled);
  CHECK(p.batch == 4);
  CHECK(p.batch_ndim == 1);
  CHECK(p.batch_src[0] == 197 * 64);
  CHECK(p.batch_dst[0] == 197 * 64);
  CHECK(p.size_i == 64);
  CHECK(p.size_j == 197);
  CHECK(p.tiles() == 4 * 2 * 7);

  // Copying into a transposed destination: dst.transpose(0,1).copy_(src), src contiguous.
  p = plan_transpose_copy(merged({40, 50}, {50, 1}, {1, 40}));
  REQUIRE(p.tiled);
  CHECK(p.size_i == 50);
  CHECK(p.size_j == 40);
  CHECK(p.dst_stride_i == 40);

  // Not transposes: a contiguous copy, a head permute [B,H,S,D] → [B,S,H,D] (rows of D stay
  // contiguous on both sides), a broadcast source, a slice with a step.
  CHECK(!plan_transpose_copy(merged({5, 33}, {33, 1}, {33, 1})).tiled);
  const Dims bhsd = {2, 12, 197, 64};
  CHECK(!plan_transpose_copy(merged(permuted(bhsd, {0, 2, 1, 3}), permuted(contiguous(bhsd), {0, 2, 1, 3}),
                                    contiguous(permuted(bhsd, {0, 2, 1, 3}))))
             .tiled);
  CHECK(!plan_transpose_copy(merged({64, 64}, {1, 0}, {64, 1})).tiled);  // a column expanded along j
  CHECK(!plan_transpose_copy(merged({64, 64}, {128, 2}, {64, 1})).tiled);  // no unit-stride source dim
  // Thin planes: an image [H·W,3] → [3,H·W], and a 7-wide one.
  CHECK(!plan_transpose_copy(merged({3, 4096}, {1, 3}, {4096, 1})).tiled);
  CHECK(!plan_transpose_copy(merged({7, 33}, {1, 7}, {33, 1})).tiled);
  CHECK(plan_transpose_copy(merged({8, 8}, {1, 8}, {8, 1})).tiled);
  // A destination with no unit-stride dim.
  CHECK(!plan_transpose_copy(merged({16, 16}, {1, 16}, {32, 2})).tiled);

  // More tiles than 65536 blocks: the blocks loop.
  p = plan_transpose_copy(merged({70000, 8, 8}, {64, 1, 8}, {64, 8, 1}));
  REQUIRE(p.tiled);
  CHECK(p.tiles() == 70000);
  CHECK(p.blocks() == 65536);
}

TEST_CASE("copy plan: the tiled kernel writes every element once, from the right place, on odd shapes") {
  const std::vector<int64_t> sizes = {1, 7, 32, 33, 65, 197};
  for (int64_t a : sizes) {
    for (int64_t b : sizes) {
      // x [a,b] contiguous → xᵀ [b,a]; tiled over its (i, j) plane whatever its sides.
      const Dims shape = {b, a}, src = {1, b}, dst = {a, 1};
      const MergedDims<2> m = merged(shape, src, dst);
      if (m.ndim != 2) continue;  // a side of 1: the copy is contiguous, no plane
      emulate_all_grids(shape, src, dst, tile_plan(m, 0, 1));
    }
  }
  // Batched: [3,33,65] → transpose(1,2); [2,3,197,64] → transpose(2,3) (two batch dims).
  const Dims x3 = {3, 33, 65};
  const Dims shape3 = permuted(x3, {0, 2, 1}), src3 = permuted(contiguous(x3), {0, 2, 1});
  TransposeCopyPlan p = plan_transpose_copy(merged(shape3, src3, contiguous(shape3)));
  emulate_all_grids(shape3, src3, contiguous(shape3), p);
  const Dims x4 = {2, 3, 197, 64};
  const Dims shape4 = permuted(x4, {0, 1, 3, 2}), src4 = permuted(contiguous(x4), {0, 1, 3, 2});
  p = plan_transpose_copy(merged(shape4, src4, contiguous(shape4)));
  REQUIRE(p.batch == 6);
  CHECK(p.batch_ndim == 1);  // B and H merge: one batch dim of 6
  emulate_all_grids(shape4, src4, contiguous(shape4), p);
  // Two batch dims that cannot merge: x [2,9,3,10].permute(2,0,3,1) → [3,2,10,9].
  const Dims x5 = {2, 9, 3, 10};
  const Dims shape5 = permuted(x5, {2, 0, 3, 1}), src5 = permuted(contiguous(x5), {2, 0, 3, 1});
  p = plan_transpose_copy(merged(shape5, src5, contiguous(shape5)));
  REQUIRE(p.tiled);
  CHECK(p.batch_ndim == 2);
  emulate_all_grids(shape5, src5, contiguous(shape5), p);
  // A strided destination: dst [40,50] viewed transposed, the source contiguous [50,40].
  emulate_all_grids({50, 40}, {40, 1}, {1, 50}, plan_transpose_copy(merged({50, 40}, {40, 1}, {1, 50})));
  // A destination that is itself a slice (row stride 70 for 50 columns).
  emulate_all_grids({33, 50}, {1, 33}, {70, 1}, plan_transpose_copy(merged({33, 50}, {1, 33}, {70, 1})));
}

TEST_CASE("copy plan: each warp's shared-memory accesses fall in different banks, for every element size") {
  // Cell (row, col) of elements of `bytes` bytes lies at byte (row·pitch + col)·bytes, in
  // 4-byte word w, bank w mod 32. A warp is the 32 threads x = 0…31 of one y (threadIdx.x
  // varies fastest); at each step k each touches one cell. Accesses of 8 bytes are served a
  // half-warp at a time. A conflict is two different words in one bank in one service.
  const TransposeCopyPlan p = plan_transpose_copy(merged({64, 64}, {1, 64}, {64, 1}));
  REQUIRE(p.tiled);
  const TileOrigin o = tile_origin(p, 0);
  for (int bytes : {1, 2, 4, 8}) {
    INFO(bytes << "-byte elements");
    const int pitch = tile_pitch(bytes), group = bytes == 8 ? 16 : 32;
    CHECK(pitch >= kTile);
    int worst = 0;
    for (int y = 0; y < kTileRows; ++y) {
      for (int k = 0; k < kTileSteps; ++k) {
        for (int phase = 0; phase < 2; ++phase) {
          for (int x0 = 0; x0 < kTile; x0 += group) {
            std::vector<std::set<int64_t>> words(32);
            for (int x = x0; x < x0 + group; ++x) {
              const TileStep s = phase == 0 ? tile_read(p, o, x, y, k) : tile_write(p, o, x, y, k);
              const int64_t word = (int64_t{s.row} * pitch + s.col) * bytes / 4;
              words[static_cast<size_t>(word % 32)].insert(word);
            }
            for (const auto& w : words) worst = std::max(worst, static_cast<int>(w.size()));
          }
        }
      }
    }
    CHECK(worst == 1);
  }
}
