// The sm_90a twins of the emulator tested on their own kernels (test_sm90_kernels.cu):
//  - the emulated cuTensorMapEncodeTiled refuses what the Driver API documents as invalid;
//  - one wgmma against literal tables: the accumulator fragment (PTX ISA figure "WGMMA .m64nNk*
//    register fragment layout for accumulator matrix D", as in CUTLASS's CLayout_64xN) and the
//    128B-swizzled K-major operand read at k-step 1 of row 2, written out by hand;
//  - empty commit groups count in wgmma.wait_group;
//  - a warp-specialized TMA + mbarrier + wgmma GEMM, full int32 values against a CPU reference,
//    residue tiles in M, N and K, several N, persistent CTAs, one-hot B rows exposing any
//    K permutation;
//  - run_sm90_detector: the same GEMM with one defect planted, and one kernel per rule.
#include <cstring>
#include <utility>

#include "test_sm90.h"
#include "test_util.h"

namespace emutest {
namespace {

using EncodeFn = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                              const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                              CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

EncodeFn encoder() {  // as the real code finds the driver's encoder
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult q{};
  cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &fn, cudaEnableDefault, &q);
  return reinterpret_cast<EncodeFn>(fn);
}

CUresult encode(CUtensorMap* map, const void* base, uint64_t row_bytes, uint64_t rows, uint64_t ld, uint32_t box_bytes,
                uint32_t box_rows, CUtensorMapSwizzle swz = CU_TENSOR_MAP_SWIZZLE_128B) {
  const cuuint64_t dims[2] = {row_bytes, rows}, strides[1] = {ld};
  const cuuint32_t box[2] = {box_bytes, box_rows}, es[2] = {1, 1};
  return encoder()(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, const_cast<void*>(base), dims, strides, box, es,
                   CU_TENSOR_MAP_INTERLEAVE_NONE, swz, CU_TENSOR_MAP_L2_PROMOTION_NONE,
                   CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
}

void test_encode() {
  emu::DevBuf<uint8_t> buf(std::vector<uint8_t>(4096, 1));
  alignas(128) CUtensorMap map;
  alignas(128) static char misaligned[256];
  CHECK(encode(&map, buf.get(), 200, 10, 208, 128, 64) == CUDA_SUCCESS, "valid map refused");
  struct Bad {
    const char* what;
    CUresult r;
  } bad[] = {
      {"base not 16-byte aligned", encode(&map, buf.get() + 8, 200, 10, 208, 128, 64)},
      {"stride not a multiple of 16", encode(&map, buf.get(), 200, 10, 200 + 4, 128, 64)},
      {"stride below the row", encode(&map, buf.get(), 200, 10, 192, 128, 64)},
      {"inner box over the 128B swizzle span", encode(&map, buf.get(), 200, 10, 208, 144, 64)},
      {"inner box over the 64B swizzle span",
       encode(&map, buf.get(), 200, 10, 208, 128, 64, CU_TENSOR_MAP_SWIZZLE_64B)},
      {"inner box not a multiple of 16", encode(&map, buf.get(), 200, 10, 208, 120, 64)},
      {"box rows over 256", encode(&map, buf.get(), 200, 10, 208, 128, 257)},
      {"zero dimension", encode(&map, buf.get(), 200, 0, 208, 128, 64)},
      {"zero box rows", encode(&map, buf.get(), 200, 10, 208, 128, 0)},
      {"map not 64-byte aligned",
       encode(reinterpret_cast<CUtensorMap*>(misaligned + 32), buf.get(), 200, 10, 208, 128, 64)},
  };
  for (const Bad& b : bad) CHECK(b.r == CUDA_ERROR_INVALID_VALUE, "encoder accepts a map with %s", b.what);
  void* fn = &map;
  cudaDriverEntryPointQueryResult q{};
  cudaGetDriverEntryPoint("cuNoSuchCall", &fn, cudaEnableDefault, &q);
  CHECK(fn == nullptr && q == cudaDriverEntryPointSymbolNotFound, "unknown driver symbol found");
}

// Accumulator fragment: (thread, register) -> (row, col), by hand from the ISA figure.
struct DEntry {
  int t, reg, row, col;
};
const DEntry kD[] = {{0, 0, 0, 0},        {0, 1, 0, 1},      {0, 2, 8, 0},    {0, 3, 8, 1},
                     {0, 4, 0, 8},        {5, 0, 1, 2},      {37, 6, 25, 10}, {70, 13, 33, 29},
                     {127, 127, 63, 255}, {96, 64, 48, 128}, {31, 2, 15, 6},  {66, 121, 32, 245}};

uint64_t desc_rel(uint32_t start, uint32_t sbo, int swz, int base = 0) {
  return uint64_t(start >> 4) | uint64_t(1) << 16 | uint64_t(sbo >> 4) << 32 | uint64_t(base) << 49 |
         uint64_t(swz) << 62;
}

std::vector<int32_t> probe(const std::vector<uint32_t>& writes, uint64_t a, uint64_t b, int mode = 0) {
  emu::DevBuf<uint32_t> w(writes);
  emu::DevBuf<int32_t> out(128 * 128);
  sm90_probe(w.get(), int(writes.size() / 2), a, b, out.get(), mode);
  return out.host();
}

// K-major 128B swizzle, tile 1024-byte aligned: row r, 16-byte chunk j of the 128-byte row at
// r%8 * 128 + r/8 * 1024 + 16 * (j ^ r%8).
uint32_t swz128(int r, int j) { return uint32_t(r % 8 * 128 + r / 8 * 1024 + 16 * (j ^ (r % 8))); }

void test_fragments() {
  for (const DEntry& e : kD) {
    // A(row, bit 3 of k-step 0) and B(col, same bit): one product, in D(row, col) only
    const uint32_t a_off = swz128(e.row, 0), b_off = 65536 + swz128(e.col, 0);
    const auto d = probe({a_off, 8, b_off, 8}, desc_rel(0, 1024, 1), desc_rel(0, 1024, 1));
    int total = 0;
    for (int v : d) total += v;
    CHECK(total == 1 && d[size_t(e.t) * 128 + e.reg] == 1, "D(%d, %d) not in thread %d register %d (%d products)",
          e.row, e.col, e.t, e.reg, total);
  }
  // Literal: k-step 1 (start + 32 bytes) of row 2 reads the 128-byte row's logical chunk 2,
  // stored at chunk 2 ^ 2 = 0: tile byte 256 (A) and, for B row 5, chunk 2 ^ 5 = 7: byte 752.
  {
    const auto d = probe({256, 0x01, 65536 + 752, 0x01}, desc_rel(32, 1024, 1), desc_rel(32, 1024, 1));
    int total = 0;
    for (int v : d) total += v;
    // D(2, 5): warp 0, lane 4*2 + 5/2 = 10, register (5 & 1) = 1
    CHECK(total == 1 && d[10 * 128 + 1] == 1, "128B swizzle, k-step 1, row 2: product not at D(2, 5)");
  }
  // The same bytes at the unswizzled place give nothing (a start-relative swizzle would read them).
  {
    const auto d = probe({256 + 32, 0x01, 65536 + 5 * 128 + 32, 0x01}, desc_rel(32, 1024, 1), desc_rel(32, 1024, 1));
    int total = 0;
    for (int v : d) total += v;
    CHECK(total == 0, "k-step 1 of row 2 read at the unswizzled address (%d products)", total);
  }
  // 64B swizzle (rows 64 bytes apart, chunk j of row r at 16 * (j ^ (r/2 % 4))) and no swizzle
  // (core matrices of 8 rows x 16 bytes, chunks LBO apart): row 6, chunk 1, B row 3 chunk 1.
  {
    const uint32_t a_off = 6 * 64 + 16 * (1 ^ 3), b_off = 65536 + 3 * 64 + 16 * (1 ^ 1);
    const auto d = probe({a_off, 0x80, b_off, 0x80}, desc_rel(0, 512, 2), desc_rel(0, 512, 2));
    CHECK(d[25 * 128 + 1] == 1, "64B swizzle: product not at D(6, 3)");  // lane 4*6 + 3/2, register 1
  }
  {
    const uint64_t clear_lbo = ~(uint64_t(0x3FFF) << 16);
    const uint64_t a = (desc_rel(0, 128, 0) & clear_lbo) | uint64_t(2048 >> 4) << 16;
    const uint64_t b = (desc_rel(0, 128, 0) & clear_lbo) | uint64_t(4096 >> 4) << 16;
    const auto d = probe({6 * 16 + 2048, 0x40, 65536 + 3 * 16 + 4096, 0x40}, a, b);
    CHECK(d[25 * 128 + 1] == 1, "no swizzle: product not at D(6, 3)");
  }
}

// Accumulators written / read after the wait, then wgmma.fence before the next wgmma: valid.
void test_refence() {
  for (int mode : {8 | 32, 16 | 32}) {
    const auto d = probe({swz128(1, 0), 1, 65536 + swz128(0, 0), 1}, desc_rel(0, 1024, 1), desc_rel(0, 1024, 1), mode);
    // every thread's register 0 is 7 before the second wgmma in mode 8
    CHECK(d[4 * 128 + 0] == ((mode & 8) ? 8 : 2) && d[0] == ((mode & 8) ? 7 : 0),
          "accumulate after wgmma.fence (mode %d): D(1, 0) = %d, D(0, 0) = %d", mode, d[4 * 128], d[0]);
  }
}

// TMA boxes: 8 rows of `span` bytes (128 without swizzle) of a 20 x 200 byte matrix, from
// coordinates partly out of bounds (zero fill, the full box still counted by the mbarrier),
// stored with Swizzle<B,4,3> on absolute addresses; plus literal bytes worked out by hand.
void test_tma_box() {
  const int rows = 20, row_bytes = 200, ld = 208;
  std::vector<uint8_t> g(size_t(rows) * ld, 0);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < row_bytes; ++c) g[size_t(r) * ld + c] = uint8_t(1 + (r * 7 + c * 13) % 255);
  emu::DevBuf<uint8_t> dg(g);
  struct Case {
    CUtensorMapSwizzle swz;
    int span, c0, c1;
    int r, b, off;  // literal: logical (row r, byte b) of the box lands at tile offset `off`
  } cases[] = {{CU_TENSOR_MAP_SWIZZLE_128B, 128, 144, 16, 2, 37, 261},
               {CU_TENSOR_MAP_SWIZZLE_128B, 128, -32, 3, 3, 40, 408},
               {CU_TENSOR_MAP_SWIZZLE_64B, 64, 8, -2, 6, 17, 417},
               {CU_TENSOR_MAP_SWIZZLE_32B, 32, 176, 14, 5, 20, 164},
               {CU_TENSOR_MAP_SWIZZLE_NONE, 128, 96, 0, 3, 100, 484}};
  for (const Case& k : cases) {
    alignas(128) CUtensorMap map;
    CHECK(encode(&map, dg.get(), row_bytes, rows, ld, uint32_t(k.span), 8, k.swz) == CUDA_SUCCESS, "map refused");
    const uint32_t bytes = 8 * uint32_t(k.span);
    emu::DevBuf<uint8_t> out(bytes);
    sm90_tma_probe(map, k.c0, k.c1, bytes, out.get());
    const auto o = out.host();
    int wrong = 0;
    for (int r = 0; r < 8; ++r)
      for (int b = 0; b < k.span; ++b) {
        const int gr = k.c1 + r, gc = k.c0 + b, lin = r * k.span + b;
        const uint8_t want = gr >= 0 && gr < rows && gc >= 0 && gc < row_bytes ? g[size_t(gr) * ld + gc] : 0;
        const int phys = k.swz == CU_TENSOR_MAP_SWIZZLE_NONE ? lin : lin ^ (((lin >> 7) & (k.span / 16 - 1)) << 4);
        wrong += o[size_t(phys)] != want;
      }
    const int gr = k.c1 + k.r, gc = k.c0 + k.b;
    const uint8_t lit = g[size_t(gr) * ld + gc];  // the literal bytes are in bounds (never 0)
    CHECK(wrong == 0 && o[size_t(k.off)] == lit, "TMA box swizzle %d at (%d, %d): %d bytes misplaced, literal %d",
          k.span, k.c0, k.c1, wrong, o[size_t(k.off)] == lit);
  }
}

void test_empty_group() {
  const auto d = probe({swz128(1, 0), 1, 65536 + swz128(0, 0), 1}, desc_rel(0, 1024, 1), desc_rel(0, 1024, 1),
                       /*kProbeEmptyGroup*/ 2);
  CHECK(d[4 * 128 + 0] == 1, "wait_group 1 after an empty group: D(1, 0) = %d", d[4 * 128]);
}

std::vector<uint8_t> rows_padded(const std::vector<int32_t>& words, int rows, int kw, int ld) {
  std::vector<uint8_t> out(size_t(rows) * ld, 0);
  for (int r = 0; r < rows; ++r) memcpy(&out[size_t(r) * ld], &words[size_t(r) * kw], size_t(kw) * 4);
  return out;
}

// Runs the test GEMM; returns the number of wrong entries (bug: a planted defect).
int run_gemm(int bn, int m, int n, int k, int grid, const std::vector<int32_t>& a, const std::vector<int32_t>& b,
             int bug) {
  const int kw = int(bnn::words_for_bits(k)), row_bytes = 4 * kw, ld = (row_bytes + 15) / 16 * 16;
  emu::DevBuf<uint8_t> da(rows_padded(a, m, kw, ld)), db(rows_padded(b, n, kw, ld));
  emu::DevBuf<int32_t> dc(size_t(m) * n);
  alignas(128) CUtensorMap ma, mb;
  CHECK(encode(&ma, da.get(), row_bytes, m, ld, 128, 64) == CUDA_SUCCESS, "map A refused");
  CHECK(encode(&mb, db.get(), row_bytes, n, ld, 128, bn) == CUDA_SUCCESS, "map B refused");
  sm90_gemm(bn, ma, mb, dc.get(), m, n, (row_bytes + 127) / 128, grid, bug);
  if (dc.unwritten_bytes()) return -1;
  const auto c = dc.host();
  int wrong = 0;
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      int s = 0;
      for (int w = 0; w < kw; ++w) s += __builtin_popcount(uint32_t(a[size_t(i) * kw + w] & b[size_t(j) * kw + w]));
      wrong += c[size_t(i) * n + j] != s;
    }
  return wrong;
}

