#include "kernels/reduce.h"

#include <type_traits>

#include "kernels/cpu/parallel.h"

namespace mmg::cpu {

// Wide accumulator: double for floats, int64 for integers.
template <class T>
using Acc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;

template <class T>
void sum_rows(const T* x, T* out, int64_t rows, int64_t cols) {
  parallel_for(rows, std::max<int64_t>(1, (1 << 15) / std::max<int64_t>(cols, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const T* row = x + r * cols;
      Acc<T> acc = 0;
      for (int64_t c = 0; c < cols; ++c) acc += row[c];
      out[r] = static_cast<T>(acc);
    }
  });
}

template void sum_rows<float>(const float*, float*, int64_t, int64_t);
template void sum_rows<double>(const double*, double*, int64_t, int64_t);
template void sum_rows<int32_t>(const int32_t*, int32_t*, int64_t, int64_t);
template void sum_rows<int64_t>(const int64_t*, int64_t*, int64_t, int64_t);

}  // namespace mmg::cpu
