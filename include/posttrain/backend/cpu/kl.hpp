#pragma once
// CPU backend of posttrain::kl_divergence (ops/kl.hpp): one sequential pass over the N tokens,
//   d = logprob[i] - ref_logprob[i];  value[i] = element.value(d)  or
//                                     element.value_and_grad(d, value[i], grad[i])
// `element` is the front end's per-token formula (estimator + clamps). The loop is specialised on
// whether the gradient is requested so the value-only call computes no gradient. Each
// element is read before it is written, so an output may alias an input at the same index.
// Arguments are validated by the front end; this layer trusts them.
#include <cstddef>
#include <span>

#include "posttrain/config.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cpu {

template <class T, class Element>
void kl_divergence(std::span<const T> logprob, std::span<const T> ref_logprob, std::span<T> value,
                   std::span<T> grad, const Element& element) {
  const std::size_t n = logprob.size();
  const T* lp = logprob.data();
  const T* rp = ref_logprob.data();
  T* v = value.data();
  if (grad.empty()) {
    for (std::size_t i = 0; i < n; ++i) v[i] = element.value(lp[i] - rp[i]);
  } else {
    T* g = grad.data();
    for (std::size_t i = 0; i < n; ++i) {
      T vi, gi;
      element.value_and_grad(lp[i] - rp[i], vi, gi);
      v[i] = vi;
      g[i] = gi;
    }
  }
}

}  // namespace backend::cpu

POSTTRAIN_NAMESPACE_END
