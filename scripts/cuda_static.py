#!/usr/bin/env python3
"""Static SASS gates for the CUDA kernels: no GPU needed.

Compiles every csrc/**/*.cu for each SASS target of the build (sm_80, sm_90a) to a cubin with
nvcc (the flags of setup.py), reads each kernel's resources with `cuobjdump -res-usage`, its
launch bounds from the PTX nvcc kept, and its instructions with `nvdisasm`, then checks:

  spills     no local memory: LOCAL and STACK 0 bytes, no LDL/STL instruction
  registers  the blocks per SM that __launch_bounds__(threads, min_blocks) promises fit in the
             register file (65536 per SM, allocated per warp in units of 256); a kernel without
             launch bounds is assumed launched with 256 threads and must keep at least half of
             the SM's 2048 threads resident (4 blocks), as its grid-stride loops assume
  smem       static shared memory within 48 KiB, and min_blocks blocks fit the SM's shared memory
  bmma       every b1 mma.sync of the PTX is .and.popc and became exactly one native
             BMMA ... AND.POPC (ptxas emulates .xor.popc on sm_90 with several); tensor-core
             kernels (names with "mma") have BMMA, no POPC (an emulated mma) and no trap
  wgmma      sm_90a kernels with "wgmma" in the name: each b1 wgmma.mma_async of the PTX is one
             native BGMMA ... AND.POPC, no trap, and the setmaxnreg of each warp role is in the
             SASS (USETMAXREG) and fits: the compiled register count lies between the producers'
             dec and the consumers' inc, and one producer warpgroup at dec plus the others at inc
             fit the SM's 65536 registers; on other targets such a kernel is a stub that traps
  no-fma     binary_weight_linear and binary_weight_conv2d (wconv_) kernels keep the epilogue's
             FMUL/DMUL (dot * scale rounds before + bias, as on the CPU), and the linear GEMV
             ones, whose only multiply that is, no FFMA/DFMA; the fused epilogue kernel
             (epilogue_cuda.cu) has FMULs and no FFMA at all

Writes the table to benchmarks/cuda_static.md (--out) and exits 1 when a gate breaks.
Tools: nvcc from CUDA_HOME (or /usr/local/cuda); cuobjdump and nvdisasm from PATH, the toolkit,
or the nvidia-cuda-cuobjdump / nvidia-cuda-nvdisasm wheels (requirements.txt).

    python scripts/cuda_static.py [--archs 80,90a] [--jobs N] [--out benchmarks/cuda_static.md]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHS = ("80", "90a")
NVCC_FLAGS = ["-O3", "-std=c++20", "--expt-relaxed-constexpr"]  # setup.py's, minus -lineinfo

# Per SM (sm_80 code also runs on sm_86/sm_89, whose SMs have less shared memory: 100 KiB).
REGS_PER_SM, THREADS_PER_SM, BLOCKS_PER_SM = 65536, 2048, 32
SMEM_PER_SM = {"80": 100 * 1024, "90a": 228 * 1024}
SMEM_RESERVED_PER_BLOCK = 1024
STATIC_SMEM_MAX = 48 * 1024
DEFAULT_THREADS, DEFAULT_MIN_BLOCKS = 256, 4  # kernels without __launch_bounds__


def find_nvcc() -> str | None:
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and os.access(os.path.join(home, "bin", "nvcc"), os.X_OK):
            return os.path.join(home, "bin", "nvcc")
    return shutil.which("nvcc")


def find_tool(name: str, nvcc: str | None = None) -> str | None:
    """PATH, then the toolkit of nvcc, then the nvidia-cuda-* wheels on sys.path."""
    if shutil.which(name):
        return shutil.which(name)
    dirs = [os.path.dirname(nvcc)] if nvcc else []
    for site in sys.path:
        dirs += glob.glob(os.path.join(site, "nvidia", "*", "bin"))
    for d in dirs:
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return None


@dataclass
class Kernel:
    source: str
    arch: str
    mangled: str
    name: str = ""
    regs: int = 0
    stack: int = 0
    local: int = 0
    shared: int = 0
    threads: int = 0  # __launch_bounds__ max threads (0: none)
    min_blocks: int = 0  # __launch_bounds__ min blocks per SM (0: none)
    ptx_mma_and: int = 0  # mma.sync ... .b1 ... .and.popc in the PTX
    ptx_mma_xor: int = 0  # mma.sync ... .b1 ... .xor.popc in the PTX
    ptx_wgmma: int = 0  # wgmma.mma_async ... .b1.b1.and.popc in the PTX
    setmaxnreg: tuple = ()  # (("dec" | "inc", R), ...) of the PTX
    ops: dict = field(default_factory=dict)  # SASS opcode (with modifiers) -> count
    failures: list = field(default_factory=list)

    def count(self, pattern: str) -> int:
        rx = re.compile(pattern)
        return sum(n for op, n in self.ops.items() if rx.search(op))

    @property
    def bmma_and(self) -> int:
        return self.count(r"^BMMA\..*AND\.POPC")

    def blocks_by_regs(self, threads: int) -> int:
        regs = max(1, (self.regs + 7) // 8 * 8)  # allocated per warp in units of 256 registers
        return REGS_PER_SM // (((threads + 31) // 32) * 32 * regs)

    def occupancy(self) -> int:
        """Resident blocks per SM for the launch the kernel assumes (registers, static shared
        memory, threads; dynamic shared memory is each launcher's own, see the .cu)."""
        threads = self.threads or DEFAULT_THREADS
        by_smem = SMEM_PER_SM[self.arch] // (self.shared + SMEM_RESERVED_PER_BLOCK)
        return min(self.blocks_by_regs(threads), by_smem, THREADS_PER_SM // threads, BLOCKS_PER_SM)


def compile_cubin(nvcc: str, source: str, arch: str, workdir: str) -> tuple[str, str]:
    """Compiles one .cu for one target; returns the cubin and the PTX nvcc kept."""
    keep = os.path.join(workdir, f"{os.path.basename(source)}.sm_{arch}")
    os.makedirs(keep, exist_ok=True)
    cubin = os.path.join(keep, "out.cubin")
    cmd = [
        nvcc,
        *NVCC_FLAGS,
        f"-I{os.path.join(ROOT, 'csrc')}",
        f"-arch=sm_{arch}",
        "-cubin",
        "--keep",
        "--keep-dir",
        keep,
        "-o",
        cubin,
        source,
    ]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"nvcc failed on {source} (sm_{arch}):\n{r.stderr[-4000:]}")
    ptx = glob.glob(os.path.join(keep, "*.ptx"))
    return cubin, ptx[0] if ptx else ""


def parse_res_usage(text: str) -> dict[str, dict[str, int]]:
    out = {}
    for name, body in re.findall(r"Function (\S+):\s*\n\s*(REG:.*)", text):
        out[name] = {k.lower(): int(v) for k, v in re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", body)}
    return out


def parse_ptx(ptx: str) -> dict[str, tuple]:
    """.entry name -> (maxntid product, minnctapersm (0 where absent), b1 mma.sync with
    .and.popc, with .xor.popc, b1 wgmma.mma_async .and.popc, setmaxnreg (kind, R) pairs)."""
    out = {}
    entries = list(re.finditer(r"\.entry\s+(\S+)\s*\(", ptx))
    for i, m in enumerate(entries):
        head = ptx[m.end() : ptx.find("{", m.end())]
        body = ptx[m.end() : entries[i + 1].start() if i + 1 < len(entries) else len(ptx)]
        mma_and = len(re.findall(r"mma\.sync\.\S*\.b1\.\S*\.and\.popc", body))
        mma_xor = len(re.findall(r"mma\.sync\.\S*\.b1\.\S*\.xor\.popc", body))
        nt = re.search(r"\.maxntid\s+(\d+)(?:,\s*(\d+))?(?:,\s*(\d+))?", head)
        threads = 0
        if nt:
            threads = 1
            for g in nt.groups():
                threads *= int(g or 1)
        mb = re.search(r"\.minnctapersm\s+(\d+)", head)
        wgmma = len(re.findall(r"wgmma\.mma_async\.\S*\.b1\.b1\.and\.popc", body))
        regs = tuple(
            sorted({(k, int(r)) for k, r in re.findall(r"setmaxnreg\.(inc|dec)\.sync\.aligned\.u32\s+(\d+)", body)})
        )
        out[m.group(1)] = (threads, int(mb.group(1)) if mb else 0, mma_and, mma_xor, wgmma, regs)
    return out


# (modifiers may hold a lowercase x: BGMMA.64x256x256.AND.POPC)
_INSN = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_][A-Z0-9_x]*)*)")


