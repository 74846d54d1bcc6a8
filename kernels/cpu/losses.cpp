// losses on the CPU: cross-entropy, CLIP symmetric InfoNCE, hinge ranking loss.
// The math of each is in kernels/losses.h; this file follows it line by line.
#include "kernels/losses.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/gemm.h"

namespace mmg::cpu {

// Work (in elements) worth giving a thread of its own.
constexpr int64_t kGrainWork = 16 * 1024;
static int64_t grain_for(int64_t work_per_item) {
  return std::max<int64_t>(1, kGrainWork / std::max<int64_t>(work_per_item, 1));
}

// Rows of the N×N score matrix recomputed at a time: memory is kTileRows·N elements.
constexpr int64_t kTileRows = 256;

// The exps dominate these kernels (N² of them in the pair losses), so the element loops
// are written as Eigen array expressions over raw pointers: Eigen evaluates exp with SIMD
// (several times faster than calling std::exp per element).
template <class T>
using Vec = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using ConstVec = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// log Σ_c exp x_c, shifted by the max so no exp overflows.
template <class T>
static T row_logsumexp(const T* x, int64_t C) {
  ConstVec<T> a(x, C);
  const T m = a.maxCoeff();
  return m + std::log((a - m).exp().sum());
}

// Σ v in index order (a fixed order, so the result does not depend on the thread count).
static double sum_in_order(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}

// =======================================================================================
// cross-entropy

template <class T>
void cross_entropy_forward(const T* logits, const int64_t* target, int64_t N, int64_t C,
                           int64_t ignore_index, T label_smoothing, T* loss_out, T* lse,
                           int64_t* count_out) {
  const double eps = label_smoothing;
  std::vector<double> row_loss(N, 0.0);
  parallel_for(N, grain_for(C), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const T* x = logits + i * C;
      lse[i] = row_logsumexp(x, C);
      if (target[i] == ignore_index) continue;
      // ℓ_i = lse_i − (1 − ε)·x_t − (ε/C)·Σ_c x_c
      double loss = static_cast<double>(lse[i]) - (1.0 - eps) * x[target[i]];
      if (eps != 0) {
        double sum_x = 0;
        for (int64_t c = 0; c < C; ++c) sum_x += x[c];
        loss -= eps / static_cast<double>(C) * sum_x;
      }
      row_loss[i] = loss;
    }
  });
  int64_t n = 0;
  for (int64_t i = 0; i < N; ++i) n += target[i] != ignore_index;
  *count_out = n;
  // All rows ignored: 0, not PyTorch's 0/0 = NaN (see the header).
  *loss_out = n > 0 ? static_cast<T>(sum_in_order(row_loss) / static_cast<double>(n)) : T(0);
}

template <class T>
void cross_entropy_backward(const T* logits, const int64_t* target, const T* lse, int64_t N,
                            int64_t C, int64_t ignore_index, T label_smoothing, T grad_loss,
                            T* dlogits) {
  int64_t n = 0;
  for (int64_t i = 0; i < N; ++i) n += target[i] != ignore_index;
  const T scale = n > 0 ? grad_loss / static_cast<T>(n) : T(0);
  const T eps = label_smoothing;
  const T q_off = eps / static_cast<T>(C);  // q_ic for c ≠ t_i
  const T q_on = T(1) - eps + q_off;         // q_ic for c = t_i
  parallel_for(N, grain_for(C), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const T* x = logits + i * C;
      T* dx = dlogits + i * C;
      if (target[i] == ignore_index || n == 0) {
        std::fill(dx, dx + C, T(0));
        continue;
      }
      // ∂loss/∂x_ic = (p_ic − q_ic)/n
      Vec<T>(dx, C) = scale * ((ConstVec<T>(x, C) - lse[i]).exp() - q_off);
      dx[target[i]] -= scale * (q_on - q_off);
    }
  });
}

// =======================================================================================
// clip_loss (symmetric InfoNCE)

// L[rows, N] = s · u[i0 : i0+rows] · vᵀ, one tile of the logits.
template <class T>
static void score_tile(const T* u, const T* v, int64_t N, int64_t d, int64_t i0, int64_t rows,
                       T s, T* tile) {
  gemm<T>(false, true, rows, N, d, s, u + i0 * d, d, v, d, T(0), tile, N);
}

