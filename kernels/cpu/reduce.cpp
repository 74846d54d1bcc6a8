// Row reductions on the CPU.
//
// Every row reduction here is one pattern: a Reducer says how to summarise a run of
// consecutive elements of a row (`of`) and how to fold the summary of the next run into
// the summary so far (`merge`); reduce_rows does the rest. Short rows are summarised whole,
// one thread taking a block of rows. Long rows are cut into fixed chunks of kChunk
// elements, all chunks of all rows are summarised in parallel, and each row merges its
// chunks left to right. The chunking depends on the sizes only, never on the thread count,
// so results are the same whatever MMG_NUM_THREADS says.
#include "kernels/reduce.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/cpu/parallel.h"

namespace mmg::cpu {

// Wide accumulator: double for floats, int64 for integers.
template <class T>
using Acc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;

constexpr int64_t kChunk = int64_t{1} << 14;  // elements of a row summarised by one task
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

template <class T>
static bool is_nan(T v) {
  if constexpr (std::is_floating_point_v<T>) return std::isnan(v);
  else return false;
}

// ---- the driver ----
// emit(r, summary) is called once per row with the summary of the whole row.
template <class R, class T, class Emit>
static void reduce_rows(const R& red, const T* x, int64_t rows, int64_t cols, Emit emit) {
  using Summary = decltype(red.of(x, 0, 0));
  int64_t chunks = std::max<int64_t>(1, (cols + kChunk - 1) / kChunk);
  if (chunks == 1) {
    int64_t grain = std::max<int64_t>(1, 2 * kChunk / std::max<int64_t>(cols, 1));
    parallel_for(rows, grain, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) emit(r, red.of(x + r * cols, 0, cols));
    });
    return;
  }
  std::vector<Summary> part(static_cast<size_t>(rows * chunks));
  parallel_for(rows * chunks, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      int64_t r = t / chunks, c0 = (t % chunks) * kChunk;
      part[t] = red.of(x + r * cols + c0, c0, std::min(kChunk, cols - c0));
    }
  });
  parallel_for(rows, 64, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      Summary s = part[r * chunks];
      for (int64_t k = 1; k < chunks; ++k) red.merge(s, part[r * chunks + k]);
      emit(r, s);
    }
  });
}

// Σ p[0..n) in the wide type, with 8 independent partial sums: one running sum would make
// every add wait for the previous one; eight lanes also let the compiler vectorise.
template <class T>
static Acc<T> sum_run(const T* p, int64_t n) {
  Acc<T> lane[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) lane[k] += static_cast<Acc<T>>(p[i + k]);
  for (; i < n; ++i) lane[0] += static_cast<Acc<T>>(p[i]);
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

// ---- sum ----
template <class T>
struct SumReducer {
  Acc<T> of(const T* p, int64_t, int64_t n) const { return sum_run(p, n); }
  void merge(Acc<T>& a, const Acc<T>& b) const { a += b; }
};

template <class T>
void sum_rows(const T* x, T* out, int64_t rows, int64_t cols) {
  reduce_rows(SumReducer<T>{}, x, rows, cols, [&](int64_t r, Acc<T> s) { out[r] = static_cast<T>(s); });
}

// ---- sum over the middle dim of [outer, n, inner] ----
// Each task owns a block of up to B columns of one `outer` slice and walks down the n rows
// adding whole row segments into B accumulators — contiguous reads, no transposing copy.
// When there are few such tasks (dim 0 of a tall [N, D]: D/B blocks) the n rows are also
// cut into pieces summed separately and added in order, so every thread gets work.
template <class T>
void sum_mid(const T* x, T* out, int64_t outer, int64_t n, int64_t inner) {
  constexpr int64_t B = 256;  // 256 wide accumulators = 2 KB: they stay in L1
  int64_t blocks = (inner + B - 1) / B;
  int64_t pieces = outer * blocks >= 8 ? 1 : std::clamp<int64_t>(n / 512, 1, 16);
  int64_t piece_len = (n + pieces - 1) / pieces;
  auto sum_block = [&](int64_t o, int64_t blk, int64_t j0, int64_t j1, Acc<T>* acc) {
    int64_t k0 = blk * B, w = std::min(B, inner - k0);
    std::fill(acc, acc + w, Acc<T>{0});
    for (int64_t j = j0; j < j1; ++j) {
      const T* row = x + (o * n + j) * inner + k0;
      for (int64_t k = 0; k < w; ++k) acc[k] += static_cast<Acc<T>>(row[k]);
    }
    return w;
  };
  if (pieces == 1) {
    int64_t grain = std::max<int64_t>(1, 2 * kChunk / std::max<int64_t>(n * B, 1));
    parallel_for(outer * blocks, grain, [&](int64_t b, int64_t e) {
      Acc<T> acc[B];
      for (int64_t t = b; t < e; ++t) {
        int64_t o = t / blocks, blk = t % blocks;
        int64_t w = sum_block(o, blk, 0, n, acc);
        for (int64_t k = 0; k < w; ++k) out[o * inner + blk * B + k] = static_cast<T>(acc[k]);
      }
    });
    return;
  }
  std::vector<Acc<T>> part(static_cast<size_t>(outer * blocks * pieces * B));
  parallel_for(outer * blocks * pieces, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      int64_t ob = t / pieces, piece = t % pieces;
      int64_t j0 = std::min(n, piece * piece_len), j1 = std::min(n, j0 + piece_len);
      sum_block(ob / blocks, ob % blocks, j0, j1, &part[t * B]);
    }
  });
  for (int64_t ob = 0; ob < outer * blocks; ++ob) {
    int64_t o = ob / blocks, k0 = (ob % blocks) * B, w = std::min(B, inner - k0);
    for (int64_t k = 0; k < w; ++k) {
      Acc<T> s = 0;
      for (int64_t piece = 0; piece < pieces; ++piece) s += part[(ob * pieces + piece) * B + k];
      out[o * inner + k0 + k] = static_cast<T>(s);
    }
  }
}

