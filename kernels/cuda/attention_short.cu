// Attention v4: the tensor-core flash forward specialised for short keys (Sk ≤ 256) and many
// B·H, the shapes of multimodal models (ViT 197 tokens, text 32/77, cross-attention 64 over
// 197). For bf16 and f16 as v3 (kernels/cuda/attention_mma.cu), with the same arithmetic and the
// same results: out [B,H,Sq,D] in T and lse [B,H,Sq] in f32 (natural log, of the undropped
// weights), so that the backward of v4 is v3's (attention_mma_backward, FA2 from out and lse).
// Longer keys or head dims past 128 run v3's forward (attention_short_supports).
//
// ---- what it computes ----
// Per (b, h), with s_ij = scale·q_i·k_j and −∞ where key j is hidden (masked, past Sk, or causal
// j > i): running max m_i and sum l_i in exp2 units over the key tiles, O_i = Σ_j z_ij p_ij v_j
// / l_i, lse_i = m_i + log l_i, z_ij the dropout factor drawn from the flat index
// (bh·Sq + i)·Sk + j as in every version. The step over one key tile, the softmax update and the
// final store are v3's own code (attention_mma.cuh: forward_tile, forward_store): a warp's key
// tiles start at the same keys 0, 64, 128, 192 as v3's, and the keys v4 leaves out of a tile
// (past Sk rounded up to 16, or under causal past the chunk's last query) are keys whose weight
// is 0 in v3, so v4 gives v3's results, and the host emulation checks that they are equal bit
// for bit.
//
// ---- launch shape ----
// 128 threads = 4 warps; a grid-stride loop over the plan's units (attention_short_plan.h):
// a unit is one (b, h) — up to 4 when Sq ≤ 48 — and a span of at most 16 query chunks of 16
// rows. The CTA loads the unit's whole K and V into shared memory once, then its warps take
// the 16-row chunks (warp w: items w, w + 4, …) and each runs over the resident keys in 64-key
// steps, the last one cut to a multiple of 16. Q goes from global memory straight into A
// fragments (each register two neighbouring elements of one row: one 32-bit load when D is even
// and q 4-byte aligned), so only K and V take shared memory.
//
// ---- shared memory per CTA ----
// heads · keys · (4·(Dp + 8) + 1) bytes, keys = Sk rounded up to 16 (attention_short_plan.h):
//   ViT (Sk 197 → 208) at Dp 64: 60,112 B;  text Sk 77 → 80 at Dp 64: 23,120 B;
//   text Sk 32 at Dp 64 with 2 heads a CTA: 18,496 B;  the largest, Sk 256 at Dp 128: 139,520 B.
// Past 48 KB the kernel opts in (cudaFuncSetAttribute).
// Registers (ptxas -v, nvcc 13.0): 128–168 at Dp 32 and 64 without dropout, 164–213 with it,
// 245–251 at Dp 128; no spills but sm_90's Dp 32 instance without dropout (40 bytes, as v3's
// forward there). At Dp 64 that is 3 CTAs (12 warps) an SM by registers; ViT's 60 KB of K/V
// allow 3 CTAs on sm_90 (227 KB) and 2 on sm_80 (163 KB).
//
// ---- why it wins for short sequences ----
// v3 tiles the queries by 64 and streams keys by 64. For 197 tokens it pads both sides to 256:
// 256×256 score slots for 197×197 useful (1.69×), and each of a head's 4 query blocks reads the
// whole K and V again. v4 pads queries to 16 and keys to 16 (208×208, 1.11×), reads K and V once
// per head, has no __syncthreads between key tiles (the keys are resident), and a warp runs as
// soon as its chunk is free instead of waiting for the block's 64 rows. What it gives up:
// shared memory grows with Sk (hence the 256 limit), and a CTA's warps may end unevenly
// (13 chunks over 4 warps: 4, 3, 3, 3), which the other CTAs on the SM fill in.
// Untimed: none of this has run on a GPU yet.
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_mma.cuh"
#include "kernels/cuda/attention_short_plan.h"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/mma_fragment.h"

