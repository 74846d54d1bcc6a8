// Scaled dot-product attention on the CPU, the query-blocks path: Eigen matrix products per
// (b, h) and block of queries, the softmax by hand between them. attention_forward and
// attention_backward at the end choose between it and the query-lanes path
// (kernels/cpu/attention_lanes.cpp), by size unless told.
//
// Queries go in blocks of kQueryBlock rows. A block needs the scores against every key it
// may see, [rows, Sk], but never the whole [Sq, Sk] matrix; with causal it needs only the
// keys j < (last query of the block) + 1, which skips about half the work.
//
// Operands are HeadRows (kernels/attention.h): any layout whose rows of D values are
// contiguous. Eigen maps them with their row stride, so the op hands over views of
// [B, S, H·D] projections without copying them into [B, H, S, D] first.
//
// The softmax between the products works on rows of scores with loops the compiler
// vectorises; for float the exponential is exp_approx (kernels/cpu/exp_approx.h), since a
// libm call per score kept that loop scalar and was the largest cost after the products at
// the demo's sizes (heads of 8 and 16 values, 17 keys).
//
// The products run inside parallel_for's threads, each single-threaded: mmgrad keeps
// Eigen's thread count at 1 (kernels/cpu/gemm.cpp says why).
#include "kernels/attention.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "kernels/cpu/attention_lanes.h"
#include "kernels/cpu/exp_approx.h"
#include "kernels/cpu/parallel.h"

namespace mmg::cpu {

template <class T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using RowsMap = Eigen::Map<Mat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using ConstRowsMap = Eigen::Map<const Mat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

static constexpr int64_t kQueryBlock = 64;
// The largest sizes cpu_attention_path_for sends down the query-lanes path.
static constexpr int64_t kLanesMaxKeys = 64, kLanesMaxHead = 32;

// Rows s0 .. s0+n−1 of head (b, h) as an [n, D] matrix.
template <class T>
static ConstRowsMap<T> head_block(HeadRows<const T> x, int64_t b, int64_t h, int64_t s0, int64_t n, int64_t D) {
  return ConstRowsMap<T>(x.row(b, h, s0), n, D, Eigen::OuterStride<>(x.s_stride));
}
template <class T>
static RowsMap<T> head_block(HeadRows<T> x, int64_t b, int64_t h, int64_t s0, int64_t n, int64_t D) {
  return RowsMap<T>(x.row(b, h, s0), n, D, Eigen::OuterStride<>(x.s_stride));
}

// Keys a query block ending (exclusively) at i1 can see: all Sk, or with causal j < i1.
static int64_t key_end(int64_t i1, int64_t Sk, bool causal) {
  return causal ? std::min(i1, Sk) : Sk;
}

// e^x: the vectorisable approximation for float, libm for double (gradcheck's f64 wants
// every digit).
template <class T>
static inline T exp_of(T x) {
  if constexpr (std::is_same_v<T, float>) return exp_approx(x);
  else return std::exp(x);
}

// Row r of a block's raw products Q Kᵀ, for query i: s_j ← scale · s_j where key j is
// visible, −∞ where the key mask hides it or (causal) j > i.
template <class T>
static void mask_scores_row(T* s, int64_t kend, const uint8_t* mask, bool causal, int64_t i, T scale) {
  const T neg_inf = -std::numeric_limits<T>::infinity();
  const int64_t seen = causal ? std::min(kend, i + 1) : kend;  // keys j < seen pass causality
  if (mask) {
#pragma omp simd
    for (int64_t j = 0; j < seen; ++j) s[j] = mask[j] ? s[j] * scale : neg_inf;
  } else {
#pragma omp simd
    for (int64_t j = 0; j < seen; ++j) s[j] *= scale;
  }
  for (int64_t j = seen; j < kend; ++j) s[j] = neg_inf;
}

// In place: s_j ← e^(s_j − shift). exp(−∞) = 0, so hidden keys get weight 0.
template <class T>
static void exp_shifted(T* s, int64_t n, T shift) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) s[j] = exp_of(s[j] - shift);
}

