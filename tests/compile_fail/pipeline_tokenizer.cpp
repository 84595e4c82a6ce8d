// expect: a tokenizer needs `std::string decode\(std::span<const index_t>\) const`
// A tokenizer that can only encode is rejected (text reward sources decode completions).
#include <posttrain/pipeline/tokenizer.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pt = posttrain;
namespace pp = posttrain::pipeline;

struct my_tokenizer {
  std::vector<pt::index_t> encode(std::string_view) const { return {}; }
#ifndef POSTTRAIN_COMPILE_FAIL
  std::string decode(std::span<const pt::index_t>) const { return {}; }
#endif
  pt::index_t vocab_size() const { return 256; }
};

static_assert(pp::check_tokenizer<my_tokenizer>());
int main() {}
