// The autocast weight-cast cache (core/autocast.h): a weight used twice in a region is cast
// once, an in-place write makes the next use cast again, the outermost guard's end empties
// the cache, and the gradients are those of the uncached run, bit for bit.
#include <doctest/doctest.h>

#include <vector>

#include "core/mmgrad.h"
#include "nn/layers.h"
#include "nn/optim.h"

using namespace mmg;

namespace {

Tensor randn_f32(const Shape& s, uint64_t seed) {
  Generator g(seed);
  return randn(s, {.dtype = DType::f32}, &g);
}

Tensor weight(const Shape& s, uint64_t seed) { return (randn_f32(s, seed) * 0.3).detach().requires_grad_(true); }

// The change in the cache's counters across `f`.
template <class F>
AutocastCacheStats delta(F f) {
  const AutocastCacheStats before = autocast_cache_stats();
  f();
  const AutocastCacheStats after = autocast_cache_stats();
  return {after.hits - before.hits, after.misses - before.misses, after.entries};
}

}  // namespace

TEST_CASE("autocast cache: the second use of a weight gets the first cast's bytes") {
  for (DType low : {DType::bf16, DType::f16}) {
    CAPTURE(dtype_name(low));
    Tensor w = weight({5, 7}, 1);
    AutocastGuard autocast(low);
    Tensor c1, c2;
    const AutocastCacheStats d = delta([&] {
      c1 = autocast_to_low(w);
      c2 = autocast_to_low(w);
    });
    CHECK(d.misses == 1);
    CHECK(d.hits == 1);
    CHECK(d.entries == 1);
    CHECK(c1.dtype() == low);
    CHECK(c1.storage() == c2.storage());  // no second conversion: the same bytes
    CHECK(c1.data_ptr() == c2.data_ptr());
    CHECK(!c1.is_same(c2));               // each use its own handle, with its own graph node
    REQUIRE(c2.grad_fn());
    CHECK(c2.grad_fn()->name == "to");
    CHECK(c1.grad_fn() != c2.grad_fn());
    CHECK(c2.to_vector<double>() == w.detach().to(low).to_vector<double>());
    // linear and matmul go through it: two more uses, two more hits, no new entry.
    Tensor x = randn_f32({3, 7}, 2);
    const AutocastCacheStats ops = delta([&] {
      linear(x, w);
      matmul(x, w.transpose(0, 1));  // a view of the weight is not a leaf: cast, not cached
      linear(x, w);
    });
    CHECK(ops.hits == 2);
    CHECK(ops.misses == 0);
    CHECK(ops.entries == 1);
  }
}

TEST_CASE("autocast cache: only leaves that require grad are cached, and cache = false turns it off") {
  Tensor w = weight({4, 4}, 3);
  Tensor frozen = randn_f32({4, 4}, 4);  // requires no grad: an input, not a weight
  AutocastGuard autocast(DType::bf16);
  Tensor activation = w * 2.0;           // not a leaf
  const AutocastCacheStats d = delta([&] {
    CHECK(autocast_to_low(frozen).data_ptr() != autocast_to_low(frozen).data_ptr());
    CHECK(autocast_to_low(activation).data_ptr() != autocast_to_low(activation).data_ptr());
  });
  CHECK(d.hits == 0);
  CHECK(d.misses == 0);
  CHECK(d.entries == 0);
  AutocastGuard uncached(DType::bf16, /*enabled=*/true, /*cache=*/false);
  const AutocastCacheStats off = delta([&] { CHECK(autocast_to_low(w).data_ptr() != autocast_to_low(w).data_ptr()); });
  CHECK(off.hits == 0);
  CHECK(off.misses == 0);
}

TEST_CASE("autocast cache: an in-place write to the weight makes the next use cast again") {
  Tensor w = weight({3, 5}, 5);
  AutocastGuard autocast(DType::bf16);
  Tensor before = autocast_to_low(w);
  const std::vector<double> old_values = before.to_vector<double>();
  {
    NoGradGuard no_grad;
    w.detach().copy_(w * -2.0);  // through another handle on the same storage, as optimisers write
  }
  Tensor after;
  const AutocastCacheStats d = delta([&] { after = autocast_to_low(w); });
  CHECK(d.misses == 1);
  CHECK(d.hits == 0);
  CHECK(d.entries == 1);  // the stale entry replaced, not kept beside the new one
  CHECK(after.data_ptr() != before.data_ptr());
  CHECK(after.to_vector<double>() == w.detach().to(DType::bf16).to_vector<double>());
  CHECK(before.to_vector<double>() == old_values);  // the old copy, still held, is untouched
  // fill_ is a write too; and then the new copy is served again.
  {
    NoGradGuard no_grad;
    w.fill_(0.25);
  }
  const AutocastCacheStats d2 = delta([&] {
    CHECK(autocast_to_low(w).to_vector<double>() == std::vector<double>(15, 0.25));
    autocast_to_low(w);
  });
  CHECK(d2.misses == 1);
  CHECK(d2.hits == 1);
  // A write into the cached copy itself (through a handle a use returned) stales it as well.
  {
    NoGradGuard no_grad;
    autocast_to_low(w).detach().fill_(-1.0);
  }
  const AutocastCacheStats d3 = delta([&] {
    CHECK(autocast_to_low(w).to_vector<double>() == std::vector<double>(15, 0.25));
  });
  CHECK(d3.misses == 1);
  CHECK(d3.hits == 0);
}