// S = scale · Q[i0 : i0+n] K[0 : kend]ᵀ, then −∞ where key j is masked, (causal) j > i, or
// query i is masked (qmask: the query mask's row of this batch, or nullptr).
template <class T>
static void masked_scores(HeadRows<const T> q, HeadRows<const T> k, int64_t b, int64_t h, const uint8_t* mask,
                          const uint8_t* qmask, int64_t i0, int64_t n, int64_t kend, int64_t D, bool causal, T scale,
                          Mat<T>& S) {
  S.resize(n, kend);
  S.noalias() = head_block(q, b, h, i0, n, D) * head_block(k, b, h, 0, kend, D).transpose();
  for (int64_t r = 0; r < n; ++r) {
    T* s = S.data() + r * S.cols();
    if (qmask && !qmask[i0 + r]) std::fill(s, s + kend, -std::numeric_limits<T>::infinity());
    else mask_scores_row(s, kend, mask, causal, i0 + r, scale);
  }
}

// In place, row by row: S ← softmax(S), and lse_r = log Σ_j exp(S_rj). A row of all −∞
// (every key masked) becomes zeros with lse = −∞, so P V gives it a zero output.
template <class T>
static void softmax_rows_lse(Mat<T>& S, T* lse) {
  const T neg_inf = -std::numeric_limits<T>::infinity();
  const int64_t cols = S.cols();
  for (int64_t r = 0; r < S.rows(); ++r) {
    T* s = S.data() + r * S.cols();
    T m = neg_inf;
    for (int64_t j = 0; j < cols; ++j) m = std::max(m, s[j]);
    if (m == neg_inf) {
      std::fill(s, s + cols, T(0));
      lse[r] = neg_inf;
      continue;
    }
    exp_shifted(s, cols, m);
    T sum = 0;
    for (int64_t j = 0; j < cols; ++j) sum += s[j];
    const T inv = T(1) / sum;
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) s[j] *= inv;
    lse[r] = m + std::log(sum);
  }
}

// Z over a block: Z(r, j) = keep / (1−p) for query i0 + r of (b, h) = bh and key j < kend,
// keep drawn at the weight's flat position (bh·Sq + i0 + r)·Sk + j (kernels/attention.h).
template <class T>
static void dropout_factors(const AttentionDropout& drop, int64_t bh, int64_t Sq, int64_t Sk, int64_t i0,
                            int64_t n, int64_t kend, Mat<T>& Z) {
  const T kept = static_cast<T>(drop.scale);
  Z.resize(n, kend);
  for (int64_t r = 0; r < n; ++r) {
    const int64_t row = (bh * Sq + i0 + r) * Sk;
    for (int64_t j = 0; j < kend; ++j) Z(r, j) = attention_dropout_keep(drop, row + j) ? kept : T(0);
  }
}

// O = softmax(S) V for every (b, h, query block); with dropout O = (Z ⊙ softmax(S)) V.
template <class T>
static void forward_blocks(HeadRows<const T> q, HeadRows<const T> k, HeadRows<const T> v, const uint8_t* key_mask,
                       const uint8_t* query_mask, HeadRows<T> out, T* lse, int64_t B, int64_t H, int64_t Sq, int64_t Sk, int64_t D,
                       bool causal, T scale, const AttentionDropout& drop) {
  const int64_t blocks = (Sq + kQueryBlock - 1) / kQueryBlock;
  const int64_t tasks = B * H * blocks;
  const int64_t work = std::min(Sq, kQueryBlock) * std::max<int64_t>(Sk * D, 1);
  parallel_for(tasks, std::max<int64_t>(1, 32768 / work), [&](int64_t t0, int64_t t1) {
    Mat<T> S, Z;  // scratch, reused across this chunk's tasks
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t bh = t / blocks, blk = t % blocks, b = bh / H, h = bh % H;
      const uint8_t* mask = key_mask ? key_mask + b * Sk : nullptr;
      const uint8_t* qmask = query_mask ? query_mask + b * Sq : nullptr;
      // Queries past the last one the query mask lets through: zeros, lse = −∞, not computed.
      const int64_t i0 = blk * kQueryBlock, i1 = std::min(i0 + kQueryBlock, Sq);
      const int64_t n = std::max<int64_t>(0, std::min(i1, mask_limit(qmask, Sq)) - i0);
      for (int64_t i = i0 + n; i < i1; ++i) {
        std::fill(out.row(b, h, i), out.row(b, h, i) + D, T(0));
        lse[bh * Sq + i] = -std::numeric_limits<T>::infinity();
      }
      if (n == 0) continue;
      const int64_t kend = key_end(i0 + n, Sk, causal);

      masked_scores(q, k, b, h, mask, qmask, i0, n, kend, D, causal, scale, S);
      softmax_rows_lse(S, lse + bh * Sq + i0);  // lse of the undropped weights
      if (drop.p > 0) {
        dropout_factors(drop, bh, Sq, Sk, i0, n, kend, Z);
        S.array() *= Z.array();
      }
      head_block(out, b, h, i0, n, D).noalias() = S * head_block(v, b, h, 0, kend, D);
    }
  });
}

