// The sm_90a GEMM path (csrc/gemm/and_gemm_wgmma_cuda.cu) against the CPU kernels, full int32
// values, on the emulated sm_90 device (family "wgmma"):
//  - xnor_gemm forced to GemmPath::Wgmma on shapes that reach the kernel for real (K a multiple
//    of 128 bits, or a masked last word with rows of a multiple of 4 words): more k tiles than
//    ring stages (wrap-around, phase flips), M and N tails, both tile widths (N <= 128: n128),
//    several persistent tiles per block (the emulation caps the grid at 3 blocks), and a check
//    that the path which ran is wgmma; shapes TMA cannot read (rows not 16-byte multiples) run
//    mma.sync and must say so;
//  - the AndGemm engine directly: batches (padded rows, gaps between entries, a broadcast B),
//    alpha / beta / row_add / col_add, dirty bits past last_mask;
//  - one-hot B rows: C(i, j) is the single bit k_j of A row i, exposing any K permutation;
//  - bitserial_gemm and binary_conv2d (groups as batch entries, two pixel chunks, zero padding)
//    through the engine on the same path.
// wgmma-fallback:WANT (with --device / --code): the path a forced Wgmma takes by loaded code.
#include <cstring>

#include "bitserial/bitserial_gemm.h"
#include "bitserial/bitserial_gemm_cuda.h"
#include "conv/binary_conv.h"
#include "conv/binary_conv_cuda.h"
#include "gemm/and_gemm_cuda.h"
#include "gemm/popcount_gemm.h"
#include "test_util.h"

using namespace bnn;
using emu::DevBuf;

