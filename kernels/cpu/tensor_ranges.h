// Many tensors' elements taken as one range [0, total), so a multi-tensor kernel (AdamW,
// gradient clipping) can cut the work by elements, not by tensors: most of a model's tensors
// are too small to be worth a thread, a few hold most of the elements.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

namespace mmg::cpu {

// start[t]: where tensor t begins in the range; start[count] = the total. size(t) gives tensor
// t's element count.
template <class Size>
std::vector<int64_t> tensor_starts(int64_t count, Size size) {
  std::vector<int64_t> start(static_cast<size_t>(count) + 1, 0);
  for (int64_t t = 0; t < count; ++t) start[t + 1] = start[t] + size(t);
  return start;
}

// f(t, begin, end) for each tensor t's part [begin, end) of the range [lo, hi), in order.
template <class F>
void for_each_tensor_part(const std::vector<int64_t>& start, int64_t lo, int64_t hi, F&& f) {
  const int64_t count = static_cast<int64_t>(start.size()) - 1;
  // The first tensor that reaches past lo, then each tensor's part of [lo, hi).
  int64_t t = std::upper_bound(start.begin(), start.end(), lo) - start.begin() - 1;
  for (; t < count && start[t] < hi; ++t) {
    const int64_t b = std::max(lo, start[t]) - start[t], e = std::min(hi, start[t + 1]) - start[t];
    if (b < e) f(t, b, e);
  }
}

}  // namespace mmg::cpu
