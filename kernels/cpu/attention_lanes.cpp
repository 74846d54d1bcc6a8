// Scaled dot-product attention on the CPU for short sequences and narrow heads: eight queries
// at a time, one query per vector lane (the math: kernels/attention.h).
//
// Why a second path: at the demo's sizes — 17 keys, heads of 8 or 16 values — one (b, h) is a
// few thousand multiply-adds, and an Eigen product that small spends more time choosing its
// blocking and packing its operands than multiplying (the query-blocks path, attention.cpp,
// ran at 5–17 GFLOP/s there). Working one query row at a time is no better: every row's
// softmax is a chain of short reductions across the lanes of a vector (max, sum), each ending
// in a horizontal step.
//
// Here a group of kLanes queries is held transposed, Qᵀ [D, kLanes], so that everything runs
// down the keys with whole vectors and no reduction ever crosses lanes:
//
//   forward, group of queries i0 .. i0+7 (lane w = query i0 + w):
//     Sᵀ_j  = scale · Σ_d K_jd Qᵀ_d            one vector per key j: lanes = the queries' scores
//             −∞ where key j is masked, or (causal) where j > i0 + w
//     m     = max_j Sᵀ_j,   Pᵀ_j = exp(Sᵀ_j − m),   l = Σ_j Pᵀ_j     all lane-wise
//     lse   = m + log l,    Pᵀ_j ← Pᵀ_j / l       (a lane with every key hidden: P = 0, lse = −∞)
//     Oᵀ_d  = Σ_j V_jd Pᵀ_j                     then written back as the queries' rows
//   backward, the same group:
//     Pᵀ_j  = the forward's tile when it was saved (kernels/attention.h), else
//             exp(Sᵀ_j − lse), recomputed from the saved lse
//     dPᵀ_j = Σ_d V_jd dOᵀ_d,   Δ = Σ_d dOᵀ_d Oᵀ_d
//     dSᵀ_j = scale · Pᵀ_j (dPᵀ_j − Δ)
//     dQᵀ_d = Σ_j K_jd dSᵀ_j                   written back as rows
//     dK_j += Σ_w dSᵀ_jw q_w,   dV_j += Σ_w Pᵀ_jw dO_w        rows of D values, per key
// With dropout, P is multiplied by Z before it meets V (in O and in dV) and dP by Z, as in
// kernels/attention.h; lse stays that of the undropped weights.
//
// A group's vectors are Eigen fixed-size arrays (they stay in registers); the exponentials
// are a loop over a [keys, kLanes] tile that the compiler vectorises (exp_approx for float;
// this file is built with -fno-trapping-math, which GCC needs to vectorise it: CMakeLists.txt).
// Lanes past Sq in the last group hold zero queries and are never written back. A masked query
// (query_mask) is a lane whose scores are all −∞; groups past a batch's last unmasked query are
// not computed at all, only their zeros written.
//
// Every sum is a chain of dependent additions (Σ_d for a score, Σ_j for an output value), and
// one chain at a time waits on the adder's latency, not its throughput. So four keys' scores
// (or four output values, or four keys' dK/dV rows) are summed side by side: four independent
// chains, each adding its terms in the same order as one alone would. The transposes into and out of a group are 8×8 register transposes (AVX2, float,
// D a multiple of 8), element moves otherwise.
//
// Threads: the (b, h) pairs are spread over parallel_for; each pair writes only its own rows.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "kernels/cpu/attention_lanes.h"
#include "kernels/cpu/exp_approx.h"
#include "kernels/cpu/parallel.h"

