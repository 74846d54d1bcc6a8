// scaled_dot_product_attention on the fused kernels (kernels/attention.h).
//
// q [B,H,Sq,D], k and v [B,H,Sk,D]; per (b, h):
//   S = scale · Q Kᵀ,  S_ij = −∞ where key j is masked (key_mask[b, j] false) or, with
//   causal, j > i;   out = softmax_rows(S) V
// causal is top-left aligned, as torch's is_causal=True: query i sees keys j <= i even when
// Sq != Sk. A query that sees no key at all gets a zero output and zero gradients (PyTorch
// gives NaN there); with padding masks this happens for rows of fully padded sequences.
// query_mask [B,Sq] (false = masked) makes a query such a row whatever the keys: the pad tokens
// of a batch of texts, whose outputs nn::MultiHeadAttention drops when it packs them
// (nn/packed_tokens.h). The CPU kernels skip them; on CUDA the kernels compute every query and
// the op zeroes the masked rows of the output (and so of its gradient) after them.
// The forward saves lse (the log-sum-exp of each score row) instead of P; the backward
// kernel recomputes P from it. Mixed dtypes promote; bf16/f16 are computed in f32.
//
// dropout_p > 0 drops attention weights, as torch's dropout_p does: out = (Z ⊙ P) V with
// Z_ij = keep_ij / (1−p). The mask is Philox's, drawn like the dropout op's (core/ops/dropout.cpp):
// the call reserves B·H·Sq·Sk counters [base, base + B·H·Sq·Sk) of `gen` (the default
// generator when null), and weight (b, h, i, j) is kept when
//   philox_uniform_f32(seed, base + ((b·H + h)·Sq + i)·Sk + j) >= p
// on every device and in every kernel version (kernels/attention.h has the formulas of
// the backward). The op has no training flag: like torch's, it drops whenever p > 0, and a
// layer passes p = 0 in eval mode (nn::MultiHeadAttention does). p = 0 draws nothing and
// runs the code without dropout.
// On CUDA the op runs the version of kernels/cuda/attention.h that kernel_version("attention")
// names: v2 (the default), flash attention: K/V tiles streamed through shared memory with an
// online softmax, saving out and lse like the CPU op (O(S) memory); or v1, the scores by
// gemm_batched, a masked softmax kernel, gemm again, saving P (B·H·Sq·Sk values); or v3, the
// flash algorithm on tensor cores (mma.sync) for bf16/f16 inputs, which keeps them, out and the
// gradients in 16 bits (lse in f32) instead of computing in f32 copies; or v4, v3 with a forward
// for short keys (Sk ≤ 256: each head's K/V resident in shared memory, 16-row query chunks per
// warp) and v3's backward, v3's forward where Sk > 256. Head dims over 128 run v1 whichever is
// chosen (the flash kernels' tiles are sized for D ≤ 128).
#include <cmath>
#include <type_traits>

#include "core/autocast.h"
#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/kernel_versions.h"
#include "core/ops.h"
#include "core/ops/elementwise_impl.h"
#include "core/profile.h"
#include "core/rng.h"
#include "kernels/attention.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/runtime.h"
#include "kernels/gemm.h"
#include "kernels/softmax.h"

