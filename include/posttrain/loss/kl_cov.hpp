#pragma once
// loss::kl_cov<Kl, Agg> — the verl kl_cov loss (loss_mode="kl_cov", Cui et al. 2025) as a named
// loss of its own (algo::kl_cov): L_t = w_t·(−A_t·r_t + s_t·coef·|ℓ_t − ℓold_t|) (+ β·KL − c_H·H
// as in policy_gradient), no clipping, s_t = kl_cov_selection (correction/token_selection.hpp).
//   Why a loss of its own and not a surrogate alone: the extra term needs the per-token
//   selection s_t, which pg_surrogate::evaluate(ℓ, logr, A, options) cannot see. So the loss is
//   policy_gradient<surrogate::ratio, Kl, Agg> (−A·r, surrogate::ratio below) plus
//   Agg(w·s·coef·|logr|) aggregated with the same mask, offsets and normaliser; aggregation is
//   linear in the per-token loss, so this equals verl's agg(pg_losses) in value and gradient
//   (d|x|/dx = sign(x), 0 at 0 as torch). Defaults kl_cov_ratio 2e-4, ppo_kl_coef 0.1.
// Tests: tests/correction/token_selection.cpp (KlCov*), tests/golden/verl_cov.cpp.
#include <algorithm>
#include <cmath>
#include <concepts>
#include <span>
#include <string>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/correction/token_selection.hpp"
#include "posttrain/loss/concept.hpp"
#include "posttrain/loss/policy_gradient.hpp"
#include "posttrain/ops/aggregate.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace surrogate {

// surrogate::ratio — the unclipped importance-sampled policy gradient L = −A·r,
// r = e^{clamp(logr)}, ∂L/∂ℓ = −A·r (0 where the clamp is active). verl kl_cov's base term.
// Every hook is surrogate::defaults' (token level, reads ℓold, IS weights multiply, no options of
// its own): the whole surrogate is its name and its formula.
struct ratio : defaults {
  static constexpr const char* name = "ratio";

  template <class T>
  POSTTRAIN_HOST_DEVICE static pg_token<T> evaluate(T, T logr, T a,
                                                    const policy_gradient_options& o) {
    const auto q = detail::ratio_of(logr, o);
    pg_token<T> out;
    out.ratio = q.ratio;
    out.loss = -a * q.ratio;
    out.grad = -a * q.slope;
    return out;
  }
};

}  // namespace surrogate

static_assert(check_pg_surrogate<surrogate::ratio>());

struct kl_cov_result : policy_gradient_result {
  double kl_cov_penalty = 0.0;  // Agg(w·s·coef·|logr|), included in loss and pg_loss
  double abs_kl = 0.0;          // masked token mean of |ℓ − ℓold| (verl kl_cov ppo_kl metric)
  index_t selected = 0;         // Σ s over valid tokens
};

