// expect: a loss needs `static result compute
// A loss whose compute takes its arguments in another order (options before inputs) is rejected
// with the sentence naming the one signature pipeline/ calls; the control has the right order.
#include <posttrain/loss/concept.hpp>
#include <span>
#include <string>

namespace pt = posttrain;

struct sum_loss {  // loss = Σ x
  struct options_type {};
  template <class T>
  struct inputs {
    std::span<const T> x;
  };
  template <class T>
  struct outputs {};
  struct normalizer_type {};
  struct result {
    double loss = 0;
  };
  static std::string name() { return "sum_loss"; }
#ifdef POSTTRAIN_COMPILE_FAIL
  template <class T>
  static result compute(pt::exec::host, const options_type&, const inputs<T>& in,
                        const outputs<T>&, const normalizer_type&) {
#else
  template <class T>
  static result compute(pt::exec::host, const inputs<T>& in, const options_type&,
                        const outputs<T>&, const normalizer_type&) {
#endif
    result r;
    for (T v : in.x) r.loss += v;
    return r;
  }
};

static_assert(pt::check_loss_model<sum_loss>());
int main() {}
