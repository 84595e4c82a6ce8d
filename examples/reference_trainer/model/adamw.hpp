#pragma once
// AdamW over flat parameter / gradient spans, exactly torch.optim.AdamW (decoupled weight decay):
//   t += 1;  p ← p − lr·λ·p
//   m ← β1 m + (1 − β1) g;   v ← β2 v + (1 − β2) g²
//   p ← p − lr · (m / (1 − β1ᵗ)) / (sqrt(v / (1 − β2ᵗ)) + ε)
// The moments are kept in float for a float model (as torch does for float parameters).
#include <cmath>
#include <span>
#include <vector>

#include <posttrain/core/validate.hpp>

namespace reference_model {

struct adamw_options {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
};

template <class S>
class adamw {
 public:
  adamw(std::size_t n, adamw_options o) : o_(o), m_(n, S(0)), v_(n, S(0)) {
    constexpr const char* where = "reference_model::adamw";
    posttrain::expect_positive(o.lr, where, "lr");
    posttrain::expect(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1, where,
                      "betas are (", o.beta1, ", ", o.beta2, "), expected in [0, 1)");
    posttrain::expect(o.eps >= 0 && o.weight_decay >= 0, where, "eps and weight_decay must be >= 0");
  }
  void step(std::span<S> params, std::span<const S> grads) {
    posttrain::expect(params.size() == m_.size() && grads.size() == m_.size(),
                      "reference_model::adamw::step", "params/grads have ", params.size(), "/",
                      grads.size(), " elements, expected ", m_.size());
    ++t_;
    const S lr = S(o_.lr), b1 = S(o_.beta1), b2 = S(o_.beta2), eps = S(o_.eps);
    const S decay = S(1) - S(o_.lr * o_.weight_decay);
    const S c1 = S(1) / S(1 - std::pow(o_.beta1, double(t_)));
    const S c2 = S(1) / S(std::sqrt(1 - std::pow(o_.beta2, double(t_))));
    for (std::size_t i = 0; i < params.size(); ++i) {
      const S g = grads[i];
      m_[i] = b1 * m_[i] + (S(1) - b1) * g;
      v_[i] = b2 * v_[i] + (S(1) - b2) * g * g;
      params[i] = params[i] * decay - lr * (m_[i] * c1) / (std::sqrt(v_[i]) * c2 + eps);
    }
  }
  long steps() const { return t_; }

 private:
  adamw_options o_;
  std::vector<S> m_, v_;
  long t_ = 0;
};

}  // namespace reference_model
