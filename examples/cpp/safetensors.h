// Minimal safetensors reader and writer for the runner (https://github.com/huggingface/safetensors):
// 8 bytes little-endian header length N, N bytes of JSON
// {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}, then the raw
// little-endian data. No pickle, no code: a file holds named tensors only.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <string>

namespace safetensors {

// All tensors of a file (CPU, contiguous), by name. Throws std::runtime_error on a malformed file.
std::map<std::string, at::Tensor> load(const std::string& path);

// Writes tensors (any device or layout: they are copied to contiguous CPU memory first).
void save(const std::string& path, const std::map<std::string, at::Tensor>& tensors);

}  // namespace safetensors
