// The fused epilogue kernel (see epilogue_cuda.h): a grid-stride loop over the outputs laid
// out as M rows of 32 * ceil(N/32) slots, one thread per slot, so each warp covers one bit
// word of one row: every lane computes its channel's y (slots past N compute nothing), stores
// the float output and takes part in the ballot that forms the word; lane 0 stores the word.
// Warps stay whole through the loop: the slot count, the block size and hence the stride are
// multiples of 32.
#include "common/cuda_common.cuh"
#include "gemm/epilogue_cuda.h"

namespace bnn::cuda {
namespace {

constexpr int kThreads = 256;

// The float output (e.out: float32, float16 or bfloat16 storage), y rounded once.
__device__ __forceinline__ void store_float(const Epilogue& e, int64_t m, int64_t n, float y) {
  const int64_t i = m * e.out_ld + n;
  if (e.out_dtype == OutDtype::Float16) {
    static_cast<__half*>(e.out)[i] = __float2half_rn(y);
  } else if (e.out_dtype == OutDtype::BFloat16) {
    static_cast<__nv_bfloat16*>(e.out)[i] = __float2bfloat16_rn(y);
  } else {
    static_cast<float*>(e.out)[i] = y;
  }
}

__global__ void __launch_bounds__(kThreads)
    epilogue_kernel(const Epilogue e, const int32_t* __restrict__ acc, int64_t acc_ld, int64_t M, int64_t N) {
  const int64_t words = (N + 31) / 32, slots = M * words * 32;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t s = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; s < slots; s += stride) {
    const int64_t m = s / (words * 32), n = s % (words * 32);
    bool bit = false;
    if (n < N) {
      const float y = epilogue_value(e, m, n, acc[m * acc_ld + n]);
      if (e.out) store_float(e, m, n, y);
      if (e.bits_out) bit = y >= e.out_threshold[n];
    }
    if (e.bits_out) {
      const unsigned word = __ballot_sync(0xFFFFFFFFu, bit);
      if ((threadIdx.x & 31) == 0) e.bits_out[m * e.bits_ld + n / 32] = static_cast<int32_t>(word);
    }
  }
}

}  // namespace

void launch_epilogue(const Epilogue& e, const int32_t* acc, int64_t acc_ld, int64_t M, int64_t N, cudaStream_t stream) {
  if (M <= 0 || N <= 0) return;
  const int64_t slots = M * ((N + 31) / 32) * 32;
  epilogue_kernel<<<grid_for(slots, kThreads), kThreads, 0, stream>>>(e, acc, acc_ld, M, N);
}

}  // namespace bnn::cuda
