// expect: the positional validate/compute of a surrogate with options of its own needs them
// A positional compute of CISPO with a peer preset's shared part alone (TRL's cap 5.0 given as
// clip_high, the cap form left out) is rejected instead of silently taking verl's two-sided cap.
#include <vector>

#include <posttrain/loss/policy_gradient.hpp>
#include <posttrain/loss/policy_gradient/presets.hpp>

namespace pt = posttrain;

using cispo_loss = pt::loss::policy_gradient<pt::surrogate::cispo, pt::kl::none,
                                             pt::agg::token_mean>;

int main() {
  const std::vector<float> logp{-1.0f, -2.0f}, old{-1.1f, -1.9f}, adv{0.5f, -0.5f};
  pt::policy_gradient_inputs<float> in;
  in.logprobs = logp;
  in.old_logprobs = old;
  in.advantages = adv;
#ifdef POSTTRAIN_COMPILE_FAIL
  const auto r = cispo_loss::compute(in, pt::pg_presets::trl_cispo(), {}, {}, {});
#else
  const auto r = cispo_loss::compute(in, pt::pg_presets::trl_cispo(), {}, {}, {},
                                     pt::pg_presets::trl_cispo_surrogate());
#endif
  return r.loss == r.loss ? 0 : 1;
}
