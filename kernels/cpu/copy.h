// copy_cast: dst[i] = Dst(src[i]) over a strided source and a strided destination.
//
// The kernel behind contiguous(), clone(), to(dtype) and copy_(). Three paths:
//  - both contiguous: a straight loop the compiler vectorises;
//  - after merging dims, one dim left or a last dim contiguous on both sides: row by row;
//  - otherwise the last two (merged) dims are copied in 32×32 tiles. A transposed read
//    (src stride 1 along rows, large along columns) would otherwise touch a new cache
//    line for every element; inside a tile both sides stay in cache.
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
  // Merged dims (kernels/strided.h): a permuted copy that keeps the last dim in place, such
  // as [B,S,H,D] -> [B,H,S,D], becomes rows of D contiguous elements on both sides.
  const MergedDims<2> m(ndim, shape, {src_strides, dst_strides});
  const int64_t ss = m.strides[0][m.ndim - 1], ds = m.strides[1][m.ndim - 1];
  if (m.ndim == 1) {
    parallel_for(n, 1 << 15, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) dst[i * ds] = convert_value<Dst>(src[i * ss]);
    });
    return;
  }
  const int nd = m.ndim;
  const int64_t R = m.shape[nd - 2], C = m.shape[nd - 1];
  if (ss == 1 && ds == 1) {
    // Planes [R, C] of contiguous rows. The rows are short (a head's 16 or 64 values), so the
    // Odometer steps once per plane, and a row is a plain loop with no strides to multiply.
    const int64_t sr = m.strides[0][nd - 2], dr = m.strides[1][nd - 2];
    const int64_t rows = n / C;
    parallel_for(rows, std::max<int64_t>(1, (1 << 15) / C), [&](int64_t r0, int64_t r1) {
      Odometer<2> outer(nd - 2, m.shape, m.stride_ptrs());
      outer.seek(r0 / R);
      for (int64_t row = r0, r = r0 % R; row < r1; r = 0, outer.next()) {
        const Src* s = src + outer.offset[0];
        Dst* d = dst + outer.offset[1];
        for (const int64_t r_end = std::min(R, r + (r1 - row)); r < r_end; ++r, ++row) {
          const Src* sp = s + r * sr;
          Dst* dp = d + r * dr;
          for (int64_t c = 0; c < C; ++c) dp[c] = convert_value<Dst>(sp[c]);
        }
      }
    });
    return;
  }
  // Planes of the last two dims [R, C], one per index of the leading dims; tiles of T×T.
  constexpr int64_t T = 32;
  const int64_t sr = m.strides[0][nd - 2], sc = m.strides[0][nd - 1];
  const int64_t dr = m.strides[1][nd - 2], dc = m.strides[1][nd - 1];
  const int64_t planes = n / (R * C), row_tiles = (R + T - 1) / T, col_tiles = (C + T - 1) / T;
  const int64_t tiles = planes * row_tiles * col_tiles;
  parallel_for(tiles, std::max<int64_t>(1, (1 << 15) / (T * T)), [&](int64_t b, int64_t e) {
    Odometer<2> outer(nd - 2, m.shape, m.stride_ptrs());
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
