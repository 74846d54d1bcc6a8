// cross_entropy, clip_loss, hinge_ranking_loss kernels: forward against naive double loops
// that build the whole matrix, backward against the same loops and against central finite
// differences of the kernel's own forward (double).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/losses.h"

namespace {

template <class T>
std::vector<T> random_vector(size_t n, std::mt19937& rng, double lo = -1.0, double hi = 1.0) {
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(dist(rng));
  return v;
}

// Rows scaled to unit length, as the caller of clip_loss does.
template <class T>
std::vector<T> unit_rows(size_t N, size_t d, std::mt19937& rng) {
  auto v = random_vector<T>(N * d, rng);
  for (size_t i = 0; i < N; ++i) {
    double n2 = 0;
    for (size_t k = 0; k < d; ++k) n2 += double(v[i * d + k]) * v[i * d + k];
    for (size_t k = 0; k < d; ++k) v[i * d + k] = static_cast<T>(v[i * d + k] / std::sqrt(n2));
  }
  return v;
}

template <class T>
double tol() {
  return std::is_same_v<T, float> ? 2e-5 : 1e-12;
}

template <class T>
double max_abs_diff(const std::vector<T>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    REQUIRE(std::isfinite(static_cast<double>(got[i])));
    worst = std::max(worst, std::abs(static_cast<double>(got[i]) - want[i]));
  }
  return worst;
}

// Central differences of f at x, element by element: (f(x + h e_k) − f(x − h e_k)) / 2h.
// With every > 1 only every every-th element is perturbed (big inputs); the others get the
// analytic value passed in `fill`, so comparing them is a no-op.
std::vector<double> numeric_grad(std::vector<double>& x, const std::function<double()>& f,
                                 double h = 1e-6, size_t every = 1,
                                 const std::vector<double>* fill = nullptr) {
  std::vector<double> g(x.size());
  for (size_t k = 0; k < x.size(); ++k) {
    if (k % every != 0) {
      g[k] = (*fill)[k];
      continue;
    }
    const double x0 = x[k];
    x[k] = x0 + h;
    const double fp = f();
    x[k] = x0 - h;
    const double fm = f();
    x[k] = x0;
    g[k] = (fp - fm) / (2 * h);
  }
  return g;
}

double max_abs_diff_d(const std::vector<double>& a, const std::vector<double>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}

// ---------------------------------------------------------------------------------------
// cross-entropy reference: log-softmax per row, then −Σ q log p, mean over kept rows.

struct CeReference {
  double loss;
  int64_t count;
  std::vector<double> lse, dlogits;
};

template <class T>
CeReference ce_reference(const std::vector<T>& x, const std::vector<int64_t>& t, int64_t N,
                         int64_t C, int64_t ignore, double eps, double g) {
  CeReference ref{0, 0, std::vector<double>(N), std::vector<double>(N * C, 0.0)};
  for (int64_t i = 0; i < N; ++i) {
    double m = -INFINITY, s = 0;
    for (int64_t c = 0; c < C; ++c) m = std::max(m, double(x[i * C + c]));
    for (int64_t c = 0; c < C; ++c) s += std::exp(double(x[i * C + c]) - m);
    ref.lse[i] = m + std::log(s);
  }
  for (int64_t i = 0; i < N; ++i) ref.count += t[i] != ignore;
  for (int64_t i = 0; i < N; ++i) {
    if (t[i] == ignore) continue;
    for (int64_t c = 0; c < C; ++c) {
      const double q = (c == t[i] ? 1 - eps : 0.0) + eps / C;
      const double logp = double(x[i * C + c]) - ref.lse[i];
      ref.loss -= q * logp / ref.count;
      ref.dlogits[i * C + c] = g * (std::exp(logp) - q) / ref.count;
    }
  }
  return ref;
}

