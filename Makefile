# Quickstart targets: `make demo` and `make test` each set everything up on a fresh machine
# (Python 3.10+, no GPU needed) and then run. Re-running reuses the venv and the build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CUDA kernels are compiled when a CUDA toolkit is found (no GPU needed); BNN_KERNELS_CUDA=0 skips them.
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(firstword $(wildcard /usr/local/cuda/bin/nvcc $(shell command -v nvcc 2>/dev/null))))
export CUDA_HOME
MAX_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
export MAX_JOBS

.PHONY: setup build demo test test-python test-cpp test-avx512-emu test-deploy bench lint format clean

$(VENV)/.deps: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

setup: $(VENV)/.deps

# In-place build (ninja, incremental); a .pth file puts this checkout on the venv's path, so
# `import bnn_kernels` works from any folder (like an editable install, without a rebuild).
build: setup
	$(PY) setup.py --quiet build_ext --inplace
	$(PY) -c "import site; open(site.getsitepackages()[0] + '/bnn_kernels-checkout.pth', 'w').write('$(CURDIR)\n')"

demo: build
	$(PY) examples/demo.py

test-python: build
	$(PY) -m pytest -q tests

test-cpp:
	cmake -S . -B build-cmake -DCMAKE_BUILD_TYPE=Release > /dev/null
	cmake --build build-cmake -j $(MAX_JOBS)
	cd build-cmake && ctest --output-on-failure

# The AVX-512 kernels on a CPU without AVX-512: the op tests against a copy of the tree built
# with their intrinsics emulated (scripts/test_avx512_emu.sh; nothing to do on an AVX-512 CPU).
test-avx512-emu: setup
	scripts/test_avx512_emu.sh $(PY)

test: test-python test-cpp test-avx512-emu

# Deployment without Python (README, Deploying): libbnn_kernels_ops.so from CMake against the
# wheel's libtorch, the C++ runner (examples/cpp), and a check that the runner reproduces
# Python on exported models (integer ops, the digits network, Bi-Real-18). Run by CI.
TORCH_CMAKE = $(shell $(PY) -c "import torch; print(torch.utils.cmake_prefix_path)" 2>/dev/null)
test-deploy: build
	cmake -S . -B build-cmake-torch -DBNN_WITH_TORCH=ON -DBNN_BUILD_TESTS=OFF -DCMAKE_PREFIX_PATH="$(TORCH_CMAKE)" > /dev/null
	cmake --build build-cmake-torch -j $(MAX_JOBS) --target bnn_kernels_ops
	cmake -S examples/cpp -B build-runner -DCMAKE_PREFIX_PATH="$(TORCH_CMAKE)" > /dev/null
	cmake --build build-runner -j $(MAX_JOBS)
	$(PY) examples/cpp/check_runner.py --runner build-runner/bnn_runner --ops-lib build-cmake-torch/libbnn_kernels_ops.so

# The benchmark suite (bnn_kernels/bench) on the CPU; BENCH_ARGS adds options, e.g. BENCH_ARGS="--threads 2 --out bench_out".
BENCH_SUITES ?= gemm conv linear bitserial peak
bench: build
	$(PY) -m bnn_kernels bench $(BENCH_SUITES) --device cpu $(BENCH_ARGS)

# Lint: ruff's F (pyflakes) and I (import order) rules, then ruff format and clang-format in
# check mode. FORMAT_CHECK=0 checks the rules only. `make format` rewrites the files in place.
CXX_SOURCES = $(shell find csrc tests/cuda_emu benchmarks/micro -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' | sort)
FORMAT_CHECK ?= 1
lint: setup
	$(VENV)/bin/ruff check .
ifneq ($(FORMAT_CHECK),0)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/clang-format --dry-run -Werror $(CXX_SOURCES)
endif

format: setup
	$(VENV)/bin/ruff check --select I --fix .
	$(VENV)/bin/ruff format .
	$(VENV)/bin/clang-format -i $(CXX_SOURCES)

clean:
	rm -rf build build-cmake build-cmake-torch build-runner bnn_kernels/*.so *.egg-info

# The CUDA kernels run under the sanitizer-grade emulator of tests/cuda_emu (no GPU needed;
# `make test` runs it too, as part of the Python test suite). About 2 minutes on 2 cores.
.PHONY: test-cuda-emu
test-cuda-emu: setup
	$(PY) -m pytest -q tests/cuda_emu
