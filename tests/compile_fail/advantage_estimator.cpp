// expect: an advantage estimator needs a static `name`
// A user estimator that does not state its input contract is rejected.
#include <posttrain/advantage/estimator.hpp>

namespace pt = posttrain;

struct estimator_without_contract {
  static constexpr const char* name = "mine";
  struct options_type {};
  static constexpr options_type defaults{};
  template <class Exec, class T>
  static void compute(Exec, const pt::advantage::estimator_inputs<T>&,
                      const pt::advantage::estimator_outputs<T>&, const options_type&) {}
};

#ifdef POSTTRAIN_COMPILE_FAIL
using estimator = estimator_without_contract;
#else
using estimator = pt::estimator::rloo;
#endif

static_assert(pt::check_advantage_estimator<estimator>());
int main() {}
