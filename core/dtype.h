// DType: the element types a tensor can hold.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/half.h"

namespace mmg {

enum class DType : uint8_t { f32, f64, bf16, f16, i32, i64, u8, boolean };

size_t dtype_size(DType t);          // bytes per element
std::string dtype_name(DType t);     // "f32", "bf16", "bool", ...
DType dtype_from_name(const std::string& name);  // inverse of dtype_name; throws on unknown
bool is_floating(DType t);           // f32, f64, bf16, f16
bool is_integral(DType t);           // i32, i64, u8, bool

// The C++ type stored for each dtype, and back.
template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<bf16>() { return DType::bf16; }
template <> constexpr DType dtype_of<f16>() { return DType::f16; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::i64; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }
template <> constexpr DType dtype_of<bool>() { return DType::boolean; }

// Default dtype of results that mix dtypes (NumPy-like promotion, floats win).
DType promote_types(DType a, DType b);

}  // namespace mmg
