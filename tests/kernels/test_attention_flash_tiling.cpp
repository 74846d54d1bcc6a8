// The tiling of flash attention (CUDA v2, kernels/cuda/attention_flash.cu), emulated on the
// host and checked against the CPU kernel (kernels/attention.h), so the algorithm the GPU
// runs is checked in every build, GPU or not:
//   forward   a tile of Br queries streams the keys Bc at a time: online softmax with a
//             running max m and sum l, the accumulator rescaled by exp(m − m') whenever a
//             tile raises the max; causal tiles stop at key min(Sk, i0 + Br); rows that see
//             no key end with out 0 and lse −∞.
//   backward  Δ_i = dO_i · O_i; per key tile, the query tiles from the one holding query j0
//             on (causal) or from 0; per query tile, the key tiles up to min(Sk, i0 + Br).
// The emulation keeps the kernel's loop bounds and order of updates, not its threads (the
// kernel sums l over lanes at the end: the same terms, added in another order). It runs
// with the kernel's tile sizes and with small ones, so short inputs cross many tiles.
// With dropout each of the three tile loops regenerates the mask where it forms a weight,
// from the weight's flat index (bh·Sq + i)·Sk + j, as the kernels do; the test records what
// each loop drew and checks it against the mask of the whole [B,H,Sq,Sk] matrix.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/cuda/attention.h"