// ---- max / min with their index ----
// The first extreme element wins ties (a later one must be strictly better); a NaN beats
// everything and the first NaN stays (so a row with NaN gives NaN and that NaN's index).
template <class T, bool Max>
struct ArgExtremeReducer {
  struct Summary {
    T value;
    int64_t index;
  };
  static bool better(T a, T b) { return Max ? a > b : a < b; }
  Summary of(const T* p, int64_t c0, int64_t n) const {
    Summary s{p[0], c0};
    for (int64_t i = 0; i < n; ++i) {
      T v = p[i];
      if (is_nan(v)) return {v, c0 + i};
      if (better(v, s.value)) s = {v, c0 + i};
    }
    return s;
  }
  void merge(Summary& a, const Summary& b) const {
    if (is_nan(a.value)) return;
    if (is_nan(b.value) || better(b.value, a.value)) a = b;
  }
};

template <class T>
void max_rows(const T* x, T* values, int64_t* indices, int64_t rows, int64_t cols) {
  reduce_rows(ArgExtremeReducer<T, true>{}, x, rows, cols, [&](int64_t r, auto s) {
    values[r] = s.value;
    indices[r] = s.index;
  });
}

template <class T>
void min_rows(const T* x, T* values, int64_t* indices, int64_t rows, int64_t cols) {
  reduce_rows(ArgExtremeReducer<T, false>{}, x, rows, cols, [&](int64_t r, auto s) {
    values[r] = s.value;
    indices[r] = s.index;
  });
}

// ---- variance ----
// A run summarised in two passes: mean = Σx/n, then m2 = Σ(x − mean)² (no cancellation,
// unlike Σx² − n·mean²). Two runs merge with Chan et al.'s formula, δ = mean_b − mean_a:
//   n = n_a + n_b,  mean = mean_a + δ·n_b/n,  m2 = m2_a + m2_b + δ²·n_a·n_b/n.
template <class T>
struct VarReducer {
  struct Summary {
    double n, mean, m2;
  };
  Summary of(const T* p, int64_t, int64_t n) const {
    if (n == 0) return {0, 0, 0};
    double mean = sum_run(p, n) / static_cast<double>(n);
    double lane[4] = {};
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
      for (int k = 0; k < 4; ++k) {
        double d = static_cast<double>(p[i + k]) - mean;
        lane[k] += d * d;
      }
    for (; i < n; ++i) {
      double d = static_cast<double>(p[i]) - mean;
      lane[0] += d * d;
    }
    return {static_cast<double>(n), mean, (lane[0] + lane[1]) + (lane[2] + lane[3])};
  }
  void merge(Summary& a, const Summary& b) const {
    if (b.n == 0) return;
    if (a.n == 0) {
      a = b;
      return;
    }
    double n = a.n + b.n, delta = b.mean - a.mean;
    a.m2 += b.m2 + delta * delta * a.n * b.n / n;
    a.mean += delta * b.n / n;
    a.n = n;
  }
};

template <class T, bool Sqrt>
static void var_or_std_rows(const T* x, T* out, T* mean, int64_t rows, int64_t cols, int64_t correction) {
  double dof = std::max<double>(0.0, static_cast<double>(cols - correction));
  reduce_rows(VarReducer<T>{}, x, rows, cols, [&](int64_t r, auto s) {
    double var = s.m2 / dof;
    out[r] = static_cast<T>(Sqrt ? std::sqrt(var) : var);
    if (mean) mean[r] = static_cast<T>(s.n > 0 ? s.mean : kNaN);
  });
}

template <class T>
void var_rows(const T* x, T* out, T* mean, int64_t rows, int64_t cols, int64_t correction) {
  var_or_std_rows<T, false>(x, out, mean, rows, cols, correction);
}

template <class T>
void std_rows(const T* x, T* out, T* mean, int64_t rows, int64_t cols, int64_t correction) {
  var_or_std_rows<T, true>(x, out, mean, rows, cols, correction);
}

