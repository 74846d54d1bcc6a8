// The largest |a[i] − b[i]| of two equally long value lists: how the tests that compare a kernel or
// an op with its loop-by-loop reference measure the error before checking it against a tolerance.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace mmg::test {

inline double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

}  // namespace mmg::test
