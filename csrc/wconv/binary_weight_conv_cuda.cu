// binary_weight_conv2d on the GPU: an implicit GEMM over 64 output pixels x 64 output channels
// of one group per block (256 threads, 4x4 outputs each). Every 32 GEMM columns
// (k = tap * Cg + c), the block gathers its pixels' patch values straight from NHWC x (im2col
// on the fly, zeros for padded taps: no workspace) and decodes the weight bits to +-1 in shared
// memory; each thread then adds a * (+-1) (exact: a sign flip) to its accumulators in k order,
// the CPU scalar path's order, so results match it bit for bit. The epilogue multiplies and
// adds with __fmul_rn / __fadd_rn (never an FMA). One 1-D grid over (group, channel tile,
// pixel tile): no grid.y / grid.z limits to slice around.
#include <algorithm>

#include "common/cuda_common.cuh"
#include "common/tile_store.cuh"
#include "wconv/binary_weight_conv_cuda.h"

namespace bnn::cuda {
namespace {

constexpr int kT = 64, kTK = 32, kThreads = 256;
constexpr int kRowsPerThread = kT * kTK / kThreads;  // patch values each thread gathers per step

struct WconvDims {
  int64_t cg, og, taps, K, wg, pixels, m_tiles, n_tiles;
};

// Where thread rows r = gr0 + 8 * i (i < kRowsPerThread) of the tile start in x: the image's
// offset (-1 past the last pixel) and the top-left input position of the receptive field.
struct RowOrigins {
  int64_t base[kRowsPerThread];
  int ih0[kRowsPerThread], iw0[kRowsPerThread];  // 32 bits: fewer registers (spatial sizes fit)
};

__device__ __forceinline__ void row_origins(const ConvParams& p, const WconvDims& d, int64_t m0, int gr0,
                                            RowOrigins& o) {
#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) {
    const int64_t pix = m0 + gr0 + 8 * i;
    const int64_t ow = pix % p.out_w, oh = (pix / p.out_w) % p.out_h, n = pix / (p.out_w * p.out_h);
    o.base[i] = pix < d.pixels ? n * p.in_h * p.in_w * p.in_channels : -1;
    o.ih0[i] = static_cast<int>(oh * p.stride_h - p.pad_h);
    o.iw0[i] = static_cast<int>(ow * p.stride_w - p.pad_w);
  }
}

// Column k (GEMM order) of the patch rows of this thread, into Xs[c][rows].
template <typename T>
__device__ __forceinline__ void gather_x(const T* __restrict__ x, const ConvParams& p, const WconvDims& d,
                                         const RowOrigins& o, int64_t grp, int64_t k, int c, int gr0, T (*Xs)[kT + 1]) {
  const bool k_ok = k < d.K;
  const int64_t t = k_ok ? k / d.cg : 0, ch = k - t * d.cg;
  const int dh = static_cast<int>((t / p.kernel_w) * p.dil_h), dw = static_cast<int>((t % p.kernel_w) * p.dil_w);
#pragma unroll
  for (int i = 0; i < kRowsPerThread; ++i) {
    const int ih = o.ih0[i] + dh, iw = o.iw0[i] + dw;
    T v = T(0);
    if (k_ok && o.base[i] >= 0 && ih >= 0 && ih < p.in_h && iw >= 0 && iw < p.in_w)
      v = x[o.base[i] + (static_cast<int64_t>(ih) * p.in_w + iw) * p.in_channels + grp * d.cg + ch];
    Xs[c][gr0 + 8 * i] = v;
  }
}

// Bits k0 + b0 .. k0 + b0 + 7 of output channel row wo (null past the group's channels) as
// +-1 (0 past K) into Ws[bit][nl].
template <typename T>
__device__ __forceinline__ void decode_w(const uint32_t* __restrict__ wo, const WconvDims& d, int64_t k0, int b0,
                                         int nl, T (*Ws)[kT + 1]) {
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int64_t k = k0 + b0 + j;
    T v = T(0);
    if (wo != nullptr && k < d.K) {
      const int64_t t = k / d.cg, ch = k - t * d.cg;
      v = ((wo[t * d.wg + (ch >> 5)] >> (ch & 31)) & 1u) ? T(1) : T(-1);
    }
    Ws[b0 + j][nl] = v;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    wconv_tiled_kernel(const T* __restrict__ x, const uint32_t* __restrict__ w, ConvParams p, WconvDims d,
                       const T* __restrict__ mult, const T* __restrict__ bias, T* __restrict__ out) {
  __shared__ T Xs[kTK][kT + 1];
  __shared__ T Ws[kTK][kT + 1];
  const int64_t blk = blockIdx.x;
  const int64_t m0 = (blk % d.m_tiles) * kT, n0 = ((blk / d.m_tiles) % d.n_tiles) * kT;
  const int64_t grp = blk / (d.m_tiles * d.n_tiles);
  const int gc = threadIdx.x % kTK, gr0 = threadIdx.x / kTK;     // gather: column, first row
  const int nl = threadIdx.x % kT, b0 = (threadIdx.x / kT) * 8;  // decode: channel, first bit
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;        // compute: 4x4 outputs
  RowOrigins o;
  row_origins(p, d, m0, gr0, o);
  const uint32_t* wo = n0 + nl < d.og ? w + (grp * d.og + n0 + nl) * d.taps * d.wg : nullptr;
  T acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = T(0);
  for (int64_t k0 = 0; k0 < d.K; k0 += kTK) {
    gather_x(x, p, d, o, grp, k0 + gc, gc, gr0, Xs);
    decode_w(wo, d, k0, b0, nl, Ws);
    __syncthreads();
    const int kn = static_cast<int>(d.K - k0 < kTK ? d.K - k0 : kTK);  // columns past K never added
#pragma unroll 8
    for (int c = 0; c < kn; ++c) {
      T a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = Xs[c][ty + 16 * i], b[i] = Ws[c][tx + 16 * i];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];  // exact: b is +-1, an FMA rounds the sum only
    }
    __syncthreads();
  }
  store_tile_4x4(acc, TileOut<T>{out, p.out_channels, grp * d.og, d.pixels, d.og, mult, bias}, m0, n0, tx, ty);
}

template <typename T>
void run(const void* x, const int32_t* w, const ConvParams& p, const void* mult, const void* bias, void* out,
         cudaStream_t stream) {
  WconvDims d;
  d.cg = p.group_channels();
  d.og = p.group_out();
  d.taps = p.kernel_h * p.kernel_w;
  d.K = d.taps * d.cg;
  d.wg = (d.cg + 31) / 32;
  d.pixels = p.batch * p.out_h * p.out_w;
  d.m_tiles = ceil_div(d.pixels, kT);
  d.n_tiles = ceil_div(d.og, kT);
  const int64_t blocks = d.m_tiles * d.n_tiles * p.groups;
  wconv_tiled_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      static_cast<const T*>(x), reinterpret_cast<const uint32_t*>(w), p, d, static_cast<const T*>(mult),
      static_cast<const T*>(bias), static_cast<T*>(out));
}

}  // namespace

void launch_binary_weight_conv2d(WconvType type, const void* x, const int32_t* w, const ConvParams& p,
                                 const void* multiplier, const void* bias, void* out, cudaStream_t stream) {
  if (p.batch * p.out_h * p.out_w == 0 || p.out_channels == 0) return;
  if (type == WconvType::F64) return run<double>(x, w, p, multiplier, bias, out, stream);
  run<float>(x, w, p, multiplier, bias, out, stream);
}

}  // namespace bnn::cuda
