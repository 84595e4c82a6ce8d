// algo/ (algo.hpp and algo/recipe.hpp, preference.hpp, kto.hpp, reward_model.hpp, sft.hpp,
// policy_gradient.hpp): every name is a recipe type that is its loss, carries its estimator and
// its presets; presets hold exactly the family presets they document; a recipe drives one whole
// GRPO step (estimator then loss) equal to the hand-assembled calls; names that differ only by
// preset are distinct types over one loss type. The presets checked here are those of
// loss/preference/presets.hpp and loss/policy_gradient/presets.hpp (this is their test too).
#include <gtest/gtest.h>

#include <cmath>
#include <type_traits>
#include <vector>

#include "posttrain/algo.hpp"

namespace pt = posttrain;
namespace algo = pt::algo;

// THE check that every named algorithm models the Loss concept (loss/concept.hpp, the one interface
// pipeline/ uses) and the recipe concept: one entry per name of algo.hpp's algo list (plus
// rloo::trl, the templates' instances and the value loss of ppo_gae). check_loss_model names what
// is missing, one sentence per member. (Checked here rather than in algo.hpp: 65 concept checks
// at namespace scope cost every includer of the umbrella; docs/architecture.md, "Include cost".)
template <class... R>
constexpr bool every_algo_models_loss() {
  return ((pt::check_loss_model<R>() && algo::recipe_type<R>) && ...);
}
static_assert(every_algo_models_loss<
    algo::alphapo,
    algo::alphapo_simpo,
    algo::aot,
    algo::aot_unpaired,
    algo::apo_down,
    algo::apo_zero,
    algo::bco_pair,
    algo::bco_pair_running_mean,
    algo::bradley_terry,
    algo::cdpo,
    algo::cispo,
    algo::clip_cov,
    algo::cpo,
    algo::cpo_hinge,
    algo::cpo_ipo,
    algo::cpo_simpo,
    algo::dapo,
    algo::discopop,
    algo::dpo,
    algo::dpo_length_normalized,
    algo::dpo_nll,
    algo::dpo_nll_sequence_mean,
    algo::dr_grpo,
    algo::exo_pair,
    algo::f_dpo_alpha,
    algo::f_dpo_forward_kl,
    algo::f_dpo_js,
    algo::gmpo,
    algo::gpg,
    algo::grpo,
    algo::gspo,
    algo::gspo_token,
    algo::hinge,
    algo::ipo,
    algo::ipo_reference_sums,
    algo::ipo_sum,
    algo::kl_cov,
    algo::kto,
    algo::kto_apo_zero_unpaired,
    algo::kto_vanilla_paired,
    algo::ld_dpo,
    algo::ld_dpo_policy_only,
    algo::luspo,
    algo::mpo,
    algo::nca_pair,
    algo::orpo,
    algo::ppo,
    algo::ppo_gae,
    algo::ppo_sample_mean,
    algo::reinforce_pp,
    algo::reinforce_pp_baseline,
    algo::reward_log_exp,
    algo::rloo,
    algo::rloo_sequence_ppo,
    algo::robust_dpo,
    algo::rpo,
    algo::sapo,
    algo::sft,
    algo::sft_sample_mean,
    algo::sft_sum,
    algo::simpo,
    algo::sppo_hard,
    algo::tr_dpo,
    algo::vespo,
    algo::wpo,
    algo::rloo::trl, algo::ipo_f_divergence<pt::divergence::js_divergence>,
    algo::dpo_length_normalized_f_divergence<pt::divergence::forward_kl>>());
static_assert(pt::check_loss_model<pt::loss::value_clipped<pt::agg::token_mean>>() &&
              pt::check_loss_model<algo::ppo_gae::value_loss>());

// Presets only, distinct types: one loss type.
static_assert(!std::is_same_v<algo::ppo, algo::dapo> && !std::is_same_v<algo::dapo, algo::clip_cov>);
static_assert(std::is_same_v<algo::ppo::loss, algo::dapo::loss> &&
              std::is_same_v<algo::dapo::loss, algo::clip_cov::loss>);
