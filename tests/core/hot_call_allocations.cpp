// The workspace overloads of the advantage estimators (estimator::grpo, dr_grpo, rloo, gpg,
// grpo_passk, opo, gae, reinforce_pp, reinforce_pp_baseline, remax, optimal_token_baseline,
// tir_optimal_token_baseline; contiguous group_offsets or group_ids), of group_by_ids (integer
// and any hashable ids) and of the losses with per-row scratch (loss::sft, loss::value_clipped,
// loss::preference with a batch-sorted link, loss::policy_gradient): the same bits as the
// allocating overloads, no allocation in the call (counted through a replaced global operator
// new), and a too-small workspace throws before any output is written.
#include <gtest/gtest.h>

#include <atomic>
#include <algorithm>
#include <cmath>
#include <limits>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "posttrain/advantage/estimator.hpp"
#include "posttrain/core/ragged.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/loss/policy_gradient.hpp"
#include "posttrain/loss/policy_gradient/presets.hpp"
#include "posttrain/loss/preference.hpp"
#include "posttrain/loss/sft.hpp"
#include "posttrain/loss/value.hpp"

#include "count_allocations.hpp"

namespace pt = posttrain;

namespace {

// B sequences in groups of `per_group`, random lengths (some empty), a 0/1 mask.
struct rollout {
  std::vector<pt::index_t> seq_offsets{0};
  std::vector<pt::index_t> group_offsets{0};
  std::vector<float> mask;
  std::vector<double> token_rewards, values, old_values, returns, logprobs;
  std::vector<double> rewards;
  std::vector<double> baselines;          // greedy-rollout rewards (remax)
  std::vector<double> sum_pi_squared;     // Σ_v π_v² >= π² of the sampled token (OTB)
  std::vector<pt::index_t> group_ids;     // the group of every sequence (contiguous here)
};

rollout make_rollout(int groups, int per_group, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> len(0, 24);
  std::normal_distribution<double> x(0.0, 1.0);
  std::bernoulli_distribution keep(0.85), win(0.4);
  rollout r;
  for (int g = 0; g < groups; ++g) {
    for (int k = 0; k < per_group; ++k) {
      const int n = len(rng);
      for (int t = 0; t < n; ++t) {
        r.mask.push_back(keep(rng) ? 1.0f : 0.0f);
        r.token_rewards.push_back(t + 1 == n ? (win(rng) ? 1.0 : 0.0) : 0.0);
        r.values.push_back(x(rng));
        r.old_values.push_back(x(rng));
        r.returns.push_back(x(rng));
        r.logprobs.push_back(-std::abs(x(rng)));
        const double pi = std::exp(r.logprobs.back());
        r.sum_pi_squared.push_back(pi * pi + 0.5 * (1 - pi) * (1 - pi));
      }
      r.seq_offsets.push_back(static_cast<pt::index_t>(r.mask.size()));
      r.rewards.push_back(win(rng) ? 1.0 : 0.0);
      r.baselines.push_back(win(rng) ? 1.0 : 0.0);
      r.group_ids.push_back(100 + 7 * g);
    }
    r.group_offsets.push_back(r.group_offsets.back() + per_group);
  }
  return r;
}

template <class E>
void expect_estimator_workspace(const pt::advantage::estimator_inputs<double>& in,
                                const typename E::options_type& o) {
  const pt::exec::host host;
  const std::size_t n = static_cast<std::size_t>(in.seq_offsets.back());
  std::vector<double> want(n), want_ret(n), got(n, -7.0), got_ret(n, -7.0);
  E::compute(host, in, {.advantages = want, .returns = want_ret}, o);
  const std::size_t bytes = E::workspace_bytes(host, in, o);
  std::vector<std::byte> storage(bytes + 64);
  for (std::size_t offset : {0u, 5u, 40u}) {
    pt::workspace ws(storage.data() + offset, bytes);
    const long made = count_allocations([&] {
      E::compute(host, in, {.advantages = got, .returns = got_ret}, o, ws);
    });
    EXPECT_EQ(made, 0) << E::name;
    EXPECT_EQ(got, want) << E::name;
    EXPECT_EQ(got_ret, want_ret) << E::name;
  }
  if (bytes > 0) {  // too small: throws, nothing written
    std::vector<double> untouched(n, -3.0);
    pt::workspace small(storage.data(), bytes / 2);
    EXPECT_THROW(E::compute(host, in, {.advantages = untouched}, o, small), pt::error);
    for (double v : untouched) EXPECT_EQ(v, -3.0);
  }
}

}  // namespace