template <class T>
void clip_loss_forward(const T* img, const T* txt, int64_t N, int64_t d, T logit_scale,
                       T* loss_out, T* row_lse, T* col_lse) {
  const T s = std::exp(logit_scale);
  const int64_t R = std::min(kTileRows, N);
  std::vector<T> tile(R * N);
  std::vector<T> diag(N);  // L_ii
  // Running column log-sum-exp: c_j = col_max_j + log col_sum_j over the rows seen so far.
  std::vector<T> col_max(N, -std::numeric_limits<T>::infinity());
  std::vector<T> col_sum(N, T(0));

  for (int64_t i0 = 0; i0 < N; i0 += R) {
    const int64_t rows = std::min(R, N - i0);
    score_tile(img, txt, N, d, i0, rows, s, tile.data());

    // Row lse: each row of the tile is a whole row of L.
    parallel_for(rows, grain_for(N), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t i = i0 + r;
        row_lse[i] = row_logsumexp(tile.data() + r * N, N);
        diag[i] = tile[r * N + i];
      }
    });

    // Column lse, online: raise each column's max to cover the new rows, rescale its sum,
    // then add the new rows' exps. Threads own column ranges; rows run in the outer loop
    // so each pass over the tile reads memory contiguously.
    parallel_for(N, grain_for(rows), [&](int64_t b, int64_t e) {
      const int64_t w = e - b;
      Vec<T> cmax(col_max.data() + b, w), csum(col_sum.data() + b, w);
      Eigen::Array<T, Eigen::Dynamic, 1> new_max = cmax;
      for (int64_t r = 0; r < rows; ++r) new_max = new_max.max(ConstVec<T>(tile.data() + r * N + b, w));
      csum *= (cmax - new_max).exp();  // on the first tile cmax = −inf and csum = 0
      cmax = new_max;
      for (int64_t r = 0; r < rows; ++r) csum += (ConstVec<T>(tile.data() + r * N + b, w) - cmax).exp();
    });
  }

  double total = 0;  // Σ_i (r_i + c_i − 2·L_ii)
  for (int64_t i = 0; i < N; ++i) {
    col_lse[i] = col_max[i] + std::log(col_sum[i]);
    total += static_cast<double>(row_lse[i]) + col_lse[i] - 2.0 * diag[i];
  }
  *loss_out = static_cast<T>(total / (2.0 * static_cast<double>(N)));
}

template <class T>
void clip_loss_backward(const T* img, const T* txt, int64_t N, int64_t d, T logit_scale,
                        const T* row_lse, const T* col_lse, T grad_loss, T* d_img, T* d_txt,
                        T* d_logit_scale) {
  const T s = std::exp(logit_scale);
  const T coef = grad_loss / (T(2) * static_cast<T>(N));  // g/(2N)
  const int64_t R = std::min(kTileRows, N);
  std::vector<T> tile(R * N);
  std::vector<double> dt_row(N, 0.0);  // Σ_j G_ij·L_ij per row

  for (int64_t i0 = 0; i0 < N; i0 += R) {
    const int64_t rows = std::min(R, N - i0);
    score_tile(img, txt, N, d, i0, rows, s, tile.data());

    // Overwrite the logits tile with G_ij = g/(2N)·(P_ij + Q_ij − 2δ_ij), reading L_ij first
    // for d t.
    parallel_for(rows, grain_for(N), [&](int64_t b, int64_t e) {
      ConstVec<T> clse(col_lse, N);
      Eigen::Array<T, Eigen::Dynamic, 1> g(N);
      for (int64_t r = b; r < e; ++r) {
        const int64_t i = i0 + r;
        Vec<T> l(tile.data() + r * N, N);
        g = coef * ((l - row_lse[i]).exp() + (l - clse).exp());
        g(i) -= T(2) * coef;
        dt_row[i] = static_cast<double>((g * l).sum());
        l = g;
      }
    });

    // d u[tile] = s·G·v ;  d v += s·Gᵀ·u[tile]  (the first tile overwrites d v)
    gemm<T>(false, false, rows, d, N, s, tile.data(), N, txt, d, T(0), d_img + i0 * d, d);
    gemm<T>(true, false, N, d, rows, s, tile.data(), N, img + i0 * d, d, i0 == 0 ? T(0) : T(1),
            d_txt, d);
  }
  *d_logit_scale = static_cast<T>(sum_in_order(dt_row));
}

// =======================================================================================
// hinge ranking loss

// S_ii = ⟨u_i, v_i⟩, used for every margin of row i and column i.
template <class T>
static std::vector<T> matching_scores(const T* u, const T* v, int64_t N, int64_t d) {
  std::vector<T> diag(N);
  parallel_for(N, grain_for(d), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      double dot = 0;
      for (int64_t k = 0; k < d; ++k) dot += static_cast<double>(u[i * d + k]) * v[i * d + k];
      diag[i] = static_cast<T>(dot);
    }
  });
  return diag;
}

