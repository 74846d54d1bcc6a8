// Losses: cross_entropy, clip_loss (symmetric InfoNCE) and hinge_ranking_loss.
//
// Each is a fused op: its forward runs one kernel (kernels/losses.h, where the math and its
// derivation are written out), saves what the backward kernel needs, and its backward,
// right below, calls that kernel. cross_entropy also runs on CUDA (kernels/losses.h).
// clip_loss and hinge_ranking_loss have two CUDA versions (core/kernel_versions.h): v1 is
// composed of CUDA ops (matmul, cross_entropy, relu, ...; see below), the same math with the
// N×N scores stored; v2, the default, runs the fused tiled kernels of
// kernels/cuda/contrastive.h, O(N·d) memory. bf16/f16 inputs are computed in f32; the loss
// and the gradients come back in the inputs' dtypes. clip_loss has a version 3 (opt-in): the
// same tiles on tensor cores for bf16/f16 embeddings (kernels/cuda/contrastive_mma.cu).
#include "core/autocast.h"
#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/kernel_versions.h"
#include "core/ops.h"
#include "core/ops/elementwise_impl.h"
#include "core/profile.h"
#include "kernels/cuda/contrastive.h"
#include "kernels/losses.h"

namespace mmg {

// A floating tensor of the compute dtype, contiguous, cut from the graph: what a kernel reads.
static Tensor kernel_input(const Tensor& x) { return x.detach().to(compute_dtype(x.dtype())).contiguous(); }

// The incoming gradient of a scalar loss as a number (g is a one-element tensor).
static double scalar_grad(const Tensor& g) { return g.item(); }

// ---- cross_entropy ----
// On CUDA: a row kernel writes lse and each row's loss, the mean over the rows not ignored
// is a sum op (deterministic), and the backward kernel reads the incoming gradient from
// device memory. n, the number of rows not ignored, is counted on the host from the
// targets the op has already checked there.
static Tensor cross_entropy_cuda(const Tensor& logits, const Tensor& x, const Tensor& t, const int64_t* host_target,
                                 int64_t ignore_index, double label_smoothing) {
  const int64_t N = x.size(0), C = x.size(1);
  int64_t n = 0;
  for (int64_t i = 0; i < N; ++i) n += host_target[i] != ignore_index;
  Tensor lse = empty({N}, {.dtype = x.dtype(), .device = x.device()});
  Tensor row_loss = empty({N}, {.dtype = DType::f64, .device = x.device()});
  visit_float(x.dtype(), "cross_entropy", [&]<class T>() {
    if constexpr (kWithCuda) {
      cuda::DeviceGuard guard(x.device().index);
      cuda::cross_entropy_rows<T>(x.data<T>(), t.data<int64_t>(), N, C, ignore_index, static_cast<T>(label_smoothing),
                                  lse.data<T>(), row_loss.data<double>());
    }
  });
  // All rows ignored: 0, not 0/0 (kernels/losses.h says why).
  Tensor loss = n > 0 ? (sum(row_loss) * (1.0 / static_cast<double>(n))).to(x.dtype())
                      : zeros({}, {.dtype = x.dtype(), .device = x.device()});
  const DType dtype = logits.dtype();
  return record_op("cross_entropy", loss.to(dtype), {logits},
                   [x, t, lse, n, ignore_index, label_smoothing, dtype](const Tensor& g) -> Grads {
                     const int64_t N = x.size(0), C = x.size(1);
                     Tensor gc = g.to(x.dtype()).contiguous();
                     check_same_device("cross_entropy", x, gc);
                     Tensor dx = empty(x.shape(), {.dtype = x.dtype(), .device = x.device()});
                     visit_float(x.dtype(), "cross_entropy backward", [&]<class T>() {
                       if constexpr (kWithCuda) {
                         cuda::DeviceGuard guard(x.device().index);
                         cuda::cross_entropy_backward<T>(x.data<T>(), t.data<int64_t>(), lse.data<T>(), N, C,
                                                         ignore_index, static_cast<T>(label_smoothing), gc.data<T>(),
                                                         n, dx.data<T>());
                       }
                     });
                     return {dx.to(dtype)};
                   });
}

// logits [N,C], target [N] (i64 or i32): mean over the rows whose target != ignore_index of
// −Σ_c q_c log softmax(x)_c, q = (1−ε)·onehot + ε/C. Every row ignored gives 0 (not NaN).
Tensor cross_entropy(const Tensor& logits_in, const Tensor& target, int64_t ignore_index, double label_smoothing) {
  MMG_PROFILE_OP("cross_entropy");
  MMG_CHECK(logits_in.defined() && target.defined(), "cross_entropy: undefined tensor argument");
  const Tensor logits = autocast_to_f32(logits_in);
  check_same_device("cross_entropy", logits, target);
  MMG_CHECK(is_floating(logits.dtype()), "cross_entropy: logits must be floating, got {} {}",
            dtype_name(logits.dtype()), shape_str(logits.shape()));
  MMG_CHECK(logits.dim() == 2, "cross_entropy: logits must be [N,C], got {}", shape_str(logits.shape()));
  MMG_CHECK(target.dtype() == DType::i64 || target.dtype() == DType::i32,
            "cross_entropy: target must be i64 or i32 class indices, got {} {}", dtype_name(target.dtype()),
            shape_str(target.shape()));
  const int64_t N = logits.size(0), C = logits.size(1);
  MMG_CHECK(target.dim() == 1 && target.size(0) == N, "cross_entropy: logits {} need target [{}], got {}",
            shape_str(logits.shape()), N, shape_str(target.shape()));
  MMG_CHECK(C >= 1, "cross_entropy: logits {} have no classes", shape_str(logits.shape()));
  MMG_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0, "cross_entropy: label_smoothing {} is outside [0, 1]",
            label_smoothing);
  Tensor t = target.to(DType::i64).contiguous();
  // The targets are checked on the host: for CUDA logits that copies N indices to it (and
  // waits for them), the price of an error that names the bad row instead of a kernel fault.
  Tensor t_host = t.to(Device::cpu());
  const int64_t* pt = t_host.data<int64_t>();
  for (int64_t i = 0; i < N; ++i)
    MMG_CHECK(pt[i] == ignore_index || (pt[i] >= 0 && pt[i] < C),
              "cross_entropy: target {} at row {} is out of range for {} classes (ignore_index {})", pt[i], i, C,
              ignore_index);

