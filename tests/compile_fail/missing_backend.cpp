// expect: posttrain reductions: no backend for this execution tag
// A family front end called with an execution tag whose backend is not included stops with the
// sentence of the family's primary *_backend template (ops/reductions_types.hpp): here exec::cuda
// in a translation unit without <posttrain/cuda.cuh>.
#include <posttrain/ops/reductions.hpp>

#include <span>

namespace pt = posttrain;

#ifdef POSTTRAIN_COMPILE_FAIL
using tag = pt::exec::cuda;
#else
using tag = pt::exec::host;
#endif

int main() {
  const float values[3] = {1.0f, 2.0f, 3.0f};
  return pt::masked_moments(tag{}, std::span<const float>(values), {}).count > 0.0 ? 0 : 1;
}
