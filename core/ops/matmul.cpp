// Matrix products: matmul (NumPy / PyTorch semantics) and linear (x·Wᵀ + b).
//
// Both run on the gemm kernel (kernels/gemm.h) without copying their inputs where the
// layout allows: a transposed view becomes the kernel's trans flag, a broadcast batch
// becomes a batch stride of 0, and a batch of rows times one matrix becomes a single tall
// product. Their backward is written with matmul itself, so it runs on any device:
//   C = A·B   ⇒   ∂L/∂A = ∂L/∂C · Bᵀ,   ∂L/∂B = Aᵀ · ∂L/∂C
// summed over the batch dims that broadcasting expanded.
//
// bf16/f16 operands: on CUDA the gemm takes them as they are (tensor cores, f32
// accumulation); on the CPU they are widened to f32 and the f32 result rounded back. Either
// way the product accumulates in f32 and is rounded once. Under autocast (core/autocast.h)
// f32 operands are cast to the low dtype first.
#include <algorithm>
#include <optional>
#include <string>

#include "core/autocast.h"
#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/kernel_versions.h"
#include "core/ops.h"
#include "core/ops/elementwise_impl.h"
#include "core/profile.h"
#include "kernels/cuda/runtime.h"
#include "kernels/gemm.h"

namespace mmg {

// "[2,3] @ [4,5]", the prefix of every matmul error.
static std::string pair_str(const Tensor& a, const Tensor& b) {
  return shape_str(a.shape()) + " @ " + shape_str(b.shape());
}

// How one operand looks to gemm_batched: batch entry i is the matrix at data + i·batch_stride,
// stored row-major with leading dimension ld, transposed if trans.
struct GemmOperand {
  Tensor keep;  // owns the memory (x itself, or a contiguous copy)
  bool trans = false;
  int64_t ld = 1;
  int64_t batch_stride = 0;
};

// The single stride that walks the (flattened) batch dims of x in order, if one exists:
// every size-1 dim is free, the rest must nest like a row-major array (or all be 0, a
// fully broadcast operand).
static std::optional<int64_t> flat_batch_stride(const Tensor& x, int64_t batch_dims) {
  std::optional<int64_t> stride;
  int64_t expected = 0;  // the stride the next (outer) dim needs
  for (int64_t d = batch_dims - 1; d >= 0; --d) {
    if (x.size(d) == 1) continue;
    if (!stride) {
      stride = x.stride(d);
    } else if (x.stride(d) != expected) {
      return std::nullopt;
    }
    expected = x.stride(d) * x.size(d);
  }
  return stride.value_or(0);
}

// x [..., R, C] (already of the compute dtype) expanded to batch + [R, C], described for gemm.
// Falls back to a contiguous copy only when no (trans, ld, batch stride) can describe it:
// a matrix with neither unit row nor unit column stride, or a batch broadcast in one dim
// but not another ([B1,1,R,C] against [1,B2,C,N]).
static GemmOperand gemm_operand(const Tensor& x, const Shape& batch) {
  Shape full = batch;
  const int64_t R = x.size(-2), C = x.size(-1);
  full.push_back(R);
  full.push_back(C);
  Tensor e = expand(x, full);
  const int64_t nb = static_cast<int64_t>(batch.size());
  const int64_t sr = e.stride(-2), sc = e.stride(-1);
  auto stride = flat_batch_stride(e, nb);
  if (stride) {
    if ((C == 1 || sc == 1) && (R == 1 || sr >= C)) return {e, false, R == 1 ? std::max<int64_t>(C, 1) : sr, *stride};
    if ((R == 1 || sr == 1) && (C == 1 || sc >= R)) return {e, true, C == 1 ? std::max<int64_t>(R, 1) : sc, *stride};
  }
  Tensor c = e.contiguous();
  return {c, false, std::max<int64_t>(C, 1), R * C};
}

// The dtype the gemm runs in for operands of dtype t on `device`: the 16-bit types natively
// on CUDA, through f32 on the CPU (whose kernels are written for f32 and f64).
static DType gemm_dtype(DType t, const Device& device) { return device.is_cuda() ? t : compute_dtype(t); }

// Calls f.template operator()<T>() for the C++ type of a gemm dtype.
template <class F>
static void visit_gemm(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::bf16: return f.template operator()<bf16>();
    case DType::f16: return f.template operator()<f16>();
    default: return visit_float(t, op, std::forward<F>(f));
  }
}