namespace emutest {
namespace {

// xnor_gemm by `path`; checks the result and that `want` ran.
void xnor_case(int64_t m, int64_t n, int64_t k, bool dirty, cuda::GemmPath path, cuda::GemmPath want) {
  const auto a = rand_bits(m, k, dirty), b = rand_bits(n, k, dirty);
  std::vector<int32_t> ref(m * n);
  cpu::xnor_gemm(a.data(), words_for_bits(k), b.data(), words_for_bits(k), m, n, k, ref.data(), n, 1);
  DevBuf<int32_t> da(a), db(b), out(m * n);
  DevBuf<char> ws(cuda::xnor_gemm_workspace_bytes(m, n));
  const auto ran = cuda::launch_xnor_gemm(da.get(), db.get(), m, n, k, out.get(), n, ws.get(), path, nullptr);
  CHECK(ran == want && same(out, ref), "xnor %ldx%ldx%ld dirty=%d: ran %s (want %s), result %s", (long)m, (long)n,
        (long)k, dirty, cuda::gemm_path_name(ran), cuda::gemm_path_name(want), same(out, ref) ? "ok" : "WRONG");
}

struct EngineCase {
  int64_t m, n, k, pad_words, gap_rows;
  int batch;
  bool broadcast_b, adds;
};

// The engine on [batch][rows of lda words] operands; reference by plain loops.
void engine_case(const EngineCase& c, const std::vector<int32_t>* b_override = nullptr) {
  const int64_t words = words_for_bits(c.k), lda = words + c.pad_words, ldb = lda;
  const int64_t a_batch = (c.m + c.gap_rows) * lda, b_batch = c.broadcast_b ? 0 : (c.n + c.gap_rows) * ldb;
  const auto a = rand_words(size_t(a_batch * c.batch));
  const auto b = b_override ? *b_override : rand_words(size_t(c.broadcast_b ? c.n * ldb : b_batch * c.batch));
  const auto ra = rand_words(size_t(c.m * c.batch)), cb = rand_words(size_t(c.n * c.batch));
  cuda::AndGemmArgs p;
  p.lda = lda, p.a_batch = a_batch, p.ldb = ldb, p.b_batch = b_batch;
  p.M = c.m, p.N = c.n, p.words = words, p.last_mask = tail_mask(c.k), p.batch = c.batch;
  p.alpha = c.adds ? -3 : 1, p.beta = c.adds ? 12345 : 0;
  p.row_batch = c.m, p.col_batch = c.n, p.ldc = c.n + 3, p.c_batch = c.m * p.ldc;
  std::vector<int32_t> want(size_t(p.c_batch * c.batch), 0);
  for (int bt = 0; bt < c.batch; ++bt)
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = 0; j < c.n; ++j) {
        uint32_t s = 0;
        for (int64_t w = 0; w < words; ++w) {
          const uint32_t mask = w == words - 1 ? p.last_mask : 0xFFFFFFFFu;
          s += __builtin_popcount(uint32_t(a[bt * a_batch + i * lda + w] & b[bt * b_batch + j * ldb + w]) & mask);
        }
        uint32_t v = uint32_t(p.alpha) * s + uint32_t(p.beta);
        if (c.adds) v += uint32_t(ra[bt * c.m + i]) + uint32_t(cb[bt * c.n + j]);
        want[bt * p.c_batch + i * p.ldc + j] = int32_t(v);
      }
  DevBuf<int32_t> da(a), db(b), dra(ra), dcb(cb), out(std::vector<int32_t>(want.size(), 0), false);
  p.A = da.get(), p.B = db.get(), p.C = out.get();
  if (c.adds) p.row_add = dra.get(), p.col_add = dcb.get();
  const auto ran = cuda::launch_and_gemm(p, cuda::GemmPath::Wgmma, nullptr);
  CHECK(ran == cuda::GemmPath::Wgmma && same(out, want), "engine %ldx%ldx%ld batch %d pad %ld gap %ld: ran %s, %s",
        (long)c.m, (long)c.n, (long)c.k, c.batch, (long)c.pad_words, (long)c.gap_rows, cuda::gemm_path_name(ran),
        same(out, want) ? "ok" : "WRONG");
}

// One-hot B rows (bit (37 j + 11) mod k of row j): C(i, j) = that bit of A row i.
void one_hot_case() {
  const int64_t m = 64, n = 200, k = 5120, words = k / 32;
  std::vector<int32_t> b(size_t(n * words), 0);
  for (int64_t j = 0; j < n; ++j) {
    const int64_t bit = (j * 37 + 11) % k;
    b[j * words + bit / 32] = int32_t(1u << (bit % 32));
  }
  engine_case({m, n, k, 0, 0, 1, false, false}, &b);
}

void bitserial_case() {
  const int64_t P = 2, Q = 3, M = 70, N = 150, k = 2304;
  const std::vector<int64_t> ac = {1, 2}, wc = {1, -2, 4};
  const auto a = rand_bits(P * M, k, false), w = rand_bits(Q * N, k, false);
  std::vector<int32_t> ref(M * N);
  cpu::bitserial_gemm(a.data(), P, w.data(), Q, M, N, k, ac.data(), wc.data(), 3, -1, true, ref.data(), 1);
  DevBuf<int32_t> da(a), dw(w), out(M * N);
  DevBuf<int64_t> dac(ac), dwc(wc);
  DevBuf<char> ws(cuda::bitserial_gemm_workspace_bytes(P, Q, M, N));
  cuda::launch_bitserial_gemm(da.get(), P, dw.get(), Q, M, N, k, dac.get(), dwc.get(), 3, -1, true, out.get(), ws.get(),
                              cuda::GemmPath::Wgmma, nullptr);
  CHECK(same(out, ref), "bitserial_gemm on the wgmma path: WRONG");
}

// Groups are batch entries of the engine; 144 pixels are two chunks in the emulation build.
void conv_case() {
  ConvParams p{};
  p.batch = 2, p.in_h = 9, p.in_w = 8, p.in_channels = 200, p.out_channels = 140, p.kernel_h = 3, p.kernel_w = 3;
  p.groups = 2, p.stride_h = p.stride_w = 1, p.pad_h = p.pad_w = 1, p.dil_h = p.dil_w = 1, p.pad_value = 0;
  p.out_h = conv_out_size(p.in_h, 3, 1, 1, 1), p.out_w = conv_out_size(p.in_w, 3, 1, 1, 1);
  const auto x = rand_bits(p.batch * p.in_h * p.in_w, p.in_channels, true);
  const auto w = rand_bits(p.out_channels * 9, p.in_channels / p.groups, true);
  const int64_t n_out = p.batch * p.out_h * p.out_w * p.out_channels;
  std::vector<int32_t> ref(n_out);
  cpu::binary_conv2d(x.data(), w.data(), p, ref.data(), 1);
  DevBuf<int32_t> dx(x), dw(w), out(n_out);
  DevBuf<char> ws(cuda::binary_conv2d_workspace_bytes(p));
  cuda::launch_binary_conv2d(dx.get(), dw.get(), p, out.get(), ws.get(), cuda::GemmPath::Wgmma, nullptr);
  CHECK(same(out, ref), "binary_conv2d on the wgmma path: WRONG");
}

}  // namespace