void test_gemm_shapes() {
  struct Shape {
    int bn, m, n, k, grid;
  } shapes[] = {{256, 130, 300, 2100, 2}, {48, 64, 100, 1500, 2}, {24, 70, 50, 4000, 4}, {256, 20, 256, 1024, 1}};
  for (const Shape& s : shapes) {
    const auto a = rand_bits(s.m, s.k, false), b = rand_bits(s.n, s.k, false);
    const int wrong = run_gemm(s.bn, s.m, s.n, s.k, s.grid, a, b, 0);
    CHECK(wrong == 0, "wgmma GEMM n%d %dx%dx%d: %d wrong entries (-1: output not written)", s.bn, s.m, s.n, s.k, wrong);
  }
  // one-hot B rows: C(i, j) is bit k_j of A row i, whatever permutation of K a bug applies
  const int m = 64, n = 256, k = 2048, kw = k / 32;
  const auto a = rand_bits(m, k, false);
  std::vector<int32_t> b(size_t(n) * kw, 0);
  for (int j = 0; j < n; ++j) {
    const int bit = (j * 37 + 11) % k;
    b[size_t(j) * kw + bit / 32] = int32_t(1u << (bit % 32));
  }
  CHECK(run_gemm(256, m, n, k, 1, a, b, 0) == 0, "wgmma GEMM with one-hot B rows: wrong entries");
}

}  // namespace

