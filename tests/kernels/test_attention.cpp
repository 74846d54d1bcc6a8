// Fused attention kernels against a naive double reference written from the definition
// (scores, masked softmax, weighted sum; the backward by the plain chain rule), and the
// double backward against central finite differences. Covers key-padding masks, causal
// (top-left aligned), Sq != Sk both ways, fully masked rows and odd sizes — on both CPU paths
// (kernels/attention.h: query blocks and query lanes), each named outright, and on the one the
// kernels pick by size.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

#include "kernels/attention.h"
#include "kernels/cpu/parallel.h"
#include "tests/compare.h"

namespace {

using mmg::cpu::CpuAttentionPath;
using mmg::test::max_abs_diff;

constexpr CpuAttentionPath kPaths[] = {CpuAttentionPath::query_blocks, CpuAttentionPath::query_lanes,
                                       CpuAttentionPath::by_size};

const char* path_name(CpuAttentionPath p) {
  return p == CpuAttentionPath::query_blocks ? "query_blocks" : p == CpuAttentionPath::query_lanes ? "query_lanes" : "by_size";
}

const double kNegInf = -std::numeric_limits<double>::infinity();

std::vector<double> random_vec(int64_t n, uint32_t seed, double lo = -1.5, double hi = 1.5) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& e : v) e = dist(gen);
  return v;
}

struct Cfg {
  int64_t B, H, Sq, Sk, D;
  bool causal;
  int mask;  // 0: none; 1: random keys masked; 2: also batch 0 fully masked, batch 1 key 0;
             // 3: right padding (a batch of texts): batch b's first (3·b + 2) mod (Sk + 1) keys real
  double scale;
  int qmask = 0;  // 0: none; 1: random queries masked; 2: right padding, batch b's first
                  // (2·b + 3) mod (Sq + 1) queries real (the kernels skip the rest outright)
};

struct Inputs {
  std::vector<double> q, k, v, dout;
  std::vector<uint8_t> mask;   // empty: none
  std::vector<uint8_t> qmask;  // empty: none
};

Inputs make_inputs(const Cfg& c, uint32_t seed) {
  Inputs in;
  in.q = random_vec(c.B * c.H * c.Sq * c.D, seed);
  in.k = random_vec(c.B * c.H * c.Sk * c.D, seed + 1);
  in.v = random_vec(c.B * c.H * c.Sk * c.D, seed + 2);
  in.dout = random_vec(c.B * c.H * c.Sq * c.D, seed + 3);
  if (c.mask > 0) {
    std::mt19937 gen(seed + 4);
    in.mask.resize(static_cast<size_t>(c.B * c.Sk));
    for (auto& m : in.mask) m = (gen() % 10) < 7;
    if (c.mask == 2) {
      for (int64_t j = 0; j < c.Sk; ++j) in.mask[j] = 0;  // batch 0 sees nothing
      if (c.B > 1) in.mask[c.Sk] = 0;                       // batch 1, key 0 masked
    }
    if (c.mask == 3)  // the kernels leave out the trailing pads; lengths 2, 5, 8, ... wrap past Sk to 0
      for (int64_t b = 0; b < c.B; ++b)
        for (int64_t j = 0; j < c.Sk; ++j) in.mask[b * c.Sk + j] = j < (3 * b + 2) % (c.Sk + 1);
  }
  if (c.qmask > 0) {
    std::mt19937 gen(seed + 5);
    in.qmask.resize(static_cast<size_t>(c.B * c.Sq));
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t i = 0; i < c.Sq; ++i)
        in.qmask[b * c.Sq + i] = c.qmask == 1 ? (gen() % 10) < 6 : i < (2 * b + 3) % (c.Sq + 1);
  }
  return in;
}

