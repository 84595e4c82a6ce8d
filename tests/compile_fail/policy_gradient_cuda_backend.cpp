// expect: loss::policy_gradient has no CUDA backend yet
// A call with exec::cuda reaches the backend contract (loss/policy_gradient_types.hpp): without a
// loss::policy_gradient_backend<exec::cuda> specialisation the front end says so in one sentence;
// the control makes the same call with exec::host.
#include <vector>

#include <posttrain/algo.hpp>

namespace pt = posttrain;

int main() {
  std::vector<float> lp{-1.0f}, adv{1.0f};
  std::vector<pt::index_t> offs{0, 1};
  pt::policy_gradient_inputs<float> in;
  in.logprobs = lp;
  in.old_logprobs = lp;
  in.advantages = adv;
  in.seq_offsets = offs;
#ifdef POSTTRAIN_COMPILE_FAIL
  const auto r = pt::algo::dapo::compute(pt::exec::cuda{}, in);
#else
  const auto r = pt::algo::dapo::compute(pt::exec::host{}, in);
#endif
  return r.loss == 0.0 ? 0 : 1;
}
