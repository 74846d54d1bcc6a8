#include "core/tensor.h"

#include <cmath>

#include "core/autograd.h"
#include "core/cuda_memory.h"
#include "core/dispatch.h"
#include "core/kernel_versions.h"
#include "core/ops.h"
#include "core/ops/device_checks.h"
#include "core/profile.h"
#include "kernels/copy.h"
#include "kernels/cpu/copy.h"
#include "kernels/cuda/runtime.h"

namespace mmg {

// ---- metadata ----
static TensorImpl* checked(const std::shared_ptr<TensorImpl>& p) {
  MMG_CHECK(p != nullptr, "tensor: use of an undefined tensor");
  return p.get();
}

const Shape& Tensor::shape() const { return checked(impl_)->shape; }
const Shape& Tensor::strides() const { return checked(impl_)->strides; }
int64_t Tensor::offset() const { return checked(impl_)->offset; }
int64_t Tensor::dim() const { return static_cast<int64_t>(shape().size()); }
int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size", shape())]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim(d, dim(), "stride", shape())]; }
int64_t Tensor::numel() const { return numel_of(shape()); }
DType Tensor::dtype() const { return checked(impl_)->dtype; }
Device Tensor::device() const { return checked(impl_)->storage->device(); }
const std::shared_ptr<Storage>& Tensor::storage() const { return checked(impl_)->storage; }

bool Tensor::is_contiguous() const {
  const Shape& sh = shape();
  const Shape& st = strides();
  int64_t expected = 1;
  for (size_t i = sh.size(); i-- > 0;) {
    if (sh[i] == 1) continue;  // the stride of a size-1 dim never matters
    if (st[i] != expected) return false;
    expected *= sh[i];
  }
  return true;
}

void* Tensor::data_ptr() const {
  TensorImpl* p = checked(impl_);
  return static_cast<char*>(p->storage->data()) + p->offset * static_cast<int64_t>(dtype_size(p->dtype));
}

void Tensor::check_dtype(DType expected, const char* what) const {
  MMG_CHECK(dtype() == expected, "{}: tensor has dtype {}, accessed as {}", what, dtype_name(dtype()),
            dtype_name(expected));
}

// ---- autograd ----
bool Tensor::requires_grad() const { return checked(impl_)->requires_grad; }

Tensor& Tensor::requires_grad_(bool on) {
  TensorImpl* p = checked(impl_);
  MMG_CHECK(!on || is_floating(p->dtype), "requires_grad_: only floating tensors can require grad, got {} {}",
            dtype_name(p->dtype), shape_str(p->shape));
  MMG_CHECK(p->grad_fn == nullptr || on,
            "requires_grad_: cannot turn off requires_grad on a non-leaf tensor {} (use detach())",
            shape_str(p->shape));
  p->requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const { return checked(impl_)->grad; }
void Tensor::set_grad(const Tensor& g) {
  MMG_CHECK(!g.defined() || g.shape() == shape(), "set_grad: gradient shape {} does not match tensor shape {}",
            shape_str(g.shape()), shape_str(shape()));
  checked(impl_)->grad = g;
}
void Tensor::zero_grad() { checked(impl_)->grad = Tensor(); }
const std::shared_ptr<Node>& Tensor::grad_fn() const { return checked(impl_)->grad_fn; }
bool Tensor::is_leaf() const { return checked(impl_)->grad_fn == nullptr; }

void Tensor::backward(const Tensor& grad, bool retain_graph) const { run_backward(*this, grad, retain_graph); }

Tensor Tensor::detach() const {
  TensorImpl* p = checked(impl_);
  auto d = std::make_shared<TensorImpl>();
  d->storage = p->storage;
  d->shape = p->shape;
  d->strides = p->strides;
  d->offset = p->offset;
  d->dtype = p->dtype;
  return Tensor(d);
}

// ---- copies and conversion ----

// dst[i] = D(src[i]) for two tensors of one shape on one device, each with its strides:
// the copy kernel of that device (kernels/cpu/copy.h, kernels/copy.h; on CUDA the
// version kernel_version("copy") names).
static void copy_values(const Tensor& src, const Tensor& dst, const char* op) {
  const int ndim = static_cast<int>(dst.dim());
  MMG_CHECK(ndim <= kMaxDims, "{}: tensors have at most {} dims, got {}", op, kMaxDims, shape_str(dst.shape()));
  const bool cuda = on_cuda(op, dst);
  const bool both_contiguous = src.is_contiguous() && dst.is_contiguous();
  visit_dtype(src.dtype(), [&]<class S>() {
    visit_dtype(dst.dtype(), [&]<class D>() {
      const S* s = static_cast<const S*>(src.data_ptr());
      D* d = static_cast<D*>(dst.data_ptr());
      if (cuda) {
        if constexpr (kWithCuda) {
          cuda::DeviceGuard guard(dst.device().index);
          auto* kernel = kernel_version("copy") == 2 ? cuda::copy_cast_v2<D, S> : cuda::copy_cast<D, S>;
          kernel(s, src.strides().data(), d, dst.strides().data(), ndim, dst.shape().data(), dst.numel());
        }
        return;
      }
      cpu::copy_cast<D, S>(s, src.strides().data(), d, dst.strides().data(), ndim, dst.shape().data(), dst.numel(),
                           both_contiguous);
    });
  });
}

// A new contiguous tensor of `dtype` holding the values of `src`, on src's device (no autograd).
static Tensor copy_as(const Tensor& src, DType dtype) {
  Tensor out = empty(src.shape(), {.dtype = dtype, .device = src.device()});
  copy_values(src, out, "copy");
  return out;
}

Tensor Tensor::to(DType target) const {
  if (dtype() == target) return *this;
  MMG_PROFILE_OP("to");
  MMG_CHECK(!(requires_grad() && grad_mode_enabled()) || is_floating(target),
            "to: cannot convert a tensor that requires grad to {} (gradients need a floating dtype)",
            dtype_name(target));
  DType source = dtype();
  Tensor out = copy_as(*this, target);
  return record_op("to", out, {*this}, [source](const Tensor& g) -> Grads { return {g.to(source)}; });
}

// Moves the bytes of a contiguous copy to the target device: host→device through the
// pinned pool (core/cuda_memory.h: the host does not wait), device→host and device↔device
// (kernels/cuda/runtime.h; each waits where the host needs it). Differentiable: the gradient
// goes back to the source device.
Tensor Tensor::to(Device target, bool non_blocking) const {
  if (device() == target) return *this;
  MMG_PROFILE_OP("to");
  const std::string reason = device_unusable_reason(target);
  MMG_CHECK(reason.empty(), "to: cannot move {} {} from {} to {}: {}", dtype_name(dtype()), shape_str(shape()),
            device().str(), target.str(), reason);
  const Device source = device();
  Tensor src = detach().contiguous();
  Tensor out = empty(shape(), {.dtype = dtype(), .device = target});
  const size_t bytes = static_cast<size_t>(numel()) * dtype_size(dtype());
  if constexpr (kWithCuda) {
    if (source.is_cpu())
      cuda_copy_from_host(out.data_ptr(), target.index, src.data_ptr(), bytes,
                          src.is_pinned() ? src.storage()->data() : nullptr, non_blocking);
    else if (target.is_cpu()) cuda::copy_device_to_host(out.data_ptr(), src.data_ptr(), bytes, source.index);
    else cuda::copy_device_to_device(out.data_ptr(), target.index, src.data_ptr(), source.index, bytes);
  } else {
    MMG_FAIL("to: cannot move {} {} from {} to {}: {}", dtype_name(dtype()), shape_str(shape()), source.str(),
             target.str(), cuda_status());
  }
  return record_op("to", out, {*this}, [source](const Tensor& g) -> Grads { return {g.to(source)}; });
}

bool Tensor::is_pinned() const { return storage()->pinned(); }

Tensor Tensor::pin_memory() const {
  MMG_CHECK(device().is_cpu(), "pin_memory: the tensor {} is on {}; only CPU tensors can be pinned",
            shape_str(shape()), device().str());
  if (is_pinned() || !pinned_memory_available()) return *this;
  Tensor out = empty(shape(), {.dtype = dtype(), .pinned = true});
  copy_values(*this, out, "pin_memory");
  return record_op("pin_memory", out, {*this}, [](const Tensor& g) -> Grads { return {g}; });
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  MMG_PROFILE_OP("contiguous");
  Tensor out = copy_as(*this, dtype());
  return record_op("contiguous", out, {*this}, [](const Tensor& g) -> Grads { return {g}; });
}

Tensor Tensor::clone() const {
  MMG_PROFILE_OP("clone");
  Tensor out = copy_as(*this, dtype());
  return record_op("clone", out, {*this}, [](const Tensor& g) -> Grads { return {g}; });
}

double Tensor::item() const {
  MMG_CHECK(numel() == 1, "item: tensor has {} elements (shape {}); item() needs exactly one", numel(),
            shape_str(shape()));
  if (!device().is_cpu()) return detach().to(Device::cpu()).item();
  return visit_dtype(dtype(), [&]<class T>() { return cpu::convert_value<double>(*static_cast<const T*>(data_ptr())); });
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = detach().to(dtype_of<T>()).contiguous().to(Device::cpu());
  const T* p = static_cast<const T*>(c.data_ptr());
  return std::vector<T>(p, p + c.numel());
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;
template std::vector<bool> Tensor::to_vector<bool>() const;

static void check_inplace(const Tensor& t, const char* op) {
  MMG_CHECK(!(grad_mode_enabled() && t.requires_grad() && t.is_leaf()),
            "{}: in-place write into a leaf {} that requires grad; do it under NoGradGuard", op,
            shape_str(t.shape()));
  MMG_CHECK(!(grad_mode_enabled() && t.grad_fn()),
            "{}: in-place write into a tensor {} produced by '{}' would corrupt its graph; detach() it first", op,
            shape_str(t.shape()), t.grad_fn()->name);
}

Tensor& Tensor::fill_(double value) {
  check_inplace(*this, "fill_");
  Tensor v = scalar_tensor(value, {.dtype = dtype(), .device = device()});
  return copy_(v);
}

Tensor& Tensor::copy_(const Tensor& src) {
  MMG_PROFILE_OP("copy_");
  check_inplace(*this, "copy_");
  MMG_CHECK(src.device() == device(), "copy_: source on {} but destination on {}", src.device().str(),
            device().str());
  Shape b = broadcast_shapes(src.shape(), shape(), "copy_");
  MMG_CHECK(b == shape(), "copy_: source {} does not broadcast to destination {}", shape_str(src.shape()),
            shape_str(shape()));
  Tensor s = mmg::expand(src.detach(), shape());
  // Copy through a temporary when source and destination share storage (e.g. x.copy_(x.t())).
  if (s.storage() == storage()) s = copy_as(s, s.dtype());
  copy_values(s, *this, "copy_");
  storage()->bump_version();
  return *this;
}

// ---- method sugar ----
Tensor Tensor::view(const Shape& s) const { return mmg::view(*this, s); }
Tensor Tensor::reshape(const Shape& s) const { return mmg::reshape(*this, s); }
Tensor Tensor::transpose(int64_t a, int64_t b) const { return mmg::transpose(*this, a, b); }
Tensor Tensor::permute(const Shape& dims) const { return mmg::permute(*this, dims); }
Tensor Tensor::unsqueeze(int64_t d) const { return mmg::unsqueeze(*this, d); }
Tensor Tensor::squeeze(int64_t d) const { return mmg::squeeze(*this, d); }
Tensor Tensor::expand(const Shape& s) const { return mmg::expand(*this, s); }
Tensor Tensor::slice(int64_t d, int64_t s, int64_t e, int64_t st) const { return mmg::slice(*this, d, s, e, st); }
Tensor Tensor::sum() const { return mmg::sum(*this); }
Tensor Tensor::sum(const Shape& dims, bool keepdim) const { return mmg::sum(*this, dims, keepdim); }
Tensor Tensor::mean() const { return mmg::mean(*this); }
Tensor Tensor::mean(const Shape& dims, bool keepdim) const { return mmg::mean(*this, dims, keepdim); }
Tensor Tensor::exp() const { return mmg::exp(*this); }
Tensor Tensor::log() const { return mmg::log(*this); }

// ---- comparison of values ----
bool allclose(const Tensor& a, const Tensor& b, double rtol, double atol, bool equal_nan) {
  Shape s = broadcast_shapes(a.shape(), b.shape(), "allclose");
  std::vector<double> x = a.detach().expand(s).to_vector<double>();
  std::vector<double> y = b.detach().expand(s).to_vector<double>();
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) || std::isnan(y[i])) {
      if (equal_nan && std::isnan(x[i]) && std::isnan(y[i])) continue;
      return false;
    }
    if (x[i] == y[i]) continue;  // equal infinities
    if (!(std::abs(x[i] - y[i]) <= atol + rtol * std::abs(y[i]))) return false;
  }
  return true;
}

}  // namespace mmg
