// Tensor-map encoding (common/tma.h): cuTensorMapEncodeTiled, looked up once through the
// runtime's driver entry points (no -lcuda link).
#include <cuda_runtime.h>

#include <atomic>

#include "common/tma.h"

namespace bnn::cuda {
namespace {

using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                 const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                 CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

EncodeTiled encoder() {
  static std::atomic<EncodeTiled> fn{nullptr};
  EncodeTiled f = fn.load(std::memory_order_acquire);
  if (f) return f;
  void* p = nullptr;
  cudaDriverEntryPointQueryResult q{};
  // the CUDA 12.0 ABI of cuTensorMapEncodeTiled (the call has not changed since)
#if CUDART_VERSION >= 12050
  const cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q);
#else
  const cudaError_t e = cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &p, cudaEnableDefault, &q);
#endif
  if (e != cudaSuccess || q != cudaDriverEntryPointSuccess || p == nullptr) return nullptr;
  f = reinterpret_cast<EncodeTiled>(p);
  fn.store(f, std::memory_order_release);
  return f;
}

}  // namespace

bool encode_tma_2d_128b(CUtensorMap* map, const void* base, uint64_t row_bytes, uint64_t rows, uint64_t ld_bytes,
                        uint32_t box_bytes, uint32_t box_rows) {
  const EncodeTiled f = encoder();
  if (!f) return false;
  const cuuint64_t dims[2] = {row_bytes, rows}, strides[1] = {ld_bytes};
  const cuuint32_t box[2] = {box_bytes, box_rows}, elem_strides[2] = {1, 1};
  return f(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, const_cast<void*>(base), dims, strides, box, elem_strides,
           CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
           CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

}  // namespace bnn::cuda
