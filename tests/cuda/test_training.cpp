// Training on CUDA: a tiny ViT classifier (vit-micro with dropout, a linear head and
// cross-entropy) moved to the GPU with Module::to(Device) computes the CPU's loss and
// gradients (same initial weights, same dropout masks from twin generators), within 1e-4
// relative; one AdamW step and gradient clipping agree too; the fused multi-tensor AdamW
// kernel gives the op-by-op CPU update bit for bit; a few steps on the GPU lower the loss; and a
// fusion layer with a gated (GEGLU) MLP gives the CPU's output and gradients.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "models/vit.h"
#include "nn/clip.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "nn/optim.h"
#include "nn/transformer.h"
#include "tests/cuda/cuda_test_util.h"

using namespace mmg;
using namespace mmg::testing;

namespace {

struct TinyClassifier : nn::Module {
  std::shared_ptr<models::ViT> vit;
  std::shared_ptr<nn::Linear> head;
  explicit TinyClassifier(Generator* gen) {
    models::ViTConfig c = models::ViTConfig::preset("vit-micro");
    c.dropout = 0.1;
    vit = register_module("vit", std::make_shared<models::ViT>(c, gen));
    head = register_module("head", std::make_shared<nn::Linear>(c.dim, 5, true, gen));
  }
  Tensor loss(const Tensor& images, const Tensor& labels) const {
    return cross_entropy(head->forward(vit->forward(images).pooled), labels);
  }
};

constexpr double kRtol = 1e-4, kAtol = 1e-5;

void check_params(const nn::Module& gpu, const nn::Module& cpu, bool grads, const std::string& what) {
  nn::NamedTensors g = gpu.named_parameters(), c = cpu.named_parameters();
  REQUIRE(g.size() == c.size());
  for (size_t i = 0; i < g.size(); ++i) {
    REQUIRE(g[i].first == c[i].first);
    CHECK(g[i].second.device() == kGpu);
    if (grads) {
      REQUIRE_MESSAGE(g[i].second.grad().defined(), g[i].first);
      check_parity(g[i].second.grad(), c[i].second.grad(), kRtol, kAtol, what + " " + g[i].first);
    } else {
      check_parity(g[i].second, c[i].second, kRtol, kAtol, what + " " + g[i].first);
    }
  }
}

}  // namespace

TEST_CASE("cuda training: a tiny ViT's loss, gradients, clipping and AdamW step equal the CPU's") {
  require_gpu();
  const uint64_t seed = static_cast<uint64_t>(integers({1}, DType::i64, 0, int64_t(1) << 40).item());
  Generator gen_cpu(seed), gen_gpu(seed);  // twins: the same weights, then the same dropout masks
  TinyClassifier cpu(&gen_cpu), gpu(&gen_gpu);
  gpu.to(kGpu);
  for (const auto& [name, t] : gpu.named_buffers()) CHECK_MESSAGE(t.device() == kGpu, name);
  Tensor images = uniform({3, 3, 8, 8}, DType::f32, -1, 1);
  Tensor labels = integers({3}, DType::i64, 0, 5);
  nn::AdamW opt_cpu(cpu, 1e-2, 0.05), opt_gpu(gpu, 1e-2, 0.05);

  for (int step = 0; step < 3; ++step) {
    const std::string at = "step " + std::to_string(step);
    opt_cpu.zero_grad();
    opt_gpu.zero_grad();
    Tensor loss_cpu = cpu.loss(images, labels), loss_gpu = gpu.loss(images.to(kGpu), labels.to(kGpu));
    check_parity(loss_gpu, loss_cpu, kRtol, kAtol, at + " loss");
    loss_cpu.backward();
    loss_gpu.backward();
    check_params(gpu, cpu, true, at + " gradient");
    const double n_cpu = nn::clip_grad_norm(cpu.trainable_parameters(), 0.5);
    const double n_gpu = nn::clip_grad_norm(gpu.trainable_parameters(), 0.5);
    CHECK(n_gpu == doctest::Approx(n_cpu).epsilon(kRtol));
    check_params(gpu, cpu, true, at + " clipped gradient");
    opt_cpu.step();
    opt_gpu.step();
    check_params(gpu, cpu, false, at + " parameter after AdamW");
  }
  // The optimiser's state stayed on the device.
  for (const auto& [key, t] : opt_gpu.state_dict())
    if (t.dim() > 0) CHECK_MESSAGE(t.device() == kGpu, key);
}

