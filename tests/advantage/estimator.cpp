// Tests of advantage/estimator.hpp and advantage/algorithms.hpp: every estimator model runs
// through the concept on one small batch and equals the direct call of the function it wraps
// (plus the broadcast to tokens for the outcome estimators); contract checks reject missing
// inputs and bad outputs before anything is written.
#include "posttrain/advantage/estimator.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "posttrain/advantage/algorithms.hpp"
#include "posttrain/core/error.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/ragged.hpp"

namespace pt = posttrain;
namespace adv = posttrain::advantage;
namespace est = posttrain::estimator;

namespace {

using vec = std::vector<double>;
using fvec = std::vector<float>;
using offs = std::vector<pt::index_t>;

// A type that is not an estimator (no contract, compute has the wrong signature).
struct not_an_estimator {
  static constexpr const char* name = "nope";
  using options_type = int;
  static constexpr int defaults = 0;
  static void compute(pt::exec::host, const vec&) {}
};
static_assert(!pt::advantage_estimator<not_an_estimator>);
static_assert(pt::advantage_estimator<est::grpo>);
static_assert(std::is_same_v<pt::algo::rloo::advantage, est::rloo>);
static_assert(std::is_same_v<pt::algo::reinforce_pp::loss, pt::algo::ppo::loss>);
static_assert(std::is_same_v<pt::algo::rloo::trl::loss, pt::algo::rloo_sequence_ppo::loss>);

// 3 groups (sizes 3, 1, 4) of ragged rows with interior holes and an all-masked row.
struct fixture {
  offs so, groups = {0, 3, 4, 8};
  vec r, v, lp, sp, rho, R, base;
  fvec m;
  fixture() {
    std::mt19937 rng(17);
    std::uniform_real_distribution<double> u(0, 1);
    const int len[8] = {5, 3, 6, 4, 2, 7, 4, 5};
    so = {0};
    for (int b = 0; b < 8; ++b) {
      for (int t = 0; t < len[b]; ++t) {
        const bool on = b != 6 && !(t == 2 && b % 3 == 0);
        m.push_back(on ? 1.0f : 0.0f);
        r.push_back(t + 1 == len[b] ? (u(rng) < 0.5 ? 1.0 : 0.0) : 0.02 * (u(rng) - 0.5));
        v.push_back(u(rng) - 0.5);
        const double pi = 0.05 + 0.9 * u(rng);
        lp.push_back(std::log(pi));
        sp.push_back(pi * pi + (1 - pi) * (1 - pi) * u(rng));
        rho.push_back(0.5 + u(rng));
      }
      so.push_back(static_cast<pt::index_t>(r.size()));
      R.push_back(u(rng) * 2 - 0.5);
      base.push_back(u(rng));
    }
  }
  adv::estimator_inputs<double> inputs() const {
    return {.token_rewards = r,
            .rewards = R,
            .values = v,
            .mask = m,
            .seq_offsets = so,
            .group_offsets = groups,
            .old_logprobs = lp,
            .sum_pi_squared = sp,
            .is_weights = rho,
            .baselines = base};
  }
  std::size_t n() const { return r.size(); }
};

// Runs E through the concept with options o; returns {advantages, returns, sequence advantages}.
template <pt::advantage_estimator E>
std::vector<vec> through_concept(const adv::estimator_inputs<double>& in,
                                 const typename E::options_type& o) {
  const std::size_t n = static_cast<std::size_t>(in.seq_offsets.back());
  const std::size_t b = in.seq_offsets.size() - 1;
  vec a(n, -9), ret(n, -9), seq(E::contract.sequence_output ? b : 0, -9);
  pt::compute_advantages<E>(pt::exec::host{}, in, adv::estimator_outputs<double>{a, ret, seq}, o);
  return {a, ret, seq};
}

// Outcome direct path: A[B] from fn, then A_b·m_t.
template <class Fn>
std::vector<vec> outcome_direct(const fixture& f, Fn&& fn) {
  vec A(8), a(f.n());
  fn(std::span<const double>(f.R), std::span<double>(A));
  adv::broadcast_to_tokens(pt::exec::host{}, A, f.so, f.m, std::span<double>(a));
  return {a, a, A};
}

}  // namespace

