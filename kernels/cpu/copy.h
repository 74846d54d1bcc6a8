// copy_cast: dst[i] = Dst(src[i]) over a strided source and a strided destination.
//
// The kernel behind contiguous(), clone(), to(dtype) and copy_(). Both sides are walked
// with one Odometer; when both are contiguous it is a straight loop the compiler
// vectorises. Conversions go through float for bf16/f16 (their only arithmetic type).
#pragma once
#include <cstdint>
#include <type_traits>

#include "kernels/cpu/parallel.h"
#include "kernels/half.h"
#include "kernels/strided.h"

namespace mmg::cpu {

template <class Dst, class Src>
inline Dst convert_value(Src v) {
  if constexpr (std::is_same_v<Dst, Src>) return v;
  else if constexpr (std::is_same_v<Src, bf16> || std::is_same_v<Src, f16>) return convert_value<Dst>(static_cast<float>(v));
  else if constexpr (std::is_same_v<Dst, bool>) return v != Src(0);
  else if constexpr (std::is_same_v<Dst, bf16> || std::is_same_v<Dst, f16>) return Dst(static_cast<float>(v));
  else return static_cast<Dst>(v);
}

template <class Dst, class Src>
void copy_cast(const Src* src, const int64_t* src_strides, Dst* dst, const int64_t* dst_strides, int ndim,
               const int64_t* shape, int64_t n, bool both_contiguous) {
  if (both_contiguous) {
    parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) dst[i] = convert_value<Dst>(src[i]);
    });
    return;
  }
  parallel_for(n, 1 << 15, [&](int64_t b, int64_t e) {
    Odometer<2> it(ndim, shape, {src_strides, dst_strides});
    it.seek(b);
    for (int64_t i = b; i < e; ++i, it.next()) dst[it.offset[1]] = convert_value<Dst>(src[it.offset[0]]);
  });
}

}  // namespace mmg::cpu
