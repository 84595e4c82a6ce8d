// expect: a loss needs `static compute
// A generic step written for policy-gradient inputs rejects a preference loss.
#include <posttrain/algo.hpp>
#include <posttrain/loss/concept.hpp>

namespace pt = posttrain;

#ifdef POSTTRAIN_COMPILE_FAIL
using candidate = pt::algo::dpo;
#else
using candidate = pt::algo::grpo;
#endif

static_assert(pt::check_loss_for<candidate, pt::policy_gradient_inputs<float>>());
int main() {}
