// The inline PTX of the CUDA kernels, one small wrapper per instruction, each naming the PTX
// ISA section it uses. The emulation build (tests/cuda_emu, BNN_CUDA_EMULATION defined)
// supplies its own definitions of the same functions, so no kernel text needs rewriting.
#pragma once

#include <cstdint>

#ifndef BNN_CUDA_EMULATION
namespace bnn::cuda::ptx {

// cp.async (PTX ISA: data-movement-and-conversion-instructions-cp-async): copy 16 bytes global ->
// shared, bypassing L1 (.cg); bytes past src_bytes are zero-filled.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
// cp.async of 4 bytes (.ca: only .ca supports sizes below 16).
__device__ __forceinline__ void cp_async4(uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
// cp.async.commit_group (PTX ISA: ...-cp-async-commit-group): closes this thread's open group.
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// cp.async.wait_group N (PTX ISA: ...-cp-async-wait-group-cp-async-wait-all): waits until at most
// the N most recent committed groups of this thread are pending.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// ldmatrix.sync.aligned.m8n8.x4.shared.b16 (PTX ISA: warp-level-matrix-instructions-ldmatrix):
// lanes 8i..8i+7 address the rows of matrix i; lane l receives bytes 4(l%4)..4(l%4)+3 of row l/4.
__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}

// mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc (PTX ISA: warp-level-matrix-instructions-mma,
// fragments: warp-level-matrix-fragment-mma-168256). Native on sm_80 and later only.
__device__ __forceinline__ void mma_b1_and(int32_t (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
  __trap();  // launch_and_gemm picks this path only when and_gemm_mma_native() holds
#endif
}

}  // namespace bnn::cuda::ptx
#endif  // BNN_CUDA_EMULATION
