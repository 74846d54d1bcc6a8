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
//
// The weight-cast cache. A weight used several times in one forward (a text encoder run twice
// a step, tied embeddings, a layer shared across positions) would be cast to bf16 at every
// use: a full read of the f32 weight and a write of the copy each time. So, as in PyTorch,
// inside an autocast region the casts of leaves that require grad (the parameters) are
// memoised: the first use converts, later uses get the same bytes. An entry is keyed by the
// tensor (its TensorImpl) and the target dtype, and is valid only while the tensor still views
// the same Storage at the same version (Storage::version: every in-place write bumps it), so
// an optimiser step, load_state_dict or Module::to inside the region makes the next use cast
// again. The cache is emptied when the outermost AutocastGuard of the thread ends, so a weight
// updated between two steps is never served stale.
//
// Each use still records its own "to" node, as an uncached cast does: only the bytes are
// shared. The gradient of each use is converted to f32 on its own and the f32 gradients are
// added at the weight, so gradients are bit for bit those of the uncached run. (PyTorch
// shares one cast node, whose incoming gradients are then summed in bf16 before the one
// conversion to f32: one more rounding, which sharing only the bytes avoids.)
#pragma once
#include <initializer_list>
#include <optional>

#include "core/tensor.h"

namespace mmg {

// Autocast to `low` (bf16 or f16; anything else is an Error) until the end of the scope, or
// switch it off for the scope with enabled = false. Guards nest and restore what was before.
// cache = false turns the weight-cast cache off for the scope (PyTorch's cache_enabled). The
// end of the outermost guard of the thread, enabled or not, empties the cache.
class AutocastGuard {
 public:
  explicit AutocastGuard(DType low, bool enabled = true, bool cache = true);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  std::optional<DType> previous_;
  bool previous_cache_;
};

// The low dtype while autocast is on in this thread, or nothing.
std::optional<DType> autocast_dtype();

// The weight-cast cache of this thread: casts served from it and casts made for it since the
// thread started (not reset when the cache is emptied), and the entries it holds now.
struct AutocastCacheStats {
  int64_t hits = 0;
  int64_t misses = 0;  // first uses, and uses after an in-place write or a storage swap
  int64_t entries = 0;
};
AutocastCacheStats autocast_cache_stats();

// For the ops of the policy above. Undefined tensors and tensors of other dtypes pass as they are.
// autocast_to_low goes through the weight-cast cache for leaves that require grad.
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