TEST(Estimator, EveryModelEqualsTheDirectCall) {
  const fixture f;
  const auto in = f.inputs();
  const pt::exec::host h;
  {  // gae, every preset
    for (auto o : {adv::gae_conventions::verl, adv::gae_conventions::trl_ppo,
                   adv::gae_conventions::openrlhf, adv::gae_conventions::open_instruct}) {
      vec a(f.n()), ret(f.n());
      adv::gae(h, f.r, std::span<const double>(f.v), f.m, f.so, std::span<double>(a),
               std::span<double>(ret), o);
      const auto got = through_concept<est::gae>(in, o);
      EXPECT_EQ(got[0], a);
      EXPECT_EQ(got[1], ret);
    }
  }
  // grpo with every convention, dr_grpo
  for (auto o : {adv::group_conventions::verl, adv::group_conventions::verl_vectorized,
                 adv::group_conventions::trl, adv::group_conventions::trl_batch,
                 adv::group_conventions::trl_none, adv::group_conventions::open_instruct_standard,
                 adv::group_conventions::open_instruct_centered, adv::group_conventions::dr_grpo}) {
    const auto want = outcome_direct(f, [&](std::span<const double> r, std::span<double> a) {
      adv::group_advantages(h, r, f.groups, a, o);
    });
    const auto got = through_concept<est::grpo>(in, o);
    EXPECT_EQ(got, want);
  }
  EXPECT_EQ(through_concept<est::dr_grpo>(in, est::dr_grpo::defaults),
            through_concept<est::grpo>(in, adv::group_conventions::dr_grpo));
  for (auto o : {adv::rloo_conventions::verl, adv::rloo_conventions::verl_vectorized,
                 adv::rloo_conventions::trl, adv::rloo_conventions::trl_normalized}) {
    const auto want = outcome_direct(f, [&](std::span<const double> r, std::span<double> a) {
      adv::rloo_advantages(h, r, f.groups, a, o);
    });
    EXPECT_EQ(through_concept<est::rloo>(in, o), want);
  }
  for (auto o : {adv::reinforce_pp_conventions::verl, adv::reinforce_pp_conventions::openrlhf}) {
    vec a(f.n()), ret(f.n());
    adv::reinforce_plus_plus(h, f.r, f.m, f.so, std::span<double>(a), std::span<double>(ret), o);
    const auto got = through_concept<est::reinforce_pp>(in, o);
    EXPECT_EQ(got[0], a);
    EXPECT_EQ(got[1], ret);
  }
  {
    vec a(f.n());
    adv::reinforce_plus_plus_baseline(h, f.R, f.groups, f.m, f.so, std::span<double>(a));
    const auto got =
        through_concept<est::reinforce_pp_baseline>(in, est::reinforce_pp_baseline::defaults);
    EXPECT_EQ(got[0], a);
    EXPECT_EQ(got[1], a);  // verl returns the advantages twice
  }
  {
    vec a(f.n()), ret(f.n());
    adv::remax(h, f.r, std::span<const double>(f.base), f.m, f.so, std::span<double>(a),
               std::span<double>(ret));
    const auto got = through_concept<est::remax>(in, {});
    EXPECT_EQ(got[0], a);
    EXPECT_EQ(got[1], ret);
  }
  {
    vec len(8);
    adv::sequence_lengths(h, f.m, f.so, std::span<double>(len));
    const auto want = outcome_direct(f, [&](std::span<const double> r, std::span<double> a) {
      adv::opo_advantages(h, r, std::span<const double>(len), f.groups, a);
    });
    EXPECT_EQ(through_concept<est::opo>(in, {}), want);
  }
  {
    const auto want = outcome_direct(f, [&](std::span<const double> r, std::span<double> a) {
      adv::gpg_advantages(h, r, f.groups, a, {.f_norm = 2.0});
    });
    EXPECT_EQ(through_concept<est::gpg>(in, {.f_norm = 2.0}), want);
  }
  {
    adv::estimator_inputs<double> pk = in;  // pass@k needs groups of >= 2
    const offs g2 = {0, 4, 8};
    pk.group_offsets = g2;
    vec A(8), a(f.n());
    adv::passk_advantages(h, f.R, g2, std::span<double>(A));
    adv::broadcast_to_tokens(h, A, f.so, f.m, std::span<double>(a));
    EXPECT_EQ(through_concept<est::grpo_passk>(pk, {}), (std::vector<vec>{a, a, A}));
  }
  for (auto o : {adv::otb_conventions::verl, adv::otb_conventions::verl_tir}) {
    vec a(f.n()), ret(f.n());
    adv::optimal_token_baseline(h, f.r, std::span<const double>(f.lp),
                                std::span<const double>(f.sp), std::span<const double>(f.rho), f.m,
                                f.so, f.groups, std::span<double>(a), std::span<double>(ret), o);
    const auto got = through_concept<est::optimal_token_baseline>(in, o);
    EXPECT_EQ(got[0], a);
    EXPECT_EQ(got[1], ret);
    if (o.alignment == adv::otb_alignment::valid_tokens) {
      EXPECT_EQ(through_concept<est::tir_optimal_token_baseline>(
                    in, est::tir_optimal_token_baseline::defaults),
                got);
    }
  }
}

