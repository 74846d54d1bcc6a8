// Dispatch on dtype: call a template lambda with the C++ type of a runtime DType.
//
//   visit_dtype(t.dtype(), [&]<class T>() { kernel<T>(t.data<T>(), ...); });
//
// visit_float accepts only f32/f64 — the types the CPU math kernels are written for — and
// names the op in its error. Ops take bf16/f16 inputs to f32 first (see compute_dtype).
#pragma once
#include "core/dtype.h"
#include "core/error.h"

namespace mmg {

template <class F>
decltype(auto) visit_dtype(DType t, F&& f) {
  switch (t) {
    case DType::f32: return f.template operator()<float>();
    case DType::f64: return f.template operator()<double>();
    case DType::bf16: return f.template operator()<bf16>();
    case DType::f16: return f.template operator()<f16>();
    case DType::i32: return f.template operator()<int32_t>();
    case DType::i64: return f.template operator()<int64_t>();
    case DType::u8: return f.template operator()<uint8_t>();
    case DType::boolean: return f.template operator()<bool>();
  }
  MMG_FAIL("dispatch: corrupt dtype value {}", static_cast<int>(t));
}

template <class F>
decltype(auto) visit_float(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f.template operator()<float>();
    case DType::f64: return f.template operator()<double>();
    default: MMG_FAIL("{}: expected a floating dtype (f32 or f64), got {}", op, dtype_name(t));
  }
}

// Arithmetic (non-bool) types: f32, f64, i32, i64, u8. Half types are computed in f32.
template <class F>
decltype(auto) visit_arith(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::f32: return f.template operator()<float>();
    case DType::f64: return f.template operator()<double>();
    case DType::i32: return f.template operator()<int32_t>();
    case DType::i64: return f.template operator()<int64_t>();
    case DType::u8: return f.template operator()<uint8_t>();
    default: MMG_FAIL("{}: expected a numeric dtype, got {}", op, dtype_name(t));
  }
}

// The dtype the CPU math runs in for inputs of dtype t: bf16/f16 are computed in f32.
inline DType compute_dtype(DType t) { return (t == DType::bf16 || t == DType::f16) ? DType::f32 : t; }

}  // namespace mmg
