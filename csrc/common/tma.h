// Tensor maps for TMA loads (cp.async.bulk.tensor), encoded by the driver's
// cuTensorMapEncodeTiled, found at run time through the CUDA runtime
// (cudaGetDriverEntryPointByVersion), so nothing links libcuda. Torch-free.
#pragma once

#include <cuda.h>

#include <cstdint>

namespace bnn::cuda {

// A 2-D map of `rows` rows of `row_bytes` bytes (leading dimension `ld_bytes`, a multiple of 16;
// base 16-byte aligned) read in boxes of box_bytes x box_rows (box_bytes <= 128) with the 128-byte
// swizzle; out-of-bounds bytes read as zero. Returns false when the driver has no encoder or
// refuses the map (the caller then takes another path).
bool encode_tma_2d_128b(CUtensorMap* map, const void* base, uint64_t row_bytes, uint64_t rows, uint64_t ld_bytes,
                        uint32_t box_bytes, uint32_t box_rows);

}  // namespace bnn::cuda