TEST(HotCallAllocations, GrpoAndDrGrpoFromOutcomeRewards) {
  const rollout r = make_rollout(6, 4, 11);
  pt::advantage::estimator_inputs<double> in{.rewards = r.rewards, .mask = r.mask,
                                             .seq_offsets = r.seq_offsets,
                                             .group_offsets = r.group_offsets};
  expect_estimator_workspace<pt::estimator::grpo>(in, pt::estimator::grpo::defaults);
  expect_estimator_workspace<pt::estimator::grpo>(in, pt::advantage::group_conventions::trl);
  expect_estimator_workspace<pt::estimator::grpo>(in, pt::advantage::group_conventions::trl_batch);
  expect_estimator_workspace<pt::estimator::dr_grpo>(in, pt::estimator::dr_grpo::defaults);
}

TEST(HotCallAllocations, GrpoFromTokenRewards) {
  const rollout r = make_rollout(5, 3, 12);
  pt::advantage::estimator_inputs<double> in{.token_rewards = r.token_rewards, .mask = r.mask,
                                             .seq_offsets = r.seq_offsets,
                                             .group_offsets = r.group_offsets};
  expect_estimator_workspace<pt::estimator::grpo>(in, pt::estimator::grpo::defaults);
}

TEST(HotCallAllocations, GrpoWithNanRewardsIgnored) {
  rollout r = make_rollout(4, 4, 13);
  r.rewards[1] = std::numeric_limits<double>::quiet_NaN();
  r.rewards[6] = std::numeric_limits<double>::quiet_NaN();
  pt::advantage::estimator_inputs<double> in{.rewards = r.rewards, .mask = r.mask,
                                             .seq_offsets = r.seq_offsets,
                                             .group_offsets = r.group_offsets};
  expect_estimator_workspace<pt::estimator::grpo>(in, pt::advantage::group_conventions::trl);
}

TEST(HotCallAllocations, Gae) {
  const rollout r = make_rollout(3, 4, 14);
  pt::advantage::estimator_inputs<double> in{.token_rewards = r.token_rewards, .values = r.values,
                                             .mask = r.mask, .seq_offsets = r.seq_offsets};
  expect_estimator_workspace<pt::estimator::gae>(in, pt::estimator::gae::defaults);
}

template <class Mode>
void expect_sft_workspace(const rollout& r) {
  using L = pt::loss::sft<Mode>;
  const pt::exec::host host;
  const pt::token_batch batch{r.seq_offsets, r.mask};
  const std::span<const double> lp(r.logprobs);
  std::vector<double> want(lp.size()), got(lp.size(), -7.0);
  const auto a = L::compute(host, lp, batch, std::span<double>(want));
  const std::size_t bytes = L::workspace_bytes(host, pt::ssize(std::span(r.seq_offsets)) - 1);
  std::vector<std::byte> storage(bytes + 64);
  pt::workspace ws(storage.data() + 3, bytes);
  pt::agg_result b;
  EXPECT_EQ(count_allocations([&] {
              b = L::compute(host, lp, batch, std::span<double>(got), {}, {}, ws);
            }),
            0);
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(a.divisor, b.divisor);
  EXPECT_EQ(got, want);
}

TEST(HotCallAllocations, Sft) {
  const rollout r = make_rollout(4, 3, 15);
  expect_sft_workspace<pt::agg::token_mean>(r);
  expect_sft_workspace<pt::agg::seq_mean_token_mean>(r);
}

