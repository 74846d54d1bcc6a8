// The real tokens of a padded batch, and the way back to the padded layout.
//
// A batch of texts is padded to its longest text: x [B,S,D] with a key mask [B,S] (true = a
// real token). Every row-wise layer of a transformer (Linear, LayerNorm, the MLP, the residual
// adds) treats each token alone, and a pad row's output is read by nobody: its key is masked
// out of every attention and it is left out of every pooled mean and loss. So those layers
// need the real rows only, packed one after another:
//
//   pack:    [B,S,D] -> [N,D]    N = Σ mask, the rows b·S + s with mask[b,s] true, in order
//   unpack:  [N,D] -> [B,S,D]    the same rows back in place, zeros at the pads
//
// Only attention, which mixes the tokens of one sequence, reads them padded: its inputs are
// unpacked and its output packed again (nn/attention.h). On the demo's captions (13.5 real
// tokens in a batch padded to 28) the layers do half the work. The two directions are the ops
// take_rows and put_rows (core/ops.h), each the other's backward: row copies both ways.
#pragma once
#include <cstdint>
#include <optional>

#include "core/ops.h"

namespace mmg::nn {

class PackedTokens {
 public:
  // key_mask [B,S] bool or u8, on any device.
  static PackedTokens from_mask(const Tensor& key_mask);
  // The same, or nothing when there is no mask or it has no pad (packing would only copy).
  static std::optional<PackedTokens> if_padded(const Tensor& key_mask);

  Tensor pack(const Tensor& x) const;    // [B,S,D] -> [N,D]
  Tensor unpack(const Tensor& x) const;  // [N,D] -> [B,S,D], zero rows at the pads

  // [B,S] bool on the mask's device: true at the real tokens (attention's query mask).
  const Tensor& mask() const { return mask_; }
  int64_t batch() const { return batch_; }
  int64_t seq() const { return seq_; }
  int64_t count() const { return real_rows_.size(); }  // N, the real tokens
  bool has_padding() const { return count() < batch_ * seq_; }

 private:
  int64_t batch_ = 0, seq_ = 0;
  RowIndex real_rows_;  // b·S + s of each real token, checked once for every pack and unpack
  Tensor mask_;       // [B,S] bool
};

}  // namespace mmg::nn