  Tensor x = kernel_input(logits);
  if (on_cuda("cross_entropy", x)) return cross_entropy_cuda(logits, x, t, pt, ignore_index, label_smoothing);
  Tensor loss = empty({}, {.dtype = x.dtype(), .device = x.device()});
  Tensor lse = empty({N}, {.dtype = x.dtype(), .device = x.device()});
  visit_float(x.dtype(), "cross_entropy", [&]<class T>() {
    int64_t count = 0;
    cpu::cross_entropy_forward<T>(x.data<T>(), pt, N, C, ignore_index, static_cast<T>(label_smoothing),
                                  loss.data<T>(), lse.data<T>(), &count);
  });
  const DType dtype = logits.dtype();
  return record_op("cross_entropy", loss.to(dtype), {logits},
                   [x, t, lse, ignore_index, label_smoothing, dtype](const Tensor& g) -> Grads {
                     const int64_t N = x.size(0), C = x.size(1);
                     Tensor dx = empty(x.shape(), {.dtype = x.dtype(), .device = x.device()});
                     visit_float(x.dtype(), "cross_entropy backward", [&]<class T>() {
                       cpu::cross_entropy_backward<T>(x.data<T>(), t.data<int64_t>(), lse.data<T>(), N, C,
                                                      ignore_index, static_cast<T>(label_smoothing),
                                                      static_cast<T>(scalar_grad(g)), dx.data<T>());
                     });
                     return {dx.to(dtype)};
                   });
}

// Checks shared by the two image–text losses: img and txt [N,d] of one floating dtype, N >= 1.
static void check_pair_embeddings(const char* op, const Tensor& img, const Tensor& txt) {
  MMG_CHECK(img.defined() && txt.defined(), "{}: undefined tensor argument", op);
  check_same_device(op, img, txt);
  MMG_CHECK(img.dim() == 2 && txt.dim() == 2 && img.shape() == txt.shape(),
            "{}: image {} and text {} embeddings must both be [N,d]", op, shape_str(img.shape()),
            shape_str(txt.shape()));
  MMG_CHECK(is_floating(img.dtype()) && img.dtype() == txt.dtype(),
            "{}: image and text embeddings need one floating dtype, got {} and {}", op, dtype_name(img.dtype()),
            dtype_name(txt.dtype()));
  MMG_CHECK(img.size(0) >= 1, "{}: needs at least one pair, got {}", op, shape_str(img.shape()));
}

