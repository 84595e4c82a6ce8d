// expect: a critic needs `backward\(std::span<const scalar_type> d_values\)`
// A critic without a backward is rejected (rl_step could not train it).
#include <posttrain/pipeline/critic.hpp>
#include <span>
#include <vector>

namespace pp = posttrain::pipeline;

struct my_critic {
  static constexpr bool enabled = true;
  using scalar_type = float;
  std::vector<float> w, g;
  void values(const pp::token_sequences&, std::span<float>) {}
#ifndef POSTTRAIN_COMPILE_FAIL
  void backward(std::span<const float>) {}
#endif
  std::span<float> parameters() { return w; }
  std::span<float> gradients() { return g; }
  void zero_grad() {}
};

static_assert(pp::check_critic<my_critic>());
int main() {}