// P pairs of the rollout's sequences (chosen = sequence 2p, rejected = 2p + 1) with reference
// scores, through Loss's workspace form and its allocating form.
template <class Loss>
void expect_preference_workspace(const rollout& r) {
  const pt::exec::host host;
  const pt::index_t pairs = (pt::ssize(std::span(r.seq_offsets)) - 1) / 2;
  std::vector<pt::index_t> oc{0}, orr{0};
  std::vector<float> mc, mr;
  std::vector<double> lc, lr, rc, rr;
  for (pt::index_t p = 0; p < pairs; ++p)
    for (int side = 0; side < 2; ++side) {
      const auto s = static_cast<std::size_t>(2 * p + side);
      std::vector<float>& m = side == 0 ? mc : mr;
      std::vector<double>& l = side == 0 ? lc : lr;
      for (auto t = r.seq_offsets[s]; t < r.seq_offsets[s + 1]; ++t) {
        m.push_back(r.mask[static_cast<std::size_t>(t)]);
        l.push_back(r.logprobs[static_cast<std::size_t>(t)]);
      }
      (side == 0 ? oc : orr).push_back(static_cast<pt::index_t>(m.size()));
      (side == 0 ? rc : rr).push_back(r.values[s]);  // any finite reference score
    }
  pt::loss::preference_inputs<double> in;
  in.batch = {{oc, mc}, {orr, mr}};
  in.chosen_logprobs = lc;
  in.rejected_logprobs = lr;
  in.reference_chosen = rc;
  in.reference_rejected = rr;
  const typename Loss::options_type o{.beta = 0.3};
  std::vector<double> want_c(lc.size()), want_r(lr.size()), want_pairs(rc.size());
  std::vector<double> got_c(lc.size(), -7.0), got_r(lr.size(), -7.0), got_pairs(rc.size(), -7.0);
  const auto a = Loss::compute(host, in, o, {want_c, want_r, want_pairs}, {});
  const std::size_t bytes = Loss::workspace_bytes(host, pairs);
  EXPECT_EQ(bytes > 0, pt::pref::is_batch_sorted_v<typename Loss::link>) << Loss::name();
  std::vector<std::byte> storage(bytes + 64);
  pt::workspace ws(storage.data() + 5, bytes);
  pt::loss::preference_result b;
  EXPECT_EQ(count_allocations([&] {
              b = Loss::compute(host, in, o, {got_c, got_r, got_pairs}, {}, ws);
            }),
            0)
      << Loss::name();
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(a.reward_accuracy, b.reward_accuracy);
  EXPECT_EQ(got_c, want_c);
  EXPECT_EQ(got_r, want_r);
  EXPECT_EQ(got_pairs, want_pairs);
  if (bytes > 0) {  // 64 bytes short: thrown before any output is written
    std::vector<double> untouched(lc.size(), -7.0);
    pt::workspace small(storage.data() + 5, bytes - 64);
    EXPECT_THROW(Loss::compute(host, in, o, {untouched}, {}, small), pt::error);
    for (double g : untouched) EXPECT_EQ(g, -7.0);
  }
}

TEST(HotCallAllocations, Preference) {
  const rollout r = make_rollout(5, 4, 17);
  expect_preference_workspace<pt::loss::preference<pt::pref::aot, pt::seq::sum>>(r);
  expect_preference_workspace<pt::loss::preference<pt::pref::aot_unpaired, pt::seq::mean>>(r);
  expect_preference_workspace<pt::loss::preference<pt::pref::sigmoid, pt::seq::sum>>(r);
}

template <class Mode>
void expect_value_workspace(const rollout& r) {
  using L = pt::loss::value_clipped<Mode>;
  const pt::exec::host host;
  const pt::value_inputs<double> in{r.values, r.old_values, r.returns, r.mask, r.seq_offsets};
  const pt::value_options o{.clip = 0.3, .coef = 0.5};
  std::vector<double> want(r.values.size()), got(r.values.size(), -7.0);
  const auto a = L::compute(host, in, o, std::span<double>(want));
  const std::size_t bytes = L::workspace_bytes(host, pt::ssize(std::span(r.seq_offsets)) - 1);
  std::vector<std::byte> storage(bytes + 64);
  pt::workspace ws(storage.data() + 9, bytes);
  pt::value_result b;
  EXPECT_EQ(count_allocations([&] {
              b = L::compute(host, in, o, std::span<double>(got), {}, {}, ws);
            }),
            0);
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(a.clip_fraction, b.clip_fraction);
  EXPECT_EQ(got, want);
}

TEST(HotCallAllocations, ValueClipped) {
  const rollout r = make_rollout(4, 3, 16);
  expect_value_workspace<pt::agg::token_mean>(r);
  expect_value_workspace<pt::agg::seq_mean_token_mean>(r);
}

