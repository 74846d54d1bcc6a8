// softmax and log_softmax over one dim, on the fused row kernels (kernels/softmax.h).
//
// The kernels work on contiguous rows, so the op swaps `dim` with the last dim, makes the
// result contiguous, runs the kernel over rows = numel / size(dim), and swaps back. The
// backward does the same with the incoming gradient and reuses the saved output y:
//   softmax:      dx = y ⊙ (dy − Σ dy ⊙ y)
//   log_softmax:  dx = dy − exp(y) · Σ dy
// bf16/f16 inputs go to the kernels as they are: the kernels widen each element to f32 as
// they read it, compute the max, the sums and the exponentials in f32, and round once as
// they store (as PyTorch). The output is in the input's dtype, and so is the saved y that
// the backward reads; dx comes out in the input's dtype too. On CUDA the same rows go to the
// kernels of kernels/softmax.h, in the version the kernel lab's family "softmax"
// names (core/kernel_versions.h) when each kernel runs.
//
// Under autocast (core/autocast.h) a 16-bit input is first cast to f32, so the op runs and
// returns in f32: softmax is on PyTorch's autocast-to-f32 list.
#include "core/autocast.h"
#include "core/autograd.h"
#include "core/dispatch.h"
#include "core/kernel_versions.h"
#include "core/ops.h"
#include "core/ops/device_checks.h"
#include "core/profile.h"
#include "kernels/cuda/runtime.h"
#include "kernels/softmax.h"

namespace mmg {

// The storage types the row kernels take: f32, f64, bf16, f16 (the last two computed in f32).
template <class F>
static void visit_rows_dtype(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::bf16: return f.template operator()<bf16>();
    case DType::f16: return f.template operator()<f16>();
    default: return visit_float(t, op, f);
  }
}

// t (no autograd) with dim d swapped last, contiguous, in dtype `dtype`.
static Tensor rows_last(const Tensor& t, int64_t d, DType dtype) {
  Tensor s = t.dim() <= 1 ? t : transpose(t, d, -1);
  return s.to(dtype).contiguous();
}

// The inverse of rows_last's swap: a contiguous tensor in the original dim order.
static Tensor rows_back(const Tensor& t, int64_t d) {
  return t.dim() <= 1 ? t : transpose(t, d, -1).contiguous();
}

static Tensor softmax_op(const char* op, bool log, const Tensor& x, int64_t dim) {
  MMG_PROFILE_OP(op);
  MMG_CHECK(x.defined(), "{}: undefined tensor argument", op);
  MMG_CHECK(is_floating(x.dtype()), "{}: needs a floating dtype, got {} {}", op, dtype_name(x.dtype()),
            shape_str(x.shape()));
  const int64_t d = wrap_dim(dim, x.dim(), op, x.shape());
  const DType dtype = x.dtype();  // the kernels' storage type: every floating dtype as it is
  const int64_t cols = x.dim() == 0 ? 1 : x.size(d);
  const int64_t rows = cols == 0 ? 0 : x.numel() / cols;

  Tensor xr = rows_last(x.detach(), d, dtype);
  Tensor yr = empty(xr.shape(), {.dtype = dtype, .device = x.device()});
  const bool cuda = on_cuda(op, xr);
  visit_rows_dtype(dtype, op, [&]<class T>() {
    if (cuda) {
      if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(xr.device().index);
        auto* kernel = kernel_version("softmax") == 2
                           ? (log ? cuda::log_softmax_forward_v2<T> : cuda::softmax_forward_v2<T>)
                           : (log ? cuda::log_softmax_forward<T> : cuda::softmax_forward<T>);
        kernel(xr.data<T>(), yr.data<T>(), rows, cols);
      }
      return;
    }
    if (log) cpu::log_softmax_forward<T>(xr.data<T>(), yr.data<T>(), rows, cols);
    else cpu::softmax_forward<T>(xr.data<T>(), yr.data<T>(), rows, cols);
  });
  Tensor out = rows_back(yr, d);

  // Backward: the saved y stays in the rows-last layout and the input's dtype, held through
  // a detached handle (for 1-D input `out` is yr itself and must not own its own closure).
  Tensor y = yr.detach();
  return record_op(op, out, {x}, [op, log, y, d, rows, cols, dtype](const Tensor& g) -> Grads {
    Tensor gr = rows_last(g, d, dtype);
    check_same_device(op, y, gr);
    Tensor dxr = empty(gr.shape(), {.dtype = dtype, .device = gr.device()});
    const bool cuda = on_cuda(op, gr);
    visit_rows_dtype(dtype, op, [&]<class T>() {
      if (cuda) {
        if constexpr (kWithCuda) {
          cuda::DeviceGuard guard(gr.device().index);
          auto* kernel = kernel_version("softmax") == 2
                             ? (log ? cuda::log_softmax_backward_v2<T> : cuda::softmax_backward_v2<T>)
                             : (log ? cuda::log_softmax_backward<T> : cuda::softmax_backward<T>);
          kernel(y.data<T>(), gr.data<T>(), dxr.data<T>(), rows, cols);
        }
        return;
      }
      if (log) cpu::log_softmax_backward<T>(y.data<T>(), gr.data<T>(), dxr.data<T>(), rows, cols);
      else cpu::softmax_backward<T>(y.data<T>(), gr.data<T>(), dxr.data<T>(), rows, cols);
    });
    return {rows_back(dxr, d)};
  });
}

// y_i = exp(x_i) / Σ_j exp(x_j) along `dim`.
Tensor softmax(const Tensor& x, int64_t dim) { return softmax_op("softmax", false, autocast_to_f32(x), dim); }

// y_i = x_i − log Σ_j exp(x_j) along `dim`.
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_op("log_softmax", true, autocast_to_f32(x), dim); }

}  // namespace mmg