template <class T>
std::vector<int64_t> random_targets(int64_t N, int64_t C, int64_t ignore, std::mt19937& rng) {
  std::uniform_int_distribution<int64_t> cls(0, C - 1);
  std::vector<int64_t> t(N);
  for (int64_t i = 0; i < N; ++i) t[i] = (i % 3 == 1) ? ignore : cls(rng);  // every 3rd ignored
  return t;
}

// ---------------------------------------------------------------------------------------
// clip / hinge reference: build S = u·vᵀ in full, in double.

std::vector<double> full_scores(const std::vector<double>& u, const std::vector<double>& v,
                                int64_t N, int64_t d, double s) {
  std::vector<double> S(N * N);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < d; ++k) acc += u[i * d + k] * v[j * d + k];
      S[i * N + j] = s * acc;
    }
  return S;
}

template <class T>
std::vector<double> to_double(const std::vector<T>& x) {
  return std::vector<double>(x.begin(), x.end());
}

struct PairReference {
  double loss = 0, dt = 0;
  std::vector<double> row_lse, col_lse, du, dv;
};

// d u = G·v·scale, d v = Gᵀ·u·scale
void pair_grads(const std::vector<double>& G, const std::vector<double>& u,
                const std::vector<double>& v, int64_t N, int64_t d, double scale,
                PairReference& ref) {
  ref.du.assign(N * d, 0.0);
  ref.dv.assign(N * d, 0.0);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < N; ++j)
      for (int64_t k = 0; k < d; ++k) {
        ref.du[i * d + k] += scale * G[i * N + j] * v[j * d + k];
        ref.dv[j * d + k] += scale * G[i * N + j] * u[i * d + k];
      }
}

PairReference clip_reference(const std::vector<double>& u, const std::vector<double>& v,
                             int64_t N, int64_t d, double t, double g) {
  const double s = std::exp(t);
  auto L = full_scores(u, v, N, d, s);
  PairReference ref;
  ref.row_lse.assign(N, 0.0);
  ref.col_lse.assign(N, 0.0);
  for (int64_t i = 0; i < N; ++i) {
    double mr = -INFINITY, mc = -INFINITY, sr = 0, sc = 0;
    for (int64_t j = 0; j < N; ++j) mr = std::max(mr, L[i * N + j]), mc = std::max(mc, L[j * N + i]);
    for (int64_t j = 0; j < N; ++j) sr += std::exp(L[i * N + j] - mr), sc += std::exp(L[j * N + i] - mc);
    ref.row_lse[i] = mr + std::log(sr);
    ref.col_lse[i] = mc + std::log(sc);
  }
  // ½ (CE over rows + CE over columns), each a mean of −log softmax at the diagonal
  for (int64_t i = 0; i < N; ++i)
    ref.loss += 0.5 / N * ((ref.row_lse[i] - L[i * N + i]) + (ref.col_lse[i] - L[i * N + i]));
  std::vector<double> G(N * N);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < N; ++j) {
      const double p = std::exp(L[i * N + j] - ref.row_lse[i]);
      const double q = std::exp(L[i * N + j] - ref.col_lse[j]);
      G[i * N + j] = g / (2.0 * N) * (p + q - 2.0 * (i == j));
      ref.dt += G[i * N + j] * L[i * N + j];
    }
  pair_grads(G, u, v, N, d, s, ref);
  return ref;
}

PairReference hinge_reference(const std::vector<double>& u, const std::vector<double>& v,
                              int64_t N, int64_t d, double m, double g) {
  auto S = full_scores(u, v, N, d, 1.0);
  PairReference ref;
  std::vector<double> G(N * N, 0.0);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < N; ++j) {
      if (j == i) continue;
      const double h1 = m - S[i * N + i] + S[i * N + j];  // image i, wrong text j
      const double h2 = m - S[i * N + i] + S[j * N + i];  // text i, wrong image j
      ref.loss += (std::max(0.0, h1) + std::max(0.0, h2)) / N;
      if (h1 > 0) G[i * N + j] += g / N, G[i * N + i] -= g / N;
      if (h2 > 0) G[j * N + i] += g / N, G[i * N + i] -= g / N;
    }
  pair_grads(G, u, v, N, d, 1.0, ref);
  return ref;
}

}  // namespace