def parse_sass(text: str) -> dict[str, dict[str, int]]:
    """nvdisasm output -> kernel -> opcode (with modifiers) -> count."""
    out: dict[str, dict[str, int]] = {}
    cur = None
    for line in text.splitlines():
        s = re.match(r"\s*\.section\s+\.text\.([^,\s]+)", line)
        if s:
            cur = out.setdefault(s.group(1), {})
            continue
        m = _INSN.search(line) if cur is not None else None
        if m:
            cur[m.group(1)] = cur.get(m.group(1), 0) + 1
            if m.group(1).startswith("USETMAXREG"):  # its register count, as a pseudo-opcode
                imm = re.search(r"(0x[0-9a-f]+)\s*;", line)
                key = f"setmaxnreg#{int(imm.group(1), 16) if imm else '?'}"
                cur[key] = cur.get(key, 0) + 1
    return out


def short_names(mangled: list[str]) -> dict[str, str]:
    """Demangled names without namespaces and parameter lists (mangled names if no c++filt)."""
    filt = shutil.which("c++filt")
    if not filt or not mangled:
        return {m: m for m in mangled}
    lines = subprocess.run([filt], input="\n".join(mangled), capture_output=True, text=True).stdout.splitlines()
    out = {}
    for m, d in zip(mangled, lines):
        d = re.sub(r"^void ", "", d)
        depth, cut = 0, len(d)
        for i, c in enumerate(d):  # drop the parameter list: the last top-level '('
            depth += c == "<"
            depth -= c == ">"
            if c == "(" and depth == 0 and not d.startswith("(anonymous", i):
                cut = i
        d = d[:cut]
        out[m] = re.sub(r"^(?:[\w]+::|\(anonymous namespace\)::)+", "", d)
    return out


