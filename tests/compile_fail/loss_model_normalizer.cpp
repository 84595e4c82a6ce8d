// expect: a loss needs `using normalizer_type = ...`: its global divisors
// A user loss that names no normaliser type is rejected by check_loss_model with one sentence;
// the control (a complete user loss, written in this one file) models the concept.
#include <posttrain/loss/concept.hpp>
#include <span>
#include <string>

namespace pt = posttrain;

struct half_square {  // loss = Σ x² / (2·count)
  struct options_type {
    double scale = 1.0;
  };
  template <class T>
  struct inputs {
    std::span<const T> x;
  };
  template <class T>
  struct outputs {
    std::span<T> grad;
  };
#ifndef POSTTRAIN_COMPILE_FAIL
  struct normalizer_type {
    double count = 0;
  };
#endif
  struct result {
    double loss = 0;
  };
  static std::string name() { return "half_square"; }
  template <class T, class N>
  static result compute(pt::exec::host, const inputs<T>& in, const options_type& o,
                        const outputs<T>& out, const N& n) {
    const double c = n.count > 0 ? n.count : static_cast<double>(in.x.size());
    result r;
    for (std::size_t i = 0; i < in.x.size(); ++i) {
      r.loss += o.scale * in.x[i] * in.x[i] / (2 * c);
      if (!out.grad.empty()) out.grad[i] = static_cast<T>(o.scale * in.x[i] / c);
    }
    return r;
  }
};

static_assert(pt::check_loss_model<half_square>());
int main() {}