namespace mmg::cpu {
namespace {

// e^x: exp_approx for float (it vectorises), libm for double (gradcheck's f64 wants every digit).
template <class T>
inline T exp_of(T x) {
  if constexpr (std::is_same_v<T, float>) return exp_approx(x);
  else return std::exp(x);
}

constexpr int64_t kLanes = 8;  // queries per group: one AVX register of floats
template <class T>
using Lanes = Eigen::Array<T, kLanes, 1>;

#if defined(__AVX2__)
// r[c] ← column c of the 8×8 matrix whose rows are r[0..7] (unpack pairs, then quads, then halves).
inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {
    u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}
#endif

// Rows i0 .. i0+n−1 of head (b, h), D values each, into xt [D, kLanes] (xt[d·kLanes + w] =
// row i0 + w, value d); lanes n .. kLanes−1 zero.
template <class T>
void load_group(HeadRows<const T> x, int64_t b, int64_t h, int64_t i0, int64_t n, int64_t D, T* xt) {
#if defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) {
    if (D % 8 == 0) {
      for (int64_t d0 = 0; d0 < D; d0 += 8) {
        __m256 r[8];
        for (int64_t w = 0; w < kLanes; ++w)
          r[w] = w < n ? _mm256_loadu_ps(x.row(b, h, i0 + w) + d0) : _mm256_setzero_ps();
        transpose8(r);
        for (int64_t c = 0; c < 8; ++c) _mm256_storeu_ps(xt + (d0 + c) * kLanes, r[c]);
      }
      return;
    }
  }
#endif
  std::fill(xt, xt + D * kLanes, T(0));
  for (int64_t w = 0; w < n; ++w) {
    const T* r = x.row(b, h, i0 + w);
    for (int64_t d = 0; d < D; ++d) xt[d * kLanes + w] = r[d];
  }
}

// The inverse for lanes 0 .. n−1: row i0 + w of y ← lane w of yt [D, kLanes].
template <class T>
void store_group(const T* yt, int64_t n, int64_t D, HeadRows<T> y, int64_t b, int64_t h, int64_t i0) {
#if defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) {
    if (D % 8 == 0) {
      for (int64_t d0 = 0; d0 < D; d0 += 8) {
        __m256 r[8];
        for (int64_t c = 0; c < 8; ++c) r[c] = _mm256_loadu_ps(yt + (d0 + c) * kLanes);
        transpose8(r);
        for (int64_t w = 0; w < n; ++w) _mm256_storeu_ps(y.row(b, h, i0 + w) + d0, r[w]);
      }
      return;
    }
  }
#endif
  for (int64_t w = 0; w < n; ++w) {
    T* r = y.row(b, h, i0 + w);
    for (int64_t d = 0; d < D; ++d) r[d] = yt[d * kLanes + w];
  }
}

constexpr int64_t kChains = 4;  // sums kept side by side (see the top of the file)

// tile [kend, kLanes] ← Σ_d x_jd · yt_d for the keys j < kend: x = rows of head (b, h) (K or
// V), yt = a group's [D, kLanes] (Qᵀ or dOᵀ). Four keys at a time, each summed in d order.
template <class T>
void keys_dot_group(HeadRows<const T> x, int64_t b, int64_t h, const T* yt, int64_t kend, int64_t D, T* tile) {
  int64_t j = 0;
  for (; j + kChains <= kend; j += kChains) {
    const T *x0 = x.row(b, h, j), *x1 = x.row(b, h, j + 1), *x2 = x.row(b, h, j + 2), *x3 = x.row(b, h, j + 3);
    Lanes<T> a0 = Lanes<T>::Zero(), a1 = Lanes<T>::Zero(), a2 = Lanes<T>::Zero(), a3 = Lanes<T>::Zero();
    for (int64_t d = 0; d < D; ++d) {
      const Lanes<T> y = Eigen::Map<const Lanes<T>>(yt + d * kLanes);
      a0 += x0[d] * y;
      a1 += x1[d] * y;
      a2 += x2[d] * y;
      a3 += x3[d] * y;
    }
    Eigen::Map<Lanes<T>>(tile + j * kLanes) = a0;
    Eigen::Map<Lanes<T>>(tile + (j + 1) * kLanes) = a1;
    Eigen::Map<Lanes<T>>(tile + (j + 2) * kLanes) = a2;
    Eigen::Map<Lanes<T>>(tile + (j + 3) * kLanes) = a3;
  }
  for (; j < kend; ++j) {
    const T* xj = x.row(b, h, j);
    Lanes<T> acc = Lanes<T>::Zero();
    for (int64_t d = 0; d < D; ++d) acc += xj[d] * Eigen::Map<const Lanes<T>>(yt + d * kLanes);
    Eigen::Map<Lanes<T>>(tile + j * kLanes) = acc;
  }
}

