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

.PHONY: setup build demo test test-python test-cpp bench clean

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

test: test-python test-cpp

bench: build
	$(PY) benchmarks/bench_cpu.py

clean:
	rm -rf build build-cmake bnn_kernels/*.so *.egg-info

# The CUDA kernels run under the sanitizer-grade emulator of tests/cuda_emu (no GPU needed;
# `make test` runs it too, as part of the Python test suite). About 2 minutes on 2 cores.
.PHONY: test-cuda-emu
test-cuda-emu: setup
	$(PY) -m pytest -q tests/cuda_emu
