// Mixed precision: autocast and TF32.
//
// Autocast (PyTorch's torch.autocast policy, for the ops this engine has): inside an
// AutocastGuard the matrix products run in a 16-bit dtype and the numerically sensitive ops
// in f32, while the model's parameters stay f32 ("master weights") and so do their gradients:
//
//   low precision (bf16 or f16)   matmul, linear, scaled_dot_product_attention
//   f32                           layer_norm, softmax, log_softmax, logsumexp, cross_entropy,
//                                 clip_loss, hinge_ranking_loss
//   unchanged                     everything else: elementwise ops promote mixed inputs
//                                 (bf16 + f32 → f32), so a residual stream stays f32
//
// The casts are ordinary differentiable `to(dtype)` ops: a gradient reaching a bf16 copy of
// a weight is converted back to f32 on its way to the weight. The products accumulate in f32
// on every device (cuBLASLt's f32 compute type on CUDA, f32 math on the CPU) and round their
// result to the low dtype. The same model code trains in f32 or in bf16: only the guard
// around its forward differs. f16's narrow range needs loss scaling (nn/grad_scaler.h);
// bf16 has f32's range and does not.
//
//   {
//     mmg::AutocastGuard autocast(DType::bf16);
//     Tensor loss = model.forward(batch);     // products in bf16, softmax/norms/losses in f32
//   }
//   loss.backward();                           // gradients of the f32 parameters, in f32
//
// The setting is per thread, like grad mode: a data-loading thread is not affected.
#pragma once
#include <initializer_list>
#include <optional>

#include "core/tensor.h"

namespace mmg {

// Autocast to `low` (bf16 or f16; anything else is an Error) until the end of the scope, or
// switch it off for the scope with enabled = false. Guards nest and restore what was before.
class AutocastGuard {
 public:
  explicit AutocastGuard(DType low, bool enabled = true);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  std::optional<DType> previous_;
};

// The low dtype while autocast is on in this thread, or nothing.
std::optional<DType> autocast_dtype();

// For the ops of the policy above. Undefined tensors and tensors of other dtypes pass as they are.
Tensor autocast_to_low(const Tensor& x);  // f32 → the low dtype, when autocast is on
Tensor autocast_to_f32(const Tensor& x);  // bf16/f16 → f32, when autocast is on
bool any_16bit(std::initializer_list<Tensor> xs);  // whether a defined one is bf16 or f16

// TF32 (opt-in, off by default): f32 matrix products on CUDA may use the tensor cores' TF32
// mode (10-bit mantissa inputs, f32 accumulation): several times faster, about 1e-3 relative
// error instead of f32's 1e-7, so results no longer match the CPU to f32 rounding. No effect on
// the CPU or on f64. Process-wide, like torch.backends.cuda.matmul.allow_tf32.
void set_allow_tf32(bool allow);
bool allow_tf32();

}  // namespace mmg