// The policy-gradient loss with caller scratch: its row buffers (sequence-level surrogates, the
// sequence KL correction) and the per-sequence aggregation's row scratch come from the workspace.
template <class L>
void expect_policy_gradient_workspace(const rollout& r, const pt::policy_gradient_options& o,
                                      const typename L::surrogate_options& so,
                                      const std::string& what) {
  const pt::exec::host host;
  const std::size_t n = r.logprobs.size();
  std::vector<double> old(n), ref(n), entropy(n), weights(n);
  for (std::size_t t = 0; t < n; ++t) {
    old[t] = r.logprobs[t] + 0.1 * r.values[t];
    ref[t] = r.logprobs[t] - 0.2 * r.old_values[t];
    entropy[t] = std::abs(r.returns[t]);
    weights[t] = 0.5 + std::abs(r.values[t]);
  }
  pt::policy_gradient_inputs<double> in;
  in.logprobs = r.logprobs;
  in.old_logprobs = old;
  in.advantages = r.returns;
  if (L::uses_reference) in.ref_logprobs = ref;
  in.mask = r.mask;
  in.seq_offsets = r.seq_offsets;
  in.entropy = entropy;
  in.importance_weights = weights;
  std::vector<double> want(n), want_h(n), got(n, -7.0), got_h(n, -7.0);
  const auto a = L::compute(host, in, o, {want, want_h}, {}, pt::agg_options{}, so);
  const std::size_t bytes = L::workspace_bytes(host, in, o);
  std::vector<std::byte> storage(bytes + 64);
  for (std::size_t offset : {0u, 7u}) {
    pt::workspace ws(storage.data() + offset, bytes);
    pt::policy_gradient_result b;
    EXPECT_EQ(count_allocations([&] {
                b = L::compute(host, in, o, {got, got_h}, {}, pt::agg_options{}, so, ws);
              }),
              0)
        << what;
    EXPECT_EQ(a.loss, b.loss) << what;
    EXPECT_EQ(a.pg_loss, b.pg_loss) << what;
    EXPECT_EQ(a.kl_loss, b.kl_loss) << what;
    EXPECT_EQ(a.clip_fraction, b.clip_fraction) << what;
    EXPECT_EQ(a.mean_ratio, b.mean_ratio) << what;
    EXPECT_EQ(got, want) << what;
    EXPECT_EQ(got_h, want_h) << what;
  }
  if (bytes > 0) {  // too small: throws, nothing written
    std::vector<double> untouched(n, -3.0), untouched_h(n, -3.0);
    pt::workspace small(storage.data(), bytes / 2);
    EXPECT_THROW(L::compute(host, in, o, {untouched, untouched_h}, {}, pt::agg_options{}, so, small),
                 pt::error)
        << what;
    for (double v : untouched) EXPECT_EQ(v, -3.0) << what;
    for (double v : untouched_h) EXPECT_EQ(v, -3.0) << what;
  } else {
    ADD_FAILURE() << what << ": expected a composition with row scratch";
  }
}

TEST(HotCallAllocations, PolicyGradient) {
  const rollout r = make_rollout(4, 3, 17);
  pt::policy_gradient_options o;
  o.kl_coef = 0.05;
  o.entropy_coef = 0.01;
  o.importance_weight_cap = 2.0;
  // per-sequence aggregation: the aggregation's row scratch
  expect_policy_gradient_workspace<
      pt::loss::policy_gradient<pt::surrogate::clip, pt::kl::k3, pt::agg::seq_mean_token_mean>>(
      r, o, {}, "clip + k3, seq_mean_token_mean");
  // sequence-level surrogate with a row gradient: flags, slopes and the KL's token part
  expect_policy_gradient_workspace<
      pt::loss::policy_gradient<pt::surrogate::gspo, pt::kl::k1, pt::agg::token_mean>>(
      r, o, {}, "gspo + k1, token_mean");
  // the sequence KL correction on a token-level surrogate with options of its own
  pt::policy_gradient_options seq = pt::pg_presets::trl_cispo();
  seq.kl_coef = 0.05;
  seq.kl_correction = pt::kl_is_correction::sequence;
  expect_policy_gradient_workspace<
      pt::loss::policy_gradient<pt::surrogate::cispo, pt::kl::k3, pt::agg::token_mean>>(
      r, seq, pt::pg_presets::trl_cispo_surrogate(), "cispo + sequence-IS k3, token_mean");
}

