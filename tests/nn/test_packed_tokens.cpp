// Packed tokens (nn/packed_tokens.h): pack and unpack move the right rows, their gradients pass
// gradcheck, and a TransformerEncoder that skips the padding gives every real token the numbers
// and the gradients of the padded computation, with zeros at the pads.
#include <doctest/doctest.h>

#include "core/mmgrad.h"
#include "nn/packed_tokens.h"
#include "nn/transformer.h"
#include "tests/nn/module_test_util.h"

using namespace mmg;
using namespace mmg::nn;
using namespace mmg::test;

namespace {

bool same_values(const Tensor& a, const Tensor& b) { return a.shape() == b.shape() && allclose(a, b, 0, 0); }

// [B,S,1] of 1.0 at the real tokens, 0.0 at the pads.
Tensor real_rows(const Tensor& mask, DType dtype = DType::f32) { return unsqueeze(mask.to(dtype), -1); }

}  // namespace

TEST_CASE("PackedTokens: pack keeps the real rows in order, unpack puts them back with zeros at the pads") {
  Tensor mask = make_mask({{1, 1, 0, 0}, {1, 1, 1, 1}, {0, 0, 0, 0}});  // one full text, one empty
  PackedTokens rows = PackedTokens::from_mask(mask);
  CHECK(rows.batch() == 3);
  CHECK(rows.seq() == 4);
  CHECK(rows.count() == 6);
  CHECK(rows.has_padding());
  Tensor x = arange(3 * 4 * 2).to(DType::f32).view({3, 4, 2});  // row b·4 + s holds 2·(b·4 + s) + {0, 1}
  Tensor packed = rows.pack(x);
  REQUIRE(packed.shape() == Shape{6, 2});
  CHECK(packed.to_vector<float>() == std::vector<float>{0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15});
  Tensor back = rows.unpack(packed);
  REQUIRE(back.shape() == Shape{3, 4, 2});
  CHECK(same_values(back, x * real_rows(mask)));

  CHECK_FALSE(PackedTokens::from_mask(make_mask({{1, 1}, {1, 1}})).has_padding());
  CHECK_FALSE(PackedTokens::if_padded(make_mask({{1, 1}, {1, 1}})).has_value());  // nothing to skip
  CHECK_FALSE(PackedTokens::if_padded(Tensor()).has_value());
  REQUIRE(PackedTokens::if_padded(mask).has_value());
  CHECK(PackedTokens::if_padded(mask)->count() == 6);
  CHECK_THROWS_WITH_AS(rows.pack(randn({3, 5, 2})), doctest::Contains("x [3,5,2] must be [B,S,D] with [B,S] = [3,4]"),
                       Error);
  CHECK_THROWS_WITH_AS(rows.unpack(randn({7, 2})), doctest::Contains("x [7,2] must be [N,D] with N = 6"), Error);
  CHECK_THROWS_WITH_AS(PackedTokens::from_mask(ones({2, 3})), doctest::Contains("key_mask must be bool"), Error);
  CHECK_THROWS_WITH_AS(PackedTokens::from_mask(make_mask({{1}}).view({1, 1, 1})),
                       doctest::Contains("key_mask [1,1,1] must be [B,S]"), Error);
}

TEST_CASE("PackedTokens: gradcheck of pack and unpack (f64)") {
  Tensor mask = make_mask({{1, 0, 1}, {0, 1, 1}});
  PackedTokens rows = PackedTokens::from_mask(mask);
  const TensorOptions f64{.dtype = DType::f64};
  GradcheckResult r = gradcheck([&](const std::vector<Tensor>& in) { return rows.pack(in[0]) * 1.5; },
                                {randn({2, 3, 4}, f64)});
  CHECK_MESSAGE(r.ok, r.message);
  r = gradcheck([&](const std::vector<Tensor>& in) { return rows.unpack(in[0]) * 1.5; }, {randn({4, 4}, f64)});
  CHECK_MESSAGE(r.ok, r.message);
}

TEST_CASE("TransformerEncoder with skip_padding: the padded numbers and gradients at every real token") {
  for (bool causal : {false, true}) {
    CAPTURE(causal);
    TransformerOptions padded{.dim = 16, .heads = 2, .mlp_ratio = 2.0}, packed = padded;
    packed.skip_padding = true;
    Generator gen_a(3), gen_b(3);
    TransformerEncoder a(padded, 2, true, &gen_a), b(packed, 2, true, &gen_b);
    b.load_state_dict(a.state_dict());
    Tensor mask = make_mask({{1, 1, 1, 0, 0, 0, 0}, {1, 1, 1, 1, 1, 1, 1}, {1, 0, 0, 0, 0, 0, 0}});
    Tensor real = real_rows(mask);
    Tensor xa = randn({3, 7, 16}), xb = xa.clone();
    xa.requires_grad_(true);
    xb.requires_grad_(true);
    Tensor ya = a.forward(xa, mask, causal), yb = b.forward(xb, mask, causal);
    CHECK(allclose(yb, ya * real, 1e-5, 1e-6));  // zeros at the pads, as `real` makes them
    CHECK(same_values(yb * real, yb));
    // A loss that reads the real tokens only (as every loss and pooled mean here does).
    Tensor w = randn({3, 7, 16}) * real;
    sum(ya * w).backward();
    sum(yb * w).backward();
    CHECK(allclose(xb.grad(), xa.grad(), 1e-5, 1e-6));
    auto pa = a.named_parameters(), pb = b.named_parameters();
    REQUIRE(pa.size() == pb.size());
    for (size_t i = 0; i < pa.size(); ++i) {
      CAPTURE(pa[i].first);
      CHECK(allclose(pb[i].second.grad(), pa[i].second.grad(), 1e-4, 1e-5));
    }
    // The weights of pictures: every real query's row as the padded encoder's.
    auto wa = a.forward_with_weights(xa.detach(), mask, causal), wb = b.forward_with_weights(xb.detach(), mask, causal);
    CHECK(allclose(wb.out, ya.detach() * real, 1e-5, 1e-6));
    for (size_t l = 0; l < wa.weights.size(); ++l) CHECK(allclose(wb.weights[l] * real, wa.weights[l] * real, 1e-5, 1e-6));
  }
}

TEST_CASE("TransformerEncoder with skip_padding: a batch without pads takes the padded path, a bad mask is named") {
  TransformerOptions o{.dim = 8, .heads = 2, .skip_padding = true};
  Generator gen(5);
  TransformerEncoder e(o, 1, true, &gen);
  Tensor x = randn({2, 3, 8});
  Tensor full = make_mask({{1, 1, 1}, {1, 1, 1}});
  CHECK(same_values(e.forward(x, full), e.forward(x)));
  CHECK_THROWS_WITH_AS(e.forward(x, make_mask({{1, 1}, {1, 0}})), doctest::Contains("[B,S] = [2,2]"), Error);
}
