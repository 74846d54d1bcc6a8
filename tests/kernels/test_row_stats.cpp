// The v2 row kernels' statistics (kernels/cuda/row_stats.h) on the CPU, run in the kernels'
// own order: each of the group's threads (a warp of 32, or a block of 256 in 8 warps) adds
// the elements of its packs p = t, t + threads, ... (V = 4 or 1 elements each), then the
// group combines them as the kernels do — the softmax statistics by a butterfly (lane l with
// lane l XOR offset), Welford's to lane 0 (lane l with lane l + offset, or itself past lane
// 31) and broadcast, a block's warps in order. The results are compared with float64
// references, and every lane must end with the same numbers. This checks the kernels'
// arithmetic and reduction order where no GPU is; the kernels themselves are checked on a
// GPU by tests/cuda/test_softmax.cpp and test_layer_norm.cpp.
//
// bf16/f16 rows: the kernels widen each element to float as they read it and use packs of 8
// (16 bytes) where the rows fit them (kernels/cuda/pack_width.h, tested here too), so the
// same statistics run on the widened rows with V = 8, and the outputs are rounded once.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <type_traits>
#include <vector>

#include "kernels/cuda/pack_width.h"
#include "kernels/cuda/row_stats.h"
#include "kernels/half.h"

using namespace mmg::cuda;

