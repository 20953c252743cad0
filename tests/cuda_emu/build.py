"""Builds the emulation test binary: every csrc/**/*_cuda.cu (rewritten by rewrite.py) and the
test kernels compiled as host C++ with the emulator force-included and every memory access
instrumented (-fsanitize=kernel-address with call-only hooks, implemented by emu_memory.cpp),
plus gcov counters for line coverage; the emulator runtime, the test drivers and the CPU
kernels (the reference) compiled plainly.

Usage: build.py OUT_DIR [--csrc DIR]   (prints the binary's path)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import hashlib
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CUDA_HOME = os.environ.get("CUDA_HOME") or "/usr/local/cuda"
sys.path.insert(0, HERE)
import rewrite  # noqa: E402

INSTRUMENT = [
    "-fsanitize=kernel-address",
    "--param",
    "asan-instrumentation-with-call-threshold=0",
    "--param",
    "asan-stack=0",
    "--param",
    "asan-globals=1",
    "--coverage",
    "-fsanitize=alignment",
    "-ftrivial-auto-var-init=pattern",
]  # uninitialized locals hold a pattern, not a lucky 0
# Lowered grid limits and chunk budgets (see common/cuda_common.cuh): small shapes then take
# every slicing path, chunk loop and multi-iteration grid-stride loop; the emulated devices
# enforce the same gridDim.y / .z limit.
EMU_DEFINES = [
    "-DBNN_CUDA_EMULATION",
    "-DBNN_CUDA_MAX_GRID_YZ=17",
    "-DBNN_CUDA_MAX_STRIDE_BLOCKS=3",
    "-DBNN_CONV_CHUNK_WORDS=64",
    "-DBNN_BITSERIAL_CHUNK_WORDS=24000",
]
# The project's float flags (setup.py, CMakeLists.txt): no FMA contraction on the CPU side, and
# none of the emulated __fmul_rn / __fadd_rn either (nvcc never fuses those).
FP = ["-ffp-contract=off"]
RUNTIME = ["emu_sched.cpp", "emu_memory.cpp", "emu_ptx.cpp", "emu_mbarrier.cpp", "emu_tma.cpp", "emu_wgmma.cpp"]
DRIVERS = ["test_main.cpp", "test_ops.cpp", "test_layout.cpp", "test_detectors.cpp", "test_code_paths.cpp"]
DRIVERS += ["test_wconv.cpp"]  # binary_weight_conv2d (family "wconv")
TEST_KERNELS = ["test_kernels.cu"]
# The emulation suite: family -> (device, seed) runs; device 0 sm_80, 1 sm_90, 2 sm_75 (no mma).
SUITE = {
    "layout": [(0, 1)],
    "pack": [(0, 1), (1, 2)],
    "gemm": [(0, 1), (0, 2), (1, 3), (2, 4)],
    "conv": [(0, 1), (2, 2)],
    "bitserial": [(0, 1), (1, 2), (2, 3)],
    "linear": [(0, 1), (1, 2)],
    "wconv": [(0, 1), (1, 2)],
    "epilogue": [(0, 1), (1, 2)],
}
# The GEMM path by the code the driver loaded (emu_test fallback:PATH --device D --code C):
# (device, code "PTX,BIN" or "none" or None for the device's own, path Auto and Mma must take).
FALLBACK = [
    (1, "75,90", "popc"),  # compute_75 PTX JIT-compiled on sm_90: the MMA kernel would trap
    (2, "75,75", "popc"),  # sm_75 SASS on a T4
    (0, "80,80", "mma"),  # sm_80 SASS (A100, and sm_86 / sm_89)
    (1, "80,90", "mma"),  # compute_80 PTX JIT-compiled on a newer GPU
    (1, "90,90", "mma"),  # sm_90a SASS
    (1, "none", "popc"),  # no image for the device at all
    (2, None, "popc"),  # the sm_75 device's own code
    (1, None, "mma"),  # the sm_90 device's own code
]
# The emulator's own sm_90a tests: a TMA + mbarrier + wgmma GEMM, probes and one kernel per rule.
DRIVERS += ["test_sm90.cpp"]
# The fused epilogue kernel against the CPU epilogue (test_fused.cpp).
DRIVERS += ["test_fused.cpp"]
SUITE["fused"] = [(0, 1), (1, 2)]
TEST_KERNELS += ["test_sm90_kernels.cu"]
SUITE["sm90"] = [(1, 1), (1, 2), (1, 3)]
# csrc's sm_90a GEMM (GemmPath::Wgmma) on the sm_90 device; WGMMA_LATE: extra runs in which every
# wgmma runs at its covering wait_group (emu_test --wgmma-late 1).
DRIVERS += ["test_wgmma.cpp"]
SUITE["wgmma"] = [(1, 1), (1, 2), (1, 3)]
WGMMA_LATE = [(1, 4)]
# The path a forced Wgmma takes by the loaded code (emu_test wgmma-fallback:PATH): sm_90a SASS on
# the sm_90 device only; mma.sync elsewhere, popc without b1 mma code.
WGMMA_FALLBACK = [
    (1, None, "wgmma"),  # the sm_90 device's own (sm_90a) code
    (1, "80,90", "mma"),  # compute_80 PTX JIT-compiled on Hopper: no wgmma in it
    (0, None, "mma"),  # sm_80: no wgmma
    (2, None, "popc"),  # sm_75: neither
    (1, "none", "popc"),  # no image for the device
]


def fallback_args(device: int, code: str | None, path: str) -> list[str]:
    return [f"fallback:{path}", "--device", str(device)] + (["--code", code] if code else [])


def _accepted(flag: str) -> bool:
    """Whether g++ takes `flag` (-ftrivial-auto-var-init needs GCC 12)."""
    r = subprocess.run(["g++", flag, "-x", "c++", "-fsyntax-only", "-"], input="", capture_output=True, text=True)
    return r.returncode == 0


def cuda_sources(csrc: str) -> list[str]:
    return sorted(glob.glob(os.path.join(csrc, "**", "*_cuda.cu"), recursive=True))


def _units(out: str, csrc: str) -> list[tuple[list[str], str]]:
    """(compile command, object) for every translation unit: the rewritten .cu files and test
    kernels (instrumented), the emulator runtime and drivers, the CPU kernels (plain)."""
    instrument = [f for f in INSTRUMENT if not f.startswith("-ftrivial") or _accepted(f)]
    base = ["g++", "-std=c++20", "-w", "-g0", f"-I{csrc}", f"-I{HERE}", f"-I{CUDA_HOME}/include"]
    emu_h = ["-include", os.path.join(HERE, "emu.h")]
    units = []
    for cu in cuda_sources(csrc) + [os.path.join(HERE, k) for k in TEST_KERNELS]:
        name = os.path.splitext(os.path.relpath(cu, ROOT if cu.startswith(ROOT) else os.path.dirname(csrc)))[0]
        dst = os.path.join(out, name.replace(os.sep, "_").replace(".", "_") + "_emu.cpp")
        with open(cu) as f:
            text = rewrite.rewrite(f.read(), os.path.abspath(cu))
        with open(dst, "w") as f:
            f.write(text)
        obj = dst[:-4] + ".o"
        units.append(([*base, "-O1", *FP, *EMU_DEFINES, *emu_h, *instrument, "-c", dst, "-o", obj], obj))
    for src in RUNTIME + DRIVERS:
        obj = os.path.join(out, os.path.splitext(src)[0] + ".o")
        units.append(([*base, "-O2", *EMU_DEFINES, *emu_h, "-c", os.path.join(HERE, src), "-o", obj], obj))
    for src in sorted(glob.glob(os.path.join(csrc, "*", "*.cpp"))):
        if os.path.basename(os.path.dirname(src)) in ("torch", "tests", "bench"):
            continue
        obj = os.path.join(out, "cpu_" + os.path.basename(src)[:-4] + ".o")
        units.append(([*base, "-O2", *FP, "-fopenmp", "-c", src, "-o", obj], obj))
    return units


def _headers_digest(csrc: str) -> bytes:
    """Hash of every header a unit may include (an object is reused only when they are unchanged)."""
    headers = hashlib.sha1()
    for h in sorted(
        glob.glob(os.path.join(csrc, "**", "*.h"), recursive=True)
        + glob.glob(os.path.join(csrc, "**", "*.cuh"), recursive=True)
        + glob.glob(os.path.join(HERE, "*.h"))
    ):
        with open(h, "rb") as f:
            headers.update(h.encode() + f.read())
    return headers.digest()


def _compile(unit: tuple[list[str], str], headers: bytes) -> str:
    """Compiles one unit unless its object is current (same command, source and headers)."""
    cmd, obj = unit
    key = hashlib.sha1(headers + " ".join(cmd).encode())
    with open(cmd[cmd.index("-c") + 1], "rb") as f:
        key.update(f.read())
    stamp = obj + ".key"
    if os.path.exists(obj) and os.path.exists(stamp) and open(stamp).read() == key.hexdigest():
        return obj
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"compile failed: {' '.join(cmd)}\n{r.stderr[-4000:]}")
    with open(stamp, "w") as f:
        f.write(key.hexdigest())
    return obj


def build(out: str, csrc: str = os.path.join(ROOT, "csrc"), jobs: int | None = None) -> str:
    os.makedirs(out, exist_ok=True)
    units, headers = _units(out, csrc), _headers_digest(csrc)
    jobs = jobs or int(os.environ.get("MAX_JOBS", "0")) or (os.cpu_count() or 2)
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as ex:
        objs = list(ex.map(lambda u: _compile(u, headers), units))
    exe = os.path.join(out, "emu_test")
    r = subprocess.run(["g++", "-fopenmp", "--coverage", *objs, "-o", exe], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError("link failed:\n" + r.stderr[-4000:])
    return exe


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--csrc", default=os.path.join(ROOT, "csrc"))
    args = ap.parse_args()
    print(build(args.out, args.csrc))
