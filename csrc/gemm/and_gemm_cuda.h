// The AndGemm API: the CUDA AND-popcount GEMM engine behind xnor_gemm, binary_conv2d and
// bitserial_gemm (the CUDA counterpart of the CPU's popcount_gemm.h; DEVELOPERS.md explains
// the names). Torch-free. Where each part lives:
//   and_gemm_dispatch_cuda.cu  path names, the path heuristic (choose_path), launch slicing
//   and_gemm_mma_cuda.cu       GemmPath::Mma (b1 tensor cores) and and_gemm_mma_native()
//   and_gemm_popc_cuda.cu      GemmPath::Popc (tiled, CUDA cores)
//   and_gemm_gemv_cuda.cu      GemmPath::Gemv (few rows)
//   and_gemm_wgmma_cuda.cu     GemmPath::Wgmma (sm_90a warpgroup tensor cores, TMA; opt-in)
//   xnor_gemm_cuda.cu          row popcounts and xnor_gemm on top of the engine
//
// Every path computes the AND-popcount of packed rows (the operation binary tensor cores do
// natively on sm_80 and sm_90) and folds everything else into an integer epilogue:
//   C[b][m * ldc + n] = alpha * popcount(A[b][m] & B[b][n]) + beta + row_add[b][m] + col_add[b][n]
// evaluated modulo 2^32 (so alpha * count may exceed int32 when the sum does not).
// XOR-popcount follows from popc(a ^ b) = popc(a) + popc(b) - 2 popc(a & b).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace bnn::cuda {

enum class GemmPath {
  Auto,  // heuristic on the shape and the loaded code (choose_path in and_gemm_dispatch_cuda.cu)
  Mma,   // binary tensor cores: mma.sync m16n8k256 b1 AND.popc, cp.async pipeline (sm_80+)
  Popc,  // CUDA cores: shared-memory tiles, __popc
  Gemv,  // CUDA cores: one warp per output column, lanes along k (for few rows)
  // sm_90a only: wgmma m64nNk256 b1 AND.popc, TMA + mbarrier ring, persistent (opt-in: Auto never
  // picks it). Falls back to Mma (and reports it) unless and_gemm_wgmma_native() and the operands
  // suit TMA (and_gemm_wgmma_fits).
  Wgmma,
};

// "auto", "mma", "popc", "gemv" or "wgmma" (nullptr or "" = auto); anything else returns false.
bool parse_gemm_path(const char* s, GemmPath* out);
const char* gemm_path_name(GemmPath p);

struct AndGemmArgs {
  const int32_t* A = nullptr;  // [batch][M rows of lda words]
  int64_t lda = 0, a_batch = 0;
  const int32_t* B = nullptr;  // [batch][N rows of ldb words]
  int64_t ldb = 0, b_batch = 0;
  int64_t M = 0, N = 0, words = 0;   // words per row that take part
  uint32_t last_mask = 0xFFFFFFFFu;  // valid bits of the last word (bits outside are ignored)
  int batch = 1;
  int32_t alpha = 1, beta = 0;
  const int32_t* row_add = nullptr;  // [batch][M] or null
  int64_t row_batch = 0;
  const int32_t* col_add = nullptr;  // [batch][N] or null
  int64_t col_batch = 0;
  int32_t* C = nullptr;
  int64_t ldc = 0, c_batch = 0;
};

// Runs the AND-popcount GEMM on `stream` by `path` (Auto picks one; Mma falls back to Popc
// unless and_gemm_mma_native(); Wgmma falls back to Mma, see GemmPath). Returns the path that ran.
GemmPath launch_and_gemm(const AndGemmArgs& args, GemmPath path, cudaStream_t stream);

// out[r] = mul * popcount(bits[r] & masks) + add for `rows` rows of `words` words (leading dim
// ld); the last word is masked with last_mask.
void launch_row_popcounts(const int32_t* bits, int64_t rows, int64_t ld, int64_t words, uint32_t last_mask, int32_t mul,
                          int32_t add, int32_t* out, cudaStream_t stream);

// Workspace (bytes, device memory) launch_xnor_gemm needs for an M x N product.
int64_t xnor_gemm_workspace_bytes(int64_t M, int64_t N);

// C[m, n] = k - 2 popcount(A[m] ^ B[n]) (contiguous rows of ceil(k/32) words, C row-major
// with leading dim ldc). workspace: xnor_gemm_workspace_bytes(M, N) bytes.
GemmPath launch_xnor_gemm(const int32_t* A, const int32_t* B, int64_t M, int64_t N, int64_t k, int32_t* C, int64_t ldc,
                          void* workspace, GemmPath path, cudaStream_t stream);

// Internal: the individual paths (and_gemm_mma_cuda.cu, and_gemm_popc_cuda.cu,
// and_gemm_gemv_cuda.cu), called by launch_and_gemm for slices within the grid limits.
void launch_and_gemm_mma(const AndGemmArgs& args, cudaStream_t stream);
void launch_and_gemm_popc(const AndGemmArgs& args, cudaStream_t stream);
void launch_and_gemm_gemv(const AndGemmArgs& args, cudaStream_t stream);

// True when the MMA kernel the driver loads on the current device holds the tensor-core code:
// compiled for sm_80 or newer (cudaFuncGetAttributes: ptxVersion and binaryVersion >= 80).
// Decided by the loaded code, not the device: PTX below compute_80 JIT-compiled on a Hopper GPU
// would still give a kernel that only traps (setup.py and CMake refuse such arch lists).
bool and_gemm_mma_native();

// GemmPath::Wgmma (and_gemm_wgmma_cuda.cu). Runs only where and_gemm_wgmma_native(): the loaded
// image of the kernel is sm_90a SASS and the device has compute capability 9.0 exactly.
// and_gemm_wgmma_fits: the operands suit TMA (16-byte aligned bases, lda and ldb multiples of 4
// words, batch strides whole rows, words > 0). launch_and_gemm_wgmma returns false, launching
// nothing, when they do not or the driver refuses the tensor maps; it needs no slicing (a 1-D
// persistent grid).
bool and_gemm_wgmma_native();
bool and_gemm_wgmma_fits(const AndGemmArgs& args);
bool launch_and_gemm_wgmma(const AndGemmArgs& args, cudaStream_t stream);

}  // namespace bnn::cuda