template <class T>
inline constexpr bool kIsHalf = std::is_same_v<T, bf16> || std::is_same_v<T, f16>;

// The product of a [..., M, K] and b [..., K, N] (both at least 2-D, same compute dtype,
// already checked): a new contiguous [batch..., M, N] tensor, batch = the broadcast batch dims.
static Tensor batched_product(const Tensor& a, const Tensor& b, const Shape& batch) {
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  Tensor out = empty(out_shape, {.dtype = a.dtype(), .device = a.device()});
  const int64_t count = numel_of(batch);
  if (out.numel() == 0) return out;
  GemmOperand A = gemm_operand(a, batch), B = gemm_operand(b, batch);
  const bool cuda = on_cuda("matmul", out);
  visit_gemm(a.dtype(), "matmul", [&]<class T>() {
    const T* pa = static_cast<const T*>(A.keep.data_ptr());
    const T* pb = static_cast<const T*>(B.keep.data_ptr());
    T* pc = out.data<T>();
    // A batch of row blocks times one shared B is one tall product: [count·M, K] · [K, N].
    const bool tall = count > 1 && B.batch_stride == 0 && !A.trans && A.batch_stride == M * A.ld;
    if (cuda) {
      if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(out.device().index);
        if (tall) cuda::gemm_batched<T>(false, B.trans, count * M, N, K, 1, pa, A.ld, pb, B.ld, 0, pc, N, 1, 0, 0, 0);
        else cuda::gemm_batched<T>(A.trans, B.trans, M, N, K, 1, pa, A.ld, pb, B.ld, 0, pc, N, count,
                                   A.batch_stride, B.batch_stride, M * N);
      }
      return;
    }
    if constexpr (!kIsHalf<T>) {  // the CPU gets f32 or f64 (gemm_dtype)
      if (tall) {
        cpu::gemm<T>(false, B.trans, count * M, N, K, T(1), pa, A.ld, pb, B.ld, T(0), pc, N);
        return;
      }
      cpu::gemm_batched<T>(A.trans, B.trans, M, N, K, T(1), pa, A.ld, pb, B.ld, T(0), pc, N, count,
                           A.batch_stride, B.batch_stride, M * N);
    }
  });
  return out;
}

// Checks shared by matmul and linear: defined, same device, same floating dtype.
static void check_operands(const char* op, const Tensor& a, const Tensor& b, const std::string& what) {
  MMG_CHECK(a.defined() && b.defined(), "{}: undefined tensor argument", op);
  check_same_device(op, a, b);
  MMG_CHECK(is_floating(a.dtype()) && a.dtype() == b.dtype(), "{}: {}: needs two tensors of one floating dtype, got {} and {}",
            op, what, dtype_name(a.dtype()), dtype_name(b.dtype()));
}

// ---- matmul, both operands at least 2-D ----
// C[b] = A[b]·B[b] over the broadcast batch b;  ∂L/∂A = sum_to(∂L/∂C · Bᵀ),  ∂L/∂B = sum_to(Aᵀ · ∂L/∂C).
static Tensor matmul_nd(const Tensor& a, const Tensor& b, const std::string& shapes) {
  const int64_t K = a.size(-1);
  MMG_CHECK(K == b.size(-2), "matmul: {}: inner sizes {} and {} differ", shapes, K, b.size(-2));
  Shape batch_a(a.shape().begin(), a.shape().end() - 2), batch_b(b.shape().begin(), b.shape().end() - 2);
  Shape batch;
  {
    // broadcast_shapes names only the batch dims; say which product they belong to.
    const int64_t n = std::max(batch_a.size(), batch_b.size());
    batch.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t ia = i - (n - static_cast<int64_t>(batch_a.size()));
      const int64_t ib = i - (n - static_cast<int64_t>(batch_b.size()));
      const int64_t sa = ia >= 0 ? batch_a[ia] : 1, sb = ib >= 0 ? batch_b[ib] : 1;
      MMG_CHECK(sa == sb || sa == 1 || sb == 1, "matmul: {}: batch dims {} and {} do not broadcast", shapes,
                shape_str(batch_a), shape_str(batch_b));
      batch[i] = sa == 1 ? sb : sa;
    }
  }
  const DType compute = gemm_dtype(a.dtype(), a.device());
  Tensor out = batched_product(a.detach().to(compute), b.detach().to(compute), batch).to(a.dtype());

  Tensor ad = a.detach(), bd = b.detach();
  const bool need_a = a.requires_grad(), need_b = b.requires_grad();
  return record_op("matmul", out, {a, b}, [ad, bd, need_a, need_b](const Tensor& g) -> Grads {
    Tensor ga, gb;
    if (need_a) ga = sum_to(matmul(g, transpose(bd, -1, -2)), ad.shape());
    if (need_b) {
      if (bd.dim() == 2 && ad.dim() > 2) {
        // B shared by the whole batch: Σ_b A[b]ᵀ·G[b] is one product over the stacked rows.
        const int64_t rows = numel_of(Shape(ad.shape().begin(), ad.shape().end() - 1));
        gb = matmul(transpose(reshape(ad, {rows, ad.size(-1)}), 0, 1), reshape(g, {rows, bd.size(-1)}));
      } else {
        gb = sum_to(matmul(transpose(ad, -1, -2), g), bd.shape());
      }
    }
    return {ga, gb};
  });
}

