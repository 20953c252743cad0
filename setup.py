"""Build the torch binding over the torch-free kernels in csrc/, as two files in bnn_kernels/:

  libbnn_kernels_ops.so  the kernels and the op registrations (TORCH_LIBRARY / TORCH_LIBRARY_IMPL
                         for CPU and CUDA); links libtorch only, no Python, so a libtorch C++
                         program can load it (see README.md, Deploying)
  _C                     the Python module: build facts only; it links the library above (found
                         beside it through RPATH $ORIGIN), so importing it registers the ops

CPU kernels are always built. CUDA kernels are built when torch itself was
built with CUDA (torch.version.cuda) and a CUDA toolkit is found (CUDA_HOME):
no GPU is needed to build. Environment switches:

  BNN_KERNELS_CUDA=0            build CPU only even when CUDA is available
  BNN_KERNELS_CUDA_ARCHS="80;90a"  SASS targets; PTX of the first is embedded too. Each must be
                                80 or newer (the kernels use sm_80 instructions: cp.async, b1 mma)
  MAX_JOBS                      parallel compile jobs (ninja)
"""

import glob
import os
import re
import shutil
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _sources(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern), recursive=True))


def _find_cuda_home():
    """Sets CUDA_HOME to a real toolkit root (one with include/cuda_runtime.h) before torch
    guesses it: torch takes the parent of the first `nvcc` on PATH, which may be a wrapper
    script (e.g. /usr/local/bin/nvcc) outside the toolkit."""
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    candidates = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
        try:  # a wrapper script: follow the path it execs
            with open(nvcc, "rb") as f:
                head = f.read(4096).decode("utf-8", "replace")
            candidates += [os.path.dirname(os.path.dirname(m)) for m in re.findall(r"(/\S+/bin/nvcc)\b", head)]
        except OSError:
            pass
    candidates.append("/usr/local/cuda")
    for c in candidates:
        if os.path.exists(os.path.join(c, "include", "cuda_runtime.h")) and os.path.exists(
            os.path.join(c, "bin", "nvcc")
        ):
            os.environ["CUDA_HOME"] = c
            return


def _cuda_wanted():
    import torch
    from torch.utils.cpp_extension import CUDA_HOME

    if os.environ.get("BNN_KERNELS_CUDA", "1") == "0":
        return False, "BNN_KERNELS_CUDA=0"
    if torch.version.cuda is None:
        return False, "torch was built without CUDA"
    if CUDA_HOME is None or not os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc")):
        return False, "no CUDA toolkit found (set CUDA_HOME to the folder holding bin/nvcc)"
    return True, f"CUDA {torch.version.cuda}, toolkit {CUDA_HOME}"


def _nvidia_wheel_includes():
    """Headers such as cublas_v2.h and cusparse.h ship inside the nvidia-* wheels torch depends on."""
    dirs = []
    for site in sys.path:
        dirs += glob.glob(os.path.join(site, "nvidia", "*", "include"))
    return sorted(set(d for d in dirs if os.path.isdir(d)))


def _cuda_archs(value):
    """The arch list of BNN_KERNELS_CUDA_ARCHS ("80;90a", commas allowed), each 80 or newer."""
    archs = [a.strip() for a in value.replace(",", ";").split(";") if a.strip()]
    if not archs:
        raise ValueError("BNN_KERNELS_CUDA_ARCHS is empty; give SASS targets such as '80;90a'")
    for a in archs:
        m = re.fullmatch(r"(\d+)[a-z]?", a)
        if not m:
            raise ValueError(f"BNN_KERNELS_CUDA_ARCHS: '{a}' is not an architecture such as 80 or 90a")
        if int(m.group(1)) < 80:
            raise ValueError(
                f"BNN_KERNELS_CUDA_ARCHS: '{a}' is below 80; the CUDA kernels need sm_80 or newer "
                "(cp.async, mma.sync b1): use e.g. '80;90a', or BNN_KERNELS_CUDA=0"
            )
    return archs


def _gencode_flags(archs):
    flags = []
    for i, arch in enumerate(archs):
        code = f"[sm_{arch},compute_{arch}]" if i == 0 else f"sm_{arch}"
        flags.append(f"-gencode=arch=compute_{arch},code={code}")
    return flags


OPS_LIB = "libbnn_kernels_ops.so"
OPS_EXT = "bnn_kernels.libbnn_kernels_ops"


def _version():
    """The version is stated once, in bnn_kernels/_version.py (CMakeLists.txt reads it too)."""
    with open(os.path.join(ROOT, "bnn_kernels", "_version.py")) as f:
        return re.search(r'__version__ = "([^"]+)"', f.read()).group(1)


def _python_module(cxx):
    """bnn_kernels._C: module.cpp alone, linked against the op library (no torch libraries)."""
    from setuptools import Extension

    return Extension(
        "bnn_kernels._C",
        [os.path.join("csrc", "torch", "module.cpp")],
        include_dirs=[os.path.join(ROOT, "csrc")],
        extra_compile_args={"cxx": cxx},
        language="c++",
    )