namespace mmg {

static constexpr const char* kOp = "scaled_dot_product_attention";

// The most elements of saved attention weights the CPU op keeps per call (64 MB of f32): the
// demo's calls keep 0.1–1 M.
static constexpr int64_t kMaxSavedWeights = int64_t{1} << 24;

// ---- CUDA, v1 ----
// Contiguous [B,H,S,D] inputs in the compute dtype; batch index bh = b·H + h for every operand.

static Tensor attention_cuda_v1(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask, bool causal,
                             double s, const AttentionDropout& drop, DType result) {
  const int64_t B = q.size(0), H = q.size(1), Sq = q.size(2), D = q.size(3), Sk = k.size(2), BH = B * H;
  const DType compute = compute_dtype(result);
  auto prepare = [compute](const Tensor& t) { return t.detach().to(compute).contiguous(); };
  Tensor qc = prepare(q), kc = prepare(k), vc = prepare(v);
  Tensor mc = key_mask.defined() ? key_mask.to(DType::u8).contiguous() : Tensor();
  const Device dev = q.device();
  // P [B,H,Sq,Sk] and out; with no keys the output is zeros (no query sees anything), and
  // with D = 0 it is empty: then there is nothing to compute, forward or backward.
  const bool work = Sk > 0 && BH * Sq > 0 && D > 0;
  // Buffers the gemms overwrite, or zeros where there is nothing to compute.
  auto buffer = [work, compute, dev](const Shape& shape) {  // by value: the backward keeps a copy
    return work ? empty(shape, {.dtype = compute, .device = dev}) : zeros(shape, {.dtype = compute, .device = dev});
  };
  Tensor p = work ? empty({B, H, Sq, Sk}, {.dtype = compute, .device = dev}) : Tensor();
  Tensor out = buffer(q.shape());
  if (work) {
    visit_float(compute, kOp, [&]<class T>() {
      if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(dev.index);
        // S = scale · Q Kᵀ, then P = masked softmax of S in place, then O = P V.
        cuda::gemm_batched<T>(false, true, Sq, Sk, D, static_cast<T>(s), qc.data<T>(), D, kc.data<T>(), D, T(0),
                              p.data<T>(), Sk, BH, Sq * D, Sk * D, Sq * Sk);
        cuda::attention_masked_softmax<T>(p.data<T>(), mc.defined() ? mc.data<uint8_t>() : nullptr, B, H, Sq, Sk,
                                          causal);
        // With dropout O = (Z ⊙ P) V from a scratch copy; P itself is kept undropped for the backward.
        Tensor pd = drop.p > 0 ? empty({B, H, Sq, Sk}, {.dtype = compute, .device = dev}) : p;
        if (drop.p > 0) cuda::attention_dropout_weights<T>(p.data<T>(), pd.data<T>(), p.numel(), drop);
        cuda::gemm_batched<T>(false, false, Sq, D, Sk, T(1), pd.data<T>(), Sk, vc.data<T>(), D, T(0), out.data<T>(),
                              D, BH, Sq * Sk, Sk * D, Sq * D);
      }
    });
  }
  const DType q_dtype = q.dtype(), k_dtype = k.dtype(), v_dtype = v.dtype();
  return record_op(kOp, out.to(result), {q, k, v}, [=](const Tensor& g) -> Grads {
    Tensor gc = g.to(compute).contiguous();
    check_same_device(kOp, qc, gc);
    Tensor dq = buffer(qc.shape()), dk = buffer(kc.shape()), dv = buffer(vc.shape());
    if (work) {
      Tensor ds = empty({B, H, Sq, Sk}, {.dtype = compute, .device = dev});
      visit_float(compute, kOp, [&]<class T>() {
        if constexpr (kWithCuda) {
          cuda::DeviceGuard guard(dev.index);
          const T* pp = p.data<T>();
          // dV = Pᵀ dO                      [Sk, D] = [Sq, Sk]ᵀ · [Sq, D]
          // (with dropout (Z ⊙ P)ᵀ dO, Z ⊙ P regenerated in the dS buffer)
          const T* pv = pp;
          if (drop.p > 0) {
            cuda::attention_dropout_weights<T>(pp, ds.data<T>(), ds.numel(), drop);
            pv = ds.data<T>();
          }
          cuda::gemm_batched<T>(true, false, Sk, D, Sq, T(1), pv, Sk, gc.data<T>(), D, T(0), dv.data<T>(), D, BH,
                                Sq * Sk, Sq * D, Sk * D);
          // dP = dO Vᵀ                      [Sq, Sk] = [Sq, D] · [Sk, D]ᵀ
          cuda::gemm_batched<T>(false, true, Sq, Sk, D, T(1), gc.data<T>(), D, vc.data<T>(), D, T(0), ds.data<T>(),
                                Sk, BH, Sq * D, Sk * D, Sq * Sk);
          // with dropout the gradient reaches P through the mask: dP ← Z ⊙ dP, in place
          if (drop.p > 0) cuda::attention_dropout_weights<T>(ds.data<T>(), ds.data<T>(), ds.numel(), drop);
          // dS = P ⊙ (dP − Σ_j dP ⊙ P), in place (hidden keys and empty rows: P = 0, so dS = 0);
          // with dropout Σ_j dP ⊙ P = dO_i · O_i, the Δ of kernels/attention.h
          cuda::softmax_backward<T>(pp, ds.data<T>(), ds.data<T>(), BH * Sq, Sk);
          // dQ = scale · dS K               [Sq, D] = [Sq, Sk] · [Sk, D]
          cuda::gemm_batched<T>(false, false, Sq, D, Sk, static_cast<T>(s), ds.data<T>(), Sk, kc.data<T>(), D, T(0),
                                dq.data<T>(), D, BH, Sq * Sk, Sk * D, Sq * D);
          // dK = scale · dSᵀ Q              [Sk, D] = [Sq, Sk]ᵀ · [Sq, D]
          cuda::gemm_batched<T>(true, false, Sk, D, Sq, static_cast<T>(s), ds.data<T>(), Sk, qc.data<T>(), D, T(0),
                                dk.data<T>(), D, BH, Sq * Sk, Sq * D, Sk * D);
        }
      });
    }
    return {dq.to(q_dtype), dk.to(k_dtype), dv.to(v_dtype)};
  });
}

