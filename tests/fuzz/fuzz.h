#pragma once
// One libFuzzer target per file (tests/fuzz/<name>.cpp). Built as a fuzzer (clang
// -fsanitize=fuzzer, POSTTRAIN_FUZZER defined) the entry point is LLVMFuzzerTestOneInput; in the
// replay test (tests/fuzz/replay.cpp, every build) it is posttrain_fuzz_<name>, so one binary
// replays every corpus file of every target.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#ifdef POSTTRAIN_FUZZER
#define POSTTRAIN_FUZZ_TARGET(name) extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
#else
#define POSTTRAIN_FUZZ_TARGET(name) int posttrain_fuzz_##name(const std::uint8_t* data, std::size_t size)
#endif

namespace fuzz {

// Splits the input at its first NUL byte: (prediction, label). No NUL: the label is empty.
inline std::pair<std::string_view, std::string_view> split(const std::uint8_t* data, std::size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  const std::size_t nul = all.find('\0');
  if (nul == std::string_view::npos) return {all, {}};
  return {all.substr(0, nul), all.substr(nul + 1)};
}

// A score must be a number in [0, 1]; anything else is a finding.
inline void check_score(double s) {
  if (!(s >= 0.0 && s <= 1.0)) __builtin_trap();
}

}  // namespace fuzz
