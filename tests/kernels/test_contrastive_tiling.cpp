// The tiling of the fused CUDA pair losses (kernels/cuda/contrastive.cu), emulated on the
// host and checked against the CPU kernels (cpu::clip_loss_*, cpu::hinge_ranking_loss_*).
//
// The CUDA kernels run only where a GPU is; this file lets every CPU build check the
// algorithm they implement: tiles of kPairTile rows of A against kPairTile rows of B, scores
// built by zero-padded steps of kPairChunk elements of d, each of the kPairLanes threads of
// a tile row keeping its own running (max, sum) over its columns (the ones of a ragged last
// tile, or none at all when N < kPairLanes) and the threads merging by the kernel's
// butterfly; the gradient as a G tile times B by steps of kPairGradChunk, the first tile
// writing and the others adding; the column passes as the same pass with A and B swapped;
// the hinge's diagonal from the two passes' counts; the scalars by the kernel's 256 strided
// shares and tree. Sizes cross every boundary: N = 1, 7, 64, 65, 130; d = 1, 17, 70.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/contrastive.h"
#include "kernels/losses.h"

namespace {

using mmg::cuda::kPairChunk;
using mmg::cuda::kPairGradChunk;
using mmg::cuda::kPairLanes;
using mmg::cuda::kPairTile;

constexpr int kTile = kPairTile;
constexpr double kInf = std::numeric_limits<double>::infinity();

template <class T>
std::vector<T> unit_rows(int64_t N, int64_t d, std::mt19937& rng) {
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<T> v(N * d);
  for (int64_t i = 0; i < N; ++i) {
    std::vector<double> row(d);
    double n2 = 0;
    for (double& x : row) {
      x = dist(rng);
      n2 += x * x;
    }
    for (int64_t k = 0; k < d; ++k) v[i * d + k] = static_cast<T>(row[k] / std::sqrt(n2));
  }
  return v;
}

// One tile of scores as score_tile builds it: S[i][j] = ⟨A_{a0+i}, B_{b0+j}⟩ summed over
// zero-padded steps of kPairChunk; rows past N are zeros.
template <class T>
std::vector<T> score_tile(const std::vector<T>& A, const std::vector<T>& B, int64_t N, int64_t d, int64_t a0,
                          int64_t b0) {
  std::vector<T> S(kTile * kTile, T(0));
  for (int64_t k0 = 0; k0 < d; k0 += kPairChunk)
    for (int kk = 0; kk < kPairChunk; ++kk) {
      const int64_t k = k0 + kk;
      for (int i = 0; i < kTile; ++i) {
        const T x = (a0 + i < N && k < d) ? A[(a0 + i) * d + k] : T(0);
        for (int j = 0; j < kTile; ++j) {
          const T y = (b0 + j < N && k < d) ? B[(b0 + j) * d + k] : T(0);
          S[i * kTile + j] += x * y;
        }
      }
    }
  return S;
}

// The lanes of one tile row combine their values by the kernel's butterfly: at each offset
// every lane merges its value with the one of lane tx ^ offset; lane 0's result is written.
template <class V, class Merge>
V butterfly(std::vector<V> lanes, Merge merge) {
  for (int offset = kPairLanes / 2; offset > 0; offset /= 2) {
    const std::vector<V> before = lanes;
    for (int tx = 0; tx < kPairLanes; ++tx) lanes[tx] = merge(before[tx], before[tx ^ offset]);
  }
  return lanes[0];
}

template <class T>
struct RunningLse {
  T m = -std::numeric_limits<T>::infinity();
  T l = T(0);
};

template <class T>
RunningLse<T> merge_lse(RunningLse<T> x, RunningLse<T> y) {
  const T M = std::max(x.m, y.m);
  if (M == -kInf) return x;
  return {M, (x.m == -kInf ? T(0) : x.l * std::exp(x.m - M)) + (y.m == -kInf ? T(0) : y.l * std::exp(y.m - M))};
}

// pair_lse_kernel: lse[a] = log Σ_b exp(s·⟨A_a, B_b⟩).
template <class T>
std::vector<T> lse_pass(const std::vector<T>& A, const std::vector<T>& B, int64_t N, int64_t d, T s) {
  std::vector<T> lse(N);
  for (int64_t a0 = 0; a0 < N; a0 += kTile) {  // a block
    std::vector<RunningLse<T>> run(kTile * kPairLanes);  // per (tile row i, lane tx)
    for (int64_t b0 = 0; b0 < N; b0 += kTile) {
      const std::vector<T> S = score_tile(A, B, N, d, a0, b0);
      for (int i = 0; i < kTile; ++i)
        for (int tx = 0; tx < kPairLanes; ++tx) {
          RunningLse<T>& r = run[i * kPairLanes + tx];
          T tile_max = -std::numeric_limits<T>::infinity();
          for (int j = tx; j < kTile; j += kPairLanes)
            if (b0 + j < N) tile_max = std::max(tile_max, s * S[i * kTile + j]);
          if (tile_max == -kInf) continue;  // the lane has no column in this tile
          const T m_new = std::max(r.m, tile_max);
          T sum = T(0);
          for (int j = tx; j < kTile; j += kPairLanes)
            if (b0 + j < N) sum += std::exp(s * S[i * kTile + j] - m_new);
          r.l = r.l * std::exp(r.m - m_new) + sum;
          r.m = m_new;
        }
    }
    for (int i = 0; i < kTile && a0 + i < N; ++i) {
      const std::vector<RunningLse<T>> lanes(run.begin() + i * kPairLanes, run.begin() + (i + 1) * kPairLanes);
      const RunningLse<T> total = butterfly(lanes, merge_lse<T>);
      lse[a0 + i] = total.m + std::log(total.l);
    }
  }
  return lse;
}

// accumulate_rows: dA[a0 + i, :] (+)= s·Σ_j G[i][j]·B[b0 + j, :], by steps of kPairGradChunk.
template <class T>
void accumulate_rows(const std::vector<T>& G, const std::vector<T>& B, int64_t N, int64_t d, int64_t a0, int64_t b0,
                     T s, std::vector<T>& dA) {
  for (int64_t k0 = 0; k0 < d; k0 += kPairGradChunk)
    for (int i = 0; i < kTile; ++i)
      for (int kk = 0; kk < kPairGradChunk; ++kk) {
        const int64_t a = a0 + i, k = k0 + kk;
        T out = T(0);
        for (int j = 0; j < kTile; ++j) out += G[i * kTile + j] * ((b0 + j < N && k < d) ? B[(b0 + j) * d + k] : T(0));
        if (a < N && k < d) dA[a * d + k] = b0 == 0 ? s * out : dA[a * d + k] + s * out;
      }
}

// The sum of each row's lane shares, written by lane 0.
double lane_sum(const std::vector<double>& lanes) {
  return butterfly(lanes, [](double x, double y) { return x + y; });
}

// total_kernel: 256 strided shares in double, then a tree.
double total(const std::vector<double>& x) {
  std::vector<double> share(256, 0.0);
  for (size_t i = 0; i < x.size(); ++i) share[i % 256] += x[i];
  for (int stride = 128; stride > 0; stride /= 2)
    for (int t = 0; t < stride; ++t) share[t] += share[t + stride];
  return share[0];
}

// clip_grad_kernel: dA = s·G·B, G_ab = g/(2N)·(exp(L_ab − lseA_a) + exp(L_ab − lseB_b) − 2δ_ab),
// and (dt_rows not null) dt_rows[a] = Σ_b G_ab·L_ab.
template <class T>
void clip_grad_pass(const std::vector<T>& A, const std::vector<T>& B, int64_t N, int64_t d, T s,
                    const std::vector<T>& lseA, const std::vector<T>& lseB, T g, std::vector<T>& dA,
                    std::vector<double>* dt_rows) {
  const T coef = g / (T(2) * static_cast<T>(N));
  for (int64_t a0 = 0; a0 < N; a0 += kTile) {
    std::vector<double> dt(kTile * kPairLanes, 0.0);
    for (int64_t b0 = 0; b0 < N; b0 += kTile) {
      const std::vector<T> S = score_tile(A, B, N, d, a0, b0);
      std::vector<T> G(kTile * kTile, T(0));
      for (int i = 0; i < kTile; ++i)
        for (int j = 0; j < kTile; ++j) {
          const int64_t a = a0 + i, b = b0 + j;
          if (a >= N || b >= N) continue;
          const T L = s * S[i * kTile + j];
          T x = coef * (std::exp(L - lseA[a]) + std::exp(L - lseB[b]));
          if (a == b) x -= T(2) * coef;
          dt[i * kPairLanes + j % kPairLanes] += double(x * L);
          G[i * kTile + j] = x;
        }
      accumulate_rows(G, B, N, d, a0, b0, s, dA);
    }
    if (dt_rows)
      for (int i = 0; i < kTile && a0 + i < N; ++i)
        (*dt_rows)[a0 + i] =
            lane_sum(std::vector<double>(dt.begin() + i * kPairLanes, dt.begin() + (i + 1) * kPairLanes));
  }
}

// D_i = ⟨u_i, v_i⟩ in double, stored in T (matching_scores_kernel).
template <class T>
std::vector<T> matching_scores(const std::vector<T>& u, const std::vector<T>& v, int64_t N, int64_t d) {
  std::vector<T> D(N);
  for (int64_t i = 0; i < N; ++i) {
    double dot = 0;
    for (int64_t k = 0; k < d; ++k) dot += double(u[i * d + k]) * double(v[i * d + k]);
    D[i] = static_cast<T>(dot);
  }
  return D;
}

template <class T>
T hinge(T x) {
  return x > T(0) ? x : T(0);
}

// hinge_rows_kernel and the total: (1/N)·Σ_a Σ_{b≠a} [m − D_a + S_ab]₊ + [m − D_b + S_ab]₊.
template <class T>
T hinge_forward(const std::vector<T>& u, const std::vector<T>& v, int64_t N, int64_t d, T margin) {
  const std::vector<T> D = matching_scores(u, v, N, d);
  std::vector<double> row_loss(N);
  for (int64_t a0 = 0; a0 < N; a0 += kTile) {
    std::vector<double> h(kTile * kPairLanes, 0.0);
    for (int64_t b0 = 0; b0 < N; b0 += kTile) {
      const std::vector<T> S = score_tile(u, v, N, d, a0, b0);
      for (int i = 0; i < kTile; ++i)
        for (int j = 0; j < kTile; ++j) {
          const int64_t a = a0 + i, b = b0 + j;
          if (a >= N || b >= N || a == b) continue;
          double& lane = h[i * kPairLanes + j % kPairLanes];
          lane += double(hinge(margin - D[a] + S[i * kTile + j]));
          lane += double(hinge(margin - D[b] + S[i * kTile + j]));
        }
    }
    for (int i = 0; i < kTile && a0 + i < N; ++i)
      row_loss[a0 + i] = lane_sum(std::vector<double>(h.begin() + i * kPairLanes, h.begin() + (i + 1) * kPairLanes));
  }
  return static_cast<T>(total(row_loss) / static_cast<double>(N));
}

// hinge_grad_kernel: dA = G·B off the diagonal, count[a] = Σ_{b≠a} [m − D_a + S_ab > 0].
template <class T>
void hinge_grad_pass(const std::vector<T>& A, const std::vector<T>& B, const std::vector<T>& D, int64_t N, int64_t d,
                     T margin, T g, std::vector<T>& dA, std::vector<double>& count) {
  const T coef = g / static_cast<T>(N);
  for (int64_t a0 = 0; a0 < N; a0 += kTile) {
    std::vector<double> own(kTile * kPairLanes, 0.0);
    for (int64_t b0 = 0; b0 < N; b0 += kTile) {
      const std::vector<T> S = score_tile(A, B, N, d, a0, b0);
      std::vector<T> G(kTile * kTile, T(0));
      for (int i = 0; i < kTile; ++i)
        for (int j = 0; j < kTile; ++j) {
          const int64_t a = a0 + i, b = b0 + j;
          if (a >= N || b >= N || a == b) continue;
          const bool row_side = margin - D[a] + S[i * kTile + j] > T(0);
          const bool col_side = margin - D[b] + S[i * kTile + j] > T(0);
          own[i * kPairLanes + j % kPairLanes] += row_side;
          G[i * kTile + j] = coef * static_cast<T>(int(row_side) + int(col_side));
        }
      accumulate_rows(G, B, N, d, a0, b0, T(1), dA);
    }
    for (int i = 0; i < kTile && a0 + i < N; ++i)
      count[a0 + i] = lane_sum(std::vector<double>(own.begin() + i * kPairLanes, own.begin() + (i + 1) * kPairLanes));
  }
}

// |got − want| ≤ tol·(|want| + max|want|) + floor everywhere (floor: for results that are 0 or
// cancel); reports how many differ and the first.
template <class T>
void check_close(const std::vector<T>& got, const std::vector<T>& want, double tol, const std::string& what,
                 double floor = 0.0) {
  INFO(what);
  REQUIRE(got.size() == want.size());
  double scale = 0;
  for (T w : want) scale = std::max(scale, std::abs(double(w)));
  int64_t bad = 0, first = -1;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = double(got[i]), w = double(want[i]);
    if (!(std::abs(g - w) <= tol * (std::abs(w) + scale) + floor)) {  // NaN (an element never written) fails too
      if (first < 0) first = static_cast<int64_t>(i);
      ++bad;
    }
  }
  if (bad) FAIL_CHECK(bad << " of " << got.size() << " differ; first at " << first << ": emulated " << got[first]
                          << ", cpu kernel " << want[first]);
}

