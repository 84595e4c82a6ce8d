// expect: a preference link needs `template <class T> static pair_value<T> evaluate
// A user link that forgot evaluate(): loss::preference rejects it with the sentence above.
#include <string_view>

#include <posttrain/loss/preference.hpp>

namespace pt = posttrain;

struct link_without_evaluate {
  static constexpr const char* name = "mine";
  static void validate(const pt::loss::preference_options&, std::string_view) {}
};

#ifdef POSTTRAIN_COMPILE_FAIL
using link = link_without_evaluate;
#else
using link = pt::pref::sigmoid;
#endif

static_assert(sizeof(pt::loss::preference<link, pt::seq::sum>) > 0);
int main() {}