namespace {

constexpr int kWarp = 32;

// The threads of a group and what each accumulated from its packs.
template <class Stats>
std::vector<Stats> per_thread(const std::vector<float>& row, int threads, int V, void (*add)(Stats&, float)) {
  std::vector<Stats> st(threads);
  const int64_t packs = static_cast<int64_t>(row.size()) / V;
  for (int t = 0; t < threads; ++t)
    for (int64_t p = t; p < packs; p += threads)
      for (int i = 0; i < V; ++i) add(st[t], row[p * V + i]);
  return st;
}

bool same(float a, float b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

// The butterfly of group_softmax_stats: after it every lane holds the warp's statistics; a
// block then combines its warps' lane-0 results in warp order.
SoftmaxStats<float> group_softmax(std::vector<SoftmaxStats<float>> st) {
  const int warps = static_cast<int>(st.size()) / kWarp;
  for (int w = 0; w < warps; ++w) {
    SoftmaxStats<float>* lane = &st[w * kWarp];
    for (int offset = 16; offset > 0; offset /= 2) {
      std::vector<SoftmaxStats<float>> next(kWarp);
      for (int l = 0; l < kWarp; ++l) next[l] = softmax_stats_combine(lane[l], lane[l ^ offset]);
      std::copy(next.begin(), next.end(), lane);
    }
    for (int l = 1; l < kWarp; ++l) {
      REQUIRE(same(lane[l].m, lane[0].m));
      REQUIRE(same(lane[l].s, lane[0].s));
    }
  }
  if (warps == 1) return st[0];
  SoftmaxStats<float> total = st[0];
  for (int w = 1; w < warps; ++w) total = softmax_stats_combine(total, st[w * kWarp]);
  return total;
}

// group_welford: lane l takes lane l + offset (its own value past lane 31), lane 0's result
// is broadcast; a block combines its warps in order, starting from nothing.
WelfordStats<float> group_welford(std::vector<WelfordStats<float>> st) {
  const int warps = static_cast<int>(st.size()) / kWarp;
  std::vector<WelfordStats<float>> warp_result(warps);
  for (int w = 0; w < warps; ++w) {
    WelfordStats<float>* lane = &st[w * kWarp];
    for (int offset = 16; offset > 0; offset /= 2) {
      std::vector<WelfordStats<float>> next(kWarp);
      for (int l = 0; l < kWarp; ++l) next[l] = welford_combine(lane[l], lane[l + offset < kWarp ? l + offset : l]);
      std::copy(next.begin(), next.end(), lane);
    }
    warp_result[w] = lane[0];
  }
  if (warps == 1) return warp_result[0];
  WelfordStats<float> total;
  for (const auto& part : warp_result) total = welford_combine(total, part);
  return total;
}

// The v2 forward kernel's softmax of one row, in float.
std::vector<float> softmax_v2(const std::vector<float>& row, int threads, int V) {
  const SoftmaxStats<float> st = group_softmax(per_thread<SoftmaxStats<float>>(row, threads, V, softmax_stats_add));
  std::vector<float> y(row.size());
  const float inv = 1.0f / st.s;
  for (size_t i = 0; i < row.size(); ++i) y[i] = std::exp(row[i] - st.m) * inv;
  return y;
}

std::vector<double> softmax_f64(const std::vector<float>& row) {
  double m = -INFINITY, s = 0;
  for (float x : row) m = std::max(m, static_cast<double>(x));
  for (float x : row) s += std::exp(x - m);
  std::vector<double> y;
  for (float x : row) y.push_back(std::exp(x - m) / s);
  return y;
}

std::vector<float> random_row(int64_t n, float lo, float hi, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> r(n);
  for (float& x : r) x = u(rng);
  return r;
}

// The kernels' shapes: a warp for rows up to 1024, else a block; packs of 4 where cols % 4 == 0.
struct GroupShape {
  int threads, V;
};
std::vector<GroupShape> shapes_for(int64_t cols) {
  const int threads = cols <= 1024 ? kWarp : 256;
  std::vector<GroupShape> s = {{threads, 1}};
  if (cols % 4 == 0) s.push_back({threads, 4});
  return s;
}

}  // namespace

TEST_CASE("row stats: the v2 softmax statistics, in the kernels' order, match float64 at odd and long rows") {
  std::mt19937 rng(7);
  for (int64_t cols : {1, 3, 7, 32, 33, 257, 768, 1020, 1024, 1025, 3072, 4099}) {
    for (const GroupShape& sh : shapes_for(cols)) {
      const std::vector<float> row = random_row(cols, -8, 8, rng);
      const std::vector<float> y = softmax_v2(row, sh.threads, sh.V);
      const std::vector<double> want = softmax_f64(row);
      double worst = 0;
      for (int64_t i = 0; i < cols; ++i) worst = std::max(worst, std::abs(y[i] - want[i]) / want[i]);
      INFO("cols " << cols << " threads " << sh.threads << " V " << sh.V);
      CHECK(worst < 1e-5);
    }
  }
}

TEST_CASE("row stats: softmax statistics of large logits, masked entries, rows of -inf, +inf and NaN") {
  std::mt19937 rng(11);
  // ±1e4 would overflow exp without the running max.
  const std::vector<float> big = random_row(300, -1e4f, 1e4f, rng);
  const std::vector<float> y = softmax_v2(big, kWarp, 1);
  const std::vector<double> want = softmax_f64(big);
  for (size_t i = 0; i < big.size(); ++i) CHECK(std::abs(y[i] - want[i]) <= 1e-6 + 1e-5 * want[i]);

  // Masked entries (−∞) add nothing, wherever they fall among a lane's elements.
  std::vector<float> masked = random_row(100, -3, 3, rng);
  for (size_t i = 0; i < masked.size(); i += 3) masked[i] = -INFINITY;
  masked[1] = -INFINITY;  // lane 1's first element
  const std::vector<float> ym = softmax_v2(masked, kWarp, 1);
  const std::vector<double> wm = softmax_f64(masked);
  for (size_t i = 0; i < masked.size(); ++i) CHECK(std::abs(ym[i] - wm[i]) <= 1e-7 + 1e-5 * wm[i]);
  for (size_t i = 0; i < masked.size(); i += 3) CHECK(ym[i] == 0.0f);

  // A row of all −∞ comes out NaN (as v1 and the CPU), as does a row with +∞ or NaN in it.
  for (float bad : {-INFINITY, INFINITY, NAN}) {
    std::vector<float> row = bad == -INFINITY ? std::vector<float>(40, -INFINITY) : random_row(40, -1, 1, rng);
    row[17] = bad;
    for (int V : {1, 4})
      for (float v : softmax_v2(row, kWarp, V)) CHECK(std::isnan(v));
  }
}

TEST_CASE("row stats: the v2 layer_norm Welford statistics, in the kernels' order, match float64") {
  std::mt19937 rng(3);
  for (double offset : {0.0, 1000.0}) {
    for (int64_t cols : {1, 2, 7, 33, 768, 1024, 1025, 3072, 4099}) {
      for (const GroupShape& sh : shapes_for(cols)) {
        const std::vector<float> row =
            random_row(cols, static_cast<float>(offset - 2), static_cast<float>(offset + 2), rng);
        const WelfordStats<float> st =
            group_welford(per_thread<WelfordStats<float>>(row, sh.threads, sh.V, welford_add));
        double mean = 0, m2 = 0;
        for (float x : row) mean += x;
        mean /= static_cast<double>(cols);
        for (float x : row) m2 += (x - mean) * (x - mean);
        INFO("offset " << offset << " cols " << cols << " threads " << sh.threads << " V " << sh.V);
        CHECK(st.n == static_cast<float>(cols));
        CHECK(std::abs(st.mean - mean) <= 1e-6 * (std::abs(mean) + 1));
        // Variance relative to itself: no cancellation even with a mean 1000× the spread.
        if (cols > 1)
          CHECK(std::abs(st.m2 - m2) <= 2e-4 * m2);
        else
          CHECK(st.m2 == 0.0f);
      }
    }
  }
}

TEST_CASE("row stats: combining with an empty part changes nothing, in either order") {
  WelfordStats<float> a;
  for (float x : {1.0f, 2.0f, 4.0f}) welford_add(a, x);
  const WelfordStats<float> empty;
  for (const WelfordStats<float>& r : {welford_combine(a, empty), welford_combine(empty, a)}) {
    CHECK(r.n == a.n);
    CHECK(r.mean == a.mean);
    CHECK(r.m2 == a.m2);
  }
  SoftmaxStats<float> s;
  softmax_stats_add(s, 0.5f);
  const SoftmaxStats<float> none;
  for (const SoftmaxStats<float>& r : {softmax_stats_combine(s, none), softmax_stats_combine(none, s)}) {
    CHECK(r.m == 0.5f);
    CHECK(r.s == 1.0f);
  }
  const SoftmaxStats<float> both_empty = softmax_stats_combine(none, none);
  CHECK(both_empty.s == 0.0f);  // never NaN: lanes with no element are common (short rows)
}

// ---- 16-bit rows: packs of 8 ----

TEST_CASE("row stats: pack widths, and which rows and pointers take packs") {
  CHECK(pack_width<float> == 4);
  CHECK(pack_width<mmg::bf16> == 8);
  CHECK(pack_width<mmg::f16> == 8);
  CHECK(pack_width<double> == 1);
  alignas(16) static unsigned char buf[64];
  const void* aligned = buf;
  const void* plus2 = buf + 2;   // one 16-bit element past aligned
  const void* plus16 = buf + 16; // eight
  // Whole packs and aligned pointers (nullptr, an absent γ or β, counts as aligned).
  CHECK(packs_fit<mmg::bf16>(768, {aligned, plus16, nullptr}));
  CHECK(packs_fit<mmg::f16>(8, {aligned}));
  CHECK(packs_fit<float>(772, {aligned}));
  // 772 is whole float4s but not whole packs of 8 halves; 769, 7, 1 are neither.
  for (int64_t cols : {772, 769, 7, 1, 4}) CHECK_FALSE(packs_fit<mmg::bf16>(cols, {aligned}));
  // A misaligned pointer anywhere in the list: one element at a time.
  CHECK_FALSE(packs_fit<mmg::bf16>(768, {aligned, plus2}));
  CHECK_FALSE(packs_fit<float>(768, {plus2, aligned}));
  // Doubles never take packs.
  CHECK_FALSE(packs_fit<double>(768, {aligned}));
}

namespace {

template <class H>
std::vector<float> rounded_row(int64_t n, float lo, float hi, std::mt19937& rng) {
  std::vector<float> r = random_row(n, lo, hi, rng);
  for (float& x : r) x = static_cast<float>(H(x));  // the 16-bit values, widened
  return r;
}

// The kernels' group for a 16-bit row: a warp up to 1024, else a block; packs of 8 where
// the length is a multiple of 8 (aligned rows), else one element.
GroupShape shape_16bit(int64_t cols) {
  return {cols <= 1024 ? kWarp : 256, packs_fit<mmg::bf16>(cols, {}) ? 8 : 1};
}

template <class H>
constexpr double half_ulp = std::is_same_v<H, mmg::bf16> ? 1.0 / 256 : 1.0 / 2048;

template <class H>
void check_softmax_16bit(int64_t cols, std::mt19937& rng) {
  const GroupShape sh = shape_16bit(cols);
  const std::vector<float> row = rounded_row<H>(cols, -8, 8, rng);
  const std::vector<float> yf = softmax_v2(row, sh.threads, sh.V);
  const std::vector<double> want = softmax_f64(row);
  INFO("cols " << cols << " threads " << sh.threads << " V " << sh.V);
  int64_t off = 0;
  for (int64_t i = 0; i < cols; ++i) {
    const double y = static_cast<float>(H(yf[i]));  // the kernel's store: one rounding
    off += std::abs(y - want[i]) > (half_ulp<H> + 1e-5) * want[i] + (std::is_same_v<H, mmg::f16> ? 0x1p-25 : 0.0);
  }
  CHECK(off == 0);
}

}  // namespace

TEST_CASE("row stats: the v2 statistics of bf16 and f16 rows, in packs of 8 where they fit, match float64") {
  std::mt19937 rng(13);
  for (int64_t cols : {1, 7, 8, 127, 768, 769, 1024, 1032, 3072, 3073}) {
    check_softmax_16bit<mmg::bf16>(cols, rng);
    check_softmax_16bit<mmg::f16>(cols, rng);
    // Welford on the widened 16-bit row.
    const GroupShape sh = shape_16bit(cols);
    const std::vector<float> row = rounded_row<mmg::bf16>(cols, -2, 2, rng);
    const WelfordStats<float> st = group_welford(per_thread<WelfordStats<float>>(row, sh.threads, sh.V, welford_add));
    double mean = 0, m2 = 0;
    for (float x : row) mean += x;
    mean /= static_cast<double>(cols);
    for (float x : row) m2 += (x - mean) * (x - mean);
    INFO("welford cols " << cols << " V " << sh.V);
    CHECK(st.n == static_cast<float>(cols));
    CHECK(std::abs(st.mean - mean) <= 1e-6 * (std::abs(mean) + 1));
    if (cols > 1) CHECK(std::abs(st.m2 - m2) <= 2e-4 * m2);
  }
}