template <class T>
double tol() {
  return std::is_same_v<T, float> ? 2e-5 : 1e-12;
}

template <class T>
void check_clip(int64_t N, int64_t d, double t, std::mt19937& rng) {
  const std::string name = std::string(std::is_same_v<T, float> ? "f32" : "f64") + " N " + std::to_string(N) +
                           " d " + std::to_string(d) + " t " + std::to_string(t);
  const std::vector<T> u = unit_rows<T>(N, d, rng), v = unit_rows<T>(N, d, rng);
  const T s = std::exp(static_cast<T>(t)), g = T(0.7);

  // The CPU kernels.
  T loss = 0, dt = 0;
  std::vector<T> r(N), c(N), du(N * d), dv(N * d);
  mmg::cpu::clip_loss_forward<T>(u.data(), v.data(), N, d, static_cast<T>(t), &loss, r.data(), c.data());
  mmg::cpu::clip_loss_backward<T>(u.data(), v.data(), N, d, static_cast<T>(t), r.data(), c.data(), g, du.data(),
                                  dv.data(), &dt);

  // The tiling: the row and column lse as one pass on (u, v) and on (v, u).
  const std::vector<T> er = lse_pass(u, v, N, d, s), ec = lse_pass(v, u, N, d, s);
  const std::vector<T> D = matching_scores(u, v, N, d);
  std::vector<double> pair(N);
  for (int64_t i = 0; i < N; ++i) pair[i] = double(er[i]) + double(ec[i]) - 2.0 * double(s * D[i]);
  const T eloss = static_cast<T>(total(pair) / (2.0 * static_cast<double>(N)));
  std::vector<T> edu(N * d, std::numeric_limits<T>::quiet_NaN()), edv = edu;  // every element must be written
  std::vector<double> dt_rows(N);
  clip_grad_pass(u, v, N, d, s, er, ec, g, edu, &dt_rows);
  clip_grad_pass(v, u, N, d, s, ec, er, g, edv, nullptr);
  const T edt = static_cast<T>(total(dt_rows));

  check_close(er, r, tol<T>(), "row lse " + name);
  check_close(ec, c, tol<T>(), "column lse " + name);
  // The loss is a difference of terms of size ~s (at N = 1 it is 0 up to their rounding).
  check_close(std::vector<T>{eloss}, std::vector<T>{loss}, tol<T>(), "loss " + name, tol<T>() * std::max(1.0, double(s)));
  check_close(edu, du, tol<T>(), "d image " + name);
  check_close(edv, dv, tol<T>(), "d text " + name);
  // |d t| ≤ Σ|G_ij|·|L_ij| ≤ 2·g·s: the scale of its rounding.
  INFO("d logit_scale " << name << ": emulated " << edt << ", cpu kernel " << dt);
  CHECK(std::abs(double(edt) - double(dt)) <= tol<T>() * 2.0 * double(g) * std::max(1.0, double(s)));
}