// ---- CUDA, v2 (flash) ----
// The fused kernels of kernels/cuda/attention_flash.cu: out and lse from one kernel, the
// backward from Δ and two tile kernels; what is saved is out and lse, as on the CPU.

static Tensor attention_cuda_v2(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
                                bool causal, double s, const AttentionDropout& drop, DType result) {
  const int64_t B = q.size(0), H = q.size(1), Sq = q.size(2), D = q.size(3), Sk = k.size(2);
  const DType compute = compute_dtype(result);
  auto prepare = [compute](const Tensor& t) { return t.detach().to(compute).contiguous(); };
  Tensor qc = prepare(q), kc = prepare(k), vc = prepare(v);
  Tensor mc = key_mask.defined() ? key_mask.to(DType::u8).contiguous() : Tensor();
  const Device dev = q.device();
  // With no keys the output is zeros, and with no queries it is empty: nothing to compute,
  // forward or backward (the kernels need Sk >= 1; D >= 1 is the caller's check).
  const bool work = Sk > 0 && B * H * Sq > 0;
  auto buffer = [work, compute, dev](const Shape& shape) {  // by value: the backward keeps a copy
    return work ? empty(shape, {.dtype = compute, .device = dev}) : zeros(shape, {.dtype = compute, .device = dev});
  };
  Tensor out = buffer(q.shape());
  Tensor lse = work ? empty({B, H, Sq}, {.dtype = compute, .device = dev}) : Tensor();
  if (work) {
    visit_float(compute, kOp, [&]<class T>() {
      if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(dev.index);
        cuda::attention_flash_forward<T>(qc.data<T>(), kc.data<T>(), vc.data<T>(),
                                         mc.defined() ? mc.data<uint8_t>() : nullptr, out.data<T>(),
                                         lse.data<T>(), B, H, Sq, Sk, D, causal, static_cast<T>(s), drop);
      }
    });
  }
  // As on the CPU: a detached handle to out, since the returned tensor may be `out` itself
  // and must not own a closure that owns it.
  Tensor saved_out = out.detach();
  const DType q_dtype = q.dtype(), k_dtype = k.dtype(), v_dtype = v.dtype();
  return record_op(kOp, out.to(result), {q, k, v}, [=](const Tensor& g) -> Grads {
    Tensor gc = g.to(compute).contiguous();
    check_same_device(kOp, qc, gc);
    Tensor dq = buffer(qc.shape()), dk = buffer(kc.shape()), dv = buffer(vc.shape());
    if (work) {
      // The closure holds mc (not a pointer into it), so the mask lives as long as the graph.
      const uint8_t* mask = mc.defined() ? mc.data<uint8_t>() : nullptr;
      Tensor delta = empty({B, H, Sq}, {.dtype = compute, .device = dev});
      visit_float(compute, kOp, [&]<class T>() {
        if constexpr (kWithCuda) {
          cuda::DeviceGuard guard(dev.index);
          cuda::attention_flash_backward<T>(qc.data<T>(), kc.data<T>(), vc.data<T>(), mask, saved_out.data<T>(),
                                            gc.data<T>(), lse.data<T>(), delta.data<T>(), dq.data<T>(), dk.data<T>(),
                                            dv.data<T>(), B, H, Sq, Sk, D, causal, static_cast<T>(s), drop);
        }
      });
    }
    return {dq.to(q_dtype), dk.to(k_dtype), dv.to(v_dtype)};
  });
}