def analyse(nvcc: str, cuobjdump: str, nvdisasm: str, source: str, arch: str, workdir: str) -> list[Kernel]:
    cubin, ptx = compile_cubin(nvcc, source, arch, workdir)
    res = parse_res_usage(
        subprocess.run([cuobjdump, "-res-usage", cubin], capture_output=True, text=True, check=True).stdout
    )
    sass = parse_sass(subprocess.run([nvdisasm, "-c", cubin], capture_output=True, text=True, check=True).stdout)
    entries = parse_ptx(open(ptx).read()) if ptx else {}
    kernels = []
    for name, r in res.items():
        if name not in entries:  # a device function, not a kernel entry
            continue
        threads, min_blocks, mma_and, mma_xor, wgmma, maxnreg = entries[name]
        k = Kernel(
            os.path.relpath(source, ROOT),
            arch,
            name,
            regs=r.get("reg", 0),
            stack=r.get("stack", 0),
            local=r.get("local", 0),
            shared=r.get("shared", 0),
            threads=threads,
            min_blocks=min_blocks,
            ptx_mma_and=mma_and,
            ptx_mma_xor=mma_xor,
            ptx_wgmma=wgmma,
            setmaxnreg=maxnreg,
            ops=sass.get(name, {}),
        )
        check(k)
        kernels.append(k)
    return kernels


