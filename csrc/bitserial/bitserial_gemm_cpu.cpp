// Fused bit-serial GEMM. The P activation planes and Q weight planes are packed once into the
// AND popcount micro-kernel's tiles (the kernels and cache blocking of popcount_gemm). For
// each (A tile, B tile) pair and K block, every plane pair (p, q) is counted and added with
// its coefficient to one int32 tile: in one call of the micro-kernel's plane-sum kernel
// where it has one (AVX-512 and AVX2: counts and the weighted sum stay in registers, the tile
// is read and written once for up to kPairChunk pairs), else (scalar) one axpy call per pair.
// The tile is stored (summed over K blocks) like popcount_gemm's C, so no per-plane-pair
// product is ever written to memory. The offsets' terms, w_offset * sum_p a_coefs[p] *
// popcount(a_p[m]) per row and a_offset * sum_k w[n, k] per column, are exact integers added
// with the last K block.
//
// Every partial sum formed is bounded by k * max|a| * max|w| (max|.| = sum of the absolute
// coefficients and offset), which the caller guarantees fits int32.
#include "bitserial/bitserial_gemm.h"

#include <algorithm>
#include <vector>

#include "common/bits.h"
#include "gemm/microkernel.h"

namespace bnn::cpu {
namespace {

constexpr int64_t kGemvRows = 3;  // up to this many rows of A: row dot products, no packing

// One call's operands and its integer terms. Output g (one when reducing, else one per
// activation plane) sums the plane pairs (p, q) for p in [p_begin(g), p_end(g)).
struct Problem {
  const int32_t* a;  // [P, M, words]
  const int32_t* w;  // [Q, N, words]
  int64_t P, Q, M, N, words;
  uint32_t last_mask;
  bool reduce;
  int64_t outputs;            // 1 or P
  std::vector<int32_t> coef;  // [P * Q]: coefficient of the counts of plane pair (p, q)
  std::vector<int32_t> row;   // [outputs * M]: row term
  std::vector<int32_t> col;   // [N]: column term
  int64_t p_begin(int64_t g) const { return reduce ? 0 : g; }
  int64_t p_end(int64_t g) const { return reduce ? P : g + 1; }
};

// The value encoding of one call.
struct Terms {
  int64_t k;
  const int64_t* a_coefs;
  const int64_t* w_coefs;
  int64_t a_offset, w_offset;
};

// Fills pr.coef, pr.row and pr.col. pa: the bit counts of the P * M activation rows where the
// caller has them (counted while packing), else nullptr: counted here when needed.
void make_terms(Problem& pr, const Terms& tm, const int64_t* pa, int nt) {
  const int64_t P = pr.P, Q = pr.Q, M = pr.M, N = pr.N, k = tm.k;
  const int64_t *a_coefs = tm.a_coefs, *w_coefs = tm.w_coefs, a_offset = tm.a_offset, w_offset = tm.w_offset;
  pr.coef.resize(static_cast<size_t>(P * Q));
  for (int64_t p = 0; p < P; ++p)
    for (int64_t q = 0; q < Q; ++q)
      pr.coef[p * Q + q] = static_cast<int32_t>((pr.reduce ? a_coefs[p] : 1) * w_coefs[q]);
  pr.row.assign(static_cast<size_t>(pr.outputs * M), 0);
  pr.col.assign(static_cast<size_t>(N), 0);
  if (w_offset != 0) {  // w_offset * sum_k a[m, k], without a's own offset (in col)
    std::vector<int64_t> counted;
    if (pa == nullptr) {
      counted.resize(static_cast<size_t>(P * M));
      row_popcounts(pr.a, P * M, k, counted.data(), nt);
      pa = counted.data();
    }
    for (int64_t p = 0; p < P; ++p) {
      const int64_t c = pr.reduce ? a_coefs[p] : 1;
      int32_t* r = pr.row.data() + (pr.reduce ? 0 : p * M);
      for (int64_t m = 0; m < M; ++m) r[m] += static_cast<int32_t>(w_offset * c * pa[p * M + m]);
    }
  }
  if (pr.reduce && a_offset != 0) {  // a_offset * sum_k w[n, k]
    std::vector<int64_t> pw(static_cast<size_t>(Q * N));
    row_popcounts(pr.w, Q * N, k, pw.data(), nt);
    for (int64_t n = 0; n < N; ++n) {
      int64_t s = w_offset * k;
      for (int64_t q = 0; q < Q; ++q) s += w_coefs[q] * pw[q * N + n];
      pr.col[n] = static_cast<int32_t>(a_offset * s);
    }
  }
}

// A few rows: every output element is a sum of row dot products read in place.
void gemv_path(const Problem& pr, const MicroKernel& mk, int32_t* out, int nt) {
  const int64_t M = pr.M, N = pr.N, words = pr.words;
  const uint32_t* a = reinterpret_cast<const uint32_t*>(pr.a);
  const uint32_t* w = reinterpret_cast<const uint32_t*>(pr.w);
  if (N * words * pr.P * pr.Q < 2 * kChunkWords) nt = 1;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 16)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t g = 0; g < pr.outputs; ++g)
      for (int64_t m = 0; m < M; ++m) {
        int32_t v = pr.row[g * M + m] + pr.col[n];
        for (int64_t p = pr.p_begin(g); p < pr.p_end(g); ++p)
          for (int64_t q = 0; q < pr.Q; ++q)
            if (const int32_t c = pr.coef[p * pr.Q + q]; c != 0)
              v += c *
                   static_cast<int32_t>(mk.dot(a + (p * M + m) * words, w + (q * N + n) * words, words, pr.last_mask));
        out[(g * M + m) * N + n] = v;
      }
}

