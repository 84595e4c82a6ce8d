// expect: a policy-gradient surrogate needs static `name`, `uses_old_logprobs`
// A surrogate that does not say whether it is sequence-level is rejected.
#include <string_view>

#include <posttrain/loss/policy_gradient.hpp>

namespace pt = posttrain;

struct surrogate_without_level {
  static constexpr const char* name = "mine";
  static constexpr bool uses_old_logprobs = false;
  static void validate(const pt::policy_gradient_options&, std::string_view) {}
  template <class T>
  static pt::pg_token<T> evaluate(T logp, T, T a, const pt::policy_gradient_options&) {
    return {.loss = -a * logp, .grad = -a};
  }
};

#ifdef POSTTRAIN_COMPILE_FAIL
using surrogate = surrogate_without_level;
#else
using surrogate = pt::surrogate::reinforce;
#endif

static_assert(
    sizeof(pt::loss::policy_gradient<surrogate, pt::kl::none, pt::agg::token_mean>) > 0);
int main() {}
