// gemm version 2 on the CPU (kernels/cpu/gemm_tiles.cpp): f32 register tiles for AVX2 + FMA.
// Built only where the compiler targets those units (-march=native on such a CPU);
// MMG_GEMM_TILES says whether it exists. Same contract as cpu::gemm (kernels/gemm.h), f32 only;
// `threaded` splits C over mmg::cpu::num_threads() threads.
#pragma once
#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#define MMG_GEMM_TILES 1
#else
#define MMG_GEMM_TILES 0
#endif

namespace mmg::cpu {

inline constexpr bool kGemmTiles = MMG_GEMM_TILES;

// Defined only where MMG_GEMM_TILES is 1; callers guard with `if constexpr (kGemmTiles)`.
// bias, when set ([N]), is added to every row of C as the tiles are written.
void gemm_tiles(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, bool threaded,
                const float* bias = nullptr);

}  // namespace mmg::cpu
