// expect: a KL estimator needs static value
// A KL estimator without its gradient is rejected by loss::policy_gradient.
#include <posttrain/loss/policy_gradient.hpp>

namespace pt = posttrain;

struct kl_without_grad {
  template <class T>
  static T value(T d) {
    return d * d / 2;
  }
};

#ifdef POSTTRAIN_COMPILE_FAIL
using estimator = kl_without_grad;
#else
using estimator = pt::kl::k2;
#endif

static_assert(
    sizeof(pt::loss::policy_gradient<pt::surrogate::clip, estimator, pt::agg::token_mean>) > 0);
int main() {}