// =======================================================================================

TEST_CASE_TEMPLATE("cross_entropy forward/backward match the reference", T, float, double) {
  std::mt19937 rng(1);
  const int64_t ignore = -100;
  for (int64_t N : {1, 7, 13})
    for (int64_t C : {1, 7, 13, 197})
      for (double eps : {0.0, 0.1}) {
        auto x = random_vector<T>(N * C, rng, -4, 4);
        auto t = random_targets<T>(N, C, ignore, rng);
        const double g = 0.7;
        auto ref = ce_reference(x, t, N, C, ignore, eps, g);
        T loss = T(-1);
        int64_t count = -1;
        std::vector<T> lse(N), dx(N * C, std::numeric_limits<T>::quiet_NaN());
        mmg::cpu::cross_entropy_forward<T>(x.data(), t.data(), N, C, ignore, T(eps), &loss,
                                           lse.data(), &count);
        mmg::cpu::cross_entropy_backward<T>(x.data(), t.data(), lse.data(), N, C, ignore, T(eps),
                                            T(g), dx.data());
        INFO("N=" << N << " C=" << C << " eps=" << eps);
        CHECK(count == ref.count);
        CHECK(std::abs(loss - ref.loss) <= 4 * tol<T>() * (1 + std::abs(ref.loss)));
        CHECK(max_abs_diff(lse, ref.lse) <= 4 * tol<T>() * 5);
        CHECK(max_abs_diff(dx, ref.dlogits) <= tol<T>());
      }
}

TEST_CASE("cross_entropy with a target as ignore_index that is a valid class id") {
  // ignore_index need not be negative: rows whose target equals it are dropped.
  std::mt19937 rng(2);
  const int64_t N = 6, C = 5, ignore = 2;
  auto x = random_vector<double>(N * C, rng);
  std::vector<int64_t> t = {0, 2, 4, 2, 1, 3};
  auto ref = ce_reference(x, t, N, C, ignore, 0.2, 1.0);
  double loss;
  int64_t count;
  std::vector<double> lse(N);
  mmg::cpu::cross_entropy_forward<double>(x.data(), t.data(), N, C, ignore, 0.2, &loss,
                                          lse.data(), &count);
  CHECK(count == 4);
  CHECK(loss == doctest::Approx(ref.loss).epsilon(1e-12));
}

TEST_CASE_TEMPLATE("cross_entropy with every row ignored: loss 0, count 0, gradients 0", T,
                   float, double) {
  std::mt19937 rng(3);
  const int64_t N = 4, C = 3, ignore = -1;
  auto x = random_vector<T>(N * C, rng);
  std::vector<int64_t> t(N, ignore);
  T loss = T(7);
  int64_t count = 7;
  std::vector<T> lse(N), dx(N * C, std::numeric_limits<T>::quiet_NaN());
  mmg::cpu::cross_entropy_forward<T>(x.data(), t.data(), N, C, ignore, T(0.1), &loss,
                                     lse.data(), &count);
  mmg::cpu::cross_entropy_backward<T>(x.data(), t.data(), lse.data(), N, C, ignore, T(0.1), T(1),
                                      dx.data());
  CHECK(loss == T(0));
  CHECK(count == 0);
  for (T v : dx) CHECK(v == T(0));
}

TEST_CASE("cross_entropy is stable for huge logits") {
  const int64_t N = 2, C = 3;
  std::vector<double> x = {1000, 0, -1000, -1000, 999, 1000};
  std::vector<int64_t> t = {0, 1};
  double loss;
  int64_t count;
  std::vector<double> lse(N);
  mmg::cpu::cross_entropy_forward<double>(x.data(), t.data(), N, C, -100, 0.0, &loss, lse.data(),
                                          &count);
  // row 0: −log p_0 ≈ 0; row 1: lse = 1000 + log(1 + e^−1), target 999
  const double want = 0.5 * (std::log1p(std::exp(-1000.0) + std::exp(-2000.0)) +
                             (1.0 + std::log1p(std::exp(-1.0))));
  CHECK(loss == doctest::Approx(want).epsilon(1e-12));
}