// yt [D, kLanes] ← Σ_j x_jd · tile_j over the keys j < kend: x = rows of head (b, h) (V or K),
// tile = a [kend, kLanes] tile (P or dS). Four values d at a time, each summed in key order.
template <class T>
void keys_times_tile(HeadRows<const T> x, int64_t b, int64_t h, const T* tile, int64_t kend, int64_t D, T* yt) {
  int64_t d = 0;
  for (; d + kChains <= D; d += kChains) {
    Lanes<T> a0 = Lanes<T>::Zero(), a1 = Lanes<T>::Zero(), a2 = Lanes<T>::Zero(), a3 = Lanes<T>::Zero();
    for (int64_t j = 0; j < kend; ++j) {
      const T* xj = x.row(b, h, j) + d;
      const Lanes<T> t = Eigen::Map<const Lanes<T>>(tile + j * kLanes);
      a0 += xj[0] * t;
      a1 += xj[1] * t;
      a2 += xj[2] * t;
      a3 += xj[3] * t;
    }
    Eigen::Map<Lanes<T>>(yt + d * kLanes) = a0;
    Eigen::Map<Lanes<T>>(yt + (d + 1) * kLanes) = a1;
    Eigen::Map<Lanes<T>>(yt + (d + 2) * kLanes) = a2;
    Eigen::Map<Lanes<T>>(yt + (d + 3) * kLanes) = a3;
  }
  for (; d < D; ++d) {
    Lanes<T> acc = Lanes<T>::Zero();
    for (int64_t j = 0; j < kend; ++j) acc += x.row(b, h, j)[d] * Eigen::Map<const Lanes<T>>(tile + j * kLanes);
    Eigen::Map<Lanes<T>>(yt + d * kLanes) = acc;
  }
}

// Sᵀ [kend, kLanes]: scale · k_j · q_w, −∞ where key j is masked, (causal) j > i0 + w, or
// query i0 + w is masked (qmask: the n queries' entries of the query mask, or nullptr).
template <class T>
void group_scores(HeadRows<const T> k, int64_t b, int64_t h, const T* qt, int64_t D, int64_t kend,
                  const uint8_t* mask, const uint8_t* qmask, int64_t n, bool causal, int64_t i0, T scale, T* st) {
  const T neg_inf = -std::numeric_limits<T>::infinity();
  Lanes<T> query_index;
  for (int64_t w = 0; w < kLanes; ++w) query_index[w] = static_cast<T>(i0 + w);
  keys_dot_group(k, b, h, qt, kend, D, st);
  for (int64_t j = 0; j < kend; ++j) {
    Eigen::Map<Lanes<T>> s(st + j * kLanes);
    if (mask && !mask[j]) {
      s.setConstant(neg_inf);
      continue;
    }
    s = scale * s;
    if (causal) s = (query_index < static_cast<T>(j)).select(Lanes<T>::Constant(neg_inf), s);
  }
  if (!qmask) return;
  for (int64_t w = 0; w < n; ++w)  // a masked query sees no key
    if (!qmask[w])
      for (int64_t j = 0; j < kend; ++j) st[j * kLanes + w] = neg_inf;
}

// In place over the tile: st ← exp(st − shift_w) for each lane w.
template <class T>
void exp_tile(T* st, int64_t kend, const T* shift) {
  for (int64_t j = 0; j < kend; ++j) {
    T* s = st + j * kLanes;
#pragma omp simd
    for (int64_t w = 0; w < kLanes; ++w) s[w] = exp_of(s[w] - shift[w]);
  }
}

// Z over the tile for the n live lanes: zt[j·kLanes + w] = keep(i0 + w, j) / (1−p).
template <class T>
void dropout_tile(const AttentionDropout& drop, int64_t bh, int64_t Sq, int64_t Sk, int64_t i0, int64_t n,
                  int64_t kend, T* zt) {
  const T kept = static_cast<T>(drop.scale);
  std::fill(zt, zt + kend * kLanes, T(0));
  for (int64_t w = 0; w < n; ++w)
    for (int64_t j = 0; j < kend; ++j)
      zt[j * kLanes + w] = attention_dropout_keep(drop, (bh * Sq + i0 + w) * Sk + j) ? kept : T(0);
}