def check(k: Kernel) -> None:
    """Fills k.failures with every gate the kernel breaks."""
    f = k.failures
    spill_insns = k.count(r"^(LDL|STL)\b")
    if k.local or k.stack or spill_insns:
        f.append(f"spills: {k.local} B local, {k.stack} B stack, {spill_insns} LDL/STL")
    if k.threads:
        want = max(k.min_blocks, 1)
        if k.blocks_by_regs(k.threads) < want:
            f.append(
                f"registers: {k.regs} leave {k.blocks_by_regs(k.threads)} blocks of {k.threads} threads "
                f"per SM, __launch_bounds__ promises {want}"
            )
    elif k.blocks_by_regs(DEFAULT_THREADS) < DEFAULT_MIN_BLOCKS:
        f.append(
            f"registers: {k.regs} leave {k.blocks_by_regs(DEFAULT_THREADS)} blocks of {DEFAULT_THREADS} "
            f"threads per SM, fewer than {DEFAULT_MIN_BLOCKS} (no __launch_bounds__)"
        )
    if k.shared > STATIC_SMEM_MAX:
        f.append(f"smem: {k.shared} B static shared memory > 48 KiB")
    if k.min_blocks and k.min_blocks * (k.shared + SMEM_RESERVED_PER_BLOCK) > SMEM_PER_SM[k.arch]:
        f.append(f"smem: {k.min_blocks} blocks of {k.shared} B do not fit sm_{k.arch}")
    # Each b1 mma of the PTX must be one native BMMA ... AND.POPC: ptxas emulates .xor.popc on
    # sm_90 with a sequence of two BMMA AND.POPC and integer fix-ups.
    if k.ptx_mma_xor or k.count(r"^BMMA\..*XOR"):
        f.append(f"bmma: mma XOR.popc ({k.ptx_mma_xor} in PTX; emulated on sm_90)")
    if k.bmma_and != k.ptx_mma_and:
        f.append(f"bmma: {k.bmma_and} BMMA AND.POPC for {k.ptx_mma_and} b1 mma in PTX (emulated)")
    if "wgmma" in (k.name or k.mangled):
        check_wgmma(k)
    elif "mma" in (k.name or k.mangled):
        if k.bmma_and == 0:
            f.append("bmma: no native BMMA ... AND.POPC")
        if k.count(r"^POPC\b"):
            f.append(f"bmma: {k.count(r'^POPC')} POPC instructions (an emulated mma?)")
        if k.count(r"^BPT\.TRAP"):
            f.append("bmma: contains a trap (compiled without the tensor-core path)")
    if "linear_gemv" in (k.name or k.mangled) and k.count(r"^(FFMA|DFMA)\b"):
        f.append(f"no-fma: {k.count(r'^(FFMA|DFMA)')} fused multiply-adds (the epilogue must round twice)")
    if any(s in (k.name or k.mangled) for s in ("linear_", "wconv_")) and not k.count(r"^(FMUL|DMUL)\b"):
        f.append("no-fma: no FMUL/DMUL left for the epilogue's dot * scale (fused into an FMA?)")
    if re.search(r"(?<!\w)epilogue_kernel", k.name or k.mangled):  # epilogue_cuda.cu's kernel
        if k.count(r"^FFMA\b"):
            f.append(f"no-fma: {k.count(r'^FFMA')} FFMA in the fused epilogue (each step must round on its own)")
        if not k.count(r"^FMUL\b"):
            f.append("no-fma: no FMUL left in the fused epilogue (multiplier and PReLU slope fused away?)")


