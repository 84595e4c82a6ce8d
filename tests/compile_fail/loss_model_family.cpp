// expect: a loss needs `template <class T> using inputs = 
// A loss written in the older positional style (SFT's compute(exec, logprobs, batch, ...)) without
// the member types is rejected by check_loss_model: pipeline/ needs L::inputs<T>; the control
// checks the library's loss::sft, which has them.
#include <posttrain/loss/concept.hpp>
#include <posttrain/loss/sft.hpp>

namespace pt = posttrain;

#ifdef POSTTRAIN_COMPILE_FAIL
struct positional_only {
  static std::string name() { return "positional_only"; }
  using options_type = pt::agg_options;
  using normalizer_type = pt::agg_normalizer;
  using result = pt::agg_result;
  template <class T>
  static result compute(pt::exec::host, std::span<const T>, const pt::token_batch&) {
    return {};
  }
};
using candidate = positional_only;
#else
using candidate = pt::loss::sft<pt::agg::token_mean>;
#endif

static_assert(pt::check_loss_model<candidate>());
int main() {}