static_assert(std::is_same_v<algo::dpo::loss, algo::wpo::loss> &&
              std::is_same_v<algo::dpo::loss, algo::tr_dpo::loss> &&
              std::is_same_v<algo::dpo::loss, algo::cdpo::loss>);
// Estimators: the online recipes carry theirs, the offline ones none.
static_assert(std::is_same_v<algo::grpo::advantage, pt::estimator::grpo>);
static_assert(std::is_same_v<algo::dr_grpo::advantage, pt::estimator::dr_grpo>);
static_assert(std::is_same_v<algo::dapo::advantage, pt::estimator::grpo>);
static_assert(std::is_same_v<algo::gspo::advantage, pt::estimator::grpo>);
static_assert(std::is_same_v<algo::cispo::advantage, pt::estimator::grpo>);
static_assert(std::is_same_v<algo::rloo::advantage, pt::estimator::rloo>);
static_assert(std::is_same_v<algo::reinforce_pp::advantage, pt::estimator::reinforce_pp>);
static_assert(std::is_same_v<algo::ppo::advantage, pt::estimator::gae>);
static_assert(algo::grpo::online && !algo::dpo::online);
static_assert(std::is_same_v<algo::dpo::advantage, algo::no_estimator>);
// The name of the loss is unchanged (error messages, tests of messages).
static_assert(std::is_base_of_v<algo::dpo::loss, algo::dpo>);

TEST(AlgoRecipes, PresetsAreTheDocumentedFamilyPresets) {
  EXPECT_EQ(algo::dapo::trl().loss.policy.clip_high, 0.28);
  EXPECT_EQ(algo::dapo::trl().advantage.epsilon, pt::advantage::group_conventions::trl.epsilon);
  EXPECT_EQ(algo::dapo::verl().loss.policy.clip_high, 0.28);
  EXPECT_EQ(algo::dapo::verl().loss.policy.dual_clip, 3.0);
  EXPECT_EQ(algo::ppo::trl().loss.policy.clip_high, 0.2);  // same loss type, PPO's preset
  EXPECT_EQ(algo::ppo::verl().advantage.lambda, 1.0);
  EXPECT_EQ(algo::ppo::trl().advantage.lambda, 0.95);
  EXPECT_EQ(algo::grpo::trl(0.04).loss.policy.kl_coef, 0.04);
  EXPECT_TRUE(algo::grpo::trl().loss.aggregation.include_empty_sequences);
  EXPECT_EQ(algo::grpo::verl().loss.aggregation.length_epsilon, 1e-8);
  EXPECT_EQ(algo::dr_grpo::verl().advantage.scale, pt::advantage::group_scale::none);
  EXPECT_EQ(algo::cispo::trl().loss.surrogate.cap, pt::cispo_cap::absolute_upper);
  EXPECT_EQ(algo::cispo::open_instruct().loss.policy.clip_high, 0.272);
  EXPECT_EQ(algo::gmpo::verl().loss.aggregation.length_epsilon, 1e-8);
  EXPECT_EQ(algo::ppo_sample_mean::openrlhf().loss.policy.log_ratio_max, 20.0);
  EXPECT_EQ(algo::cdpo::trl(0.1).loss.label_smoothing, 0.1);
  EXPECT_EQ(algo::dpo::open_instruct().loss.beta, 5.0);
  EXPECT_EQ(algo::simpo::open_instruct().loss.link.gamma, 1.5);
  EXPECT_EQ(algo::mpo::trl().loss.weights[1], 0.2);
  EXPECT_EQ(algo::rpo::defaults().loss.weights[1], 1.0);
  EXPECT_EQ(algo::orpo::trl().loss.nll_coef, 1.0);
  EXPECT_EQ(algo::alphapo::trl(0.5).loss.alpha, 0.5);
  EXPECT_EQ(algo::kl_cov::verl().loss.selection.ratio, 2e-4);
  // REINFORCE++: verl() is the current release (0.9.1), the older commit has a versioned name.
  EXPECT_EQ(algo::reinforce_pp::verl().advantage.convention,
            pt::advantage::return_convention::carry_through_masked);
  EXPECT_EQ(algo::reinforce_pp::verl_b178a3c().advantage.convention,
            pt::advantage::return_convention::reset_at_masked);
  EXPECT_EQ(algo::rloo::trl::defaults().advantage.singleton, pt::advantage::singleton_policy::zero);
}

