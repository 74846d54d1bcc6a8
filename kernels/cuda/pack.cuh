// Packs of V consecutive elements, read or written in one access where V = 4 (a 16-byte
// float4: p must be 16-byte aligned) — the vectorised loads of the v2 row kernels
// (softmax.cu, layer_norm.cu). V = 1 is the plain element access.
#pragma once
#include <type_traits>

namespace mmg::cuda {

template <int V, class T>
__device__ inline void load_pack(const T* p, T (&v)[V]) {
  if constexpr (V == 4) {
    static_assert(std::is_same_v<T, float>, "16-byte packs are float4");
    const float4 f = *reinterpret_cast<const float4*>(p);
    v[0] = f.x;
    v[1] = f.y;
    v[2] = f.z;
    v[3] = f.w;
  } else {
    static_assert(V == 1, "packs of 1 or 4");
    v[0] = *p;
  }
}

// As above, with a null p reading as V copies of `fill` (an absent γ is 1, an absent β 0).
template <int V, class T>
__device__ inline void load_pack(const T* p, T (&v)[V], T fill) {
  if (p == nullptr) {
#pragma unroll
    for (int i = 0; i < V; ++i) v[i] = fill;
  } else {
    load_pack<V>(p, v);
  }
}

template <int V, class T>
__device__ inline void store_pack(T* p, const T (&v)[V]) {
  if constexpr (V == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
    *p = v[0];
  }
}

}  // namespace mmg::cuda
