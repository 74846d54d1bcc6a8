// Element access for the row kernels (softmax.cu, layer_norm.cu): elements stored as S
// (float, double, bf16, f16) are read into registers of the compute type A = acc_t<S>
// (kernels/acc_type.h: float for the 16-bit types) and written back rounded to S.
//
//   widen<A>(s)       S → A, exact (a bf16 is the top half of an f32; f16 → f32 is exact)
//   narrow<S>(a)      A → S, rounded to nearest, ties to even, as kernels/half.h rounds on
//                     the host: the hardware conversions give the same bits for every
//                     non-NaN value (a NaN stays NaN; its payload may differ)
//
// The v2 kernels read and write packs of V consecutive elements in 16-byte accesses:
// V = pack_width<S> = 4 floats or 8 bf16/f16 per 16 bytes (doubles go one at a time). A
// pack of V elements of another type P (an f32 γ beside bf16 activations: 8 floats) is
// 32 bytes, two accesses. packs_fit says whether a row can be read in packs at all
// (kernels/cuda/pack_width.h).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/acc_type.h"
#include "kernels/cuda/pack_width.h"

namespace mmg::cuda {

template <class A, class S>
__device__ inline A widen(S v) {
  if constexpr (std::is_same_v<S, bf16>) return __uint_as_float(static_cast<uint32_t>(v.bits) << 16);
  else if constexpr (std::is_same_v<S, f16>) return __half2float(__ushort_as_half(v.bits));
  else return static_cast<A>(v);
}

template <class S, class A>
__device__ inline S narrow(A v) {
  if constexpr (std::is_same_v<S, bf16>) {
    S h;
    h.bits = __bfloat16_as_ushort(__float2bfloat16_rn(v));
    return h;
  } else if constexpr (std::is_same_v<S, f16>) {
    S h;
    h.bits = __half_as_ushort(__float2half_rn(v));
    return h;
  } else {
    return static_cast<S>(v);
  }
}

// v[i] = widen(p[i]) for i < V. V = 1: one plain element. Else V·sizeof(S) is a whole number
// of 16-byte chunks, each read in one access (p 16-byte aligned).
template <int V, class A, class S>
__device__ inline void load_pack(const S* p, A (&v)[V]) {
  if constexpr (V == 1) {
    v[0] = widen<A>(*p);
  } else {
    constexpr int per = static_cast<int>(16 / sizeof(S));  // elements per 16-byte chunk
    static_assert(V % per == 0, "a pack is whole 16-byte chunks");
#pragma unroll
    for (int c = 0; c < V / per; ++c) {
      const uint4 raw = reinterpret_cast<const uint4*>(p)[c];
      S e[per];
      memcpy(e, &raw, sizeof raw);
#pragma unroll
      for (int i = 0; i < per; ++i) v[c * per + i] = widen<A>(e[i]);
    }
  }
}

// As above, with a null p reading as V copies of `fill` (an absent γ is 1, an absent β 0).
template <int V, class A, class S>
__device__ inline void load_pack(const S* p, A (&v)[V], A fill) {
  if (p == nullptr) {
#pragma unroll
    for (int i = 0; i < V; ++i) v[i] = fill;
  } else {
    load_pack<V>(p, v);
  }
}

// p[i] = narrow<S>(v[i]) for i < V, in 16-byte stores as load_pack reads.
template <int V, class S, class A>
__device__ inline void store_pack(S* p, const A (&v)[V]) {
  if constexpr (V == 1) {
    *p = narrow<S>(v[0]);
  } else {
    constexpr int per = static_cast<int>(16 / sizeof(S));
    static_assert(V % per == 0, "a pack is whole 16-byte chunks");
#pragma unroll
    for (int c = 0; c < V / per; ++c) {
      S e[per];
#pragma unroll
      for (int i = 0; i < per; ++i) e[i] = narrow<S>(v[c * per + i]);
      uint4 raw;
      memcpy(&raw, e, sizeof raw);
      reinterpret_cast<uint4*>(p)[c] = raw;
    }
  }
}

// RawBytes<B>::type: an unsigned type of B bytes, aligned to B, that one load or store moves whole.
template <int B>
struct RawBytes;
template <>
struct RawBytes<2> {
  using type = uint16_t;
};
template <>
struct RawBytes<4> {
  using type = uint32_t;
};
template <>
struct RawBytes<8> {
  using type = uint2;
};
template <>
struct RawBytes<16> {
  using type = uint4;
};

// v[i] = p[i] for i < V, in one access of V·sizeof(T) bytes (2, 4, 8 or 16; p aligned to
// that many bytes). No conversion: the elementwise kernels' packs of their own type, and
// the V bools of a comparison's output pack.
template <int V, class T>
__device__ inline void load_vec(const T* p, T (&v)[V]) {
  using Raw = typename RawBytes<static_cast<int>(V * sizeof(T))>::type;
  const Raw raw = *reinterpret_cast<const Raw*>(p);
  memcpy(v, &raw, sizeof raw);
}

// p[i] = v[i] for i < V, in one access as load_vec.
template <int V, class T>
__device__ inline void store_vec(T* p, const T (&v)[V]) {
  using Raw = typename RawBytes<static_cast<int>(V * sizeof(T))>::type;
  Raw raw;
  memcpy(&raw, v, sizeof raw);
  *reinterpret_cast<Raw*>(p) = raw;
}

}  // namespace mmg::cuda
