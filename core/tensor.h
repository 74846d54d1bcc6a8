// Tensor: a cheap, shared handle to a TensorImpl.
//
// A TensorImpl is a view: (storage, shape, strides, offset, dtype) plus the autograd
// fields. Several tensors may view one Storage — `transpose`, `slice`, `expand`, `view`
// make new TensorImpls over the same bytes, so writes through one are seen by the others.
// Copying a Tensor copies the handle, never the data (use clone() for that).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/shape.h"
#include "core/storage.h"

namespace mmg {

struct Node;
struct TensorImpl;
class Generator;

struct TensorOptions {
  DType dtype = DType::f32;
  Device device = Device::cpu();
  bool requires_grad = false;
  // Page-locked host memory, for copies to a GPU that the host need not wait for (CPU tensors
  // only; plain memory where no GPU is usable). See Tensor::pin_memory().
  bool pinned = false;
};

class Tensor {
 public:
  Tensor() = default;  // an undefined tensor (no storage); defined() is false
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& other) const { return impl_ == other.impl_; }

  // ---- metadata ----
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t offset() const;
  int64_t dim() const;
  int64_t size(int64_t d) const;    // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const;

  // Pointer to the first element (storage + offset). data<T>() checks T against dtype().
  void* data_ptr() const;
  template <class T> T* data() const {
    check_dtype(dtype_of<T>(), "data");
    return static_cast<T*>(data_ptr());
  }

  // ---- autograd ----
  bool requires_grad() const;
  Tensor& requires_grad_(bool on = true);  // only on leaves of floating dtype
  Tensor grad() const;                     // undefined until a backward reaches this leaf
  void set_grad(const Tensor& g);
  void zero_grad();                        // drops .grad (next backward starts from zero)
  const std::shared_ptr<Node>& grad_fn() const;
  bool is_leaf() const;
  // Reverse-mode sweep from this tensor. `grad` defaults to 1 for a one-element tensor.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;
  Tensor detach() const;  // same storage, cut from the graph

  // ---- conversion and copies ----
  Tensor to(DType dtype) const;       // returns *this when already of that dtype
  // A copy on `device` (*this when already there). A copy from the host never makes the host
  // wait for the GPU: the bytes go through a pinned staging buffer, and the source may be
  // reused at once. non_blocking, from a pinned tensor: the GPU reads the tensor's own memory,
  // one DMA with no staging copy — do not write into the tensor until the copy has run
  // (cuda_synchronize), as with PyTorch's non_blocking=True.
  Tensor to(Device device, bool non_blocking = false) const;
  // A copy in pinned (page-locked) host memory, whose copies to a GPU are single DMAs the
  // host does not wait for (what a data loader does with each batch, on its own thread). A
  // CPU tensor only; *this when already pinned, or where no GPU is usable (nothing to gain).
  Tensor pin_memory() const;
  bool is_pinned() const;
  Tensor contiguous() const;          // returns *this when already contiguous
  Tensor clone() const;               // a contiguous copy (differentiable)
  double item() const;                // the value of a one-element tensor, as double
  template <class T> std::vector<T> to_vector() const;  // all elements, row-major, converted to T
  std::string str() const;            // PyTorch-style printing

  // In-place writes (not recorded by autograd; refused on leaves that require grad
  // while grad mode is on, since that would corrupt the graph).
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }
  Tensor& copy_(const Tensor& src);  // broadcasts src to this shape; converts dtype

  // ---- method sugar over the free functions of core/ops.h ----
  Tensor view(const Shape& shape) const;
  Tensor reshape(const Shape& shape) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor permute(const Shape& dims) const;
  Tensor unsqueeze(int64_t d) const;
  Tensor squeeze(int64_t d) const;
  Tensor expand(const Shape& shape) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor sum() const;
  Tensor sum(const Shape& dims, bool keepdim = false) const;
  Tensor mean() const;
  Tensor mean(const Shape& dims, bool keepdim = false) const;
  Tensor matmul(const Tensor& other) const;
  Tensor exp() const;
  Tensor log() const;

 private:
  void check_dtype(DType expected, const char* what) const;
  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;  // in elements
  int64_t offset = 0;
  DType dtype = DType::f32;

  // autograd
  bool requires_grad = false;
  Tensor grad;                    // leaves only
  std::shared_ptr<Node> grad_fn;  // set on outputs of recorded ops
};

// ---- factories ----
Tensor empty(const Shape& shape, TensorOptions options = {});
Tensor zeros(const Shape& shape, TensorOptions options = {});
Tensor ones(const Shape& shape, TensorOptions options = {});
Tensor full(const Shape& shape, double value, TensorOptions options = {});
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
Tensor empty_like(const Tensor& t);
// 0-d tensor holding `value`, with t's dtype and device (scalars in arithmetic).
Tensor scalar_like(const Tensor& t, double value);
Tensor scalar_tensor(double value, TensorOptions options = {});
// [start, end) by step; dtype defaults to i64 if all arguments are integers, else f32.
Tensor arange(double end, TensorOptions options = {.dtype = DType::i64});
Tensor arange(double start, double end, double step = 1.0, TensorOptions options = {.dtype = DType::i64});
Tensor linspace(double start, double end, int64_t steps, TensorOptions options = {});
// Random tensors drawn from a Philox generator (default: the global one; see core/rng.h).
Tensor rand(const Shape& shape, TensorOptions options = {}, Generator* gen = nullptr);   // U[0,1)
Tensor randn(const Shape& shape, TensorOptions options = {}, Generator* gen = nullptr);  // N(0,1)
Tensor randint(int64_t low, int64_t high, const Shape& shape, TensorOptions options = {.dtype = DType::i64},
               Generator* gen = nullptr);  // uniform integers in [low, high)
// From host values. The shape defaults to 1-D of the vector's length.
template <class T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape = {}, TensorOptions options = {.dtype = dtype_of<T>()});
Tensor tensor(std::initializer_list<double> values, TensorOptions options = {});
Tensor tensor(std::initializer_list<std::initializer_list<double>> rows, TensorOptions options = {});

// |a - b| <= atol + rtol·|b| elementwise (shapes broadcast); NaNs compare unequal unless equal_nan.
bool allclose(const Tensor& a, const Tensor& b, double rtol = 1e-5, double atol = 1e-8, bool equal_nan = false);

std::ostream& operator<<(std::ostream& os, const Tensor& t);

}  // namespace mmg