bool visible(const Cfg& c, const Inputs& in, int64_t b, int64_t i, int64_t j) {
  if (!in.mask.empty() && !in.mask[b * c.Sk + j]) return false;
  if (!in.qmask.empty() && !in.qmask[b * c.Sq + i]) return false;  // a masked query sees no key
  return !(c.causal && j > i);  // top-left aligned: query i sees keys j <= i
}

struct Fwd {
  std::vector<double> out, lse, P;  // P [B,H,Sq,Sk] kept for the reference backward
};

Fwd ref_forward(const Cfg& c, const Inputs& in) {
  Fwd f{std::vector<double>(c.B * c.H * c.Sq * c.D, 0.0), std::vector<double>(c.B * c.H * c.Sq),
        std::vector<double>(c.B * c.H * c.Sq * c.Sk, 0.0)};
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.H; ++h)
      for (int64_t i = 0; i < c.Sq; ++i) {
        const int64_t bh = b * c.H + h;
        std::vector<double> s(c.Sk, kNegInf);
        double m = kNegInf;
        for (int64_t j = 0; j < c.Sk; ++j) {
          if (!visible(c, in, b, i, j)) continue;
          double dot = 0;
          for (int64_t d = 0; d < c.D; ++d)
            dot += in.q[(bh * c.Sq + i) * c.D + d] * in.k[(bh * c.Sk + j) * c.D + d];
          s[j] = c.scale * dot;
          m = std::max(m, s[j]);
        }
        if (m == kNegInf) {  // no visible key: zeros, lse = −∞
          f.lse[bh * c.Sq + i] = kNegInf;
          continue;
        }
        double z = 0;
        for (int64_t j = 0; j < c.Sk; ++j) z += std::exp(s[j] - m);
        f.lse[bh * c.Sq + i] = m + std::log(z);
        for (int64_t j = 0; j < c.Sk; ++j) {
          double p = std::exp(s[j] - m) / z;
          f.P[(bh * c.Sq + i) * c.Sk + j] = p;
          for (int64_t d = 0; d < c.D; ++d)
            f.out[(bh * c.Sq + i) * c.D + d] += p * in.v[(bh * c.Sk + j) * c.D + d];
        }
      }
  return f;
}

struct Grads {
  std::vector<double> dq, dk, dv;
};

// Chain rule through O = P V, P = softmax(S), S = scale Q Kᵀ, with the softmax backward
// in its textbook form dS_ij = P_ij (dP_ij − Σ_k P_ik dP_ik).
Grads ref_backward(const Cfg& c, const Inputs& in) {
  Fwd f = ref_forward(c, in);
  Grads g{std::vector<double>(in.q.size(), 0.0), std::vector<double>(in.k.size(), 0.0),
          std::vector<double>(in.v.size(), 0.0)};
  for (int64_t bh = 0; bh < c.B * c.H; ++bh)
    for (int64_t i = 0; i < c.Sq; ++i) {
      std::vector<double> dP(c.Sk, 0.0);
      double sum = 0;
      for (int64_t j = 0; j < c.Sk; ++j) {
        double p = f.P[(bh * c.Sq + i) * c.Sk + j];
        for (int64_t d = 0; d < c.D; ++d) {
          double go = in.dout[(bh * c.Sq + i) * c.D + d];
          g.dv[(bh * c.Sk + j) * c.D + d] += p * go;
          dP[j] += go * in.v[(bh * c.Sk + j) * c.D + d];
        }
        sum += p * dP[j];
      }
      for (int64_t j = 0; j < c.Sk; ++j) {
        double dS = f.P[(bh * c.Sq + i) * c.Sk + j] * (dP[j] - sum);
        for (int64_t d = 0; d < c.D; ++d) {
          g.dq[(bh * c.Sq + i) * c.D + d] += c.scale * dS * in.k[(bh * c.Sk + j) * c.D + d];
          g.dk[(bh * c.Sk + j) * c.D + d] += c.scale * dS * in.q[(bh * c.Sq + i) * c.D + d];
        }
      }
    }
  return g;
}