// y_j ← y_j + Σ_w a[j·kLanes + w] x_w over the keys j < kend: x_w = rows i0 + w, y_j = rows j.
// kD > 0: D fixed at compile time, y_j summed in registers; kD == 0: D as given.
template <class T, int kD>
void add_group_outer_d(const T* a, int64_t kend, HeadRows<const T> x, int64_t i0, int64_t n, HeadRows<T> y,
                       int64_t b, int64_t h, int64_t D) {
  if constexpr (kD > 0) {
    using Row = Eigen::Array<T, kD, 1>;
    auto one_key = [&](int64_t j) {
      Eigen::Map<Row> yj(y.row(b, h, j));
      Row acc = yj;
      for (int64_t w = 0; w < n; ++w) acc += a[j * kLanes + w] * Eigen::Map<const Row>(x.row(b, h, i0 + w));
      yj = acc;
    };
    int64_t j = 0;
    // Two keys side by side while their rows fit in registers (up to 16 floats each; named
    // accumulators, since GCC at -O2 keeps an array of them in memory).
    if constexpr (kD * sizeof(T) <= 64) {
      for (; j + 2 <= kend; j += 2) {
        Eigen::Map<Row> y0(y.row(b, h, j)), y1(y.row(b, h, j + 1));
        Row acc0 = y0, acc1 = y1;
        const T *a0 = a + j * kLanes, *a1 = a + (j + 1) * kLanes;
        for (int64_t w = 0; w < n; ++w) {
          const Row xw = Eigen::Map<const Row>(x.row(b, h, i0 + w));
          acc0 += a0[w] * xw;
          acc1 += a1[w] * xw;
        }
        y0 = acc0;
        y1 = acc1;
      }
    }
    for (; j < kend; ++j) one_key(j);
  } else {
    for (int64_t j = 0; j < kend; ++j) {
      T* yj = y.row(b, h, j);
      for (int64_t w = 0; w < n; ++w) {
        const T aw = a[j * kLanes + w];
        const T* xw = x.row(b, h, i0 + w);
#pragma omp simd
        for (int64_t d = 0; d < D; ++d) yj[d] += aw * xw[d];
      }
    }
  }
}

template <class T>
void add_group_outer(const T* a, int64_t kend, HeadRows<const T> x, int64_t i0, int64_t n, HeadRows<T> y, int64_t b,
                     int64_t h, int64_t D) {
  switch (D) {
    case 8: return add_group_outer_d<T, 8>(a, kend, x, i0, n, y, b, h, D);
    case 16: return add_group_outer_d<T, 16>(a, kend, x, i0, n, y, b, h, D);
    case 32: return add_group_outer_d<T, 32>(a, kend, x, i0, n, y, b, h, D);
    default: return add_group_outer_d<T, 0>(a, kend, x, i0, n, y, b, h, D);
  }
}

// The keys a group may see: all Sk, or with causal those up to its last query; and none past
// `key_limit`, the last key the mask lets through (+1). The keys cut off are masked: their
// weights are exactly 0, so leaving them out changes no sum (a batch of texts padded to its
// longest text has its pads there: half the keys of the demo's captions).
inline int64_t group_keys(int64_t i0, int64_t n, int64_t Sk, bool causal, int64_t key_limit) {
  return std::min(causal ? std::min(i0 + n, Sk) : Sk, key_limit);
}

// Per-thread scratch: the group's transposed operands and its [Sk, kLanes] tiles.
template <class T>
struct GroupScratch {
  std::vector<T> qt, dot, ot, st, dpt, zt;
  GroupScratch(int64_t D, int64_t Sk)
      : qt(D * kLanes), dot(D * kLanes), ot(D * kLanes), st(Sk * kLanes), dpt(Sk * kLanes), zt(Sk * kLanes) {}
};

