// Shapes and strides: small helpers every op uses.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mmg {

using Shape = std::vector<int64_t>;

int64_t numel_of(const Shape& shape);                 // product of sizes (1 for a scalar [])
Shape contiguous_strides(const Shape& shape);          // row-major strides in elements
std::string shape_str(const Shape& shape);             // "[2,3]"

// NumPy broadcasting: align trailing dims; sizes must be equal or 1.
// Throws "<op>: cannot broadcast [2,3] with [4]" naming the op.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// Wraps a possibly negative dim into [0, ndim); throws "<op>: dim 3 out of range for [2,3]".
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op, const Shape& shape);

}  // namespace mmg
