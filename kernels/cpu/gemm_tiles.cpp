// gemm version 2 on the CPU: f32 products in register tiles of 6 rows × 16 columns, for the
// AVX2 + FMA vector units (8 floats a register). Version 1 is Eigen (gemm.cpp), which the
// ops run for f64 and on CPUs without AVX2.
//
//   C[M,N] = alpha · op(A)[M,K] · op(B)[K,N] + beta · C          (contract: kernels/gemm.h)
//
// Why our own: the transformer's products here are tall and thin (thousands of token rows
// times a 64-wide weight). Eigen packs both operands on every call, so for an inner
// dimension of 64 it copies the whole token matrix to multiply it once, and reached about
// half of one core's FMA peak on these shapes.
//
// The idea (the BLIS micro-kernel): 12 accumulator registers hold a 6×16 tile of C. Each
// step k loads one row of the B panel (16 floats, 2 registers), broadcasts the 6 values
// A(i..i+5, k) one at a time and issues 12 FMAs: 12 FMAs for 8 loads, which the two FMA
// pipes of a core retire in 6 cycles. The tile stays in registers for the whole inner
// dimension and is written to C once.
//
// Operands are read where they lie, except B when a panel's 16 values of one k are not
// contiguous (op(B) = Bᵀ, or a last panel narrower than 16): those panels are copied once
// per call into a [kc][16] buffer, zero-padded. A is never copied: non-transposed, its 6 rows
// are 6 streams along k; transposed, its 6 values at one k are adjacent. A linear layer's bias
// is added as the tiles are written (linear_forward, kernels/gemm.h), not in a pass of its own.
//
// Blocking: the columns in blocks of 256. When B's block is at most 256 KB (it stays in L2),
// each row tile runs the whole inner dimension against it; else the inner dimension is cut
// into chunks of 128 (tuned on the demo's shapes; 64 and 256 were slower). Threads take whole
// row tiles of C, or column panels when C is wider than tall.
#include "kernels/cpu/gemm_tiles.h"

#if MMG_GEMM_TILES
#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/parallel.h"

namespace mmg::cpu {
namespace {

constexpr int kTileRows = 6;
constexpr int kPanel = 16;     // columns a tile: 2 registers of 8 floats
constexpr int64_t kBlock = 256;           // column block (a multiple of kPanel)
constexpr int64_t kCachedB = 256 * 1024;  // bytes of B kept whole: half of a Zen 3 core's L2
constexpr int64_t kChunk = 128;           // inner-dimension chunk when B is larger
constexpr int64_t kSplitInner = 4;        // split the inner dimension over threads when K >= 4·max(M, N)
constexpr int64_t kSplitInnerMaxC = 1 << 20;  // ... and C is small enough for a buffer per thread (4 MB)

// Where the A values of one tile live: A(i + r, k) = a[r·row_step + k·k_step].
struct ATile {
  const float* a;
  int64_t row_step, k_step;
};

// acc[r] += A(i + r, k) · B(k, 0..15) for k < kc; b holds row k's 16 values at b + k·b_step.
template <int R>
inline void tile_product(int64_t kc, ATile A, const float* b, int64_t b_step, __m256 (&acc)[R][2]) {
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b + k * b_step);
    const __m256 b1 = _mm256_loadu_ps(b + k * b_step + 8);
    const float* ak = A.a + k * A.k_step;
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256 x = _mm256_broadcast_ss(ak + r * A.row_step);
      acc[r][0] = _mm256_fmadd_ps(x, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(x, b1, acc[r][1]);
    }
  }
}

// The mask of the first n (0..8) lanes, for loads and stores of a panel's last columns.
inline __m256i first_lanes(int n) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
}

// How a finished tile is written: C = alpha · acc + beta · C (+ bias[j] for column j, when
// bias is set). beta == 0 does not read C.
struct Epilogue {
  float alpha, beta;
  const float* bias;  // the tile's first column's entry, or nullptr
};

// Writes the R rows of a tile into C; w < 16 only for the last panel of C.
template <int R>
inline void store_tile(const __m256 (&acc)[R][2], Epilogue e, float* c, int64_t ldc, int w) {
  const __m256 va = _mm256_set1_ps(e.alpha), vb = _mm256_set1_ps(e.beta);
  const __m256i m0 = first_lanes(std::min(w, 8)), m1 = first_lanes(std::max(w - 8, 0));
  const bool full = w == kPanel;
  __m256 bias0 = _mm256_setzero_ps(), bias1 = _mm256_setzero_ps();
  if (e.bias) {
    bias0 = full ? _mm256_loadu_ps(e.bias) : _mm256_maskload_ps(e.bias, m0);
    bias1 = full ? _mm256_loadu_ps(e.bias + 8) : _mm256_maskload_ps(e.bias + 8, m1);
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    float* row = c + r * ldc;
    __m256 y0 = _mm256_fmadd_ps(va, acc[r][0], bias0), y1 = _mm256_fmadd_ps(va, acc[r][1], bias1);
    if (full) {
      if (e.beta != 0.0f) {
        y0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(row), y0);
        y1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(row + 8), y1);
      }
      _mm256_storeu_ps(row, y0);
      _mm256_storeu_ps(row + 8, y1);
    } else {
      if (e.beta != 0.0f) {
        y0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(row, m0), y0);
        y1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(row + 8, m1), y1);
      }
      _mm256_maskstore_ps(row, m0, y0);
      _mm256_maskstore_ps(row + 8, m1, y1);
    }
  }
}

