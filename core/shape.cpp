#include "core/shape.h"

#include "core/error.h"

namespace mmg {

int64_t numel_of(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

std::string shape_str(const Shape& shape) { return fmt::format("[{}]", fmt::join(shape, ",")); }

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    MMG_CHECK(da == db || da == 1 || db == 1, "{}: cannot broadcast {} with {}", op, shape_str(a), shape_str(b));
    out[i] = da == 1 ? db : da;
  }
  return out;
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op, const Shape& shape) {
  int64_t n = std::max<int64_t>(ndim, 1);  // a scalar accepts dim 0 / -1, like PyTorch
  MMG_CHECK(dim >= -n && dim < n, "{}: dim {} out of range for {}", op, dim, shape_str(shape));
  return dim < 0 ? dim + n : dim;
}

}  // namespace mmg