// C tile (mv x nv of the summed counts s, row stride ns) = s of the first K block, + s of
// later ones, + the row and column terms with the last. Branch-free inner loops.
void store_tile(const int32_t* s, int64_t ns, int32_t* c, int64_t ldc, int64_t mv, int64_t nv, bool first, bool last,
                const int32_t* row, const int32_t* col) {
  for (int64_t i = 0; i < mv; ++i, s += ns, c += ldc) {
    const int32_t r = row[i];
    if (first && last) {
      for (int64_t j = 0; j < nv; ++j) c[j] = s[j] + r + col[j];
    } else if (first) {
      for (int64_t j = 0; j < nv; ++j) c[j] = s[j];
    } else if (last) {
      for (int64_t j = 0; j < nv; ++j) c[j] += s[j] + r + col[j];
    } else {
      for (int64_t j = 0; j < nv; ++j) c[j] += s[j];
    }
  }
}

// The packed planes: tile t of activation plane p at (p * m_tiles + t) * mr * w64, tile j of
// weight plane q at (q * n_tiles + j) * nr * w64 (k-major panels, see microkernel.h).
struct Panels {
  uint64_t* ap;
  uint64_t* bp;
  int64_t m_tiles, n_tiles, w64;
  int mr, nr;
  const uint64_t* a(int64_t p, int64_t t, int64_t k0) const { return ap + ((p * m_tiles + t) * w64 + k0) * mr; }
  const uint64_t* b(int64_t q, int64_t j, int64_t k0) const { return bp + ((q * n_tiles + j) * w64 + k0) * nr; }
};

// sum (the mr x nr tile, zeroed by the caller) += the counts of every plane pair of output g
// on A tile t and B tile j over K words [k0, k0 + kn), each times its coefficient: in calls
// of up to kPairChunk pairs to the fused plane-sum kernel where mk has one, else one axpy
// call per pair. Pairs with a zero coefficient are skipped.
constexpr int kPairChunk = 16;

void sum_plane_pairs(const Problem& pr, const Panels& pn, const MicroKernel& mk, PlaneSumFn fused, int64_t g, int64_t t,
                     int64_t j, int64_t k0, int64_t kn, int32_t* sum) {
  PlanePair chunk[kPairChunk];
  int64_t used = 0;
  for (int64_t p = pr.p_begin(g); p < pr.p_end(g); ++p)
    for (int64_t q = 0; q < pr.Q; ++q) {
      const int32_t c = pr.coef[p * pr.Q + q];
      if (c == 0) continue;
      if (fused == nullptr) {
        mk.axpy(pn.a(p, t, k0), pn.b(q, j, k0), kn, c, sum);
        continue;
      }
      chunk[used++] = PlanePair{pn.a(p, t, k0), pn.b(q, j, k0), c};
      if (used == kPairChunk) {
        fused(chunk, used, kn, sum);
        used = 0;
      }
    }
  if (used > 0) fused(chunk, used, kn, sum);
}

// Packs every activation and weight plane into pn's panels; with count, also the bit count
// of each activation row into pa[p * M + m], from the panel just packed.
void pack_planes(const Problem& pr, const Panels& pn, PanelCountFn count, int64_t* pa, int nt) {
  const int mr = pn.mr, nr = pn.nr;
  const int64_t M = pr.M, N = pr.N, words = pr.words, w64 = pn.w64, m_tiles = pn.m_tiles, n_tiles = pn.n_tiles;
#pragma omp parallel num_threads(nt)
  {
#pragma omp for schedule(dynamic, 8) nowait
    for (int64_t u = 0; u < pr.P * m_tiles; ++u) {
      const int64_t p = u / m_tiles, m0 = (u % m_tiles) * mr, rows = std::min<int64_t>(mr, M - m0);
      uint64_t* panel = pn.ap + u * mr * w64;
      pack_tiles(pr.a + (p * M + m0) * words, words, rows, mr, words, pr.last_mask, w64, panel);
      if (count != nullptr) {
        alignas(64) int64_t c[kMaxMR];
        count(panel, w64, c);
        std::copy(c, c + rows, pa + p * M + m0);
      }
    }
#pragma omp for schedule(dynamic, 8)
    for (int64_t u = 0; u < pr.Q * n_tiles; ++u) {
      const int64_t q = u / n_tiles, n0 = (u % n_tiles) * nr;
      pack_tiles(pr.w + (q * N + n0) * words, words, std::min<int64_t>(nr, N - n0), nr, words, pr.last_mask, w64,
                 pn.bp + u * nr * w64);
    }
  }
}

