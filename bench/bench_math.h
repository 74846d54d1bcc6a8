// The arithmetic of the benchmarks, apart from any device: what each kernel must move or
// compute, how many input sets keep the L2 cache from serving them, the median, and the
// padding pattern of the text shapes. Pure functions, tested on the CPU
// (tests/bench/test_bench_logic.cpp); bench/torch_compare.py repeats the same formulas.
//
// Bytes are the fewest the kernel must move through device memory: each input read once,
// each output written once. FLOPs count a multiply-add as two. Both follow
// /work/shared/PERFORMANCE.md ("How to count").
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace mmg::bench {

// Which pass a row times: the forward alone, the backward alone (the forward's saved
// tensors made beforehand), or both.
enum class Direction { fwd, bwd, fwd_bwd };

inline const char* direction_name(Direction d) {
  switch (d) {
    case Direction::fwd:
      return "fwd";
    case Direction::bwd:
      return "bwd";
    case Direction::fwd_bwd:
      return "fwd+bwd";
  }
  return "?";
}

// ---- memory-bound kernels: bytes that must move ----

// Row softmax over rows × cols: forward reads x, writes y (2·r·c); backward reads y and dy,
// writes dx (3·r·c).
inline double softmax_bytes(int64_t rows, int64_t cols, int64_t elem_bytes, Direction d) {
  const double n = static_cast<double>(rows) * static_cast<double>(cols) * static_cast<double>(elem_bytes);
  switch (d) {
    case Direction::fwd:
      return 2 * n;
    case Direction::bwd:
      return 3 * n;
    case Direction::fwd_bwd:
      return 5 * n;
  }
  return 0;
}

// LayerNorm over the last dim of an M×N input with γ and β:
//   forward   reads x, γ, β; writes y, mean, rstd:        2·M·N + 2·N + 2·M elements
//   backward  reads x, dy, γ, mean, rstd; writes dx, dγ, dβ: 3·M·N + 3·N + 2·M elements
// (the dγ/dβ partial sums between the two stages of the reduction are not counted: they
// are the kernel's choice, not the problem's).
inline double layer_norm_bytes(int64_t M, int64_t N, int64_t elem_bytes, Direction d) {
  const double m = static_cast<double>(M), n = static_cast<double>(N), b = static_cast<double>(elem_bytes);
  const double fwd = (2 * m * n + 2 * n + 2 * m) * b, bwd = (3 * m * n + 3 * n + 2 * m) * b;
  switch (d) {
    case Direction::fwd:
      return fwd;
    case Direction::bwd:
      return bwd;
    case Direction::fwd_bwd:
      return fwd + bwd;
  }
  return 0;
}

// out = a + b, a [M,N], b [N] broadcast over the rows: reads M·N + N, writes M·N.
inline double add_broadcast_bytes(int64_t M, int64_t N, int64_t elem_bytes) {
  return (2.0 * static_cast<double>(M) * static_cast<double>(N) + static_cast<double>(N)) *
         static_cast<double>(elem_bytes);
}

// out = a + b over n elements of the same shape: reads 2n, writes n.
inline double add_bytes(int64_t n, int64_t elem_bytes) { return 3.0 * static_cast<double>(n) * elem_bytes; }

// GELU over n elements: forward reads x, writes y; backward reads x and dy, writes dx.
inline double gelu_bytes(int64_t n, int64_t elem_bytes, Direction d) {
  const double e = static_cast<double>(n) * static_cast<double>(elem_bytes);
  switch (d) {
    case Direction::fwd:
      return 2 * e;
    case Direction::bwd:
      return 3 * e;
    case Direction::fwd_bwd:
      return 5 * e;
  }
  return 0;
}

// A copy of `bytes`: read once, written once.
inline double copy_bytes(double bytes) { return 2 * bytes; }

// ---- compute-bound kernels: FLOPs ----

// C [M,N] = A [M,K] · B [K,N].
inline double gemm_flops(int64_t M, int64_t N, int64_t K) {
  return 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
}

// Attention over q [B,H,Sq,D], k and v [B,H,Sk,D]: forward QKᵀ and PV, 2·2·B·H·Sq·Sk·D;
// backward 2.5× that (five products of the same size, one of them the recomputed QKᵀ of a
// fused kernel, counted for every version alike); halved when causal. Padding masks are
// not subtracted: every row is counted in full, as the published figures count.
inline double attention_flops(int64_t B, int64_t H, int64_t Sq, int64_t Sk, int64_t D, bool causal, Direction d) {
  const double fwd = 4.0 * static_cast<double>(B) * static_cast<double>(H) * static_cast<double>(Sq) *
                     static_cast<double>(Sk) * static_cast<double>(D) * (causal ? 0.5 : 1.0);
  switch (d) {
    case Direction::fwd:
      return fwd;
    case Direction::bwd:
      return 2.5 * fwd;
    case Direction::fwd_bwd:
      return 3.5 * fwd;
  }
  return 0;
}

// Symmetric InfoNCE over N pairs of dimension d: the forward's logits img·txtᵀ, 2·N²·d;
// the backward's d(img) = dL·txt and d(txt) = dLᵀ·img, 4·N²·d (the N² exponentials are
// not counted).
inline double clip_loss_flops(int64_t N, int64_t d, Direction dir) {
  const double fwd = 2.0 * static_cast<double>(N) * static_cast<double>(N) * static_cast<double>(d);
  switch (dir) {
    case Direction::fwd:
      return fwd;
    case Direction::bwd:
      return 2 * fwd;
    case Direction::fwd_bwd:
      return 3 * fwd;
  }
  return 0;
}

// ---- timing ----

// The median of the samples (the mean of the middle two for an even count); empty: an error.
inline double median(std::vector<double> v) {
  if (v.empty()) throw std::invalid_argument("median of no samples");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// How many distinct input sets to rotate among so that the cache does not serve them: their
// total must exceed twice the L2 size (the first pass over a set evicts what the set before
// it left there), and there are at least two, so that no run finds the tail of the previous
// run's inputs. At most max_sets; and no more than fit in memory_budget bytes (at least one:
// a set larger than half the budget is far larger than any L2).
inline int rotation_count(double set_bytes, double l2_bytes, int max_sets, double memory_budget) {
  if (set_bytes <= 0) return 1;
  const double wanted = 2.0 * l2_bytes / set_bytes;
  int n = wanted >= max_sets ? max_sets : std::max(2, static_cast<int>(wanted) + 1);
  n = std::min(n, max_sets);
  const double fit = memory_budget / set_bytes;
  if (fit < n) n = std::max(1, static_cast<int>(fit));
  return n;
}

// Runs per timed sample, so that one sample spans at least target_ms (a launch's host cost
// then hides behind the device's work, and the events' resolution of ~0.5 µs is small
// against the sample): ceil(target_ms / run_ms), between 1 and max_reps.
inline int reps_per_sample(double run_ms, double target_ms, int max_reps) {
  if (!(run_ms > 0)) return max_reps;
  const double r = target_ms / run_ms;
  if (r >= max_reps) return max_reps;
  return std::max(1, static_cast<int>(r + 0.999999));
}

// ---- checks ----

// ‖got − want‖₂ / ‖want‖₂ (NaN when the sizes differ or an element is NaN; 0 for two zero
// vectors): how the bench checks a kernel's result against the CPU before timing it.
inline double relative_error(const std::vector<double>& got, const std::vector<double>& want) {
  if (got.size() != want.size()) return NAN;
  double diff = 0, norm = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    diff += (got[i] - want[i]) * (got[i] - want[i]);
    norm += want[i] * want[i];
  }
  if (std::isnan(diff) || std::isnan(norm)) return NAN;
  if (norm == 0) return diff == 0 ? 0 : INFINITY;
  return std::sqrt(diff / norm);
}

// "ok (rel 3.1e-07)", or "FAILED: ..." when rel is over tol or not a number.
inline std::string check_verdict(double rel, double tol) {
  char buf[96];
  if (rel <= tol)
    std::snprintf(buf, sizeof buf, "ok (rel %.1e)", rel);
  else
    std::snprintf(buf, sizeof buf, "FAILED: relative error %.2e > %.0e", rel, tol);
  return buf;
}

// ---- shapes ----

// The text cases' key-padding pattern: sequence b of a batch of length S keeps its first
// L_b = S − (7·b mod ⌈S/2⌉) tokens, so lengths run between S/2 and S and differ along the
// batch (for S = 32 and 77, ⌈S/2⌉ = 16 and 39 are prime to 7, so along the batch the
// lengths cycle through the whole range).
inline int64_t padded_length(int64_t b, int64_t S) {
  const int64_t half = (S + 1) / 2;
  return S - (7 * b) % half;
}

}  // namespace mmg::bench
