// Kernels that each break one static gate of scripts/cuda_static.py, to prove the gates fire
// (compiled by test_sass.py only; not part of the library).
#include <cstdint>

// mma with XOR.popc: emulated on sm_90 (no BMMA AND.POPC; POPC instructions instead).
__global__ void __launch_bounds__(32) planted_mma_xor_kernel(const uint32_t* a, const uint32_t* b, int32_t* c) {
  const int l = threadIdx.x;
  int32_t d0 = 0, d1 = 0, d2 = 0, d3 = 0;
  asm volatile(
      "mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.xor.popc "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+r"(d0), "+r"(d1), "+r"(d2), "+r"(d3)
      : "r"(a[l]), "r"(a[l + 32]), "r"(a[l + 64]), "r"(a[l + 96]), "r"(b[l]), "r"(b[l + 32]));
  c[l] = d0 + d1 + d2 + d3;
}

// A dynamically indexed array lives in local memory.
__global__ void __launch_bounds__(256) planted_local_kernel(const int* idx, int* out) {
  int buf[64];
#pragma unroll 1
  for (int i = 0; i < 64; ++i) buf[i] = idx[i] * i;
  out[threadIdx.x] = buf[idx[threadIdx.x] & 63];
}

// No launch bounds and 96 live accumulators: more than 64 registers.
__global__ void planted_register_kernel(const float* x, float* out, int n) {
  float acc[96];
#pragma unroll
  for (int j = 0; j < 96; ++j) acc[j] = 0.f;
  for (int i = 0; i < n; ++i) {
#pragma unroll
    for (int j = 0; j < 96; ++j) acc[j] = acc[j] * x[i] + x[i + j];
  }
#pragma unroll
  for (int j = 0; j < 96; ++j) out[j * blockDim.x + threadIdx.x] = acc[j];
}

// An epilogue written as one expression: nvcc contracts it into an FFMA.
__global__ void __launch_bounds__(256)
    planted_linear_gemv_kernel(const float* dot, const float* s, const float* b, float* out) {
  const int i = threadIdx.x;
  out[i] = dot[i] * s[i] + b[i];
}

// The same contracted epilogue in a binary_weight_conv2d kernel: no FMUL left.
__global__ void __launch_bounds__(256)
    planted_wconv_kernel(const float* dot, const float* s, const float* b, float* out) {
  const int i = threadIdx.x;
  out[i] = dot[i] * s[i] + b[i];
}

// A warp-specialized wgmma kernel whose setmaxnreg budget overflows the register file (one
// producer warpgroup at 40 + two consumer warpgroups at 248 > 65536); outside sm_90a it is no
// trapping stub. Both break the wgmma gate.
__global__ void __launch_bounds__(384, 1) planted_wgmma_budget_kernel(uint64_t da, uint64_t db, int32_t* out) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  if (threadIdx.x >= 256) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
    return;
  }
  asm volatile("setmaxnreg.inc.sync.aligned.u32 248;\n");
  int32_t d[4] = {0, 0, 0, 0};
  asm volatile("wgmma.fence.sync.aligned;\n");
  asm volatile("wgmma.mma_async.sync.aligned.m64n8k256.s32.b1.b1.and.popc {%0, %1, %2, %3}, %4, %5, 0;\n"
               : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
               : "l"(da), "l"(db));
  asm volatile("wgmma.commit_group.sync.aligned;\n");
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
  out[threadIdx.x] = d[0] + d[1] + d[2] + d[3];
#else
  out[threadIdx.x] = static_cast<int32_t>(da + db);
#endif
}