template <int R>
inline void tile(int64_t kc, ATile A, const float* b, int64_t b_step, Epilogue e, float* c, int64_t ldc, int w) {
  __m256 acc[R][2];
  tile_product<R>(kc, A, b, b_step, acc);
  store_tile<R>(acc, e, c, ldc, w);
}

// One tile of up to 6 rows: the row count picks the unrolled kernel.
inline void any_tile(int rows, int64_t kc, ATile A, const float* b, int64_t b_step, Epilogue e, float* c,
                     int64_t ldc, int w) {
  switch (rows) {
    case 6: tile<6>(kc, A, b, b_step, e, c, ldc, w); break;
    case 5: tile<5>(kc, A, b, b_step, e, c, ldc, w); break;
    case 4: tile<4>(kc, A, b, b_step, e, c, ldc, w); break;
    case 3: tile<3>(kc, A, b, b_step, e, c, ldc, w); break;
    case 2: tile<2>(kc, A, b, b_step, e, c, ldc, w); break;
    default: tile<1>(kc, A, b, b_step, e, c, ldc, w); break;
  }
}

struct Operands {
  bool trans_a, trans_b;
  int64_t K;
  float alpha;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float beta;
  float* C;
  int64_t ldc;
  const float* bias;  // [N], added to every row of C; or nullptr
};

// B's panels for columns [j0, j0 + 16·panels) and inner rows [k0, k0 + kc): where row k of
// panel p starts (panel_b[p] + k·panel_step[p]). A panel is read in place when its 16 values
// of one k are adjacent, else copied into `packed` ([p][k][16], zeros past column n1).
void pack_b(const Operands& o, int64_t j0, int64_t n1, int64_t panels, int64_t k0, int64_t kc,
            std::vector<float>& packed, std::vector<const float*>& panel_b, std::vector<int64_t>& panel_step) {
  packed.resize(static_cast<size_t>(panels * kc * kPanel));
  panel_b.resize(panels);
  panel_step.resize(panels);
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t j = j0 + p * kPanel;
    const int w = static_cast<int>(std::min<int64_t>(kPanel, n1 - j));
    if (!o.trans_b && w == kPanel) {
      panel_b[p] = o.B + k0 * o.ldb + j;
      panel_step[p] = o.ldb;
      continue;
    }
    float* dst = packed.data() + p * kc * kPanel;
    if (!o.trans_b) {  // B(k, j..j+w) is row k's run of w values
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = o.B + (k0 + k) * o.ldb + j;
        float* d = dst + k * kPanel;
        for (int jj = 0; jj < kPanel; ++jj) d[jj] = jj < w ? src[jj] : 0.0f;
      }
    } else {  // B(k, j + jj) is column k of row j + jj: fill the panel row by row of B
      std::fill(dst, dst + kc * kPanel, 0.0f);
      for (int jj = 0; jj < w; ++jj) {
        const float* src = o.B + (j + jj) * o.ldb + k0;
        for (int64_t k = 0; k < kc; ++k) dst[k * kPanel + jj] = src[k];
      }
    }
    panel_b[p] = dst;
    panel_step[p] = kPanel;
  }
}

