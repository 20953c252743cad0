// Runs one bug kernel of test_kernels.cu: the emulator must abort with an EMU ERROR (checked by
// test_cuda_emu.py), except for the valid control cases.
#include <cstdio>

#include "test_kernels.h"
#include "test_util.h"

namespace emutest {

int run_detector(const std::string& name) {
  const int64_t n = 64;
  std::vector<int32_t> init(n, 3);
  // uninit_global gets a never-written buffer, the others an initialized writable one
  emu::DevBuf<int32_t> fresh(n), ready(init, false);
  int32_t* buf = name == "uninit_global" ? fresh.get() : ready.get();
  if (!run_bug_kernel(name, buf, n)) {
    const int r = run_sm90_detector(name);  // the sm_90a rules
    if (r == 2) fprintf(stderr, "unknown detector case %s\n", name.c_str());
    if (r) return r;
  }
  printf("no error detected\n");
  return 0;
}

}  // namespace emutest