TEST(Estimator, OutcomeRewardsDefaultToMaskedTokenSums) {
  const fixture f;
  auto in = f.inputs();
  in.rewards = {};
  vec R(8);
  adv::sequence_rewards(pt::exec::host{}, f.r, f.m, f.so, std::span<double>(R));
  auto with_r = f.inputs();
  with_r.rewards = R;
  EXPECT_EQ(through_concept<est::grpo>(in, est::grpo::defaults),
            through_concept<est::grpo>(with_r, est::grpo::defaults));
  // Masked tokens get 0; the all-masked row 6 too.
  const auto got = through_concept<est::rloo>(in, est::rloo::defaults);
  for (std::size_t t = 0; t < f.n(); ++t)
    if (f.m[t] == 0.0f) {
      EXPECT_EQ(got[0][t], 0.0);
    }
}

TEST(Estimator, FloatInputsAndTheAlgoRecipes) {
  const fixture f;
  const fvec r(f.r.begin(), f.r.end()), R(f.R.begin(), f.R.end()), v(f.v.begin(), f.v.end());
  adv::estimator_inputs<float> in{.token_rewards = r,
                                  .rewards = R,
                                  .values = v,
                                  .mask = f.m,
                                  .seq_offsets = f.so,
                                  .group_offsets = f.groups};
  fvec a(f.n()), want(f.n());
  using recipe = pt::algo::rloo;
  recipe::advantage::compute(pt::exec::host{}, in, adv::estimator_outputs<float>{.advantages = a},
                             recipe::advantage_options);
  fvec A(8);
  adv::rloo_advantages(pt::exec::host{}, R, f.groups, std::span<float>(A),
                       adv::rloo_conventions::verl);
  adv::broadcast_to_tokens(pt::exec::host{}, A, f.so, f.m, std::span<float>(want));
  EXPECT_EQ(a, want);
  // The recipes' loss presets are the peers' (verl: dual clip 3, clamp ±20).
  EXPECT_EQ(pt::algo::reinforce_pp::loss_options().dual_clip, 3.0);
  EXPECT_EQ(pt::algo::ppo_gae::trl_advantage.lambda, 0.95);
  EXPECT_EQ(pt::algo::ppo_gae::value_loss_options.clip, 0.5);
  EXPECT_EQ(pt::algo::rloo::openrlhf_advantage.singleton, adv::singleton_policy::raise);
  EXPECT_EQ(pt::algo::rloo::trl::advantage_options.nan, adv::nan_policy::ignore);
  EXPECT_EQ(pt::algo::rloo::trl::loss_options().clip_high, 0.2);
  fvec ga(f.n());
  pt::algo::ppo_gae::advantage::compute(pt::exec::host{}, in,
                                        adv::estimator_outputs<float>{.advantages = ga});
  for (float x : ga) EXPECT_FALSE(std::isnan(x));
}

