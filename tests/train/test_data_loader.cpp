// The data loader: EpochOrder's seeded permutations and step arithmetic (checked against
// counting and set properties), resuming from a saved state, and the Prefetcher's order,
// error delivery, bounded queue and clean shutdown.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <thread>

#include "train/data_loader.h"

using namespace mmg;

namespace {

doctest::Contains contains(const std::string& text) { return doctest::Contains(text.c_str()); }

std::vector<int64_t> iota_vector(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), int64_t{0});
  return v;
}

void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

}  // namespace

// ---------------------------------------------------------------- EpochOrder -----

TEST_CASE("loader: each epoch's order is a permutation, fixed by the seed") {
  for (int64_t n : {1, 2, 7, 100}) {
    EpochOrder order(n, 3, 42);
    for (int64_t epoch : {0, 1, 5}) {
      std::vector<int64_t> o = order.epoch_order(epoch);
      std::sort(o.begin(), o.end());
      CHECK(o == iota_vector(n));
    }
  }
  EpochOrder a(100, 10, 42), b(100, 10, 42), c(100, 10, 43);
  CHECK(a.epoch_order(3) == b.epoch_order(3));
  CHECK(a.epoch_order(0) != c.epoch_order(0));          // another seed, another order
  CHECK(a.epoch_order(0) != a.epoch_order(1));          // each epoch reshuffles
  CHECK(a.epoch_order(0) != iota_vector(100));          // and does shuffle
}

TEST_CASE("loader: the shuffle draws every ordering of 3 items equally often") {
  // 6000 epochs over 3 items: each of the 3! = 6 orderings expects 1000 (σ ≈ 29). A biased
  // shuffle (j drawn from [0, i) instead of [0, i], or from [0, N)) misses this by hundreds.
  EpochOrder order(3, 1, 2024);
  std::map<std::vector<int64_t>, int> seen;
  for (int64_t epoch = 0; epoch < 6000; ++epoch) ++seen[order.epoch_order(epoch)];
  CHECK(seen.size() == 6);
  for (const auto& [perm, count] : seen) CHECK(std::abs(count - 1000) < 150);
}

TEST_CASE("loader: steps cut epochs into batches, every index once per epoch") {
  // N = 10, B = 3, keeping the short batch: 4 batches of 3, 3, 3, 1.
  EpochOrder order(10, 3, 7);
  CHECK(order.batches_per_epoch() == 4);
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    std::vector<int64_t> seen;
    for (int64_t b = 0; b < 4; ++b) {
      std::vector<int64_t> batch = order.batch_indices(epoch * 4 + b);
      CHECK(batch.size() == (b < 3 ? 3u : 1u));
      seen.insert(seen.end(), batch.begin(), batch.end());
    }
    CHECK(seen == order.epoch_order(epoch));  // the batches are the epoch's order, in order
    std::sort(seen.begin(), seen.end());
    CHECK(seen == iota_vector(10));
  }
}

TEST_CASE("loader: drop_last skips the short batch of each epoch") {
  // N = 10, B = 3, drop_last: 3 batches of 3; step 3 starts epoch 1.
  EpochOrder order(10, 3, 7, /*drop_last=*/true);
  CHECK(order.batches_per_epoch() == 3);
  std::vector<int64_t> seen;
  for (int64_t step = 0; step < 3; ++step) {
    std::vector<int64_t> batch = order.batch_indices(step);
    CHECK(batch.size() == 3u);
    seen.insert(seen.end(), batch.begin(), batch.end());
  }
  std::vector<int64_t> epoch0 = order.epoch_order(0), epoch1 = order.epoch_order(1);
  CHECK(seen == std::vector<int64_t>(epoch0.begin(), epoch0.begin() + 9));
  CHECK(order.batch_indices(3) == std::vector<int64_t>(epoch1.begin(), epoch1.begin() + 3));
  // Exactly divisible sizes are the same with or without drop_last.
  CHECK(EpochOrder(12, 3, 7, true).batches_per_epoch() == 4);
  CHECK(EpochOrder(12, 3, 7, false).batches_per_epoch() == 4);
}

