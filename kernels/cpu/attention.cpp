// Scaled dot-product attention on the CPU: Eigen matrix products per (b, h) and block of
// queries, the softmax by hand between them.
//
// Queries go in blocks of kQueryBlock rows. A block needs the scores against every key it
// may see, [rows, Sk], but never the whole [Sq, Sk] matrix; with causal it needs only the
// keys j < (last query of the block) + 1, which skips about half the work.
//
// The products run inside parallel_for's threads, each single-threaded: Eigen does not start
// threads of its own inside an OpenMP parallel region, and mmgrad keeps Eigen's thread count
// at 1 anyway (kernels/cpu/gemm.cpp says why).
#include "kernels/attention.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/parallel.h"

namespace mmg::cpu {

template <class T>
using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ConstMap = Eigen::Map<const Mat<T>>;
template <class T>
using MutMap = Eigen::Map<Mat<T>>;

static constexpr int64_t kQueryBlock = 64;

// Keys a query block ending (exclusively) at i1 can see: all Sk, or with causal j < i1.
static int64_t key_end(int64_t i1, int64_t Sk, bool causal) {
  return causal ? std::min(i1, Sk) : Sk;
}

// S = scale · Q[i0 : i0+n] K[0 : kend]ᵀ, then −∞ where key j is masked or (causal) j > i.
// q and k point at this (b, h)'s matrices; mask at this b's row of key_mask (or nullptr).
template <class T>
static void masked_scores(const T* q, const T* k, const uint8_t* mask, int64_t i0, int64_t n,
                          int64_t kend, int64_t D, bool causal, T scale, Mat<T>& S) {
  ConstMap<T> Q(q + i0 * D, n, D), K(k, kend, D);
  S.resize(n, kend);
  S.noalias() = Q * K.transpose();
  S *= scale;
  const T neg_inf = -std::numeric_limits<T>::infinity();
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t j = 0; j < kend; ++j) {
      if ((mask && !mask[j]) || (causal && j > i0 + r)) S(r, j) = neg_inf;
    }
  }
}