// A token-level composition needs no scratch: 0 bytes, and an empty workspace does.
TEST(HotCallAllocations, PolicyGradientTokenLevelNeedsNoScratch) {
  const rollout r = make_rollout(3, 2, 18);
  using L = pt::loss::policy_gradient<pt::surrogate::clip, pt::kl::k3, pt::agg::token_mean>;
  const std::size_t n = r.logprobs.size();
  std::vector<double> ref(n, -1.0), want(n), got(n, -7.0);
  pt::policy_gradient_inputs<double> in;
  in.logprobs = r.logprobs;
  in.old_logprobs = r.logprobs;
  in.advantages = r.returns;
  in.ref_logprobs = ref;
  in.mask = r.mask;
  in.seq_offsets = r.seq_offsets;
  pt::policy_gradient_options o;
  o.kl_coef = 0.1;
  EXPECT_EQ(L::workspace_bytes(pt::exec::host{}, in, o), 0u);
  const auto a = L::compute(in, o, {want, {}});
  pt::policy_gradient_result b;
  EXPECT_EQ(count_allocations([&] {
              b = L::compute(pt::exec::host{}, in, o, {got, {}}, {}, {}, {}, pt::workspace{});
            }),
            0);
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(got, want);
  // the Loss-concept form with a workspace: the same
  std::vector<double> got_concept(n, -7.0);
  pt::policy_gradient_result c;
  EXPECT_EQ(count_allocations([&] {
              c = L::compute(pt::exec::host{}, in, L::options_type{o, {}, {}}, {got_concept, {}},
                             {}, pt::workspace{});
            }),
            0);
  EXPECT_EQ(a.loss, c.loss);
  EXPECT_EQ(got_concept, want);
}

// Sequences of the rollout reordered (a fixed shuffle) with their group ids: the estimators that
// take inputs.group_ids group them back (group_by_ids' workspace form inside the call).
struct shuffled {
  std::vector<pt::index_t> seq_offsets{0}, group_ids;
  std::vector<float> mask;
  std::vector<double> rewards, token_rewards;
  std::vector<std::size_t> perm;  // sequence k of the shuffle is sequence perm[k] of the rollout
};

shuffled shuffle(const rollout& r, unsigned seed) {
  const std::size_t b = r.rewards.size();
  std::vector<std::size_t> perm(b);
  for (std::size_t i = 0; i < b; ++i) perm[i] = i;
  std::shuffle(perm.begin(), perm.end(), std::mt19937(seed));
  shuffled s;
  for (std::size_t i : perm) {
    for (auto t = r.seq_offsets[i]; t < r.seq_offsets[i + 1]; ++t) {
      s.mask.push_back(r.mask[static_cast<std::size_t>(t)]);
      s.token_rewards.push_back(r.token_rewards[static_cast<std::size_t>(t)]);
    }
    s.seq_offsets.push_back(static_cast<pt::index_t>(s.mask.size()));
    s.group_ids.push_back(r.group_ids[i]);
    s.rewards.push_back(r.rewards[i]);
  }
  s.perm = perm;
  return s;
}

TEST(HotCallAllocations, GroupOutcomeEstimatorsContiguous) {
  const rollout r = make_rollout(6, 4, 21);
  pt::advantage::estimator_inputs<double> in{.rewards = r.rewards, .mask = r.mask,
                                             .seq_offsets = r.seq_offsets,
                                             .group_offsets = r.group_offsets};
  expect_estimator_workspace<pt::estimator::rloo>(in, pt::estimator::rloo::defaults);
  expect_estimator_workspace<pt::estimator::rloo>(in, pt::advantage::rloo_conventions::trl);
  expect_estimator_workspace<pt::estimator::rloo>(in,
                                                  pt::advantage::rloo_conventions::trl_normalized);
  expect_estimator_workspace<pt::estimator::rloo>(in, pt::advantage::rloo_conventions::openrlhf);
  expect_estimator_workspace<pt::estimator::gpg>(in, pt::estimator::gpg::defaults);
  expect_estimator_workspace<pt::estimator::grpo_passk>(in, pt::estimator::grpo_passk::defaults);
  expect_estimator_workspace<pt::estimator::opo>(in, pt::estimator::opo::defaults);
  expect_estimator_workspace<pt::estimator::reinforce_pp_baseline>(
      in, pt::estimator::reinforce_pp_baseline::defaults);
}

