// The v2 elementwise kernels' choices and pack arithmetic (kernels/cuda/elementwise_plan.h)
// on the CPU: which layouts take the flat and rows paths (and which fall back to the scalar
// kernel), and an emulation of the packed kernels' loops — every thread of the launch grid,
// its packs by the grid-stride loop, the tail one element a thread — that must produce each
// output element exactly once, from the operand elements a naive broadcast picks. The kernels
// themselves run on a GPU in tests/cuda/test_elementwise.cpp.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/cuda/elementwise_plan.h"

using namespace mmg;
using namespace mmg::cuda;

namespace {

using Dims = std::vector<int64_t>;

// The plan of a ∘ b over `shape` with the operands' strides (0 along broadcast dims).
BinaryPackPlan plan_for(const Dims& shape, const Dims& sa, const Dims& sb, int width, bool a_al = true,
                        bool b_al = true, bool out_al = true) {
  const MergedDims<2> m(static_cast<int>(shape.size()), shape.data(), {sa.data(), sb.data()});
  return plan_binary_packs(m, width, a_al, b_al, out_al);
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

// The launch the .cu file makes: blocks of 256, grid_for(packs) (kernels/cuda/check.cuh:
// at least 1, at most 65536), or a grid of 1 or 3 blocks to make the grid-stride loop go
// round (the tail needs no more threads than one block has: V ≤ 16 < 256).
constexpr int kBlock = 256;
int64_t grid_for(int64_t n) { return std::max<int64_t>(1, std::min<int64_t>((n + kBlock - 1) / kBlock, 65536)); }

// What the packed binary kernels read for each output element, thread by thread: for output
// element i, the pair (offset in a, offset in b). Every element must be visited once.
std::vector<std::pair<int64_t, int64_t>> emulate_binary(const BinaryPackPlan& plan, int64_t n, int V, int64_t blocks,
                                                        std::vector<int>& visits) {
  std::vector<std::pair<int64_t, int64_t>> read(n, {-1, -1});
  visits.assign(n, 0);
  const int64_t threads = blocks * kBlock;
  const int64_t packs = whole_packs(n, V);
  for (int64_t g = 0; g < threads; ++g) {
    for (int64_t p = g; p < packs; p += threads) {
      int64_t oa = 0, ob = 0;
      if (plan.path == PackPath::rows) {
        rows_pack_offsets(plan, p, V, oa, ob);
      } else {  // flat: a walked operand starts its pack at p·V, a repeated one reads element 0
        oa = plan.a_stride == 1 ? p * V : 0;
        ob = plan.b_stride == 1 ? p * V : 0;
      }
      for (int k = 0; k < V; ++k) {
        const int64_t i = p * V + k;
        REQUIRE(i < n);
        // Within a pack a walked operand steps by one element, a repeated one stays put.
        const bool a_walks = plan.path == PackPath::rows || plan.a_stride == 1;
        const bool b_walks = plan.path == PackPath::rows || plan.b_stride == 1;
        read[i] = {oa + (a_walks ? k : 0), ob + (b_walks ? k : 0)};
        ++visits[i];
      }
    }
    if (plan.path == PackPath::flat) {  // the tail (the rows path has none: V divides N)
      const int64_t i = packs * V + g;
      if (i < n) {
        read[i] = {plan.a_stride == 1 ? i : 0, plan.b_stride == 1 ? i : 0};
        ++visits[i];
      }
    }
  }
  return read;
}

// The emulation against a naive broadcast: every element once, from the right operand elements.
void check_binary(const Dims& shape, const Dims& sa, const Dims& sb, int V, PackPath want) {
  INFO("shape " << shape.size() << "-d, n " << count(shape) << ", V " << V);
  const BinaryPackPlan plan = plan_for(shape, sa, sb, V);
  REQUIRE(plan.path == want);
  const int64_t n = count(shape);
  for (int64_t blocks : {grid_for(whole_packs(n, V)), int64_t{1}, int64_t{3}}) {
    std::vector<int> visits;
    const auto read = emulate_binary(plan, n, V, blocks, visits);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (visits[i] != 1 || read[i].first != offset_of(i, shape, sa) || read[i].second != offset_of(i, shape, sb)) ++bad;
    }
    CHECK_MESSAGE(bad == 0, bad << " elements of " << n << " wrong with " << blocks << " blocks");
  }
}

}  // namespace

TEST_CASE("elementwise plan: a pack is 16 bytes of any dtype") {
  CHECK(vector_width<float> == 4);
  CHECK(vector_width<double> == 2);
  CHECK(vector_width<int32_t> == 4);
  CHECK(vector_width<int64_t> == 2);
  CHECK(vector_width<uint8_t> == 16);
  CHECK(vector_width<uint16_t> == 8);  // the size of bf16 and f16
  alignas(16) float buf[8] = {};
  CHECK(aligned_16({buf, buf + 4}));
  CHECK(!aligned_16({buf, buf + 1}));
  CHECK(!aligned_16({buf + 2}));
  CHECK(whole_packs(4097, 4) == 1024);
  CHECK(whole_packs(3, 4) == 0);
}

