// Which path the v2 elementwise kernels (kernels/cuda/elementwise.cu) take, and where each
// 16-byte pack of theirs lies, as plain C++: the kernels call these same functions, and the
// CPU suite (tests/kernels/test_elementwise_plan.cpp) checks them where no GPU is.
//
// A pack is V = vector_width<T> consecutive elements in one 16-byte access: 4 f32 or i32,
// 2 f64 or i64, 8 bf16 or f16, 16 u8. A pack can be read in one access only from an address
// that is a multiple of 16, so every path checks the pointers at run time; a view that starts
// one element into its storage (x.slice(0, 1, n)) falls back to the scalar (v1) kernel.
//
//   unary, gelu   x, out (and dy, dx) contiguous: the "flat" path when every pointer is
//                 aligned. Packs p = 0 … n/V − 1 cover elements p·V … p·V + V − 1; the tail
//                 of n mod V < V elements after the last pack is one element a thread.
//   binary        the operands' merged layout (kernels/strided.h; out is contiguous) decides:
//     flat   one dim [n], each operand walked (stride 1) or one element repeated (stride 0):
//            same-shape operands (a residual add) and a tensor with a scalar. The repeated
//            operand is read once a thread and need not be aligned.
//     rows   two dims [M, N], each operand with row stride N (walked) or 0 (a bias row of N
//            repeated over the rows), unit stride along the row, N a multiple of V: a
//            linear layer's bias, [B,S,D] + [D]. Then N·sizeof(T) is a multiple of 16, so
//            every row starts aligned and a pack never straddles two rows; M·N is a whole
//            number of packs, with no tail.
//     scalar anything else (a column broadcast [M,1], a transposed operand, a row length
//            that is no multiple of V, a misaligned pointer): the v1 kernel.
#pragma once
#include <cstdint>
#include <initializer_list>

#include "kernels/strided.h"

#ifdef __CUDACC__
#define MMG_HOST_DEVICE __host__ __device__
#else
#define MMG_HOST_DEVICE
#endif

namespace mmg::cuda {

template <class T>
constexpr int vector_width = static_cast<int>(16 / sizeof(T));

// Whether every pointer can be read or written in 16-byte accesses.
inline bool aligned_16(std::initializer_list<const void*> pointers) {
  for (const void* p : pointers)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

enum class PackPath { scalar, flat, rows };

struct BinaryPackPlan {
  PackPath path = PackPath::scalar;
  int64_t rows = 1, cols = 0;          // flat: 1 × n;  rows: M × N
  int64_t a_stride = 0, b_stride = 0;  // flat: 0 or 1 per element;  rows: 0 or N per row
};

// The path of out = a ∘ b over the merged layout m (operand 0 is a, 1 is b), with packs of
// `width` elements; a_aligned, b_aligned, out_aligned: whether each pointer is 16-byte aligned.
inline BinaryPackPlan plan_binary_packs(const MergedDims<2>& m, int width, bool a_aligned, bool b_aligned,
                                        bool out_aligned) {
  BinaryPackPlan plan;
  if (width < 2 || !out_aligned) return plan;
  auto walked_or_repeated = [](int64_t stride, int64_t walked) { return stride == 0 || stride == walked; };
  if (m.ndim == 1) {
    const int64_t sa = m.strides[0][0], sb = m.strides[1][0];
    if (!walked_or_repeated(sa, 1) || !walked_or_repeated(sb, 1)) return plan;
    if ((sa == 1 && !a_aligned) || (sb == 1 && !b_aligned)) return plan;
    plan.path = PackPath::flat;
    plan.cols = m.shape[0];
    plan.a_stride = sa;
    plan.b_stride = sb;
    return plan;
  }
  if (m.ndim == 2) {
    const int64_t M = m.shape[0], N = m.shape[1];
    if (m.strides[0][1] != 1 || m.strides[1][1] != 1 || N % width != 0) return plan;
    const int64_t sa = m.strides[0][0], sb = m.strides[1][0];
    if (!walked_or_repeated(sa, N) || !walked_or_repeated(sb, N) || !a_aligned || !b_aligned) return plan;
    plan.path = PackPath::rows;
    plan.rows = M;
    plan.cols = N;
    plan.a_stride = sa;
    plan.b_stride = sb;
  }
  return plan;
}

// Packs of V elements in n elements; the tail (n mod V elements) starts at packs·V.
MMG_HOST_DEVICE inline int64_t whole_packs(int64_t n, int V) { return n / V; }

// The rows path: the offsets in a and in b of the first element of output pack p (output
// elements p·V … p·V + V − 1, all in one row since V divides N).
MMG_HOST_DEVICE inline void rows_pack_offsets(const BinaryPackPlan& plan, int64_t p, int V, int64_t& a, int64_t& b) {
  const int64_t i = p * V, r = i / plan.cols, c = i - r * plan.cols;
  a = r * plan.a_stride + c;
  b = r * plan.b_stride + c;
}

}  // namespace mmg::cuda
