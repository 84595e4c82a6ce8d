// expect: a sequence reduction needs `template <class T> static T token_scale
// A user sequence reduction without token_scale (the gradient factor) is rejected.
#include <posttrain/loss/preference.hpp>

namespace pt = posttrain;

struct reduce_without_gradient {
  static constexpr const char* name = "max";
  template <class T>
  static T score(T masked_sum, T) {
    return masked_sum;
  }
};

#ifdef POSTTRAIN_COMPILE_FAIL
using reduce = reduce_without_gradient;
#else
using reduce = pt::seq::mean;
#endif

static_assert(sizeof(pt::loss::preference<pt::pref::sigmoid, reduce>) > 0);
int main() {}