template <class T>
void forward_group(HeadRows<const T> q, HeadRows<const T> k, HeadRows<const T> v, const uint8_t* mask,
                   const uint8_t* qmask, int64_t key_limit, HeadRows<T> out, T* lse, int64_t b, int64_t h,
                   int64_t bh, int64_t i0, int64_t n, int64_t Sq, int64_t Sk, int64_t D, bool causal, T scale,
                   const AttentionDropout& drop, GroupScratch<T>& g, T* saved) {
  const T neg_inf = -std::numeric_limits<T>::infinity();
  const int64_t kend = group_keys(i0, n, Sk, causal, key_limit);
  load_group(q, b, h, i0, n, D, g.qt.data());
  group_scores(k, b, h, g.qt.data(), D, kend, mask, qmask, n, causal, i0, scale, g.st.data());

  Lanes<T> m = Lanes<T>::Constant(neg_inf);
  for (int64_t j = 0; j < kend; ++j) m = m.max(Eigen::Map<const Lanes<T>>(g.st.data() + j * kLanes));
  const Lanes<T> shift = (m == neg_inf).select(Lanes<T>::Zero(), m);  // a hidden lane: exp(−∞) = 0
  exp_tile(g.st.data(), kend, shift.data());
  Lanes<T> sum = Lanes<T>::Zero();
  for (int64_t j = 0; j < kend; ++j) sum += Eigen::Map<const Lanes<T>>(g.st.data() + j * kLanes);
  const Lanes<T> inv = (sum > T(0)).select(sum.inverse(), Lanes<T>::Zero());
  for (int64_t w = 0; w < n; ++w) lse[bh * Sq + i0 + w] = sum[w] > 0 ? m[w] + std::log(sum[w]) : neg_inf;

  for (int64_t j = 0; j < kend; ++j) Eigen::Map<Lanes<T>>(g.st.data() + j * kLanes) *= inv;
  if (saved) std::copy(g.st.data(), g.st.data() + kend * kLanes, saved);  // P, before dropout
  if (drop.p > 0) {
    dropout_tile(drop, bh, Sq, Sk, i0, n, kend, g.zt.data());
    for (int64_t j = 0; j < kend; ++j)
      Eigen::Map<Lanes<T>>(g.st.data() + j * kLanes) *= Eigen::Map<const Lanes<T>>(g.zt.data() + j * kLanes);
  }
  keys_times_tile(v, b, h, g.st.data(), kend, D, g.ot.data());  // Oᵀ_d = Σ_j V_jd Pᵀ_j
  store_group(g.ot.data(), n, D, out, b, h, i0);
}

