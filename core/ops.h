// The ops: free functions over Tensors. Each family lives in one file under core/ops/
// with its argument checks, its dispatch to the kernels, and its backward.
//
// Conventions: dims may be negative (counted from the end); shapes broadcast like NumPy;
// float math runs in f32 or f64 — bf16/f16 inputs are computed in f32 and the result is
// returned in the input dtype. Every op checks its arguments and throws mmg::Error naming
// itself and the shapes/dtypes/devices at fault.
#pragma once
#include <memory>
#include <optional>
#include <vector>

#include "core/tensor.h"

namespace mmg {

class Generator;

// ---- elementwise, with broadcasting (core/ops/elementwise.cpp) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);        // a^b; d/db needs a > 0
Tensor pow(const Tensor& a, double exponent);
Tensor maximum(const Tensor& a, const Tensor& b);    // ties send the gradient half to each
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);  // cond: bool
// Comparisons give bool tensors and no gradient.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);

// ---- unary (core/ops/unary.cpp) ----
enum class GeluApprox { none, tanh };  // none: x·Φ(x) with erf; tanh: the tanh approximation
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);       // d|x|/dx = sign(x), 0 at 0
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);      // gradient 0 at 0
Tensor gelu(const Tensor& x, GeluApprox approx = GeluApprox::none);
// GEGLU: the last dim of h cut in halves [a | g], y = a · gelu(g) (half as wide as h)
Tensor geglu(const Tensor& h, GeluApprox approx = GeluApprox::none);
Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max);  // grad 1 inside [min,max]

// ---- reductions (core/ops/reduce.cpp). Empty dims = all dims. ----
Tensor sum(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const Shape& dims = {}, bool keepdim = false);
struct ValuesIndices {
  Tensor values;
  Tensor indices;  // i64
};
// max/min/argmax take every numeric dtype (and bool). A row holding NaN gives NaN and the
// index of its first NaN, as PyTorch; reducing zero elements is an error.
ValuesIndices max(const Tensor& x, int64_t dim, bool keepdim = false);  // first index among ties
ValuesIndices min(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor max(const Tensor& x);  // over all elements; the gradient is shared among ties
Tensor min(const Tensor& x);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
// var/std/logsumexp/norm: floating dtypes only. var and std divide by max(0, n − correction):
// correction ≥ n gives inf, or NaN where all elements are equal (as PyTorch).
Tensor var(const Tensor& x, const Shape& dims = {}, int64_t correction = 1, bool keepdim = false);
Tensor std(const Tensor& x, const Shape& dims = {}, int64_t correction = 1, bool keepdim = false);
// A row of −inf gives −inf, and gradient 0 there (PyTorch: NaN).
Tensor logsumexp(const Tensor& x, const Shape& dims, bool keepdim = false);
// p > 0 or inf. The gradient where the norm is 0 is 0 (not NaN), for every p.
Tensor norm(const Tensor& x, double p = 2.0, const Shape& dims = {}, bool keepdim = false);
// Sum `x` down to `shape` over the dims that broadcasting expanded (backward of broadcasts).
Tensor sum_to(const Tensor& x, const Shape& shape);

// ---- matrix products (core/ops/matmul.cpp) ----
Tensor matmul(const Tensor& a, const Tensor& b);  // NumPy semantics, broadcast batch dims
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());  // x·Wᵀ + b

// ---- views: share storage with the input (core/ops/view.cpp) ----
Tensor view(const Tensor& x, const Shape& shape);      // needs compatible strides; one -1 allowed
Tensor reshape(const Tensor& x, const Shape& shape);   // a view when possible, else a copy
Tensor flatten(const Tensor& x, int64_t start_dim = 0, int64_t end_dim = -1);
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
Tensor permute(const Tensor& x, const Shape& dims);
Tensor squeeze(const Tensor& x, int64_t dim);          // no-op when that size is not 1
Tensor squeeze(const Tensor& x);                       // every size-1 dim
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor expand(const Tensor& x, const Shape& shape);    // -1 keeps a size; new leading dims allowed
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);  // clamps like Python
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor select(const Tensor& x, int64_t dim, int64_t index);  // drops the dim

