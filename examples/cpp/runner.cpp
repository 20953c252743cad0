// Runs a .pt2 package written by bnn_kernels.export, without Python:
//
//   bnn_runner OPS_LIB MODEL.pt2 INPUT.safetensors OUTPUT.safetensors [--repeat N] [--threads T]
//
// OPS_LIB is libbnn_kernels_ops.so (from `make build` beside bnn_kernels/__init__.py, or from
// CMake with -DBNN_WITH_TORCH=ON). Loading it registers torch.ops.bnn_kernels.*, which the
// package calls through AOTInductor's proxy executor. INPUT holds the forward's arguments as
// tensors named input_0, input_1, ...; OUTPUT receives output_0, output_1, ... (safetensors).
// --repeat N times N more runs and prints their median latency.
#include <dlfcn.h>

#include <ATen/Parallel.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "safetensors.h"

namespace {

struct Args {
  std::string ops_lib, model, input, output;
  int repeat = 0, threads = 0;
};

Args parse(int argc, char** argv) {
  Args a;
  std::vector<std::string> pos;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    if ((s == "--repeat" || s == "--threads") && i + 1 < argc) {
      (s == "--repeat" ? a.repeat : a.threads) = std::atoi(argv[++i]);
    } else if (s.rfind("--", 0) == 0) {
      throw std::invalid_argument("unknown option " + s);
    } else {
      pos.push_back(s);
    }
  }
  if (pos.size() != 4)
    throw std::invalid_argument(
        "usage: bnn_runner OPS_LIB MODEL.pt2 INPUT.safetensors OUTPUT.safetensors [--repeat N] [--threads T]");
  a.ops_lib = pos[0], a.model = pos[1], a.input = pos[2], a.output = pos[3];
  return a;
}

std::vector<at::Tensor> read_inputs(const std::string& path) {
  auto tensors = safetensors::load(path);
  std::vector<at::Tensor> inputs;
  for (size_t i = 0;; ++i) {
    auto it = tensors.find("input_" + std::to_string(i));
    if (it == tensors.end()) break;
    inputs.push_back(it->second);
  }
  if (inputs.empty() || inputs.size() != tensors.size())
    throw std::invalid_argument(path + ": expected tensors named input_0, input_1, ... and nothing else");
  return inputs;
}

double median_ms(torch::inductor::AOTIModelPackageLoader& loader, const std::vector<at::Tensor>& inputs, int n) {
  std::vector<double> ms;
  for (int i = 0; i < n; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    loader.run(inputs);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args args = parse(argc, argv);
    if (args.threads > 0) at::set_num_threads(args.threads);
    if (dlopen(args.ops_lib.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
      std::fprintf(stderr, "cannot load the op library %s: %s\n", args.ops_lib.c_str(), dlerror());
      return 2;
    }
    torch::inductor::AOTIModelPackageLoader loader(args.model);
    const std::vector<at::Tensor> inputs = read_inputs(args.input);
    const std::vector<at::Tensor> outputs = loader.run(inputs);
    std::map<std::string, at::Tensor> named;
    for (size_t i = 0; i < outputs.size(); ++i) named["output_" + std::to_string(i)] = outputs[i];
    safetensors::save(args.output, named);
    std::printf("bnn_runner: %zu input(s), %zu output(s) written to %s\n", inputs.size(), outputs.size(),
                args.output.c_str());
    if (args.repeat > 0) {
      median_ms(loader, inputs, 3);  // warm-up
      std::printf("bnn_runner: median latency %.3f ms over %d runs, batch %lld, %d threads\n",
                  median_ms(loader, inputs, args.repeat), args.repeat, static_cast<long long>(inputs[0].size(0)),
                  at::get_num_threads());
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bnn_runner: %s\n", e.what());
    return 1;
  }
}