template <class T>
struct Result {
  std::vector<double> out, lse, dq, dk, dv;
};

// Runs the kernels in T. Outputs are poisoned with NaN first, so a value the kernel
// forgets to write shows up.
template <class T>
// save: let the forward keep P for the backward where the path keeps it (the query-lanes path),
// in a NaN-poisoned buffer of the size the kernels ask for.
Result<T> run(const Cfg& c, const Inputs& in, bool backward = true, CpuAttentionPath path = CpuAttentionPath::by_size,
              const mmg::AttentionDropout& drop = {}, bool save = false) {
  auto cast = [](const std::vector<double>& v) { return std::vector<T>(v.begin(), v.end()); };
  auto widen = [](const std::vector<T>& v) { return std::vector<double>(v.begin(), v.end()); };
  const T nan = std::numeric_limits<T>::quiet_NaN();
  auto q = cast(in.q), k = cast(in.k), v = cast(in.v), dout = cast(in.dout);
  std::vector<T> out(q.size(), nan), lse(c.B * c.H * c.Sq, nan);
  std::vector<T> dq(q.size(), nan), dk(k.size(), nan), dv(v.size(), nan);
  const uint8_t* mask = in.mask.empty() ? nullptr : in.mask.data();
  const uint8_t* qmask = in.qmask.empty() ? nullptr : in.qmask.data();
  std::vector<T> weights(save ? mmg::cpu::cpu_attention_saved_weights(c.B, c.H, c.Sq, c.Sk, c.D, path) : 0, nan);
  T* saved = weights.empty() ? nullptr : weights.data();
  mmg::cpu::attention_forward<T>(q.data(), k.data(), v.data(), mask, qmask, out.data(), lse.data(), c.B,
                                 c.H, c.Sq, c.Sk, c.D, c.causal, T(c.scale), drop, path, saved);
  if (backward) {
    mmg::cpu::attention_backward<T>(q.data(), k.data(), v.data(), mask, qmask, out.data(), dout.data(),
                                    lse.data(), dq.data(), dk.data(), dv.data(), c.B, c.H, c.Sq,
                                    c.Sk, c.D, c.causal, T(c.scale), drop, path, saved);
  }
  return {widen(out), widen(lse), widen(dq), widen(dk), widen(dv)};
}

// lse compared with −∞ matched exactly.
double lse_diff(const std::vector<double>& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] == kNegInf || b[i] == kNegInf) {
      if (a[i] != b[i]) return INFINITY;
      continue;
    }
    m = std::max(m, std::abs(a[i] - b[i]));
  }
  return m;
}

// Checks the analytic dq, dk, dv of `in` (with dout as W, the gradients of Σ W ⊙ O) against
// central differences of that loss, one input element at a time, on the given path.
void check_finite_differences(const Cfg& c, const Inputs& in, CpuAttentionPath path,
                              const mmg::AttentionDropout& drop = {}) {
  const double h = 1e-6;
  auto g = run<double>(c, in, true, path, drop);
  auto loss = [&](const Inputs& x) {
    auto out = run<double>(c, x, false, path, drop).out;
    double l = 0;
    for (size_t i = 0; i < out.size(); ++i) l += in.dout[i] * out[i];
    return l;
  };
  auto check_grad = [&](std::vector<double> Inputs::*field, const std::vector<double>& analytic) {
    Inputs x = in;
    for (size_t i = 0; i < analytic.size(); ++i) {
      double saved = (x.*field)[i];
      (x.*field)[i] = saved + h;
      double lp = loss(x);
      (x.*field)[i] = saved - h;
      double lm = loss(x);
      (x.*field)[i] = saved;
      CHECK(analytic[i] == doctest::Approx((lp - lm) / (2 * h)).epsilon(1e-6).scale(1.0));
    }
  };
  check_grad(&Inputs::q, g.dq);
  check_grad(&Inputs::k, g.dk);
  check_grad(&Inputs::v, g.dv);
}