TEST(Estimator, ContractViolationsLeaveOutputsUntouched) {
  const fixture f;
  const std::size_t n = f.n();
  vec a(n, 5.0), ret(n, 5.0), seq(8, 5.0), small(n - 1, 5.0);
  const pt::exec::host h;
  auto in = f.inputs();
  const adv::estimator_outputs<double> out{a, ret, seq};
  // Missing inputs named by the contract.
  auto no_values = in;
  no_values.values = {};
  EXPECT_THROW(est::gae::compute(h, no_values, adv::estimator_outputs<double>{a, ret}), pt::error);
  auto no_groups = in;
  no_groups.group_offsets = {};
  EXPECT_THROW(est::grpo::compute(h, no_groups, out), pt::error);
  auto no_rewards = in;
  no_rewards.rewards = {};
  no_rewards.token_rewards = {};
  EXPECT_THROW(est::rloo::compute(h, no_rewards, out), pt::error);
  EXPECT_THROW(est::reinforce_pp::compute(h, no_rewards, adv::estimator_outputs<double>{a, ret}),
               pt::error);
  auto no_stats = in;
  no_stats.sum_pi_squared = {};
  EXPECT_THROW(
      est::optimal_token_baseline::compute(h, no_stats, adv::estimator_outputs<double>{a, ret}),
      pt::error);
  auto no_base = in;
  no_base.baselines = {};
  EXPECT_THROW(est::remax::compute(h, no_base, adv::estimator_outputs<double>{a, ret}), pt::error);
  auto no_offsets = in;
  no_offsets.seq_offsets = {};
  EXPECT_THROW(est::grpo::compute(h, no_offsets, out), pt::error);
  // Bad outputs.
  EXPECT_THROW(est::grpo::compute(h, in, adv::estimator_outputs<double>{small}), pt::error);
  EXPECT_THROW(est::grpo::compute(h, in, adv::estimator_outputs<double>{a, small}), pt::error);
  EXPECT_THROW(est::grpo::compute(h, in, adv::estimator_outputs<double>{a, a}), pt::error);
  EXPECT_THROW(est::grpo::compute(h, in, adv::estimator_outputs<double>{a, ret, small}), pt::error);
  EXPECT_THROW(est::gae::compute(h, in, out), pt::error);  // token-level: no sequence output
  // Bad mask (checked before the sequence advantages are written).
  fvec neg = f.m;
  neg[3] = -1.0f;
  auto bad_mask = in;
  bad_mask.mask = neg;
  EXPECT_THROW(est::grpo::compute(h, bad_mask, out), pt::error);
  // The wrapped function's own validation: a singleton group under OpenRLHF's convention.
  EXPECT_THROW(est::grpo::compute(h, in, out, adv::group_conventions::openrlhf), pt::error);
  auto wrong_r = in;
  const vec R7(f.R.begin(), f.R.end() - 1);
  wrong_r.rewards = R7;
  EXPECT_THROW(est::grpo::compute(h, wrong_r, out), pt::error);
  for (double x : a) EXPECT_EQ(x, 5.0);
  for (double x : ret) EXPECT_EQ(x, 5.0);
  for (double x : seq) EXPECT_EQ(x, 5.0);
  EXPECT_NO_THROW(est::grpo::compute(h, in, out));
  EXPECT_NE(seq[0], 5.0);
  // Empty batch.
  const offs none = {0}, g0 = {0};
  adv::estimator_inputs<double> empty{.seq_offsets = none, .group_offsets = g0};
  EXPECT_NO_THROW(est::grpo::compute(h, empty, adv::estimator_outputs<double>{}));
}