// ---- CUDA, v3 and v4 (flash on tensor cores) ----
// The kernels of kernels/cuda/attention_mma.cu on 16-bit inputs as they are: q, k, v, out and the
// gradients stay in the result dtype (bf16 or f16), lse and Δ are f32. Saved: out and lse. v4
// differs in the forward only (attention_short.cu, which runs v3's where Sk > 256); both write
// the same out and lse, and the backward is v3's for both.

static Tensor attention_cuda_mma(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
                                 bool causal, double s, const AttentionDropout& drop, DType result, int version) {
  const int64_t B = q.size(0), H = q.size(1), Sq = q.size(2), D = q.size(3), Sk = k.size(2);
  auto prepare = [result](const Tensor& t) { return t.detach().to(result).contiguous(); };
  Tensor qc = prepare(q), kc = prepare(k), vc = prepare(v);
  Tensor mc = key_mask.defined() ? key_mask.to(DType::u8).contiguous() : Tensor();
  const Device dev = q.device();
  const bool work = Sk > 0 && B * H * Sq > 0;
  auto buffer = [work, result, dev](const Shape& shape) {  // by value: the backward keeps a copy
    return work ? empty(shape, {.dtype = result, .device = dev}) : zeros(shape, {.dtype = result, .device = dev});
  };
  Tensor out = buffer(q.shape());
  Tensor lse = work ? empty({B, H, Sq}, {.dtype = DType::f32, .device = dev}) : Tensor();
  const float scale = static_cast<float>(s);
  // The kernels of one 16-bit type, called with `call(T{})`.
  auto visit_half = [result](auto call) {
    if constexpr (kWithCuda) {
      if (result == DType::bf16)
        call(bf16{});
      else
        call(f16{});
    }
  };
  if (work) {
    visit_half([&]<class T>(T) {
      cuda::DeviceGuard guard(dev.index);
      const uint8_t* mask = mc.defined() ? mc.data<uint8_t>() : nullptr;
      if (version == 4)
        cuda::attention_short_forward<T>(qc.data<T>(), kc.data<T>(), vc.data<T>(), mask, out.data<T>(),
                                         lse.data<float>(), B, H, Sq, Sk, D, causal, scale, drop);
      else
        cuda::attention_mma_forward<T>(qc.data<T>(), kc.data<T>(), vc.data<T>(), mask, out.data<T>(),
                                       lse.data<float>(), B, H, Sq, Sk, D, causal, scale, drop);
    });
  }
  Tensor saved_out = out.detach();
  const DType q_dtype = q.dtype(), k_dtype = k.dtype(), v_dtype = v.dtype();
  return record_op(kOp, out, {q, k, v}, [=](const Tensor& g) -> Grads {
    Tensor gc = g.to(result).contiguous();
    check_same_device(kOp, qc, gc);
    Tensor dq = buffer(qc.shape()), dk = buffer(kc.shape()), dv = buffer(vc.shape());
    if (work) {
      const uint8_t* mask = mc.defined() ? mc.data<uint8_t>() : nullptr;
      Tensor delta = empty({B, H, Sq}, {.dtype = DType::f32, .device = dev});
      visit_half([&]<class T>(T) {
        cuda::DeviceGuard guard(dev.index);
        cuda::attention_mma_backward<T>(qc.data<T>(), kc.data<T>(), vc.data<T>(), mask, saved_out.data<T>(),
                                        gc.data<T>(), lse.data<float>(), delta.data<float>(), dq.data<T>(),
                                        dk.data<T>(), dv.data<T>(), B, H, Sq, Sk, D, causal, scale, drop);
      });
    }
    return {dq.to(q_dtype), dk.to(k_dtype), dv.to(v_dtype)};
  });
}

