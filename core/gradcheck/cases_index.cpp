// Gradcheck cases for joining, splitting, indexing (core/ops/index.cpp) and dropout.
// Odd sizes throughout; index inputs repeat values, so the scatter-adds sum.
#include "core/gradcheck/cases.h"

namespace mmg::gradcheck_cases {

void add_index_cases(std::vector<GradcheckCase>& c) {
  add(c, "cat", "[2,3,5] | [2,1,5] | [2,4,5] dim 1", {f64({2, 3, 5}), f64({2, 1, 5}), f64({2, 4, 5})},
      [](const Args& x) { return cat({x[0], x[1], x[2]}, 1); });
  add(c, "cat", "transposed [5,3] | [3,2] dim -1", {f64({5, 3}), f64({3, 2})},
      [](const Args& x) { return cat({transpose(x[0], 0, 1), x[1]}, -1); });
  add(c, "cat", "x | x (same input twice) dim 0", {f64({3, 7})}, [](const Args& x) { return cat({x[0], x[0]}, 0); });
  add(c, "stack", "[3,5] x 3 dim 1", {f64({3, 5}), f64({3, 5}), f64({3, 5})},
      [](const Args& x) { return stack({x[0], x[1], x[2]}, 1); });
  add(c, "stack", "[7] x 2 dim -1", {f64({7}), f64({7})}, [](const Args& x) { return stack({x[0], x[1]}, -1); });
  // [4,7] split by 3 -> [4,3],[4,3],[4,1]: every piece feeds the output.
  add(c, "split", "[4,7] size 3 dim 1", {f64({4, 7})}, [](const Args& x) {
    auto p = split(x[0], 3, 1);
    return cat({p[2], p[0] * p[1]}, 1);
  });
  // [5,3] in 2 chunks -> [3,3],[2,3].
  add(c, "chunk", "[5,3] 2 chunks dim 0", {f64({5, 3})}, [](const Args& x) {
    auto p = chunk(x[0], 2, 0);
    return cat({p[1] * p[1], p[0]}, 0);
  });
  add(c, "index_select", "[5,7] dim 0, 9 indices", {f64({5, 7}), idx({9}, 5)},
      [](const Args& x) { return index_select(x[0], 0, x[1]); });
  add(c, "index_select", "[3,7,4] dim -2, 6 indices", {f64({3, 7, 4}), idx({6}, 7)},
      [](const Args& x) { return index_select(x[0], -2, x[1]); });
  // take_rows and put_rows need an index without repeats: a fixed one, made inside fn.
  add(c, "take_rows", "[7,3] rows 5, 0, 3", {f64({7, 3})},
      [](const Args& x) { return take_rows(x[0], from_vector<int64_t>({5, 0, 3})); });
  add(c, "take_rows", "transposed [5,2,3] all 5 rows reversed", {f64({2, 5, 3})},
      [](const Args& x) { return take_rows(transpose(x[0], 0, 1), from_vector<int64_t>({4, 3, 2, 1, 0})); });
  add(c, "put_rows", "[3,4] into rows 4, 1, 5 of 6", {f64({3, 4})},
      [](const Args& x) { return put_rows(x[0], from_vector<int64_t>({4, 1, 5}), 6); });
  add(c, "put_rows", "[2,3,2] into rows 0, 2 of 3", {f64({2, 3, 2})},
      [](const Args& x) { return put_rows(x[0], from_vector<int64_t>({0, 2}), 3); });
  add(c, "gather", "[4,6] dim 1, index [4,9]", {f64({4, 6}), idx({4, 9}, 6)},
      [](const Args& x) { return gather(x[0], 1, x[1]); });
  add(c, "gather", "[5,6,3] dim 1, index [3,4,2]", {f64({5, 6, 3}), idx({3, 4, 2}, 6)},
      [](const Args& x) { return gather(x[0], 1, x[1]); });
  add(c, "gather", "permuted [3,5] dim 0, index [7,3]", {f64({5, 3}), idx({7, 3}, 3)},
      [](const Args& x) { return gather(transpose(x[0], 0, 1), 0, x[1]); });
  add(c, "masked_fill", "[3,5] mask [5]", {f64({3, 5}), mask({5})},
      [](const Args& x) { return masked_fill(x[0], x[1], -3.0); });
  add(c, "masked_fill", "[2,3,5] mask [3,1]", {f64({2, 3, 5}), mask({3, 1})},
      [](const Args& x) { return masked_fill(x[0], x[1], 0.0); });
  add(c, "embedding", "[7,5] indices [3,4]", {f64({7, 5}), idx({3, 4}, 7)},
      [](const Args& x) { return embedding(x[0], x[1]); });
  add(c, "embedding", "[3,2] indices [11] (repeats)", {f64({3, 2}), idx({11}, 3)},
      [](const Args& x) { return embedding(x[0], x[1]); });
  // A generator made inside fn: every evaluation draws the same mask.
  add(c, "dropout", "[7,9] p 0.3", {f64({7, 9})}, [](const Args& x) {
    Generator g(5);
    return dropout(x[0], 0.3, true, &g);
  });
  add(c, "dropout", "transposed [5,3] p 0.5", {f64({3, 5})}, [](const Args& x) {
    Generator g(11);
    return dropout(transpose(x[0], 0, 1), 0.5, true, &g);
  });
}

}  // namespace mmg::gradcheck_cases
