// Per-thread cache of prepared weights (CPU kernels, torch-free).
//
// Kernels that re-lay out their weights on every call (the direct conv splits them into
// nibbles; binary_weight_linear and binary_weight_conv2d transpose them into panels on AVX2)
// keep the result here. An entry is reused only when the same address holds the same words,
// compared in full against a copy kept with the entry, under the same layout key: an in-place
// change of the weights, or other weights at a recycled address, is prepared afresh, so a hit
// can never change a result. Comparing costs a read of the weights; preparing them, a copy and
// the kernel's re-layout.
//
// Each kernel keeps its own cache per calling thread (no locks; the OpenMP workers of a call
// never touch it), each at most kPreparedCacheBytes (copies and prepared words), least
// recently used out first; weights too large for it are prepared into a buffer that is not
// kept. A model whose weights of one kernel exceed a cache, called layer after layer, so
// prepares every layer on every call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <list>
#include <memory>
#include <vector>

namespace bnn::cpu {

constexpr size_t kPreparedCacheBytes = size_t(64) << 20;

class PreparedCache {
 public:
  explicit PreparedCache(size_t capacity_bytes = kPreparedCacheBytes) : capacity_(capacity_bytes) {}

  // The prepared form (prepared_words words, 64-byte aligned) of the n words at src under key:
  // from the cache, or written by prepare(uint32_t* dst) into a new entry. Valid until the
  // next call of get on this cache.
  template <class Prepare>
  const uint32_t* get(const uint32_t* src, size_t n, const std::vector<int64_t>& key, size_t prepared_words,
                      Prepare&& prepare) {
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->src != src || it->key != key || it->copy.size() != n || it->words != prepared_words) continue;
      if (n != 0 && std::memcmp(it->copy.data(), src, n * sizeof(uint32_t)) != 0) continue;
      entries_.splice(entries_.begin(), entries_, it);  // most recently used first
      return entries_.front().buf.data;
    }
    const size_t bytes = (n + prepared_words) * sizeof(uint32_t);
    if (bytes > capacity_) {  // not kept: prepared into a buffer of its own
      oversized_ = Buffer(prepared_words);
      prepare(oversized_.data);
      return oversized_.data;
    }
    while (!entries_.empty() && bytes_ + bytes > capacity_) {
      bytes_ -= (entries_.back().copy.size() + entries_.back().words) * sizeof(uint32_t);
      entries_.pop_back();
    }
    Entry e{src, key, std::vector<uint32_t>(src, src + n), Buffer(prepared_words), prepared_words};
    prepare(e.buf.data);
    entries_.push_front(std::move(e));
    bytes_ += bytes;
    return entries_.front().buf.data;
  }

  size_t entries() const { return entries_.size(); }
  size_t bytes() const { return bytes_; }

 private:
  struct Buffer {
    Buffer() = default;
    explicit Buffer(size_t words) : own(new uint32_t[words + 16]) {
      const uintptr_t a = reinterpret_cast<uintptr_t>(own.get());
      data = reinterpret_cast<uint32_t*>((a + 63) & ~uintptr_t(63));
    }
    std::unique_ptr<uint32_t[]> own;
    uint32_t* data = nullptr;
  };
  struct Entry {
    const uint32_t* src;
    std::vector<int64_t> key;
    std::vector<uint32_t> copy;
    Buffer buf;
    size_t words;
  };
  size_t capacity_;
  std::list<Entry> entries_;  // most recently used first
  size_t bytes_ = 0;
  Buffer oversized_;
};

}  // namespace bnn::cpu