const Cfg kCfgs[] = {
    {1, 1, 1, 1, 1, false, 0, 1.0},
    {1, 1, 1, 1, 1, true, 0, 0.5},
    {2, 3, 7, 7, 5, false, 0, 1 / std::sqrt(5.0)},
    {2, 3, 7, 7, 5, true, 1, 1 / std::sqrt(5.0)},
    {2, 2, 5, 11, 4, false, 1, 0.37},   // cross-attention, Sq < Sk
    {2, 2, 5, 11, 4, true, 2, 0.37},    // Sq < Sk causal: keys 5.. seen by nobody
    {1, 2, 13, 4, 3, true, 0, 0.8},     // Sq > Sk causal: queries 4.. see every key
    {2, 1, 13, 4, 3, false, 2, 0.8},
    {2, 2, 197, 197, 16, false, 1, 0.25},  // several query blocks, threads
    {1, 3, 197, 130, 8, true, 2, 0.35},
    {3, 1, 70, 1, 2, true, 1, 1.0},
    {2, 2, 9, 20, 32, true, 1, 0.2},  // heads of 32: the lanes path's widest fixed size
    {4, 2, 9, 9, 8, false, 3, 0.35},    // padded texts: lengths 2, 5, 8, 1
    {4, 2, 9, 9, 8, true, 3, 0.35},
    {5, 2, 17, 13, 16, false, 3, 0.25},  // lengths 2, 5, 8, 11, 0 (no key at all)
    // Query masks: random; right-padded queries (query lengths 3, 5, 7, ...), with padded keys as
    // a batch of texts attending to itself has them, over several groups of 8 and blocks of 64.
    {2, 3, 7, 11, 5, false, 1, 0.45, 1},
    {3, 2, 13, 9, 8, true, 0, 0.35, 1},
    {4, 2, 9, 9, 8, false, 3, 0.35, 2},
    {5, 2, 17, 13, 16, true, 3, 0.25, 2},
    {2, 2, 70, 20, 32, false, 1, 0.2, 2},
    {40, 1, 70, 9, 4, false, 0, 0.5, 2},  // query lengths up to 69 and 0 (past 64: a second block)
};

}  // namespace

TEST_CASE("attention forward matches the naive reference") {
  for (const Cfg& c : kCfgs) {
    CAPTURE(c.B);
    CAPTURE(c.H);
    CAPTURE(c.Sq);
    CAPTURE(c.Sk);
    CAPTURE(c.D);
    CAPTURE(c.causal);
    CAPTURE(c.mask);
    CAPTURE(c.qmask);
    Inputs in = make_inputs(c, static_cast<uint32_t>(c.Sq * 100 + c.Sk));
    Fwd ref = ref_forward(c, in);
    for (CpuAttentionPath path : kPaths) {
      CAPTURE(path_name(path));
      auto d = run<double>(c, in, false, path);
      CHECK(max_abs_diff(d.out, ref.out) < 1e-13);
      CHECK(lse_diff(d.lse, ref.lse) < 1e-13);
      auto f = run<float>(c, in, false, path);
      CHECK(max_abs_diff(f.out, ref.out) < 2e-6);
      CHECK(lse_diff(f.lse, ref.lse) < 2e-6);
    }
  }
}

