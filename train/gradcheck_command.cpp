// `mmg gradcheck`: the gradcheck battery as a command, one line per case.
#include <chrono>
#include <cstdio>

#include "core/gradcheck.h"
#include "train/commands.h"

namespace mmg {

int run_gradcheck_command(const std::string& op, bool list_only) {
  std::vector<GradcheckCase> cases;
  for (auto& c : gradcheck_battery())
    if (op.empty() || c.op == op) cases.push_back(std::move(c));
  if (cases.empty()) {
    std::fprintf(stderr, "gradcheck: no case for op '%s' (mmg gradcheck --list shows them)\n", op.c_str());
    return 2;
  }
  std::printf("%-30s %-44s %12s %12s  %s\n", "op", "inputs", "max abs err", "max rel err", "result");
  int failed = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (const GradcheckCase& c : cases) {
    if (list_only) {
      std::printf("%-30s %s\n", c.op.c_str(), c.detail.c_str());
      continue;
    }
    std::string verdict;
    GradcheckResult r;
    try {
      r = run_case(c);
      verdict = r.ok ? "PASS" : "FAIL  " + r.message;
    } catch (const std::exception& e) {
      r.ok = false;
      verdict = std::string("FAIL  error: ") + e.what();
    }
    failed += r.ok ? 0 : 1;
    std::printf("%-30s %-44s %12.3e %12.3e  %s\n", c.op.c_str(), c.detail.c_str(), r.max_abs_err, r.max_rel_err,
                verdict.c_str());
    std::fflush(stdout);
  }
  if (list_only) return 0;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%zu cases, %zu passed, %d failed (%.2f s)\n", cases.size(), cases.size() - failed, failed, secs);
  return failed == 0 ? 0 : 1;
}

}  // namespace mmg