template <class T>
void check_hinge(int64_t N, int64_t d, double margin, std::mt19937& rng) {
  const std::string name = std::string(std::is_same_v<T, float> ? "f32" : "f64") + " N " + std::to_string(N) +
                           " d " + std::to_string(d) + " margin " + std::to_string(margin);
  const std::vector<T> u = unit_rows<T>(N, d, rng), v = unit_rows<T>(N, d, rng);
  const T m = static_cast<T>(margin), g = T(1.3);

  T loss = 0;
  std::vector<T> du(N * d), dv(N * d);
  mmg::cpu::hinge_ranking_loss_forward<T>(u.data(), v.data(), N, d, m, &loss);
  mmg::cpu::hinge_ranking_loss_backward<T>(u.data(), v.data(), N, d, m, g, du.data(), dv.data());

  const T eloss = hinge_forward(u, v, N, d, m);
  const std::vector<T> D = matching_scores(u, v, N, d);
  std::vector<T> edu(N * d, std::numeric_limits<T>::quiet_NaN()), edv = edu;
  std::vector<double> row_count(N), col_count(N);
  hinge_grad_pass(u, v, D, N, d, m, g, edu, row_count);
  hinge_grad_pass(v, u, D, N, d, m, g, edv, col_count);
  // hinge_diagonal_kernel: G_ii = −g/N·(row count + column count).
  const T coef = g / static_cast<T>(N);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t k = 0; k < d; ++k) {
      const T gi = -coef * static_cast<T>(row_count[i] + col_count[i]);
      edu[i * d + k] += gi * v[i * d + k];
      edv[i * d + k] += gi * u[i * d + k];
    }

  check_close(std::vector<T>{eloss}, std::vector<T>{loss}, tol<T>(), "hinge loss " + name, tol<T>());
  check_close(edu, du, tol<T>(), "hinge d image " + name);
  check_close(edv, dv, tol<T>(), "hinge d text " + name);
}

}  // namespace