namespace {

struct Sizes {
  int64_t B, H, Sq, Sk, D;
};

template <class T>
T dot(const T* a, const T* b, int64_t D) {
  T s = 0;
  for (int64_t d = 0; d < D; ++d) s += a[d] * b[d];
  return s;
}

// Key j is visible to query i: inside Sk, not masked, and (causal) j <= i.
bool visible(const uint8_t* mask, int64_t i, int64_t j, int64_t Sk, bool causal) {
  return j < Sk && (!mask || mask[j]) && (!causal || j <= i);
}

// What one tile loop drew for each weight of [B,H,Sq,Sk]: −1 never, 0 dropped, 1 kept;
// `again` counts weights drawn more than once.
struct Draws {
  std::vector<int> bit;
  int64_t again = 0;
  void record(int64_t n, bool keep) {
    if (bit[n] != -1) ++again;
    bit[n] = keep ? 1 : 0;
  }
};

// z of weight (bh, i, j) as a kernel forms it: 1 without dropout, else keep / (1−p) drawn at
// the flat index (recorded in `draws` when given).
template <class T>
T dropout_factor(const mmg::AttentionDropout& drop, int64_t bh, int64_t i, int64_t j, int64_t Sq, int64_t Sk,
                 Draws* draws) {
  if (drop.p <= 0) return T(1);
  const int64_t n = (bh * Sq + i) * Sk + j;
  const bool keep = mmg::attention_dropout_keep(drop, n);
  if (draws) draws->record(n, keep);
  return keep ? static_cast<T>(drop.scale) : T(0);
}

// The v2 forward, block by block (a block = one (b, h) and one tile of Br queries).
template <class T>
void flash_forward_emulated(const T* q, const T* k, const T* v, const uint8_t* key_mask, T* out, T* lse,
                            const Sizes& z, bool causal, T scale, int64_t Br, int64_t Bc,
                            const mmg::AttentionDropout& drop = {}, Draws* draws = nullptr) {
  const T neg_inf = -std::numeric_limits<T>::infinity();
  const int64_t D = z.D, Sq = z.Sq, Sk = z.Sk;
  for (int64_t bh = 0; bh < z.B * z.H; ++bh) {
    const uint8_t* mask = key_mask ? key_mask + (bh / z.H) * Sk : nullptr;
    const T *qh = q + bh * Sq * D, *kh = k + bh * Sk * D, *vh = v + bh * Sk * D;
    for (int64_t i0 = 0; i0 < Sq; i0 += Br) {
      const int64_t rows = std::min(Br, Sq - i0);  // the kernel computes the rest and drops them
      std::vector<T> m(rows, neg_inf), l(rows, T(0)), acc(rows * D, T(0));
      const int64_t kend = causal && i0 + Br < Sk ? i0 + Br : Sk;
      for (int64_t j0 = 0; j0 < kend; j0 += Bc) {
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t i = i0 + r;
          std::vector<T> s(Bc, neg_inf);  // the tile's scores, −∞ where hidden
          T tile_max = neg_inf;
          for (int64_t c = 0; c < Bc; ++c) {
            const int64_t j = j0 + c;
            if (visible(mask, i, j, Sk, causal)) s[c] = dot(qh + i * D, kh + j * D, D) * scale;
            tile_max = std::max(tile_max, s[c]);
          }
          const T m_new = std::max(m[r], tile_max);
          const T alpha = m_new == neg_inf ? T(1) : std::exp(m[r] - m_new);  // no key seen yet: no rescale
          l[r] *= alpha;
          for (int64_t d = 0; d < D; ++d) acc[r * D + d] *= alpha;
          for (int64_t c = 0; c < Bc; ++c) {
            if (s[c] == neg_inf) continue;  // p = 0 (past Sk the kernel's V tile holds zeros)
            const T p = std::exp(s[c] - m_new);
            l[r] += p;  // undropped: lse is the softmax's
            const T pv = p * dropout_factor<T>(drop, bh, i, j0 + c, Sq, Sk, draws);
            for (int64_t d = 0; d < D; ++d) acc[r * D + d] += pv * vh[(j0 + c) * D + d];
          }
          m[r] = m_new;
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t i = i0 + r;
        for (int64_t d = 0; d < D; ++d) out[(bh * Sq + i) * D + d] = l[r] > 0 ? acc[r * D + d] / l[r] : T(0);
        lse[bh * Sq + i] = l[r] > 0 ? m[r] + std::log(l[r]) : neg_inf;
      }
    }
  }
}

// The v2 backward: Δ, then the dK/dV blocks (one per key tile), then the dQ blocks (one per
// query tile), with the kernels' tile bounds. Returns how many (query tile, key tile) pairs
// the two tile kernels visited, to check that causal skips tiles.
template <class T>
int64_t flash_backward_emulated(const T* q, const T* k, const T* v, const uint8_t* key_mask, const T* out,
                                const T* dout, const T* lse, T* dq, T* dk, T* dv, const Sizes& z, bool causal, T scale,
                                int64_t Br, int64_t Bc, const mmg::AttentionDropout& drop = {},
                                Draws* dkdv_draws = nullptr, Draws* dq_draws = nullptr) {
  const T neg_inf = -std::numeric_limits<T>::infinity();
  const int64_t D = z.D, Sq = z.Sq, Sk = z.Sk;
  int64_t pairs = 0;
  for (int64_t bh = 0; bh < z.B * z.H; ++bh) {
    const uint8_t* mask = key_mask ? key_mask + (bh / z.H) * Sk : nullptr;
    const T *qh = q + bh * Sq * D, *kh = k + bh * Sk * D, *vh = v + bh * Sk * D;
    const T *oh = out + bh * Sq * D, *doh = dout + bh * Sq * D, *lh = lse + bh * Sq;
    std::vector<T> delta(Sq);
    for (int64_t i = 0; i < Sq; ++i) delta[i] = dot(doh + i * D, oh + i * D, D);
    // P_ij recomputed from lse; 0 where hidden or the row saw no key (lse = −∞). Where it is
    // visible the kernel also draws z_ij (1 without dropout).
    auto weight_visible = [&](int64_t i, int64_t j) { return visible(mask, i, j, Sk, causal) && lh[i] != neg_inf; };
    auto prob = [&](int64_t i, int64_t j) {
      if (!weight_visible(i, j)) return T(0);
      return std::exp(dot(qh + i * D, kh + j * D, D) * scale - lh[i]);
    };
    auto factor = [&](int64_t i, int64_t j, Draws* draws) {
      return weight_visible(i, j) ? dropout_factor<T>(drop, bh, i, j, Sq, Sk, draws) : T(0);
    };
    // dS_ij = P_ij (z_ij dP_ij − Δ_i)
    auto dscore = [&](int64_t i, int64_t j, T p, T zf) {
      return p * (zf * dot(doh + i * D, vh + j * D, D) - delta[i]);
    };

    for (int64_t j0 = 0; j0 < Sk; j0 += Bc) {
      const int64_t j1 = std::min(j0 + Bc, Sk);
      std::fill(dk + (bh * Sk + j0) * D, dk + (bh * Sk + j1) * D, T(0));
      std::fill(dv + (bh * Sk + j0) * D, dv + (bh * Sk + j1) * D, T(0));
      const int64_t i_begin = causal ? (j0 / Br) * Br : 0;
      for (int64_t i0 = i_begin; i0 < Sq; i0 += Br, ++pairs) {
        for (int64_t j = j0; j < j1; ++j) {
          for (int64_t i = i0; i < std::min(i0 + Br, Sq); ++i) {
            const T p = prob(i, j), zf = factor(i, j, dkdv_draws), ds = dscore(i, j, p, zf);
            for (int64_t d = 0; d < D; ++d) {
              dv[(bh * Sk + j) * D + d] += zf * p * doh[i * D + d];
              dk[(bh * Sk + j) * D + d] += scale * ds * qh[i * D + d];
            }
          }
        }
      }
    }
    for (int64_t i0 = 0; i0 < Sq; i0 += Br) {
      const int64_t i1 = std::min(i0 + Br, Sq);
      std::fill(dq + (bh * Sq + i0) * D, dq + (bh * Sq + i1) * D, T(0));
      const int64_t kend = causal && i0 + Br < Sk ? i0 + Br : Sk;
      for (int64_t j0 = 0; j0 < kend; j0 += Bc, ++pairs) {
        for (int64_t i = i0; i < i1; ++i) {
          for (int64_t j = j0; j < std::min(j0 + Bc, Sk); ++j) {
            const T ds = dscore(i, j, prob(i, j), factor(i, j, dq_draws));
            for (int64_t d = 0; d < D; ++d) dq[(bh * Sq + i) * D + d] += scale * ds * kh[j * D + d];
          }
        }
      }
    }
  }
  return pairs;
}

template <class T>
std::vector<T> random_values(int64_t n, std::mt19937& gen, double lo, double hi) {
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> x(static_cast<size_t>(n));
  for (T& e : x) e = static_cast<T>(dist(gen));
  return x;
}

// |got − want| <= atol + rtol·|want| everywhere, −∞ where want is −∞.
template <class T>
void check_close(const std::vector<T>& got, const std::vector<T>& want, double rtol, double atol,
                 const std::string& what) {
  INFO(what);
  REQUIRE(got.size() == want.size());
  for (size_t n = 0; n < got.size(); ++n) {
    if (std::isinf(want[n])) {
      REQUIRE_MESSAGE(got[n] == want[n], "element " << n);
      continue;
    }
    REQUIRE_MESSAGE(std::abs(double(got[n]) - double(want[n])) <= atol + rtol * std::abs(double(want[n])),
                    "element " << n << ": " << got[n] << " vs " << want[n]);
  }
}

struct Case {
  Sizes z;
  bool causal;
  int mask;  // 0 none; 1 random holes; 2 random holes and batch row 0 fully masked
};

// Emulated forward and backward against cpu::attention_forward / attention_backward; with
// dropout, also what each tile loop drew against the mask of the whole matrix.
template <class T>
void check_case(const Case& c, int64_t Br, int64_t Bc, double rtol, double atol, std::mt19937& gen,
                const mmg::AttentionDropout& drop = {}) {
  const Sizes& z = c.z;
  const std::string name = "B " + std::to_string(z.B) + " H " + std::to_string(z.H) + " Sq " + std::to_string(z.Sq) +
                           " Sk " + std::to_string(z.Sk) + " D " + std::to_string(z.D) +
                           (c.causal ? " causal" : "") + " mask " + std::to_string(c.mask) + " tiles " +
                           std::to_string(Br) + "x" + std::to_string(Bc) + (sizeof(T) == 4 ? " f32" : " f64") +
                           (drop.p > 0 ? " dropout " + std::to_string(drop.p) : "");
  const int64_t nq = z.B * z.H * z.Sq * z.D, nk = z.B * z.H * z.Sk * z.D;
  // Queries three times larger: scores spread over tens of units, so later key tiles often
  // raise the running max and the rescaling is exercised.
  std::vector<T> q = random_values<T>(nq, gen, -3, 3), k = random_values<T>(nk, gen, -1, 1);
  std::vector<T> v = random_values<T>(nk, gen, -1, 1), dout = random_values<T>(nq, gen, -1, 1);
  std::vector<uint8_t> mask;
  if (c.mask > 0) {
    std::uniform_int_distribution<int> coin(0, 9);
    mask.resize(static_cast<size_t>(z.B * z.Sk));
    for (uint8_t& m : mask) m = coin(gen) < 7;
    if (c.mask == 2) std::fill(mask.begin(), mask.begin() + z.Sk, uint8_t(0));
  }
  const uint8_t* mp = mask.empty() ? nullptr : mask.data();
  const T scale = static_cast<T>(1.0 / std::sqrt(double(z.D)));

  const int64_t weights = z.B * z.H * z.Sq * z.Sk;
  Draws fwd_draws{std::vector<int>(weights, -1)}, dkdv_draws = fwd_draws, dq_draws = fwd_draws;
  const bool dropping = drop.p > 0;

  std::vector<T> out_cpu(nq), lse_cpu(z.B * z.H * z.Sq), out(nq, T(NAN)), lse(lse_cpu.size(), T(NAN));
  mmg::cpu::attention_forward<T>(q.data(), k.data(), v.data(), mp, nullptr, out_cpu.data(), lse_cpu.data(), z.B, z.H,
                                 z.Sq, z.Sk, z.D, c.causal, scale, drop);
  flash_forward_emulated<T>(q.data(), k.data(), v.data(), mp, out.data(), lse.data(), z, c.causal, scale, Br, Bc, drop,
                            &fwd_draws);
  check_close(out, out_cpu, rtol, atol, name + " out");
  check_close(lse, lse_cpu, rtol, atol, name + " lse");

  std::vector<T> dq_cpu(nq), dk_cpu(nk), dv_cpu(nk), dq(nq, T(NAN)), dk(nk, T(NAN)), dv(nk, T(NAN));
  mmg::cpu::attention_backward<T>(q.data(), k.data(), v.data(), mp, nullptr, out_cpu.data(), dout.data(),
                                  lse_cpu.data(), dq_cpu.data(), dk_cpu.data(), dv_cpu.data(), z.B, z.H, z.Sq, z.Sk, z.D, c.causal,
                                  scale, drop);
  const int64_t pairs = flash_backward_emulated<T>(q.data(), k.data(), v.data(), mp, out_cpu.data(), dout.data(),
                                                   lse_cpu.data(), dq.data(), dk.data(), dv.data(), z, c.causal,
                                                   scale, Br, Bc, drop, &dkdv_draws, &dq_draws);
  check_close(dq, dq_cpu, rtol, atol, name + " dq");
  check_close(dk, dk_cpu, rtol, atol, name + " dk");
  check_close(dv, dv_cpu, rtol, atol, name + " dv");
  // Without causal both tile kernels visit every (query tile, key tile) pair.
  const int64_t all = z.B * z.H * ((z.Sq + Br - 1) / Br) * ((z.Sk + Bc - 1) / Bc);
  if (!c.causal) CHECK(pairs == 2 * all);
  else CHECK(pairs <= 2 * all);

  if (!dropping) return;
  // Each tile loop drew every visible weight exactly once, hidden ones never, and what it
  // drew is the keep bit of the whole matrix at that weight's flat index.
  int64_t wrong[3] = {0, 0, 0}, drawn = 0;
  for (int64_t bh = 0; bh < z.B * z.H; ++bh)
    for (int64_t i = 0; i < z.Sq; ++i)
      for (int64_t j = 0; j < z.Sk; ++j) {
        const int64_t n = (bh * z.Sq + i) * z.Sk + j;
        const uint8_t* mask = mp ? mp + (bh / z.H) * z.Sk : nullptr;
        const int want = visible(mask, i, j, z.Sk, c.causal) ? int(mmg::attention_dropout_keep(drop, n)) : -1;
        drawn += want != -1;
        wrong[0] += fwd_draws.bit[n] != want;
        wrong[1] += dkdv_draws.bit[n] != want;
        wrong[2] += dq_draws.bit[n] != want;
      }
  INFO(name);
  CHECK(wrong[0] == 0);
  CHECK(wrong[1] == 0);
  CHECK(wrong[2] == 0);
  CHECK(fwd_draws.again == 0);
  CHECK(dkdv_draws.again == 0);
  CHECK(dq_draws.again == 0);
  if (c.mask != 2) CHECK(drawn > 0);  // (a fully masked batch row still leaves the others)
}

const std::vector<Case> kCases = {
    {{1, 1, 1, 1, 1}, false, 0},     {{1, 1, 1, 1, 1}, true, 0},      {{2, 2, 7, 7, 5}, false, 0},
    {{2, 2, 7, 7, 5}, true, 2},      {{2, 1, 7, 33, 6}, true, 1},     {{2, 1, 33, 7, 6}, true, 2},
    {{2, 1, 64, 197, 8}, false, 2},  {{1, 2, 64, 197, 8}, true, 0},   {{2, 1, 197, 197, 4}, false, 1},
    {{1, 1, 197, 197, 4}, true, 0},  {{1, 2, 1, 257, 3}, false, 1},   {{1, 1, 257, 1, 3}, true, 0},
    {{1, 1, 257, 257, 2}, true, 2},  {{3, 1, 77, 77, 24}, false, 2},
};

}  // namespace