TEST(HotCallAllocations, RlooWithNanRewardsAndTokenRewards) {
  rollout r = make_rollout(4, 4, 22);
  r.rewards[2] = std::numeric_limits<double>::quiet_NaN();
  pt::advantage::estimator_inputs<double> in{.rewards = r.rewards, .mask = r.mask,
                                             .seq_offsets = r.seq_offsets,
                                             .group_offsets = r.group_offsets};
  expect_estimator_workspace<pt::estimator::rloo>(in,
                                                  pt::advantage::rloo_conventions::trl_normalized);
  pt::advantage::estimator_inputs<double> tok{.token_rewards = r.token_rewards, .mask = r.mask,
                                              .seq_offsets = r.seq_offsets,
                                              .group_offsets = r.group_offsets};
  expect_estimator_workspace<pt::estimator::rloo>(tok, pt::estimator::rloo::defaults);
  expect_estimator_workspace<pt::estimator::opo>(tok, pt::estimator::opo::defaults);
  expect_estimator_workspace<pt::estimator::reinforce_pp_baseline>(
      tok, pt::estimator::reinforce_pp_baseline::defaults);
}

TEST(HotCallAllocations, GroupOutcomeEstimatorsByGroupIds) {
  const rollout r = make_rollout(5, 4, 23);
  const shuffled s = shuffle(r, 5);
  pt::advantage::estimator_inputs<double> in{.rewards = s.rewards, .mask = s.mask,
                                             .seq_offsets = s.seq_offsets,
                                             .group_ids = s.group_ids};
  expect_estimator_workspace<pt::estimator::grpo>(in, pt::estimator::grpo::defaults);
  expect_estimator_workspace<pt::estimator::grpo>(in, pt::advantage::group_conventions::trl_batch);
  expect_estimator_workspace<pt::estimator::dr_grpo>(in, pt::estimator::dr_grpo::defaults);
  expect_estimator_workspace<pt::estimator::rloo>(in, pt::estimator::rloo::defaults);
  expect_estimator_workspace<pt::estimator::gpg>(in, pt::estimator::gpg::defaults);
  expect_estimator_workspace<pt::estimator::grpo_passk>(in, pt::estimator::grpo_passk::defaults);
  expect_estimator_workspace<pt::estimator::opo>(in, pt::estimator::opo::defaults);
  pt::advantage::estimator_inputs<double> tok{.token_rewards = s.token_rewards, .mask = s.mask,
                                              .seq_offsets = s.seq_offsets,
                                              .group_ids = s.group_ids};
  expect_estimator_workspace<pt::estimator::opo>(tok, pt::estimator::opo::defaults);
}

TEST(HotCallAllocations, GroupIdsWorkspaceSameBitsAsContiguousGroups) {
  // The grouped-by-ids call equals the contiguous call on the unshuffled rollout, per sequence.
  const rollout r = make_rollout(5, 3, 24);
  const shuffled s = shuffle(r, 9);
  pt::advantage::estimator_inputs<double> by_ids{.rewards = s.rewards, .mask = s.mask,
                                                 .seq_offsets = s.seq_offsets,
                                                 .group_ids = s.group_ids};
  pt::advantage::estimator_inputs<double> contiguous{.rewards = r.rewards, .mask = r.mask,
                                                     .seq_offsets = r.seq_offsets,
                                                     .group_offsets = r.group_offsets};
  const pt::exec::host host;
  std::vector<double> seq_a(r.rewards.size()), seq_b(r.rewards.size());
  std::vector<double> tok_a(r.mask.size()), tok_b(r.mask.size());
  pt::workspace_buffer buffer;
  pt::estimator::rloo::compute(host, by_ids, {.advantages = tok_a, .sequence_advantages = seq_a},
                               pt::estimator::rloo::defaults,
                               buffer.view(pt::estimator::rloo::workspace_bytes(host, by_ids)));
  pt::estimator::rloo::compute(host, contiguous,
                               {.advantages = tok_b, .sequence_advantages = seq_b});
  // 0/1 rewards: every sum is exact, so the member order inside a group does not matter.
  for (std::size_t k = 0; k < s.rewards.size(); ++k) EXPECT_EQ(seq_a[k], seq_b[s.perm[k]]) << k;
}

