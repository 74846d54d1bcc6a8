// The op profiler (core/profile.h): off unless started, one row per outermost op (an op built
// from others is one row), backward rows per Node, phases, only the profiled thread, the report.
#include <doctest/doctest.h>

#include <map>
#include <thread>

#include "core/mmgrad.h"
#include "core/profile.h"

using namespace mmg;

namespace {

// calls of each (phase, name) row
std::map<std::pair<std::string, std::string>, int64_t> calls_by_row() {
  std::map<std::pair<std::string, std::string>, int64_t> m;
  for (const profile::Entry& e : profile::entries()) m[{e.phase, e.name}] = e.calls;
  return m;
}

Tensor random(const Shape& s, uint64_t seed) {
  Generator gen(seed);
  return randn(s, {}, &gen);
}

}  // namespace

TEST_CASE("profile: nothing is recorded unless started, and stop keeps what was recorded") {
  profile::start();
  profile::stop();
  CHECK_FALSE(profile::active());
  Tensor y = matmul(random({3, 4}, 1), random({4, 5}, 2));
  CHECK(profile::entries().empty());

  profile::start();
  CHECK(profile::active());
  y = matmul(random({3, 4}, 1), random({4, 5}, 2));
  profile::stop();
  y = add(y, y);  // after stop: not recorded
  const auto rows = calls_by_row();
  CHECK(rows.at({"forward", "matmul"}) == 1);
  CHECK_FALSE(rows.contains({"forward", "add"}));
}

TEST_CASE("profile: an op built from other ops is one row, and backward has one row per Node run") {
  Tensor a = random({6, 7}, 3).requires_grad_(), b = random({6, 7}, 4).requires_grad_();
  profile::start();
  Tensor v = var(a.detach(), {1});  // var = mean of squared deviations: composed of other ops
  Tensor loss = sum(mul(v, v)) + sum(mul(a, b));  // only the second product needs a gradient
  loss.backward();
  profile::stop();

  const auto rows = calls_by_row();
  CHECK(rows.at({"forward", "var"}) == 1);
  CHECK_FALSE(rows.contains({"forward", "mean"}));  // inside var: counted as var's time
  CHECK(rows.at({"forward", "mul"}) == 2);
  CHECK(rows.at({"forward", "sum"}) == 2);
  CHECK(rows.at({"forward", "add"}) == 1);
  CHECK(rows.at({"backward", "mul"}) == 1);  // one per Node: the closures' own ops are not rows
  CHECK(rows.at({"backward", "sum"}) == 1);
  CHECK(rows.at({"backward", "add"}) == 1);
  CHECK(rows.at({"backward", "order the graph"}) == 1);
  CHECK(rows.contains({"backward", "sum gradients"}));

  double total = 0;
  for (const profile::Entry& e : profile::entries()) {
    CHECK(e.seconds >= 0);
    CHECK(e.calls > 0);
    total += e.seconds;
  }
  CHECK(profile::total_seconds() == doctest::Approx(total));
  const auto entries = profile::entries();
  for (size_t i = 1; i < entries.size(); ++i) CHECK(entries[i - 1].seconds >= entries[i].seconds);
  CHECK(a.grad().defined());  // profiling changes no result
}

TEST_CASE("profile: phases label the rows and nest, and other threads are not counted") {
  profile::start();
  {
    profile::PhaseScope outer("optimizer");
    Tensor x = exp(random({5}, 5));
    {
      profile::PhaseScope inner("data");
      x = log(x);
    }
    x = neg(x);  // back in "optimizer"
  }
  std::thread other([] { Tensor t = tanh(random({5}, 6)); });
  other.join();
  Tensor z = sigmoid(random({5}, 7));  // back in "forward"
  profile::stop();

  const auto rows = calls_by_row();
  CHECK(rows.at({"optimizer", "exp"}) == 1);
  CHECK(rows.at({"data", "log"}) == 1);
  CHECK(rows.at({"optimizer", "neg"}) == 1);
  CHECK(rows.at({"forward", "sigmoid"}) == 1);
  for (const auto& [key, calls] : rows) CHECK(key.second != "tanh");  // ran on another thread
}

TEST_CASE("profile: the report gives the totals, the phases and the top rows with the rest summed") {
  profile::start();
  Tensor x = random({8, 8}, 8);
  for (int i = 0; i < 3; ++i) x = relu(add(matmul(x, x), x));
  profile::stop();
  const std::string report = profile::table(/*steps=*/3, /*wall_seconds=*/1.0, /*top=*/2);
  CAPTURE(report);
  CHECK(report.find("3 steps in 1.0 s (333.33 ms a step)") != std::string::npos);
  CHECK(report.find("| phase | calls | seconds | ms / step | % of wall |") != std::string::npos);
  CHECK(report.find("| forward | 9 |") != std::string::npos);  // 3 × (matmul, add, relu)
  CHECK(report.find("| | 1 more rows | 3 |") != std::string::npos);
}