// In place, row by row: S ← softmax(S), and lse_r = log Σ_j exp(S_rj). A row of all −∞
// (every key masked) becomes zeros with lse = −∞, so P V gives it a zero output.
template <class T>
static void softmax_rows_lse(Mat<T>& S, T* lse) {
  const T neg_inf = -std::numeric_limits<T>::infinity();
  for (int64_t r = 0; r < S.rows(); ++r) {
    T m = neg_inf;
    for (int64_t j = 0; j < S.cols(); ++j) m = std::max(m, S(r, j));
    if (m == neg_inf) {
      S.row(r).setZero();
      lse[r] = neg_inf;
      continue;
    }
    T sum = 0;
    for (int64_t j = 0; j < S.cols(); ++j) {
      S(r, j) = std::exp(S(r, j) - m);  // exp(−∞ − m) = 0 for the masked keys
      sum += S(r, j);
    }
    S.row(r) *= T(1) / sum;
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
void attention_forward(const T* q, const T* k, const T* v, const uint8_t* key_mask, T* out,
                       T* lse, int64_t B, int64_t H, int64_t Sq, int64_t Sk, int64_t D,
                       bool causal, T scale, const AttentionDropout& drop) {
  const int64_t blocks = (Sq + kQueryBlock - 1) / kQueryBlock;
  const int64_t tasks = B * H * blocks;
  const int64_t work = std::min(Sq, kQueryBlock) * std::max<int64_t>(Sk * D, 1);
  parallel_for(tasks, std::max<int64_t>(1, 32768 / work), [&](int64_t t0, int64_t t1) {
    Mat<T> S, Z;  // scratch, reused across this chunk's tasks
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t bh = t / blocks, blk = t % blocks, b = bh / H;
      const int64_t i0 = blk * kQueryBlock, n = std::min(kQueryBlock, Sq - i0);
      const int64_t kend = key_end(i0 + n, Sk, causal);
      const T* qh = q + bh * Sq * D;
      const T* kh = k + bh * Sk * D;
      const T* vh = v + bh * Sk * D;
      const uint8_t* mask = key_mask ? key_mask + b * Sk : nullptr;

      masked_scores(qh, kh, mask, i0, n, kend, D, causal, scale, S);
      softmax_rows_lse(S, lse + bh * Sq + i0);  // lse of the undropped weights
      if (drop.p > 0) {
        dropout_factors(drop, bh, Sq, Sk, i0, n, kend, Z);
        S.array() *= Z.array();
      }
      MutMap<T> O(out + bh * Sq * D + i0 * D, n, D);
      O.noalias() = S * ConstMap<T>(vh, kend, D);
    }
  });
}

// dQ, dK, dV for every (b, h): recompute P (and with dropout Z) block by block, then the
// five products.
template <class T>
void attention_backward(const T* q, const T* k, const T* v, const uint8_t* key_mask,
                        const T* out, const T* dout, const T* lse, T* dq, T* dk, T* dv,
                        int64_t B, int64_t H, int64_t Sq, int64_t Sk, int64_t D, bool causal,
                        T scale, const AttentionDropout& drop) {
  const int64_t work = std::max<int64_t>(Sq * Sk * D, 1);
  parallel_for(B * H, std::max<int64_t>(1, 32768 / work), [&](int64_t t0, int64_t t1) {
    Mat<T> P, dP, Z;  // scratch, reused across this chunk's (b, h) pairs
    const T neg_inf = -std::numeric_limits<T>::infinity();
    for (int64_t bh = t0; bh < t1; ++bh) {
      const int64_t b = bh / H;
      const T* qh = q + bh * Sq * D;
      const T* kh = k + bh * Sk * D;
      const T* vh = v + bh * Sk * D;
      const uint8_t* mask = key_mask ? key_mask + b * Sk : nullptr;
      MutMap<T> dK(dk + bh * Sk * D, Sk, D), dV(dv + bh * Sk * D, Sk, D);
      dK.setZero();
      dV.setZero();

      for (int64_t i0 = 0; i0 < Sq; i0 += kQueryBlock) {
        const int64_t n = std::min(kQueryBlock, Sq - i0);
        const int64_t kend = key_end(i0 + n, Sk, causal);
        ConstMap<T> Q(qh + i0 * D, n, D), K(kh, kend, D), V(vh, kend, D);
        ConstMap<T> O(out + bh * Sq * D + i0 * D, n, D), dO(dout + bh * Sq * D + i0 * D, n, D);
        const T* lse_blk = lse + bh * Sq + i0;

        // P_ij = exp(S_ij − lse_i); masked S_ij = −∞ give 0, a fully masked row (lse = −∞)
        // is set to 0 outright (exp(−∞ + ∞) would be NaN).
        masked_scores(qh, kh, mask, i0, n, kend, D, causal, scale, P);
        for (int64_t r = 0; r < n; ++r) {
          if (lse_blk[r] == neg_inf) {
            P.row(r).setZero();
            continue;
          }
          for (int64_t j = 0; j < kend; ++j) P(r, j) = std::exp(P(r, j) - lse_blk[r]);
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
          T delta = dO.row(r).dot(O.row(r));
          for (int64_t j = 0; j < kend; ++j) dP(r, j) = P(r, j) * (dP(r, j) - delta);
        }
        MutMap<T> dQ(dq + bh * Sq * D + i0 * D, n, D);
        dQ.noalias() = scale * (dP * K);
        dK.topRows(kend).noalias() += scale * (dP.transpose() * Q);
      }
    }
  });
}

template void attention_forward<float>(const float*, const float*, const float*, const uint8_t*,
                                       float*, float*, int64_t, int64_t, int64_t, int64_t,
                                       int64_t, bool, float, const AttentionDropout&);
template void attention_forward<double>(const double*, const double*, const double*,
                                        const uint8_t*, double*, double*, int64_t, int64_t,
                                        int64_t, int64_t, int64_t, bool, double,
                                        const AttentionDropout&);
template void attention_backward<float>(const float*, const float*, const float*, const uint8_t*,
                                        const float*, const float*, const float*, float*, float*,
                                        float*, int64_t, int64_t, int64_t, int64_t, int64_t,
                                        bool, float, const AttentionDropout&);
template void attention_backward<double>(const double*, const double*, const double*,
                                         const uint8_t*, const double*, const double*,
                                         const double*, double*, double*, double*, int64_t,
                                         int64_t, int64_t, int64_t, int64_t, bool, double,
                                         const AttentionDropout&);

}  // namespace mmg::cpu
