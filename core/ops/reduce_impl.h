// Shared machinery of the reductions: which dims reduce, and the [rows, cols] layout the
// row kernels want (kept dims first, reduced dims last, contiguous).
#pragma once
#include <vector>

#include "core/tensor.h"

namespace mmg {

struct ReducePlan {
  std::vector<bool> reduced;  // per input dim
  Shape kept_shape;           // output shape with keepdim = true (reduced dims become 1)
  Shape out_shape;            // output shape as requested (keepdim or not)
  int64_t rows = 1, cols = 1; // kept elements x reduced elements
};

// dims empty = all dims. Checks each dim (naming op), rejects repeats.
ReducePlan plan_reduce(const Tensor& x, const Shape& dims, bool keepdim, const char* op);

// x permuted so reduced dims come last, contiguous: a [rows, cols] matrix in memory.
Tensor rows_layout(const Tensor& x, const ReducePlan& plan);

}  // namespace mmg
