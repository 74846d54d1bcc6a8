#include "core/profile.h"

#include <algorithm>
#include <map>
#include <utility>

#include <fmt/format.h>

#include "core/cuda_memory.h"

namespace mmg::profile {

namespace {

// One thread is profiled at a time; only it touches the table, so nothing needs a lock.
thread_local bool t_active = false;
thread_local int t_depth = 0;
thread_local const char* t_phase = "forward";

int g_cuda_device = -1;
std::map<std::pair<std::string, std::string>, Entry> g_rows;  // (phase, name) -> row

void synchronise() {
  if (g_cuda_device >= 0) cuda_synchronize(g_cuda_device);
}

}  // namespace

void start(int cuda_device) {
  g_rows.clear();
  g_cuda_device = cuda_device;
  t_depth = 0;
  t_active = true;
}

void stop() { t_active = false; }

bool active() { return t_active; }

void OpScope::begin() {
  outermost_ = t_depth++ == 0;
  if (!outermost_) return;
  synchronise();
  t0_ = std::chrono::steady_clock::now();
}

void OpScope::end() {
  --t_depth;
  if (!outermost_) return;
  synchronise();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  Entry& e = g_rows[{t_phase, name_}];
  if (e.calls == 0) e.phase = t_phase, e.name = name_;
  e.calls += 1;
  e.seconds += s;
}

PhaseScope::PhaseScope(const char* phase) : previous_(t_phase) { t_phase = phase; }
PhaseScope::~PhaseScope() { t_phase = previous_; }

std::vector<Entry> entries() {
  std::vector<Entry> out;
  for (const auto& [key, e] : g_rows) out.push_back(e);
  std::stable_sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.seconds > b.seconds; });
  return out;
}

double total_seconds() {
  double s = 0;
  for (const auto& [key, e] : g_rows) s += e.seconds;
  return s;
}

std::string table(int64_t steps, double wall_seconds, size_t top) {
  const std::vector<Entry> rows = entries();
  const double inside = total_seconds();
  const double per_step = steps > 0 ? 1e3 / static_cast<double>(steps) : 0.0;
  auto share = [&](double s) { return wall_seconds > 0 ? 100.0 * s / wall_seconds : 0.0; };

  std::string out = fmt::format(
      "{} steps in {:.1f} s ({:.2f} ms a step); {:.1f} s ({:.1f} %) inside ops and the trainer's scopes, "
      "{:.1f} s ({:.1f} %) between them\n\n",
      steps, wall_seconds, wall_seconds * per_step, inside, share(inside), wall_seconds - inside,
      share(wall_seconds - inside));

  std::map<std::string, std::pair<int64_t, double>> phases;
  for (const Entry& e : rows) phases[e.phase].first += e.calls, phases[e.phase].second += e.seconds;
  out += "| phase | calls | seconds | ms / step | % of wall |\n|---|---:|---:|---:|---:|\n";
  for (const auto& [phase, cs] : phases)
    out += fmt::format("| {} | {} | {:.2f} | {:.3f} | {:.1f} |\n", phase, cs.first, cs.second, cs.second * per_step,
                       share(cs.second));

  out += fmt::format("\n| phase | op | calls | seconds | ms / step | µs / call | % of wall |\n"
                     "|---|---|---:|---:|---:|---:|---:|\n");
  for (size_t i = 0; i < rows.size() && i < top; ++i) {
    const Entry& e = rows[i];
    out += fmt::format("| {} | {} | {} | {:.2f} | {:.3f} | {:.1f} | {:.1f} |\n", e.phase, e.name, e.calls, e.seconds,
                       e.seconds * per_step, 1e6 * e.seconds / static_cast<double>(e.calls), share(e.seconds));
  }
  if (rows.size() > top) {
    double rest = 0;
    int64_t calls = 0;
    for (size_t i = top; i < rows.size(); ++i) rest += rows[i].seconds, calls += rows[i].calls;
    out += fmt::format("| | {} more rows | {} | {:.2f} | {:.3f} | | {:.1f} |\n", rows.size() - top, calls, rest,
                       rest * per_step, share(rest));
  }
  return out;
}

}  // namespace mmg::profile
