// Kernels of the emulator's own tests, compiled like csrc's .cu files (rewritten, instrumented).
#include <cstring>
#include <string>

#include "common/cuda_common.cuh"
#include "common/ptx.cuh"
#include "test_kernels.h"

namespace emutest {
namespace {

using namespace bnn::cuda;

__global__ void ldmatrix_kernel(const uint32_t* row_addr, uint32_t* regs) {
  BNN_DYNAMIC_SMEM(smem);
  const int l = threadIdx.x;
  for (int i = l; i < 512; i += 32) smem[i] = static_cast<unsigned char>(i * 7 + 3);
  __syncthreads();
  const uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  uint32_t r[4];
  ptx::ldmatrix_x4(base + row_addr[l], r[0], r[1], r[2], r[3]);
  for (int m = 0; m < 4; ++m) regs[l * 4 + m] = r[m];
}

__global__ void mma_kernel(const uint32_t* a, const uint32_t* b, int32_t* c) {
  const int l = threadIdx.x;
  const uint32_t af[4] = {a[l * 4], a[l * 4 + 1], a[l * 4 + 2], a[l * 4 + 3]};
  int32_t acc[4] = {c[l * 4], c[l * 4 + 1], c[l * 4 + 2], c[l * 4 + 3]};
  ptx::mma_b1_and(acc, af, b[l * 2], b[l * 2 + 1]);
  for (int i = 0; i < 4; ++i) c[l * 4 + i] = acc[i];
}

// ---- one kernel per bug class; each does otherwise valid work on buf[0, n) ----
__global__ void oob_load(int32_t* buf, int64_t n) {
  const int64_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) buf[i] = buf[i + 1] + 1;  // the last thread reads one element past the end
}
__global__ void oob_store(int32_t* buf, int64_t n) {
  const int64_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) buf[i + 1] = 1;  // the last thread writes one element past the end
}
__global__ void uninit_global(int32_t* buf, int64_t n) {
  const int64_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) buf[i] = buf[i] * 2;  // buf was never written
}
__global__ void shared_race(int32_t* buf, int64_t n) {
  __shared__ int32_t s[64];
  s[threadIdx.x] = static_cast<int32_t>(threadIdx.x);
  // missing __syncthreads: thread t reads what thread 63 - t (another warp) wrote
  buf[threadIdx.x % n] = s[63 - threadIdx.x];
}
__global__ void war_race(int32_t* buf, int64_t n) {
  __shared__ int32_t s[64];
  s[threadIdx.x] = 1;
  __syncthreads();
  const int32_t v = s[63 - threadIdx.x];
  s[threadIdx.x] = v + 1;  // overwritten while another warp may still read it
  buf[threadIdx.x % n] = v;
}
__global__ void uninit_shared(int32_t* buf, int64_t n) {
  __shared__ int32_t s[64];
  if (threadIdx.x < 32) s[threadIdx.x] = 1;
  __syncthreads();
  buf[threadIdx.x % n] = s[threadIdx.x];  // lanes 32..63 read never-written shared memory
}
__global__ void shared_oob(int32_t* buf, int64_t n) {
  __shared__ int32_t s[64];
  s[threadIdx.x + 1] = 1;  // thread 63 writes past the array
  __syncthreads();
  buf[threadIdx.x % n] = s[(threadIdx.x + 1) % 64];
}
__global__ void misaligned_vec(int32_t* buf, int64_t n) {
  const uint4 v = __ldg(reinterpret_cast<const uint4*>(buf + 1));  // 16-byte load, 4-byte aligned address
  buf[threadIdx.x % n] = static_cast<int32_t>(v.x + v.y + v.z + v.w);
}
__global__ void cp_async_no_wait(int32_t* buf, int64_t n) {
  BNN_DYNAMIC_SMEM(smem);
  const uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  ptx::cp_async4(base + 4 * threadIdx.x, buf + threadIdx.x % n, 4);
  ptx::cp_async_commit();
  __syncthreads();  // no wait_group before the barrier
  buf[threadIdx.x % n] = reinterpret_cast<int32_t*>(smem)[threadIdx.x];
}
__global__ void cp_async_wait_short(int32_t* buf, int64_t n) {
  BNN_DYNAMIC_SMEM(smem);
  const uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  ptx::cp_async4(base + 4 * threadIdx.x, buf + threadIdx.x % n, 4);
  ptx::cp_async_commit();
  ptx::cp_async_wait<1>();  // one too many: the copy's group may stay pending
  __syncthreads();
  const int32_t v = reinterpret_cast<int32_t*>(smem)[threadIdx.x];
  ptx::cp_async_wait<0>();
  buf[threadIdx.x % n] = v;
}
__global__ void shfl_mask_excludes(int32_t* buf, int64_t n) {
  const int v = __shfl_sync(0x0000FFFFu, static_cast<int>(threadIdx.x), 0);  // lanes 16..31 not in mask
  buf[threadIdx.x % n] = v;
}
__global__ void shfl_lane_missing(int32_t* buf, int64_t n) {
  if (threadIdx.x == 5) return;  // lane 5 of the full mask never arrives
  buf[threadIdx.x % n] = __shfl_xor_sync(0xFFFFFFFFu, static_cast<int>(threadIdx.x), 1);
}
__global__ void divergent_barrier(int32_t* buf, int64_t n) {
  if (threadIdx.x >= 32) return;
  __syncthreads();
  buf[threadIdx.x % n] = 1;
}
__global__ void __launch_bounds__(64) bounded(int32_t* buf, int64_t n) { buf[threadIdx.x % n] = 1; }

}  // namespace

