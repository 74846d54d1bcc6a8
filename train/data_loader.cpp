// EpochOrder: the seeded order in which each epoch visits the data (see data_loader.h).
#include "train/data_loader.h"

#include <algorithm>
#include <numeric>

#include "kernels/philox.h"

namespace mmg {

namespace {

// Philox counter words 2 and 3 name the stream: word 2 the epoch, word 3 a tag that tensor
// draws never use (they keep words 2 and 3 at zero, kernels/philox.h), so the shuffle of a
// seed never reuses the numbers that initialised weights with the same seed.
constexpr uint32_t kShuffleStream = 0x53485546u;  // "SHUF"

// A uniform integer in [0, bound) from 64 Philox bits. The modulo favours small values by at
// most bound / 2^64 — below 10^-12 for any data set that fits in memory.
uint64_t uniform_below(uint64_t seed, uint64_t epoch, uint64_t draw, uint64_t bound) {
  PhiloxOut r = philox4x32_10(static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32),
                              static_cast<uint32_t>(draw), static_cast<uint32_t>(draw >> 32),
                              static_cast<uint32_t>(epoch), kShuffleStream);
  uint64_t bits = (static_cast<uint64_t>(r.w[1]) << 32) | r.w[0];
  return bits % bound;
}

}  // namespace

EpochOrder::EpochOrder(int64_t size, int64_t batch_size, uint64_t seed, bool drop_last, bool shuffle)
    : size_(size), batch_size_(batch_size), seed_(seed), drop_last_(drop_last), shuffle_(shuffle) {
  MMG_CHECK(size >= 1, "EpochOrder: the data set has {} samples; it needs at least one", size);
  MMG_CHECK(batch_size >= 1, "EpochOrder: batch size must be at least 1, got {}", batch_size);
  MMG_CHECK(!drop_last || batch_size <= size,
            "EpochOrder: with drop_last, batch size {} larger than the data set ({} samples) leaves no batch",
            batch_size, size);
}

EpochOrder& EpochOrder::operator=(const EpochOrder& other) {
  if (this == &other) return *this;
  std::lock_guard<std::mutex> lock(cache_mutex_);
  size_ = other.size_, batch_size_ = other.batch_size_, seed_ = other.seed_;
  drop_last_ = other.drop_last_, shuffle_ = other.shuffle_;
  cached_epoch_ = -1;
  cached_order_.clear();
  return *this;
}

int64_t EpochOrder::batches_per_epoch() const {
  return drop_last_ ? size_ / batch_size_ : (size_ + batch_size_ - 1) / batch_size_;
}

// Fisher–Yates: for i = N−1 down to 1, swap position i with a uniform j in [0, i]. Draw number
// i of epoch e uses Philox counter (i, e, stream tag), so each epoch is its own stream.
std::vector<int64_t> EpochOrder::epoch_order(int64_t epoch) const {
  MMG_CHECK(epoch >= 0 && epoch <= int64_t{0xFFFFFFFF}, "EpochOrder: epoch {} is outside [0, 2^32)", epoch);
  std::vector<int64_t> order(static_cast<size_t>(size_));
  std::iota(order.begin(), order.end(), int64_t{0});
  if (!shuffle_) return order;
  for (int64_t i = size_ - 1; i >= 1; --i) {
    auto j = static_cast<int64_t>(uniform_below(seed_, static_cast<uint64_t>(epoch), static_cast<uint64_t>(i),
                                                static_cast<uint64_t>(i + 1)));
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  return order;
}

std::vector<int64_t> EpochOrder::batch_indices(int64_t step) const {
  MMG_CHECK(step >= 0, "EpochOrder: step {} is negative", step);
  const int64_t per_epoch = batches_per_epoch();
  const int64_t epoch = step / per_epoch, b = step % per_epoch;
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (epoch != cached_epoch_) {
    cached_order_ = epoch_order(epoch);
    cached_epoch_ = epoch;
  }
  const int64_t first = b * batch_size_, last = std::min(first + batch_size_, size_);
  return std::vector<int64_t>(cached_order_.begin() + first, cached_order_.begin() + last);
}

nlohmann::json EpochOrder::state() const {
  return {{"seed", seed_}, {"size", size_}, {"batch_size", batch_size_}, {"drop_last", drop_last_},
          {"shuffle", shuffle_}};
}

EpochOrder EpochOrder::restore(const nlohmann::json& state, int64_t dataset_size) {
  int64_t saved_size = 0, batch_size = 0;
  uint64_t seed = 0;
  bool drop_last = false, shuffle = true;
  try {
    saved_size = state.at("size").get<int64_t>();
    batch_size = state.at("batch_size").get<int64_t>();
    seed = state.at("seed").get<uint64_t>();
    drop_last = state.at("drop_last").get<bool>();
    shuffle = state.at("shuffle").get<bool>();
  } catch (const nlohmann::json::exception& e) {
    MMG_FAIL("EpochOrder::restore: the saved state {} is not an order ({})", state.dump(), e.what());
  }
  MMG_CHECK(saved_size == dataset_size,
            "EpochOrder::restore: the checkpoint's order was made for {} samples but the data has {}", saved_size,
            dataset_size);
  return EpochOrder(saved_size, batch_size, seed, drop_last, shuffle);
}

}  // namespace mmg
