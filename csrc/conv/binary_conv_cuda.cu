// binary_conv2d on the GPU as bit im2col + AND-popcount GEMM (the same decomposition as
// binary_conv_cpu.cpp):
//   1. weights: each tap's tail masked into a 16-byte-aligned copy, per-tap popcounts;
//   2. per chunk of output pixels: gather the packed taps of every group into rows of
//      KH*KW*ceil(Cg/32) words (channels of a group extracted with a funnel shift, taps
//      outside the image filled with the pad value's bits, zeros for pad_value 0), then
//      row popcounts;
//   3. one GEMM batched over groups: 4 popc(a&w) - 2 popc(a) - 2 popc(w) + KH*KW*Cg, written
//      straight into the NHWC output (column offset g * O/groups, leading dim O);
//   4. pad_value 0: border pixels add back sum_c w over each padded tap (2 popc - Cg), the
//      amount step 2's all -1 gather subtracted, so padded taps contribute exactly 0.
#include <algorithm>

#include "common/cuda_common.cuh"
#include "conv/binary_conv_cuda.h"

// Gathered rows per pixel chunk, in words (the emulation build lowers it to test the chunk loop).
#ifndef BNN_CONV_CHUNK_WORDS
#define BNN_CONV_CHUNK_WORDS (int64_t(64) << 20 >> 2)  // 64 MiB
#endif

namespace bnn::cuda {
namespace {

struct ConvLayout {
  int64_t cg, og, wg, wx, taps, row_words, ld, chunk;
  // workspace offsets in int32 words
  int64_t off_wclean, off_tap_pop, off_col_add, off_rows, off_row_add, total;
};

ConvLayout layout(const ConvParams& p) {
  ConvLayout l{};
  l.cg = p.in_channels / p.groups;
  l.og = p.out_channels / p.groups;
  l.wg = (l.cg + 31) / 32;
  l.wx = (p.in_channels + 31) / 32;
  l.taps = p.kernel_h * p.kernel_w;
  l.row_words = l.taps * l.wg;
  l.ld = (l.row_words + 3) / 4 * 4;  // rows start 16-byte aligned (vectorized cp.async)
  const int64_t pixels = p.batch * p.out_h * p.out_w;
  const int64_t budget_words = BNN_CONV_CHUNK_WORDS;
  l.chunk = std::max<int64_t>(128, budget_words / std::max<int64_t>(1, p.groups * l.ld));
  l.chunk = std::min(l.chunk, std::max<int64_t>(pixels, 1));
  auto up4 = [](int64_t v) { return (v + 3) / 4 * 4; };
  l.off_wclean = 0;
  l.off_tap_pop = up4(p.out_channels * l.ld);
  l.off_col_add = l.off_tap_pop + up4(p.out_channels * l.taps);
  l.off_rows = l.off_col_add + up4(p.out_channels);
  l.off_row_add = l.off_rows + up4(p.groups * l.chunk * l.ld);
  l.total = l.off_row_add + up4(p.groups * l.chunk);
  return l;
}

// One thread per (o, tap): masked copy of the tap's words and its popcount.
__global__ void prep_weights_kernel(const uint32_t* __restrict__ w, int64_t O, int64_t taps, int64_t wg, int64_t ld,
                                    uint32_t last, uint32_t* __restrict__ wclean, int32_t* __restrict__ tap_pop) {
  const int64_t n = O * taps;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = i / taps, t = i - o * taps;
    const uint32_t* src = w + i * wg;
    uint32_t* dst = wclean + o * ld + t * wg;
    int pc = 0;
    for (int64_t j = 0; j < wg; ++j) {
      uint32_t v = src[j];
      if (j == wg - 1) v &= last;
      dst[j] = v;
      pc += __popc(v);
    }
    tap_pop[i] = pc;
    if (t == taps - 1)
      for (int64_t j = taps * wg; j < ld; ++j) wclean[o * ld + j] = 0u;
  }
}

// col_add[o] = -2 * popcount of all of o's (masked) weight bits.
__global__ void weight_col_add_kernel(const int32_t* __restrict__ tap_pop, int64_t O, int64_t taps,
                                      int32_t* __restrict__ col_add) {
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < O;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint32_t s = 0;  // modulo 2^32, like the GEMM epilogue it feeds (no signed overflow)
    for (int64_t t = 0; t < taps; ++t) s += static_cast<uint32_t>(tap_pop[o * taps + t]);
    col_add[o] = static_cast<int32_t>(0u - 2u * s);
  }
}