template <class T>
void backward_group(HeadRows<const T> q, HeadRows<const T> k, HeadRows<const T> v, const uint8_t* mask,
                    const uint8_t* qmask, int64_t key_limit, HeadRows<const T> out, HeadRows<const T> dout,
                    const T* lse, HeadRows<T> dq, HeadRows<T> dk, HeadRows<T> dv, int64_t b, int64_t h, int64_t bh,
                    int64_t i0, int64_t n, int64_t Sq, int64_t Sk, int64_t D, bool causal, T scale,
                    const AttentionDropout& drop, GroupScratch<T>& g, const T* saved) {
  const T inf = std::numeric_limits<T>::infinity();
  const int64_t kend = group_keys(i0, n, Sk, causal, key_limit);
  load_group(dout, b, h, i0, n, D, g.dot.data());
  load_group(out, b, h, i0, n, D, g.ot.data());

  // Pᵀ: the forward's, or exp(Sᵀ − lse); a lane whose row is fully masked (lse = −∞), or past
  // Sq, shifts by +∞ so that its weights are exp(−∞) = 0, not exp(−∞ + ∞) = NaN.
  const T* pt = saved;
  if (!saved) {
    Lanes<T> shift = Lanes<T>::Constant(inf);
    for (int64_t w = 0; w < n; ++w) shift[w] = lse[bh * Sq + i0 + w] == -inf ? inf : lse[bh * Sq + i0 + w];
    load_group(q, b, h, i0, n, D, g.qt.data());
    group_scores(k, b, h, g.qt.data(), D, kend, mask, qmask, n, causal, i0, scale, g.st.data());
    exp_tile(g.st.data(), kend, shift.data());
    pt = g.st.data();
  }

  // Δ = Σ_d dOᵀ_d Oᵀ_d, per lane.
  Lanes<T> delta = Lanes<T>::Zero();
  for (int64_t d = 0; d < D; ++d)
    delta += Eigen::Map<const Lanes<T>>(g.dot.data() + d * kLanes) * Eigen::Map<const Lanes<T>>(g.ot.data() + d * kLanes);

  if (drop.p > 0) dropout_tile(drop, bh, Sq, Sk, i0, n, kend, g.zt.data());
  keys_dot_group(v, b, h, g.dot.data(), kend, D, g.dpt.data());  // dPᵀ_j = Σ_d V_jd dOᵀ_d
  if (drop.p > 0)
    for (int64_t j = 0; j < kend; ++j)
      Eigen::Map<Lanes<T>>(g.dpt.data() + j * kLanes) *= Eigen::Map<const Lanes<T>>(g.zt.data() + j * kLanes);
  // dV_j += Σ_w (Z ⊙ P)ᵀ_jw dO_w: with dropout the dropped weights, kept in zt.
  if (drop.p > 0) {
    for (int64_t j = 0; j < kend; ++j)
      Eigen::Map<Lanes<T>>(g.zt.data() + j * kLanes) *= Eigen::Map<const Lanes<T>>(pt + j * kLanes);
    add_group_outer(g.zt.data(), kend, dout, i0, n, dv, b, h, D);
  } else {
    add_group_outer(pt, kend, dout, i0, n, dv, b, h, D);
  }
  // dSᵀ_j = scale · Pᵀ_j (dPᵀ_j − Δ), stored over dPᵀ.
  for (int64_t j = 0; j < kend; ++j) {
    Eigen::Map<Lanes<T>> dp(g.dpt.data() + j * kLanes);
    dp = scale * (Eigen::Map<const Lanes<T>>(pt + j * kLanes) * (dp - delta));
  }
  // dQᵀ_d = Σ_j K_jd dSᵀ_j (over ot, no longer needed), then dK_j += Σ_w dSᵀ_jw q_w.
  keys_times_tile(k, b, h, g.dpt.data(), kend, D, g.ot.data());
  store_group(g.ot.data(), n, D, dq, b, h, i0);
  add_group_outer(g.dpt.data(), kend, q, i0, n, dk, b, h, D);
}

// Where the group of queries i0 .. i0+7 of pair bh keeps its [Sk, kLanes] tile of P.
inline int64_t saved_tile(int64_t bh, int64_t i0, int64_t Sq, int64_t Sk) {
  const int64_t groups = (Sq + kLanes - 1) / kLanes;
  return ((bh * groups) + i0 / kLanes) * Sk * kLanes;
}

}  // namespace

int64_t attention_lanes_saved_weights(int64_t B, int64_t H, int64_t Sq, int64_t Sk) {
  return B * H * ((Sq + kLanes - 1) / kLanes) * Sk * kLanes;
}

// The first query of the groups a pair computes: the groups from it on hold masked queries
// only (a batch of texts padded to its longest text has its pad queries there).
inline int64_t computed_queries(const uint8_t* qmask, int64_t Sq) {
  const int64_t limit = mask_limit(qmask, Sq);
  return std::min(Sq, (limit + kLanes - 1) / kLanes * kLanes);
}

