// copy_cast: dst[i] = Dst(src[i]) over a strided source and a strided destination.
//
// The kernel behind contiguous(), clone(), to(dtype) and copy_(). Three paths:
//  - both contiguous: a straight loop the compiler vectorises;
//  - general strides: the last two dims are copied in 32×32 tiles. A transposed read
//    (src stride 1 along rows, large along columns) would otherwise touch a new cache
//    line for every element; inside a tile both sides stay in cache;
//  - 0-d / 1-d: one Odometer walk.
// Conversions go through float for bf16/f16 (their only arithmetic type).
#pragma once
#include <algorithm>
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
  if (n == 0) return;
  if (both_contiguous) {
    parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) dst[i] = convert_value<Dst>(src[i]);
    });
    return;
  }
  if (ndim < 2) {
    int64_t ss = ndim ? src_strides[0] : 0, ds = ndim ? dst_strides[0] : 0;
    parallel_for(n, 1 << 15, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) dst[i * ds] = convert_value<Dst>(src[i * ss]);
    });
    return;
  }
  // Planes of the last two dims [R, C], one per index of the leading dims; tiles of T×T.
  constexpr int64_t T = 32;
  const int64_t R = shape[ndim - 2], C = shape[ndim - 1];
  const int64_t sr = src_strides[ndim - 2], sc = src_strides[ndim - 1];
  const int64_t dr = dst_strides[ndim - 2], dc = dst_strides[ndim - 1];
  const int64_t planes = n / (R * C), row_tiles = (R + T - 1) / T, col_tiles = (C + T - 1) / T;
  const int64_t tiles = planes * row_tiles * col_tiles;
  parallel_for(tiles, std::max<int64_t>(1, (1 << 15) / (T * T)), [&](int64_t b, int64_t e) {
    Odometer<2> outer(ndim - 2, shape, {src_strides, dst_strides});
    int64_t current_plane = -1;
    for (int64_t t = b; t < e; ++t) {
      int64_t plane = t / (row_tiles * col_tiles), rest = t % (row_tiles * col_tiles);
      if (plane != current_plane) {
        outer.seek(plane);
        current_plane = plane;
      }
      const Src* s = src + outer.offset[0];
      Dst* d = dst + outer.offset[1];
      int64_t r0 = (rest / col_tiles) * T, c0 = (rest % col_tiles) * T;
      int64_t r1 = std::min(R, r0 + T), c1 = std::min(C, c0 + T);
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = c0; c < c1; ++c) d[r * dr + c * dc] = convert_value<Dst>(s[r * sr + c * sc]);
    }
  });
}

}  // namespace mmg::cpu