template <class T>
void hinge_ranking_loss_forward(const T* img, const T* txt, int64_t N, int64_t d, T margin,
                                T* loss_out) {
  const std::vector<T> diag = matching_scores(img, txt, N, d);
  const int64_t R = std::min(kTileRows, N);
  std::vector<T> tile(R * N);
  std::vector<double> row_loss(N, 0.0);
  for (int64_t i0 = 0; i0 < N; i0 += R) {
    const int64_t rows = std::min(R, N - i0);
    score_tile(img, txt, N, d, i0, rows, T(1), tile.data());
    // Each off-diagonal S_ij appears in two hinges: against image i's match S_ii and
    // against text j's match S_jj (the second sum of the loss, with i and j renamed).
    parallel_for(rows, grain_for(N), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t i = i0 + r;
        const T* row = tile.data() + r * N;
        double loss = 0;
        for (int64_t j = 0; j < N; ++j) {
          if (j == i) continue;
          loss += std::max(T(0), margin - diag[i] + row[j]);
          loss += std::max(T(0), margin - diag[j] + row[j]);
        }
        row_loss[i] = loss;
      }
    });
  }
  *loss_out = static_cast<T>(sum_in_order(row_loss) / static_cast<double>(N));
}

template <class T>
void hinge_ranking_loss_backward(const T* img, const T* txt, int64_t N, int64_t d, T margin,
                                 T grad_loss, T* d_img, T* d_txt) {
  const std::vector<T> diag = matching_scores(img, txt, N, d);
  const T coef = grad_loss / static_cast<T>(N);  // g/N
  const int64_t R = std::min(kTileRows, N);
  std::vector<T> tile(R * N);
  std::vector<int64_t> col_count(N, 0);  // Σ_{i≠j} b_ij: column j's share of G_jj

  for (int64_t i0 = 0; i0 < N; i0 += R) {
    const int64_t rows = std::min(R, N - i0);
    score_tile(img, txt, N, d, i0, rows, T(1), tile.data());

    // Column counts first (threads own column ranges), while the tile still holds S.
    parallel_for(N, grain_for(rows), [&](int64_t b, int64_t e) {
      for (int64_t r = 0; r < rows; ++r) {
        const T* row = tile.data() + r * N;
        for (int64_t j = b; j < e; ++j)
          col_count[j] += (j != i0 + r) && (margin - diag[j] + row[j] > T(0));
      }
    });

    // Then overwrite S with G: off-diagonal g/N·(a_ij + b_ij); diagonal the row part
    // −g/N·Σ_j a_ij (the column part is added after the loop).
    parallel_for(rows, grain_for(N), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const int64_t i = i0 + r;
        T* row = tile.data() + r * N;
        int64_t row_count = 0;
        for (int64_t j = 0; j < N; ++j) {
          if (j == i) continue;
          const bool a = margin - diag[i] + row[j] > T(0);
          const bool bb = margin - diag[j] + row[j] > T(0);
          row_count += a;
          row[j] = coef * static_cast<T>(int(a) + int(bb));
        }
        row[i] = -coef * static_cast<T>(row_count);
      }
    });

    // d u[tile] = G·v ;  d v += Gᵀ·u[tile]
    gemm<T>(false, false, rows, d, N, T(1), tile.data(), N, txt, d, T(0), d_img + i0 * d, d);
    gemm<T>(true, false, N, d, rows, T(1), tile.data(), N, img + i0 * d, d,
            i0 == 0 ? T(0) : T(1), d_txt, d);
  }

  // The column part of G_jj: −g/N·col_count_j, times v_j in d u_j and u_j in d v_j.
  parallel_for(N, grain_for(d), [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) {
      const T g = -coef * static_cast<T>(col_count[j]);
      for (int64_t k = 0; k < d; ++k) {
        d_img[j * d + k] += g * txt[j * d + k];
        d_txt[j * d + k] += g * img[j * d + k];
      }
    }
  });
}

#define MMG_INSTANTIATE_LOSSES(T)                                                             \
  template void cross_entropy_forward<T>(const T*, const int64_t*, int64_t, int64_t, int64_t, \
                                         T, T*, T*, int64_t*);                                \
  template void cross_entropy_backward<T>(const T*, const int64_t*, const T*, int64_t,        \
                                          int64_t, int64_t, T, T, T*);                        \
  template void clip_loss_forward<T>(const T*, const T*, int64_t, int64_t, T, T*, T*, T*);    \
  template void clip_loss_backward<T>(const T*, const T*, int64_t, int64_t, T, const T*,      \
                                      const T*, T, T*, T*, T*);                               \
  template void hinge_ranking_loss_forward<T>(const T*, const T*, int64_t, int64_t, T, T*);   \
  template void hinge_ranking_loss_backward<T>(const T*, const T*, int64_t, int64_t, T, T,    \
                                               T*, T*);
MMG_INSTANTIATE_LOSSES(float)
MMG_INSTANTIATE_LOSSES(double)
#undef MMG_INSTANTIATE_LOSSES

}  // namespace mmg::cpu