void tiled_path(Problem& pr, const Terms& tm, const MicroKernel& mk, int32_t* out, int nt) {
  const int mr = mk.mr, nr = mk.nr, tile = mr * nr;
  const int64_t P = pr.P, Q = pr.Q, M = pr.M, N = pr.N, words = pr.words;
  const int64_t w64 = (words + 1) / 2;
  const int64_t m_tiles = (M + mr - 1) / mr, n_tiles = (N + nr - 1) / nr;
  const int64_t kc = std::min(w64, kKc);
  // The B block holds the tiles of all Q planes.
  const int64_t block_tiles = std::max<int64_t>(1, kBBlockBytes / (Q * kc * nr * 8));
  static thread_local std::vector<uint64_t> acache, bcache;
  static thread_local std::vector<int64_t> ccache;
  const ScratchBuffer<uint64_t> apack(acache, static_cast<size_t>(P * m_tiles * mr * w64));
  const ScratchBuffer<uint64_t> bpack(bcache, static_cast<size_t>(Q * n_tiles * nr * w64));
  const Panels pn{apack.get(), bpack.get(), m_tiles, n_tiles, w64, mr, nr};
  // The activation rows' counts (the w_offset term) from the packed panels where mk can.
  const PanelCountFn count = tm.w_offset != 0 ? panel_count_kernel(mk) : nullptr;
  const ScratchBuffer<int64_t> pa(ccache, count != nullptr ? static_cast<size_t>(P * M) : 0);
  const int nt_terms = nt;
  if (m_tiles * n_tiles * w64 * P * Q < 2 * kChunkWords) nt = 1;
  pack_planes(pr, pn, count, pa.get(), nt);
  make_terms(pr, tm, count != nullptr ? pa.get() : nullptr, nt_terms);

  const PlaneSumFn fused = plane_sum_kernel(mk);
  const int64_t calls = std::max<int64_t>(1, P * Q / pr.outputs);  // micro-kernels per pair
#pragma omp parallel num_threads(nt)
  {
    const auto pair = [&, tile](int64_t t, int64_t j, int64_t k0, int64_t kn, bool first, bool last) {
      const int64_t m0 = t * mr, n0 = j * nr;
      for (int64_t g = 0; g < pr.outputs; ++g) {
        alignas(64) int32_t sum[kMaxMR * kMaxNR];
        std::fill(sum, sum + tile, 0);  // tile captured by value: a bound kept in a register
        sum_plane_pairs(pr, pn, mk, fused, g, t, j, k0, kn, sum);
        store_tile(sum, nr, out + (g * M + m0) * N + n0, N, std::min<int64_t>(mr, M - m0),
                   std::min<int64_t>(nr, N - n0), first, last, pr.row.data() + g * M + m0, pr.col.data() + n0);
      }
    };
    for_each_tile_pair(m_tiles, n_tiles, w64, kc, block_tiles, calls, pair);
  }
}

}  // namespace

void row_popcounts(const int32_t* bits, int64_t rows, int64_t k, int64_t* out, int num_threads) {
  if (k <= 0) {
    std::fill(out, out + std::max<int64_t>(rows, 0), 0);
    return;
  }
  const int64_t words = words_for_bits(k);
  const uint32_t last = tail_mask(k);
  // popcount(x & x) with the run-time picked row dot product (vector popcount where the CPU
  // has one).
  const RowDotFn dot = select_microkernel(BitOp::And).dot;
  const uint32_t* b = reinterpret_cast<const uint32_t*>(bits);
#pragma omp parallel for num_threads(sane_threads(num_threads)) schedule(static) if (rows * words > 65536)
  for (int64_t r = 0; r < rows; ++r) out[r] = dot(b + r * words, b + r * words, words, last);
}

void bitserial_gemm(const int32_t* a, int64_t P, const int32_t* w, int64_t Q, int64_t M, int64_t N, int64_t k,
                    const int64_t* a_coefs, const int64_t* w_coefs, int64_t a_offset, int64_t w_offset, bool reduce,
                    int32_t* out, int num_threads) {
  if (M <= 0 || N <= 0) return;
  const int64_t outputs = reduce ? 1 : P;
  if (k <= 0) {  // empty sums
    std::fill(out, out + outputs * M * N, 0);
    return;
  }
  const int nt = sane_threads(num_threads);
  Problem pr{a, w, P, Q, M, N, words_for_bits(k), tail_mask(k), reduce, outputs, {}, {}, {}};
  const Terms tm{k, a_coefs, w_coefs, a_offset, w_offset};
  const MicroKernel mk = select_microkernel(BitOp::And);
  if (M <= kGemvRows) {
    make_terms(pr, tm, nullptr, nt);
    gemv_path(pr, mk, out, nt);
  } else {
    tiled_path(pr, tm, mk, out, nt);
  }
}

}  // namespace bnn::cpu