TEST_CASE("cross_entropy backward matches finite differences (f64)") {
  std::mt19937 rng(4);
  const int64_t N = 7, C = 13, ignore = -100;
  for (double eps : {0.0, 0.25}) {
    auto x = random_vector<double>(N * C, rng, -3, 3);
    auto t = random_targets<double>(N, C, ignore, rng);
    const double g = 1.3;
    std::vector<double> lse(N), dx(N * C);
    double loss;
    int64_t count;
    auto f = [&] {
      mmg::cpu::cross_entropy_forward<double>(x.data(), t.data(), N, C, ignore, eps, &loss,
                                              lse.data(), &count);
      return g * loss;
    };
    f();
    mmg::cpu::cross_entropy_backward<double>(x.data(), t.data(), lse.data(), N, C, ignore, eps,
                                             g, dx.data());
    auto num = numeric_grad(x, f);
    CHECK(max_abs_diff_d(dx, num) < 1e-8);
  }
}

// ---------------------------------------------------------------------------------------

TEST_CASE_TEMPLATE("clip_loss forward/backward match the full-matrix reference", T, float,
                   double) {
  std::mt19937 rng(5);
  // N = 300 and 513 run over more than one 256-row tile (and a ragged last tile).
  for (int64_t N : {1, 7, 13, 197, 300, 513})
    for (int64_t d : {1, 7, 13}) {
      if (N >= 300 && d != 7) continue;
      for (double t : {0.0, std::log(1 / 0.07), std::log(100.0)}) {
        auto u = unit_rows<T>(N, d, rng), v = unit_rows<T>(N, d, rng);
        const double g = 0.9;
        auto ref = clip_reference(to_double(u), to_double(v), N, d, double(T(t)), g);
        T loss = T(-1), dt = T(-1);
        std::vector<T> row_lse(N), col_lse(N);
        std::vector<T> du(N * d, std::numeric_limits<T>::quiet_NaN()), dv = du;
        mmg::cpu::clip_loss_forward<T>(u.data(), v.data(), N, d, T(t), &loss, row_lse.data(),
                                       col_lse.data());
        mmg::cpu::clip_loss_backward<T>(u.data(), v.data(), N, d, T(t), row_lse.data(),
                                        col_lse.data(), T(g), du.data(), dv.data(), &dt);
        // float: logits up to 100 in magnitude carry absolute error ~100·1e-7 each
        const double scale_err = std::exp(t) * tol<T>();
        INFO("N=" << N << " d=" << d << " t=" << t);
        CHECK(std::abs(loss - ref.loss) <= 10 * scale_err + tol<T>() * std::abs(ref.loss));
        CHECK(max_abs_diff(row_lse, ref.row_lse) <= 10 * scale_err);
        CHECK(max_abs_diff(col_lse, ref.col_lse) <= 10 * scale_err);
        CHECK(max_abs_diff(du, ref.du) <= 10 * scale_err);
        CHECK(max_abs_diff(dv, ref.dv) <= 10 * scale_err);
        CHECK(std::abs(dt - ref.dt) <= 10 * scale_err * (1 + std::abs(ref.dt)));
      }
    }
}