def check_wgmma(k: Kernel) -> None:
    """The wgmma gate (see the module docstring)."""
    f = k.failures
    if k.arch != "90a":
        if k.ptx_wgmma or not k.count(r"^BPT\.TRAP") or k.shared < 8192:
            f.append("wgmma: outside sm_90a the kernel must be the trapping stub (8 KiB static shared memory)")
        return
    bgmma = k.count(r"^BGMMA\..*AND\.POPC")
    if k.ptx_wgmma == 0 or bgmma != k.ptx_wgmma:
        f.append(f"wgmma: {bgmma} BGMMA AND.POPC for {k.ptx_wgmma} b1 wgmma in PTX")
    if k.count(r"^BPT\.TRAP"):
        f.append("wgmma: contains a trap")
    dec = [r for kind, r in k.setmaxnreg if kind == "dec"]
    inc = [r for kind, r in k.setmaxnreg if kind == "inc"]
    if len(dec) != 1 or len(inc) != 1:
        f.append(f"wgmma: want one setmaxnreg dec (producers) and one inc (consumers), PTX has {k.setmaxnreg}")
        return
    sass = {op.split("#")[1] for op in k.ops if op.startswith("setmaxnreg#")}
    if str(dec[0]) not in sass or str(inc[0]) not in sass:
        f.append(f"wgmma: USETMAXREG of the SASS request {sorted(sass)}, the PTX {dec[0]} and {inc[0]}")
    groups = max(1, (k.threads or 128) // 128)
    if not dec[0] <= k.regs <= inc[0]:
        f.append(f"wgmma: {k.regs} registers outside setmaxnreg dec {dec[0]} .. inc {inc[0]}")
    if 128 * dec[0] + 128 * (groups - 1) * inc[0] > REGS_PER_SM:
        f.append(f"wgmma: 1 warpgroup at {dec[0]} + {groups - 1} at {inc[0]} registers exceed {REGS_PER_SM}")


def run(archs=ARCHS, jobs: int | None = None, sources: list[str] | None = None) -> list[Kernel]:
    nvcc = find_nvcc()
    cuobjdump, nvdisasm = find_tool("cuobjdump", nvcc), find_tool("nvdisasm", nvcc)
    if not (nvcc and cuobjdump and nvdisasm):
        raise FileNotFoundError(f"needs nvcc, cuobjdump and nvdisasm (found {nvcc}, {cuobjdump}, {nvdisasm})")
    if sources is None:
        sources = sorted(glob.glob(os.path.join(ROOT, "csrc", "**", "*.cu"), recursive=True))
    jobs = max(1, min(jobs or os.cpu_count() or 1, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="cuda_static_") as work, cf.ThreadPoolExecutor(jobs) as pool:
        futures = [pool.submit(analyse, nvcc, cuobjdump, nvdisasm, s, a, work) for s in sources for a in archs]
        kernels = [k for fut in futures for k in fut.result()]
    names = short_names(sorted({k.mangled for k in kernels}))
    for k in kernels:
        k.name = names[k.mangled]
        k.failures.clear()
        check(k)
    return kernels


def _mma_cell(k: Kernel) -> str:
    """BMMA count, or for wgmma kernels the BGMMA count and the setmaxnreg requests."""
    bgmma = k.count(r"^BGMMA\..*AND\.POPC")
    if not bgmma:
        return str(k.bmma_and)
    regs = "/".join(str(r) for _, r in k.setmaxnreg)
    return f"BGMMA {bgmma} (setmaxnreg {regs})"


def table(kernels: list[Kernel]) -> str:
    rows = [
        "| source | kernel | arch | regs | spill/local B | static smem B | launch bounds | blocks/SM (regs, static smem) | BMMA / BGMMA AND.POPC | gates |",
        "|---|---|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for k in sorted(kernels, key=lambda k: (k.source, k.name, k.arch)):
        bounds = f"({k.threads}, {k.min_blocks})" if k.min_blocks else (f"({k.threads})" if k.threads else "-")
        gates = "ok" if not k.failures else "FAIL: " + "; ".join(k.failures)
        rows.append(
            f"| {k.source} | `{k.name}` | sm_{k.arch} | {k.regs} | {k.local + k.stack} | {k.shared} | "
            f"{bounds} | {k.occupancy()} | {_mma_cell(k)} | {gates} |"
        )
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--jobs", type=int, default=None, help="parallel nvcc jobs (default: nproc)")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "cuda_static.md"))
    args = ap.parse_args(argv)
    nvcc = find_nvcc()
    kernels = run(tuple(a for a in args.archs.split(",") if a), args.jobs)
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    failed = [k for k in kernels if k.failures]
    text = (
        "# Static SASS gates of the CUDA kernels\n\n"
        f"Written by `python scripts/cuda_static.py` ({version}; flags `{' '.join(NVCC_FLAGS)}`), checked by\n"
        "`tests/cuda_static/test_sass.py`. blocks/SM: resident blocks per SM allowed by registers, static\n"
        "shared memory (+1 KiB reserved per block) and threads, for the block size of `__launch_bounds__`\n"
        "(256 where there is none). Dynamic shared memory is not counted: the MMA kernel's 96 KiB allow\n"
        "1 block on sm_80 and 2 on sm_90a (see `benchmarks/cuda_notes.md`, occupancy). sm_80 code also\n"
        "runs on sm_86/sm_89, so its shared memory per SM counts as 100 KiB; sm_90a cubins already\n"
        "include the reserved 1 KiB in their static shared memory (counted twice here: conservative).\n"
        "The sm_90a wgmma GEMM runs 1 block of 384 threads per SM (its ~193 KiB ring); its sm_80\n"
        "build is a trapping stub marked by 8 KiB of static shared memory (never launched).\n\n"
        f"{len(kernels)} kernels x targets, {len(failed)} breaking a gate.\n\n" + table(kernels) + "\n"
    )
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