TEST_CASE("contrastive tiling: the CUDA kernels' row and column passes, emulated, match the CPU clip_loss") {
  std::mt19937 rng(20240611);
  for (int64_t N : {1, 7, 64, 65, 130})
    for (int64_t d : {1, 17, 70})
      for (double t : {0.0, std::log(100.0)}) check_clip<double>(N, d, t, rng);
  check_clip<float>(130, 70, std::log(100.0), rng);
  check_clip<float>(7, 17, 0.0, rng);
}

TEST_CASE("contrastive tiling: the CUDA kernels' hinge passes and diagonal counts, emulated, match the CPU kernel") {
  std::mt19937 rng(97);
  for (int64_t N : {1, 2, 7, 65, 130})
    for (int64_t d : {1, 17, 70})
      for (double margin : {0.2, 1.5}) check_hinge<double>(N, d, margin, rng);
}

TEST_CASE("contrastive tiling: lanes that see no column merge to nothing, not NaN") {
  // N = 3 < kPairLanes: lanes 3..15 keep (−inf, 0) to the end; the merge must skip them.
  RunningLse<double> none, some{2.0, 1.5};
  const RunningLse<double> a = merge_lse(none, none);
  CHECK(a.m == -kInf);
  CHECK(a.l == 0.0);
  const RunningLse<double> b = merge_lse(none, some), c = merge_lse(some, none);
  CHECK(b.m == 2.0);
  CHECK(b.l == 1.5);
  CHECK(c.m == 2.0);
  CHECK(c.l == 1.5);
  // Two parts: log(e^2·1.5 + e^1·2) = 2 + log(1.5 + 2/e).
  const RunningLse<double> e = merge_lse(some, RunningLse<double>{1.0, 2.0});
  CHECK(e.m + std::log(e.l) == doctest::Approx(2.0 + std::log(1.5 + 2.0 / std::exp(1.0))).epsilon(1e-15));
}
