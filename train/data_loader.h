// The data loader: which samples make up each training step, and making the next batches on a
// background thread while the current step trains.
//
//   EpochOrder   step -> the indices of its batch. Epoch e visits the N samples in a seeded
//                random order (a Fisher–Yates shuffle driven by Philox), B at a time.
//   Prefetcher   runs the caller's `make(step)` on a background thread, a few steps ahead,
//                and hands the batches out strictly in step order.
//
// Determinism is the point of both. The order of epoch e is a pure function of (seed, e): it
// draws its random numbers from Philox with key = seed and a counter stream of its own, so it
// does not depend on having run epochs 0..e−1. The batch of global step s is therefore a pure
// function of (seed, s), and a training run resumed at step s needs no saved order — the
// checkpoint records only the five numbers of state() and recomputes the rest.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "core/error.h"

namespace mmg {

// ---------------------------------------------------------------- EpochOrder -----

// Batches of global step s:  epoch e = s / batches_per_epoch,  b = s mod batches_per_epoch,
// indices = order_e[b·B, min((b+1)·B, N)).  With drop_last the last, short batch of each epoch
// is skipped (batches_per_epoch = ⌊N/B⌋); without it the last batch may be shorter (⌈N/B⌉).
// With shuffle off, every epoch's order is 0, 1, ..., N−1.
class EpochOrder {
 public:
  EpochOrder(int64_t size, int64_t batch_size, uint64_t seed, bool drop_last = false, bool shuffle = true);
  // Copies take the five numbers; the copy recomputes its own cached epoch.
  EpochOrder(const EpochOrder& other)
      : EpochOrder(other.size_, other.batch_size_, other.seed_, other.drop_last_, other.shuffle_) {}
  EpochOrder& operator=(const EpochOrder& other);

  int64_t size() const { return size_; }
  int64_t batch_size() const { return batch_size_; }
  uint64_t seed() const { return seed_; }
  bool drop_last() const { return drop_last_; }
  bool shuffle() const { return shuffle_; }
  int64_t batches_per_epoch() const;

  // The permutation of 0..N−1 that epoch `epoch` visits.
  std::vector<int64_t> epoch_order(int64_t epoch) const;
  // The sample indices of global step `step` (step ≥ 0). Safe to call from several threads.
  std::vector<int64_t> batch_indices(int64_t step) const;

  // What a checkpoint records: {"seed", "size", "batch_size", "drop_last", "shuffle"}.
  nlohmann::json state() const;
  // The order a checkpoint recorded, checked against the data it will be used with: throws
  // mmg::Error naming both sizes when the checkpoint's size differs from `dataset_size`.
  static EpochOrder restore(const nlohmann::json& state, int64_t dataset_size);

 private:
  int64_t size_, batch_size_;
  uint64_t seed_;
  bool drop_last_, shuffle_;
  // The last epoch's order, so consecutive steps do not reshuffle; guarded for threads.
  mutable std::mutex cache_mutex_;
  mutable int64_t cached_epoch_ = -1;
  mutable std::vector<int64_t> cached_order_;
};

// ---------------------------------------------------------------- Prefetcher -----

// Makes the batches of steps [start, end) on one background thread, at most `depth` ahead of
// the consumer, and hands them out in step order:
//
//   Prefetcher<Batch> batches([&](int64_t step) { return make_batch(order.batch_indices(step)); },
//                             start_step, end_step);
//   while (!batches.done()) train_step(batches.next());
//
// `make` must be a pure function of the step (it runs on another thread, ahead of time, so it
// may not read state the training loop changes); then the batches, and the run, are the same
// with or without prefetching. If `make(s)` throws, next() rethrows that very exception (type
// and message intact) when the consumer reaches step s, and no later step is made.
// Destruction stops the thread and joins it, even when the consumer stops early; it waits for
// a `make` call in progress to return.
//
// The queue holds at most `depth` finished batches (the producer waits when it is full), so
// at most depth + 1 batches exist at once: those queued and the one being made.
template <class Batch>
class Prefetcher {
 public:
  Prefetcher(std::function<Batch(int64_t)> make, int64_t start, int64_t end, int depth = 2)
      : make_(std::move(make)), next_step_(start), end_(end), depth_(depth) {
    MMG_CHECK(start >= 0 && start <= end, "Prefetcher: steps [{}, {}) are not a range", start, end);
    MMG_CHECK(depth >= 1, "Prefetcher: depth must be at least 1, got {}", depth);
    MMG_CHECK(make_ != nullptr, "Prefetcher: no make function");
    thread_ = std::thread([this, start] { produce(start); });
  }
  ~Prefetcher() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    space_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  bool done() const { return failed_ || next_step_ >= end_; }
  int64_t next_step() const { return next_step_; }  // the step the next call to next() returns

  // The batch of next_step(); waits for it when the producer is behind.
  Batch next() {
    MMG_CHECK(!failed_, "Prefetcher: next() after make failed at step {}", next_step_ - 1);
    MMG_CHECK(next_step_ < end_, "Prefetcher: next() past the end: steps end before {}", end_);
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait(lock, [this] { return !queue_.empty(); });
    Item item = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    space_.notify_one();
    ++next_step_;
    if (item.error) {
      failed_ = true;  // the producer stopped at this step: nothing comes after it
      std::rethrow_exception(item.error);
    }
    return std::move(*item.batch);
  }

  // For tests and progress displays: the batches waiting now, and the most ever waiting.
  int64_t queued() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return static_cast<int64_t>(queue_.size());
  }
  int64_t max_queued() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return max_queued_;
  }

 private:
  struct Item {
    std::optional<Batch> batch;
    std::exception_ptr error;  // set instead of batch when make threw
  };

  // The background thread: make each step, wait for room, queue it; stop at end, on
  // destruction, or after the first exception (which is queued in the batch's place).
  void produce(int64_t start) {
    for (int64_t step = start; step < end_; ++step) {
      Item item;
      try {
        item.batch.emplace(make_(step));
      } catch (...) {
        item.error = std::current_exception();
      }
      bool failed = item.error != nullptr;
      std::unique_lock<std::mutex> lock(mutex_);
      space_.wait(lock, [this] { return stopping_ || static_cast<int>(queue_.size()) < depth_; });
      if (stopping_) return;
      queue_.push_back(std::move(item));
      max_queued_ = std::max(max_queued_, static_cast<int64_t>(queue_.size()));
      lock.unlock();
      ready_.notify_one();
      if (failed) return;
    }
  }

  std::function<Batch(int64_t)> make_;
  int64_t next_step_;   // consumer side only
  const int64_t end_;
  bool failed_ = false;  // consumer side only: next() rethrew make's exception
  const int depth_;

  mutable std::mutex mutex_;
  std::condition_variable ready_;  // a batch was queued
  std::condition_variable space_;  // a batch was taken, or stopping
  std::deque<Item> queue_;
  int64_t max_queued_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace mmg