TEST_CASE("clip_loss is the same on 1 and 2 threads") {
  std::mt19937 rng(6);
  const int64_t N = 300, d = 9;
  auto u = unit_rows<double>(N, d, rng), v = unit_rows<double>(N, d, rng);
  std::vector<double> out[2];
  const int saved = mmg::cpu::num_threads();
  for (int threads : {1, 2}) {
    mmg::cpu::set_num_threads(threads);
    double loss, dt;
    std::vector<double> r(N), c(N), du(N * d), dv(N * d);
    mmg::cpu::clip_loss_forward<double>(u.data(), v.data(), N, d, 2.0, &loss, r.data(), c.data());
    mmg::cpu::clip_loss_backward<double>(u.data(), v.data(), N, d, 2.0, r.data(), c.data(), 1.0,
                                         du.data(), dv.data(), &dt);
    out[threads - 1] = du;
    out[threads - 1].push_back(loss);
    out[threads - 1].push_back(dt);
    out[threads - 1].insert(out[threads - 1].end(), dv.begin(), dv.end());
  }
  mmg::cpu::set_num_threads(saved);
  CHECK(max_abs_diff_d(out[0], out[1]) < 1e-13);
}

TEST_CASE("clip_loss backward matches finite differences (f64), one and several tiles") {
  std::mt19937 rng(7);
  for (auto [N, d] : {std::pair<int64_t, int64_t>{1, 3}, {7, 5}, {13, 4}, {257, 2}}) {
    // Inputs need not be unit rows for the math to hold; perturbing breaks unit length anyway.
    auto u = unit_rows<double>(N, d, rng), v = unit_rows<double>(N, d, rng);
    std::vector<double> t = {std::log(10.0)};
    const double g = 1.7;
    std::vector<double> r(N), c(N), du(N * d), dv(N * d);
    double loss, dt;
    auto f = [&] {
      mmg::cpu::clip_loss_forward<double>(u.data(), v.data(), N, d, t[0], &loss, r.data(),
                                          c.data());
      return g * loss;
    };
    f();
    mmg::cpu::clip_loss_backward<double>(u.data(), v.data(), N, d, t[0], r.data(), c.data(), g,
                                         du.data(), dv.data(), &dt);
    // Several tiles: perturb every 11th element (prime to d, so both columns are hit).
    const size_t every = N > 256 ? 11 : 1;
    INFO("N=" << N << " d=" << d);
    CHECK(max_abs_diff_d(du, numeric_grad(u, f, 1e-6, every, &du)) < 1e-7);
    CHECK(max_abs_diff_d(dv, numeric_grad(v, f, 1e-6, every, &dv)) < 1e-7);
    CHECK(std::abs(dt - numeric_grad(t, f)[0]) < 1e-7);
  }
}

// ---------------------------------------------------------------------------------------

TEST_CASE_TEMPLATE("hinge_ranking_loss forward/backward match the full-matrix reference", T,
                   float, double) {
  std::mt19937 rng(8);
  for (int64_t N : {1, 7, 13, 197, 300})
    for (int64_t d : {1, 7, 13}) {
      if (N >= 300 && d != 13) continue;
      for (double m : {0.2, 1.0}) {
        auto u = random_vector<T>(N * d, rng), v = random_vector<T>(N * d, rng);
        const double g = 1.1;
        auto ref = hinge_reference(to_double(u), to_double(v), N, d, double(T(m)), g);
        T loss = T(-1);
        std::vector<T> du(N * d, std::numeric_limits<T>::quiet_NaN()), dv = du;
        mmg::cpu::hinge_ranking_loss_forward<T>(u.data(), v.data(), N, d, T(m), &loss);
        mmg::cpu::hinge_ranking_loss_backward<T>(u.data(), v.data(), N, d, T(m), T(g), du.data(),
                                                 dv.data());
        INFO("N=" << N << " d=" << d << " m=" << m);
        CHECK(std::abs(loss - ref.loss) <= tol<T>() * (1 + std::abs(ref.loss)) * 10);
        if constexpr (std::is_same_v<T, double>) {
          // In float a score within rounding of a kink may take the other side of it; the
          // f64 run checks the indicators exactly.
          CHECK(max_abs_diff(du, ref.du) <= 1e-12 * N);
          CHECK(max_abs_diff(dv, ref.dv) <= 1e-12 * N);
        } else {
          CHECK(max_abs_diff(du, ref.du) <= 0.05);
          CHECK(max_abs_diff(dv, ref.dv) <= 0.05);
        }
      }
    }
}