// NumPy semantics: 1-D · 1-D is a dot product (0-d result); a 1-D left operand is a row
// [1,K] and a 1-D right operand a column [K,1], the added dim removed from the result;
// otherwise a batch of matrix products with broadcast batch dims.
Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  MMG_PROFILE_OP("matmul");
  MMG_CHECK(a_in.defined() && b_in.defined(), "matmul: undefined tensor argument");
  const Tensor a = autocast_to_low(a_in), b = autocast_to_low(b_in);
  const std::string shapes = pair_str(a, b);
  check_operands("matmul", a, b, shapes);
  MMG_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: {}: both arguments need at least 1 dim", shapes);
  if (a.dim() == 1 && b.dim() == 1) {
    MMG_CHECK(a.size(0) == b.size(0), "matmul: {}: inner sizes {} and {} differ", shapes, a.size(0), b.size(0));
    return reshape(matmul_nd(unsqueeze(a, 0), unsqueeze(b, 1), shapes), {});
  }
  if (a.dim() == 1) return squeeze(matmul_nd(unsqueeze(a, 0), b, shapes), -2);
  if (b.dim() == 1) return squeeze(matmul_nd(a, unsqueeze(b, 1), shapes), -1);
  return matmul_nd(a, b, shapes);
}

Tensor Tensor::matmul(const Tensor& other) const { return mmg::matmul(*this, other); }

// ---- linear ----
// y = x·Wᵀ + b for x [..., in], W [out, in], b [out]: one gemm over all rows of x.
//   ∂L/∂x = G·W,   ∂L/∂W = Gᵀ·x (rows stacked),   ∂L/∂b = Σ_rows G
// The bias costs no pass of its own. On the CPU (and CUDA version 1, the kernel family
// "linear") it is written into y first and the product accumulates onto it (beta = 1); CUDA
// version 2 has cuBLASLt add it in the GEMM's epilogue instead, and take ∂L/∂b from the
// product that makes ∂L/∂W (kernels/gemm.h). Where cuBLASLt has no such epilogue for the
// sizes or dtype, version 2 does what version 1 does.

// ∂L/∂W and ∂L/∂b from one product on CUDA (version 2); false where it does not apply, and
// the caller composes them. g2 [rows, out] and x2 [rows, in] are of one dtype.
static bool linear_weight_bias_grad_fused(const Tensor& g2, const Tensor& x2, Tensor* gw, Tensor* gb) {
  if (!g2.device().is_cuda() || kernel_version("linear") != 2 || g2.dtype() != x2.dtype()) return false;
  const int64_t rows = g2.size(0), out_f = g2.size(1), in = x2.size(1);
  const Tensor gc = g2.contiguous(), xc = x2.contiguous();
  Tensor w_grad = empty({out_f, in}, {.dtype = g2.dtype(), .device = g2.device()});
  Tensor b_grad = empty({out_f}, {.dtype = g2.dtype(), .device = g2.device()});
  bool fused = false;
  visit_gemm(g2.dtype(), "linear", [&]<class T>() {
    if constexpr (kWithCuda) {
      cuda::DeviceGuard guard(g2.device().index);
      fused = cuda::linear_weight_bias_backward<T>(rows, out_f, in, gc.data<T>(), xc.data<T>(), w_grad.data<T>(),
                                                   b_grad.data<T>());
    }
  });
  if (!fused) return false;
  *gw = w_grad;
  *gb = b_grad;
  return true;
}