// ---- on CUDA, version 1: the two image–text losses composed of ops ----
// The formulas of kernels/losses.h written with ops that run on CUDA; autograd gives the
// backward (through matmul, cross_entropy, relu and masked_fill). Unlike the CPU kernels
// they store the N×N scores, O(N²) memory: fine for contrastive batches of a few thousand.
// Kept as the reference the fused version 2 (below) is measured against.

// loss = ½ CE(L, arange) + ½ CE(Lᵀ, arange),  L = exp(t)·u·vᵀ.
static Tensor clip_loss_composed(const Tensor& image_emb, const Tensor& text_emb, const Tensor& logit_scale) {
  const DType emb = image_emb.dtype(), cd = compute_dtype(emb);
  Tensor u = image_emb.to(cd), v = text_emb.to(cd);
  const int64_t N = u.size(0);
  Tensor scale = exp(reshape(logit_scale.to(cd), Shape{}));  // s = e^t, a 0-d tensor
  Tensor logits = mul(matmul(u, transpose(v, 0, 1)), scale);
  Tensor target = arange(N, {.dtype = DType::i64, .device = u.device()});
  Tensor loss = (cross_entropy(logits, target) + cross_entropy(transpose(logits, 0, 1), target)) * 0.5;
  return loss.to(emb);
}

// loss = (1/N) Σ_i Σ_{j≠i} [m − S_ii + S_ij]₊ + [m − S_jj + S_ij]₊,  S = u·vᵀ (the CPU
// kernel's two hinges of each off-diagonal S_ij); relu's subgradient is 0 at the kink.
static Tensor hinge_ranking_loss_composed(const Tensor& image_emb, const Tensor& text_emb, double margin) {
  const DType emb = image_emb.dtype(), cd = compute_dtype(emb);
  Tensor u = image_emb.to(cd), v = text_emb.to(cd);
  const int64_t N = u.size(0);
  Tensor scores = matmul(u, transpose(v, 0, 1));
  Tensor diag = sum(mul(u, v), {1});  // S_ii = ⟨u_i, v_i⟩
  Tensor image_side = relu((margin - unsqueeze(diag, 1)) + scores);  // text j against image i's match
  Tensor text_side = relu((margin - unsqueeze(diag, 0)) + scores);   // image i against text j's match
  Tensor ids = arange(N, {.dtype = DType::i64, .device = u.device()});
  Tensor diagonal = eq(unsqueeze(ids, 1), unsqueeze(ids, 0));  // j = i: no hinge
  Tensor loss = sum(masked_fill(image_side + text_side, diagonal, 0.0)) * (1.0 / static_cast<double>(N));
  return loss.to(emb);
}

// ---- on CUDA, version 2: the fused kernels of kernels/cuda/contrastive.h ----
// What the CPU op saves, the CUDA op saves: the inputs in the compute dtype, the row and
// column lse (O(N)), the log scale. The log scale and the incoming gradient stay on the
// device as one-element tensors that the kernels read, so the host never waits for them.

static Tensor clip_loss_fused_cuda(const Tensor& image_emb, const Tensor& text_emb, const Tensor& logit_scale) {
  Tensor u = kernel_input(image_emb), v = kernel_input(text_emb);
  Tensor t = logit_scale.detach().to(u.dtype()).contiguous();  // t, in the compute dtype
  const int64_t N = u.size(0), d = u.size(1);
  const TensorOptions on_device{.dtype = u.dtype(), .device = u.device()};
  Tensor loss = empty({}, on_device);
  Tensor row_lse = empty({N}, on_device), col_lse = empty({N}, on_device), work = empty({N}, on_device);
  visit_float(u.dtype(), "clip_loss", [&]<class T>() {
    if constexpr (kWithCuda) {
      cuda::DeviceGuard guard(u.device().index);
      cuda::clip_loss_forward<T>(u.data<T>(), v.data<T>(), N, d, t.data<T>(), loss.data<T>(), row_lse.data<T>(),
                                 col_lse.data<T>(), work.data<T>());
    }
  });
  const DType emb_dtype = image_emb.dtype(), scale_dtype = logit_scale.dtype();
  const Shape scale_shape = logit_scale.shape();
  return record_op(
      "clip_loss", loss.to(emb_dtype), {image_emb, text_emb, logit_scale},
      [u, v, t, row_lse, col_lse, emb_dtype, scale_dtype, scale_shape](const Tensor& g) -> Grads {
        const int64_t N = u.size(0), d = u.size(1);
        Tensor gc = g.to(u.dtype()).contiguous();
        check_same_device("clip_loss", u, gc);
        const TensorOptions on_device{.dtype = u.dtype(), .device = u.device()};
        Tensor du = empty(u.shape(), on_device), dv = empty(v.shape(), on_device), dt = empty({1}, on_device);
        Tensor work = empty({N}, {.dtype = DType::f64, .device = u.device()});
        visit_float(u.dtype(), "clip_loss backward", [&]<class T>() {
          if constexpr (kWithCuda) {
            cuda::DeviceGuard guard(u.device().index);
            cuda::clip_loss_backward<T>(u.data<T>(), v.data<T>(), N, d, t.data<T>(), row_lse.data<T>(),
                                        col_lse.data<T>(), gc.data<T>(), du.data<T>(), dv.data<T>(), dt.data<T>(),
                                        work.data<double>());
          }
        });
        return {du.to(emb_dtype), dv.to(emb_dtype), reshape(dt, scale_shape).to(scale_dtype)};
      });
}