TEST_CASE("elementwise plan: same-shape and scalar operands take the flat path, bias rows the rows path") {
  // Same shape, contiguous: one merged dim, both walked.
  BinaryPackPlan p = plan_for({5, 33}, {33, 1}, {33, 1}, 4);
  CHECK(p.path == PackPath::flat);
  CHECK(p.cols == 165);
  CHECK(p.a_stride == 1);
  CHECK(p.b_stride == 1);
  // A scalar on either side (stride 0 everywhere).
  p = plan_for({5, 33}, {0, 0}, {33, 1}, 4);
  CHECK(p.path == PackPath::flat);
  CHECK(p.a_stride == 0);
  CHECK(p.b_stride == 1);
  p = plan_for({}, {}, {}, 2);  // 0-d: one element
  CHECK(p.path == PackPath::flat);
  CHECK(p.cols == 1);
  // [M,N] + [N], N a multiple of the width: rows, the bias repeated (row stride 0).
  p = plan_for({5, 32}, {32, 1}, {0, 1}, 4);
  CHECK(p.path == PackPath::rows);
  CHECK(p.rows == 5);
  CHECK(p.cols == 32);
  CHECK(p.a_stride == 32);
  CHECK(p.b_stride == 0);
  // The bias on the left, and [B,S,D] + [D] (B and S merge into the rows).
  p = plan_for({5, 32}, {0, 1}, {32, 1}, 4);
  CHECK(p.path == PackPath::rows);
  CHECK(p.a_stride == 0);
  CHECK(p.b_stride == 32);
  p = plan_for({3, 7, 48}, {7 * 48, 48, 1}, {0, 0, 1}, 16);
  CHECK(p.path == PackPath::rows);
  CHECK(p.rows == 21);
  CHECK(p.cols == 48);
  // Both operands a row repeated over the rows.
  p = plan_for({5, 8}, {0, 1}, {0, 1}, 4);
  CHECK(p.path == PackPath::rows);
  CHECK(p.a_stride == 0);
  CHECK(p.b_stride == 0);
}

TEST_CASE("elementwise plan: other layouts and misaligned pointers fall back to the scalar kernel") {
  CHECK(plan_for({5, 33}, {33, 1}, {0, 1}, 4).path == PackPath::scalar);      // N = 33: no multiple of 4
  CHECK(plan_for({5, 34}, {34, 1}, {0, 1}, 2).path == PackPath::rows);        // ... but of 2 (f64)
  CHECK(plan_for({5, 40}, {40, 1}, {0, 1}, 16).path == PackPath::scalar);     // u8 needs 16
  CHECK(plan_for({5, 32}, {32, 1}, {1, 0}, 4).path == PackPath::scalar);      // a column [5,1] broadcast
  CHECK(plan_for({5, 32}, {1, 5}, {32, 1}, 4).path == PackPath::scalar);      // a transposed operand
  CHECK(plan_for({5, 32}, {96, 3}, {32, 1}, 4).path == PackPath::scalar);     // a slice with a step
  CHECK(plan_for({2, 5, 32}, {160, 32, 1}, {32, 0, 1}, 4).path == PackPath::scalar);  // [2,1,32] broadcast: 3 dims
  // Alignment: a walked operand must be aligned; a repeated scalar need not be.
  CHECK(plan_for({5, 33}, {33, 1}, {33, 1}, 4, false, true, true).path == PackPath::scalar);
  CHECK(plan_for({5, 33}, {33, 1}, {33, 1}, 4, true, false, true).path == PackPath::scalar);
  CHECK(plan_for({5, 33}, {33, 1}, {33, 1}, 4, true, true, false).path == PackPath::scalar);
  CHECK(plan_for({5, 33}, {0, 0}, {33, 1}, 4, false, true, true).path == PackPath::flat);
  // The rows path reads the repeated bias row in packs too: it must be aligned.
  CHECK(plan_for({5, 32}, {32, 1}, {0, 1}, 4, true, false, true).path == PackPath::scalar);
  // A width of 1 never packs.
  CHECK(plan_for({5, 33}, {33, 1}, {33, 1}, 1).path == PackPath::scalar);
}

TEST_CASE("elementwise plan: the packed loops visit every element once, from the right operands, tails included") {
  for (int V : {2, 4, 16}) {
    for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{4}, int64_t{15}, int64_t{16}, int64_t{17}, int64_t{4097}}) {
      check_binary({n}, {1}, {1}, V, PackPath::flat);
      check_binary({n}, {0}, {1}, V, PackPath::flat);
      check_binary({n}, {1}, {0}, V, PackPath::flat);
    }
    for (int64_t M : {int64_t{1}, int64_t{5}, int64_t{197}}) {
      for (int64_t N : {int64_t{V}, int64_t{3 * V}, int64_t{48}, int64_t{768}}) {
        if (N % V != 0) continue;
        const PackPath want = M == 1 ? PackPath::flat : PackPath::rows;  // one row merges into one dim
        check_binary({M, N}, {N, 1}, {0, 1}, V, want);
        check_binary({M, N}, {0, 1}, {N, 1}, V, want);
      }
    }
    check_binary({3, 7, 16}, {7 * 16, 16, 1}, {0, 0, 1}, V, PackPath::rows);
  }
}
