#pragma once
// optim::adamw — Adam with decoupled weight decay (Loshchilov & Hutter 2019), as torch.optim.AdamW
// (amsgrad = false, maximize = false):
//
//   t ← t + 1
//   θ ← θ·(1 − lr·λ)                                  decoupled decay, before the Adam update
//   m ← β1·m + (1 − β1)·g        v ← β2·v + (1 − β2)·g²
//   θ ← θ − lr · (m / (1 − β1^t)) / (sqrt(v / (1 − β2^t)) + ε)     bias-corrected
//
// Options: lr 1e-3, beta1 0.9, beta2 0.999, eps 1e-8, weight_decay 0.01 (torch's defaults).
// State m, v in double whatever S is (the moments of float gradients lose little this way; the
// state is 2 doubles per parameter). The first step sizes the state; later steps must pass the
// same number of parameters. Validated before any write: sizes, finite options in range, finite
// gradients (a NaN gradient would poison m and v for ever).
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/optim/optimizer.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace optim {

struct adamw_options {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;
};

class adamw {
 public:
  adamw() = default;
  explicit adamw(const adamw_options& o) : options_(o) {}

  adamw_options& options() { return options_; }
  const adamw_options& options() const { return options_; }
  std::int64_t steps() const { return t_; }
  std::span<const double> first_moment() const { return m_; }
  std::span<const double> second_moment() const { return v_; }

  // Restores a saved state (first_moment(), second_moment(), steps() of an earlier optimizer, e.g.
  // from a checkpoint): the next step() continues exactly as that optimizer's would. Empty moments
  // with steps 0 are the fresh state.
  void restore(std::span<const double> m, std::span<const double> v, std::int64_t steps) {
    constexpr const char* where = "optim::adamw::restore";
    expect(m.size() == v.size(), where, "first moment has ", m.size(), " elements, second moment ",
           v.size(), ", expected equal");
    expect(steps >= 0, where, "steps = ", steps, ", expected >= 0");
    expect(steps == 0 || !m.empty(), where, "steps = ", steps, " with empty moments");
    m_.assign(m.begin(), m.end());
    v_.assign(v.begin(), v.end());
    t_ = steps;
  }

  template <class S>
  void step(std::span<S> params, std::span<const S> grads) {
    constexpr const char* where = "optim::adamw::step";
    expect_size(grads, ssize(params), where, "gradients", "one per parameter");
    if (!m_.empty())
      expect(m_.size() == params.size(), where, "parameters has ", params.size(),
             " elements, expected ", m_.size(), " (the size of the first step's parameters)");
    expect(std::isfinite(options_.lr) && options_.lr >= 0, where, "options.lr = ", options_.lr,
           ", expected finite and >= 0");
    expect(options_.beta1 >= 0 && options_.beta1 < 1, where, "options.beta1 = ", options_.beta1,
           ", expected in [0, 1)");
    expect(options_.beta2 >= 0 && options_.beta2 < 1, where, "options.beta2 = ", options_.beta2,
           ", expected in [0, 1)");
    expect(std::isfinite(options_.eps) && options_.eps > 0, where, "options.eps = ", options_.eps,
           ", expected finite and > 0");
    expect(std::isfinite(options_.weight_decay) && options_.weight_decay >= 0, where,
           "options.weight_decay = ", options_.weight_decay, ", expected finite and >= 0");
    for (std::size_t i = 0; i < grads.size(); ++i)
      expect(std::isfinite(static_cast<double>(grads[i])), where, "gradients[", i,
             "] = ", static_cast<double>(grads[i]), ", expected finite");
    if (m_.empty()) {
      m_.assign(params.size(), 0.0);
      v_.assign(params.size(), 0.0);
    }
    ++t_;
    const double b1 = options_.beta1, b2 = options_.beta2, lr = options_.lr;
    const double c1 = 1.0 - std::pow(b1, static_cast<double>(t_));
    const double c2 = 1.0 - std::pow(b2, static_cast<double>(t_));
    const double decay = 1.0 - lr * options_.weight_decay;
    const double sqrt_c2 = std::sqrt(c2);
    for (std::size_t i = 0; i < params.size(); ++i) {
      const double g = static_cast<double>(grads[i]);
      double p = static_cast<double>(params[i]) * decay;
      m_[i] = b1 * m_[i] + (1.0 - b1) * g;
      v_[i] = b2 * v_[i] + (1.0 - b2) * g * g;
      // torch's form: step = lr / c1, denom = sqrt(v) / sqrt(c2) + eps.
      p -= (lr / c1) * m_[i] / (std::sqrt(v_[i]) / sqrt_c2 + options_.eps);
      params[i] = static_cast<S>(p);
    }
  }

 private:
  adamw_options options_{};
  std::vector<double> m_, v_;
  std::int64_t t_ = 0;
};

static_assert(check_optimizer<adamw, float>());
static_assert(check_optimizer<adamw, double>());

// Plain SGD: θ ← θ − lr·g (the optimizer of the pipeline's gradient tests: one step moves the
// parameters by exactly −lr times the step's gradient).
struct sgd {
  double lr = 1e-2;
  template <class S>
  void step(std::span<S> params, std::span<const S> grads) {
    constexpr const char* where = "optim::sgd::step";
    expect_size(grads, ssize(params), where, "gradients", "one per parameter");
    expect(std::isfinite(lr), where, "lr = ", lr, ", expected finite");
    for (std::size_t i = 0; i < params.size(); ++i)
      params[i] = static_cast<S>(static_cast<double>(params[i]) - lr * static_cast<double>(grads[i]));
  }
};

static_assert(check_optimizer<sgd, float>());
static_assert(check_optimizer<sgd, double>());

}  // namespace optim

POSTTRAIN_NAMESPACE_END
