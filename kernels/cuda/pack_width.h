// Which rows the v2 row kernels (softmax.cu, layer_norm.cu) read in 16-byte packs, as plain
// C++ (host code, tested on the CPU by tests/kernels/test_row_stats.cpp):
//
//   pack_width<S>   elements of S per 16-byte access: 4 floats, 8 bf16 or f16; doubles go
//                   one at a time (1)
//   packs_fit<S>    whether rows of `cols` elements can be read in packs: the width divides
//                   cols and every pointer (the row bases; nullptr, an absent γ or β, counts
//                   as aligned) is 16-byte aligned
//
// When packs fit, every row starts aligned too: its offset r·cols·sizeof(S) bytes is a
// multiple of 16, and so is the offset p·V·sizeof(P) of a pack of a P-typed γ (P = S, or an
// f32 γ beside 16-bit rows: 8 floats, two accesses). When they do not — doubles, a length
// that is no multiple of the width (a bf16 row of 769), a view at an odd offset — the
// kernels read one element at a time, the same arithmetic in the same order per element.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <type_traits>

namespace mmg::cuda {

template <class S>
constexpr int pack_width = std::is_same_v<S, double> ? 1 : static_cast<int>(16 / sizeof(S));

template <class S>
inline bool packs_fit(int64_t cols, std::initializer_list<const void*> pointers) {
  constexpr int V = pack_width<S>;
  if (V == 1 || cols % V != 0) return false;
  for (const void* p : pointers)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

}  // namespace mmg::cuda
