// Tensor factories: empty, zeros, full, arange, linspace, random tensors, from host values.
#include <cmath>

#include "core/cuda_memory.h"
#include "core/dispatch.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "kernels/copy.h"
#include "kernels/cpu/copy.h"
#include "kernels/cuda/runtime.h"
#include "kernels/philox.h"

namespace mmg {

Generator& default_generator() {
  static Generator g(0);
  return g;
}
void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

static void check_shape(const Shape& shape, const char* op) {
  for (int64_t s : shape) MMG_CHECK(s >= 0, "{}: negative size in shape {}", op, shape_str(shape));
  MMG_CHECK(shape.size() <= static_cast<size_t>(kMaxDims), "{}: shape {} has more than {} dims", op,
            shape_str(shape), kMaxDims);
}

Tensor empty(const Shape& shape, TensorOptions options) {
  check_shape(shape, "empty");
  MMG_CHECK(!options.pinned || options.device.is_cpu(),
            "empty: pinned memory is host memory; a tensor {} on {} cannot be pinned", shape_str(shape),
            options.device.str());
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(numel_of(shape)) * dtype_size(options.dtype),
                                            options.device, options.pinned && pinned_memory_available());
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = options.dtype;
  Tensor t(impl);
  if (options.requires_grad) t.requires_grad_(true);
  return t;
}

// Fill a fresh tensor with f(i) for each linear index i, converted to the tensor's dtype.
// For a CUDA tensor the values are computed on the host and copied to the device once: the
// index sequences, random draws (the same Philox numbers on every device, by construction)
// and host vectors that come here are made once, not in a training loop's inner steps.
template <class F>
static Tensor generate(const Shape& shape, TensorOptions options, F&& f) {
  bool rg = options.requires_grad;
  options.requires_grad = false;
  if (!options.device.is_cpu()) {
    const std::string reason = device_unusable_reason(options.device);
    MMG_CHECK(reason.empty(), "tensor on {}: {}", options.device.str(), reason);
    const Device device = options.device;
    options.device = Device::cpu();
    Tensor t = generate(shape, options, f).to(device);
    if (rg) t.requires_grad_(true);
    return t;
  }
  Tensor t = empty(shape, options);
  visit_dtype(options.dtype, [&]<class T>() {
    T* p = static_cast<T*>(t.data_ptr());
    cpu::parallel_for(t.numel(), 1 << 14, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) p[i] = cpu::convert_value<T>(f(i));
    });
  });
  if (rg) t.requires_grad_(true);
  return t;
}

// On CUDA: a fill kernel writes the value, converted on the host exactly as on the CPU.
Tensor full(const Shape& shape, double value, TensorOptions options) {
  if (options.device.is_cuda()) {
    const bool rg = options.requires_grad;
    options.requires_grad = false;
    Tensor t = empty(shape, options);  // throws, saying why, when the device is not usable
    visit_dtype(options.dtype, [&]<class T>() {
      if constexpr (kWithCuda) {
        cuda::DeviceGuard guard(options.device.index);
        cuda::fill<T>(static_cast<T*>(t.data_ptr()), t.numel(), cpu::convert_value<T>(value));
      }
    });
    if (rg) t.requires_grad_(true);
    return t;
  }
  return generate(shape, options, [value](int64_t) { return value; });
}
Tensor zeros(const Shape& shape, TensorOptions options) { return full(shape, 0.0, options); }
Tensor ones(const Shape& shape, TensorOptions options) { return full(shape, 1.0, options); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), {.dtype = t.dtype(), .device = t.device()}); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), {.dtype = t.dtype(), .device = t.device()}); }
Tensor full_like(const Tensor& t, double v) { return full(t.shape(), v, {.dtype = t.dtype(), .device = t.device()}); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), {.dtype = t.dtype(), .device = t.device()}); }
Tensor scalar_like(const Tensor& t, double v) { return full({}, v, {.dtype = t.dtype(), .device = t.device()}); }
Tensor scalar_tensor(double v, TensorOptions options) { return full({}, v, options); }

Tensor arange(double end, TensorOptions options) { return arange(0.0, end, 1.0, options); }

Tensor arange(double start, double end, double step, TensorOptions options) {
  MMG_CHECK(step != 0, "arange: step must be non-zero");
  MMG_CHECK(std::isfinite(start) && std::isfinite(end), "arange: start {} and end {} must be finite", start, end);
  double count = std::ceil((end - start) / step);
  int64_t n = count > 0 ? static_cast<int64_t>(count) : 0;
  return generate({n}, options, [=](int64_t i) { return start + step * static_cast<double>(i); });
}

