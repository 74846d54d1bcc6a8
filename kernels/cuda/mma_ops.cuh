// The mma.sync.m16n8k16 instruction and its operand loads from padded shared tiles, for 16-bit
// T (bf16, f16) with f32 accumulators — the building blocks of the tensor-core kernels, written
// on the fragment maps of kernels/cuda/mma_fragment.h (which says where each element lives).
// Shared by the tensor-core kernels (attention_mma.cu, attention_short.cu, contrastive_mma.cu),
// in their own namespace so that a file can take them with one using-directive.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/cuda/mma_fragment.h"
#include "kernels/half.h"

namespace mmg::cuda::mma_ops {

// d += a·b on one m16n8k16 tile, T's 16-bit inputs, f32 accumulators (d is also c).
template <class T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (std::is_same_v<T, bf16>) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
#else
  __trap();  // never launched: the host refuses devices below compute capability 8.0
#endif
}

// Two floats rounded to T (to nearest, ties to even, as kernels/half.h) in one register, lo in
// the low 16 bits. cvt's first source goes to the high half.
template <class T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  uint32_t r;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (std::is_same_v<T, bf16>)
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  else
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
#else
  r = static_cast<uint32_t>(T(lo).bits) | (static_cast<uint32_t>(T(hi).bits) << 16);
#endif
  return r;
}

// A fragment of rows [r0, r0 + 16) × columns [c0, c0 + 16) of a row-major shared tile: each
// register is two neighbours of one row, one 32-bit load.
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const uint16_t* tile, int ld, int r0, int c0, int lane) {
#pragma unroll
  for (int reg = 0; reg < 4; ++reg) {
    const MmaIndex e = mma_a_element(lane, reg, 0);  // half 1 is column e.col + 1
    a[reg] = *reinterpret_cast<const uint32_t*>(tile + (r0 + e.row) * ld + c0 + e.col);
  }
}

// B fragment (k × n = 16 × 8) with B[k][n] = tile[n0 + n][k0 + k]: Bᵀ out of a row-major tile
// whose rows are the n side. One 32-bit load per register.
__device__ __forceinline__ void load_b_nk(uint32_t (&b)[2], const uint16_t* tile, int ld, int n0, int k0,
                                          int lane) {
#pragma unroll
  for (int reg = 0; reg < 2; ++reg) {
    const MmaIndex e = mma_b_element(lane, reg, 0);  // half 1 is row (= k) e.row + 1
    b[reg] = *reinterpret_cast<const uint32_t*>(tile + (n0 + e.col) * ld + k0 + e.row);
  }
}

// B fragment with B[k][n] = tile[k0 + k][n0 + n]: a row-major tile whose rows are the k side;
// a register's two elements are in two rows, two 16-bit loads.
__device__ __forceinline__ void load_b_kn(uint32_t (&b)[2], const uint16_t* tile, int ld, int k0, int n0,
                                          int lane) {
#pragma unroll
  for (int reg = 0; reg < 2; ++reg) {
    const MmaIndex e0 = mma_b_element(lane, reg, 0), e1 = mma_b_element(lane, reg, 1);
    b[reg] = static_cast<uint32_t>(tile[(k0 + e0.row) * ld + n0 + e0.col]) |
             (static_cast<uint32_t>(tile[(k0 + e1.row) * ld + n0 + e1.col]) << 16);
  }
}

// The A fragment of the 16×16 tile made of C tiles c0 (columns 0..7) and c1 (8..15), rounded to
// T: the C fragments of one product become the A fragment of the next (P of S = Q·Kᵀ entering
// P·V). Written out register by register (the static_assert ties it to mma_a_from_c), so that
// no array is indexed at run time and everything stays in registers.
static_assert(mma_a_from_c(0).tile == 0 && mma_a_from_c(0).reg == 0 && mma_a_from_c(1).tile == 0 &&
                  mma_a_from_c(1).reg == 2 && mma_a_from_c(2).tile == 1 && mma_a_from_c(2).reg == 0 &&
                  mma_a_from_c(3).tile == 1 && mma_a_from_c(3).reg == 2,
              "a_from_c follows mma_a_from_c");
template <class T>
__device__ __forceinline__ void a_from_c(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
  a[0] = pack2<T>(c0[0], c0[1]);
  a[1] = pack2<T>(c0[2], c0[3]);
  a[2] = pack2<T>(c1[0], c1[1]);
  a[3] = pack2<T>(c1[2], c1[3]);
}

// The max (or sum) over the 4 lanes of a quad, which together hold one row of a C fragment.
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
template <class S>
__device__ __forceinline__ S quad_sum(S x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

}  // namespace mmg::cuda::mma_ops
