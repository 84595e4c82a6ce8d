#pragma once
// The unpaired links of loss::kto<Link, SeqReduce> (formulas in loss/kto.hpp): per example the
// loss L(Δ) and its slope dL/dΔ before the λ weight, z0 the detached KL reference point.
//   unpaired::kto        desirable 1 − σ(β(Δ − z0))      undesirable 1 − σ(β(z0 − Δ))
//   unpaired::apo_zero   desirable 1 − σ(βΔ)             undesirable σ(βΔ)        (no z0)
// A link is `name` plus `evaluate(delta, z0, desirable, beta)`, POSTTRAIN_HOST_DEVICE.
#include "posttrain/config.hpp"
#include "posttrain/math/stable.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace unpaired {

// L(Δ) and dL/dΔ for one example (before the λ weight).
template <class T>
struct example_value {
  T loss;
  T slope;
};

struct kto {
  static constexpr const char* name = "kto";
  template <class T>
  POSTTRAIN_HOST_DEVICE static example_value<T> evaluate(T delta, T z0, bool desirable, T beta) {
    const T x = desirable ? beta * (delta - z0) : beta * (z0 - delta);
    const T s = math::sigmoid(x) * math::sigmoid(-x);
    return {math::sigmoid(-x), desirable ? -beta * s : beta * s};  // 1 − σ(x) = σ(−x)
  }
};

struct apo_zero {
  static constexpr const char* name = "apo_zero_unpaired";
  template <class T>
  POSTTRAIN_HOST_DEVICE static example_value<T> evaluate(T delta, T /*z0*/, bool desirable,
                                                         T beta) {
    const T x = beta * delta;
    const T s = math::sigmoid(x) * math::sigmoid(-x);
    return desirable ? example_value<T>{math::sigmoid(-x), -beta * s}
                     : example_value<T>{math::sigmoid(x), beta * s};
  }
};

}  // namespace unpaired

POSTTRAIN_NAMESPACE_END