// The version kernel_version("attention") names: v2 (the default) or v1 for any floating dtype,
// v3 and v4 for bf16/f16 only (an error otherwise: they have no f32 arithmetic to fall back on,
// and a silent switch would time or test another kernel than the one asked for). v2, v3 and v4
// go to v1 where their tiles do not (D > 128, or D = 0).
static void check_cuda_version(const Tensor& q, const Tensor& k, const Tensor& v, DType result) {
  const int version = kernel_version("attention");
  if (version != 3 && version != 4) return;
  MMG_CHECK(result == DType::bf16 || result == DType::f16,
            "{}: attention version {} (tensor cores) takes bf16 or f16 inputs, got q {} {}, k {} {}, v {} {} "
            "(computed as {}); versions 1 and 2 take f32 and f64",
            kOp, version, dtype_name(q.dtype()), shape_str(q.shape()), dtype_name(k.dtype()), shape_str(k.shape()),
            dtype_name(v.dtype()), shape_str(v.shape()), dtype_name(result));
}

static Tensor attention_cuda(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask, bool causal,
                             double s, const AttentionDropout& drop, DType result) {
  const int version = kernel_version("attention");
  if ((version == 3 || version == 4) && cuda::attention_flash_supports(q.size(3)))
    return attention_cuda_mma(q, k, v, key_mask, causal, s, drop, result, version);
  if (version == 2 && cuda::attention_flash_supports(q.size(3)))
    return attention_cuda_v2(q, k, v, key_mask, causal, s, drop, result);
  return attention_cuda_v1(q, k, v, key_mask, causal, s, drop, result);
}

// A CPU tensor [B,H,S,D] whose last dim is contiguous, as the kernel's strided rows.
template <class T>
static cpu::HeadRows<T> head_rows(const Tensor& t) {
  return {t.data<std::remove_const_t<T>>(), t.stride(0), t.stride(1), t.stride(2)};
}

// The dropout of one call: none for p = 0; otherwise n = B·H·Sq·Sk counters reserved from
// the generator (the default one when gen is null), as the dropout op reserves its own.
static AttentionDropout draw_dropout(double p, Generator* gen, int64_t n) {
  AttentionDropout drop;
  if (p == 0.0) return drop;
  Generator& g = gen ? *gen : default_generator();
  drop.p = static_cast<float>(p);
  drop.scale = 1.0 / (1.0 - p);
  drop.seed = g.seed();
  drop.base = g.reserve(static_cast<uint64_t>(n));
  return drop;
}