static Tensor hinge_ranking_loss_fused_cuda(const Tensor& image_emb, const Tensor& text_emb, double margin) {
  Tensor u = kernel_input(image_emb), v = kernel_input(text_emb);
  const int64_t N = u.size(0), d = u.size(1);
  const TensorOptions on_device{.dtype = u.dtype(), .device = u.device()};
  Tensor loss = empty({}, on_device), diag = empty({N}, on_device);
  Tensor row_work = empty({N}, {.dtype = DType::f64, .device = u.device()});
  visit_float(u.dtype(), "hinge_ranking_loss", [&]<class T>() {
    if constexpr (kWithCuda) {
      cuda::DeviceGuard guard(u.device().index);
      cuda::hinge_ranking_loss_forward<T>(u.data<T>(), v.data<T>(), N, d, static_cast<T>(margin), loss.data<T>(),
                                          diag.data<T>(), row_work.data<double>());
    }
  });
  const DType dtype = image_emb.dtype();
  return record_op("hinge_ranking_loss", loss.to(dtype), {image_emb, text_emb},
                   [u, v, margin, dtype](const Tensor& g) -> Grads {
                     const int64_t N = u.size(0), d = u.size(1);
                     Tensor gc = g.to(u.dtype()).contiguous();
                     check_same_device("hinge_ranking_loss", u, gc);
                     const TensorOptions on_device{.dtype = u.dtype(), .device = u.device()};
                     Tensor du = empty(u.shape(), on_device), dv = empty(v.shape(), on_device);
                     Tensor diag = empty({N}, on_device);
                     Tensor counts = empty({2 * N}, {.dtype = DType::f64, .device = u.device()});
                     visit_float(u.dtype(), "hinge_ranking_loss backward", [&]<class T>() {
                       if constexpr (kWithCuda) {
                         cuda::DeviceGuard guard(u.device().index);
                         cuda::hinge_ranking_loss_backward<T>(u.data<T>(), v.data<T>(), N, d, static_cast<T>(margin),
                                                              gc.data<T>(), du.data<T>(), dv.data<T>(),
                                                              diag.data<T>(), counts.data<double>());
                       }
                     });
                     return {du.to(dtype), dv.to(dtype)};
                   });
}

// ---- on CUDA, version 3: clip_loss on tensor cores (kernels/cuda/contrastive_mma.cu) ----
// The embeddings stay in their 16-bit dtype (bf16 or f16) and the products run on mma.sync with
// f32 accumulation; the log scale, the incoming gradient, the lse, the loss and d t are f32.
// Saved: the inputs as they are, r and c (O(N)), t. Version 3 takes bf16/f16 only: it has no
// f32 arithmetic to fall back on, and a silent switch would time or test another kernel.