namespace loss {

// The options of loss::kl_cov under the Loss concept: the selection (ratio, coef), the base
// policy-gradient hyperparameters and the aggregation conventions.
struct kl_cov_loss_options {
  kl_cov_options selection{};
  policy_gradient_options policy{};
  agg_options aggregation{};
};

template <class KlEstimator, class Aggregation>
struct kl_cov : loss_interface<kl_cov_loss_options, policy_gradient_inputs, policy_gradient_outputs,
                               agg_normalizer, kl_cov_result> {
  using base = policy_gradient<surrogate::ratio, KlEstimator, Aggregation>;

  static std::string name() { return "loss::kl_cov"; }

  template <class T, std::same_as<kl_cov_loss_options> O>
  static kl_cov_result compute(exec::host, const policy_gradient_inputs<T>& in, const O& options,
                               const policy_gradient_outputs<T>& out, const agg_normalizer& norm) {
    return compute(exec::host{}, in, options.selection, options.policy, out, norm,
                   options.aggregation);
  }

  // The loss with a given selection s[N] (0/1, e.g. from kl_cov_selection).
  template <class T>
  static kl_cov_result compute_with_selection(exec::host, const policy_gradient_inputs<T>& in,
                                              std::span<const T> selection,
                                              const kl_cov_options& ko,
                                              const policy_gradient_options& o = {},
                                              const policy_gradient_outputs<T>& out = {},
                                              const agg_normalizer& norm = {},
                                              const agg_options& agg_opts = {}) {
    const std::string where = name();
    base::validate(in, o, out, norm, agg_opts);
    expect_size(selection, ssize(in.logprobs), where, "selection", "one 0/1 per token");
    for (std::size_t t = 0; t < selection.size(); ++t) {
      const double s = static_cast<double>(selection[t]);
      expect(s == 0.0 || s == 1.0, where, "selection[", t, "] = ", s, ", expected 0 or 1");
    }
    expect_finite(ko.coef, where, "options.coef");
    kl_cov_result r;
    static_cast<policy_gradient_result&>(r) =
        base::compute(exec::host{}, in, o, out, norm, agg_opts);

    const std::size_t n = in.logprobs.size();
    std::vector<double> pen(n, 0.0), dpen(n, 0.0), agg_grad(n, 0.0);
    double sum_m = 0.0, sum_abs = 0.0;
    for (std::size_t t = 0; t < n; ++t) {
      const double m = selection_detail::mask_at(in.mask, t);
      if (m == 0.0) continue;
      const double lr =
          static_cast<double>(in.logprobs[t]) - static_cast<double>(in.old_logprobs[t]);
      sum_m += m;
      sum_abs += m * std::abs(lr);
      if (selection[t] == T(0)) continue;
      r.selected += 1;
      double w = 1.0;
      if (!in.importance_weights.empty())
        w = std::min(static_cast<double>(in.importance_weights[t]), o.importance_weight_cap);
      pen[t] = w * ko.coef * std::abs(lr);
      dpen[t] = w * ko.coef * (lr > 0.0 ? 1.0 : (lr < 0.0 ? -1.0 : 0.0));
    }
    const agg_result a =
        aggregate_loss<Aggregation>(exec::host{}, std::span<const double>(pen), in.mask,
                                    in.seq_offsets, norm, std::span<double>(agg_grad), agg_opts);
    r.kl_cov_penalty = a.loss;
    r.loss += a.loss;
    r.pg_loss += a.loss;
    if (sum_m > 0.0) r.abs_kl = sum_abs / sum_m;
    if (!out.grad.empty())
      for (std::size_t t = 0; t < n; ++t)
        if (agg_grad[t] != 0.0 && dpen[t] != 0.0)
          out.grad[t] = static_cast<T>(static_cast<double>(out.grad[t]) + agg_grad[t] * dpen[t]);
    return r;
  }

  // Selects with kl_cov_selection(in, ko) first (needs only local data, as verl per micro-batch).
  template <class T>
  static kl_cov_result compute(exec::host, const policy_gradient_inputs<T>& in,
                               const kl_cov_options& ko = {}, const policy_gradient_options& o = {},
                               const policy_gradient_outputs<T>& out = {},
                               const agg_normalizer& norm = {}, const agg_options& agg_opts = {}) {
    base::validate(in, o, out, norm, agg_opts);
    std::vector<T> s(in.logprobs.size(), T(0));
    kl_cov_selection(exec::host{}, in, ko, std::span<T>(s));
    return compute_with_selection(exec::host{}, in, std::span<const T>(s), ko, o, out, norm,
                                  agg_opts);
  }

  template <class T>
  static kl_cov_result compute(const policy_gradient_inputs<T>& in, const kl_cov_options& ko = {},
                               const policy_gradient_options& o = {},
                               const policy_gradient_outputs<T>& out = {},
                               const agg_normalizer& norm = {}, const agg_options& agg_opts = {}) {
    return compute(exec::host{}, in, ko, o, out, norm, agg_opts);
  }
};

}  // namespace loss

POSTTRAIN_NAMESPACE_END
