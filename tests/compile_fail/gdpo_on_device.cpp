// expect: advantage::gdpo_advantages has no device path yet: call it with exec::host
// GDPO (multi-objective) advantages have no CUDA path: exec::cuda must stop at one sentence naming
// the estimator and the fix.
#include <posttrain/advantage/gdpo.hpp>

#include <span>

namespace pt = posttrain;

#ifdef POSTTRAIN_COMPILE_FAIL
using tag = pt::exec::cuda;
#else
using tag = pt::exec::host;
#endif

void call(const pt::matrix_view<const float>& rewards, std::span<const double> weights,
          std::span<const pt::index_t> groups, std::span<float> out) {
  pt::advantage::gdpo_advantages(tag{}, rewards, weights, groups, out);
}
int main() {}