// dQ, dK, dV for every (b, h): recompute P (and with dropout Z) block by block, then the
// five products.
template <class T>
static void backward_blocks(HeadRows<const T> q, HeadRows<const T> k, HeadRows<const T> v, const uint8_t* key_mask,
                        const uint8_t* query_mask, HeadRows<const T> out, HeadRows<const T> dout, const T* lse, HeadRows<T> dq,
                        HeadRows<T> dk, HeadRows<T> dv, int64_t B, int64_t H, int64_t Sq, int64_t Sk, int64_t D,
                        bool causal, T scale, const AttentionDropout& drop) {
  const int64_t work = std::max<int64_t>(Sq * Sk * D, 1);
  parallel_for(B * H, std::max<int64_t>(1, 32768 / work), [&](int64_t t0, int64_t t1) {
    Mat<T> P, dP, Z;  // scratch, reused across this chunk's (b, h) pairs
    const T neg_inf = -std::numeric_limits<T>::infinity();
    for (int64_t bh = t0; bh < t1; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const uint8_t* mask = key_mask ? key_mask + b * Sk : nullptr;
      const uint8_t* qmask = query_mask ? query_mask + b * Sq : nullptr;
      const int64_t query_limit = mask_limit(qmask, Sq);  // the queries after it: dq = 0
      RowsMap<T> dK = head_block(dk, b, h, 0, Sk, D), dV = head_block(dv, b, h, 0, Sk, D);
      dK.setZero();
      dV.setZero();
      head_block(dq, b, h, query_limit, Sq - query_limit, D).setZero();

      for (int64_t i0 = 0; i0 < query_limit; i0 += kQueryBlock) {
        const int64_t n = std::min(kQueryBlock, query_limit - i0);
        const int64_t kend = key_end(i0 + n, Sk, causal);
        ConstRowsMap<T> Q = head_block(q, b, h, i0, n, D), K = head_block(k, b, h, 0, kend, D);
        ConstRowsMap<T> V = head_block(v, b, h, 0, kend, D);
        ConstRowsMap<T> O = head_block(out, b, h, i0, n, D), dO = head_block(dout, b, h, i0, n, D);
        const T* lse_blk = lse + bh * Sq + i0;

        // P_ij = exp(S_ij − lse_i); masked S_ij = −∞ give 0, a fully masked row (lse = −∞)
        // is set to 0 outright (exp(−∞ + ∞) would be NaN).
        masked_scores(q, k, b, h, mask, qmask, i0, n, kend, D, causal, scale, P);
        for (int64_t r = 0; r < n; ++r) {
          if (lse_blk[r] == neg_inf) P.row(r).setZero();
          else exp_shifted(P.data() + r * kend, kend, lse_blk[r]);
        }

        dP.resize(n, kend);
        dP.noalias() = dO * V.transpose();
        if (drop.p > 0) {
          // dV = (Z ⊙ P)ᵀ dO, and the gradient reaches P through the mask: dP ← Z ⊙ dP.
          dropout_factors(drop, bh, Sq, Sk, i0, n, kend, Z);
          dV.topRows(kend).noalias() += P.cwiseProduct(Z).transpose() * dO;
          dP.array() *= Z.array();
        } else {
          dV.topRows(kend).noalias() += P.transpose() * dO;
        }
        // dS = P ⊙ (dP − Δ), Δ_i = dO_i · O_i (O the dropped output with dropout); stored over dP.
        for (int64_t r = 0; r < n; ++r) {
          const T delta = dO.row(r).dot(O.row(r));
          const T* p = P.data() + r * kend;
          T* ds = dP.data() + r * kend;
#pragma omp simd
          for (int64_t j = 0; j < kend; ++j) ds[j] = p[j] * (ds[j] - delta);
        }
        head_block(dq, b, h, i0, n, D).noalias() = scale * (dP * K);
        dK.topRows(kend).noalias() += scale * (dP.transpose() * Q);
      }
    }
  });
}

