// expect: advantage::gpg_advantages has no device path yet: call it with exec::host
// GPG advantages have no CUDA path: exec::cuda must stop at one sentence naming the estimator and
// the fix, not at a "no member for_each_member" deep in the backend.
#include <posttrain/advantage/gpg.hpp>

#include <span>
#include <vector>

namespace pt = posttrain;

#ifdef POSTTRAIN_COMPILE_FAIL
using tag = pt::exec::cuda;
#else
using tag = pt::exec::host;
#endif

void call(std::span<const float> rewards, std::span<const pt::index_t> groups,
          std::span<float> out) {
  pt::advantage::gpg_advantages(tag{}, rewards, groups, out);
}
int main() {}
