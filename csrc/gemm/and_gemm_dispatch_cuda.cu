// Dispatch of the AND-popcount GEMM engine (and_gemm_cuda.h): the path heuristic
// (choose_path: shape, and whether the loaded MMA code is sm_80+) and the launch slicing that
// keeps every grid inside CUDA's limits. The paths themselves: and_gemm_mma_cuda.cu (tensor
// cores), and_gemm_popc_cuda.cu (tiled, CUDA cores), and_gemm_gemv_cuda.cu (few rows).
#include <algorithm>
#include <cstring>

#include "common/cuda_common.cuh"
#include "gemm/and_gemm_cuda.h"

namespace bnn::cuda {

bool parse_gemm_path(const char* s, GemmPath* out) {
  if (s == nullptr || *s == '\0' || std::strcmp(s, "auto") == 0) return *out = GemmPath::Auto, true;
  if (std::strcmp(s, "mma") == 0) return *out = GemmPath::Mma, true;
  if (std::strcmp(s, "popc") == 0) return *out = GemmPath::Popc, true;
  if (std::strcmp(s, "gemv") == 0) return *out = GemmPath::Gemv, true;
  if (std::strcmp(s, "wgmma") == 0) return *out = GemmPath::Wgmma, true;
  return false;
}

const char* gemm_path_name(GemmPath p) {
  switch (p) {
    case GemmPath::Mma:
      return "mma";
    case GemmPath::Popc:
      return "popc";
    case GemmPath::Gemv:
      return "gemv";
    case GemmPath::Wgmma:
      return "wgmma";
    default:
      return "auto";
  }
}

namespace {

// Which path runs for a shape: the tensor-core kernel once there is at least about one full
// 128x128 tile of work per row block, the GEMV kernel for a handful of rows, the tiled
// CUDA-core kernel for the rest (tiny products, where the MMA tile would be mostly padding).
GemmPath choose_path(const AndGemmArgs& p, GemmPath requested, bool mma_native) {
  GemmPath path = requested;
  if (path == GemmPath::Auto) {
    if (p.M <= 8)
      path = GemmPath::Gemv;
    else if (p.M < 32 || p.N < 32 || p.M * p.N * p.batch < 128 * 128)
      path = GemmPath::Popc;
    else
      path = GemmPath::Mma;
  }
  if (path == GemmPath::Mma && !mma_native) path = GemmPath::Popc;  // no b1 AND.popc m16n8k256
  return path;
}

}  // namespace

GemmPath launch_and_gemm(const AndGemmArgs& args, GemmPath requested, cudaStream_t stream) {
  // The wgmma kernel (opt-in) where the loaded code and the operands allow it; Mma otherwise.
  if (requested == GemmPath::Wgmma) {
    if (and_gemm_wgmma_native() && launch_and_gemm_wgmma(args, stream)) return GemmPath::Wgmma;
    requested = GemmPath::Mma;
  }
  const GemmPath path = choose_path(args, requested, and_gemm_mma_native());
  // Slices keep every grid dimension inside CUDA's limits (kMaxGridYZ = 65535 for y and z): at
  // most 65535 * 8 rows (GEMV: 8 rows per block row), 2^21 columns (popc: 64 per block column,
  // MMA: 128) and 65535 batch entries per launch.
  constexpr int64_t kMaxM = kMaxGridYZ * 8, kMaxN = (kMaxGridYZ + 1) / 2 * 64, kMaxBatch = kMaxGridYZ;
  for (int64_t b0 = 0; b0 < args.batch; b0 += kMaxBatch)
    for (int64_t m0 = 0; m0 < args.M; m0 += kMaxM)
      for (int64_t n0 = 0; n0 < args.N; n0 += kMaxN) {
        AndGemmArgs p = args;
        p.batch = static_cast<int>(std::min<int64_t>(kMaxBatch, args.batch - b0));
        p.M = std::min(kMaxM, args.M - m0);
        p.N = std::min(kMaxN, args.N - n0);
        p.A = args.A + b0 * args.a_batch + m0 * args.lda;
        p.B = args.B + b0 * args.b_batch + n0 * args.ldb;
        if (p.row_add) p.row_add = args.row_add + b0 * args.row_batch + m0;
        if (p.col_add) p.col_add = args.col_add + b0 * args.col_batch + n0;
        p.C = args.C + b0 * args.c_batch + m0 * args.ldc + n0;
        switch (path) {
          case GemmPath::Mma:
            launch_and_gemm_mma(p, stream);
            break;
          case GemmPath::Gemv:
            launch_and_gemm_gemv(p, stream);
            break;
          default:
            launch_and_gemm_popc(p, stream);
            break;
        }
      }
  return path;
}

}  // namespace bnn::cuda
