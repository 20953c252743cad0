// Emulated TMA: the driver's tensor-map encoder (cuTensorMapEncodeTiled, CUDA Driver API, checked
// as its documentation lists) and cp.async.bulk.tensor.2d loads (PTX ISA
// #data-movement-and-conversion-instructions-cp-async-bulk-tensor), which land at a random later
// scheduling point with the swizzle applied on absolute shared addresses
// (#tensor-shared-memory-layout-swizzling-modes) and signal complete_tx on their mbarrier.
#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string>

#include "emu_sm90.h"

namespace emu::sm90 {
namespace {

constexpr uint64_t kMagic = 0x454d55544d415032ull;  // "EMUTMAP2"
struct MapRec {  // what the emulated encoder stores in the opaque 128-byte CUtensorMap
  uint64_t magic;
  const unsigned char* base;
  uint64_t dims[5], strides[4];  // strides in bytes of dimensions 1..rank-1
  uint16_t box[5];
  uint8_t rank, elem, swizzle;  // swizzle: span in bytes (0 none, 32, 64, 128)
};
static_assert(sizeof(MapRec) <= sizeof(CUtensorMap));

struct PendingTma {
  uint32_t dst;
  int slot, tid;
  std::vector<unsigned char> data;  // in shared-memory order (swizzled)
};
std::vector<PendingTma> g_tma;
std::string g_encode_error;

int elem_bytes(CUtensorMapDataType t) {
  switch (t) {
    case CU_TENSOR_MAP_DATA_TYPE_UINT8:
      return 1;
    case CU_TENSOR_MAP_DATA_TYPE_UINT16:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT16:
    case CU_TENSOR_MAP_DATA_TYPE_BFLOAT16:
      return 2;
    case CU_TENSOR_MAP_DATA_TYPE_UINT32:
    case CU_TENSOR_MAP_DATA_TYPE_INT32:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT32:
      return 4;
    case CU_TENSOR_MAP_DATA_TYPE_UINT64:
    case CU_TENSOR_MAP_DATA_TYPE_INT64:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT64:
      return 8;
    default:
      return 0;  // packed / tf32 / ftz types: not emulated
  }
}

CUresult refuse(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
CUresult refuse(const char* fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  g_encode_error = msg;
  fprintf(stderr, "emulated cuTensorMapEncodeTiled: %s\n", msg);
  return CUDA_ERROR_INVALID_VALUE;
}

int swizzle_span(CUtensorMapSwizzle s) {
  switch (s) {
    case CU_TENSOR_MAP_SWIZZLE_NONE:
      return 0;
    case CU_TENSOR_MAP_SWIZZLE_32B:
      return 32;
    case CU_TENSOR_MAP_SWIZZLE_64B:
      return 64;
    case CU_TENSOR_MAP_SWIZZLE_128B:
      return 128;
    default:
      return -1;  // the 128B atom variants: not emulated
  }
}

void land(PendingTma& p) {
  set_cur_thread(p.tid);
  shared_tma_land(p.dst, p.data.data(), p.data.size(), p.slot, uint32_t(barriers()[size_t(p.slot)].phase));
  barrier_complete_tx(p.slot, uint32_t(p.data.size()));
  set_cur_thread(-1);
}

}  // namespace

// Swizzle<B,4,3> of the span (128: B=3, 64: B=2, 32: B=1) on an absolute shared address: bits
// [4, 4+B) XOR bits [7, 7+B).
uint32_t swizzle_address(uint32_t a, int span) {
  const uint32_t mask = span == 128 ? 7 : span == 64 ? 3 : span == 32 ? 1 : 0;
  return a ^ (((a >> 7) & mask) << 4);
}

bool tma_step(bool force) {
  if (g_tma.empty()) return false;
  if (force) {
    const size_t i = rng_next() % g_tma.size();
    PendingTma p = std::move(g_tma[i]);
    g_tma.erase(g_tma.begin() + long(i));
    land(p);
    return true;
  }
  bool any = false;
  for (size_t i = 0; i < g_tma.size();) {
    if (rng_next() % 4 == 0) {
      PendingTma p = std::move(g_tma[i]);
      g_tma.erase(g_tma.begin() + long(i));
      land(p);
      any = true;
    } else {
      ++i;
    }
  }
  return any;
}
void tma_block_begin() { g_tma.clear(); }
void tma_block_end() {
  if (!g_tma.empty()) {
    set_cur_thread(g_tma[0].tid);
    fail("the block exits with %zu TMA loads in flight (issued by this thread first, to shared address %u)",
         g_tma.size(), g_tma[0].dst);
  }
}
size_t tma_pending() { return g_tma.size(); }
const char* last_encode_error() { return g_encode_error.c_str(); }

}  // namespace emu::sm90

using emu::sm90::MapRec;

extern "C" CUresult bnn_emu_encode_tiled(CUtensorMap* map, CUtensorMapDataType dtype, cuuint32_t rank, void* base,
                                         const cuuint64_t* dims, const cuuint64_t* strides, const cuuint32_t* box,
                                         const cuuint32_t* elem_strides, CUtensorMapInterleave interleave,
                                         CUtensorMapSwizzle swizzle, CUtensorMapL2promotion l2,
                                         CUtensorMapFloatOOBfill oob) {
  using namespace emu::sm90;
  if (!map || reinterpret_cast<uintptr_t>(map) % 64) return refuse("tensorMap address not 64-byte aligned");
  const int elem = elem_bytes(dtype);
  if (elem == 0) return refuse("tensorDataType %d not emulated", int(dtype));
  if (rank < 1 || rank > 5) return refuse("tensorRank %u outside [1, 5]", rank);
  if (interleave != CU_TENSOR_MAP_INTERLEAVE_NONE) return refuse("interleaved layouts not emulated");
  if (reinterpret_cast<uintptr_t>(base) % 16) return refuse("globalAddress %p not 16-byte aligned", base);
  const int span = swizzle_span(swizzle);
  if (span < 0) return refuse("swizzle mode %d not emulated", int(swizzle));
  if (int(l2) < 0 || int(l2) > 3) return refuse("l2Promotion %d invalid", int(l2));
  if (oob != CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) return refuse("oobFill NaN not emulated (zero fill only)");
  MapRec r{};
  r.magic = kMagic, r.base = static_cast<const unsigned char*>(base), r.rank = uint8_t(rank), r.elem = uint8_t(elem);
  r.swizzle = uint8_t(span);
  uint64_t prev = 0;
  for (cuuint32_t i = 0; i < rank; ++i) {
    if (dims[i] == 0 || dims[i] > (uint64_t(1) << 32))
      return refuse("globalDim[%u] = %llu outside [1, 2^32]", i, (unsigned long long)dims[i]);
    if (box[i] == 0 || box[i] > 256) return refuse("boxDim[%u] = %u outside [1, 256]", i, box[i]);
    if (elem_strides[i] < 1 || elem_strides[i] > 8)
      return refuse("elementStrides[%u] = %u outside [1, 8]", i, elem_strides[i]);
    if (i > 0 && elem_strides[i] != 1) return refuse("elementStrides[%u] = %u: only 1 emulated", i, elem_strides[i]);
    r.dims[i] = dims[i], r.box[i] = uint16_t(box[i]);
    if (i + 1 < rank) {
      const uint64_t s = strides[i], need = i == 0 ? dims[0] * elem : prev * dims[i];
      if (s % 16 || s >= (uint64_t(1) << 40))
        return refuse("globalStrides[%u] = %llu not a multiple of 16 below 2^40", i, (unsigned long long)s);
      if (s < need)
        return refuse("globalStrides[%u] = %llu below the %llu bytes it must span", i, (unsigned long long)s,
                      (unsigned long long)need);
      r.strides[i] = prev = s;
    }
  }
  const uint32_t inner = box[0] * uint32_t(elem);
  if (inner % 16) return refuse("boxDim[0] * element size = %u bytes, not a multiple of 16", inner);
  if (span && inner > uint32_t(span))
    return refuse("boxDim[0] * element size = %u bytes exceeds the %d-byte swizzle span", inner, span);
  memset(map, 0, sizeof *map);
  memcpy(map, &r, sizeof r);
  return CUDA_SUCCESS;
}

extern "C" cudaError_t cudaGetDriverEntryPoint(const char* symbol, void** fn, unsigned long long,
                                               cudaDriverEntryPointQueryResult* status) {
  const bool found = symbol && !strcmp(symbol, "cuTensorMapEncodeTiled");
  *fn = found ? reinterpret_cast<void*>(&bnn_emu_encode_tiled) : nullptr;
  if (status) *status = found ? cudaDriverEntryPointSuccess : cudaDriverEntryPointSymbolNotFound;
  return found ? cudaSuccess : cudaErrorSymbolNotFound;
}
extern "C" cudaError_t cudaGetDriverEntryPointByVersion(const char* symbol, void** fn, unsigned int,
                                                        unsigned long long flags,
                                                        cudaDriverEntryPointQueryResult* status) {
  return cudaGetDriverEntryPoint(symbol, fn, flags, status);
}

namespace bnn::cuda::ptx {

// cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes
//   [dst], [map, {c0, c1}], [bar]
// The box (box[0] elements x box[1] rows from coordinates c0, c1) is read now through the
// memory checker (out-of-bounds elements read as zero), written to shared memory row after row
// with the map's swizzle on absolute addresses when it lands, and completes the full box's bytes
// on the barrier whatever part of it was out of bounds.
void tma_load_2d(uint32_t dst, const CUtensorMap* map, uint32_t bar, int32_t c0, int32_t c1) {
  using namespace emu::sm90;
  if (reinterpret_cast<uintptr_t>(map) % 64) emu::fail("cp.async.bulk.tensor: tensor map not 64-byte aligned");
  MapRec r;
  memcpy(&r, map, sizeof r);
  if (r.magic != kMagic) emu::fail("cp.async.bulk.tensor: tensor map not made by cuTensorMapEncodeTiled");
  if (r.rank != 2) emu::fail("cp.async.bulk.tensor.2d with a rank-%d tensor map", r.rank);
  const uint32_t align = r.swizzle ? 8 * r.swizzle : 128;
  if (dst % align)
    emu::fail("cp.async.bulk.tensor: destination shared address %u not %u-byte aligned (%s)", dst, align,
              r.swizzle ? "the swizzle pattern's repeat" : "bulk tensor copies");
  const int slot = barrier_use(bar, "cp.async.bulk.tensor (its mbarrier)", true);
  const uint32_t inner = uint32_t(r.box[0]) * r.elem, rows = r.box[1], bytes = inner * rows;
  PendingTma p{dst, slot, emu::cur_thread(), std::vector<unsigned char>(bytes, 0)};
  std::vector<unsigned char> row(inner);
  const int64_t x0 = std::max<int64_t>(c0, 0), x1 = std::min<int64_t>(int64_t(c0) + r.box[0], int64_t(r.dims[0]));
  for (uint32_t y = 0; y < rows; ++y) {
    std::fill(row.begin(), row.end(), 0);
    const int64_t gy = int64_t(c1) + y;
    if (gy >= 0 && gy < int64_t(r.dims[1]) && x1 > x0) {
      const unsigned char* src = r.base + uint64_t(gy) * r.strides[0] + uint64_t(x0) * r.elem;
      const size_t n = size_t(x1 - x0) * r.elem;
      if (!emu::global_is_device(src, n)) emu::fail("cp.async.bulk.tensor reads %p, not device memory", src);
      emu::global_read_bytes(src, n);
      memcpy(row.data() + (x0 - c0) * r.elem, src, n);
    }
    for (uint32_t b = 0; b < inner; ++b) {
      const uint32_t phys = swizzle_address(dst + y * inner + b, r.swizzle) - dst;
      if (phys >= bytes) emu::fail("cp.async.bulk.tensor: a %u-byte box does not fill whole swizzle rows", bytes);
      p.data[phys] = row[b];
    }
  }
  emu::shared_tma_issue(dst, bytes);
  g_tma.push_back(std::move(p));
}

// fence.proxy.async.shared::cta: this thread's earlier generic shared-memory writes become
// visible to the async proxy (wgmma, TMA).
void fence_proxy_async_shared() { ++emu::block().t[emu::cur_thread()].proxy_fences; }

}  // namespace bnn::cuda::ptx