// One thread per gathered word: rows[g][r][t * wg + j] for output pixel r0 + r.
__global__ void im2col_kernel(const uint32_t* __restrict__ x, ConvParams p, int64_t cg, int64_t wg, int64_t wx,
                              int64_t taps, int64_t ld, int64_t r0, int64_t rn, int64_t chunk,
                              uint32_t* __restrict__ rows) {
  const int64_t row_words = taps * wg;
  const int64_t n_items = p.groups * rn * row_words;
  const uint32_t fill = p.pad_value == 1 ? 0xFFFFFFFFu : 0u;
  const uint32_t last = cg % 32 ? ((1u << (cg % 32)) - 1u) : 0xFFFFFFFFu;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n_items;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t tw = i % row_words;
    const int64_t gr = i / row_words;
    const int64_t r = gr % rn, g = gr / rn;
    const int64_t t = tw / wg, j = tw - t * wg;
    const int64_t pix = r0 + r;
    const int64_t ow = pix % p.out_w, oh = (pix / p.out_w) % p.out_h, n = pix / (p.out_w * p.out_h);
    const int64_t kh = t / p.kernel_w, kw = t - kh * p.kernel_w;
    const int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dil_h;
    const int64_t iw = ow * p.stride_w - p.pad_w + kw * p.dil_w;
    uint32_t v;
    if (ih >= 0 && ih < p.in_h && iw >= 0 && iw < p.in_w) {
      const uint32_t* src = x + ((n * p.in_h + ih) * p.in_w + iw) * wx;
      const int64_t c0 = g * cg;
      const int64_t w0 = (c0 >> 5) + j;
      const int s = static_cast<int>(c0 & 31);
      v = src[w0];
      if (s != 0) v = (v >> s) | (w0 + 1 < wx ? (src[w0 + 1] << (32 - s)) : 0u);
    } else {
      v = fill;
    }
    if (j == wg - 1) v &= last;
    rows[(g * chunk + r) * ld + tw] = v;
  }
}

// row_add[g][r] = -2 * popcount of gathered row r of group g (one warp per row).
__global__ void row_add_kernel(const uint32_t* __restrict__ rows, int64_t groups, int64_t rn, int64_t chunk, int64_t ld,
                               int64_t row_words, int32_t* __restrict__ row_add) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  for (int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; i < groups * rn; i += warps) {
    const int64_t g = i / rn, r = i - g * rn;
    const uint32_t* row = rows + (g * chunk + r) * ld;
    int32_t s = 0;
    for (int64_t w = lane; w < row_words; w += 32) s += __popc(row[w]);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xFFFFFFFFu, s, off);
    if (lane == 0) row_add[g * chunk + r] = static_cast<int32_t>(0u - 2u * static_cast<uint32_t>(s));
  }
}

// Zero padding: out[pix, o] += sum over the pixel's padded taps of (2 tap_pop[o, t] - cg).
__global__ void border_fix_kernel(ConvParams p, int64_t cg, int64_t taps, const int32_t* __restrict__ tap_pop,
                                  int64_t r0, int64_t rn, int32_t* __restrict__ out) {
  const int64_t O = p.out_channels;
  const int64_t n_items = rn * O;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n_items;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / O, o = i - r * O;
    const int64_t pix = r0 + r;
    const int64_t ow = pix % p.out_w, oh = (pix / p.out_w) % p.out_h;
    const int64_t ih0 = oh * p.stride_h - p.pad_h, iw0 = ow * p.stride_w - p.pad_w;
    if (ih0 >= 0 && ih0 + (p.kernel_h - 1) * p.dil_h < p.in_h && iw0 >= 0 && iw0 + (p.kernel_w - 1) * p.dil_w < p.in_w)
      continue;  // interior pixel: no padded tap
    uint32_t add = 0;
    for (int64_t kh = 0; kh < p.kernel_h; ++kh) {
      const int64_t ih = ih0 + kh * p.dil_h;
      const bool row_in = ih >= 0 && ih < p.in_h;
      for (int64_t kw = 0; kw < p.kernel_w; ++kw) {
        const int64_t iw = iw0 + kw * p.dil_w;
        if (row_in && iw >= 0 && iw < p.in_w) continue;
        add += static_cast<uint32_t>(2 * tap_pop[o * taps + kh * p.kernel_w + kw] - static_cast<int32_t>(cg));
      }
    }
    int32_t* dst = out + pix * O + o;
    *dst = static_cast<int32_t>(static_cast<uint32_t>(*dst) + add);
  }
}

}  // namespace

