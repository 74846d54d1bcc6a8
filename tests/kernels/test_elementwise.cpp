// Elementwise and copy kernels (kernels/cpu/elementwise.h, copy.h) against a naive
// reference that computes every output element's operand offsets from scratch
// (Σ index_d · stride_d), on odd shapes: size-1 and 0-size dims, broadcast (stride 0)
// operands, transposed and sliced (non-contiguous) operands, and sizes large enough to be
// split over threads mid-row.
#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cpu/copy.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/parallel.h"

namespace {

using Dims = std::vector<int64_t>;

int64_t count(const Dims& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

// Offset of the element at row-major linear position i of `shape`, for `strides`.
int64_t offset_of(int64_t i, const Dims& shape, const Dims& strides) {
  int64_t off = 0;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    off += (i % shape[d]) * strides[d];
    i /= shape[d];
  }
  return off;
}

// A buffer big enough for every offset the strides reach, filled with distinct values.
std::vector<float> buffer_for(const Dims& shape, const Dims& strides, uint32_t seed) {
  int64_t last = 0;
  for (size_t d = 0; d < shape.size(); ++d)
    if (shape[d] > 0) last += (shape[d] - 1) * strides[d];
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-2, 2);
  std::vector<float> v(static_cast<size_t>(last + 1));
  for (auto& e : v) e = dist(gen);
  return v;
}

// One operand layout: strides for `shape`, from a permutation and per-dim step (non-contiguous
// when step > 1 or the order is permuted), with broadcast dims given stride 0.
Dims strides_for(const Dims& shape, const std::vector<int>& order, int64_t step, const std::vector<bool>& broadcast) {
  Dims strides(shape.size(), 0);
  int64_t s = step;
  for (int i = static_cast<int>(order.size()) - 1; i >= 0; --i) {
    int d = order[i];
    strides[d] = broadcast[d] ? 0 : s;
    if (!broadcast[d]) s *= std::max<int64_t>(shape[d], 1);
  }
  return strides;
}

struct Case {
  Dims shape;
  std::vector<int> order_a, order_b;
  int64_t step_a, step_b;
  std::vector<bool> bcast_a, bcast_b;
};

std::vector<Case> cases() {
  return {
      {{}, {}, {}, 1, 1, {}, {}},                                                               // 0-d
      {{7}, {0}, {0}, 1, 1, {false}, {true}},                                                   // vector · scalar
      {{5, 0, 3}, {0, 1, 2}, {0, 1, 2}, 1, 1, {false, false, false}, {false, false, false}},    // empty
      {{3, 1, 4}, {0, 1, 2}, {2, 1, 0}, 1, 1, {false, false, false}, {false, false, false}},    // a contiguous, b transposed
      {{4, 5, 6}, {0, 1, 2}, {0, 1, 2}, 1, 1, {false, false, false}, {true, true, false}},      // row broadcast (bias)
      {{4, 5, 6}, {0, 1, 2}, {0, 1, 2}, 1, 1, {false, false, false}, {false, false, true}},     // column broadcast
      {{4, 5, 6}, {0, 1, 2}, {0, 1, 2}, 2, 3, {true, false, false}, {false, true, false}},      // both broadcast, strided
      {{2, 3, 5, 7}, {0, 2, 1, 3}, {3, 2, 1, 0}, 1, 2, {false, false, false, false}, {false, true, false, true}},
      {{33, 1000}, {0, 1}, {0, 1}, 1, 1, {false, false}, {true, false}},                        // threads split rows
      {{97, 701}, {1, 0}, {0, 1}, 1, 1, {false, false}, {false, true}},                         // transposed, threaded
      {{70000}, {0}, {0}, 3, 1, {false}, {false}},                                              // long strided row
  };
}

}  // namespace

TEST_CASE("elementwise kernels: binary and ternary walks match a naive strided reference") {
  for (int threads : {1, 2, 3}) {
    mmg::cpu::set_num_threads(threads);
    int case_index = 0;
    for (const Case& c : cases()) {
      CAPTURE(threads);
      CAPTURE(case_index++);
      const int nd = static_cast<int>(c.shape.size());
      const Dims sa = strides_for(c.shape, c.order_a, c.step_a, c.bcast_a);
      const Dims sb = strides_for(c.shape, c.order_b, c.step_b, c.bcast_b);
      const std::vector<float> a = buffer_for(c.shape, sa, 1), b = buffer_for(c.shape, sb, 2);
      const int64_t n = count(c.shape);
      std::vector<float> out(static_cast<size_t>(n) + 1, -999.f);  // one guard element past the end
      auto f = [](float x, float y) { return x * y - y; };
      mmg::cpu::binary_kernel(a.data(), sa.data(), b.data(), sb.data(), out.data(), nd, c.shape.data(), n, f);
      bool all_ok = true;
      for (int64_t i = 0; i < n; ++i)
        all_ok = all_ok && out[i] == f(a[offset_of(i, c.shape, sa)], b[offset_of(i, c.shape, sb)]);
      CHECK(all_ok);
      CHECK(out[n] == -999.f);

      // where(cond, a, b): the condition walks with a's layout, a and b swap layouts.
      std::vector<uint8_t> cond_buf(a.size());
      for (size_t i = 0; i < cond_buf.size(); ++i) cond_buf[i] = (i * 7 + 3) % 5 < 2;
      std::vector<float> out3(static_cast<size_t>(n) + 1, -999.f);
      auto pick = [](uint8_t k, float x, float y) { return k ? x : y; };
      mmg::cpu::ternary_kernel(cond_buf.data(), sa.data(), b.data(), sb.data(), a.data(), sa.data(), out3.data(), nd,
                               c.shape.data(), n, pick);
      all_ok = true;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t oa = offset_of(i, c.shape, sa), ob = offset_of(i, c.shape, sb);
        all_ok = all_ok && out3[i] == pick(cond_buf[oa], b[ob], a[oa]);
      }
      CHECK(all_ok);
      CHECK(out3[n] == -999.f);
    }
  }
  mmg::cpu::set_num_threads(0);
}

TEST_CASE("copy_cast: strided sources into strided destinations match a naive reference") {
  for (int threads : {1, 2}) {
    mmg::cpu::set_num_threads(threads);
    int case_index = 0;
    for (const Case& c : cases()) {
      CAPTURE(threads);
      CAPTURE(case_index++);
      const int nd = static_cast<int>(c.shape.size());
      // The source may broadcast (read the same element twice); the destination may not.
      const Dims ss = strides_for(c.shape, c.order_b, c.step_b, c.bcast_b);
      const Dims ds = strides_for(c.shape, c.order_a, c.step_a, std::vector<bool>(c.shape.size(), false));
      const std::vector<float> src = buffer_for(c.shape, ss, 3);
      std::vector<float> fresh = buffer_for(c.shape, ds, 4);
      std::vector<double> dst(fresh.begin(), fresh.end());
      std::vector<double> expected = dst;
      const int64_t n = count(c.shape);
      for (int64_t i = 0; i < n; ++i) expected[offset_of(i, c.shape, ds)] = src[offset_of(i, c.shape, ss)];
      mmg::cpu::copy_cast<double, float>(src.data(), ss.data(), dst.data(), ds.data(), nd, c.shape.data(), n,
                                         /*both_contiguous=*/false);
      CHECK(dst == expected);  // also: elements the destination view does not cover are untouched
    }
  }
  mmg::cpu::set_num_threads(0);
}
