#pragma once
// A small reader and writer of the safetensors format (the Hugging Face weight files):
//   [u64 little-endian header length L][L bytes of JSON][raw tensor bytes]
//   JSON: {"<name>": {"dtype": "F32", "shape": [r, c], "data_offsets": [begin, end]}, ...,
//          "__metadata__": {"format": "pt", ...}}   offsets relative to the end of the header.
// Reading validates the whole header first (every tensor's dtype is known, its byte range lies in
// the file, and its size is shape × dtype size) and names the offending tensor otherwise; values
// are converted to the caller's scalar type from F32, F64, BF16 or F16. Writing is atomic: the
// file is written to a temporary name beside the target, flushed and fsync'ed, then renamed over
// it, so a crash never leaves a half-written checkpoint under the real name.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <posttrain/core/validate.hpp>

namespace reference_model {

using posttrain::index_t;

enum class st_dtype { f32, f64, bf16, f16 };

inline std::size_t dtype_size(st_dtype d) {
  switch (d) {
    case st_dtype::f32: return 4;
    case st_dtype::f64: return 8;
    default: return 2;
  }
}
inline const char* dtype_name(st_dtype d) {
  switch (d) {
    case st_dtype::f32: return "F32";
    case st_dtype::f64: return "F64";
    case st_dtype::bf16: return "BF16";
    default: return "F16";
  }
}

struct st_tensor {
  st_dtype dtype = st_dtype::f32;
  std::vector<index_t> shape;
  std::size_t begin = 0, end = 0;  // byte range inside the data section
  std::size_t numel() const {
    std::size_t n = 1;
    for (index_t e : shape) n *= static_cast<std::size_t>(e);
    return n;
  }
};

inline float bf16_to_float(std::uint16_t b) {
  const std::uint32_t u = std::uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float f16_to_float(std::uint16_t h) {
  const int sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  float v;
  if (exp == 0)
    v = std::ldexp(float(mant), -24);  // zero and subnormals
  else if (exp == 31)
    v = mant ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  else
    v = std::ldexp(float(mant | 0x400), exp - 25);
  return sign ? -v : v;
}
inline std::uint16_t float_to_bf16(float f) {  // round to nearest even, NaN kept NaN
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if (std::isnan(f)) return 0x7fc0;
  u += 0x7fff + ((u >> 16) & 1);
  return std::uint16_t(u >> 16);
}

// One parsed file: the validated tensor table and the raw data section.
class safetensors_file {
 public:
  // Reads and validates `path`; throws posttrain::error naming the file and tensor on any defect.
  explicit safetensors_file(const std::filesystem::path& path) : path_(path.string()) {
    constexpr const char* where = "reference_model::safetensors";
    using posttrain::expect;
    std::ifstream in(path, std::ios::binary);
    expect(in.good(), where, "cannot open ", path_);
    in.seekg(0, std::ios::end);
    const std::size_t file_size = static_cast<std::size_t>(in.tellg());
    in.seekg(0);
    expect(file_size >= 8, where, path_, " is ", file_size,
           " bytes, shorter than the 8-byte header length (truncated?)");
    unsigned char len_bytes[8];
    in.read(reinterpret_cast<char*>(len_bytes), 8);
    std::uint64_t hlen = 0;
    for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | len_bytes[i];
    expect(hlen <= file_size - 8, where, path_, ": header length ", hlen, " exceeds the file (",
           file_size, " bytes; truncated?)");
    std::string header(hlen, '\0');
    in.read(header.data(), static_cast<std::streamsize>(hlen));
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(header);
    } catch (const std::exception& e) {
      posttrain::detail::fail(where, path_, ": header is not valid JSON (", e.what(), ")");
    }
    expect(j.is_object(), where, path_, ": header is not a JSON object");
    const std::size_t data_size = file_size - 8 - hlen;
    std::string current;
    try {
    for (auto it = j.begin(); it != j.end(); ++it) {
      current = it.key();
      if (it.key() == "__metadata__") {
        if (it->is_object())
          for (auto m = it->begin(); m != it->end(); ++m)
            if (m->is_string()) metadata_[m.key()] = m->get<std::string>();
        continue;
      }
      const std::string& name = it.key();
      const nlohmann::json& e = *it;
      expect(e.is_object() && e.contains("dtype") && e.contains("shape") &&
                 e.contains("data_offsets"),
             where, path_, ": tensor ", name, " lacks dtype, shape or data_offsets");
      st_tensor t;
      const std::string dt = e["dtype"].get<std::string>();
      if (dt == "F32") t.dtype = st_dtype::f32;
      else if (dt == "F64") t.dtype = st_dtype::f64;
      else if (dt == "BF16") t.dtype = st_dtype::bf16;
      else if (dt == "F16") t.dtype = st_dtype::f16;
      else
        posttrain::detail::fail(where, path_, ": tensor ", name, " has dtype ", dt,
                                ", expected F32, F64, BF16 or F16");
      for (const auto& x : e["shape"]) {
        expect(x.is_number_integer() && x.get<index_t>() >= 0, where, path_, ": tensor ", name,
               " has a negative or non-integer extent");
        t.shape.push_back(x.get<index_t>());
      }
      const auto& off = e["data_offsets"];
      expect(off.is_array() && off.size() == 2, where, path_, ": tensor ", name,
             " data_offsets is not [begin, end]");
      t.begin = off[0].get<std::size_t>();
      t.end = off[1].get<std::size_t>();
      expect(t.begin <= t.end && t.end <= data_size, where, path_, ": tensor ", name,
             " spans bytes [", t.begin, ", ", t.end, ") of a data section of ", data_size,
             " bytes (truncated file?)");
      expect(t.end - t.begin == t.numel() * dtype_size(t.dtype), where, path_, ": tensor ", name,
             " has ", t.end - t.begin, " bytes, expected ", t.numel() * dtype_size(t.dtype),
             " for its shape and dtype ", dt);
      tensors_[name] = std::move(t);
    }
    } catch (const nlohmann::json::exception& e) {
      // A field of the wrong JSON type (a string offset, a negative extent, ...).
      posttrain::detail::fail(where, path_, ": tensor ", current, " has a malformed entry (",
                              e.what(), ")");
    }
    data_.resize(data_size);
    in.read(reinterpret_cast<char*>(data_.data()), static_cast<std::streamsize>(data_size));
    expect(static_cast<std::size_t>(in.gcount()) == data_size, where, path_,
           ": short read of the data section");
  }

  const std::map<std::string, st_tensor>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return path_; }

