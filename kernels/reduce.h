// Row reductions: the input is viewed as [rows, cols] (reduced dims moved last and made
// contiguous by the op), and each row reduces to one value.
#pragma once
#include <cstdint>

namespace mmg::cpu {

// out[r] = Σ_c x[r, c]. Float rows accumulate in double, so a sum of a million f32 values
// keeps its precision (and the result is independent of the thread count).
template <class T>
void sum_rows(const T* x, T* out, int64_t rows, int64_t cols);

}  // namespace mmg::cpu
