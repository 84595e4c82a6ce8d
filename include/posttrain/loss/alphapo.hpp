#pragma once
// loss::alphapo<Link, SeqReduce, Nll> — AlphaPO (Gupta et al. 2025) as TRL's CPOTrainer computes
// it with alpha ≠ 0: a reference-free preference loss on the α-transformed rewards.
//
//   π  = SeqReduce(ℓ, m) per sequence      (TRL: seq::mean for ipo/simpo, seq::sum otherwise)
//   u(π) = (1 − p^{−α})/α with p = e^{π},  i.e. u = −expm1(−α·π)/α;  u → π as α → 0 (α = 0: u = π)
//   loss = Σ_p Link(u_c,p, u_r,p) / pairs + nll_coef·NLL_chosen
//   ∂loss/∂ℓ_t = ∂Link/∂u · e^{−α·π} · ∂π/∂ℓ_t (+ the NLL term)
//
//   Inputs/outputs/normaliser: those of loss::preference (loss/preference/parts.hpp) with empty
//   reference scores (AlphaPO is reference-free); rewards reported are β·u.
//   Options alphapo_options: alpha (α, finite; TRL CPOConfig.alpha default 0 = plain CPO/SimPO)
//   and preference (the link's β, γ, ε and nll_coef; default pref::presets::trl_cpo-like values:
//   β = 0.1, γ = 0.5, nll_coef = cpo_alpha = 1).
//   The exponent −α·π is clamped to at most 700 (e^{700} is near double's limit; its derivative is
//   0 beyond): long summed completions with α > 0 would otherwise overflow, as they do in TRL.
//   Peers: TRL CPOTrainer alpha (loss_type sigmoid → algo::alphapo = <sigmoid, sum>; simpo →
//   algo::alphapo_simpo = <simpo, mean>).
#include <cmath>
#include <string>
#include <type_traits>

#include "posttrain/backend/cpu/preference.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/loss/preference.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pref {

// The AlphaPO reward transform and its derivative, shared with a future CUDA backend.
struct alpha_reward {
  static constexpr double max_exponent = 700.0;
  template <class T>
  struct value_t {
    T u;
    T du;
  };
  POSTTRAIN_HOST_DEVICE static value_t<double> evaluate(double score, double alpha) {
    using std::exp;
    using std::expm1;
    if (alpha == 0.0) return {score, 1.0};
    double x = -alpha * score;
    const bool clamped = x > max_exponent;
    if (clamped) x = max_exponent;
    return {-expm1(x) / alpha, clamped ? 0.0 : exp(x)};
  }
};

}  // namespace pref

namespace loss {

struct alphapo_options {
  double alpha = 0.0;
  preference_options preference{.beta = 0.1, .gamma = 0.5, .nll_coef = 1.0};
};

template <class Link, class SeqReduce, class Nll = pref::nll_token_mean>
struct alphapo {
  using composition = preference<Link, SeqReduce, pref::reference_free, Nll>;

  static std::string name() {
    return std::string("loss::alphapo<") + Link::name + ", " + SeqReduce::name +
           (Nll::enabled ? ", nll>" : ">");
  }

