// Replays every file of tests/fuzz/corpus/<target>/ (the seeds, and every reproducer a fuzzing
// run found, committed there as crash-*/timeout-*/slow-unit-*) through the fuzz targets, in the
// normal build: a fixed finding stays fixed without clang or libFuzzer.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/fuzz.h"

POSTTRAIN_FUZZ_TARGET(math);
POSTTRAIN_FUZZ_TARGET(ifeval_label);
POSTTRAIN_FUZZ_TARGET(ifeval_response);
POSTTRAIN_FUZZ_TARGET(text);

namespace {

using target = int (*)(const std::uint8_t*, std::size_t);

std::size_t replay(const std::string& name, target run) {
  const std::filesystem::path dir = std::filesystem::path(POSTTRAIN_FUZZ_CORPUS) / name;
  std::size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // An exact-size heap copy (a std::vector of size 0 has no buffer: give it one byte).
    std::vector<std::uint8_t> exact(bytes.begin(), bytes.end());
    exact.shrink_to_fit();
    SCOPED_TRACE(entry.path().string());
    run(exact.data(), exact.size());
    ++files;
  }
  return files;
}

}  // namespace

// Each corpus must exist and hold its seeds (an empty directory would make the test vacuous).
TEST(FuzzReplay, Math) { EXPECT_GT(replay("math", posttrain_fuzz_math), 50u); }
TEST(FuzzReplay, IfevalLabel) { EXPECT_GT(replay("ifeval_label", posttrain_fuzz_ifeval_label), 50u); }
TEST(FuzzReplay, IfevalResponse) { EXPECT_GT(replay("ifeval_response", posttrain_fuzz_ifeval_response), 50u); }
TEST(FuzzReplay, Text) { EXPECT_GT(replay("text", posttrain_fuzz_text), 50u); }