TEST_CASE("cuda AdamW: the fused kernel gives the op-by-op CPU update bit for bit") {
  require_gpu();
  for (DType dt : {DType::f32, DType::f64}) {
    // Forty parameters (more than one launch of 32), sizes 1 to past a grid's stride, both
    // weight-decay groups; the same gradients on both devices at every step.
    std::vector<nn::ParamGroup> cpu_groups(2), gpu_groups(2);
    for (int g = 0; g < 2; ++g) {
      cpu_groups[g].lr = gpu_groups[g].lr = 3e-3 * (g + 1);
      cpu_groups[g].weight_decay = gpu_groups[g].weight_decay = g == 0 ? 0.1 : 0.0;
    }
    std::vector<Tensor> cpu_params, gpu_params;
    for (int i = 0; i < 40; ++i) {
      const int64_t n = i == 39 ? 70001 : 1 + (i * 37) % 300;
      Tensor p = uniform({n}, dt, -1, 1);
      Tensor pc = p.clone().detach().requires_grad_(true), pg = p.to(kGpu).detach().requires_grad_(true);
      cpu_groups[i % 2].params.emplace_back("p" + std::to_string(i), pc);
      gpu_groups[i % 2].params.emplace_back("p" + std::to_string(i), pg);
      cpu_params.push_back(pc);
      gpu_params.push_back(pg);
    }
    nn::AdamW opt_cpu(cpu_groups), opt_gpu(gpu_groups);
    for (int step = 0; step < 4; ++step) {
      for (size_t i = 0; i < cpu_params.size(); ++i) {
        if (step == 2 && i == 5) {  // a parameter without a gradient this step is skipped
          cpu_params[i].zero_grad();
          gpu_params[i].zero_grad();
          continue;
        }
        Tensor g = uniform(cpu_params[i].shape(), dt, -1, 1);
        cpu_params[i].set_grad(g);
        gpu_params[i].set_grad(g.to(kGpu));
      }
      nn::StateDict before = opt_gpu.state_dict();
      std::vector<double> before_m = before.at("exp_avg.p0").to_vector<double>();
      opt_cpu.step();
      opt_gpu.step();
      for (size_t i = 0; i < cpu_params.size(); ++i)
        check_parity(gpu_params[i], cpu_params[i], 0, 0, "AdamW " + dtype_name(dt) + " parameter " + std::to_string(i));
      nn::StateDict sc = opt_cpu.state_dict(), sg = opt_gpu.state_dict();
      for (const auto& [key, t] : sc) check_parity(sg.at(key), t, 0, 0, "AdamW state " + key);
      // A snapshot taken before the step still holds the old moments.
      CHECK(before.at("exp_avg.p0").to_vector<double>() == before_m);
    }
  }
}

TEST_CASE("cuda training: a few AdamW steps on the GPU lower the loss") {
  require_gpu();
  Generator gen(7);
  TinyClassifier model(&gen);
  model.to(kGpu);
  Tensor images = uniform({8, 3, 8, 8}, DType::f32, -1, 1).to(kGpu);
  Tensor labels = integers({8}, DType::i64, 0, 5).to(kGpu);
  nn::AdamW opt(model, 3e-3, 0.01);
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    opt.zero_grad();
    Tensor loss = model.loss(images, labels);
    if (step == 0) first = loss.item();
    last = loss.item();
    loss.backward();
    nn::clip_grad_norm(model.trainable_parameters(), 1.0);
    opt.step();
  }
  MESSAGE("loss " << first << " -> " << last);
  CHECK(last < 0.5 * first);  // on the CPU the same run goes from about 1.7 to 0.1-0.2
}

TEST_CASE("cuda initialisers: a parameter on the GPU gets the CPU's values from the same generator") {
  require_gpu();
  Tensor c = empty({37, 29}), g = empty({37, 29}, {.device = kGpu});
  Generator gc(5), gg(5);
  nn::init::trunc_normal_(c, 0.02, 0.0, std::nullopt, std::nullopt, &gc);
  nn::init::trunc_normal_(g, 0.02, 0.0, std::nullopt, std::nullopt, &gg);
  check_parity(g, c, 0, 0, "trunc_normal_");
  nn::init::xavier_uniform_(c, 1.0, &gc);
  nn::init::xavier_uniform_(g, 1.0, &gg);
  check_parity(g, c, 0, 0, "xavier_uniform_");
  nn::init::constant_(g, 0.25);
  CHECK(g.sum().item() == doctest::Approx(0.25 * 37 * 29));
}

