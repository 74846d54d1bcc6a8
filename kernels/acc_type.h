// acc_t<T>: the type a row kernel (softmax, layer_norm) computes and accumulates in for
// elements stored as T — float for bf16 and f16 (and float), double for double. A 16-bit
// input is widened to float as it is read, every max, sum and exp runs in float, and the
// result is rounded to T once, as it is stored (PyTorch's rule for half-precision inputs).
#pragma once
#include <type_traits>

#include "kernels/half.h"

namespace mmg {

template <class T>
constexpr bool is_16bit_float_v = std::is_same_v<T, bf16> || std::is_same_v<T, f16>;

template <class T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

}  // namespace mmg
