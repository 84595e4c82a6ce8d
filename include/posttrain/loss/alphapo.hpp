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
//   Options alphapo_options_for<Link>: alpha (α, finite; TRL CPOConfig.alpha default 0 = plain
//   CPO/SimPO) and preference (the composition's options_type, loss::preference_options_for<Link>:
//   β, ε, nll_coef and the link's own `.link`, simpo's γ; default pref::presets::trl_cpo-like
//   values: β = 0.1, nll_coef = cpo_alpha = 1, γ = 0.5 (simpo's default); an unset nll_coef also
//   means 1, TRL's cpo_alpha). alphapo_options = the one of links without options (sigmoid).
//   The loop is loss::preference's (backend/cpu/preference.hpp) with pref::alpha_transform as its
//   score transform: one implementation, so AlphaPO follows every change of the family.
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
#include "posttrain/loss/concept.hpp"
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

// The transform as the generic preference loop takes it (backend/cpu/preference.hpp).
struct alpha_transform {
  double alpha;
  backend::cpu::score_derivative operator()(double score) const {
    const auto v = alpha_reward::evaluate(score, alpha);
    return {v.u, v.du};
  }
};

}  // namespace pref

namespace loss {

namespace detail {
// TRL CPOConfig's β = 0.1 and cpo_alpha = 1; the link's own options keep their defaults.
template <class PreferenceOptions>
constexpr PreferenceOptions alphapo_preference_defaults() {
  PreferenceOptions o{};
  o.beta = 0.1;
  o.nll_coef = 1.0;
  return o;
}
}  // namespace detail

template <class PreferenceOptions>
struct basic_alphapo_options {
  double alpha = 0.0;
  PreferenceOptions preference = detail::alphapo_preference_defaults<PreferenceOptions>();
};

// The options of alphapo<Link, ...>; alphapo_options is the one of every link without options of
// its own (sigmoid: algo::alphapo).
template <class Link>
using alphapo_options_for = basic_alphapo_options<preference_options_for<Link>>;
using alphapo_options = basic_alphapo_options<preference_options>;

template <class Link, class SeqReduce, class Nll = pref::nll_token_mean>
struct alphapo : loss_interface<alphapo_options_for<Link>, preference_inputs, preference_outputs,
                                preference_normalizer, preference_result> {
  using composition =
      preference<Link, SeqReduce, pref::reference_free, Nll, pref::defaults::trl_cpo>;
  using options_type = alphapo_options_for<Link>;

  static std::string name() {
    return std::string("loss::alphapo<") + Link::name + ", " + SeqReduce::name +
           (Nll::enabled ? ", nll>" : ">");
  }

  template <class T>
  static preference_result compute(exec::host, const preference_inputs<T>& in,
                                   const options_type& options = {},
                                   const preference_outputs<T>& out = {},
                                   const preference_normalizer& norm = {}) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "loss::alphapo::compute accepts float or double log-probs");
    composition::validate(in, options.preference, out, norm);
    expect_finite(options.alpha, name(), "options.alpha");
    const detail::preference_loop_normalizers n =
        detail::resolve_normalizers(in, norm, Nll::divides_by_tokens);
    // The generic preference loop with u(π) between the sequence score and the link (its scratch:
    // none for a per-pair link, so the buffer allocates nothing then).
    workspace_buffer buffer;
    return preference_backend<exec::host>::pair_loop<Link, SeqReduce, pref::reference_free, Nll>(
        exec::host{}, in, options.preference, link_part<Link>(options.preference), out, n.pairs,
        n.chosen_tokens, composition::nll_coef(options.preference),
        buffer.view(preference_backend<exec::host>::workspace_bytes<Link>(exec::host{},
                                                                          in.batch.num_pairs())),
        pref::alpha_transform{options.alpha});
  }

  template <class T>
  static preference_result compute(const preference_inputs<T>& in, const options_type& options = {},
                                   const preference_outputs<T>& out = {},
                                   const preference_normalizer& norm = {}) {
    return compute(exec::host{}, in, options, out, norm);
  }

  template <class T>
  static preference_result compute(exec::cuda, const preference_inputs<T>&,
                                   const options_type& = {}, const preference_outputs<T>& = {},
                                   const preference_normalizer& = {}) {
    static_assert(sizeof(T) == 0,
                  "loss::alphapo has no CUDA backend yet: call compute(exec::host{}, ...) with "
                  "host memory");
    return {};
  }
};

}  // namespace loss

POSTTRAIN_NAMESPACE_END