TEST_CASE("loader: without shuffle every epoch reads 0..N-1") {
  EpochOrder order(10, 3, 7, false, /*shuffle=*/false);
  CHECK(order.epoch_order(0) == iota_vector(10));
  CHECK(order.epoch_order(9) == iota_vector(10));
  CHECK(order.batch_indices(3) == std::vector<int64_t>{9});        // epoch 0's short batch
  CHECK(order.batch_indices(5) == std::vector<int64_t>{3, 4, 5});  // epoch 1, batch 1
}

TEST_CASE("loader: resuming at step s from the saved state gives the uninterrupted sequence") {
  EpochOrder run(23, 4, 99);  // 6 batches per epoch
  std::vector<std::vector<int64_t>> uninterrupted;
  for (int64_t step = 0; step < 40; ++step) uninterrupted.push_back(run.batch_indices(step));
  for (int64_t resume : {0, 5, 6, 13, 39}) {
    // A fresh order from the checkpoint's JSON (as text, as a file would hold it), asked for
    // the steps from `resume` on without ever seeing the earlier ones.
    EpochOrder resumed = EpochOrder::restore(nlohmann::json::parse(run.state().dump()), 23);
    for (int64_t step = resume; step < 40; ++step) {
      INFO("resume at " << resume << ", step " << step);
      CHECK(resumed.batch_indices(step) == uninterrupted[static_cast<size_t>(step)]);
    }
  }
  // Going back in time is fine too (a pure function of the step).
  CHECK(run.batch_indices(2) == uninterrupted[2]);
  // A copy behaves like the original.
  EpochOrder copy = run;
  CHECK(copy.batch_indices(17) == uninterrupted[17]);
}

TEST_CASE("loader: the saved state holds the five numbers, and restore checks the data size") {
  EpochOrder order(1000, 32, 12345678901234567ull, true, true);
  nlohmann::json state = order.state();
  CHECK(state.at("seed").get<uint64_t>() == 12345678901234567ull);
  CHECK(state.at("size").get<int64_t>() == 1000);
  CHECK(state.at("batch_size").get<int64_t>() == 32);
  CHECK(state.at("drop_last").get<bool>() == true);
  CHECK(state.at("shuffle").get<bool>() == true);
  EpochOrder back = EpochOrder::restore(state, 1000);
  CHECK(back.seed() == order.seed());
  CHECK(back.batch_indices(40) == order.batch_indices(40));
  CHECK_THROWS_WITH_AS(EpochOrder::restore(state, 999),
                       contains("EpochOrder::restore: the checkpoint's order was made for 1000 samples but the data has 999"),
                       Error);
  nlohmann::json broken = state;
  broken.erase("shuffle");
  CHECK_THROWS_WITH_AS(EpochOrder::restore(broken, 1000), contains("EpochOrder::restore: the saved state"), Error);
}

TEST_CASE("loader: EpochOrder rejects empty data, empty batches and drop_last with no batch") {
  CHECK_THROWS_WITH_AS(EpochOrder(0, 3, 1), contains("EpochOrder: the data set has 0 samples"), Error);
  CHECK_THROWS_WITH_AS(EpochOrder(5, 0, 1), contains("EpochOrder: batch size must be at least 1, got 0"), Error);
  CHECK_THROWS_WITH_AS(EpochOrder(5, 8, 1, true),
                       contains("with drop_last, batch size 8 larger than the data set (5 samples) leaves no batch"), Error);
  CHECK(EpochOrder(5, 8, 1, false).batch_indices(0).size() == 5u);  // one short batch without drop_last
  CHECK_THROWS_WITH_AS(EpochOrder(5, 2, 1).batch_indices(-1), contains("EpochOrder: step -1 is negative"), Error);
}

// ---------------------------------------------------------------- Prefetcher -----

