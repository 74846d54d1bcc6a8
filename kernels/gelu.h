// GELU, forward and backward, over n contiguous elements.
//
// Exact form (approx none), with Φ the standard normal CDF and φ its density:
//   y = x·Φ(x),  Φ(x) = ½(1 + erf(x/√2)),   dy/dx = Φ(x) + x·φ(x),  φ(x) = e^(−x²/2)/√(2π)
// tanh form, with u = √(2/π)(x + 0.044715x³) and t = tanh u:
//   y = ½x(1 + t),   dy/dx = ½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3·0.044715x²)
// Why a kernel of its own: written with other ops, the backward took a dozen full passes
// over the MLP's hidden activations (erf, x², exp, products, sums), each allocating its
// result; here it is one pass reading x and dy and writing dx. erf, exp and tanh run
// vectorised (Eigen's array functions: within a few float ulp; f64 uses the C library).
#pragma once
#include <cstdint>

namespace mmg::cpu {

// y[i] = gelu(x[i])
template <class T>
void gelu_forward(const T* x, T* y, int64_t n, bool tanh_approx);

// dx[i] = dy[i] · gelu'(x[i])
template <class T>
void gelu_backward(const T* x, const T* dy, T* dx, int64_t n, bool tanh_approx);

// GEGLU (Shazeer 2020, "GLU Variants Improve Transformer") over `rows` rows of h = [a | g],
// each half `hidden` wide, the gate through GELU:
//   y = a · gelu(g)                      y [rows, hidden]
//   ∂L/∂a = dy · gelu(g),   ∂L/∂g = dy · a · gelu'(g)      dh [rows, 2·hidden], both halves
// Why a kernel of its own: written as chunk, gelu and mul, the backward made each half's
// gradient a zero-filled full-width tensor with the half copied in, then summed the two, and
// the forward copied the strided gate out before the gelu: about ten passes over the widest
// activation of the block. Here each direction is one pass.
template <class T>
void geglu_forward(const T* h, T* y, int64_t rows, int64_t hidden, bool tanh_approx);

template <class T>
void geglu_backward(const T* h, const T* dy, T* dh, int64_t rows, int64_t hidden, bool tanh_approx);

}  // namespace mmg::cpu

// ---- CUDA (kernels/cuda/elementwise.cu) ----
// GELU forward and backward on a CUDA device over n contiguous elements of device memory of
// the current device, the same formulas as above:
//   exact:  y = x·Φ(x),  dy/dx = Φ(x) + x·φ(x)
//   tanh:   y = ½x(1 + tanh u), u = √(2/π)(x + 0.044715x³),
//           dy/dx = ½(1 + tanh u) + ½x(1 − tanh² u)·√(2/π)(1 + 3·0.044715x²)
// T: float, double.
// Implemented beside the elementwise kernels, whose launch shape and 16-byte packs it
// shares, and versioned with them (the kernel family "elementwise", kernels/elementwise.h):
//   v1  gelu_forward, gelu_backward:        one element a thread and loop step
//   v2  gelu_forward_v2, gelu_backward_v2:  16-byte packs where the pointers' alignment
//                                           allows, else version 1; same results bit for bit
// Declared in every build; defined only where CUDA is compiled, and core/ calls them only
// under `if constexpr (kWithCuda)` (core/device.h).
namespace mmg::cuda {

template <class T>
void gelu_forward(const T* x, T* y, int64_t n, bool tanh_approx);
template <class T>
void gelu_backward(const T* x, const T* dy, T* dx, int64_t n, bool tanh_approx);

template <class T>
void gelu_forward_v2(const T* x, T* y, int64_t n, bool tanh_approx);
template <class T>
void gelu_backward_v2(const T* x, const T* dy, T* dx, int64_t n, bool tanh_approx);

}  // namespace mmg::cuda
