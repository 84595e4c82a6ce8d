// expect: a reward model needs `std::span<const scalar_type> forward\(const pipeline::token_sequences&\)`
// A scalar-head model whose forward returns logits rows instead of one score per sequence is
// rejected by check_reward_model.
#include <posttrain/pipeline/reward_model_step.hpp>
#include <span>
#include <vector>

namespace pt = posttrain;
namespace pp = posttrain::pipeline;

struct my_rm {
  using scalar_type = float;
  std::vector<float> w, g, s;
#ifdef POSTTRAIN_COMPILE_FAIL
  pt::matrix_view<const float> forward(const pp::token_sequences&) { return {}; }
#else
  std::span<const float> forward(const pp::token_sequences&) { return s; }
#endif
  void backward(std::span<const float>) {}
  std::span<float> parameters() { return w; }
  std::span<float> gradients() { return g; }
  void zero_grad() {}
};

static_assert(pp::check_reward_model<my_rm>());
int main() {}