// ---- logsumexp ----
// A run is (m, s): m its max (ignoring NaN), s = Σ exp(x − shift(m)) with shift(m) = m when
// m is finite and 0 when m = ±inf (so −inf − (−inf) never appears). Its value is shift + log s.
// Merging two finite runs rescales both sums to the larger max; an all −inf run adds
// nothing; a +inf or NaN run decides the result on its own.
template <class T>
struct LogSumExpReducer {
  struct Summary {
    double m, s;
  };
  static double shift(double m) { return std::isfinite(m) ? m : 0.0; }
  Summary of(const T* p, int64_t, int64_t n) const {
    double m = -kInf;
    for (int64_t i = 0; i < n; ++i)
      if (static_cast<double>(p[i]) > m) m = p[i];
    double c = shift(m), s = 0;
    for (int64_t i = 0; i < n; ++i) s += std::exp(static_cast<double>(p[i]) - c);
    return {m, s};
  }
  void merge(Summary& a, const Summary& b) const {
    if (std::isnan(a.s)) return;
    if (std::isnan(b.s) || a.m == -kInf) {
      a = b;
      return;
    }
    if (b.m == -kInf) return;
    if (a.m == kInf || b.m == kInf) {
      a = {kInf, kInf};
      return;
    }
    double m = std::max(a.m, b.m);
    a.s = a.s * std::exp(a.m - m) + b.s * std::exp(b.m - m);
    a.m = m;
  }
  static double value(const Summary& s) { return shift(s.m) + std::log(s.s); }
};

template <class T>
void logsumexp_rows(const T* x, T* out, T* shift, int64_t rows, int64_t cols) {
  reduce_rows(LogSumExpReducer<T>{}, x, rows, cols, [&](int64_t r, auto s) {
    double v = LogSumExpReducer<T>::value(s);
    out[r] = static_cast<T>(v);
    if (shift) shift[r] = static_cast<T>(v == -kInf ? 0.0 : v);
  });
}

// ---- p-norms ----
// The run summary is Σ|x|^p (p = 2: Σx², p = 1: Σ|x|), or max|x| for p = inf, where a NaN
// must win explicitly (a comparison with NaN is false).
template <class T>
struct NormReducer {
  double p;
  double of(const T* ptr, int64_t, int64_t n) const {
    double acc = 0;
    if (p == kInf) {
      for (int64_t i = 0; i < n; ++i) {
        double a = std::abs(static_cast<double>(ptr[i]));
        if (std::isnan(a)) return a;
        acc = std::max(acc, a);
      }
    } else if (p == 2) {
      for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(ptr[i]) * static_cast<double>(ptr[i]);
    } else if (p == 1) {
      for (int64_t i = 0; i < n; ++i) acc += std::abs(static_cast<double>(ptr[i]));
    } else {
      for (int64_t i = 0; i < n; ++i) acc += std::pow(std::abs(static_cast<double>(ptr[i])), p);
    }
    return acc;
  }
  void merge(double& a, const double& b) const {
    if (p != kInf) a += b;
    else if (!std::isnan(a) && (std::isnan(b) || b > a)) a = b;
  }
  double value(double acc) const {
    if (p == 2) return std::sqrt(acc);
    if (p == 1 || p == kInf) return acc;
    return std::pow(acc, 1.0 / p);
  }
};

template <class T>
void norm_rows(const T* x, T* out, int64_t rows, int64_t cols, double p) {
  NormReducer<T> red{p};
  reduce_rows(red, x, rows, cols, [&](int64_t r, double acc) { out[r] = static_cast<T>(red.value(acc)); });
}

// ---- instantiations ----
#define MMG_SUM(T)                                          \
  template void sum_rows<T>(const T*, T*, int64_t, int64_t); \
  template void sum_mid<T>(const T*, T*, int64_t, int64_t, int64_t);
MMG_SUM(float)
MMG_SUM(double)
MMG_SUM(int32_t)
MMG_SUM(int64_t)
#undef MMG_SUM

#define MMG_EXTREME(T)                                                 \
  template void max_rows<T>(const T*, T*, int64_t*, int64_t, int64_t); \
  template void min_rows<T>(const T*, T*, int64_t*, int64_t, int64_t);
MMG_EXTREME(float)
MMG_EXTREME(double)
MMG_EXTREME(int32_t)
MMG_EXTREME(int64_t)
MMG_EXTREME(uint8_t)
#undef MMG_EXTREME

#define MMG_FLOAT(T)                                                        \
  template void var_rows<T>(const T*, T*, T*, int64_t, int64_t, int64_t); \
  template void std_rows<T>(const T*, T*, T*, int64_t, int64_t, int64_t); \
  template void logsumexp_rows<T>(const T*, T*, T*, int64_t, int64_t);    \
  template void norm_rows<T>(const T*, T*, int64_t, int64_t, double);
MMG_FLOAT(float)
MMG_FLOAT(double)
#undef MMG_FLOAT

}  // namespace mmg::cpu