Tensor linspace(double start, double end, int64_t steps, TensorOptions options) {
  MMG_CHECK(steps >= 0, "linspace: steps must be >= 0, got {}", steps);
  double delta = steps > 1 ? (end - start) / static_cast<double>(steps - 1) : 0.0;
  // The second half counts back from `end` so both ends are exact, as in PyTorch.
  return generate({steps}, options, [=](int64_t i) {
    return i < steps / 2 ? start + delta * static_cast<double>(i) : end - delta * static_cast<double>(steps - 1 - i);
  });
}

static Generator& pick(Generator* gen) { return gen ? *gen : default_generator(); }

Tensor rand(const Shape& shape, TensorOptions options, Generator* gen) {
  MMG_CHECK(is_floating(options.dtype), "rand: needs a floating dtype, got {}", dtype_name(options.dtype));
  Generator& g = pick(gen);
  uint64_t seed = g.seed(), base = g.reserve(static_cast<uint64_t>(numel_of(shape)));
  bool f64 = options.dtype == DType::f64;
  return generate(shape, options, [=](int64_t i) {
    uint64_t c = base + static_cast<uint64_t>(i);
    return f64 ? philox_uniform_f64(seed, c) : static_cast<double>(philox_uniform_f32(seed, c));
  });
}

Tensor randn(const Shape& shape, TensorOptions options, Generator* gen) {
  MMG_CHECK(is_floating(options.dtype), "randn: needs a floating dtype, got {}", dtype_name(options.dtype));
  Generator& g = pick(gen);
  uint64_t seed = g.seed(), base = g.reserve(static_cast<uint64_t>(numel_of(shape)));
  return generate(shape, options, [=](int64_t i) { return philox_normal(seed, base + static_cast<uint64_t>(i)); });
}

Tensor randint(int64_t low, int64_t high, const Shape& shape, TensorOptions options, Generator* gen) {
  MMG_CHECK(high > low, "randint: empty range [{}, {})", low, high);
  Generator& g = pick(gen);
  uint64_t seed = g.seed(), base = g.reserve(static_cast<uint64_t>(numel_of(shape)));
  uint64_t range = static_cast<uint64_t>(high - low);
  return generate(shape, options, [=](int64_t i) {
    PhiloxOut r = philox4x32_10(seed, base + static_cast<uint64_t>(i));
    uint64_t bits = (static_cast<uint64_t>(r.w[1]) << 32) | r.w[0];
    return static_cast<double>(low + static_cast<int64_t>(bits % range));  // bias < range / 2^64
  });
}

template <class T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape, TensorOptions options) {
  Shape s = shape.empty() ? Shape{static_cast<int64_t>(values.size())} : shape;
  MMG_CHECK(numel_of(s) == static_cast<int64_t>(values.size()), "from_vector: {} values do not fill shape {}",
            values.size(), shape_str(s));
  return generate(s, options, [&](int64_t i) { return cpu::convert_value<double>(static_cast<T>(values[i])); });
}
template Tensor from_vector<float>(const std::vector<float>&, const Shape&, TensorOptions);
template Tensor from_vector<double>(const std::vector<double>&, const Shape&, TensorOptions);
template Tensor from_vector<int32_t>(const std::vector<int32_t>&, const Shape&, TensorOptions);
template Tensor from_vector<int64_t>(const std::vector<int64_t>&, const Shape&, TensorOptions);
template Tensor from_vector<uint8_t>(const std::vector<uint8_t>&, const Shape&, TensorOptions);
template Tensor from_vector<bool>(const std::vector<bool>&, const Shape&, TensorOptions);

Tensor tensor(std::initializer_list<double> values, TensorOptions options) {
  std::vector<double> v(values);
  return from_vector(v, {static_cast<int64_t>(v.size())}, options);
}

Tensor tensor(std::initializer_list<std::initializer_list<double>> rows, TensorOptions options) {
  std::vector<double> v;
  size_t cols = rows.size() ? rows.begin()->size() : 0;
  for (const auto& r : rows) {
    MMG_CHECK(r.size() == cols, "tensor: ragged rows ({} and {} values)", cols, r.size());
    v.insert(v.end(), r.begin(), r.end());
  }
  return from_vector(v, {static_cast<int64_t>(rows.size()), static_cast<int64_t>(cols)}, options);
}

}  // namespace mmg