TEST_CASE("loader: the prefetcher yields steps in order at every depth") {
  for (int depth = 1; depth <= 4; ++depth) {
    // Uneven make times (0..2 ms) so the producer is sometimes ahead, sometimes behind.
    Prefetcher<int64_t> batches(
        [](int64_t step) {
          sleep_ms(static_cast<int>(step % 3));
          return step * step;
        },
        3, 20, depth);
    for (int64_t step = 3; step < 20; ++step) {
      CHECK(!batches.done());
      CHECK(batches.next_step() == step);
      CHECK(batches.next() == step * step);
    }
    CHECK(batches.done());
    CHECK_THROWS_WITH_AS(batches.next(), contains("Prefetcher: next() past the end"), Error);
    CHECK(batches.max_queued() <= depth);
  }
}

TEST_CASE("loader: the prefetcher hands out what EpochOrder gives, and move-only batches") {
  EpochOrder order(50, 8, 5);
  Prefetcher<std::unique_ptr<std::vector<int64_t>>> batches(
      [&order](int64_t step) { return std::make_unique<std::vector<int64_t>>(order.batch_indices(step)); }, 0, 30);
  EpochOrder direct(50, 8, 5);
  for (int64_t step = 0; step < 30; ++step) CHECK(*batches.next() == direct.batch_indices(step));
}

TEST_CASE("loader: an exception in make reaches the consumer at its step, message intact") {
  std::atomic<int64_t> last_made{-1};
  Prefetcher<int64_t> batches(
      [&last_made](int64_t step) -> int64_t {
        last_made = step;
        if (step == 7) throw std::runtime_error("corrupt image in sample 7");
        return step;
      },
      3, 100, 3);
  for (int64_t step = 3; step < 7; ++step) CHECK(batches.next() == step);
  CHECK_THROWS_WITH_AS(batches.next(), "corrupt image in sample 7", std::runtime_error);
  CHECK(batches.done());
  CHECK_THROWS_WITH_AS(batches.next(), contains("Prefetcher: next() after make failed at step 7"), Error);
  CHECK(last_made == 7);  // nothing after the failing step was made
}

TEST_CASE("loader: destroying the prefetcher early stops its thread") {
  std::atomic<int64_t> made{0};
  {
    // A producer that could run for a million steps; the consumer takes three and leaves.
    Prefetcher<int64_t> batches([&made](int64_t step) { ++made; return step; }, 0, 1000000, 2);
    for (int i = 0; i < 3; ++i) CHECK(batches.next() == i);
  }
  CHECK(made <= 3 + 2 + 1);  // at most depth queued plus one in hand
  {
    Prefetcher<int64_t> untouched([](int64_t step) { return step; }, 0, 1000000, 4);
  }
  {
    // Destroyed while make is in progress: the destructor waits for it, then returns.
    Prefetcher<int64_t> slow([](int64_t step) { sleep_ms(50); return step; }, 0, 1000000, 1);
    sleep_ms(10);
  }
  CHECK(true);  // reaching this line is the test: no destructor hung
}

TEST_CASE("loader: with a slow consumer the queue fills to depth and never beyond") {
  const int depth = 3;
  Prefetcher<int64_t> batches([](int64_t step) { return step; }, 0, 40, depth);
  // Wait (up to 10 s on a busy machine) for the producer to fill the queue.
  for (int waited = 0; batches.queued() < depth && waited < 10000; ++waited) sleep_ms(1);
  CHECK(batches.queued() == depth);
  for (int64_t step = 0; step < 40; ++step) {
    CHECK(batches.next() == step);
    sleep_ms(1);
    CHECK(batches.queued() <= depth);
  }
  CHECK(batches.max_queued() == depth);
}

TEST_CASE("loader: Prefetcher rejects a bad range or depth") {
  auto make = [](int64_t step) { return step; };
  CHECK_THROWS_WITH_AS(Prefetcher<int64_t>(make, 5, 2), contains("Prefetcher: steps [5, 2) are not a range"), Error);
  CHECK_THROWS_WITH_AS(Prefetcher<int64_t>(make, 0, 2, 0), contains("Prefetcher: depth must be at least 1, got 0"), Error);
  Prefetcher<int64_t> empty(make, 4, 4);
  CHECK(empty.done());
}
