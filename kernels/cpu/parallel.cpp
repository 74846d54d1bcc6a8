#include "kernels/cpu/parallel.h"

#include <cstdlib>
#include <thread>

namespace mmg::cpu {

static int default_threads() {
  if (const char* env = std::getenv("MMG_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

static int g_threads = default_threads();

int num_threads() { return g_threads; }

void set_num_threads(int n) { g_threads = n > 0 ? n : default_threads(); }

}  // namespace mmg::cpu
