#include "nn/packed_tokens.h"

#include <vector>

namespace mmg::nn {

PackedTokens PackedTokens::from_mask(const Tensor& key_mask) {
  MMG_CHECK(key_mask.defined() && key_mask.dim() == 2, "PackedTokens: key_mask {} must be [B,S]",
            key_mask.defined() ? shape_str(key_mask.shape()) : "undefined");
  MMG_CHECK(key_mask.dtype() == DType::boolean || key_mask.dtype() == DType::u8,
            "PackedTokens: key_mask must be bool (true = a real token), got {} {}", dtype_name(key_mask.dtype()),
            shape_str(key_mask.shape()));
  PackedTokens p;
  p.batch_ = key_mask.size(0);
  p.seq_ = key_mask.size(1);
  // The mask is read on the host: the row lists are a few thousand integers, made once per
  // encoder call and shared by every layer.
  const std::vector<int64_t> real = key_mask.to_vector<int64_t>();
  std::vector<int64_t> rows;
  for (size_t k = 0; k < real.size(); ++k)
    if (real[k]) rows.push_back(static_cast<int64_t>(k));
  p.real_rows_ = RowIndex(rows, p.batch_ * p.seq_, key_mask.device());
  p.mask_ = key_mask.detach().to(DType::boolean);
  return p;
}

std::optional<PackedTokens> PackedTokens::if_padded(const Tensor& key_mask) {
  if (!key_mask.defined()) return std::nullopt;
  PackedTokens rows = from_mask(key_mask);
  if (!rows.has_padding()) return std::nullopt;
  return rows;
}

Tensor PackedTokens::pack(const Tensor& x) const {
  MMG_CHECK(x.defined() && x.dim() == 3 && x.size(0) == batch_ && x.size(1) == seq_,
            "PackedTokens::pack: x {} must be [B,S,D] with [B,S] = [{},{}], the mask's shape",
            x.defined() ? shape_str(x.shape()) : "undefined", batch_, seq_);
  return take_rows(reshape(x, {batch_ * seq_, x.size(2)}), real_rows_);  // the RowIndex overload: no re-check
}

Tensor PackedTokens::unpack(const Tensor& x) const {
  MMG_CHECK(x.defined() && x.dim() == 2 && x.size(0) == count(),
            "PackedTokens::unpack: x {} must be [N,D] with N = {}, the mask's real tokens",
            x.defined() ? shape_str(x.shape()) : "undefined", count());
  return reshape(put_rows(x, real_rows_), {batch_, seq_, x.size(1)});
}

}  // namespace mmg::nn