TEST_CASE("attention backward matches the naive chain rule") {
  for (const Cfg& c : kCfgs) {
    CAPTURE(c.B);
    CAPTURE(c.H);
    CAPTURE(c.Sq);
    CAPTURE(c.Sk);
    CAPTURE(c.D);
    CAPTURE(c.causal);
    CAPTURE(c.mask);
    CAPTURE(c.qmask);
    Inputs in = make_inputs(c, static_cast<uint32_t>(c.Sk * 100 + c.Sq));
    Grads ref = ref_backward(c, in);
    for (CpuAttentionPath path : kPaths) {
      for (bool save : {false, true}) {  // P recomputed, or kept by the forward (query lanes)
        CAPTURE(path_name(path));
        CAPTURE(save);
        auto d = run<double>(c, in, true, path, {}, save);
        CHECK(max_abs_diff(d.dq, ref.dq) < 1e-12);
        CHECK(max_abs_diff(d.dk, ref.dk) < 1e-12);
        CHECK(max_abs_diff(d.dv, ref.dv) < 1e-12);
        auto f = run<float>(c, in, true, path, {}, save);
        CHECK(max_abs_diff(f.dq, ref.dq) < 1e-5);
        CHECK(max_abs_diff(f.dk, ref.dk) < 1e-5);
        CHECK(max_abs_diff(f.dv, ref.dv) < 1e-5);
      }
    }
  }
}

TEST_CASE("attention backward matches finite differences (double)") {
  const Cfg cfgs[] = {
      {1, 2, 3, 5, 4, false, 0, 0.5},
      {2, 1, 4, 6, 3, true, 1, 0.7},
      {2, 1, 6, 3, 2, true, 2, 1.1},  // Sq > Sk, fully masked rows
      {1, 1, 5, 5, 3, false, 1, 0.9},
      {2, 1, 5, 4, 3, false, 1, 0.6, 1},  // masked queries
      {3, 1, 11, 6, 3, true, 3, 0.6, 2},  // right-padded queries: lengths 3, 5, 7
  };
  for (const Cfg& c : cfgs) {
    for (CpuAttentionPath path : {CpuAttentionPath::query_blocks, CpuAttentionPath::query_lanes}) {
      CAPTURE(path_name(path));
      CAPTURE(c.Sq);
      CAPTURE(c.Sk);
      CAPTURE(c.causal);
      CAPTURE(c.mask);
    CAPTURE(c.qmask);
      check_finite_differences(c, make_inputs(c, 42), path);
    }
  }
}

TEST_CASE("attention: a fully masked query row gives zeros, lse = -inf and zero gradient") {
  // Batch 0 has every key masked; with causal, batch 1's query 0 sees only key 0, masked.
  const Cfg c{2, 2, 9, 6, 4, true, 2, 0.5};
  Inputs in = make_inputs(c, 7);
  for (CpuAttentionPath path : {CpuAttentionPath::query_blocks, CpuAttentionPath::query_lanes}) {
    CAPTURE(path_name(path));
    auto r = run<double>(c, in, true, path);
    for (int64_t h = 0; h < c.H; ++h) {
      for (int64_t i = 0; i < c.Sq; ++i) {
        const int64_t row = (0 * c.H + h) * c.Sq + i;  // batch 0: every row
        CHECK(r.lse[row] == kNegInf);
        for (int64_t d = 0; d < c.D; ++d) {
          CHECK(r.out[row * c.D + d] == 0.0);
          CHECK(r.dq[row * c.D + d] == 0.0);
        }
      }
      for (int64_t j = 0; j < c.Sk; ++j)
        for (int64_t d = 0; d < c.D; ++d) {
          CHECK(r.dk[((0 * c.H + h) * c.Sk + j) * c.D + d] == 0.0);
          CHECK(r.dv[((0 * c.H + h) * c.Sk + j) * c.D + d] == 0.0);
        }
      const int64_t row0 = (1 * c.H + h) * c.Sq;  // batch 1, query 0
      CHECK(r.lse[row0] == kNegInf);
      for (int64_t d = 0; d < c.D; ++d) {
        CHECK(r.out[row0 * c.D + d] == 0.0);
        CHECK(r.dq[row0 * c.D + d] == 0.0);
      }
      CHECK(std::isfinite(r.lse[row0 + 1]) == (in.mask[c.Sk + 1] == 1));
  }
  }
}

