// Gradient clipping by global norm, as torch.nn.utils.clip_grad_norm_.
//
//   ‖g‖ = sqrt(Σ_p Σ_i g_{p,i}²)          over every parameter that has a .grad
//   if ‖g‖ > max_norm:  g ← g · max_norm/(‖g‖ + 10⁻⁶)   for every gradient, in place
//
// One scale for all gradients keeps the update's direction and only shortens it, so a rare
// exploding batch cannot throw the model far. The norm is accumulated in f64 (each square and each
// sum), so it stays accurate for many millions of f32 or bf16 elements. f32 and f64 gradients
// on the CPU take one fused pass for the norm and one for the scale over all tensors at once
// (kernels/grad_norm.h); gradients on a CUDA device are summed and scaled there by tensor ops,
// and the host reads one number, the norm.
//
// Returns the norm BEFORE clipping (log it: a growing norm warns of divergence). When the norm is
// not finite (an inf or NaN in some gradient) the gradients are left as they are and the inf/NaN
// norm is returned: scaling would only spread the NaN into every gradient, and the caller can skip
// the step (PyTorch by default scales anyway, which makes every gradient NaN).
#pragma once
#include <vector>

#include "core/tensor.h"

namespace mmg::nn {

// Parameters without a .grad are skipped. max_norm must be finite and > 0.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

// The global L2 norm of the gradients (in f64), without clipping.
double grad_norm(const std::vector<Tensor>& params);

}  // namespace mmg::nn
