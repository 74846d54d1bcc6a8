// One result row of mmg_bench, and its three forms: a line of the plain table, a line of
// the markdown table (ready for bench/results/<date>-<gpu>.md), and a JSON object (--json,
// read by bench/torch_compare.py). Pure formatting, tested on the CPU.
//
// JSON row keys: kernel, version, case, shape, params (the sizes as numbers), dtype,
// direction, median_ms, and the rate under its unit's key — "gbps" (GB/s of bytes that must
// move), "tflops" or "gflops" — then fraction (of the baseline named in "baseline"), goal,
// check, note, peak_bytes. A row that could not run has "skipped" (the reason) instead of
// the timing keys.
#pragma once
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bench/bench_math.h"

namespace mmg::bench {

struct Row {
  Row() = default;
  Row(std::string kernel_, std::string label_, std::string shape_, nlohmann::json params_ = nlohmann::json::object())
      : kernel(std::move(kernel_)), label(std::move(label_)), shape(std::move(shape_)), params(std::move(params_)) {}

  std::string kernel;                                // "softmax"
  int version = 1;                                   // the kernel family's version (1 for kernels with one)
  std::string label;                                 // the case's name ("vit-b/16 self"); may be empty
  std::string shape;                                 // "[12608,768]"
  nlohmann::json params = nlohmann::json::object();  // {"rows": 12608, "cols": 768}
  std::string dtype = "f32";
  Direction direction = Direction::fwd;
  double ms = NAN;                   // median time of one run
  double rate = NAN;                 // in `unit`
  std::string unit;                  // "GB/s", "TFLOP/s" or "GFLOP/s"
  double fraction = NAN;             // rate / the baseline's rate
  std::string baseline;              // what fraction is of: "copy", "bf16 gemm", "cublasLt f32", "eigen"
  std::string goal;                  // the goal, printed beside ("≥ 90%"), never asserted
  std::string check;                 // the result's check before timing: "ok", "FAILED: ..." or empty
  std::string note;                  // anything else: "peak 113 MiB", "cuBLASLt algo 3 of 8"
  std::optional<double> peak_bytes;  // peak device memory of one run, above its inputs
  std::string skipped;               // why it did not run; empty when it did
};

// A row that did not run, and why.
inline Row skipped_row(Row r, std::string why) {
  r.skipped = std::move(why);
  return r;
}

inline bool check_failed(const Row& r) { return r.check.rfind("FAILED", 0) == 0; }

inline std::string unit_key(const std::string& unit) {
  if (unit == "GB/s") return "gbps";
  if (unit == "TFLOP/s") return "tflops";
  if (unit == "GFLOP/s") return "gflops";
  return "rate";
}

// NaN and infinities are not JSON numbers: they become null.
inline nlohmann::json number_or_null(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(); }

inline nlohmann::json row_json(const Row& r) {
  nlohmann::json j = {{"kernel", r.kernel},
                      {"version", r.version},
                      {"case", r.label},
                      {"shape", r.shape},
                      {"params", r.params},
                      {"dtype", r.dtype},
                      {"direction", direction_name(r.direction)}};
  if (!r.skipped.empty()) {
    j["skipped"] = r.skipped;
    return j;
  }
  j["median_ms"] = number_or_null(r.ms);
  j[unit_key(r.unit)] = number_or_null(r.rate);
  j["fraction"] = number_or_null(r.fraction);
  j["baseline"] = r.baseline;
  if (!r.goal.empty()) j["goal"] = r.goal;
  if (!r.check.empty()) j["check"] = r.check;
  if (!r.note.empty()) j["note"] = r.note;
  if (r.peak_bytes) j["peak_bytes"] = *r.peak_bytes;
  return j;
}

// "1.234" ms with three significant decimals for short times, fewer for long ones.
inline std::string format_ms(double ms) {
  if (!std::isfinite(ms)) return "-";
  if (ms < 1) return fmt::format("{:.4f}", ms);
  if (ms < 100) return fmt::format("{:.3f}", ms);
  return fmt::format("{:.1f}", ms);
}

inline std::string format_rate(const Row& r) {
  if (!std::isfinite(r.rate)) return "-";
  return r.rate < 10 ? fmt::format("{:.2f} {}", r.rate, r.unit) : fmt::format("{:.1f} {}", r.rate, r.unit);
}

inline std::string format_fraction(const Row& r) {
  if (!std::isfinite(r.fraction)) return "-";
  return fmt::format("{:.0f}% {}", 100 * r.fraction, r.baseline);
}

// Goal, check and note, in that order, separated by "; ".
inline std::string format_remarks(const Row& r) {
  std::string s;
  auto add = [&s](const std::string& x) {
    if (!x.empty()) s += (s.empty() ? "" : "; ") + x;
  };
  if (!r.skipped.empty()) {
    add("skipped: " + r.skipped);
    return s;
  }
  if (!r.goal.empty()) add("goal " + r.goal);
  if (!r.check.empty() && r.check.rfind("ok", 0) != 0) add("check " + r.check);
  add(r.note);
  return s;
}

inline std::string row_case(const Row& r) { return r.label.empty() ? r.shape : r.label + " " + r.shape; }

inline std::string table_header(bool markdown) {
  if (markdown)
    return "| kernel | v | case | dtype | dir | ms | rate | of baseline | remarks |\n"
           "|---|---|---|---|---|---:|---:|---:|---|";
  return fmt::format("{:<12} {:>2} {:<44} {:<5} {:<7} {:>10} {:>15} {:>16}  {}", "kernel", "v", "case", "dtype", "dir",
                     "ms", "rate", "of baseline", "remarks");
}

inline std::string format_row(const Row& r, bool markdown) {
  const bool ran = r.skipped.empty();
  const std::string ms = ran ? format_ms(r.ms) : "-", rate = ran ? format_rate(r) : "-",
                    frac = ran ? format_fraction(r) : "-";
  if (markdown)
    return fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} |", r.kernel, r.version, row_case(r), r.dtype,
                       direction_name(r.direction), ms, rate, frac, format_remarks(r));
  return fmt::format("{:<12} {:>2} {:<44} {:<5} {:<7} {:>10} {:>15} {:>16}  {}", r.kernel, r.version, row_case(r),
                     r.dtype, direction_name(r.direction), ms, rate, frac, format_remarks(r));
}

