#include "safetensors.h"

#include <cctype>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace safetensors {
namespace {

const std::vector<std::pair<std::string, at::ScalarType>> kDtypes = {
    {"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf}, {"BF16", at::kBFloat16},
    {"I64", at::kLong},   {"I32", at::kInt},   {"I16", at::kShort}, {"I8", at::kChar},
    {"U8", at::kByte},    {"BOOL", at::kBool}};

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error("safetensors: " + what); }

// A JSON value of the header: objects, arrays, strings and integers are all it holds.
struct Json {
  enum Kind { Object, Array, String, Number } kind = Number;
  std::map<std::string, Json> object;
  std::vector<Json> array;
  std::string string;
  int64_t number = 0;
};

struct Parser {
  const std::string& s;
  size_t i = 0;

  void skip() { while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i; }
  char peek() { skip(); if (i >= s.size()) fail("truncated header"); return s[i]; }
  void expect(char c) { if (peek() != c) fail(std::string("expected '") + c + "' in header"); ++i; }

  std::string str() {
    expect('"');
    std::string out;
    while (i < s.size() && s[i] != '"') {
      if (s[i] == '\\' && i + 1 < s.size()) ++i;  // keeps the escaped character as is
      out += s[i++];
    }
    if (i >= s.size()) fail("unterminated string in header");
    ++i;
    return out;
  }

  Json value() {
    Json v;
    const char c = peek();
    if (c == '{') {
      v.kind = Json::Object;
      ++i;
      if (peek() == '}') { ++i; return v; }
      do { std::string k = str(); expect(':'); v.object[k] = value(); } while (peek() == ',' && ++i);
      expect('}');
    } else if (c == '[') {
      v.kind = Json::Array;
      ++i;
      if (peek() == ']') { ++i; return v; }
      do v.array.push_back(value()); while (peek() == ',' && ++i);
      expect(']');
    } else if (c == '"') {
      v.kind = Json::String;
      v.string = str();
    } else {
      size_t used = 0;
      v.number = std::stoll(s.substr(i, 32), &used);
      i += used;
    }
    return v;
  }
};

const Json& field(const Json& obj, const std::string& key, const std::string& name) {
  auto it = obj.object.find(key);
  if (it == obj.object.end()) fail("tensor '" + name + "' has no " + key);
  return it->second;
}

at::ScalarType dtype_of(const std::string& code, const std::string& name) {
  for (const auto& [c, t] : kDtypes)
    if (c == code) return t;
  fail("tensor '" + name + "' has unsupported dtype " + code);
}

std::string code_of(at::ScalarType t) {
  for (const auto& [c, st] : kDtypes)
    if (st == t) return c;
  fail(std::string("cannot write dtype ") + c10::toString(t));
}

}  // namespace

std::map<std::string, at::Tensor> load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot open " + path);
  std::stringstream buf;
  buf << f.rdbuf();
  const std::string bytes = buf.str();
  uint64_t n = 0;
  if (bytes.size() < 8) fail(path + " is too short");
  std::memcpy(&n, bytes.data(), 8);  // little-endian hosts only (x86-64, aarch64)
  if (n > bytes.size() - 8) fail(path + ": header length past the end of the file");
  const std::string header = bytes.substr(8, n);
  Parser p{header};
  const Json root = p.value();
  if (root.kind != Json::Object) fail(path + ": header is not a JSON object");
  const char* data = bytes.data() + 8 + n;
  const uint64_t data_size = bytes.size() - 8 - n;
  std::map<std::string, at::Tensor> out;
  for (const auto& [name, meta] : root.object) {
    if (name == "__metadata__") continue;
    const at::ScalarType st = dtype_of(field(meta, "dtype", name).string, name);
    std::vector<int64_t> shape;
    for (const Json& d : field(meta, "shape", name).array) shape.push_back(d.number);
    const auto& off = field(meta, "data_offsets", name).array;
    if (off.size() != 2 || off[0].number < 0 || off[1].number < off[0].number ||
        static_cast<uint64_t>(off[1].number) > data_size)
      fail("tensor '" + name + "' has bad data_offsets");
    at::Tensor t = at::empty(shape, at::TensorOptions().dtype(st));
    if (static_cast<int64_t>(t.nbytes()) != off[1].number - off[0].number)
      fail("tensor '" + name + "': data size does not match its shape and dtype");
    std::memcpy(t.data_ptr(), data + off[0].number, t.nbytes());
    out[name] = t;
  }
  return out;
}

void save(const std::string& path, const std::map<std::string, at::Tensor>& tensors) {
  std::ostringstream header;
  std::vector<at::Tensor> data;
  int64_t offset = 0;
  header << "{";
  for (const auto& [name, tensor] : tensors) {
    at::Tensor t = tensor.to(at::kCPU).contiguous();
    header << (data.empty() ? "" : ",") << "\"" << name << "\":{\"dtype\":\"" << code_of(t.scalar_type())
           << "\",\"shape\":[";
    for (int64_t d = 0; d < t.dim(); ++d) header << (d ? "," : "") << t.size(d);
    header << "],\"data_offsets\":[" << offset << "," << offset + static_cast<int64_t>(t.nbytes()) << "]}";
    offset += static_cast<int64_t>(t.nbytes());
    data.push_back(t);
  }
  header << "}";
  std::string h = header.str();
  h.append((8 - h.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  const uint64_t n = h.size();
  std::ofstream f(path, std::ios::binary);
  if (!f) fail("cannot write " + path);
  f.write(reinterpret_cast<const char*>(&n), 8);
  f.write(h.data(), static_cast<std::streamsize>(h.size()));
  for (const at::Tensor& t : data) f.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  if (!f) fail("error writing " + path);
}

}  // namespace safetensors
