// expect: an aggregation needs static members `divisor`
// An aggregation without row_weight is rejected by loss::policy_gradient.
#include <posttrain/loss/policy_gradient.hpp>

namespace pt = posttrain;

struct aggregation_without_row_weight {
  static constexpr pt::agg::divisor_kind divisor = pt::agg::divisor_kind::tokens;
  static constexpr bool per_sequence = false;
};

#ifdef POSTTRAIN_COMPILE_FAIL
using aggregation = aggregation_without_row_weight;
#else
using aggregation = pt::agg::seq_mean_token_mean;
#endif

static_assert(
    sizeof(pt::loss::policy_gradient<pt::surrogate::clip, pt::kl::none, aggregation>) > 0);
int main() {}
