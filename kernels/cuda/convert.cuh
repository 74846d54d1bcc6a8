// convert<Dst>(v): one element from one dtype to another, in device code, exactly as
// cpu::convert_value (kernels/cpu/copy.h) does on the host, so the two devices agree bit for
// bit: bf16/f16 through float (the same rounding code, kernels/half.h), to bool is v != 0,
// the rest a static_cast.
#pragma once
#include <type_traits>

#include "kernels/half.h"

namespace mmg::cuda {

template <class T>
constexpr bool is_half_v = std::is_same_v<T, bf16> || std::is_same_v<T, f16>;

template <class Dst, class Src>
__host__ __device__ inline Dst convert(Src v) {
  if constexpr (std::is_same_v<Dst, Src>) return v;
  else if constexpr (is_half_v<Src>) return convert<Dst>(static_cast<float>(v));
  else if constexpr (std::is_same_v<Dst, bool>) return v != Src(0);
  else if constexpr (is_half_v<Dst>) return Dst(static_cast<float>(v));
  else return static_cast<Dst>(v);
}

}  // namespace mmg::cuda
