// Printing tensors the way PyTorch does:
//   tensor([[ 0.1000, -2.0000],
//           [ 3.5000,  4.0000]], dtype=f64, requires_grad=true)
// Tensors of more than 1000 elements show the first and last 3 entries of each dim with
// "..." between. All entries share one format (fixed 4 decimals, scientific for very large
// or very small magnitudes, integers for integer dtypes) and one width, so columns align.
#include <cmath>
#include <ostream>
#include <sstream>

#include "core/tensor.h"

namespace mmg {

namespace {

constexpr int64_t kThreshold = 1000, kEdge = 3;

struct Format {
  bool integral = false, scientific = false, whole = false;
  int width = 1;
  std::string operator()(double v) const {
    if (integral) return fmt::format("{}", static_cast<int64_t>(v));
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    if (scientific) return fmt::format("{:.4e}", v);
    if (whole) return fmt::format("{:.0f}.", v);
    return fmt::format("{:.4f}", v);
  }
};

// The indices printed along a dim of size n: all, or the first and last kEdge (-1 = "...").
std::vector<int64_t> shown(int64_t n, bool summarize) {
  std::vector<int64_t> idx;
  if (!summarize || n <= 2 * kEdge) {
    for (int64_t i = 0; i < n; ++i) idx.push_back(i);
  } else {
    for (int64_t i = 0; i < kEdge; ++i) idx.push_back(i);
    idx.push_back(-1);
    for (int64_t i = n - kEdge; i < n; ++i) idx.push_back(i);
  }
  return idx;
}

void collect(const std::vector<double>& v, const Shape& shape, const Shape& strides, size_t d, int64_t off,
             bool summarize, std::vector<double>& out) {
  if (d == shape.size()) {
    out.push_back(v[off]);
    return;
  }
  for (int64_t i : shown(shape[d], summarize))
    if (i >= 0) collect(v, shape, strides, d + 1, off + i * strides[d], summarize, out);
}

void render(std::ostream& os, const std::vector<double>& v, const Shape& shape, const Shape& strides, size_t d,
            int64_t off, bool summarize, const Format& f, int indent) {
  if (d == shape.size()) {
    std::string s = f(v[off]);
    os << std::string(f.width - s.size(), ' ') << s;
    return;
  }
  os << '[';
  auto idx = shown(shape[d], summarize);
  for (size_t k = 0; k < idx.size(); ++k) {
    if (k > 0) {
      os << ',';
      if (d + 1 == shape.size()) os << ' ';
      else os << std::string(shape.size() - d - 1, '\n') << std::string(indent + d + 1, ' ');
    }
    if (idx[k] < 0) os << "...";
    else render(os, v, shape, strides, d + 1, off + idx[k] * strides[d], summarize, f, indent);
  }
  os << ']';
}

}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  Tensor c = detach().contiguous();
  std::vector<double> v = c.to_vector<double>();
  bool summarize = numel() > kThreshold;
  std::vector<double> vis;
  collect(v, c.shape(), c.strides(), 0, 0, summarize, vis);

  Format f;
  f.integral = is_integral(dtype());
  if (!f.integral) {
    double lo = INFINITY, hi = 0;
    bool all_whole = true;
    for (double x : vis) {
      if (!std::isfinite(x)) continue;
      double a = std::abs(x);
      if (a > 0) lo = std::min(lo, a);
      hi = std::max(hi, a);
      all_whole = all_whole && x == std::round(x);
    }
    f.whole = all_whole && hi < 1e8;
    f.scientific = !f.whole && (hi >= 1e8 || (lo < 1e-4 && lo != INFINITY));
  }
  for (double x : vis) f.width = std::max<int>(f.width, static_cast<int>(f(x).size()));

  std::ostringstream os;
  os << "tensor(";
  if (shape().empty()) os << f(v[0]);
  else render(os, v, c.shape(), c.strides(), 0, 0, summarize, f, 7);
  if (dtype() != DType::f32 && dtype() != DType::i64 && dtype() != DType::boolean) os << ", dtype=" << dtype_name(dtype());
  if (dtype() == DType::boolean) os << ", dtype=bool";
  if (!device().is_cpu()) os << ", device=" << device().str();
  if (requires_grad()) os << ", requires_grad=true";
  os << ')';
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace mmg
