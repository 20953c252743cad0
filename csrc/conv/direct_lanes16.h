// The direct conv's layout with one 32-bit word per input word and 16 output channels per
// register (conv/direct_impl.h): shared by the AVX-512 VPOPCNTDQ kernel (direct_avx512.cpp)
// and its portable twin (direct_scalar.cpp), which runs the same blocking and layout with a
// loop over the 16 lanes, so everything but the few vector instructions is tested on every
// CPU. Internal to those files.
#pragma once

#include "conv/direct_impl.h"

namespace bnn::cpu::direct {

constexpr int kLanes16Chunk = 64;  // output channels per chunk: 4 registers of 16

// Pixels counted together (shared_full_runs) by a chunk of NV registers: P * NV accumulators,
// so that each weight load serves P pixels (measured on Zen 5: one pixel at a time reached
// 45% of the ALU bound with 32 channels, 71% with 64).
template <int NV>
constexpr int kLanes16Group = NV <= 2 ? 4 : 2;

// The counting traits of a Lanes16 kernel whose Count<NV>::run counts the chunk's valid
// channels in NV registers.
template <template <int> class Count>
struct Lanes16 {
  static constexpr int kSplit = 1, kLanes = 16, kChunk = kLanes16Chunk;
  static void split(uint32_t v, uint32_t* out, int64_t) { out[0] = v; }
  static void count(const uint32_t* xs, const PixelRun* runs, int64_t npix, const uint32_t* wchunk, int valid,
                    const Segment& seg, int32_t* out, int64_t ld) {
    using Fn =
        void (*)(const uint32_t*, const PixelRun*, int64_t, const uint32_t*, int, const Segment&, int32_t*, int64_t);
    static constexpr Fn kCount[5] = {nullptr, Count<1>::run, Count<2>::run, Count<3>::run, Count<4>::run};
    kCount[(valid + 15) / 16](xs, runs, npix, wchunk, valid, seg, out, ld);
  }
};

}  // namespace bnn::cpu::direct
