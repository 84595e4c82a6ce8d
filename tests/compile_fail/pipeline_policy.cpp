// expect: a policy needs `std::span<scalar_type> parameters\(\)`
// A user policy without flat parameter/gradient views is rejected by check_policy with one
// sentence; the control (the same policy with its views) models the concept.
#include <posttrain/pipeline/policy.hpp>
#include <span>
#include <vector>

namespace pt = posttrain;
namespace pp = posttrain::pipeline;

struct my_policy {
  using scalar_type = float;
  std::vector<float> w, g, logits;
  pt::index_t vocab_size() const { return 4; }
  pt::matrix_view<const float> forward(const pp::token_sequences& s) {
    return {logits.data(), s.num_tokens(), 4};
  }
  void backward(pt::matrix_view<const float>) {}
#ifndef POSTTRAIN_COMPILE_FAIL
  std::span<float> parameters() { return w; }
  std::span<float> gradients() { return g; }
  void zero_grad() {}
#endif
};

static_assert(pp::check_policy<my_policy>());
int main() {}