def _without_python(ext):
    """The op library links libtorch but not libtorch_python: no Python symbols in it."""
    ext.libraries = [lib for lib in ext.libraries if lib != "torch_python"]
    return ext


def extensions():
    _find_cuda_home()
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    # csrc/tests and csrc/bench are the CMake library's own programs (each with a main)
    programs = (os.path.join("csrc", "tests"), os.path.join("csrc", "bench"))
    module = os.path.join("csrc", "torch", "module.cpp")
    kernel_cpu = [s for s in _sources("csrc/**/*.cpp") if not s.startswith(programs) and s != module]
    no_cuda = os.path.join("csrc", "torch", "no_cuda.cpp")
    torch_cuda = [s for s in kernel_cpu if s.startswith(os.path.join("csrc", "torch", "cuda"))]
    cpu_sources = [s for s in kernel_cpu if s not in torch_cuda and s != no_cuda]
    cxx = ["-O3", "-std=c++20", "-fopenmp", "-Wall", "-Wno-unknown-pragmas"]
    # No a * b + c contracted into an FMA (GCC does it by default, also in C++20 mode, where
    # the target has FMA, e.g. AVX-512 functions): float epilogues round like the reference
    # and like the CUDA kernels (__fmul_rn / __fadd_rn), bit for bit.
    cxx.append("-ffp-contract=off")
    if os.environ.get("BNN_KERNELS_EMULATE_AVX512") == "1":
        # The AVX-512 kernels on a portable emulation of their intrinsics (common/avx512.h):
        # a build for testing them on CPUs without AVX-512 (`make test-avx512-emu`), not for use.
        cxx.append("-DBNN_EMULATE_AVX512=1")
        print("bnn_kernels: AVX-512 kernels EMULATED (a test build: slow)")
    include_dirs = [os.path.join(ROOT, "csrc")]
    with_cuda, why = _cuda_wanted()
    print(f"bnn_kernels: CUDA kernels {'ON' if with_cuda else 'OFF'} ({why})")
    if not with_cuda:
        ops = CppExtension(
            OPS_EXT,
            cpu_sources + [no_cuda],
            include_dirs=include_dirs,
            extra_compile_args={"cxx": cxx},
            extra_link_args=["-fopenmp"],
        )
        return [_without_python(ops), _python_module(cxx)]
    archs = _cuda_archs(os.environ.get("BNN_KERNELS_CUDA_ARCHS", "80;90a"))
    nvcc = ["-O3", "-std=c++20", "--expt-relaxed-constexpr", "-lineinfo", "-Xptxas=-warn-spills"]
    nvcc += _gencode_flags(archs)
    if os.environ.get("NVCC_THREADS"):
        nvcc.append(f"--threads={os.environ['NVCC_THREADS']}")
    ops = CUDAExtension(
        OPS_EXT,
        cpu_sources + torch_cuda + _sources("csrc/**/*.cu"),
        include_dirs=include_dirs + _nvidia_wheel_includes(),
        define_macros=[("BNN_WITH_CUDA", "1")],
        extra_compile_args={"cxx": cxx + ["-DBNN_WITH_CUDA=1"], "nvcc": nvcc},
        extra_link_args=["-fopenmp"],
    )
    return [_without_python(ops), _python_module(cxx + ["-DBNN_WITH_CUDA=1"])]


def _build_ext_class():
    from torch.utils.cpp_extension import BuildExtension

    class BuildOpsAndModule(BuildExtension.with_options(use_ninja=True)):
        """Names the op library libbnn_kernels_ops.so (no Python ABI tag: it is not a Python
        module) and links _C against it, wherever this build puts it (in place or build/)."""

        def get_ext_filename(self, ext_name):
            parts = ext_name.split(".")  # called with the full name and with the last part alone
            if parts[-1] == OPS_EXT.split(".")[-1]:
                return os.path.join(*parts[:-1], OPS_LIB)
            return super().get_ext_filename(ext_name)

        def build_extension(self, ext):
            if ext.name == "bnn_kernels._C":
                ops_dir = os.path.dirname(self.get_ext_fullpath(OPS_EXT))
                ext.extra_link_args = [f"-L{ops_dir}", f"-l:{OPS_LIB}", "-Wl,-rpath,$ORIGIN"]
            super().build_extension(ext)

    return BuildOpsAndModule


def main():
    _find_cuda_home()
    setup(
        name="bnn_kernels",
        version=_version(),
        description="Bitwise inference kernels for binary neural networks (XNOR-popcount GEMM, packed conv, bit-serial)",
        packages=find_packages(include=["bnn_kernels", "bnn_kernels.*"]),
        ext_modules=extensions(),
        cmdclass={"build_ext": _build_ext_class()},
        python_requires=">=3.10",
        install_requires=["torch>=2.4", "numpy", "safetensors"],
        extras_require={"examples": ["scikit-learn", "tqdm"]},
        entry_points={"console_scripts": ["bnn-kernels=bnn_kernels.__main__:main"]},
    )


if __name__ == "__main__":
    main()