static Tensor clip_loss_mma_cuda(const Tensor& image_emb, const Tensor& text_emb, const Tensor& logit_scale) {
  const DType emb_dtype = image_emb.dtype();
  MMG_CHECK(emb_dtype == DType::bf16 || emb_dtype == DType::f16,
            "clip_loss: version 3 (tensor cores) takes bf16 or f16 embeddings, got image {} {} and text {} {}; "
            "versions 1 and 2 take f32 and f64",
            dtype_name(image_emb.dtype()), shape_str(image_emb.shape()), dtype_name(text_emb.dtype()),
            shape_str(text_emb.shape()));
  Tensor u = image_emb.detach().contiguous(), v = text_emb.detach().contiguous();
  Tensor t = logit_scale.detach().to(DType::f32).contiguous();
  const int64_t N = u.size(0), d = u.size(1);
  const TensorOptions f32_on_device{.dtype = DType::f32, .device = u.device()};
  Tensor loss = empty({}, f32_on_device);
  Tensor row_lse = empty({N}, f32_on_device), col_lse = empty({N}, f32_on_device), diag = empty({N}, f32_on_device);
  // The kernels of one 16-bit type, called with `call(T{})`.
  auto visit_half = [emb_dtype](auto call) {
    if constexpr (kWithCuda) {
      if (emb_dtype == DType::bf16)
        call(bf16{});
      else
        call(f16{});
    }
  };
  visit_half([&]<class T>(T) {
    cuda::DeviceGuard guard(u.device().index);
    cuda::clip_loss_mma_forward<T>(u.data<T>(), v.data<T>(), N, d, t.data<float>(), loss.data<float>(),
                                   row_lse.data<float>(), col_lse.data<float>(), diag.data<float>());
  });
  const DType scale_dtype = logit_scale.dtype();
  const Shape scale_shape = logit_scale.shape();
  return record_op(
      "clip_loss", loss.to(emb_dtype), {image_emb, text_emb, logit_scale},
      [u, v, t, row_lse, col_lse, emb_dtype, scale_dtype, scale_shape, visit_half](const Tensor& g) -> Grads {
        const int64_t N = u.size(0), d = u.size(1);
        Tensor gc = g.to(DType::f32).contiguous();
        check_same_device("clip_loss", u, gc);
        const TensorOptions f32_on_device{.dtype = DType::f32, .device = u.device()};
        Tensor du = empty(u.shape(), {.dtype = emb_dtype, .device = u.device()});
        Tensor dv = empty(v.shape(), {.dtype = emb_dtype, .device = u.device()});
        Tensor dt = empty({1}, f32_on_device), partial = empty({N, d}, f32_on_device);
        Tensor dt_rows = empty({N}, {.dtype = DType::f64, .device = u.device()});
        visit_half([&]<class T>(T) {
          cuda::DeviceGuard guard(u.device().index);
          cuda::clip_loss_mma_backward<T>(u.data<T>(), v.data<T>(), N, d, t.data<float>(), row_lse.data<float>(),
                                          col_lse.data<float>(), gc.data<float>(), du.data<T>(), dv.data<T>(),
                                          dt.data<float>(), partial.data<float>(), dt_rows.data<double>());
        });
        return {du, dv, reshape(dt, scale_shape).to(scale_dtype)};
      });
}

