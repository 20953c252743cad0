// Small kernels of the emulator's own tests (test_kernels.cu): the fragment-layout probe and one
// kernel per bug class the emulator must catch.
#pragma once
#include <cstdint>
#include <string>

namespace emutest {
// Runs ldmatrix.x4 on a 512-byte shared tile filled with byte i = i * 7 + 3, lane l addressing
// shared offset row_addr[l]; regs[l * 4 + m] receives register m of lane l.
void probe_ldmatrix(const uint32_t* row_addr, uint32_t* regs);
// One mma.m16n8k256 .b1 AND.popc with the given per-lane registers a[l*4+r], b[l*2+r], c[l*4+r]
// (c in/out).
void probe_mma(const uint32_t* a, const uint32_t* b, int32_t* c);
// Launches the bug kernel `name` (see test_kernels.cu); returns false for an unknown name.
bool run_bug_kernel(const std::string& name, int32_t* buf, int64_t n);
}  // namespace emutest