int64_t binary_conv2d_workspace_bytes(const ConvParams& p) { return layout(p).total * 4; }

void launch_binary_conv2d(const int32_t* x, const int32_t* w, const ConvParams& p, int32_t* out, void* workspace,
                          GemmPath path, cudaStream_t stream) {
  const int64_t pixels = p.batch * p.out_h * p.out_w;
  if (pixels <= 0 || p.out_channels <= 0) return;
  const ConvLayout l = layout(p);
  int32_t* ws = static_cast<int32_t*>(workspace);
  uint32_t* wclean = reinterpret_cast<uint32_t*>(ws + l.off_wclean);
  int32_t* tap_pop = ws + l.off_tap_pop;
  int32_t* col_add = ws + l.off_col_add;
  uint32_t* rows = reinterpret_cast<uint32_t*>(ws + l.off_rows);
  int32_t* row_add = ws + l.off_row_add;
  const uint32_t last = l.cg % 32 ? ((1u << (l.cg % 32)) - 1u) : 0xFFFFFFFFu;
  constexpr int kThreads = 256;

  prep_weights_kernel<<<grid_for(p.out_channels * l.taps, kThreads), kThreads, 0, stream>>>(
      reinterpret_cast<const uint32_t*>(w), p.out_channels, l.taps, l.wg, l.ld, last, wclean, tap_pop);
  weight_col_add_kernel<<<grid_for(p.out_channels, kThreads), kThreads, 0, stream>>>(tap_pop, p.out_channels, l.taps,
                                                                                     col_add);
  for (int64_t r0 = 0; r0 < pixels; r0 += l.chunk) {
    const int64_t rn = std::min(l.chunk, pixels - r0);
    im2col_kernel<<<grid_for(p.groups * rn * l.row_words, kThreads, 1 << 20), kThreads, 0, stream>>>(
        reinterpret_cast<const uint32_t*>(x), p, l.cg, l.wg, l.wx, l.taps, l.ld, r0, rn, l.chunk, rows);
    row_add_kernel<<<grid_for(p.groups * rn * 32, kThreads, 1 << 16), kThreads, 0, stream>>>(
        rows, p.groups, rn, l.chunk, l.ld, l.row_words, row_add);
    AndGemmArgs a;
    a.A = reinterpret_cast<const int32_t*>(rows), a.lda = l.ld, a.a_batch = l.chunk * l.ld;
    a.B = reinterpret_cast<const int32_t*>(wclean), a.ldb = l.ld, a.b_batch = l.og * l.ld;
    a.M = rn, a.N = l.og, a.words = l.row_words, a.last_mask = 0xFFFFFFFFu;
    a.batch = static_cast<int>(p.groups);
    a.alpha = 4, a.beta = static_cast<int32_t>(l.taps * l.cg);
    a.row_add = row_add, a.row_batch = l.chunk;
    a.col_add = col_add, a.col_batch = l.og;
    a.C = out + r0 * p.out_channels, a.ldc = p.out_channels, a.c_batch = l.og;
    launch_and_gemm(a, path, stream);
    if (p.pad_value == 0 && (p.pad_h > 0 || p.pad_w > 0))
      border_fix_kernel<<<grid_for(rn * p.out_channels, kThreads, 1 << 20), kThreads, 0, stream>>>(
          p, l.cg, l.taps, tap_pop, r0, rn, out);
  }
}

}  // namespace bnn::cuda