TEST_CASE("hinge_ranking_loss backward matches finite differences (f64), away from kinks") {
  std::mt19937 rng(9);
  for (auto [N, d] : {std::pair<int64_t, int64_t>{1, 3}, {7, 5}, {13, 4}, {260, 2}}) {
    const double m = 0.3, g = 0.8;
    std::vector<double> u, v;
    // Draw until no hinge argument m − S_ii + S_ij sits within 1e-5 of its kink, so the
    // central difference (h = 1e-6 moves any argument by at most 2e-6) never straddles one.
    for (int attempt = 0;; ++attempt) {
      REQUIRE(attempt < 100);
      u = random_vector<double>(N * d, rng);
      v = random_vector<double>(N * d, rng);
      auto S = full_scores(u, v, N, d, 1.0);
      bool clear = true;
      for (int64_t i = 0; i < N && clear; ++i)
        for (int64_t j = 0; j < N && clear; ++j)
          if (i != j)
            clear = std::abs(m - S[i * N + i] + S[i * N + j]) > 1e-5 &&
                    std::abs(m - S[j * N + j] + S[i * N + j]) > 1e-5;
      if (clear) break;
    }
    std::vector<double> du(N * d), dv(N * d);
    double loss;
    auto f = [&] {
      mmg::cpu::hinge_ranking_loss_forward<double>(u.data(), v.data(), N, d, m, &loss);
      return g * loss;
    };
    mmg::cpu::hinge_ranking_loss_backward<double>(u.data(), v.data(), N, d, m, g, du.data(),
                                                  dv.data());
    // Rounding in the difference quotient is about 1e-16·|f|/h: the loss here grows with N.
    const double bound = 1e-7 + 1e-9 * std::abs(f());
    const size_t every = N > 256 ? 11 : 1;
    INFO("N=" << N << " d=" << d);
    CHECK(max_abs_diff_d(du, numeric_grad(u, f, 1e-6, every, &du)) < bound);
    CHECK(max_abs_diff_d(dv, numeric_grad(v, f, 1e-6, every, &dv)) < bound);
  }
}

TEST_CASE("hinge_ranking_loss: subgradient 0 exactly at the kink") {
  // N = 2, d = 1, u = [1, 0.5], v = [1, 1]: S = [[1, 1], [0.5, 0.5]], margin 0. Hinges:
  //   image 0 vs text 1:  0 − S_00 + S_01 = 0     (kink: contributes 0)
  //   text 0 vs image 1:  0 − S_00 + S_10 = −0.5
  //   image 1 vs text 0:  0 − S_11 + S_10 = 0     (kink: contributes 0)
  //   text 1 vs image 0:  0 − S_11 + S_01 = 0.5   (active)
  // loss = 0.5 / 2; G = ∂loss/∂S = [[0, ½], [0, −½]]; d u = G·v = [½, −½];
  // d v = Gᵀ·u = [0, ½·1 − ½·0.5] = [0, ¼].
  std::vector<double> u = {1.0, 0.5}, v = {1.0, 1.0};
  double loss = -1;
  std::vector<double> du(2, 9.0), dv(2, 9.0);
  mmg::cpu::hinge_ranking_loss_forward<double>(u.data(), v.data(), 2, 1, 0.0, &loss);
  mmg::cpu::hinge_ranking_loss_backward<double>(u.data(), v.data(), 2, 1, 0.0, 1.0, du.data(),
                                                dv.data());
  CHECK(loss == 0.25);
  CHECK(du[0] == 0.5);
  CHECK(du[1] == -0.5);
  CHECK(dv[0] == 0.0);
  CHECK(dv[1] == 0.25);
}
