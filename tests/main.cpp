// The test runner's main (doctest). Each TEST_CASE is also registered with CTest, which runs
// the binary once per case with --test-case=NAME.
//
// A filter that selects no test case is an error here, not a pass: doctest itself exits 0 when
// nothing matched, so a CTest entry whose name no longer matches its case (a renamed case, or a
// name CMake cut at a ';') would pass without running anything.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <string_view>

namespace {

int g_selected = -1;  // test cases that passed the filters in the last run

// Listens for the end of the run to learn how many test cases the filters selected.
struct SelectedCount : doctest::IReporter {
  explicit SelectedCount(const doctest::ContextOptions&) {}
  void test_run_end(const doctest::TestRunStats& stats) override { g_selected = static_cast<int>(stats.numTestCasesPassingFilters); }
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_case_start(const doctest::TestCaseData&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
DOCTEST_REGISTER_LISTENER("selected_count", 1, SelectedCount);

bool has_case_filter(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a.starts_with("--test-case=") || a.starts_with("-tc=")) return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int result = context.run();
  if (context.shouldExit()) return result;  // --list-test-cases, --help, ...
  if (result == 0 && g_selected == 0 && has_case_filter(argc, argv)) {
    std::fprintf(stderr, "error: no test case matches the --test-case filter\n");
    return 1;
  }
  return result;
}
