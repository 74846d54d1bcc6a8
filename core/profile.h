// The op profiler: where the time of a training step goes, op by op.
//
//   profile::start();                 // on the thread that runs the model
//   ... forward, backward, optimiser step ...
//   profile::stop();
//   fmt::print("{}", profile::table(steps, wall_seconds));
//
// Every op of core/ops.h opens an OpScope ("matmul", "layer_norm", ...); the autograd engine
// opens one per Node it runs backward ("matmul" in the backward phase) and one around summing
// the gradients that meet at a tensor; the trainer opens scopes for its own work (the optimiser
// step, waiting for the data loader). Only the outermost scope on the thread counts: an op built
// from other ops (var = mean of squares) is one row with all of its time, a backward closure is
// one row with the ops it calls, and no time is counted twice — so the rows add up to the time
// spent inside scopes, and what the wall clock shows beyond that is the glue between them.
//
// Each row is keyed by (phase, name). The phase is set by PhaseScope: "forward" unless the
// engine or the trainer says otherwise ("backward", "optimizer", "data").
//
// Times are wall-clock seconds on the thread that called start(); scopes on other threads
// (data-loader workers) are not counted. When a CUDA device is named, each outermost scope
// synchronises it at its start and end, so a row holds its kernels' time rather than their
// launch — which serialises the GPU with the host: profile to see the split, not the speed.
// When the profiler is off an OpScope costs one thread-local read.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace mmg::profile {

// Clears what was recorded and starts recording on the calling thread. cuda_device >= 0:
// synchronise that device around each outermost scope (see above).
void start(int cuda_device = -1);
// Stops recording; what was recorded stays readable until the next start().
void stop();
// Whether the calling thread is the one being profiled.
bool active();

struct Entry {
  std::string phase;
  std::string name;
  int64_t calls = 0;
  double seconds = 0;
};
// Every row recorded since start(), most time first.
std::vector<Entry> entries();
// Seconds inside outermost scopes, over every row.
double total_seconds();

// A Markdown report: a line with the totals, the time per phase, then the `top` rows with the
// most time (calls, seconds, ms per step, share of wall time). `steps` and `wall_seconds` are
// the profiled run's — the share of wall time not inside any scope is reported as such.
std::string table(int64_t steps, double wall_seconds, size_t top = 25);

class OpScope {
 public:
  explicit OpScope(const char* name) : name_(active() ? name : nullptr) {
    if (name_) begin();
  }
  ~OpScope() {
    if (name_) end();
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  void begin();
  void end();
  const char* name_;  // null: not profiling, or not this thread
  bool outermost_ = false;
  std::chrono::steady_clock::time_point t0_;
};

class PhaseScope {
 public:
  explicit PhaseScope(const char* phase);
  ~PhaseScope();
  PhaseScope(const PhaseScope&) = delete;
  PhaseScope& operator=(const PhaseScope&) = delete;

 private:
  const char* previous_;
};

}  // namespace mmg::profile

// Opens an OpScope for the rest of the enclosing block.
#define MMG_PROFILE_OP(name) ::mmg::profile::OpScope mmg_profile_scope_(name)