  // Converts tensor `name` into `out` (numel elements).
  template <class S>
  void read(const std::string& name, std::span<S> out) const {
    constexpr const char* where = "reference_model::safetensors";
    auto it = tensors_.find(name);
    posttrain::expect(it != tensors_.end(), where, path_, " has no tensor ", name);
    const st_tensor& t = it->second;
    posttrain::expect(out.size() == t.numel(), where, path_, ": tensor ", name, " has ",
                      t.numel(), " elements, expected ", out.size());
    const unsigned char* p = data_.data() + t.begin;
    for (std::size_t i = 0; i < out.size(); ++i) {
      switch (t.dtype) {
        case st_dtype::f32: { float f; std::memcpy(&f, p + 4 * i, 4); out[i] = S(f); break; }
        case st_dtype::f64: { double f; std::memcpy(&f, p + 8 * i, 8); out[i] = S(f); break; }
        case st_dtype::bf16: {
          std::uint16_t b; std::memcpy(&b, p + 2 * i, 2); out[i] = S(bf16_to_float(b)); break;
        }
        case st_dtype::f16: {
          std::uint16_t b; std::memcpy(&b, p + 2 * i, 2); out[i] = S(f16_to_float(b)); break;
        }
      }
    }
  }

 private:
  std::string path_;
  std::map<std::string, st_tensor> tensors_;
  std::map<std::string, std::string> metadata_;
  std::vector<unsigned char> data_;
};

// One tensor to write: its name, shape and values (converted to `dtype` on write).
template <class S>
struct st_write_entry {
  std::string name;
  std::vector<index_t> shape;
  std::span<const S> values;
};

// Writes the tensors atomically (temporary file + fsync + rename) in F32 or BF16.
template <class S>
void write_safetensors(const std::filesystem::path& path,
                       const std::vector<st_write_entry<S>>& entries,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}},
                       st_dtype dtype = st_dtype::f32) {
  constexpr const char* where = "reference_model::write_safetensors";
  using posttrain::expect;
  expect(dtype == st_dtype::f32 || dtype == st_dtype::bf16, where,
         "dtype must be F32 or BF16, got ", dtype_name(dtype));
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  std::size_t offset = 0;
  for (const auto& e : entries) {
    std::size_t n = 1;
    for (index_t x : e.shape) n *= static_cast<std::size_t>(x);
    expect(n == e.values.size(), where, "tensor ", e.name, " has ", e.values.size(),
           " values, expected ", n, " for its shape");
    expect(!h.contains(e.name), where, "tensor ", e.name, " is given twice");
    const std::size_t bytes = n * dtype_size(dtype);
    h[e.name] = {{"dtype", dtype_name(dtype)}, {"shape", e.shape},
                 {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');  // data section 8-byte aligned, as safetensors
  const std::filesystem::path tmp =
      path.string() + ".tmp." + std::to_string(static_cast<long>(::getpid()));
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  expect(f != nullptr, where, "cannot create ", tmp.string());
  bool ok = true;
  unsigned char len[8];
  std::uint64_t hl = header.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((hl >> (8 * i)) & 0xff);
  ok = ok && std::fwrite(len, 1, 8, f) == 8;
  ok = ok && std::fwrite(header.data(), 1, header.size(), f) == header.size();
  std::vector<unsigned char> buf;
  for (const auto& e : entries) {
    buf.resize(e.values.size() * dtype_size(dtype));
    for (std::size_t i = 0; i < e.values.size(); ++i) {
      const float v = static_cast<float>(e.values[i]);
      if (dtype == st_dtype::f32) {
        std::memcpy(buf.data() + 4 * i, &v, 4);
      } else {
        const std::uint16_t b = float_to_bf16(v);
        std::memcpy(buf.data() + 2 * i, &b, 2);
      }
    }
    ok = ok && std::fwrite(buf.data(), 1, buf.size(), f) == buf.size();
  }
  ok = ok && std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::filesystem::remove(tmp);
    posttrain::detail::fail(where, "writing ", tmp.string(), " failed (disk full?)");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    posttrain::detail::fail(where, "cannot rename ", tmp.string(), " to ", path.string(), ": ",
                            ec.message());
  }
}

}  // namespace reference_model
