// One-pass row statistics for the v2 row kernels (kernels/cuda/softmax.cu,
// kernels/cuda/layer_norm.cu), as plain functions that compile for the device and the host:
// the CPU tests (tests/kernels/test_row_stats.cpp) run the same code in the same lane order
// as the kernels, so the CPU suite checks their arithmetic.
//
// Online softmax statistics: (m, s) with m the running max and s = Σ exp(x − m) over the
// elements seen. Adding x: if x > m, s ← s·exp(m − x) + exp(x − x) and m ← x, else s ← s +
// exp(x − m). exp(x − x) is 1, or NaN when x = +∞ (then the row is NaN, as in the v1 kernel).
// −∞ adds nothing (a masked entry), so a row of all −∞ ends with s = 0 and comes out NaN.
// Two partial results combine as m = max(m₁, m₂), s = s₁·exp(m₁ − m) + s₂·exp(m₂ − m), a
// part with s = 0 (no element, or only −∞) contributing 0.
//
// Welford statistics: (n, μ, M₂) with M₂ = Σ (x − μ)². Adding x: n ← n + 1, δ = x − μ,
// μ ← μ + δ/n, M₂ ← M₂ + δ·(x − μ). Two parts combine (Chan et al.):
//   n = n₁ + n₂,  δ = μ₂ − μ₁,  μ = μ₁ + δ·n₂/n,  M₂ = M₂₁ + M₂₂ + δ²·n₁·n₂/n
// (either part empty: the other). The variance is M₂/n: no cancellation as in Σx² − nμ².
#pragma once
#include <cmath>

#ifdef __CUDACC__
#define MMG_HOST_DEVICE __host__ __device__
#else
#define MMG_HOST_DEVICE
#endif

// On the host, exp and fmax of a float must be std::'s float overloads (the global ones take
// doubles); on the device the unqualified names are CUDA's float and double functions.
#ifdef __CUDA_ARCH__
#define MMG_ROW_STATS_MATH
#else
#define MMG_ROW_STATS_MATH \
  using std::exp;          \
  using std::fmax
#endif

namespace mmg::cuda {

template <class T>
struct SoftmaxStats {
  T m = -INFINITY;
  T s = 0;
};

template <class T>
MMG_HOST_DEVICE inline void softmax_stats_add(SoftmaxStats<T>& st, T x) {
  MMG_ROW_STATS_MATH;
  if (x > st.m) {
    st.s = st.s * exp(st.m - x) + exp(x - x);
    st.m = x;
  } else if (x != -INFINITY) {  // a NaN x lands here and makes s NaN
    st.s += exp(x - st.m);
  }
}

template <class T>
MMG_HOST_DEVICE inline SoftmaxStats<T> softmax_stats_combine(SoftmaxStats<T> a, SoftmaxStats<T> b) {
  MMG_ROW_STATS_MATH;
  SoftmaxStats<T> r;
  r.m = fmax(a.m, b.m);
  r.s = (a.s == T(0) ? T(0) : a.s * exp(a.m - r.m)) + (b.s == T(0) ? T(0) : b.s * exp(b.m - r.m));
  return r;
}

template <class T>
struct WelfordStats {
  T n = 0;
  T mean = 0;
  T m2 = 0;
};

template <class T>
MMG_HOST_DEVICE inline void welford_add(WelfordStats<T>& st, T x) {
  st.n += T(1);
  const T d = x - st.mean;
  st.mean += d / st.n;
  st.m2 += d * (x - st.mean);
}

template <class T>
MMG_HOST_DEVICE inline WelfordStats<T> welford_combine(WelfordStats<T> a, WelfordStats<T> b) {
  if (b.n == T(0)) return a;
  if (a.n == T(0)) return b;
  WelfordStats<T> r;
  r.n = a.n + b.n;
  const T d = b.mean - a.mean;
  r.mean = a.mean + d * (b.n / r.n);
  r.m2 = a.m2 + b.m2 + d * d * (a.n * b.n / r.n);
  return r;
}

}  // namespace mmg::cuda
