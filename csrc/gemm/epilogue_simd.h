// Vector value kernels of the CPU epilogue (internal to epilogue_cpu.cpp).
#pragma once

#include <cstdint>

#include "common/epilogue.h"

namespace bnn::cpu {

// y[j] = epilogue_value(e, m, n0 + j, acc[j]) for j < len, the same operations in the same
// order and rounding, several lanes at a time.
using ValuesFn = void (*)(const Epilogue& e, int64_t m, int64_t n0, int64_t len, const int32_t* acc, float* y);

// nullptr where the compiler cannot build them (non-x86 targets).
extern const ValuesFn epilogue_values_avx2;
extern const ValuesFn epilogue_values_avx512;

}  // namespace bnn::cpu
