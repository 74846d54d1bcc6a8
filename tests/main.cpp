// The test runner's main (doctest). Each TEST_CASE is also registered with CTest.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