// ---- joining, splitting, indexing (core/ops/index.cpp) ----
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0);  // last piece may be smaller
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim = 0);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);  // index: 1-D i64/i32
// Rows by an index that names each row at most once, an adjoint pair (the backward of each is
// the other; nn/packed_tokens.h packs a batch's real tokens with them):
Tensor take_rows(const Tensor& x, const Tensor& index);               // x [R,...] -> [N,...]: out[i] = x[index[i]]
Tensor put_rows(const Tensor& y, const Tensor& index, int64_t rows);  // y [N,...] -> [rows,...]: zeros, out[index[i]] = y[i]
// The same index checked once for many calls (on CUDA also copied to the host once, where each
// call above copies and waits): N distinct rows in [0, rows), kept on the host and on `device`.
// nn::PackedTokens packs and unpacks every layer of a batch with one.
class RowIndex {
 public:
  RowIndex() = default;
  RowIndex(const Tensor& index, int64_t rows);  // index: 1-D i64 or i32, on any device
  RowIndex(const std::vector<int64_t>& index, int64_t rows, Device device = Device::cpu());
  const Tensor& index() const;  // [N] i64 on its device
  int64_t size() const;         // N
  int64_t rows() const;
  struct Data;  // core/ops/index.cpp

 private:
  std::shared_ptr<const Data> data_;
  friend Tensor take_rows(const Tensor& x, const RowIndex& index);
  friend Tensor put_rows(const Tensor& y, const RowIndex& index);
};
Tensor take_rows(const Tensor& x, const RowIndex& index);  // x [rows,...] -> [N,...]
Tensor put_rows(const Tensor& y, const RowIndex& index);   // y [N,...] -> [rows,...]
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);        // torch.gather
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);    // mask: bool, broadcasts to x
Tensor embedding(const Tensor& weight, const Tensor& indices);           // weight [V,D] -> [..., D]

// ---- fused NN math with their own backward kernels ----
Tensor softmax(const Tensor& x, int64_t dim = -1);      // core/ops/softmax.cpp
Tensor log_softmax(const Tensor& x, int64_t dim = -1);
// Normalises over the trailing dims `normalized_shape`; weight/bias of that shape or undefined.
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);  // core/ops/layer_norm.cpp
// q [B,H,Sq,D], k and v [B,H,Sk,D]; key_mask [B,Sk] bool (true = attend) or undefined;
// causal: query i sees keys j <= i (top-left aligned, as PyTorch); scale defaults to 1/sqrt(D).
// dropout_p in [0, 1) drops attention weights (as torch's dropout_p: whenever p > 0, there is
// no training flag) with a mask drawn from `gen` (the default generator when null).
// query_mask [B,Sq] bool (false = a query nobody reads, e.g. a pad token) or undefined: a masked
// query sees no key, so its output is zero and it passes no gradient; the CPU skips its work.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& key_mask = Tensor(), bool causal = false,
                                    std::optional<double> scale = std::nullopt, double dropout_p = 0.0,
                                    Generator* gen = nullptr,
                                    const Tensor& query_mask = Tensor());  // core/ops/attention.cpp
// logits [N,C], target [N] i64; mean over rows whose target != ignore_index.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index = -100,
                     double label_smoothing = 0.0);  // core/ops/losses.cpp
// Symmetric InfoNCE (CLIP): logits = exp(logit_scale)·img·txtᵀ, mean of the two cross-entropies
// with the diagonal as targets. img, txt [N,d] (normalised by the caller); logit_scale 0-d or [1].
Tensor clip_loss(const Tensor& image_emb, const Tensor& text_emb, const Tensor& logit_scale);
// s = img·txtᵀ; (1/N)·Σ_i Σ_{j≠i} [m − s_ii + s_ij]₊ + [m − s_ii + s_ji]₊
Tensor hinge_ranking_loss(const Tensor& image_emb, const Tensor& text_emb, double margin = 0.2);
// Zeroes each element with probability p and scales the rest by 1/(1-p); identity when !training.
Tensor dropout(const Tensor& x, double p, bool training = true, Generator* gen = nullptr);  // core/ops/dropout.cpp

// ---- operators ----
Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a);
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);

}  // namespace mmg