// Issue 9 item 8: group estimators take one id per sequence in any order (verl's uid) instead of
// contiguous groups, and give bit for bit what group_by_ids + permutation + the contiguous call +
// scatter give; GRPO also against a float64 reference written out here.
namespace {

template <class E>
void check_group_ids(const typename E::options_type& o) {
  // 7 ragged rows (one empty), ids interleaved over 3 groups, rewards with a tie.
  const std::vector<pt::index_t> seqs{0, 2, 3, 6, 6, 8, 9, 12};
  const std::vector<float> mask{1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0};
  const std::vector<pt::index_t> ids{5, 2, 5, 9, 2, 5, 9};
  const std::vector<double> rewards{1.0, 0.0, 0.5, 2.0, 1.5, 1.0, -1.0};
  adv::estimator_inputs<double> in;
  in.rewards = rewards;
  in.mask = mask;
  in.seq_offsets = seqs;
  in.group_ids = ids;
  std::vector<double> a_tok(12), a_seq(7);
  E::compute(pt::exec::host{}, in, {a_tok, {}, a_seq}, o);

  // By hand: grouped order, contiguous call on one-token rows, scatter back.
  const pt::grouping g = pt::group_by_ids(ids);
  std::vector<double> rg(7), lg(7), ag(7);
  const double lengths[] = {2, 1, 2, 0, 2, 1, 2};
  for (std::size_t k = 0; k < 7; ++k) {
    rg[k] = rewards[static_cast<std::size_t>(g.order[k])];
    lg[k] = lengths[g.order[k]];
  }
  std::vector<pt::index_t> unit(8);
  for (std::size_t k = 0; k < 8; ++k) unit[k] = static_cast<pt::index_t>(k);
  adv::estimator_inputs<double> gin;
  gin.rewards = rg;
  gin.seq_offsets = unit;
  gin.group_offsets = g.group_offsets;
  gin.lengths = lg;
  std::vector<double> ag_tok(7);
  E::compute(pt::exec::host{}, gin, {ag_tok, {}, ag}, o);
  std::vector<double> expected(7);
  for (std::size_t k = 0; k < 7; ++k) expected[static_cast<std::size_t>(g.order[k])] = ag[k];
  EXPECT_EQ(a_seq, expected) << E::name;
  for (std::size_t b = 0; b < 7; ++b)
    for (auto t = seqs[b]; t < seqs[b + 1]; ++t)
      EXPECT_EQ(a_tok[static_cast<std::size_t>(t)], mask[t] * a_seq[b]) << E::name;
}

}  // namespace

TEST(EstimatorGroupIds, EqualTheContiguousCallScatteredBack) {
  check_group_ids<est::grpo>(adv::group_conventions::verl);
  check_group_ids<est::dr_grpo>(adv::group_conventions::dr_grpo);
  check_group_ids<est::rloo>(adv::rloo_conventions::verl);
  check_group_ids<est::gpg>({});
  check_group_ids<est::grpo_passk>({});
  check_group_ids<est::opo>({});
}

TEST(EstimatorGroupIds, GrpoFloat64Reference) {
  const std::vector<pt::index_t> seqs{0, 1, 2, 3, 4, 5};
  const std::vector<pt::index_t> ids{7, 3, 7, 3, 7};
  const std::vector<double> r{1.0, 4.0, 2.0, 0.0, 6.0};
  adv::estimator_inputs<double> in;
  in.rewards = r;
  in.seq_offsets = seqs;
  in.group_ids = ids;
  std::vector<double> a(5);
  est::grpo::compute(pt::exec::host{}, in, {a}, adv::group_conventions::verl);
  // group 7: {1, 2, 6}: μ = 3, unbiased σ = sqrt(7); group 3: {4, 0}: μ = 2, σ = sqrt(8).
  const double s7 = std::sqrt(7.0), s3 = std::sqrt(8.0);
  EXPECT_NEAR(a[0], (1 - 3) / (s7 + 1e-6), 1e-12);
  EXPECT_NEAR(a[2], (2 - 3) / (s7 + 1e-6), 1e-12);
  EXPECT_NEAR(a[4], (6 - 3) / (s7 + 1e-6), 1e-12);
  EXPECT_NEAR(a[1], (4 - 2) / (s3 + 1e-6), 1e-12);
  EXPECT_NEAR(a[3], (0 - 2) / (s3 + 1e-6), 1e-12);
}

TEST(EstimatorGroupIds, BadIdsAreRejected) {
  const std::vector<pt::index_t> seqs{0, 1, 2}, groups{0, 2}, ids{1, 1}, short_ids{1};
  const std::vector<double> r{1.0, 2.0};
  std::vector<double> a(2);
  adv::estimator_inputs<double> in;
  in.rewards = r;
  in.seq_offsets = seqs;
  in.group_ids = short_ids;
  EXPECT_THROW(est::grpo::compute(pt::exec::host{}, in, {a}), pt::error);
  in.group_ids = ids;
  in.group_offsets = groups;  // both
  EXPECT_THROW(est::grpo::compute(pt::exec::host{}, in, {a}), pt::error);
  in.group_offsets = {};
  EXPECT_THROW(est::reinforce_pp_baseline::compute(pt::exec::host{}, in, {a}), pt::error);
  EXPECT_THROW(est::gae::compute(pt::exec::host{}, in, {a}), pt::error);
}