void test_sm90() {
  test_encode();
  test_fragments();
  test_empty_group();
  test_refence();
  test_tma_box();
  test_gemm_shapes();
}

int run_sm90_detector(const std::string& name) {
  emu::set_device(1);
  if (const int bug = sm90_gemm_bug(name)) {
    const int m = 130, n = 100, k = 3000;
    const auto a = rand_bits(m, k, false), b = rand_bits(n, k, false);
    const int wrong = run_gemm(48, m, n, k, 2, a, b, bug);
    if (wrong) fprintf(stderr, "GEMM mismatch: %d wrong entries\n", wrong);
    return wrong ? 1 : 0;
  }
  const std::pair<const char*, int> probes[] = {
      {"wgmma_no_proxy_fence", 1},     {"wgmma_wait_one", 4},           {"wgmma_on_sm80", 0},
      {"wgmma_write_acc_no_fence", 8}, {"wgmma_read_acc_no_fence", 16}, {"wgmma_unwritten_smem", 64}};
  for (const auto& [probe_name, mode] : probes)
    if (name == probe_name) {
      if (name == "wgmma_on_sm80") emu::set_device(0);
      probe({0, 1, 65536, 1}, desc_rel(0, 1024, 1), desc_rel(0, 1024, 1), mode);
      return 0;
    }
  if (name == "wgmma_desc_oob") {  // B operand past the 97 KiB of dynamic shared memory
    probe({0, 1, 65536, 1}, desc_rel(0, 1024, 1), desc_rel(96 * 1024, 1024, 1));
    return 0;
  }
  if (name == "wgmma_base_offset") {  // start at row 2 of a swizzle pattern with base offset 0
    probe({0, 1, 65536, 1}, desc_rel(256, 1024, 1), desc_rel(0, 1024, 1));
    return 0;
  }
  const int64_t nbuf = 64;
  emu::DevBuf<int32_t> buf(std::vector<int32_t>(nbuf, 3), false);
  if (!run_sm90_bug_kernel(name, buf.get(), nbuf)) return 2;
  return 0;
}

}  // namespace emutest
