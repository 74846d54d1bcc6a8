// Rows of a 16-bit tensor as float rows, for the CPU row kernels (softmax, layer_norm).
//
// The row math is written once, on rows of acc_t<T> (kernels/acc_type.h). For T = float or
// double it runs on the rows themselves; for bf16/f16 a row is widened into a float buffer
// first, and the result row, computed in a float buffer, is rounded once as it is stored. So
// a 16-bit op gives exactly round(f32 op(widen(x))): the float kernel's numbers, bit for bit.
#pragma once
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/acc_type.h"

namespace mmg::cpu {

// The row as acc_t<T>: the row itself, or its widened copy in buf.
template <class T>
const acc_t<T>* widen_row(const T* row, int64_t n, std::vector<acc_t<T>>& buf) {
  if constexpr (std::is_same_v<T, acc_t<T>>) {
    return row;
  } else {
    buf.resize(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) buf[j] = static_cast<float>(row[j]);
    return buf.data();
  }
}

// Where a result row is computed: the output row itself, or buf (then store_row rounds it
// into the output).
template <class T>
acc_t<T>* result_row(T* row, int64_t n, std::vector<acc_t<T>>& buf) {
  if constexpr (std::is_same_v<T, acc_t<T>>) {
    return row;
  } else {
    buf.resize(static_cast<size_t>(n));
    return buf.data();
  }
}

template <class T>
void store_row(const acc_t<T>* result, T* row, int64_t n) {
  if constexpr (!std::is_same_v<T, acc_t<T>>) {
    for (int64_t j = 0; j < n; ++j) row[j] = T(result[j]);
  }
}

}  // namespace mmg::cpu
