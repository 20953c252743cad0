// What the emulation tests use to set up a run: emulated device and seed, and device buffers
// (guarded, shadow-checked) in place of cudaMalloc / cudaMemcpy.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace emu {
void set_device(int device);   // 0: sm_80, 1: sm_90, 2: sm_75
void set_seed(uint64_t seed);  // warp scheduling order
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
