// binary_weight_linear on the GPU (binary weights, real activations), two paths:
//  - GEMV (few rows): one warp per 4 output features; each lane streams 128 weight bits per
//    feature with one 16-byte load, words are broadcast by shuffles so that x is read
//    coalesced, and +-x is added by flipping the sign bit (no multiply), for up to 8 rows of
//    x; a warp shuffle reduction and the scale/bias epilogue finish it.
//  - tiled (many rows): 64x64 output tiles, x and the decoded +-1 weights staged in shared
//    memory 32 columns at a time, 4x4 outputs per thread, FMA in the accumulation type.
// Future work: decode to fp16/bf16 +-1 and use HMMA (mma.sync) or wgmma for many rows.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstring>

#include "common/cuda_common.cuh"
#include "common/float_rn.cuh"
#include "common/tile_store.cuh"
#include "linear/binary_weight_linear_cuda.h"

namespace bnn::cuda {

bool parse_linear_path(const char* s, LinearPath* out) {
  if (s == nullptr || *s == '\0' || std::strcmp(s, "auto") == 0) return *out = LinearPath::Auto, true;
  if (std::strcmp(s, "gemv") == 0) return *out = LinearPath::Gemv, true;
  if (std::strcmp(s, "tiled") == 0) return *out = LinearPath::Tiled, true;
  return false;
}

namespace {

// +v when bit is 1, -v when 0 (a sign-bit flip, as -x is on the CPU).
__device__ __forceinline__ float signed_by(float v, uint32_t bit) {
  return __int_as_float(__float_as_int(v) ^ static_cast<int>((bit ^ 1u) << 31));
}
__device__ __forceinline__ double signed_by(double v, uint32_t bit) {
  return __longlong_as_double(__double_as_longlong(v) ^ static_cast<long long>(static_cast<uint64_t>(bit ^ 1u) << 63));
}

template <typename Acc>
__device__ __forceinline__ Acc finish(Acc dot, const Acc* scale, const Acc* bias, int64_t n) {
  return finish_rn(dot, scale, bias, n);  // common/float_rn.cuh: never an FMA
}

constexpr int kMR = 8, kNW = 4, kGWarps = 8;

// GEMV: warp per kNW output features and up to kMR rows of x. Each lane loads VW consecutive
// weight words of each feature (one 16-byte load when VW = 4), so a warp holds 32 * VW words
// = 1024 * VW columns; then for every word, a shuffle broadcasts it and lane l takes bit l,
// against x[col + l]: x is read coalesced (128 bytes per warp per row) and each x element
// serves kNW features.
template <typename T, typename Acc, int VW>
__global__ void __launch_bounds__(kGWarps * 32)
    linear_gemv_kernel(const T* __restrict__ x, int64_t M, int64_t K, const uint32_t* __restrict__ w, int64_t N,
                       const Acc* __restrict__ scale, const Acc* __restrict__ bias, Acc* __restrict__ out) {
  const int lane = threadIdx.x & 31;
  const int64_t n0 = (static_cast<int64_t>(blockIdx.x) * kGWarps + (threadIdx.x >> 5)) * kNW;
  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * kMR;
  if (n0 >= N) return;
  const int rows = static_cast<int>(M - m0 < kMR ? M - m0 : kMR);
  const int feats = static_cast<int>(N - n0 < kNW ? N - n0 : kNW);
  const int64_t words = (K + 31) / 32;
  const T* xm = x + m0 * K;
  Acc acc[kMR][kNW];
#pragma unroll
  for (int r = 0; r < kMR; ++r)
#pragma unroll
    for (int f = 0; f < kNW; ++f) acc[r][f] = 0;
  constexpr int64_t kSpan = 32 * VW;  // words per warp iteration
  for (int64_t base = 0; base < words; base += kSpan) {
    const int64_t wl = base + lane * VW;  // first word this lane loads
    uint32_t wv[kNW][VW];
#pragma unroll
    for (int f = 0; f < kNW; ++f) {
      const uint32_t* wf = w + (n0 + f) * words;
      if constexpr (VW == 4) {
        uint4 v = make_uint4(0u, 0u, 0u, 0u);
        if (f < feats && wl < words) v = __ldg(reinterpret_cast<const uint4*>(wf + wl));  // words % 4 == 0
        wv[f][0] = v.x, wv[f][1] = v.y, wv[f][2] = v.z, wv[f][3] = v.w;
      } else {
        wv[f][0] = (f < feats && wl < words) ? __ldg(wf + wl) : 0u;
      }
    }
    const bool full = (base + kSpan) * 32 <= K;  // no column of this span is past K
#pragma unroll 2
    for (int src = 0; src < 32; ++src) {
#pragma unroll
      for (int q = 0; q < VW; ++q) {
        const int64_t col = (base + src * VW + q) * 32 + lane;
        uint32_t bits[kNW];
#pragma unroll
        for (int f = 0; f < kNW; ++f) bits[f] = (__shfl_sync(0xFFFFFFFFu, wv[f][q], src) >> lane) & 1u;
        if (!full && col >= K) continue;
#pragma unroll
        for (int r = 0; r < kMR; ++r) {
          if (r < rows) {
            const Acc xv = convert_to<Acc>(xm[r * K + col]);
#pragma unroll
            for (int f = 0; f < kNW; ++f) acc[r][f] += signed_by(xv, bits[f]);
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kMR; ++r)
#pragma unroll
    for (int f = 0; f < kNW; ++f)
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) acc[r][f] += __shfl_xor_sync(0xFFFFFFFFu, acc[r][f], off);
  if (lane == 0) {
#pragma unroll
    for (int r = 0; r < kMR; ++r)
#pragma unroll
      for (int f = 0; f < kNW; ++f)
        if (r < rows && f < feats) out[(m0 + r) * N + n0 + f] = finish(acc[r][f], scale, bias, n0 + f);
  }
}

constexpr int kT = 64, kTK = 32, kTThreads = 256;

template <typename T, typename Acc>
__global__ void __launch_bounds__(kTThreads)
    linear_tiled_kernel(const T* __restrict__ x, int64_t M, int64_t K, const uint32_t* __restrict__ w, int64_t N,
                        const Acc* __restrict__ scale, const Acc* __restrict__ bias, Acc* __restrict__ out,
                        int64_t ldo) {
  __shared__ Acc Xs[kTK][kT + 1];
  __shared__ Acc Ws[kTK][kT + 1];
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * kT, n0 = static_cast<int64_t>(blockIdx.y) * kT;
  const int64_t words = (K + 31) / 32;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  Acc acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0;
  for (int64_t wi = 0; wi < words; ++wi) {
    const int64_t c0 = wi * 32;
#pragma unroll
    for (int i = 0; i < kT * kTK / kTThreads; ++i) {
      const int idx = i * kTThreads + threadIdx.x;
      const int r = idx / kTK, c = idx % kTK;
      const int64_t m = m0 + r, col = c0 + c;
      Xs[c][r] = (m < M && col < K) ? convert_to<Acc>(x[m * K + col]) : Acc(0);
    }
    {
      // thread -> (n = tid % 64, 8 bits starting at 8 * (tid / 64))
      const int nl = threadIdx.x % kT, b0 = (threadIdx.x / kT) * 8;
      const int64_t n = n0 + nl;
      const uint32_t bw = n < N ? w[n * words + wi] : 0u;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int bit = b0 + j;
        Ws[bit][nl] = (n < N && c0 + bit < K) ? (((bw >> bit) & 1u) ? Acc(1) : Acc(-1)) : Acc(0);
      }
    }
    __syncthreads();
#pragma unroll 8
    for (int c = 0; c < kTK; ++c) {
      Acc a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = Xs[c][ty + 16 * i], b[i] = Ws[c][tx + 16 * i];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];  // exact: b is +-1 or 0
    }
    __syncthreads();
  }
  store_tile_4x4(acc, TileOut<Acc>{out, ldo, 0, M, N, scale, bias}, m0, n0, tx, ty);
}

template <typename T, typename Acc>
void run_linear(const void* xv, int64_t M, int64_t K, const int32_t* wv, int64_t N, const void* sv, const void* bv,
                void* ov, LinearPath path, cudaStream_t stream) {
  const T* x = static_cast<const T*>(xv);
  const uint32_t* w = reinterpret_cast<const uint32_t*>(wv);
  const Acc* scale = static_cast<const Acc*>(sv);
  const Acc* bias = static_cast<const Acc*>(bv);
  Acc* out = static_cast<Acc*>(ov);
  if (path == LinearPath::Auto) path = M <= kMR ? LinearPath::Gemv : LinearPath::Tiled;
  if (path == LinearPath::Gemv) {
    const int64_t words = (K + 31) / 32;
    const bool vec16 = aligned_to(w, 16) && words % 4 == 0;
    for (int64_t ms = 0; ms < M; ms += int64_t(kMR) * kMaxGridYZ) {  // grid.y limit
      const int64_t mc = std::min<int64_t>(M - ms, int64_t(kMR) * kMaxGridYZ);
      const dim3 grid(static_cast<unsigned>(ceil_div(N, kGWarps * kNW)), static_cast<unsigned>(ceil_div(mc, kMR)));
      BOOL_SWITCH(vec16, Vec16, [&] {
        linear_gemv_kernel<T, Acc, Vec16 ? 4 : 1>
            <<<grid, kGWarps * 32, 0, stream>>>(x + ms * K, mc, K, w, N, scale, bias, out + ms * N);
      });
    }
  } else {
    for (int64_t ns = 0; ns < N; ns += int64_t(kT) * kMaxGridYZ) {  // grid.y limit
      const int64_t nc = std::min<int64_t>(N - ns, int64_t(kT) * kMaxGridYZ);
      const int64_t words = (K + 31) / 32;
      const dim3 grid(static_cast<unsigned>(ceil_div(M, kT)), static_cast<unsigned>(ceil_div(nc, kT)));
      // Columns ns .. ns+nc of out (leading dim N).
      linear_tiled_kernel<T, Acc><<<grid, kTThreads, 0, stream>>>(
          x, M, K, w + ns * words, nc, scale ? scale + ns : nullptr, bias ? bias + ns : nullptr, out + ns, N);
    }
  }
}

}  // namespace

void launch_binary_weight_linear(LinearXType type, const void* x, int64_t M, int64_t K, const int32_t* w, int64_t N,
                                 const void* scale, const void* bias, void* out, LinearPath path, cudaStream_t stream) {
  if (M <= 0 || N <= 0) return;
  switch (type) {
    case LinearXType::F16:
      return run_linear<__half, float>(x, M, K, w, N, scale, bias, out, path, stream);
    case LinearXType::BF16:
      return run_linear<__nv_bfloat16, float>(x, M, K, w, N, scale, bias, out, path, stream);
    case LinearXType::F32:
      return run_linear<float, float>(x, M, K, w, N, scale, bias, out, path, stream);
    case LinearXType::F64:
      return run_linear<double, double>(x, M, K, w, N, scale, bias, out, path, stream);
  }
}

}  // namespace bnn::cuda