// What a packed text encoder relies on: masking a query changes nothing but that query's row,
// which is zero (lse −∞), and the gradients equal those of the unmasked call whose dout is zero
// at the masked rows (the gradient a packed layer sends back through its pads).
TEST_CASE("attention: a masked query gives a zero row, and the gradients of a zero dout there") {
  const Cfg cfgs[] = {{3, 2, 21, 9, 8, false, 3, 0.35, 2}, {2, 2, 11, 7, 5, true, 1, 0.5, 1},
                      {3, 1, 70, 12, 4, false, 0, 0.5, 2}};
  for (const Cfg& c : cfgs) {
    CAPTURE(c.Sq);
    Inputs in = make_inputs(c, 13);
    Inputs plain = in;
    plain.qmask.clear();
    for (int64_t bh = 0; bh < c.B * c.H; ++bh)
      for (int64_t i = 0; i < c.Sq; ++i)
        if (!in.qmask[(bh / c.H) * c.Sq + i])
          for (int64_t d = 0; d < c.D; ++d) plain.dout[(bh * c.Sq + i) * c.D + d] = 0.0;
    for (CpuAttentionPath path : {CpuAttentionPath::query_blocks, CpuAttentionPath::query_lanes}) {
      CAPTURE(path_name(path));
      auto masked = run<double>(c, in, true, path), unmasked = run<double>(c, plain, true, path);
      for (int64_t bh = 0; bh < c.B * c.H; ++bh)
        for (int64_t i = 0; i < c.Sq; ++i) {
          const int64_t row = bh * c.Sq + i;
          const bool real = in.qmask[(bh / c.H) * c.Sq + i];
          CHECK((masked.lse[row] == kNegInf) == (!real || unmasked.lse[row] == kNegInf));
          for (int64_t d = 0; d < c.D; ++d) {
            // (the blocks path's products over fewer rows may round differently)
            if (real) CHECK(std::abs(masked.out[row * c.D + d] - unmasked.out[row * c.D + d]) < 1e-14);
            else CHECK((masked.out[row * c.D + d] == 0.0 && masked.dq[row * c.D + d] == 0.0));
          }
        }
      CHECK(max_abs_diff(masked.dq, unmasked.dq) < 1e-13);
      CHECK(max_abs_diff(masked.dk, unmasked.dk) < 1e-13);
      CHECK(max_abs_diff(masked.dv, unmasked.dv) < 1e-13);
    }
  }
}

TEST_CASE("attention: causal is top-left aligned when Sq != Sk") {
  // With Sk > Sq, key Sq.. is seen by no query: a change to it changes nothing, and its
  // gradients are zero. (Bottom-right alignment would let the last query see it.)
  const Cfg c{1, 1, 3, 5, 2, true, 0, 1.0};
  Inputs in = make_inputs(c, 9);
  for (CpuAttentionPath path : {CpuAttentionPath::query_blocks, CpuAttentionPath::query_lanes}) {
    CAPTURE(path_name(path));
    auto r = run<double>(c, in, true, path);
    for (int64_t j = c.Sq; j < c.Sk; ++j)
      for (int64_t d = 0; d < c.D; ++d) {
        CHECK(r.dk[j * c.D + d] == 0.0);
        CHECK(r.dv[j * c.D + d] == 0.0);
      }
    // Query 0 sees only key 0: its output is v_0 exactly.
    for (int64_t d = 0; d < c.D; ++d) CHECK(r.out[d] == doctest::Approx(in.v[d]).epsilon(1e-15));
  }
}

TEST_CASE("attention gives the same result on one thread and on many") {
  const Cfg c{2, 3, 150, 97, 8, true, 1, 0.3};
  Inputs in = make_inputs(c, 3);
  for (CpuAttentionPath path : {CpuAttentionPath::query_blocks, CpuAttentionPath::query_lanes}) {
    CAPTURE(path_name(path));
    int saved = mmg::cpu::num_threads();
    mmg::cpu::set_num_threads(1);
    auto one = run<float>(c, in, true, path);
    mmg::cpu::set_num_threads(4);
    auto many = run<float>(c, in, true, path);
    mmg::cpu::set_num_threads(saved);
    CHECK(one.out == many.out);
    CHECK(one.dq == many.dq);
    CHECK(one.dk == many.dk);
    CHECK(one.dv == many.dv);
  }
}

