// The emulated ldmatrix and mma.m16n8k256 .b1 against a table read off the PTX ISA's figures
// (ldmatrix: "ldmatrix fragment layout for one 8x8 Matrix with 16-bit elements" and the table of
// row addresses per thread; mma: "MMA .m16n8k256 fragment layout for matrix A / B / C"), written
// as literals so that the kernel's and the emulator's reading of the ISA are both checked
// against a third, independent one.
#include <cstring>

#include "test_kernels.h"
#include "test_util.h"

namespace emutest {
namespace {

// lane, register -> (lane whose address gives the row, byte offset in the 16-byte row)
struct LdmEntry {
  int lane, reg, provider, byte;
};
const LdmEntry kLdm[] = {{0, 0, 0, 0},   {1, 0, 0, 4},  {3, 0, 0, 12},  {4, 0, 1, 0},    {31, 0, 7, 12}, {0, 1, 8, 0},
                         {13, 1, 11, 4}, {9, 2, 18, 4}, {22, 3, 29, 8}, {31, 3, 31, 12}, {16, 2, 20, 0}, {7, 1, 9, 12}};
// A: lane, register, bit -> row, k.  B: lane, register, bit -> k, col.  C: lane, register -> row, col.
struct AEntry {
  int lane, reg, bit, row, k;
};
struct BEntry {
  int lane, reg, bit, k, col;
};
struct CEntry {
  int lane, reg, row, col;
};
const AEntry kA[] = {{0, 0, 0, 0, 0},     {5, 0, 7, 1, 39},   {14, 0, 31, 3, 95},  {31, 2, 0, 7, 224},
                     {0, 1, 2, 8, 2},     {5, 3, 30, 9, 190}, {14, 3, 1, 11, 193}, {31, 3, 31, 15, 255},
                     {19, 0, 16, 4, 112}, {26, 3, 4, 14, 196}};
const BEntry kB[] = {{4, 0, 0, 0, 1},     {9, 0, 7, 39, 2},    {22, 0, 31, 95, 5}, {27, 1, 0, 224, 6},
                     {0, 0, 2, 2, 0},     {13, 1, 30, 190, 3}, {18, 1, 1, 193, 4}, {31, 1, 31, 255, 7},
                     {31, 0, 16, 112, 7}, {18, 1, 4, 196, 4}};
const CEntry kC[] = {{0, 1, 0, 1}, {5, 0, 1, 2},   {14, 1, 3, 5},  {31, 0, 7, 6}, {0, 2, 8, 0},
                     {5, 3, 9, 3}, {14, 2, 11, 4}, {31, 3, 15, 7}, {19, 1, 4, 7}, {26, 2, 14, 4}};

void test_ldmatrix() {
  std::vector<uint32_t> addr(32);
  for (int l = 0; l < 32; ++l) addr[l] = 16 * ((l * 13 + 5) % 32);  // rows scattered over the tile
  emu::DevBuf<uint32_t> da(addr), regs(32 * 4);
  probe_ldmatrix(da.get(), regs.get());
  const auto r = regs.host();
  for (const LdmEntry& e : kLdm) {
    uint32_t want = 0;
    for (int b = 0; b < 4; ++b)
      want |= uint32_t(static_cast<unsigned char>((addr[e.provider] + e.byte + b) * 7 + 3)) << (8 * b);
    CHECK(r[e.lane * 4 + e.reg] == want, "ldmatrix lane %d reg %d: %08x, table says %08x", e.lane, e.reg,
          r[e.lane * 4 + e.reg], want);
  }
}

void test_mma() {
  for (size_t i = 0; i < sizeof(kA) / sizeof(kA[0]); ++i) {
    const AEntry& ea = kA[i];
    const BEntry& eb = kB[i];
    const CEntry& ec = kC[i];
    CHECK(ea.k == eb.k && ea.row == ec.row && eb.col == ec.col, "layout table entry %zu inconsistent", i);
    std::vector<uint32_t> a(32 * 4, 0), b(32 * 2, 0);
    std::vector<int32_t> c0(32 * 4);
    for (auto& v : c0) v = int32_t(rng() % 1000);
    a[ea.lane * 4 + ea.reg] = 1u << ea.bit;
    b[eb.lane * 2 + eb.reg] = 1u << eb.bit;
    emu::DevBuf<uint32_t> da(a), db(b);
    emu::DevBuf<int32_t> dc(c0, false);
    probe_mma(da.get(), db.get(), dc.get());
    const auto c = dc.host();
    int total = 0;
    for (int j = 0; j < 32 * 4; ++j) total += c[j] - c0[j];
    CHECK(total == 1, "mma entry %zu: %d products, want exactly 1", i, total);
    CHECK(c[ec.lane * 4 + ec.reg] - c0[ec.lane * 4 + ec.reg] == 1,
          "mma entry %zu: A(row %d, k %d) AND B(k %d, col %d) not in lane %d c%d", i, ea.row, ea.k, eb.k, eb.col,
          ec.lane, ec.reg);
    // the same A element against a B element of another k contributes nothing
    b.assign(32 * 2, 0);
    b[eb.lane * 2 + eb.reg] = 1u << ((eb.bit + 1) % 32);
    emu::DevBuf<uint32_t> db2(b);
    emu::DevBuf<int32_t> dc2(c0, false);
    probe_mma(da.get(), db2.get(), dc2.get());
    CHECK(dc2.host() == c0, "mma entry %zu: mismatched k counted", i);
  }
}

}  // namespace

void test_layout() {
  test_ldmatrix();
  test_mma();
}

}  // namespace emutest