static void check_qkv(const char* name, const Tensor& t) {
  MMG_CHECK(t.defined(), "{}: {} is undefined", kOp, name);
  MMG_CHECK(is_floating(t.dtype()), "{}: {} needs a floating dtype, got {} {}", kOp, name, dtype_name(t.dtype()),
            shape_str(t.shape()));
  MMG_CHECK(t.dim() == 4, "{}: {} must be 4-D [B,H,S,D], got {}", kOp, name, shape_str(t.shape()));
}

// A [B,S] mask argument: bool or u8, that shape, on q's device. `meaning`: what true says.
static void check_mask(const char* name, const char* meaning, const Tensor& mask, int64_t B, int64_t S,
                       const char* dims, const Tensor& q, const Tensor& k) {
  MMG_CHECK(mask.dtype() == DType::boolean || mask.dtype() == DType::u8, "{}: {} must be bool (true = {}), got {} {}",
            kOp, name, meaning, dtype_name(mask.dtype()), shape_str(mask.shape()));
  MMG_CHECK(mask.shape() == Shape({B, S}), "{}: {} {} must be {} = [{},{}] for q {} and k {}", kOp, name,
            shape_str(mask.shape()), dims, B, S, shape_str(q.shape()), shape_str(k.shape()));
  check_same_device(kOp, q, mask);
}

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& key_mask,
                                    bool causal, std::optional<double> scale, double dropout_p, Generator* gen,
                                    const Tensor& query_mask) {
  MMG_PROFILE_OP("scaled_dot_product_attention");
  if (autocast_dtype() && (q.dtype() == DType::f32 || k.dtype() == DType::f32 || v.dtype() == DType::f32))
    return scaled_dot_product_attention(autocast_to_low(q), autocast_to_low(k), autocast_to_low(v), key_mask, causal,
                                        scale, dropout_p, gen, query_mask);
  check_qkv("q", q);
  check_qkv("k", k);
  check_qkv("v", v);
  check_same_device(kOp, q, k);
  check_same_device(kOp, q, v);
  const int64_t B = q.size(0), H = q.size(1), Sq = q.size(2), D = q.size(3), Sk = k.size(2);
  MMG_CHECK(k.size(0) == B && k.size(1) == H && k.size(3) == D,
            "{}: q {} and k {} differ in batch, heads or head dim (expected k [{},{},Sk,{}])", kOp,
            shape_str(q.shape()), shape_str(k.shape()), B, H, D);
  MMG_CHECK(v.shape() == k.shape(), "{}: v {} must have k's shape {}", kOp, shape_str(v.shape()),
            shape_str(k.shape()));
  if (key_mask.defined()) check_mask("key_mask", "attend", key_mask, B, Sk, "[B,Sk]", q, k);
  if (query_mask.defined()) check_mask("query_mask", "a query", query_mask, B, Sq, "[B,Sq]", q, k);
  const double s = scale.value_or(D > 0 ? 1.0 / std::sqrt(static_cast<double>(D)) : 1.0);
  MMG_CHECK(std::isfinite(s), "{}: scale must be finite, got {}", kOp, s);
  MMG_CHECK(dropout_p >= 0.0 && dropout_p < 1.0, "{}: dropout_p must be in [0, 1), got {} (q {})", kOp, dropout_p,
            shape_str(q.shape()));

  const DType result = promote_types(promote_types(q.dtype(), k.dtype()), v.dtype());
  const bool cuda = on_cuda(kOp, q);  // before the draw: a refused call reserves nothing
  if (cuda) check_cuda_version(q, k, v, result);
  const AttentionDropout drop = draw_dropout(dropout_p, gen, B * H * Sq * Sk);
  if (cuda) {
    Tensor out = attention_cuda(q, k, v, key_mask, causal, s, drop, result);
    if (!query_mask.defined()) return out;
    // Masked queries: zero rows, through `where`, whose backward zeroes their gradient too.
    Tensor keep = query_mask.to(DType::boolean).view({B, 1, Sq, 1});
    return where(keep, out, scalar_like(out, 0.0));
  }
  const DType compute = compute_dtype(result);
  // The CPU kernel reads any layout whose rows of D values are contiguous (cpu::HeadRows), so
  // the heads nn::MultiHeadAttention makes by permuting a [B, S, H·D] projection come in as
  // they are, and the output and the gradients go out in that layout too, as permuted views
  // of [B, S, H, D] buffers: merging the heads back is then a view, not a copy.
  auto prepare = [compute](const Tensor& t) {
    Tensor c = t.detach().to(compute);
    return c.stride(3) == 1 ? c : c.contiguous();
  };
  auto heads_buffer = [compute](int64_t B, int64_t H, int64_t S, int64_t D) {
    return empty({B, S, H, D}, {.dtype = compute}).permute({0, 2, 1, 3});  // [B,H,S,D], heads interleaved
  };
  Tensor qc = prepare(q), kc = prepare(k), vc = prepare(v);
  // The kernel reads the masks as bytes, nonzero = attend.
  Tensor mc = key_mask.defined() ? key_mask.to(DType::u8).contiguous() : Tensor();
  Tensor mq = query_mask.defined() ? query_mask.to(DType::u8).contiguous() : Tensor();
  Tensor out = heads_buffer(B, H, Sq, D);
  Tensor lse = empty({B, H, Sq}, {.dtype = compute});
  // The weights P kept for the backward where the kernel's path keeps them (short sequences,
  // narrow heads: kernels/attention.h) and they are small; with no gradient to come, never.
  const bool grad = grad_mode_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  const int64_t saved_size = grad ? cpu::cpu_attention_saved_weights(B, H, Sq, Sk, D) : 0;
  Tensor weights = saved_size > 0 && saved_size <= kMaxSavedWeights ? empty({saved_size}, {.dtype = compute}) : Tensor();
  visit_float(compute, kOp, [&]<class T>() {
    cpu::attention_forward<T>(head_rows<const T>(qc), head_rows<const T>(kc), head_rows<const T>(vc),
                              mc.defined() ? mc.data<uint8_t>() : nullptr, mq.defined() ? mq.data<uint8_t>() : nullptr,
                              head_rows<T>(out), lse.data<T>(), B, H,
                              Sq, Sk, D, causal, static_cast<T>(s), drop, cpu::CpuAttentionPath::by_size,
                              weights.defined() ? weights.data<T>() : nullptr);
  });
  Tensor result_out = out.to(result);

  // Backward: one kernel call gives dq, dk and dv together. It needs the forward's output;
  // it holds a detached handle, since result_out may be `out` itself and must not own a
  // closure that owns it.
  Tensor saved_out = out.detach();
  const DType q_dtype = q.dtype(), k_dtype = k.dtype(), v_dtype = v.dtype();
  return record_op(kOp, result_out, {q, k, v}, [=](const Tensor& g) -> Grads {
    Tensor gc = prepare(g);
    Tensor dq = heads_buffer(B, H, Sq, D), dk = heads_buffer(B, H, Sk, D), dv = heads_buffer(B, H, Sk, D);
    visit_float(compute, kOp, [&]<class T>() {
      cpu::attention_backward<T>(head_rows<const T>(qc), head_rows<const T>(kc), head_rows<const T>(vc),
                                 mc.defined() ? mc.data<uint8_t>() : nullptr,
                                 mq.defined() ? mq.data<uint8_t>() : nullptr, head_rows<const T>(saved_out),
                                 head_rows<const T>(gc), lse.data<T>(), head_rows<T>(dq), head_rows<T>(dk),
                                 head_rows<T>(dv), B, H, Sq, Sk, D, causal, static_cast<T>(s), drop,
                                 cpu::CpuAttentionPath::by_size, weights.defined() ? weights.data<T>() : nullptr);
    });
    return {dq.to(q_dtype), dk.to(k_dtype), dv.to(v_dtype)};
  });
}

}  // namespace mmg