Tensor linear(const Tensor& x_in, const Tensor& weight_in, const Tensor& bias_in) {
  MMG_PROFILE_OP("linear");
  MMG_CHECK(x_in.defined() && weight_in.defined(), "linear: undefined tensor argument");
  const Tensor x = autocast_to_low(x_in), weight = autocast_to_low(weight_in), bias = autocast_to_low(bias_in);
  const std::string shapes = fmt::format("x {} with weight {}", shape_str(x.shape()), shape_str(weight.shape()));
  check_operands("linear", x, weight, shapes);
  MMG_CHECK(weight.dim() == 2, "linear: {}: weight must be 2-D [out, in]", shapes);
  MMG_CHECK(x.dim() >= 1, "linear: {}: x needs at least 1 dim", shapes);
  const int64_t in = weight.size(1), out_f = weight.size(0);
  MMG_CHECK(x.size(-1) == in, "linear: {}: x has {} features but weight expects {}", shapes, x.size(-1), in);
  if (bias.defined()) {
    check_operands("linear", x, bias, shapes + " and bias " + shape_str(bias.shape()));
    MMG_CHECK(bias.dim() == 1 && bias.size(0) == out_f, "linear: {}: bias {} must be [{}]", shapes,
              shape_str(bias.shape()), out_f);
  }

  const DType compute = gemm_dtype(x.dtype(), x.device());
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);  // x's leading dims, then out_f
  const int64_t rows = numel_of(out_shape);
  out_shape.push_back(out_f);
  Tensor xc = reshape(x.detach().to(compute), {rows, in}).contiguous();
  Tensor wc = weight.detach().to(compute).contiguous();
  Tensor y = empty({rows, out_f}, {.dtype = compute, .device = x.device()});
  const bool with_bias = bias.defined() && rows > 0;
  Tensor bc = with_bias ? bias.detach().to(compute).contiguous() : Tensor();
  if (on_cuda("linear", y)) {
    visit_gemm(compute, "linear", [&]<class T>() {
      if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(y.device().index);
        // Version 2: the bias added by the GEMM's epilogue, when cuBLASLt has one for this case.
        if (with_bias && kernel_version("linear") == 2 &&
            cuda::linear_bias_forward<T>(rows, out_f, in, xc.data<T>(), wc.data<T>(), bc.data<T>(), y.data<T>()))
          return;
        // Version 1: the bias rows copied into y by the copy kernel, the product accumulated onto them.
        if (with_bias) y.copy_(expand(bc, {rows, out_f}));
        cuda::gemm_batched<T>(false, true, rows, out_f, in, 1, xc.data<T>(), std::max<int64_t>(in, 1), wc.data<T>(),
                              std::max<int64_t>(in, 1), with_bias ? 1 : 0, y.data<T>(),
                              std::max<int64_t>(out_f, 1), 1, 0, 0, 0);
      }
    });
  } else {
    visit_float(compute, "linear", [&]<class T>() {
      // y[rows, out] = x[rows, in] · W[out, in]ᵀ + b, the bias added as the product is written
      cpu::linear_forward<T>(rows, out_f, in, xc.data<T>(), wc.data<T>(), with_bias ? bc.data<T>() : nullptr,
                             y.data<T>());
    });
  }
  Tensor out = reshape(y, out_shape).to(x.dtype());

  Tensor xd = x.detach(), wd = weight.detach();
  const bool need_x = x.requires_grad(), need_w = weight.requires_grad();
  const bool need_b = bias.defined() && bias.requires_grad();
  return record_op("linear", out, {x, weight, bias}, [xd, wd, need_x, need_w, need_b](const Tensor& g) -> Grads {
    const int64_t in = wd.size(1), out_f = wd.size(0), rows = numel_of(Shape(g.shape().begin(), g.shape().end() - 1));
    Tensor g2 = reshape(g, {rows, out_f});
    Tensor gx, gw, gb;
    if (need_x) gx = reshape(matmul(g2, wd), xd.shape());
    if (need_w && need_b && linear_weight_bias_grad_fused(g2, reshape(xd, {rows, in}), &gw, &gb)) return {gx, gw, gb};
    if (need_w) gw = matmul(transpose(g2, 0, 1), reshape(xd, {rows, in}));
    if (need_b) gb = sum(g2, {0});
    return {gx, gw, gb};
  });
}

}  // namespace mmg