TEST_CASE("autocast cache: a weight whose storage is swapped (Module::to) is cast from its new bytes") {
  Generator gen(17);
  nn::Linear layer(4, 3, /*bias=*/false, &gen);
  Tensor w = layer.weight;
  AutocastGuard autocast(DType::bf16);
  const std::vector<double> first = autocast_to_low(w).to_vector<double>();
  layer.to(DType::f64);  // new storage under the same handle
  {
    NoGradGuard no_grad;
    w.copy_(w * 3.0);
  }
  layer.to(DType::f32);  // and again: f32, the same TensorImpl, other bytes
  REQUIRE(w.dtype() == DType::f32);
  const AutocastCacheStats d = delta([&] {
    CHECK(autocast_to_low(w).to_vector<double>() == w.detach().to(DType::bf16).to_vector<double>());
  });
  CHECK(d.misses == 1);
  CHECK(d.hits == 0);
  CHECK(autocast_to_low(w).to_vector<double>() != first);
}

TEST_CASE("autocast cache: an optimiser step inside the region invalidates the casts of the weights it updates") {
  Tensor w = weight({4, 6}, 6), unused = weight({2, 2}, 7);
  nn::SGD opt({nn::ParamGroup{.params = {{"w", w}, {"unused", unused}}, .lr = 0.1}});
  Tensor x = randn_f32({3, 6}, 8);
  AutocastGuard autocast(DType::bf16);
  autocast_to_low(unused);
  linear(x, w).to(DType::f32).sum().backward();  // w gets a gradient, `unused` none
  opt.step();
  const AutocastCacheStats d = delta([&] {
    CHECK(autocast_to_low(w).to_vector<double>() == w.detach().to(DType::bf16).to_vector<double>());
    autocast_to_low(unused);
  });
  CHECK(d.misses == 1);  // w: updated, cast again
  CHECK(d.hits == 1);    // unused: not stepped (no gradient), its copy still good
}

TEST_CASE("autocast cache: emptied when the outermost guard ends, kept across inner ones") {
  Tensor w = weight({3, 3}, 9);
  {
    AutocastGuard outer(DType::bf16);
    autocast_to_low(w);
    {
      AutocastGuard inner(DType::f16);
      autocast_to_low(w);  // another dtype: an entry of its own
      CHECK(autocast_cache_stats().entries == 2);
      {
        AutocastGuard off(DType::bf16, /*enabled=*/false);
        CHECK(autocast_to_low(w).is_same(w));  // autocast off: nothing cast, nothing cached
      }
      CHECK(autocast_cache_stats().entries == 2);
    }
    CHECK(autocast_cache_stats().entries == 2);
    CHECK(delta([&] { autocast_to_low(w); }).hits == 1);
  }
  CHECK(autocast_cache_stats().entries == 0);
  AutocastGuard next(DType::bf16);
  const AutocastCacheStats d = delta([&] { autocast_to_low(w); });
  CHECK(d.misses == 1);  // a new region casts afresh
  CHECK(d.hits == 0);
}

TEST_CASE("autocast cache: a cast made under NoGradGuard still carries the gradient when reused with grad on") {
  Tensor w = weight({2, 3}, 10);
  Tensor x = randn_f32({4, 3}, 11);
  auto grad_of_w = [&](bool primed_without_grad) {
    w.zero_grad();
    AutocastGuard autocast(DType::bf16);
    if (primed_without_grad) {
      NoGradGuard no_grad;
      CHECK(!linear(x, w).requires_grad());  // fills the cache, records nothing
    }
    Tensor y = linear(x, w);
    CHECK(autocast_cache_stats().entries == 1);
    REQUIRE(y.requires_grad());
    y.to(DType::f32).sum().backward();
    REQUIRE(w.grad().defined());
    return w.grad().to_vector<double>();
  };
  const AutocastCacheStats before = autocast_cache_stats();
  const std::vector<double> primed = grad_of_w(true);
  CHECK(autocast_cache_stats().hits - before.hits == 1);  // the second use was served from the cache
  CHECK(primed == grad_of_w(false));
}

TEST_CASE("autocast cache: a weight used several times gets the uncached run's gradient, bit for bit") {
  for (DType low : {DType::bf16, DType::f16}) {
    CAPTURE(dtype_name(low));
    Tensor w = weight({6, 8}, 12), b = weight({6}, 13), head = weight({3, 6}, 14);
    Tensor x1 = randn_f32({5, 8}, 15), x2 = randn_f32({7, 8}, 16);
    Tensor target1 = from_vector<int64_t>({0, 1, 2, 0, 1}, {5});
    Tensor target2 = from_vector<int64_t>({2, 2, 1, 0, 1, 0, 2}, {7});
    // An encoder (w, b) run three times and a head run twice in one step.
    auto grads = [&](bool cache) {
      for (Tensor* p : {&w, &b, &head}) p->zero_grad();
      const AutocastCacheStats before = autocast_cache_stats();
      Tensor loss;
      {
        AutocastGuard autocast(low, /*enabled=*/true, cache);
        Tensor h1 = gelu(linear(x1, w, b)), h2 = gelu(linear(x2, w, b));
        Tensor h3 = gelu(linear(x1 * 0.5, w, b));
        loss = cross_entropy(linear(h1 + h3, head), target1) + cross_entropy(linear(h2, head), target2);
      }
      loss.backward();
      const AutocastCacheStats after = autocast_cache_stats();
      CHECK(after.hits - before.hits == (cache ? 5 : 0));  // w: 2, b: 2, head: 1
      CHECK(after.misses - before.misses == (cache ? 3 : 0));
      return std::vector<std::vector<double>>{w.grad().to_vector<double>(), b.grad().to_vector<double>(),
                                              head.grad().to_vector<double>()};
    };
    const auto cached = grads(true), uncached = grads(false);
    CHECK(cached[0] == uncached[0]);
    CHECK(cached[1] == uncached[1]);
    CHECK(cached[2] == uncached[2]);
  }
}
