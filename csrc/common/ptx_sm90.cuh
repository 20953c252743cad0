// The inline PTX of the sm_90a kernels (Hopper): mbarrier, TMA (cp.async.bulk.tensor), wgmma
// and setmaxnreg, one small wrapper per instruction, each naming the PTX ISA section it uses.
// These instructions exist only in sm_90a code: every body is compiled for that target alone
// (BNN_SM90A_CODE), and a kernel using them guards its body the same way (see
// gemm/and_gemm_wgmma_cuda.cu). The emulation build (tests/cuda_emu, BNN_CUDA_EMULATION) supplies
// its own definitions of the same functions (tests/cuda_emu/emu_ptx_sm90.h).
#pragma once

#include <cuda.h>  // CUtensorMap (a type only: nothing links libcuda)

#include <cstdint>

// 1 in the device pass for sm_90a (and in the emulation build), 0 elsewhere.
#if defined(BNN_CUDA_EMULATION) || (defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL))
#define BNN_SM90A_CODE 1
#else
#define BNN_SM90A_CODE 0
#endif

#ifndef BNN_CUDA_EMULATION
namespace bnn::cuda::ptx {

// Every wrapper exists in every compilation pass (kernels are templates over them), but emits its
// instruction only for sm_90a; elsewhere it traps (no launch reaches it, see BNN_SM90A_CODE).
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define BNN_SM90_ASM(...) asm volatile(__VA_ARGS__)
#else
#define BNN_SM90_ASM(...) __trap()
#endif

// mbarrier.init.shared::cta.b64 (PTX ISA: parallel-synchronization-and-communication-instructions-
// mbarrier-init): a barrier expecting `count` arrivals per phase, at shared address `bar`.
__device__ __forceinline__ void mbarrier_init(uint32_t bar, uint32_t count) {
  BNN_SM90_ASM("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count));
}
// fence.mbarrier_init.release.cluster (PTX ISA: ...-membar): makes the inits visible to the async
// proxy (TMA's complete_tx) and, with the __syncthreads that follows, to the other threads.
__device__ __forceinline__ void fence_mbarrier_init() { BNN_SM90_ASM("fence.mbarrier_init.release.cluster;\n" ::); }
// mbarrier.arrive.shared::cta.b64 (PTX ISA: ...-mbarrier-arrive): one arrival, release semantics.
__device__ __forceinline__ void mbarrier_arrive(uint32_t bar) {
  BNN_SM90_ASM("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// mbarrier.arrive.expect_tx (PTX ISA: ...-mbarrier-expect-tx): announces `tx` bytes the TMA loads
// of this phase will complete, and arrives.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint32_t bar, uint32_t tx) {
  BNN_SM90_ASM("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(tx) : "memory");
}
// mbarrier.try_wait.parity (PTX ISA: ...-mbarrier-test-wait-try-wait): true once the phase with
// parity `parity` has completed (acquire); false after a bounded, hardware-chosen wait.
__device__ __forceinline__ bool mbarrier_try_wait_parity(uint32_t bar, uint32_t parity) {
  uint32_t ok = 0;
  BNN_SM90_ASM(
      "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n" : "=r"(
          ok) : "r"(bar),
      "r"(parity) : "memory");
  return ok != 0;
}

// cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes (PTX ISA:
// data-movement-and-conversion-instructions-cp-async-bulk-tensor): the box of `map` at
// coordinates (c0 bytes, c1 rows) into shared `dst`, swizzled as the map says; out-of-bounds
// elements are zero; the full box's bytes complete on `bar`.
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap* map, uint32_t bar, int32_t c0,
                                            int32_t c1) {
  BNN_SM90_ASM(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], "
      "[%2];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(c0), "r"(c1) : "memory");
}
// fence.proxy.async.shared::cta (PTX ISA: ...-membar): generic-proxy shared writes become visible
// to the async proxy (wgmma operands, TMA stores).
__device__ __forceinline__ void fence_proxy_async_shared() {
  BNN_SM90_ASM("fence.proxy.async.shared::cta;\n" :: : "memory");
}

// wgmma.fence.sync.aligned (PTX ISA: asynchronous-warpgroup-level-matrix-instructions-wgmma-fence):
// orders earlier accesses of accumulator registers before the next wgmma.mma_async.
__device__ __forceinline__ void wgmma_fence() { BNN_SM90_ASM("wgmma.fence.sync.aligned;\n" :: : "memory"); }
// wgmma.commit_group.sync.aligned (PTX ISA: ...-wgmma-commit-group): closes a group of this warp's
// uncommitted wgmma.mma_async (an empty group when there are none).
__device__ __forceinline__ void wgmma_commit_group() {
  BNN_SM90_ASM("wgmma.commit_group.sync.aligned;\n" :: : "memory");
}
// wgmma.wait_group.sync.aligned N (PTX ISA: ...-wgmma-wait-group): waits until at most the N most
// recent groups are pending; the accumulators of the older ones are then readable.
template <int N>
__device__ __forceinline__ void wgmma_wait_group() {
  BNN_SM90_ASM("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// wgmma.mma_async.sync.aligned.m64nNk256.s32.b1.b1.and.popc d, a-desc, b-desc, scale-d (PTX ISA:
// asynchronous-warpgroup-level-matrix-instructions-wgmma-mma-async): D (+)= popc(A AND B) over
// 256 bits of K, A (64 rows) and B (N rows) K-major in shared memory, described by 64-bit matrix
// descriptors; scale_d 0 overwrites D. d holds N/2 registers (fragment: PTX ISA figure "WGMMA
// .m64nNk* register fragment layout for accumulator matrix D"). N = 128 and 256 are provided.
template <int N>
__device__ void wgmma_b1_and(int32_t (&d)[N / 2], uint64_t a_desc, uint64_t b_desc, int scale_d);
template <>
__device__ __forceinline__ void wgmma_b1_and<128>(int32_t (&d)[64], uint64_t a_desc, uint64_t b_desc, int scale_d) {
  BNN_SM90_ASM(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k256.s32.b1.b1.and.popc "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p;\n}\n"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]), "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]), "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]), "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]), "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]), "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]), "+r"(d[49]), "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]), "+r"(d[56]), "+r"(d[57]), "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63])
      : "l"(a_desc), "l"(b_desc), "r"(scale_d));
}
template <>
__device__ __forceinline__ void wgmma_b1_and<256>(int32_t (&d)[128], uint64_t a_desc, uint64_t b_desc, int scale_d) {
  BNN_SM90_ASM(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n256k256.s32.b1.b1.and.popc "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, "
      "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, "
      "%46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, "
      "%68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, "
      "%90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, "
      "%110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, "
      "%128, %129, p;\n}\n" : "+r"(d[0]),
      "+r"(d[1]), "+r"(d[2]), "+r"(d[3]), "+r"(d[4]), "+r"(d[5]), "+r"(d[6]), "+r"(d[7]), "+r"(d[8]), "+r"(d[9]),
      "+r"(d[10]), "+r"(d[11]), "+r"(d[12]), "+r"(d[13]), "+r"(d[14]), "+r"(d[15]), "+r"(d[16]), "+r"(d[17]),
      "+r"(d[18]), "+r"(d[19]), "+r"(d[20]), "+r"(d[21]), "+r"(d[22]), "+r"(d[23]), "+r"(d[24]), "+r"(d[25]),
      "+r"(d[26]), "+r"(d[27]), "+r"(d[28]), "+r"(d[29]), "+r"(d[30]), "+r"(d[31]), "+r"(d[32]), "+r"(d[33]),
      "+r"(d[34]), "+r"(d[35]), "+r"(d[36]), "+r"(d[37]), "+r"(d[38]), "+r"(d[39]), "+r"(d[40]), "+r"(d[41]),
      "+r"(d[42]), "+r"(d[43]), "+r"(d[44]), "+r"(d[45]), "+r"(d[46]), "+r"(d[47]), "+r"(d[48]), "+r"(d[49]),
      "+r"(d[50]), "+r"(d[51]), "+r"(d[52]), "+r"(d[53]), "+r"(d[54]), "+r"(d[55]), "+r"(d[56]), "+r"(d[57]),
      "+r"(d[58]), "+r"(d[59]), "+r"(d[60]), "+r"(d[61]), "+r"(d[62]), "+r"(d[63]), "+r"(d[64]), "+r"(d[65]),
      "+r"(d[66]), "+r"(d[67]), "+r"(d[68]), "+r"(d[69]), "+r"(d[70]), "+r"(d[71]), "+r"(d[72]), "+r"(d[73]),
      "+r"(d[74]), "+r"(d[75]), "+r"(d[76]), "+r"(d[77]), "+r"(d[78]), "+r"(d[79]), "+r"(d[80]), "+r"(d[81]),
      "+r"(d[82]), "+r"(d[83]), "+r"(d[84]), "+r"(d[85]), "+r"(d[86]), "+r"(d[87]), "+r"(d[88]), "+r"(d[89]),
      "+r"(d[90]), "+r"(d[91]), "+r"(d[92]), "+r"(d[93]), "+r"(d[94]), "+r"(d[95]), "+r"(d[96]), "+r"(d[97]),
      "+r"(d[98]), "+r"(d[99]), "+r"(d[100]), "+r"(d[101]), "+r"(d[102]), "+r"(d[103]), "+r"(d[104]), "+r"(d[105]),
      "+r"(d[106]), "+r"(d[107]), "+r"(d[108]), "+r"(d[109]), "+r"(d[110]), "+r"(d[111]), "+r"(d[112]), "+r"(d[113]),
      "+r"(d[114]), "+r"(d[115]), "+r"(d[116]), "+r"(d[117]), "+r"(d[118]), "+r"(d[119]), "+r"(d[120]), "+r"(d[121]),
      "+r"(d[122]), "+r"(d[123]), "+r"(d[124]), "+r"(d[125]), "+r"(d[126]), "+r"(d[127]) : "l"(a_desc), "l"(b_desc),
      "r"(scale_d));
}

// setmaxnreg.{inc,dec}.sync.aligned.u32 R (PTX ISA: miscellaneous-instructions-setmaxnreg): the
// warpgroup's register budget becomes R per thread (producers give registers to consumers).
template <int R>
__device__ __forceinline__ void setmaxnreg_inc() {
  BNN_SM90_ASM("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(R));
}
template <int R>
__device__ __forceinline__ void setmaxnreg_dec() {
  BNN_SM90_ASM("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(R));
}

}  // namespace bnn::cuda::ptx
#endif  // BNN_CUDA_EMULATION