// The kernels on HeadRows: every operand stored heads-interleaved, [B, S, H, D] (the layout
// of a [B, S, H·D] projection), with a gap after each row of D values so that no stride is
// the packed one by accident. Same numbers as on packed buffers, to the bit.
TEST_CASE("attention on strided head rows equals attention on packed buffers") {
  using mmg::cpu::HeadRows;
  const Cfg cfgs[] = {{2, 3, 7, 11, 5, false, 1, 0.45}, {3, 2, 70, 9, 8, true, 2, 0.3}};
  for (const Cfg& c : cfgs) {
    for (CpuAttentionPath path : {CpuAttentionPath::query_blocks, CpuAttentionPath::query_lanes}) {
      CAPTURE(path_name(path));
      CAPTURE(c.Sq);
      Inputs in = make_inputs(c, 11);
      auto packed = run<float>(c, in, true, path);

      const int64_t row = c.D + 3;  // D values, then 3 unused
      auto strides = [&](int64_t S) { return std::array<int64_t, 3>{S * c.H * row, row, c.H * row}; };
      // Spread a packed [B,H,S,D] vector into the interleaved layout; unused slots are NaN.
      auto spread = [&](const std::vector<double>& x, int64_t S) {
        std::vector<float> y(static_cast<size_t>(c.B * S * c.H * row), std::numeric_limits<float>::quiet_NaN());
        auto st = strides(S);
        for (int64_t b = 0; b < c.B; ++b)
          for (int64_t h = 0; h < c.H; ++h)
            for (int64_t s = 0; s < S; ++s)
              for (int64_t d = 0; d < c.D; ++d)
                y[b * st[0] + h * st[1] + s * st[2] + d] = static_cast<float>(x[((b * c.H + h) * S + s) * c.D + d]);
        return y;
      };
      auto gather = [&](const std::vector<float>& y, int64_t S) {
        std::vector<double> x(static_cast<size_t>(c.B * c.H * S * c.D));
        auto st = strides(S);
        for (int64_t b = 0; b < c.B; ++b)
          for (int64_t h = 0; h < c.H; ++h)
            for (int64_t s = 0; s < S; ++s)
              for (int64_t d = 0; d < c.D; ++d)
                x[((b * c.H + h) * S + s) * c.D + d] = y[b * st[0] + h * st[1] + s * st[2] + d];
        return x;
      };
      auto view = [&](auto& y, int64_t S) {
        auto st = strides(S);
        using E = std::remove_reference_t<decltype(y[0])>;
        return HeadRows<E>{y.data(), st[0], st[1], st[2]};
      };
      const std::vector<float> q = spread(in.q, c.Sq), k = spread(in.k, c.Sk), v = spread(in.v, c.Sk);
      const std::vector<float> dout = spread(in.dout, c.Sq);
      std::vector<float> out = spread(std::vector<double>(in.q.size(), NAN), c.Sq), lse(c.B * c.H * c.Sq, NAN);
      std::vector<float> dq = out, dk = spread(std::vector<double>(in.k.size(), NAN), c.Sk), dv = dk;
      const uint8_t* mask = in.mask.empty() ? nullptr : in.mask.data();
      const uint8_t* qmask = in.qmask.empty() ? nullptr : in.qmask.data();
      mmg::cpu::attention_forward<float>(view(q, c.Sq), view(k, c.Sk), view(v, c.Sk), mask, qmask, view(out, c.Sq),
                                         lse.data(), c.B, c.H, c.Sq, c.Sk, c.D, c.causal, float(c.scale), {}, path);
      const std::vector<float>& out_c = out;
      mmg::cpu::attention_backward<float>(view(q, c.Sq), view(k, c.Sk), view(v, c.Sk), mask, qmask, view(out_c, c.Sq),
                                          view(dout, c.Sq), lse.data(), view(dq, c.Sq), view(dk, c.Sk),
                                          view(dv, c.Sk), c.B, c.H, c.Sq, c.Sk, c.D, c.causal, float(c.scale), {},
                                          path);
      CHECK(gather(out, c.Sq) == packed.out);
      CHECK(std::vector<double>(lse.begin(), lse.end()) == packed.lse);
      CHECK(gather(dq, c.Sq) == packed.dq);
      CHECK(gather(dk, c.Sk) == packed.dk);
      CHECK(gather(dv, c.Sk) == packed.dv);
      // The unused slots are untouched.
      for (size_t i = c.D; i < dq.size(); i += row) CHECK(std::isnan(dq[i]));
    }
  }
}

