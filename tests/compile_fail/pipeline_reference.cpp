// expect: a reference model needs `logprobs\(const pipeline::token_sequences&, std::span<scalar_type> lp\)`
// A user reference model that names its method differently is rejected with one sentence.
#include <posttrain/pipeline/reference.hpp>
#include <span>

namespace pp = posttrain::pipeline;

struct my_reference {
  static constexpr bool enabled = true;
  using scalar_type = double;
#ifdef POSTTRAIN_COMPILE_FAIL
  void token_logprobs(const pp::token_sequences&, std::span<double>) {}
#else
  void logprobs(const pp::token_sequences&, std::span<double>) {}
#endif
};

static_assert(pp::check_reference_model<my_reference>());
int main() {}