// One GRPO step driven only by the recipe (estimator, loss, preset) equals the hand-assembled
// calls, and the loss equals a float64 reference of TRL's GRPO loss written out here.
TEST(AlgoRecipes, GrpoStepFromTheRecipeEqualsTheHandAssembledCalls) {
  using R = algo::grpo;
  const std::vector<pt::index_t> seqs{0, 3, 5, 9, 10}, groups{0, 2, 4};
  const std::vector<float> mask{1, 1, 1, 1, 0, 1, 1, 1, 1, 1};
  const std::vector<double> rewards{1.0, 0.0, 0.5, 2.0};
  const std::vector<double> lp{-0.3, -1.2, -0.7, -2.0, -0.1, -0.9, -1.4, -0.05, -3.0, -0.6};
  const std::vector<double> old{-0.35, -1.0, -0.6, -2.2, -0.12, -0.8, -1.5, -0.06, -2.9, -0.5};
  const std::vector<double> ref{-0.4, -1.1, -0.8, -1.9, -0.2, -1.0, -1.3, -0.1, -2.8, -0.55};
  const auto p = R::trl(0.04);

  pt::advantage::estimator_inputs<double> ein;
  ein.rewards = rewards;
  ein.mask = mask;
  ein.seq_offsets = seqs;
  ein.group_offsets = groups;
  std::vector<double> adv(lp.size());
  R::advantage::compute(pt::exec::host{}, ein, pt::advantage::estimator_outputs<double>{adv},
                        p.advantage);
  pt::policy_gradient_inputs<double> in{lp, old, adv, ref, mask, seqs, {}, {}, {}};
  const auto r = R::compute(pt::exec::host{}, in, p.loss, {}, {});

  std::vector<double> adv2(lp.size());
  pt::estimator::grpo::compute(pt::exec::host{}, ein,
                               pt::advantage::estimator_outputs<double>{adv2},
                               pt::advantage::group_conventions::trl);
  EXPECT_EQ(adv, adv2);
  pt::policy_gradient_inputs<double> in2{lp, old, adv2, ref, mask, seqs, {}, {}, {}};
  const auto r2 = pt::loss::policy_gradient<pt::surrogate::clip, pt::kl::k3,
                                            pt::agg::seq_mean_token_mean>::
      compute(pt::exec::host{}, in2, pt::pg_presets::trl_grpo(0.04), {}, {},
              pt::agg_conventions::trl());
  EXPECT_EQ(r.loss, r2.loss);

  // float64 reference: TRL group advantage (std unbiased, ε 1e-4), PPO clip 0.2, β·k3,
  // mean over rows of per-row token means (max(|o_i|, 1)).
  double total = 0;
  for (std::size_t g = 0; g + 1 < groups.size(); ++g) {
    const double a = rewards[2 * g], b = rewards[2 * g + 1], mu = (a + b) / 2;
    const double sd = std::sqrt(((a - mu) * (a - mu) + (b - mu) * (b - mu)) / 1.0);
    for (std::size_t k = 0; k < 2; ++k) {
      const std::size_t i = 2 * g + k;
      const double A = (rewards[i] - mu) / (sd + 1e-4);
      double s = 0, n = 0;
      for (auto t = seqs[i]; t < seqs[i + 1]; ++t) {
        if (mask[t] == 0) continue;
        const double ratio = std::exp(lp[t] - old[t]);
        const double pg = std::max(-A * ratio, -A * std::clamp(ratio, 0.8, 1.2));
        const double d = ref[t] - lp[t];
        s += pg + 0.04 * (std::exp(d) - d - 1.0);
        n += 1;
      }
      total += s / std::max(n, 1.0);
    }
  }
  EXPECT_NEAR(r.loss, total / 4.0, 1e-12);
}