TEST(HotCallAllocations, TokenEstimators) {
  const rollout r = make_rollout(4, 3, 25);
  pt::advantage::estimator_inputs<double> in{.token_rewards = r.token_rewards, .mask = r.mask,
                                             .seq_offsets = r.seq_offsets,
                                             .baselines = r.baselines};
  expect_estimator_workspace<pt::estimator::reinforce_pp>(in, pt::estimator::reinforce_pp::defaults);
  pt::advantage::reinforce_pp_options no_whiten = pt::estimator::reinforce_pp::defaults;
  no_whiten.whiten = false;
  expect_estimator_workspace<pt::estimator::reinforce_pp>(in, no_whiten);
  expect_estimator_workspace<pt::estimator::remax>(in, pt::estimator::remax::defaults);
}

TEST(HotCallAllocations, OptimalTokenBaselineEstimators) {
  rollout r = make_rollout(5, 3, 28);
  r.group_offsets = {0, 3, 4, 4, 9, 15};  // a singleton and an empty group among them
  pt::advantage::estimator_inputs<double> in{.token_rewards = r.token_rewards, .mask = r.mask,
                                             .seq_offsets = r.seq_offsets,
                                             .group_offsets = r.group_offsets,
                                             .old_logprobs = r.logprobs,
                                             .sum_pi_squared = r.sum_pi_squared};
  expect_estimator_workspace<pt::estimator::optimal_token_baseline>(
      in, pt::estimator::optimal_token_baseline::defaults);
  expect_estimator_workspace<pt::estimator::tir_optimal_token_baseline>(
      in, pt::estimator::tir_optimal_token_baseline::defaults);
  in.is_weights = r.values;  // any per-token factor will do as ρ
  expect_estimator_workspace<pt::estimator::optimal_token_baseline>(
      in, pt::advantage::otb_options{.handle_zero_tail = true});
}

TEST(HotCallAllocations, GroupByIds) {
  std::mt19937 rng(26);
  std::uniform_int_distribution<pt::index_t> id(-5, 40);
  for (std::size_t n : {0u, 1u, 7u, 64u, 300u}) {
    std::vector<pt::index_t> ids(n);
    for (auto& x : ids) x = id(rng) * 1000003;
    const pt::grouping want = pt::group_by_ids(ids);
    const std::size_t bytes = pt::group_by_ids_workspace_bytes(pt::ssize(std::span(ids)));
    std::vector<std::byte> storage(bytes + 64);
    std::vector<pt::index_t> order(n, -9), offsets(n + 1, -9), group_of(n, -9);
    pt::index_t groups = -1;
    EXPECT_EQ(count_allocations([&] {
                groups = pt::group_by_ids(std::span<const pt::index_t>(ids), order, offsets,
                                          group_of, pt::workspace(storage.data() + 5, bytes));
              }),
              0);
    EXPECT_EQ(groups, want.num_groups());
    EXPECT_EQ(order, want.order);
    EXPECT_EQ(std::vector<pt::index_t>(offsets.begin(), offsets.begin() + groups + 1),
              want.group_offsets);
    EXPECT_EQ(group_of, want.group_of);
    if (bytes > 0) {
      std::vector<pt::index_t> untouched(n + 1, -3);
      EXPECT_THROW(pt::group_by_ids(std::span<const pt::index_t>(ids), order, untouched, group_of,
                                    pt::workspace(storage.data(), bytes / 2)),
                   pt::error);
      for (auto v : untouched) EXPECT_EQ(v, -3);
    }
  }
}

// A naive stable grouping (groups in order of first appearance, members in order) of ids with ==.
template <class Id>
pt::grouping naive_grouping(const std::vector<Id>& ids) {
  pt::grouping g;
  std::vector<Id> seen;
  std::vector<std::vector<pt::index_t>> members;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const auto it = std::find(seen.begin(), seen.end(), ids[i]);
    const std::size_t k = static_cast<std::size_t>(it - seen.begin());
    if (it == seen.end()) seen.push_back(ids[i]), members.emplace_back();
    members[k].push_back(static_cast<pt::index_t>(i));
    g.group_of.push_back(static_cast<pt::index_t>(k));
  }
  g.group_offsets.push_back(0);
  for (const auto& m : members) {
    g.order.insert(g.order.end(), m.begin(), m.end());
    g.group_offsets.push_back(g.group_offsets.back() + static_cast<pt::index_t>(m.size()));
  }
  return g;
}

