// expect: an optimizer needs `step\(std::span<S> parameters, std::span<const S> gradients\)`
// A user optimizer whose step takes the gradients by a mutable span only is rejected.
#include <posttrain/optim/optimizer.hpp>
#include <span>

namespace pt = posttrain;

struct my_optimizer {
#ifdef POSTTRAIN_COMPILE_FAIL
  void step(std::span<float> params, std::span<float> grads);
#else
  void step(std::span<float> params, std::span<const float> grads);
#endif
};

static_assert(pt::optim::check_optimizer<my_optimizer, float>());
int main() {}