// ---- clip_loss ----
// loss = ½ CE(L, arange) + ½ CE(Lᵀ, arange), L = exp(t)·img·txtᵀ; the N×N logits are never
// stored, only the row and column log-sum-exps (O(N) saved for backward).
Tensor clip_loss(const Tensor& image_emb, const Tensor& text_emb, const Tensor& logit_scale) {
  MMG_PROFILE_OP("clip_loss");
  if (autocast_dtype() && any_16bit({image_emb, text_emb, logit_scale}))
    return clip_loss(autocast_to_f32(image_emb), autocast_to_f32(text_emb), autocast_to_f32(logit_scale));
  check_pair_embeddings("clip_loss", image_emb, text_emb);
  MMG_CHECK(logit_scale.defined(), "clip_loss: undefined logit_scale");
  check_same_device("clip_loss", image_emb, logit_scale);
  MMG_CHECK(is_floating(logit_scale.dtype()) && logit_scale.numel() == 1 && logit_scale.dim() <= 1,
            "clip_loss: logit_scale must be one floating number (0-d or [1]), got {} {}",
            dtype_name(logit_scale.dtype()), shape_str(logit_scale.shape()));
  if (on_cuda("clip_loss", image_emb)) {
    const int version = kernel_version("clip_loss");
    if (version == 3) return clip_loss_mma_cuda(image_emb, text_emb, logit_scale);
    return version == 1 ? clip_loss_composed(image_emb, text_emb, logit_scale)
                        : clip_loss_fused_cuda(image_emb, text_emb, logit_scale);
  }
  Tensor u = kernel_input(image_emb), v = kernel_input(text_emb);
  const int64_t N = u.size(0), d = u.size(1);
  const double t = logit_scale.item();
  Tensor loss = empty({}, {.dtype = u.dtype(), .device = u.device()});
  Tensor row_lse = empty({N}, {.dtype = u.dtype(), .device = u.device()});
  Tensor col_lse = empty({N}, {.dtype = u.dtype(), .device = u.device()});
  visit_float(u.dtype(), "clip_loss", [&]<class T>() {
    cpu::clip_loss_forward<T>(u.data<T>(), v.data<T>(), N, d, static_cast<T>(t), loss.data<T>(), row_lse.data<T>(),
                              col_lse.data<T>());
  });
  const DType emb_dtype = image_emb.dtype(), scale_dtype = logit_scale.dtype();
  const Shape scale_shape = logit_scale.shape();
  return record_op(
      "clip_loss", loss.to(emb_dtype), {image_emb, text_emb, logit_scale},
      [u, v, t, row_lse, col_lse, emb_dtype, scale_dtype, scale_shape](const Tensor& g) -> Grads {
        const int64_t N = u.size(0), d = u.size(1);
        Tensor du = empty(u.shape(), {.dtype = u.dtype(), .device = u.device()});
        Tensor dv = empty(v.shape(), {.dtype = u.dtype(), .device = u.device()});
        double dt = 0;
        visit_float(u.dtype(), "clip_loss backward", [&]<class T>() {
          T dt_t = T(0);
          cpu::clip_loss_backward<T>(u.data<T>(), v.data<T>(), N, d, static_cast<T>(t), row_lse.data<T>(),
                                     col_lse.data<T>(), static_cast<T>(scalar_grad(g)), du.data<T>(), dv.data<T>(),
                                     &dt_t);
          dt = dt_t;
        });
        Tensor dscale = full(scale_shape, dt, {.dtype = scale_dtype, .device = u.device()});
        return {du.to(emb_dtype), dv.to(emb_dtype), dscale};
      });
}

// ---- hinge_ranking_loss ----
// (1/N)·Σ_i Σ_{j≠i} [m − s_ii + s_ij]₊ + [m − s_ii + s_ji]₊ with s = img·txtᵀ; subgradient
// 0 at the kinks.
Tensor hinge_ranking_loss(const Tensor& image_emb, const Tensor& text_emb, double margin) {
  MMG_PROFILE_OP("hinge_ranking_loss");
  if (autocast_dtype() && any_16bit({image_emb, text_emb}))
    return hinge_ranking_loss(autocast_to_f32(image_emb), autocast_to_f32(text_emb), margin);
  check_pair_embeddings("hinge_ranking_loss", image_emb, text_emb);
  if (on_cuda("hinge_ranking_loss", image_emb))
    return kernel_version("hinge_ranking_loss") == 1 ? hinge_ranking_loss_composed(image_emb, text_emb, margin)
                                                     : hinge_ranking_loss_fused_cuda(image_emb, text_emb, margin);
  Tensor u = kernel_input(image_emb), v = kernel_input(text_emb);
  const int64_t N = u.size(0), d = u.size(1);
  Tensor loss = empty({}, {.dtype = u.dtype(), .device = u.device()});
  visit_float(u.dtype(), "hinge_ranking_loss", [&]<class T>() {
    cpu::hinge_ranking_loss_forward<T>(u.data<T>(), v.data<T>(), N, d, static_cast<T>(margin), loss.data<T>());
  });
  const DType dtype = image_emb.dtype();
  return record_op("hinge_ranking_loss", loss.to(dtype), {image_emb, text_emb},
                   [u, v, margin, dtype](const Tensor& g) -> Grads {
                     const int64_t N = u.size(0), d = u.size(1);
                     Tensor du = empty(u.shape(), {.dtype = u.dtype(), .device = u.device()});
                     Tensor dv = empty(v.shape(), {.dtype = u.dtype(), .device = u.device()});
                     visit_float(u.dtype(), "hinge_ranking_loss backward", [&]<class T>() {
                       cpu::hinge_ranking_loss_backward<T>(u.data<T>(), v.data<T>(), N, d, static_cast<T>(margin),
                                                           static_cast<T>(scalar_grad(g)), du.data<T>(),
                                                           dv.data<T>());
                     });
                     return {du.to(dtype), dv.to(dtype)};
                   });
}

}  // namespace mmg
