// The store of the 64x64 float output tiles computed 4x4 per thread (binary_weight_linear's
// tiled path, binary_weight_conv2d): thread (tx, ty) of the 16x16 threads holds the outputs at
// tile rows ty + 16 * i and tile columns tx + 16 * j (i, j < 4); each is scaled and biased
// through finish_rn (rounded after each step, never an FMA) as the CPU kernels do.
#pragma once

#include "common/float_rn.cuh"

namespace bnn::cuda {

// Where a tile's outputs go: out[row * ld + c0 + column] for row < rows and column < cols,
// scaled and biased by channel c0 + column (c0: the group's first channel, 0 for a linear).
template <typename Acc>
struct TileOut {
  Acc* out;
  int64_t ld, c0, rows, cols;
  const Acc* scale;  // null: no multiply
  const Acc* bias;   // null: no add
};

template <typename Acc>
__device__ __forceinline__ void store_tile_4x4(const Acc (&acc)[4][4], const TileOut<Acc>& t, int64_t m0, int64_t n0,
                                               int tx, int ty) {
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;
      if (m < t.rows && n < t.cols) t.out[m * t.ld + t.c0 + n] = finish_rn(acc[i][j], t.scale, t.bias, t.c0 + n);
    }
}

}  // namespace bnn::cuda