// The rows of one run: each is printed as it comes (a plain table, or one markdown table
// with the run's notes listed after it, so that the table stays whole) and kept for --json.
class Report {
 public:
  explicit Report(bool markdown, std::FILE* out = stdout) : markdown_(markdown), out_(out) {}

  // A line of context: a section title, a baseline measured, a kernel left out and why.
  void note(const std::string& text) {
    if (markdown_) {
      notes_.push_back(text);
      return;
    }
    std::fprintf(out_, "%s\n", text.c_str());
    std::fflush(out_);
  }

  void add(Row r) {
    if (!header_printed_) {
      std::fprintf(out_, "%s\n", table_header(markdown_).c_str());
      header_printed_ = true;
    }
    std::fprintf(out_, "%s\n", format_row(r, markdown_).c_str());
    std::fflush(out_);
    rows_.push_back(std::move(r));
  }

  // Markdown: the notes, after the table.
  void finish() {
    if (!markdown_ || notes_.empty()) return;
    std::fprintf(out_, "\n");
    for (const std::string& n : notes_) std::fprintf(out_, "- %s\n", n.c_str());
    notes_.clear();
  }

  const std::vector<Row>& rows() const { return rows_; }

  // {"meta": {...}, "rows": [...]}: meta says where and against what the rows were measured.
  nlohmann::json json(const nlohmann::json& meta) const {
    nlohmann::json rows = nlohmann::json::array();
    for (const Row& r : rows_) rows.push_back(row_json(r));
    return {{"meta", meta}, {"rows", rows}};
  }

 private:
  bool markdown_;
  std::FILE* out_;
  bool header_printed_ = false;
  std::vector<Row> rows_;
  std::vector<std::string> notes_;
};

}  // namespace mmg::bench
