// The AVX-512 intrinsics the AVX-512 kernels use, and the target attributes of their functions.
// Every file with AVX-512 code includes this header in place of <immintrin.h>.
//
// A normal build takes the compiler's intrinsics. A build with BNN_EMULATE_AVX512 defined
// (setup.py: BNN_KERNELS_EMULATE_AVX512=1; `make test-avx512-emu`) takes the portable
// emulation of common/avx512_emu.h instead, and runs the AVX-512 kernels on any CPU with AVX2
// (cpu_runs_avx512 in common/cpu_features.h), so the test suite covers their code on machines
// without AVX-512. Such a build is for tests only: the emulation is slow.
#pragma once

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define BNN_HAVE_AVX512_INTRINSICS 1

#if defined(BNN_EMULATE_AVX512)
#include "common/avx512_emu.h"
// The emulated kernels run where AVX2 does; their 256-bit intrinsics stay native.
#define BNN_TARGET_AVX512F __attribute__((target("avx2")))
#define BNN_TARGET_AVX512_VPOPCNT __attribute__((target("avx2")))
#else
#define BNN_TARGET_AVX512F __attribute__((target("avx512f")))
#define BNN_TARGET_AVX512_VPOPCNT __attribute__((target("avx512f,avx512vpopcntdq")))
#endif
#endif
