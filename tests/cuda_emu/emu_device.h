// What the emulation tests use to set up a run: emulated device and seed, and device buffers
// (guarded, shadow-checked) in place of cudaMalloc / cudaMemcpy.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace emu {
void set_device(int device);   // 0: sm_80, 1: sm_90, 2: sm_75
void set_seed(uint64_t seed);  // warp scheduling order
// true: each wgmma operation runs at the wgmma.wait_group that covers it (the latest legal
// point), never earlier; a plain mbarrier.arrive ends the arriving thread's turn and the threads
// a completed phase wakes run first (a producer refills a released stage before its consumers
// reach their wait): a stage released before the wait covering its reader meets the unfinished
// wgmma on (almost) every run, not by chance.
void set_wgmma_latest(bool latest);
// The code the emulated driver reports as loaded for every kernel (cudaFuncGetAttributes
// ptxVersion / binaryVersion, e.g. 75 / 90 for compute_75 PTX JIT-compiled on sm_90). By
// default the device's own SASS. ptx_version < 0: no image for the device (the query fails
// with cudaErrorNoKernelImageForDevice). Code below compute_80 cannot hold the b1 mma: an
// emulated mma.sync then fails as the kernel's __trap() would.
void set_loaded_code(int ptx_version, int binary_version);
int loaded_ptx_version();           // the PTX version kernels run as (the device's by default)
int func_attribute_queries();       // cudaFuncGetAttributes calls so far
void* device_malloc(size_t bytes);  // contents never written (a load of them is an error)
void device_upload(void* dst, const void* src, size_t bytes, bool read_only);
void device_free(void* p);
size_t device_unwritten(const void* p, size_t bytes);  // bytes no kernel or upload has written

// A device buffer of n elements: an input (uploaded, read-only for kernels), or an output /
// workspace (never written until a kernel writes it).
template <class T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t count) : n(count) { p = static_cast<T*>(device_malloc(count * sizeof(T))); }
  DevBuf(const std::vector<T>& v, bool read_only = true) : DevBuf(v.size()) {
    device_upload(p, v.data(), v.size() * sizeof(T), read_only);
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  ~DevBuf() { device_free(p); }
  T* get() const { return p; }
  std::vector<T> host() const { return std::vector<T>(p, p + n); }
  size_t unwritten_bytes() const { return device_unwritten(p, n * sizeof(T)); }
};
}  // namespace emu