namespace mmg::cuda {

using namespace flash_mma;

// The A fragments of rows [i0, i0 + 16) × all Dp columns of one head's Q ([Sq, D] in global
// memory), zeros past Sq and D. pair: D even and q 4-byte aligned, so each register is one
// 32-bit load (the register's two columns 2·quad, 2·quad + 1 are both < D or both ≥ D).
template <int Dp>
__device__ __forceinline__ void load_q_fragments(uint32_t (&qf)[Dp / 16][4], const uint16_t* qh, int64_t i0,
                                                 int64_t Sq, int D, bool pair, int lane) {
#pragma unroll
  for (int kk = 0; kk < Dp / 16; ++kk)
#pragma unroll
    for (int reg = 0; reg < 4; ++reg) {
      const MmaIndex e = mma_a_element(lane, reg, 0);  // half 1 is column e.col + 1
      const int64_t i = i0 + e.row;
      const int c = kk * 16 + e.col;
      uint32_t x = 0;
      if (i < Sq) {
        const uint16_t* at = qh + i * D + c;
        if (pair) {
          if (c < D) x = *reinterpret_cast<const uint32_t*>(at);
        } else {
          if (c < D) x = at[0];
          if (c + 1 < D) x |= static_cast<uint32_t>(at[1]) << 16;
        }
      }
      qf[kk][reg] = x;
    }
}

template <class T, int Dp, bool Drop>
__global__ void __launch_bounds__(kMmaThreads)
    attention_short_forward_kernel(const uint16_t* q, const uint16_t* k, const uint16_t* v, const uint8_t* key_mask,
                                   uint16_t* out, float* lse, int64_t BH, int64_t H, int64_t Sq, int64_t Sk, int D,
                                   bool causal, float scale2, ShortAttentionPlan plan, bool vec, bool pair,
                                   AttentionDropout drop) {
  constexpr int ld = mma_ld(Dp);
  constexpr int Bc = kMmaForwardKeys;
  constexpr int KD = Dp / 16;
  constexpr int NO = Dp / 8;
  extern __shared__ __align__(16) unsigned char smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int keys = static_cast<int>(plan.keys);
  const float kept = static_cast<float>(drop.scale);  // 1/(1−p), read only when Drop
  // Head h of the unit: K at smem + h·head_bytes, V after it, key_ok after V.
  auto head_k = [&](int h) { return reinterpret_cast<uint16_t*>(smem + h * plan.head_bytes); };

  for (int64_t t = blockIdx.x; t < plan.units; t += gridDim.x) {
    const ShortUnit u = short_unit(plan, BH, t);
    __syncthreads();  // every warp is done with the previous unit's K and V
    for (int h = 0; h < u.heads; ++h) {
      const int64_t bh = u.bh0 + h;
      uint16_t* Ks = head_k(h);
      uint16_t* Vs = Ks + keys * ld;
      load_rows<Dp>(Ks, k + bh * Sk * D, 0, Sk, keys, D, vec);
      load_rows<Dp>(Vs, v + bh * Sk * D, 0, Sk, keys, D, vec);
      load_key_ok(reinterpret_cast<uint8_t*>(Vs + keys * ld), key_mask ? key_mask + (bh / H) * Sk : nullptr, 0, Sk,
                  keys);
    }
    __syncthreads();

    // Each item is one warp's 16 queries over every resident key; no block barrier inside.
    for (int64_t item = warp; item < u.heads * u.chunks; item += kMmaWarps) {
      const ShortItem it = short_item(u, item);
      const int64_t bh = u.bh0 + it.head, w0 = it.chunk * kShortChunkRows;
      const uint16_t* Ks = head_k(it.head);
      const uint16_t* Vs = Ks + keys * ld;
      const uint8_t* key_ok = reinterpret_cast<const uint8_t*>(Vs + keys * ld);
      uint32_t qf[KD][4];
      load_q_fragments<Dp>(qf, q + bh * Sq * D, w0, Sq, D, pair, lane);
      float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, o[NO][4];
#pragma unroll
      for (int n = 0; n < NO; ++n)
#pragma unroll
        for (int r = 0; r < 4; ++r) o[n][r] = 0.f;
      const int64_t kend = mma_key_end(causal, w0, kShortChunkRows, Sk);
      for (int64_t j0 = 0; j0 < kend; j0 += Bc)
        forward_tile<T, Dp, Bc, Drop>(qf, Ks + j0 * ld, Vs + j0 * ld, key_ok + j0, j0, short_tile_keys(kend, j0), w0,
                                      causal, scale2, bh, Sq, Sk, drop, kept, m, l, o, lane);
      forward_store<T, Dp>(o, m, l, out + bh * Sq * D, lse + bh * Sq, w0, Sq, D, lane);
    }
  }
}

template <class T, int Dp, bool Drop>
static void short_forward_launch(const T* q, const T* k, const T* v, const uint8_t* key_mask, T* out, float* lse,
                                 int64_t BH, int64_t H, int64_t Sq, int64_t Sk, int D, bool causal, float scale,
                                 const AttentionDropout& drop, const ShortAttentionPlan& plan) {
  const bool vec = vec_copies(D, {k, v});
  const bool pair = D % 2 == 0 && reinterpret_cast<uintptr_t>(q) % 4 == 0;
  allow_shared_bytes(attention_short_forward_kernel<T, Dp, Drop>, plan.smem_bytes);
  attention_short_forward_kernel<T, Dp, Drop><<<tile_grid(plan.units), kMmaThreads, plan.smem_bytes, current_stream()>>>(
      bits(q), bits(k), bits(v), key_mask, out_bits(out), lse, BH, H, Sq, Sk, D, causal, scale * kLog2e, plan, vec,
      pair, drop);
  MMG_CUDA_LAUNCH_CHECK();
}

template <class T, int Dp>
static void short_forward(const T* q, const T* k, const T* v, const uint8_t* key_mask, T* out, float* lse, int64_t BH,
                          int64_t H, int64_t Sq, int64_t Sk, int D, bool causal, float scale,
                          const AttentionDropout& drop, const ShortAttentionPlan& plan) {
  if (drop.p > 0)
    short_forward_launch<T, Dp, true>(q, k, v, key_mask, out, lse, BH, H, Sq, Sk, D, causal, scale, drop, plan);
  else
    short_forward_launch<T, Dp, false>(q, k, v, key_mask, out, lse, BH, H, Sq, Sk, D, causal, scale, drop, plan);
}

template <class T>
void attention_short_forward(const T* q, const T* k, const T* v, const uint8_t* key_mask, T* out, float* lse,
                             int64_t B, int64_t H, int64_t Sq, int64_t Sk, int64_t D, bool causal, float scale,
                             const AttentionDropout& drop) {
  const int64_t BH = B * H;
  const ShortAttentionPlan plan = attention_short_plan(BH, Sq, Sk, D);
  if (!plan.runs) {  // long keys (or nothing to do): v3's forward, whose lse the backward reads alike
    attention_mma_forward<T>(q, k, v, key_mask, out, lse, B, H, Sq, Sk, D, causal, scale, drop);
    return;
  }
  require_mma_device("attention v4");
  const int d = static_cast<int>(D);
  if (plan.Dp == 32)
    short_forward<T, 32>(q, k, v, key_mask, out, lse, BH, H, Sq, Sk, d, causal, scale, drop, plan);
  else if (plan.Dp == 64)
    short_forward<T, 64>(q, k, v, key_mask, out, lse, BH, H, Sq, Sk, d, causal, scale, drop, plan);
  else
    short_forward<T, 128>(q, k, v, key_mask, out, lse, BH, H, Sq, Sk, d, causal, scale, drop, plan);
}

#define MMG_ATTENTION_SHORT_INSTANTIATE(T)                                                                           \
  template void attention_short_forward<T>(const T*, const T*, const T*, const uint8_t*, T*, float*, int64_t,         \
                                           int64_t, int64_t, int64_t, int64_t, bool, float, const AttentionDropout&);

MMG_ATTENTION_SHORT_INSTANTIATE(bf16)
MMG_ATTENTION_SHORT_INSTANTIATE(f16)

}  // namespace mmg::cuda