// Rows [m0, m1) and columns [n0, n1) of C, on the calling thread. The columns are taken in
// blocks of kBlock. When all of B's block fits the budget, it is packed (where it must be)
// once, and every row tile runs the whole inner dimension against it: A is streamed once.
// Else (A and B both long along the inner dimension, as in a weight gradient Gᵀ·X over
// thousands of rows) the inner dimension is cut into chunks whose slices of A and B stay in
// cache while every tile reads them; a chunk after the first adds onto C (beta 1). Copying
// those slices into tile order first was tried and was slower: the copy costs more than the
// strided reads it saves.
void gemm_range(const Operands& o, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  thread_local std::vector<float> packed;
  thread_local std::vector<const float*> panel_b;
  thread_local std::vector<int64_t> panel_step;
  for (int64_t j0 = n0; j0 < n1; j0 += kBlock) {
    const int64_t nb = std::min(kBlock, n1 - j0);
    const int64_t panels = (nb + kPanel - 1) / kPanel;
    const bool b_fits = o.K * nb * static_cast<int64_t>(sizeof(float)) <= kCachedB;
    const int64_t chunk = b_fits ? o.K : kChunk;
    for (int64_t k0 = 0; k0 < o.K; k0 += chunk) {
      const int64_t kc = std::min(chunk, o.K - k0);
      const bool first = k0 == 0;
      pack_b(o, j0, n1, panels, k0, kc, packed, panel_b, panel_step);
      // Row tiles outer: a tile's rows of A stay in L1 while it meets every panel of B.
      for (int64_t i = m0; i < m1; i += kTileRows) {
        const int rows = static_cast<int>(std::min<int64_t>(kTileRows, m1 - i));
        // A(i, k0): row i of A, or column i of A when transposed.
        const ATile A = o.trans_a ? ATile{o.A + k0 * o.lda + i, 1, o.lda} : ATile{o.A + i * o.lda + k0, o.lda, 1};
        for (int64_t p = 0; p < panels; ++p) {
          const int64_t j = j0 + p * kPanel;
          const int w = static_cast<int>(std::min<int64_t>(kPanel, n1 - j));
          const Epilogue e{o.alpha, first ? o.beta : 1.0f, first && o.bias ? o.bias + j : nullptr};
          any_tile(rows, kc, A, panel_b[p], panel_step[p], e, o.C + i * o.ldc + j, o.ldc, w);
        }
      }
    }
  }
}

// C = beta·C (+ bias) when the product adds nothing (K == 0 or alpha == 0); beta == 0 does not
// read C.
void scale_only(int64_t M, int64_t N, float beta, float* C, int64_t ldc, const float* bias) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j)
      C[i * ldc + j] = (beta == 0.0f ? 0.0f : beta * C[i * ldc + j]) + (bias ? bias[j] : 0.0f);
}

// A small C over a long inner dimension (a weight gradient Gᵀ·X: 64×64 over 4352 token rows)
// is split along the inner dimension: thread t multiplies its share of the rows of X and G,
// the first into C (with beta and bias), the others into buffers of their own that are then
// added onto C. Split by rows of C instead, every thread would read all of X and G.
void split_inner(const Operands& o, int64_t M, int64_t N, int parts) {
  std::vector<float> partial(static_cast<size_t>((parts - 1) * M * N));
  parallel_for(parts, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t k0 = o.K * p / parts, k1 = o.K * (p + 1) / parts;
      Operands part = o;
      part.K = k1 - k0;
      part.A = o.trans_a ? o.A + k0 * o.lda : o.A + k0;  // op(A)'s columns k0.., op(B)'s rows k0..
      part.B = o.trans_b ? o.B + k0 : o.B + k0 * o.ldb;
      if (p > 0) {
        part.C = partial.data() + (p - 1) * M * N;
        part.ldc = N;
        part.beta = 0.0f;
        part.bias = nullptr;
      }
      if (part.K > 0) gemm_range(part, 0, M, 0, N);
      else if (p > 0) std::fill(part.C, part.C + M * N, 0.0f);
    }
  });
  for (int64_t i = 0; i < M; ++i)
    for (int p = 1; p < parts; ++p) {
      const float* src = partial.data() + (p - 1) * M * N + i * N;
      float* dst = o.C + i * o.ldc;
      for (int64_t j = 0; j < N; ++j) dst[j] += src[j];
    }
}

}  // namespace

void gemm_tiles(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, bool threaded,
                const float* bias) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    scale_only(M, N, beta, C, ldc, bias);
    return;
  }
  const Operands o{trans_a, trans_b, K, alpha, A, lda, B, ldb, beta, C, ldc, bias};
  const int threads = threaded ? num_threads() : 1;
  if (threads > 1 && K >= kSplitInner * std::max(M, N) && M * N <= kSplitInnerMaxC) {
    split_inner(o, M, N, threads);
    return;
  }
  // Split C into whole row tiles, or whole column panels when it is wider than tall, so
  // that no thread is left a ragged edge in the middle.
  const int64_t tiles_m = (M + kTileRows - 1) / kTileRows, panels_n = (N + kPanel - 1) / kPanel;
  if (threads <= 1 || std::max(tiles_m, panels_n) < 2) {
    gemm_range(o, 0, M, 0, N);
  } else if (tiles_m >= panels_n) {
    parallel_for(tiles_m, (tiles_m + threads - 1) / threads, [&](int64_t t0, int64_t t1) {
      gemm_range(o, t0 * kTileRows, std::min(M, t1 * kTileRows), 0, N);
    });
  } else {
    parallel_for(panels_n, (panels_n + threads - 1) / threads, [&](int64_t p0, int64_t p1) {
      gemm_range(o, 0, M, p0 * kPanel, std::min(N, p1 * kPanel));
    });
  }
}

}  // namespace mmg::cpu
#endif  // MMG_GEMM_TILES