// The query-lanes path wins while a head is short and narrow. On a 2-core AVX2 machine
// (mmg_bench --kernel attention times both; 2026-12-07) it ran the demo's text and fusion
// shapes (14–28 queries, 17–28 keys, heads of 8 and 16) 1.7–2.9× faster forward and
// 1.2–2.1× faster forward + backward, and lost to the Eigen blocks at heads of 64 values
// (55–86 % of their rate at 77 and 197 keys).
CpuAttentionPath cpu_attention_path_for(int64_t Sk, int64_t D) {
  return Sk <= kLanesMaxKeys && D <= kLanesMaxHead ? CpuAttentionPath::query_lanes : CpuAttentionPath::query_blocks;
}

static bool take_lanes(CpuAttentionPath path, int64_t Sk, int64_t D) {
  if (path == CpuAttentionPath::by_size) path = cpu_attention_path_for(Sk, D);
  return path == CpuAttentionPath::query_lanes;
}

int64_t cpu_attention_saved_weights(int64_t B, int64_t H, int64_t Sq, int64_t Sk, int64_t D, CpuAttentionPath path) {
  return take_lanes(path, Sk, D) ? attention_lanes_saved_weights(B, H, Sq, Sk) : 0;
}

template <class T>
void attention_forward(HeadRows<const T> q, HeadRows<const T> k, HeadRows<const T> v, const uint8_t* key_mask,
                       const uint8_t* query_mask, HeadRows<T> out, T* lse, int64_t B, int64_t H, int64_t Sq,
                       int64_t Sk, int64_t D, bool causal, T scale, const AttentionDropout& drop,
                       CpuAttentionPath path, T* saved_weights) {
  if (take_lanes(path, Sk, D))
    attention_forward_lanes<T>(q, k, v, key_mask, query_mask, out, lse, B, H, Sq, Sk, D, causal, scale, drop,
                               saved_weights);
  else
    forward_blocks<T>(q, k, v, key_mask, query_mask, out, lse, B, H, Sq, Sk, D, causal, scale, drop);
}

template <class T>
void attention_backward(HeadRows<const T> q, HeadRows<const T> k, HeadRows<const T> v, const uint8_t* key_mask,
                        const uint8_t* query_mask, HeadRows<const T> out, HeadRows<const T> dout, const T* lse,
                        HeadRows<T> dq, HeadRows<T> dk, HeadRows<T> dv, int64_t B, int64_t H, int64_t Sq, int64_t Sk,
                        int64_t D, bool causal, T scale, const AttentionDropout& drop, CpuAttentionPath path,
                        const T* saved_weights) {
  if (take_lanes(path, Sk, D))
    attention_backward_lanes<T>(q, k, v, key_mask, query_mask, out, dout, lse, dq, dk, dv, B, H, Sq, Sk, D, causal,
                                scale, drop, saved_weights);
  else
    backward_blocks<T>(q, k, v, key_mask, query_mask, out, dout, lse, dq, dk, dv, B, H, Sq, Sk, D, causal, scale,
                       drop);
}

#define MMG_ATTENTION_INSTANTIATE(T)                                                                                \
  template void attention_forward<T>(HeadRows<const T>, HeadRows<const T>, HeadRows<const T>, const uint8_t*,      \
                                     const uint8_t*, HeadRows<T>, T*, int64_t, int64_t, int64_t, int64_t, int64_t, bool, T,         \
                                     const AttentionDropout&, CpuAttentionPath, T*);                                \
  template void attention_backward<T>(HeadRows<const T>, HeadRows<const T>, HeadRows<const T>, const uint8_t*,     \
                                      const uint8_t*, HeadRows<const T>, HeadRows<const T>, const T*, HeadRows<T>, HeadRows<T>,     \
                                      HeadRows<T>, int64_t, int64_t, int64_t, int64_t, int64_t, bool, T,            \
                                      const AttentionDropout&, CpuAttentionPath, const T*);
MMG_ATTENTION_INSTANTIATE(float)
MMG_ATTENTION_INSTANTIATE(double)
#undef MMG_ATTENTION_INSTANTIATE

}  // namespace mmg::cpu