// Dropout on the attention weights: the mask is a pure function of each weight's flat position
// (kernels/attention.h), so the query-blocks path, which draws it a block of 64 queries at a
// time, and the query-lanes path, eight queries at a time, must agree; and with the mask fixed by
// (seed, base) the output is a smooth function of q, k, v, whose gradient the lanes path's
// backward must give.
TEST_CASE("attention dropout: both CPU paths draw the same mask and agree, and the lanes path's backward matches finite differences") {
  mmg::AttentionDropout drop;
  drop.p = 0.3f;
  drop.scale = 1.0 / (1.0 - 0.3);
  drop.seed = 1234;
  drop.base = 77;
  const Cfg cfgs[] = {{2, 3, 7, 11, 5, false, 1, 0.45}, {2, 2, 70, 9, 8, true, 2, 0.3}, {1, 2, 5, 17, 16, false, 0, 0.25}};
  for (const Cfg& c : cfgs) {
    CAPTURE(c.Sq);
    CAPTURE(c.Sk);
    Inputs in = make_inputs(c, 5);
    auto blocks = run<double>(c, in, true, CpuAttentionPath::query_blocks, drop);
    auto lanes = run<double>(c, in, true, CpuAttentionPath::query_lanes, drop);
    auto plain = run<double>(c, in, true, CpuAttentionPath::query_lanes);
    auto saved = run<double>(c, in, true, CpuAttentionPath::query_lanes, drop, /*save=*/true);
    CHECK(max_abs_diff(saved.out, lanes.out) == 0.0);  // the same forward, P kept beside it
    CHECK(max_abs_diff(saved.dq, lanes.dq) < 1e-13);   // P from the forward: other rounding
    CHECK(max_abs_diff(saved.dk, lanes.dk) < 1e-13);
    CHECK(max_abs_diff(saved.dv, lanes.dv) < 1e-13);
    CHECK(max_abs_diff(lanes.out, blocks.out) < 1e-13);
    CHECK(lse_diff(lanes.lse, blocks.lse) < 1e-13);
    CHECK(lse_diff(lanes.lse, plain.lse) < 1e-13);      // lse is of the undropped weights
    CHECK(max_abs_diff(lanes.out, plain.out) > 1e-2);   // and some weights were dropped
    CHECK(max_abs_diff(lanes.dq, blocks.dq) < 1e-12);
    CHECK(max_abs_diff(lanes.dk, blocks.dk) < 1e-12);
    CHECK(max_abs_diff(lanes.dv, blocks.dv) < 1e-12);
    auto f = run<float>(c, in, true, CpuAttentionPath::query_lanes, drop);
    CHECK(max_abs_diff(f.out, lanes.out) < 2e-6);
    CHECK(max_abs_diff(f.dq, lanes.dq) < 1e-5);
  }

  const Cfg c{1, 2, 4, 6, 3, true, 1, 0.7};
  check_finite_differences(c, make_inputs(c, 8), CpuAttentionPath::query_lanes, drop);
}