// The workspace form for any hashable id type (strings, short ints): the naive grouping and the
// allocating form's, no allocation, a too-small workspace throws before anything is written.
template <class Id>
void expect_group_by_ids_workspace(const std::vector<Id>& ids) {
  const std::size_t n = ids.size();
  const pt::grouping want = naive_grouping(ids);
  const pt::grouping allocating = pt::group_by_ids(ids);
  EXPECT_EQ(allocating.order, want.order);
  EXPECT_EQ(allocating.group_offsets, want.group_offsets);
  EXPECT_EQ(allocating.group_of, want.group_of);
  const std::size_t bytes = pt::group_by_ids_workspace_bytes(static_cast<pt::index_t>(n));
  std::vector<std::byte> storage(bytes + 64);
  std::vector<pt::index_t> order(n, -9), offsets(n + 1, -9), group_of(n, -9);
  pt::index_t groups = -1;
  EXPECT_EQ(count_allocations([&] {
              groups = pt::group_by_ids(std::span<const Id>(ids), std::span<pt::index_t>(order),
                                        std::span<pt::index_t>(offsets),
                                        std::span<pt::index_t>(group_of),
                                        pt::workspace(storage.data() + 3, bytes));
            }),
            0);
  EXPECT_EQ(groups, want.num_groups());
  EXPECT_EQ(order, want.order);
  EXPECT_EQ(std::vector<pt::index_t>(offsets.begin(), offsets.begin() + groups + 1),
            want.group_offsets);
  EXPECT_EQ(group_of, want.group_of);
  if (bytes > 0) {
    std::vector<pt::index_t> untouched(n + 1, -3), untouched_order(n, -3), untouched_of(n, -3);
    EXPECT_THROW(pt::group_by_ids(std::span<const Id>(ids), std::span<pt::index_t>(untouched_order),
                                  std::span<pt::index_t>(untouched),
                                  std::span<pt::index_t>(untouched_of),
                                  pt::workspace(storage.data(), bytes / 2)),
                 pt::error);
    for (auto v : untouched) EXPECT_EQ(v, -3);
    for (auto v : untouched_order) EXPECT_EQ(v, -3);
    for (auto v : untouched_of) EXPECT_EQ(v, -3);
  }
}

TEST(HotCallAllocations, GroupByIdsAnyIdType) {
  std::mt19937 rng(29);
  std::uniform_int_distribution<int> id(0, 30);
  for (std::size_t n : {0u, 1u, 9u, 257u}) {
    std::vector<std::string> names(n);  // long enough to live on the heap (no small-string case)
    std::vector<short> shorts(n);
    for (std::size_t i = 0; i < n; ++i) {
      const int k = id(rng);
      names[i] = "prompt-uid-0123456789-abcdefghij-" + std::to_string(k);
      shorts[i] = static_cast<short>(k - 15);
    }
    expect_group_by_ids_workspace(names);
    expect_group_by_ids_workspace(shorts);
  }
}

TEST(HotCallAllocations, SequenceRewards) {
  const rollout r = make_rollout(3, 5, 27);
  const pt::exec::host host;
  const std::size_t b = r.rewards.size();
  std::vector<double> want(b), got(b, -7.0);
  pt::advantage::sequence_rewards(host, std::span<const double>(r.token_rewards), r.mask,
                                  r.seq_offsets, std::span<double>(want));
  const std::size_t bytes =
      pt::advantage::sequence_rewards_workspace_bytes(host, static_cast<pt::index_t>(b));
  std::vector<std::byte> storage(bytes + 64);
  EXPECT_EQ(count_allocations([&] {
              pt::advantage::sequence_rewards(host, std::span<const double>(r.token_rewards),
                                              r.mask, r.seq_offsets, std::span<double>(got),
                                              pt::workspace(storage.data() + 7, bytes));
            }),
            0);
  EXPECT_EQ(got, want);
  std::vector<double> untouched(b, -3.0);
  EXPECT_THROW(pt::advantage::sequence_rewards(host, std::span<const double>(r.token_rewards),
                                               r.mask, r.seq_offsets, std::span<double>(untouched),
                                               pt::workspace(storage.data(), bytes / 2)),
               pt::error);
  for (double v : untouched) EXPECT_EQ(v, -3.0);
}
