// GELU on the CPU: Eigen array expressions over chunks of the input, chunks in parallel.
// Each expression is evaluated in one pass (Eigen fuses it), with vectorised erf/exp/tanh.
#include "kernels/gelu.h"

#include <Eigen/Core>
#include <algorithm>
#include <numbers>
#include <unsupported/Eigen/SpecialFunctions>

#include "kernels/cpu/parallel.h"

namespace mmg::cpu {

template <class T>
using ConstArray = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using Array = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;

static constexpr int64_t kGeluGrain = 1 << 14;
static constexpr double kSqrt2OverPi = std::numbers::sqrt2 * std::numbers::inv_sqrtpi;  // √(2/π)
static constexpr double kInvSqrt2Pi = std::numbers::inv_sqrtpi / std::numbers::sqrt2;   // 1/√(2π)
static constexpr double kTanhCubic = 0.044715;

template <class T>
void gelu_forward(const T* x, T* y, int64_t n, bool tanh_approx) {
  parallel_for(n, kGeluGrain, [&](int64_t b, int64_t e) {
    ConstArray<T> xs(x + b, e - b);
    Array<T> ys(y + b, e - b);
    if (tanh_approx) {
      const T k = T(kSqrt2OverPi), c = T(kTanhCubic);
      ys = T(0.5) * xs * (T(1) + (k * (xs + c * xs * xs * xs)).tanh());
    } else {
      ys = T(0.5) * xs * (T(1) + (xs * T(1 / std::numbers::sqrt2)).erf());
    }
  });
}

template <class T>
void gelu_backward(const T* x, const T* dy, T* dx, int64_t n, bool tanh_approx) {
  parallel_for(n, kGeluGrain, [&](int64_t b, int64_t e) {
    ConstArray<T> xs(x + b, e - b), gs(dy + b, e - b);
    Array<T> out(dx + b, e - b);
    if (tanh_approx) {
      const T k = T(kSqrt2OverPi), c = T(kTanhCubic);
      // t = tanh u is used twice; it goes into dx first so that it is computed once, then
      // dx is overwritten in place (each element reads only its own t).
      out = (k * (xs + c * xs * xs * xs)).tanh();
      out = gs * (T(0.5) * (T(1) + out) + T(0.5) * xs * (T(1) - out * out) * k * (T(1) + T(3) * c * xs * xs));
    } else {
      const T inv_sqrt2 = T(1 / std::numbers::sqrt2), inv_sqrt_2pi = T(kInvSqrt2Pi);
      out = gs * (T(0.5) * (T(1) + (xs * inv_sqrt2).erf()) + xs * (T(-0.5) * xs * xs).exp() * inv_sqrt_2pi);
    }
  });
}

// GEGLU: rows in parallel; within a row the same expressions as above over the gate half g,
// times the value half a.
template <class T>
void geglu_forward(const T* h, T* y, int64_t rows, int64_t hidden, bool tanh_approx) {
  parallel_for(rows, std::max<int64_t>(1, kGeluGrain / std::max<int64_t>(hidden, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      ConstArray<T> a(h + r * 2 * hidden, hidden), g(h + r * 2 * hidden + hidden, hidden);
      Array<T> ys(y + r * hidden, hidden);
      if (tanh_approx) {
        const T k = T(kSqrt2OverPi), c = T(kTanhCubic);
        ys = a * (T(0.5) * g * (T(1) + (k * (g + c * g * g * g)).tanh()));
      } else {
        ys = a * (T(0.5) * g * (T(1) + (g * T(1 / std::numbers::sqrt2)).erf()));
      }
    }
  });
}

template <class T>
void geglu_backward(const T* h, const T* dy, T* dh, int64_t rows, int64_t hidden, bool tanh_approx) {
  parallel_for(rows, std::max<int64_t>(1, kGeluGrain / std::max<int64_t>(hidden, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      ConstArray<T> a(h + r * 2 * hidden, hidden), g(h + r * 2 * hidden + hidden, hidden), gy(dy + r * hidden, hidden);
      Array<T> da(dh + r * 2 * hidden, hidden), dg(dh + r * 2 * hidden + hidden, hidden);
      // The shared factor (tanh u, or erf(g/√2)) goes into dg first, so that it is computed once;
      // da reads it, then dg is overwritten in place (each element reads only its own).
      if (tanh_approx) {
        const T k = T(kSqrt2OverPi), c = T(kTanhCubic);
        dg = (k * (g + c * g * g * g)).tanh();
        da = gy * (T(0.5) * g * (T(1) + dg));
        dg = gy * a * (T(0.5) * (T(1) + dg) + T(0.5) * g * (T(1) - dg * dg) * k * (T(1) + T(3) * c * g * g));
      } else {
        const T inv_sqrt2 = T(1 / std::numbers::sqrt2), inv_sqrt_2pi = T(kInvSqrt2Pi);
        dg = (g * inv_sqrt2).erf();
        da = gy * (T(0.5) * g * (T(1) + dg));
        dg = gy * a * (T(0.5) * (T(1) + dg) + g * (T(-0.5) * g * g).exp() * inv_sqrt_2pi);
      }
    }
  });
}

template void gelu_forward<float>(const float*, float*, int64_t, bool);
template void gelu_forward<double>(const double*, double*, int64_t, bool);
template void gelu_backward<float>(const float*, const float*, float*, int64_t, bool);
template void gelu_backward<double>(const double*, const double*, double*, int64_t, bool);
template void geglu_forward<float>(const float*, float*, int64_t, int64_t, bool);
template void geglu_forward<double>(const double*, double*, int64_t, int64_t, bool);
template void geglu_backward<float>(const float*, const float*, float*, int64_t, int64_t, bool);
template void geglu_backward<double>(const double*, const double*, double*, int64_t, int64_t, bool);

}  // namespace mmg::cpu
