// Shared machinery of the elementwise ops (core/ops/elementwise.cpp, unary.cpp): broadcast
// two tensors, run a scalar lambda over them in the compute dtype, return the result dtype.
//
// On CUDA the lambda cannot run (it is host code): each op also names itself with an op code
// (kernels/elementwise.h) whose device math is written to match the lambda, and the
// kernel is the version kernel_version("elementwise") names (v2: 16-byte packs).
#pragma once
#include <functional>
#include <type_traits>

#include "core/dispatch.h"
#include "core/kernel_versions.h"
#include "core/ops/device_checks.h"
#include "core/tensor.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cuda/runtime.h"
#include "kernels/elementwise.h"

namespace mmg {

// Broadcasts a and b (checks devices and shapes, naming `op`), converts both to the compute
// dtype (the promoted dtype, f32 for bf16/f16, i64 for bool arithmetic), allocates the
// output (bool if `compare`, else the compute dtype), calls `run`, and converts the output
// to `result` if that differs (bf16 in, bf16 out).
Tensor binary_forward_impl(const char* op, const Tensor& a, const Tensor& b, DType result, bool compare,
                           const std::function<void(DType compute, const Tensor& a, const Tensor& b, Tensor& out)>& run);

// out[i] = f(a[i], b[i]) on operands already broadcast to out's shape and converted to
// `compute` (out may be a itself: each element is read before it is written). f is a generic
// lambda on scalars, returning bool when Compare (comparisons) and the compute type otherwise.
// On CUDA, `code` names the same op for the device kernel.
template <bool Compare, class F>
void binary_into(const char* op, cuda::BinaryOp code, DType compute, const Tensor& ac, const Tensor& bc,
                 const Tensor& out, F f) {
  visit_dtype(compute, [&]<class T>() {
    if constexpr (std::is_same_v<T, bf16> || std::is_same_v<T, f16>) {
      MMG_FAIL("{}: internal error: half types are computed in f32", op);
    } else {
      using R = std::conditional_t<Compare, bool, T>;
      if (on_cuda(op, out)) {
        if constexpr (kWithCuda && !std::is_same_v<T, bool>) {
          cuda::DeviceGuard guard(out.device().index);
          auto* kernel = kernel_version("elementwise") == 2 ? cuda::binary_v2<T, R> : cuda::binary<T, R>;
          kernel(code, static_cast<const T*>(ac.data_ptr()), ac.strides().data(), static_cast<const T*>(bc.data_ptr()),
                 bc.strides().data(), static_cast<R*>(out.data_ptr()), static_cast<int>(out.dim()),
                 out.shape().data(), out.numel());
        } else {
          MMG_FAIL("{}: internal error: bool operands are compared as u8 on CUDA", op);
        }
        return;
      }
      cpu::binary_kernel(static_cast<const T*>(ac.data_ptr()), ac.strides().data(),
                         static_cast<const T*>(bc.data_ptr()), bc.strides().data(), static_cast<R*>(out.data_ptr()),
                         static_cast<int>(out.dim()), out.shape().data(), out.numel(),
                         [&](T x, T y) { return static_cast<R>(f(x, y)); });
    }
  });
}

// binary_into on a and b broadcast, in their promoted compute dtype, into a new tensor.
template <bool Compare, class F>
Tensor binary_forward(const char* op, cuda::BinaryOp code, const Tensor& a, const Tensor& b, DType result, F f) {
  return binary_forward_impl(op, a, b, result, Compare,
                             [&](DType compute, const Tensor& ac, const Tensor& bc, Tensor& out) {
                               binary_into<Compare>(op, code, compute, ac, bc, out, f);
                             });
}

// acc ← acc + g in place, for the engine's own sums of gradients (core/autograd.cpp), which
// calls it only on a tensor nobody else holds. acc and g: one shape, dtype f32 or f64, one device;
// acc contiguous. Not recorded by autograd. The same bits as add(acc, g).
void accumulate_into(const Tensor& acc, const Tensor& g);

// ---- unary ----

// out[i] = f(x[i]) for a floating x: bf16/f16 are computed in f32 and the result comes back
// in x's dtype; a contiguous result, no autograd (the caller records the op). Integer input
// is refused: "sqrt: needs a floating dtype, got i64 [3]". On CUDA, `code` (with the op's
// constants p0, p1) names the same op for the device kernel.
template <class F>
Tensor unary_float_forward(const char* op, cuda::UnaryOp code, const Tensor& x, F f, double p0 = 0.0, double p1 = 0.0) {
  MMG_CHECK(x.defined(), "{}: undefined tensor argument", op);
  MMG_CHECK(is_floating(x.dtype()), "{}: needs a floating dtype, got {} {}", op, dtype_name(x.dtype()),
            shape_str(x.shape()));
  Tensor xc = x.detach().to(compute_dtype(x.dtype())).contiguous();
  Tensor out = empty_like(xc);
  visit_float(xc.dtype(), op, [&]<class T>() {
    if (on_cuda(op, xc)) {
      if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(xc.device().index);
        auto* kernel = kernel_version("elementwise") == 2 ? cuda::unary_v2<T> : cuda::unary<T>;
        kernel(code, xc.data<T>(), out.data<T>(), out.numel(), p0, p1);
      }
      return;
    }
    cpu::unary_kernel(xc.data<T>(), out.data<T>(), out.numel(), [&](T v) { return static_cast<T>(f(v)); });
  });
  return out.to(x.dtype());
}

// Like unary_float_forward, but integer inputs (i32, i64, u8) are computed in their own type
// and keep it (abs, relu, clamp on indices). bool is refused.
template <class F>
Tensor unary_numeric_forward(const char* op, cuda::UnaryOp code, const Tensor& x, F f, double p0 = 0.0, double p1 = 0.0) {
  MMG_CHECK(x.defined(), "{}: undefined tensor argument", op);
  if (is_floating(x.dtype())) return unary_float_forward(op, code, x, f, p0, p1);
  MMG_CHECK(x.dtype() != DType::boolean, "{}: needs a numeric dtype, got {} {}", op, dtype_name(x.dtype()),
            shape_str(x.shape()));
  Tensor xc = x.detach().contiguous();
  Tensor out = empty_like(xc);
  visit_arith(xc.dtype(), op, [&]<class T>() {
    if (on_cuda(op, xc)) {
      if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(xc.device().index);
        auto* kernel = kernel_version("elementwise") == 2 ? cuda::unary_v2<T> : cuda::unary<T>;
        kernel(code, xc.data<T>(), out.data<T>(), out.numel(), p0, p1);
      }
      return;
    }
    cpu::unary_kernel(xc.data<T>(), out.data<T>(), out.numel(), [&](T v) { return static_cast<T>(f(v)); });
  });
  return out;
}

}  // namespace mmg