TEST_CASE("cuda state_dict: host weights load into a model on the GPU and back") {
  require_gpu();
  Generator ga(11), gb(12), gc(13);
  TinyClassifier cpu(&ga), gpu(&gb), back(&gc);  // three different initialisations
  gpu.to(kGpu);
  cpu.eval();
  gpu.eval();
  back.eval();
  gpu.load_state_dict(cpu.state_dict());   // host → device
  back.load_state_dict(gpu.state_dict());  // device → host
  for (const auto& [name, t] : gpu.named_parameters()) CHECK_MESSAGE(t.device() == kGpu, name);
  Tensor images = uniform({2, 3, 8, 8}, DType::f32, -1, 1);
  Tensor want = cpu.head->forward(cpu.vit->forward(images).pooled);
  Tensor got = gpu.head->forward(gpu.vit->forward(images.to(kGpu)).pooled);
  check_parity(got, want, kRtol, kAtol, "logits after loading host weights");
  check_parity(back.head->forward(back.vit->forward(images).pooled), want, 0, 0, "logits after the round trip");
}

TEST_CASE("cuda transformer layer: output and attention maps with a key mask and causal") {
  require_gpu();
  Generator ga(21), gb(21);
  nn::TransformerEncoderLayer cpu({.dim = 16, .heads = 2}, &ga), gpu({.dim = 16, .heads = 2}, &gb);
  gpu.to(kGpu);
  Tensor x = uniform({2, 7, 16}, DType::f32, -1, 1);
  Tensor mask = gt(uniform({2, 7}, DType::f32, 0, 1), scalar_tensor(0.3));
  for (bool causal : {false, true}) {
    nn::LayerOutput want = cpu.forward_with_weights(x, mask, causal);
    nn::LayerOutput got = gpu.forward_with_weights(x.to(kGpu), mask.to(kGpu), causal);
    check_parity(got.out, want.out, kRtol, kAtol, std::string("layer output") + (causal ? " causal" : ""));
    check_parity(got.weights, want.weights, kRtol, kAtol, std::string("attention map") + (causal ? " causal" : ""));
  }
}

TEST_CASE("cuda fusion layer with a gated MLP (GEGLU): output, input and parameter gradients equal the CPU's") {
  require_gpu();
  // Odd sizes: 3 heads of 4, GEGLU halves of 21, memory width 10, 7 text and 5 image tokens.
  const nn::TransformerOptions o{.dim = 12, .heads = 3, .mlp_ratio = 1.75, .gated_mlp = true, .memory_dim = 10};
  Generator ga(23), gb(23);
  nn::CrossAttentionLayer cpu(o, false, &ga), gpu(o, false, &gb);
  gpu.to(kGpu);
  Tensor x = uniform({3, 7, 12}, DType::f32, -1, 1), memory = uniform({3, 5, 10}, DType::f32, -1, 1);
  Tensor mask = gt(uniform({3, 7}, DType::f32, 0, 1), scalar_tensor(0.3));
  Tensor w = uniform({3, 7, 12}, DType::f32, -1, 1);  // loss = Σ w ⊙ out: every output element counts
  Tensor xc = x.clone().requires_grad_(true), xg = x.to(kGpu).requires_grad_(true);
  Tensor mc = memory.clone().requires_grad_(true), mg = memory.to(kGpu).requires_grad_(true);
  Tensor want = cpu.forward(xc, mc, mask), got = gpu.forward(xg, mg, mask.to(kGpu));
  check_parity(got, want, kRtol, kAtol, "gated fusion layer output");
  sum(mul(want, w)).backward();
  sum(mul(got, w.to(kGpu))).backward();
  check_parity(xg.grad(), xc.grad(), kRtol, kAtol, "gradient of the text tokens");
  check_parity(mg.grad(), mc.grad(), kRtol, kAtol, "gradient of the image tokens");
  check_params(gpu, cpu, /*grads=*/true, "gated fusion layer");
}