template <class T>
void attention_forward_lanes(HeadRows<const T> q, HeadRows<const T> k, HeadRows<const T> v, const uint8_t* key_mask,
                             const uint8_t* query_mask, HeadRows<T> out, T* lse, int64_t B, int64_t H, int64_t Sq,
                             int64_t Sk, int64_t D, bool causal, T scale, const AttentionDropout& drop,
                             T* saved_weights) {
  const T neg_inf = -std::numeric_limits<T>::infinity();
  const int64_t work = std::max<int64_t>(Sq * Sk * D, 1);
  parallel_for(B * H, std::max<int64_t>(1, 32768 / work), [&](int64_t t0, int64_t t1) {
    GroupScratch<T> g(D, Sk);
    for (int64_t bh = t0; bh < t1; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const uint8_t* mask = key_mask ? key_mask + b * Sk : nullptr;
      const uint8_t* qmask = query_mask ? query_mask + b * Sq : nullptr;
      const int64_t key_limit = mask_limit(mask, Sk), computed = computed_queries(qmask, Sq);
      for (int64_t i0 = 0; i0 < computed; i0 += kLanes)
        forward_group(q, k, v, mask, qmask ? qmask + i0 : nullptr, key_limit, out, lse, b, h, bh, i0,
                      std::min(kLanes, Sq - i0), Sq, Sk, D, causal, scale, drop, g,
                      saved_weights ? saved_weights + saved_tile(bh, i0, Sq, Sk) : nullptr);
      for (int64_t i = computed; i < Sq; ++i) {  // masked queries: zeros, lse = −∞
        std::fill(out.row(b, h, i), out.row(b, h, i) + D, T(0));
        lse[bh * Sq + i] = neg_inf;
      }
    }
  });
}

template <class T>
void attention_backward_lanes(HeadRows<const T> q, HeadRows<const T> k, HeadRows<const T> v, const uint8_t* key_mask,
                              const uint8_t* query_mask, HeadRows<const T> out, HeadRows<const T> dout, const T* lse,
                              HeadRows<T> dq, HeadRows<T> dk, HeadRows<T> dv, int64_t B, int64_t H, int64_t Sq,
                              int64_t Sk, int64_t D, bool causal, T scale, const AttentionDropout& drop,
                              const T* saved_weights) {
  const int64_t work = std::max<int64_t>(Sq * Sk * D, 1);
  parallel_for(B * H, std::max<int64_t>(1, 32768 / work), [&](int64_t t0, int64_t t1) {
    GroupScratch<T> g(D, Sk);
    for (int64_t bh = t0; bh < t1; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const uint8_t* mask = key_mask ? key_mask + b * Sk : nullptr;
      const uint8_t* qmask = query_mask ? query_mask + b * Sq : nullptr;
      const int64_t key_limit = mask_limit(mask, Sk), computed = computed_queries(qmask, Sq);
      for (int64_t j = 0; j < Sk; ++j) {  // keys no query sees keep zero gradients
        std::fill(dk.row(b, h, j), dk.row(b, h, j) + D, T(0));
        std::fill(dv.row(b, h, j), dv.row(b, h, j) + D, T(0));
      }
      for (int64_t i0 = 0; i0 < computed; i0 += kLanes)
        backward_group(q, k, v, mask, qmask ? qmask + i0 : nullptr, key_limit, out, dout, lse, dq, dk, dv, b, h, bh,
                       i0, std::min(kLanes, Sq - i0), Sq, Sk, D, causal, scale, drop, g,
                       saved_weights ? saved_weights + saved_tile(bh, i0, Sq, Sk) : nullptr);
      for (int64_t i = computed; i < Sq; ++i) std::fill(dq.row(b, h, i), dq.row(b, h, i) + D, T(0));
    }
  });
}

#define MMG_ATTENTION_LANES_INSTANTIATE(T)                                                                             \
  template void attention_forward_lanes<T>(HeadRows<const T>, HeadRows<const T>, HeadRows<const T>, const uint8_t*,   \
                                           const uint8_t*, HeadRows<T>, T*, int64_t, int64_t, int64_t, int64_t, int64_t, bool, T,      \
                                           const AttentionDropout&, T*);                                               \
  template void attention_backward_lanes<T>(HeadRows<const T>, HeadRows<const T>, HeadRows<const T>, const uint8_t*,  \
                                            const uint8_t*, HeadRows<const T>, HeadRows<const T>, const T*, HeadRows<T>, HeadRows<T>,  \
                                            HeadRows<T>, int64_t, int64_t, int64_t, int64_t, int64_t, bool, T,         \
                                            const AttentionDropout&, const T*);
MMG_ATTENTION_LANES_INSTANTIATE(float)
MMG_ATTENTION_LANES_INSTANTIATE(double)
#undef MMG_ATTENTION_LANES_INSTANTIATE

}  // namespace mmg::cpu
