// expect: posttrain::aggregate_loss has no backend for this execution tag
// aggregate_loss has a host backend only (ops/aggregate_types.hpp): exec::cuda stops compilation
// with the sentence of the family's primary backend template instead of a template backtrace.
#include <posttrain/ops/aggregate.hpp>

#include <span>

namespace pt = posttrain;

#ifdef POSTTRAIN_COMPILE_FAIL
using tag = pt::exec::cuda;
#else
using tag = pt::exec::host;
#endif

int main() {
  const float loss[2] = {1.0f, 2.0f};
  const pt::index_t offsets[2] = {0, 2};
  return pt::aggregate_loss<pt::agg::token_mean>(tag{}, std::span<const float>(loss), {},
                                                 std::span<const pt::index_t>(offsets))
                     .loss > 0.0
             ? 0
             : 1;
}
