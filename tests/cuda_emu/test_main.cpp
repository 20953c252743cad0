// The emulation test driver: emu_test MODE [--seed S] [--device D]
//   MODE: all | quick | pack | gemm | conv | bitserial | linear | wconv | epilogue | fused | layout
//         | detect:NAME
//         | fallback:mma|popc (the GEMM path Auto and Mma must take with the loaded code)
//         | wgmma | wgmma-fallback:wgmma|mma|popc (the path a forced Wgmma takes)
//   --seed: warp scheduling order; --device: 0 sm_80, 1 sm_90, 2 sm_75 (no mma: fallback paths);
//   --code PTX,BIN | none: the code cudaFuncGetAttributes reports as loaded (default: native);
//   --wgmma-late 1: every wgmma runs at its covering wgmma.wait_group, the latest legal point.
// Prints "N checks, M failures"; any emulator error aborts with "EMU ERROR ...".
#include <cstdlib>
#include <cstring>
#include <string>

#include "test_util.h"

namespace emutest {
std::mt19937_64 rng(42);
int failures = 0, checks = 0;
}  // namespace emutest

int main(int argc, char** argv) {
  using namespace emutest;
  std::string which = argc > 1 ? argv[1] : "all";
  for (int i = 2; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--seed")) {
      const uint64_t s = strtoull(argv[i + 1], nullptr, 0);
      emu::set_seed(s);
      rng.seed(42 + s);
    } else if (!strcmp(argv[i], "--device")) {
      emu::set_device(atoi(argv[i + 1]));
    } else if (!strcmp(argv[i], "--code")) {
      int ptx = -1, bin = -1;
      if (strcmp(argv[i + 1], "none") && sscanf(argv[i + 1], "%d,%d", &ptx, &bin) != 2) {
        fprintf(stderr, "--code takes PTX,BIN (e.g. 75,90) or none\n");
        return 2;
      }
      emu::set_loaded_code(ptx, bin);
    } else if (!strcmp(argv[i], "--wgmma-late")) {
      emu::set_wgmma_latest(atoi(argv[i + 1]) != 0);
    } else {
      fprintf(stderr, "unknown option %s\n", argv[i]);
      return 2;
    }
  }
  if (which.rfind("detect:", 0) == 0) return run_detector(which.substr(7));
  if (which.rfind("fallback:", 0) == 0) test_mma_fallback(which.substr(9));
  if (which.rfind("wgmma-fallback:", 0) == 0) test_wgmma_fallback(which.substr(15));
  const bool quick = which == "quick", all = which == "all";
  if (all || quick || which == "layout") test_layout();
  if (all || which == "sm90") test_sm90();    // the emulator's own sm_90a kernels (test_sm90.cpp)
  if (all || which == "wgmma") test_wgmma();  // csrc's sm_90a GEMM (test_wgmma.cpp)
  if (all || quick || which == "pack") test_pack();
  if (all || quick || which == "gemm") test_gemm(quick);
  if (all || which == "conv") test_conv();
  if (all || quick || which == "bitserial") test_bitserial();
  if (all || quick || which == "linear") test_linear();
  if (all || quick || which == "wconv") test_wconv();
  if (all || quick || which == "epilogue") test_epilogue();
  if (all || quick || which == "fused") test_fused_epilogue();
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