void test_wgmma() {
  cuda::GemmPath q = cuda::GemmPath::Auto;
  CHECK(cuda::parse_gemm_path("wgmma", &q) && q == cuda::GemmPath::Wgmma &&
            !strcmp(cuda::gemm_path_name(cuda::GemmPath::Wgmma), "wgmma"),
        "wgmma path name round trip");
  const auto W = cuda::GemmPath::Wgmma, Mma = cuda::GemmPath::Mma;
  // n256 tiles: 5 k tiles through a 4-stage ring, tails in M (200 = 128 + 72) and N (300 = 256 + 44)
  xnor_case(200, 300, 5120, false, W, W);
  // n128 tiles: 7 k tiles through 6 stages; 5 tiles on 3 persistent blocks
  xnor_case(520, 100, 7168, false, W, W);
  // 2048 + 256 bits: a last k tile of 32 valid bytes (TMA zero-fills the rest); 3 tiles along N
  xnor_case(70, 600, 2304, true, W, W);
  // a masked last word: 5100 bits are 160 words (rows of 640 bytes): dirty tail bits corrected
  xnor_case(130, 260, 5100, true, W, W);
  // tiny and skinny shapes run too when forced
  xnor_case(1, 1, 100, true, W, W);
  xnor_case(3, 7, 128, false, W, W);
  // rows of 157 words are not 16-byte multiples: TMA cannot read them, mma.sync runs and says so
  xnor_case(100, 90, 5000, true, W, Mma);
  // the engine: padded rows, gaps between batch entries, broadcast B, the integer epilogue
  engine_case({70, 150, 1000, 4, 5, 3, false, true});
  engine_case({130, 40, 4100, 7, 0, 2, true, true});
  one_hot_case();
  bitserial_case();
  conv_case();
  // B batch stride not whole rows: no tensor map can step through it, mma.sync runs
  {
    cuda::AndGemmArgs p;
    DevBuf<int32_t> da(rand_words(64 * 8 * 2)), db(rand_words(64 * 8 * 2)), out(64 * 64 * 2);
    p.A = da.get(), p.lda = 8, p.a_batch = 64 * 8, p.B = db.get(), p.ldb = 8, p.b_batch = 64 * 8 - 4;
    p.M = p.N = 64, p.words = 8, p.batch = 2, p.C = out.get(), p.ldc = 64, p.c_batch = 64 * 64;
    CHECK(!cuda::and_gemm_wgmma_fits(p) && cuda::launch_and_gemm(p, W, nullptr) == Mma,
          "batch stride of B not whole rows: wgmma claimed");
  }
}

// The path a forced Wgmma runs by the code loaded (--device / --code), with the CPU's result.
void test_wgmma_fallback(const std::string& want) {
  const int64_t m = 130, n = 140, k = 1024;
  const auto a = rand_bits(m, k, false), b = rand_bits(n, k, false);
  std::vector<int32_t> ref(m * n);
  cpu::xnor_gemm(a.data(), k / 32, b.data(), k / 32, m, n, k, ref.data(), n, 1);
  DevBuf<int32_t> da(a), db(b);
  for (int rep = 0; rep < 2; ++rep) {
    DevBuf<int32_t> out(m * n);
    DevBuf<char> ws(cuda::xnor_gemm_workspace_bytes(m, n));
    const auto ran =
        cuda::launch_xnor_gemm(da.get(), db.get(), m, n, k, out.get(), n, ws.get(), cuda::GemmPath::Wgmma, nullptr);
    CHECK(want == cuda::gemm_path_name(ran) && same(out, ref), "wgmma requested: ran %s, want %s, result %s",
          cuda::gemm_path_name(ran), want.c_str(), same(out, ref) ? "ok" : "WRONG");
  }
}

}  // namespace emutest