TEST_CASE("flash attention tiling (host emulation of CUDA v2): forward and backward match the CPU kernel, f64") {
  std::mt19937 gen(20240611);
  const int64_t Br = mmg::cuda::kFlashQueryTile, Bc = mmg::cuda::kFlashKeyTile;
  for (const Case& c : kCases) {
    check_case<double>(c, Br, Bc, 1e-11, 1e-12, gen);
    check_case<double>(c, 4, 3, 1e-11, 1e-12, gen);   // short inputs across many tiles
    check_case<double>(c, 5, 16, 1e-11, 1e-12, gen);  // Br != Bc, neither divides the other
  }
}

TEST_CASE("flash attention tiling (host emulation of CUDA v2): f32 within the CUDA tests' tolerance") {
  // The CUDA parity tests compare v2 with the CPU op in f32 at rtol 1e-5 plus an atol for
  // sums; the online softmax in f32 must fit that by itself.
  std::mt19937 gen(7);
  const int64_t Br = mmg::cuda::kFlashQueryTile, Bc = mmg::cuda::kFlashKeyTile;
  for (const Case& c : kCases) check_case<float>(c, Br, Bc, 1e-5, 3e-5, gen);
}

TEST_CASE("flash attention tiling (host emulation of CUDA v2) with dropout: each tile regenerates the mask") {
  // The forward, dK/dV and dQ loops each draw z_ij from the flat index where they form the
  // weight; their results match the CPU kernel with the same dropout, and what they drew is
  // the whole matrix's mask (check_case).
  std::mt19937 gen(99);
  const int64_t Br = mmg::cuda::kFlashQueryTile, Bc = mmg::cuda::kFlashKeyTile;
  for (double p : {0.2, 0.6}) {
    mmg::AttentionDropout drop;
    drop.p = static_cast<float>(p);
    drop.scale = 1.0 / (1.0 - p);
    drop.seed = 0x5eed + static_cast<uint64_t>(p * 10);
    drop.base = 1000;
    for (const Case& c : kCases) {
      check_case<double>(c, Br, Bc, 1e-11, 1e-12, gen, drop);
      check_case<double>(c, 4, 3, 1e-11, 1e-12, gen, drop);
      check_case<double>(c, 5, 16, 1e-11, 1e-12, gen, drop);
    }
  }
  // f32 at the CUDA tests' tolerance.
  mmg::AttentionDropout drop{.p = 0.3f, .scale = 1.0 / 0.7, .seed = 77, .base = 0};
  for (const Case& c : kCases) check_case<float>(c, Br, Bc, 1e-5, 3e-5, gen, drop);
}

TEST_CASE("flash attention tiling: causal skips the tiles above the diagonal") {
  // Sq = Sk = 96 with 32×32 tiles: 3 query tiles × 3 key tiles; causal visits the 6 on or
  // below the diagonal in each tile kernel.
  const Sizes z{1, 1, 96, 96, 2};
  std::mt19937 gen(3);
  std::vector<double> q = random_values<double>(96 * 2, gen, -1, 1), k = q, v = q, dout = q;
  std::vector<double> out(96 * 2), lse(96), dq(96 * 2), dk(96 * 2), dv(96 * 2);
  const double scale = 0.5;
  flash_forward_emulated<double>(q.data(), k.data(), v.data(), nullptr, out.data(), lse.data(), z, true, scale, 32, 32);
  CHECK(flash_backward_emulated<double>(q.data(), k.data(), v.data(), nullptr, out.data(), dout.data(), lse.data(),
                                        dq.data(), dk.data(), dv.data(), z, true, scale, 32, 32) == 2 * 6);
  CHECK(flash_backward_emulated<double>(q.data(), k.data(), v.data(), nullptr, out.data(), dout.data(), lse.data(),
                                        dq.data(), dk.data(), dv.data(), z, false, scale, 32, 32) == 2 * 9);
}