// verl 0.9.1 REINFORCE++ returns on a response with a masked gap (a tool observation): the
// return is carried through the gap (conventions::verl::reinforce_pp), float64 reference.
TEST(AlgoRecipes, VerlReinforcePpIsTheCurrentRelease) {
  const std::vector<pt::index_t> seqs{0, 5};
  const std::vector<float> mask{1, 1, 0, 1, 1};
  const std::vector<double> r{0.5, 0.0, 7.0, 0.0, 1.0};
  pt::advantage::reinforce_pp_options o = pt::conventions::verl::reinforce_pp;
  o.gamma = 0.9;
  o.whiten = false;
  std::vector<double> g(5), adv(5);
  pt::advantage::reinforce_plus_plus(pt::exec::host{}, std::span<const double>(r), mask, seqs,
                                     std::span<double>(adv), std::span<double>(g), o);
  // carry c: c5 = 0; t4: G = 1, c = 1; t3: G = 0 + .9·1 = .9, c = .9; t2 (masked): G stored =
  // 7 + .9·.9, carry unchanged .9; t1: G = 0 + .9·.9 = .81; t0: G = .5 + .9·.81.
  EXPECT_NEAR(g[4], 1.0, 1e-15);
  EXPECT_NEAR(g[3], 0.9, 1e-15);
  EXPECT_NEAR(g[1], 0.81, 1e-15);
  EXPECT_NEAR(g[0], 0.5 + 0.9 * 0.81, 1e-15);
  // The older commit resets at the gap: t1 sees no return from after it.
  pt::advantage::reinforce_pp_options old = pt::conventions::verl::reinforce_pp_b178a3c;
  old.gamma = 0.9;
  old.whiten = false;
  pt::advantage::reinforce_plus_plus(pt::exec::host{}, std::span<const double>(r), mask, seqs,
                                     std::span<double>(adv), std::span<double>(g), old);
  EXPECT_NEAR(g[1], 0.0, 1e-15);
}

// TRL's IPO from reference sums: the loss equals algo::ipo on reference means, the rewards are on
// sums (β·(π_sum − ρ_sum), what TRL logs), float64 reference.
TEST(AlgoRecipes, IpoReferenceSumsRewardsOnSums) {
  const std::vector<pt::index_t> seqs{0, 3, 5};
  const std::vector<float> mc{1, 1, 0, 1, 1}, mr{1, 1, 1, 1, 0};
  const std::vector<double> c{-0.5, -1.5, -9.0, -0.7, -0.2}, r{-1.0, -2.0, -0.3, -1.1, -7.0};
  const std::vector<double> rc_sum{-2.5, -1.2}, rr_sum{-3.0, -0.9};
  const std::vector<double> rc_mean{-1.25, -0.6}, rr_mean{-1.0, -0.9};
  pt::loss::preference_inputs<double> in;
  in.batch = {{seqs, mc}, {seqs, mr}};
  in.chosen_logprobs = c;
  in.rejected_logprobs = r;
  in.reference_chosen = rc_sum;
  in.reference_rejected = rr_sum;
  std::vector<double> cw(2), rw(2);
  const auto o = algo::ipo_reference_sums::trl().loss;
  const auto a = algo::ipo_reference_sums::compute(pt::exec::host{}, in, o, {{}, {}, {}, cw, rw});
  in.reference_chosen = rc_mean;
  in.reference_rejected = rr_mean;
  const auto b = algo::ipo::compute(pt::exec::host{}, in, o);
  EXPECT_NEAR(a.loss, b.loss, 1e-14);
  const double sc[] = {-2.0, -0.9}, sr[] = {-3.3, -1.1};
  double loss = 0;
  for (int p = 0; p < 2; ++p) {
    EXPECT_NEAR(cw[p], 0.1 * (sc[p] - rc_sum[p]), 1e-14);
    EXPECT_NEAR(rw[p], 0.1 * (sr[p] - rr_sum[p]), 1e-14);
    const double lc = 2, lr = p == 0 ? 3 : 1;
    const double h = (sc[p] - rc_sum[p]) / lc - (sr[p] - rr_sum[p]) / lr - 1.0 / (2 * 0.1);
    loss += h * h;
  }
  EXPECT_NEAR(a.loss, loss / 2, 1e-12);
}