  template <class T>
  static preference_result compute(exec::host, const preference_inputs<T>& in,
                                   const alphapo_options& options = {},
                                   const preference_outputs<T>& out = {},
                                   const preference_normalizer& norm = {}) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "loss::alphapo::compute accepts float or double log-probs");
    composition::validate(in, options.preference, out, norm);
    expect_finite(options.alpha, name(), "options.alpha");
    const double pair_normalizer =
        norm.pairs > 0 ? norm.pairs : static_cast<double>(in.batch.num_pairs());
    double token_normalizer = norm.chosen_tokens;
    if (Nll::divides_by_tokens && !(token_normalizer > 0)) {
      const token_batch& c = in.batch.chosen;
      token_normalizer = 0;
      if (c.mask.empty())
        token_normalizer = static_cast<double>(c.num_tokens());
      else
        for (float m : c.mask) token_normalizer += static_cast<double>(m);
    }
    return run(in, options, out, pair_normalizer, token_normalizer);
  }

  template <class T>
  static preference_result compute(const preference_inputs<T>& in,
                                   const alphapo_options& options = {},
                                   const preference_outputs<T>& out = {},
                                   const preference_normalizer& norm = {}) {
    return compute(exec::host{}, in, options, out, norm);
  }

  template <class T>
  static preference_result compute(exec::cuda, const preference_inputs<T>&,
                                   const alphapo_options& = {}, const preference_outputs<T>& = {},
                                   const preference_normalizer& = {}) {
    static_assert(sizeof(T) == 0,
                  "loss::alphapo has no CUDA backend yet: call compute(exec::host{}, ...) with "
                  "host memory");
    return {};
  }

 private:
  // The CPU loop (sequential, double sums), the preference backend's loop with u(π) in between.
  template <class T>
  static preference_result run(const preference_inputs<T>& in, const alphapo_options& options,
                               const preference_outputs<T>& out, double pair_normalizer,
                               double token_normalizer) {
    using backend::cpu::masked_sum;
    using backend::cpu::write_masked;
    const token_batch& chosen = in.batch.chosen;
    const token_batch& rejected = in.batch.rejected;
    const index_t pairs = in.batch.num_pairs();
    const preference_options& o = options.preference;
    const double inv_pairs = pair_normalizer > 0 ? 1.0 / pair_normalizer : 0.0;
    const double nll_divisor = Nll::divides_by_tokens ? token_normalizer : pair_normalizer;
    const double inv_nll = nll_divisor > 0 ? 1.0 / nll_divisor : 0.0;
    const double nll_coef = Nll::enabled ? o.nll_coef : 0.0;
    double loss_sum = 0, nll_sum = 0, reward_c_sum = 0, reward_r_sum = 0, correct = 0;
    for (index_t p = 0; p < pairs; ++p) {
      const index_t c0 = chosen.seq_offsets[p], c1 = chosen.seq_offsets[p + 1];
      const index_t r0 = rejected.seq_offsets[p], r1 = rejected.seq_offsets[p + 1];
      const auto sc = masked_sum(in.chosen_logprobs, chosen.mask, c0, c1);
      const auto sr = masked_sum(in.rejected_logprobs, rejected.mask, r0, r1);
      const auto uc =
          pref::alpha_reward::evaluate(SeqReduce::score(sc.sum, sc.weight), options.alpha);
      const auto ur =
          pref::alpha_reward::evaluate(SeqReduce::score(sr.sum, sr.weight), options.alpha);
      const pref::pair_value<double> v = Link::evaluate(uc.u, ur.u, o);
      loss_sum += v.loss;
      if constexpr (Nll::enabled) nll_sum += Nll::value(sc.sum, sc.weight);
      const double rc = o.beta * uc.u, rr = o.beta * ur.u;
      reward_c_sum += rc;
      reward_r_sum += rr;
      correct += rc > rr ? 1.0 : 0.0;
      if (!out.pair_losses.empty()) out.pair_losses[p] = v.loss;
      if (!out.chosen_rewards.empty()) out.chosen_rewards[p] = rc;
      if (!out.rejected_rewards.empty()) out.rejected_rewards[p] = rr;
      if (!out.chosen_grad.empty()) {
        double scale = v.d_chosen * uc.du * inv_pairs * SeqReduce::token_scale(sc.weight);
        if constexpr (Nll::enabled) scale += nll_coef * inv_nll * Nll::token_scale(sc.weight);
        write_masked(out.chosen_grad, chosen.mask, c0, c1, scale);
      }
      if (!out.rejected_grad.empty())
        write_masked(out.rejected_grad, rejected.mask, r0, r1,
                     v.d_rejected * ur.du * inv_pairs * SeqReduce::token_scale(sr.weight));
    }
    preference_result r;
    r.preference_loss = loss_sum * inv_pairs;
    r.nll = nll_sum * inv_nll;
    r.loss = r.preference_loss + nll_coef * r.nll;
    if (pairs > 0) {
      const double n = static_cast<double>(pairs);
      r.chosen_reward = reward_c_sum / n;
      r.rejected_reward = reward_r_sum / n;
      r.reward_margin = (reward_c_sum - reward_r_sum) / n;
      r.reward_accuracy = correct / n;
    }
    return r;
  }
};

}  // namespace loss

POSTTRAIN_NAMESPACE_END
