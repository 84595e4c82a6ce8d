// expect: a policy-gradient surrogate needs `importance_weight_use`
// A surrogate written from scratch (no surrogate::defaults base) misses the optional hooks and is
// told where they come from; the control is the same formula deriving from surrogate::defaults,
// which is all a new token-level surrogate needs besides its name and formula.
#include <posttrain/loss/policy_gradient.hpp>

namespace pt = posttrain;

#ifdef POSTTRAIN_COMPILE_FAIL
struct neg_logp {
  static constexpr const char* name = "neg_logp";
  static constexpr bool uses_old_logprobs = false;
  static constexpr bool sequence_level = false;
  static void validate(const pt::policy_gradient_options&, std::string_view) {}
#else
struct neg_logp : pt::surrogate::defaults {
  static constexpr const char* name = "neg_logp";
  static constexpr bool uses_old_logprobs = false;
#endif
  template <class T>
  static pt::pg_token<T> evaluate(T logp, T, T a, const pt::policy_gradient_options&) {
    return {.loss = -a * logp, .grad = -a};
  }
};

static_assert(
    sizeof(pt::loss::policy_gradient<neg_logp, pt::kl::none, pt::agg::token_mean>) > 0);
int main() {}