void probe_ldmatrix(const uint32_t* row_addr, uint32_t* regs) { ldmatrix_kernel<<<1, 32, 512>>>(row_addr, regs); }
void probe_mma(const uint32_t* a, const uint32_t* b, int32_t* c) { mma_kernel<<<1, 32>>>(a, b, c); }

bool run_bug_kernel(const std::string& name, int32_t* buf, int64_t n) {
  if (name == "oob_load")
    oob_load<<<1, 64>>>(buf, n);
  else if (name == "oob_store")
    oob_store<<<1, 64>>>(buf, n);
  else if (name == "uninit_global")
    uninit_global<<<1, 64>>>(buf, n);
  else if (name == "shared_race")
    shared_race<<<1, 64>>>(buf, n);
  else if (name == "war_race")
    war_race<<<1, 64>>>(buf, n);
  else if (name == "uninit_shared")
    uninit_shared<<<1, 64>>>(buf, n);
  else if (name == "misaligned_vec")
    misaligned_vec<<<1, 32>>>(buf, n);
  else if (name == "shared_oob")
    shared_oob<<<1, 64>>>(buf, n);
  else if (name == "cp_async_no_wait")
    cp_async_no_wait<<<1, 64, 256>>>(buf, n);
  else if (name == "cp_async_wait_short")
    cp_async_wait_short<<<1, 64, 256>>>(buf, n);
  else if (name == "shfl_mask_excludes")
    shfl_mask_excludes<<<1, 32>>>(buf, n);
  else if (name == "shfl_lane_missing")
    shfl_lane_missing<<<1, 32>>>(buf, n);
  else if (name == "divergent_barrier")
    divergent_barrier<<<1, 64>>>(buf, n);
  else if (name == "launch_bounds")
    bounded<<<1, 128>>>(buf, n);
  else if (name == "grid_y")
    bounded<<<dim3(1, 65536), 32>>>(buf, n);
  else if (name == "smem_no_attribute")
    bounded<<<1, 32, 64 * 1024>>>(buf, n);
  else if (name == "smem_over_max") {
    cudaFuncSetAttribute(bounded, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024);
    bounded<<<1, 32, 200 * 1024>>>(buf, n);
  } else if (name == "smem_with_attribute") {  // valid: must pass
    cudaFuncSetAttribute(bounded, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024);
    bounded<<<1, 32, 64 * 1024>>>(buf, n);
  } else if (name == "host_deref") {
    buf[0] = 1;  // host code touching device memory
  } else {
    return false;
  }
  return true;
}

}  // namespace emutest
