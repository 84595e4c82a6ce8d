#pragma once
// pipeline::rl_step<Loss, Estimator> — one online RL iteration (PPO, GRPO, Dr.GRPO, DAPO's loss,
// RLOO, REINFORCE++, with or without a critic):
//
//   1 generate   each prompt G = options.samples_per_prompt times; sample i of this rank draws
//                with seed sample_seed(options.seed, options.first_sample_index + i), so a sample
//                does not depend on the batch or rank layout; the output is validated
//                (validate_generation: no more tokens than asked, ids in range, sizes)
//   2 score      reward.score(prompt, completion, example) → R[B]; every R finite
//   3 log-probs  reference and old (policy forward, no gradient; or the generator's own with
//                options.old_logprobs = rollout) on prompt ++ completion, each only when read:
//                the reference when the loss's run-time KL weight is nonzero
//                (loss_reference_needed: kl_coef ≠ 0) or options.kl_in_reward > 0; the separate
//                ℓold forward unless the step is on-policy (one epoch, one mini-batch, so ℓold = ℓ
//                of the update's own forward, taken detached from it) and nothing reads ℓold
//                before the update (rollout correction, KL in the reward, behaviour-statistics
//                estimators) — docs/pipeline.md "Passes rl_step skips"; force_* options keep them.
//                options.rollout_correction: detached IS weights exp(ℓold − ℓrollout) on the
//                surrogate (TIS; the loss's importance_weight_cap truncates them)
//   4 advantages Estimator::compute (advantage/estimator.hpp) over the groups of G samples, with
//                the critic's values when there is one; outcome rewards R[B], or token rewards
//                (R on the last completion token) for token-level estimators (GAE)
//   5 updates    options.epochs passes; each pass shuffles the B sequences (seeded) and cuts
//                mini-batches of options.mini_batch sequences; per mini-batch the GLOBAL token and
//                sequence counts (all-reduced) normalise every micro-batch's Loss::compute, the
//                gradients are accumulated, all-reduced, clipped, and the optimizer steps (the
//                critic likewise with loss::value_clipped<agg::token_mean>)
//
// Loss: a loss_model over loss::policy_gradient_inputs (algo::ppo, grpo, dr_grpo, dapo, gspo,
// cispo, ...). Token-aligned arrays over prompt ++ completion; the loss mask is 1 on completion
// tokens, 0 on the prompt. Ranks may pass different numbers of prompts: the mini-batch loop is
// collective, so the ranks agree on the largest number of mini-batches (one small all-reduce) and a
// rank that runs out contributes empty mini-batches (zero gradient, zero counts). Validated before anything is written (posttrain::error, parameters untouched):
// empty batch, empty prompts, generator output, NaN rewards, options.
//
// Entropy bonus (options.loss.policy.entropy_coef ≠ 0): the forward also computes each token's
// entropy (policy_logprobs) and its gradient goes back through the same backward.
// Dynamic sampling (DAPO, options.dynamic_sampling): groups whose G rewards are all equal are
// drawn again, up to max_resample_rounds times; those still all-equal get mask 0 (excluded from
// the update and the normalisers) — the refill keeps B fixed instead of sampling new prompts.
// KL in the reward (options.kl_in_reward = β > 0): k1 = ℓold − ℓref per completion token,
// advantage/shaping.hpp's kl_in_reward (token-level estimators) or sequence_kl_penalty (outcome).
// ReMax (estimators whose contract reads baselines): one greedy completion per prompt (temperature
// 0), scored; its reward is the baseline of the prompt's G samples.
// Optimal token baseline (estimators reading behaviour statistics): ℓold and Σ_v p_v² of each
// token's behaviour distribution from the policy forward, and the TIS weights with
// rollout_correction. Groups share their prompt, so column alignment lines the responses up.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <optional>
#include <span>
#include <type_traits>
#include <vector>

#include "posttrain/advantage/estimator.hpp"
#include "posttrain/advantage/group.hpp"
#include "posttrain/backend/cpu/advantage.hpp"
#include "posttrain/advantage/shaping.hpp"
#include "posttrain/config.hpp"
#include "posttrain/dist/communicator.hpp"
#include "posttrain/loss/concept.hpp"
#include "posttrain/loss/policy_gradient.hpp"
#include "posttrain/loss/value.hpp"
#include "posttrain/ops/reductions.hpp"
#include "posttrain/ops/whiten.hpp"
#include "posttrain/pipeline/critic.hpp"
#include "posttrain/pipeline/generator.hpp"
#include "posttrain/pipeline/policy.hpp"
#include "posttrain/pipeline/reference.hpp"
#include "posttrain/pipeline/reward_source.hpp"
#include "posttrain/pipeline/step_common.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pipeline {

enum class old_logprob_source { policy, rollout };

template <class Loss, class Estimator>
struct rl_step_options : step_options {
  typename Loss::options_type loss{};
  typename Estimator::options_type estimator = Estimator::defaults;
  value_loss_options value{};         // the critic's loss (with a critic)
  sampling_options sampling{};
  index_t samples_per_prompt = 4;     // G
  index_t epochs = 1;                 // PPO epochs over the rollout
  index_t mini_batch = 0;             // sequences per optimizer step; 0 = all
  std::uint64_t seed = 0;             // sample seeds and shuffles
  std::uint64_t first_sample_index = 0;  // this rank's first global sample index (seeds)
  old_logprob_source old_logprobs = old_logprob_source::policy;
  bool rollout_correction = false;    // IS weights exp(ℓold − ℓrollout) on the surrogate
  double kl_in_reward = 0.0;          // β of the KL penalty in the reward (0 = off): token-level
                                      // estimators r_t −= β·(ℓold − ℓref)_t (verl apply_kl_penalty
                                      // "kl", OpenRLHF, TRL PPO); outcome estimators
                                      // R −= β·Σ_t m·(ℓold − ℓref) (TRL RLOO)
  bool dynamic_sampling = false;      // DAPO: re-draw all-equal groups, then mask those left
  index_t max_resample_rounds = 3;
  std::optional<double> normalizer_constant{};  // C of constant-divisor aggregations (Dr.GRPO)
  // The passes the step skips when nothing reads them (docs/pipeline.md); these keep them:
  bool force_reference_pass = false;    // run the reference (a loss with a KL estimator) even at
                                        // kl_coef = 0: kl_loss then reports the KL to it
  bool force_old_logprob_pass = false;  // a separate no-grad forward for ℓold even on-policy (a
                                        // policy whose forward is not deterministic: dropout)
};

// The options of an algo:: recipe (its loss and its estimator), optionally from one of its peer
// presets: rl_options_from<algo::dapo>(algo::dapo::trl()). rl_step<Recipe, ...> then deduces the
// estimator from the options: rl_step<algo::dapo>(policy, gen, ref, reward, opt, batch, options).
template <class Recipe>
using rl_options = rl_step_options<Recipe, typename Recipe::advantage>;

template <class Recipe>
rl_options<Recipe> rl_options_from(const typename Recipe::preset_type& preset) {
  rl_options<Recipe> o;
  o.estimator = preset.advantage;
  o.loss = preset.loss;
  return o;
}

struct rl_batch {
  token_sequences prompts{};                 // P prompts (each at least one token)
  std::span<const example_info> examples{};  // [P] or empty
};

struct rl_metrics {
  double reward_mean = 0;           // global mean of R over the samples
  double loss = 0, pg_loss = 0, kl_loss = 0, clip_fraction = 0, approx_kl = 0;  // update means
  double value_loss = 0;            // mean over updates (with a critic)
  double grad_norm = 0;             // of the last update, before clipping
  double completion_tokens = 0;     // global
  double truncated_fraction = 0;    // global
  double resampled_groups = 0;      // global: group re-draws of dynamic sampling
  double filtered_groups = 0;       // global: groups still all-equal, masked out
  bool reference_pass = false;      // the reference forward ran (if not, kl_loss = 0: not computed)
  bool old_logprob_pass = false;    // a separate policy forward gave ℓold (if not: the rollout's,
                                    // or the update's own forward, detached)
  index_t updates = 0;
  generation rollout;               // this rank's completions (for logging / inspection)
  std::vector<double> rewards;      // this rank's R[B]
  std::vector<double> greedy_rewards;  // ReMax: the reward of each prompt's greedy completion
};

// The seed of global sample `index`: splitmix64 of (seed, index).
inline std::uint64_t sample_seed(std::uint64_t seed, std::uint64_t index) {
  std::uint64_t z = seed * 0x9e3779b97f4a7c15ull + index + 0x632be59bd9b4e019ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// The deterministic shuffle of epoch e (Fisher–Yates over the sample_rng stream).
inline std::vector<index_t> epoch_permutation(index_t n, std::uint64_t seed, index_t epoch) {
  std::vector<index_t> perm(static_cast<std::size_t>(n));
  std::iota(perm.begin(), perm.end(), index_t(0));
  generate::sample_rng rng(sample_seed(seed ^ 0x5eed5eed5eedull, static_cast<std::uint64_t>(epoch)));
  for (index_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<index_t>(rng.next() % static_cast<std::uint64_t>(i + 1));
    std::swap(perm[i], perm[j]);
  }
  return perm;
}

namespace rl_detail {

// Per-token arrays of the rollout, gathered per mini-batch in a chosen sequence order.
template <class S>
struct rollout_arrays {
  owned_sequences seqs;
  std::vector<float> mask;
  std::vector<S> old_lp, ref_lp, adv, returns, old_values, is_weights;

  rollout_arrays gather(std::span<const index_t> order) const {
    rollout_arrays r;
    auto take = [&](const auto& src, auto& dst, index_t b) {
      if (src.empty()) return;
      dst.insert(dst.end(), src.begin() + seqs.seq_offsets[b], src.begin() + seqs.seq_offsets[b + 1]);
    };
    for (index_t b : order) {
      r.seqs.append(std::span<const index_t>(seqs.tokens).subspan(
          seqs.seq_offsets[b], seqs.seq_offsets[b + 1] - seqs.seq_offsets[b]));
      take(mask, r.mask, b);
      take(old_lp, r.old_lp, b);
      take(ref_lp, r.ref_lp, b);
      take(adv, r.adv, b);
      take(returns, r.returns, b);
      take(old_values, r.old_values, b);
      take(is_weights, r.is_weights, b);
    }
    return r;
  }
};

template <class V>
auto sub(const std::vector<V>& v, index_t b, index_t n) {
  return v.empty() ? std::span<const V>{} : std::span<const V>(v).subspan(b, n);
}

struct no_optimizer {
  template <class S>
  void step(std::span<S>, std::span<const S>) {}
};

}  // namespace rl_detail

template <class Loss, class Estimator, policy P, generator G, reference_model R, reward_source W,
          class O, critic_model Cr, class CO, dist::communicator C>
rl_metrics rl_step(P& policy, G& gen, R& reference, W& reward, O& optimizer, Cr& critic,
                   CO& critic_optimizer, const rl_batch& batch,
                   const rl_step_options<Loss, Estimator>& options, C& comm) {
  using S = typename P::scalar_type;
  using E = Estimator;
  static_assert(check_loss_model<Loss>());
  static_assert(std::is_same_v<typename Loss::template inputs<S>, policy_gradient_inputs<S>>,
                "pipeline::rl_step<Loss, Estimator>: Loss must take loss::policy_gradient_inputs "
                "(a loss::policy_gradient<...> composition: algo::ppo, grpo, dr_grpo, dapo, ...)");
  static_assert(check_advantage_estimator<E>());
  static_assert(!E::contract.values || Cr::enabled,
                "pipeline::rl_step: this estimator reads critic values (GAE): pass a critic");
  static_assert(std::is_same_v<typename R::scalar_type, S> && std::is_same_v<typename Cr::scalar_type, S>,
                "pipeline::rl_step: the reference and critic scalar_type must be the policy's");
  constexpr const char* where = "pipeline::rl_step";
  // Whether the loss reads ref_logprobs at all (a loss that does not say: assume it does).
  constexpr bool loss_reads_reference = [] {
    if constexpr (requires { Loss::uses_reference; })
      return static_cast<bool>(Loss::uses_reference);
    else
      return true;
  }();

  // ---- validation (nothing written before it passes)
  const index_t v = policy.vocab_size();
  batch.prompts.validate(where, "batch.prompts", v);
  const index_t prompts = batch.prompts.num_sequences();
  expect(prompts > 0, where, "batch.prompts is empty, expected at least one prompt");
  for (index_t p = 0; p < prompts; ++p)
    expect(batch.prompts.seq_offsets[p + 1] > batch.prompts.seq_offsets[p], where,
           "batch.prompts sequence ", p, " is empty, expected at least one token");
  expect_size_or_empty(batch.examples, prompts, where, "batch.examples", "one per prompt, or empty");
  validate_step_options(options, where);
  expect(options.samples_per_prompt >= 1, where, "options.samples_per_prompt = ",
         options.samples_per_prompt, ", expected >= 1");
  expect(options.epochs >= 1, where, "options.epochs = ", options.epochs, ", expected >= 1");
  expect(options.mini_batch >= 0, where, "options.mini_batch = ", options.mini_batch,
         ", expected >= 0 (0 = all)");
  expect(!options.dynamic_sampling || (E::contract.groups && options.max_resample_rounds >= 0), where,
         "options.dynamic_sampling needs a group estimator (GRPO, DAPO, RLOO, ...) and "
         "max_resample_rounds >= 0");
  const bool with_entropy = options.loss.policy.entropy_coef != 0.0;
  expect(std::isfinite(options.kl_in_reward) && options.kl_in_reward >= 0, where,
         "options.kl_in_reward = ", options.kl_in_reward, ", expected finite and >= 0 (0 = off)");
  expect(options.kl_in_reward == 0 || R::enabled, where,
         "options.kl_in_reward is set, so the reference model cannot be reference::none");
  // A loss with a KL estimator reads the reference only at kl_coef ≠ 0 (TRL's GRPO at β = 0 loads
  // no reference model): reference::none is accepted then.
  expect(R::enabled || !loss_reference_needed<Loss>(options.loss), where,
         "the loss's in-loss KL is on (options.loss.policy.kl_coef != 0), so the reference model "
         "cannot be reference::none");

  // ---- 1 generate
  const index_t g = options.samples_per_prompt, b = prompts * g;
  owned_sequences req_prompts;
  std::vector<std::uint64_t> seeds;
  std::vector<example_info> examples;
  for (index_t p = 0; p < prompts; ++p)
    for (index_t k = 0; k < g; ++k) {
      req_prompts.append(batch.prompts.tokens.subspan(
          batch.prompts.seq_offsets[p], batch.prompts.seq_offsets[p + 1] - batch.prompts.seq_offsets[p]));
      if (!batch.prompts.ids.empty()) req_prompts.ids.push_back(batch.prompts.ids[p]);
      seeds.push_back(sample_seed(options.seed, options.first_sample_index + static_cast<std::uint64_t>(p * g + k)));
      if (!batch.examples.empty()) examples.push_back(batch.examples[p]);
    }
  const generation_request request{req_prompts.view(), seeds, options.sampling};
  validate_request(request, where);
  generation out;
  gen.generate(request, out);
  validate_generation(request, out, v, where);
  if (options.old_logprobs == old_logprob_source::rollout || options.rollout_correction)
    expect(!out.logprobs.empty(), where, "the generator returned no log-probs, but options ask for "
           "the rollout log-probs (old_logprobs = rollout or rollout_correction)");

  // ---- 2 score
  std::vector<double> rewards(static_cast<std::size_t>(b));
  reward.score(reward_query{request.prompts, out.completions.view(), examples},
               std::span<double>(rewards));
  expect_finite_rewards(rewards, where);

  // ---- 2b dynamic sampling (DAPO): groups whose G rewards are all equal carry no signal; draw
  // them again (fresh seeds from the same global sample indices, so ranks agree), and mask the
  // groups still all-equal after max_resample_rounds out of the update (B stays fixed, so the
  // collective mini-batch loop is the same on every rank).
  std::vector<std::uint8_t> filtered(static_cast<std::size_t>(prompts), 0);
  index_t resampled = 0;
  if (options.dynamic_sampling) {
    auto degenerate = [&](index_t p) {
      for (index_t k = 1; k < g; ++k)
        if (rewards[p * g + k] != rewards[p * g]) return false;
      return true;
    };
    for (index_t round = 1; round <= options.max_resample_rounds; ++round) {
      std::vector<index_t> redo;
      for (index_t p = 0; p < prompts; ++p)
        if (degenerate(p)) redo.push_back(p);
      if (redo.empty()) break;
      owned_sequences rp;
      std::vector<std::uint64_t> rs;
      std::vector<example_info> rex;
      for (index_t p : redo)
        for (index_t k = 0; k < g; ++k) {
          const index_t i = p * g + k;
          rp.append(request.prompts.tokens.subspan(request.prompts.seq_offsets[i],
              request.prompts.seq_offsets[i + 1] - request.prompts.seq_offsets[i]));
          rs.push_back(sample_seed(options.seed, options.first_sample_index +
                                                     static_cast<std::uint64_t>(i) +
                                                     (static_cast<std::uint64_t>(round) << 40)));
          if (!examples.empty()) rex.push_back(examples[i]);
        }
      const generation_request rq{rp.view(), rs, options.sampling};
      generation ro;
      gen.generate(rq, ro);
      validate_generation(rq, ro, v, where);
      expect(ro.logprobs.empty() == out.logprobs.empty(), where,
             "the generator returned log-probs in one round and not in another");
      std::vector<double> rr(rs.size());
      reward.score(reward_query{rq.prompts, ro.completions.view(), rex}, std::span<double>(rr));
      expect_finite_rewards(rr, where);
      // Splice the new samples in place of the old ones.
      std::vector<index_t> slot(static_cast<std::size_t>(prompts), -1);
      for (std::size_t j = 0; j < redo.size(); ++j) slot[redo[j]] = static_cast<index_t>(j);
      generation merged;
      const token_sequences oc = out.completions.view(), nc = ro.completions.view();
      for (index_t i = 0; i < b; ++i) {
        const index_t j = slot[i / g];
        const bool fresh = j >= 0;
        const index_t src = fresh ? j * g + i % g : i;
        const token_sequences& c = fresh ? nc : oc;
        const auto& lps = fresh ? ro.logprobs : out.logprobs;
        const index_t c0 = c.seq_offsets[src], c1 = c.seq_offsets[src + 1];
        merged.completions.append(c.tokens.subspan(c0, c1 - c0));
        if (!lps.empty()) merged.logprobs.insert(merged.logprobs.end(), lps.begin() + c0, lps.begin() + c1);
        merged.stop.push_back(fresh ? ro.stop[src] : out.stop[src]);
        merged.truncated.push_back(fresh ? ro.truncated[src] : out.truncated[src]);
        if (fresh) rewards[i] = rr[src];
      }
      out = std::move(merged);
      resampled += static_cast<index_t>(redo.size());
    }
    for (index_t p = 0; p < prompts; ++p) filtered[p] = degenerate(p) ? 1 : 0;
  }
  const token_sequences completions = out.completions.view();

  // ---- 3 sequences, masks, log-probs
  rl_detail::rollout_arrays<S> all;
  std::vector<S> rollout_lp;
  for (index_t i = 0; i < b; ++i) {
    const auto pr = request.prompts.tokens.subspan(request.prompts.seq_offsets[i],
        request.prompts.seq_offsets[i + 1] - request.prompts.seq_offsets[i]);
    const index_t c0 = completions.seq_offsets[i], c1 = completions.seq_offsets[i + 1];
    std::vector<index_t> seq(pr.begin(), pr.end());
    seq.insert(seq.end(), completions.tokens.begin() + c0, completions.tokens.begin() + c1);
    all.seqs.append(seq);
    all.mask.insert(all.mask.end(), pr.size(), 0.0f);
    all.mask.insert(all.mask.end(), static_cast<std::size_t>(c1 - c0), filtered[i / g] ? 0.0f : 1.0f);
    if (!out.logprobs.empty()) {
      rollout_lp.insert(rollout_lp.end(), pr.size(), S(0));
      for (index_t t = c0; t < c1; ++t) rollout_lp.push_back(static_cast<S>(out.logprobs[t]));
    }
  }
  const token_sequences full = all.seqs.view();
  const index_t n = full.num_tokens();
  const auto offsets = std::span<const index_t>(all.seqs.seq_offsets);
  // The number of mini-batches of every epoch: the most any rank has (collective, so the ranks
  // agree on it and on the passes below).
  const index_t minis = all_reduce_max(comm, ssize(micro_batches(b, options.mini_batch)));
  // Which passes are read (docs/pipeline.md "Passes rl_step skips"). The reference: when the
  // loss's result depends on it at these options (β = kl_coef ≠ 0) or the reward has a KL term.
  bool run_reference = false;
  if constexpr (R::enabled)
    run_reference = loss_reference_needed<Loss>(options.loss) || options.kl_in_reward > 0 ||
                    (loss_reads_reference && options.force_reference_pass);
  // ℓold from the update's own forward (detached): with one optimizer update in the step the
  // policy has not changed since the rollout's ℓold forward would have run, so the two are equal
  // (the ratio is exactly 1, as TRL's num_iterations = 1). Kept separate when something reads
  // ℓold before the update, or when there is more than one update.
  const bool old_from_update = options.old_logprobs == old_logprob_source::policy &&
                               options.epochs == 1 && minis == 1 && !options.rollout_correction &&
                               options.kl_in_reward == 0 && !E::contract.behaviour_stats &&
                               !options.force_old_logprob_pass;
  if (run_reference) {
    all.ref_lp.assign(static_cast<std::size_t>(n), S(0));
    reference.logprobs(full, std::span<S>(all.ref_lp));
  }
  forward_state<S> st;
  // The optimal token baseline also reads Σ_v p_v² of the behaviour distribution per token.
  std::vector<S> sum_p2(E::contract.behaviour_stats ? static_cast<std::size_t>(n) : 0, S(0));
  if (old_from_update) {
    // ℓold is filled per micro-batch in the update loop
  } else if (options.old_logprobs == old_logprob_source::rollout) {
    all.old_lp = rollout_lp;
    if (!sum_p2.empty()) {
      std::vector<S> scratch(static_cast<std::size_t>(n), S(0));
      policy_logprobs(policy, full, std::span<S>(scratch), st, options.temperature, {},
                      std::span<S>(sum_p2));
    }
  } else {
    all.old_lp.assign(static_cast<std::size_t>(n), S(0));
    policy_logprobs(policy, full, std::span<S>(all.old_lp), st, options.temperature, {},
                    std::span<S>(sum_p2));
  }
  if (options.rollout_correction) {
    all.is_weights.assign(static_cast<std::size_t>(n), S(0));
    for (index_t t = 0; t < n; ++t)
      if (all.mask[t] > 0) all.is_weights[t] = static_cast<S>(std::exp(static_cast<double>(all.old_lp[t] - rollout_lp[t])));
  }

  // ---- 4 advantages
  std::vector<S> values, token_rewards;
  if constexpr (Cr::enabled) {
    values.assign(static_cast<std::size_t>(n), S(0));
    critic.values(full, std::span<S>(values));
    all.old_values = values;
  }
  std::vector<S> seq_rewards(rewards.begin(), rewards.end());
  if (E::contract.rewards == advantage::reward_level::token) {
    token_rewards.assign(static_cast<std::size_t>(n), S(0));
    for (index_t i = 0; i < b; ++i)
      if (completions.seq_offsets[i + 1] > completions.seq_offsets[i])
        token_rewards[offsets[i + 1] - 1] = seq_rewards[i];
  }
  if (options.kl_in_reward > 0) {
    const std::span<const S> old_lp(all.old_lp), ref_lp(all.ref_lp);
    if (E::contract.rewards == advantage::reward_level::token)
      advantage::kl_in_reward<kl::k1>(exec::host{}, std::span<const S>(token_rewards), old_lp, ref_lp,
                                      std::span<const float>(all.mask), offsets, options.kl_in_reward,
                                      kl_options{}, std::span<S>(token_rewards));
    else
      advantage::sequence_kl_penalty(exec::host{}, std::span<const S>(seq_rewards), old_lp, ref_lp,
                                     std::span<const float>(all.mask), offsets, options.kl_in_reward,
                                     std::span<S>(seq_rewards));
  }
  // ReMax: the baseline of every sample is the reward of its prompt's greedy completion (one
  // greedy draw per prompt, temperature 0, same max_new_tokens and stop tokens).
  std::vector<S> baselines;
  std::vector<double> greedy_rewards;
  if constexpr (E::contract.baselines) {
    sampling_options greedy = options.sampling;
    greedy.temperature = 0;
    std::vector<std::uint64_t> greedy_seeds(static_cast<std::size_t>(prompts), 0);
    const generation_request gq{batch.prompts, greedy_seeds, greedy};
    generation go;
    gen.generate(gq, go);
    validate_generation(gq, go, v, where);
    greedy_rewards.assign(static_cast<std::size_t>(prompts), 0.0);
    reward.score(reward_query{batch.prompts, go.completions.view(), batch.examples},
                 std::span<double>(greedy_rewards));
    expect_finite_rewards(greedy_rewards, where);
    for (index_t i = 0; i < b; ++i) baselines.push_back(static_cast<S>(greedy_rewards[i / g]));
  }
  std::vector<index_t> groups;
  for (index_t p = 0; p <= prompts; ++p) groups.push_back(p * g);
  all.adv.assign(static_cast<std::size_t>(n), S(0));
  all.returns.assign(static_cast<std::size_t>(n), S(0));
  advantage::estimator_inputs<S> ein;
  ein.token_rewards = token_rewards;
  if (E::contract.rewards == advantage::reward_level::outcome) ein.rewards = seq_rewards;
  ein.values = values;
  ein.mask = all.mask;
  ein.seq_offsets = offsets;
  if (E::contract.groups) ein.group_offsets = groups;
  ein.baselines = baselines;
  if constexpr (E::contract.behaviour_stats) {
    ein.old_logprobs = all.old_lp;
    ein.sum_pi_squared = sum_p2;
    ein.is_weights = all.is_weights;
  }
  if constexpr (requires(typename E::options_type eo) {
                  { eo.whiten } -> std::convertible_to<bool>;
                  { eo.whitening } -> std::convertible_to<whiten_options>;
                }) {
    // GAE and REINFORCE++ whiten their advantages over the batch (after the returns are taken);
    // on several ranks the batch is every rank's tokens: compute the advantages unwhitened, then
    // whiten over the communicator (ops/whiten.hpp: the masked moments merged over ranks by
    // dist/normalizers.hpp), as advantage/gae.hpp says.
    if (comm.size() > 1 && options.estimator.whiten) {
      expect(options.estimator.whitening.scope == whiten_scope::batch, where,
             "per-segment whitening across ranks is not supported (use whiten_scope::batch)");
      auto raw = options.estimator;
      raw.whiten = false;
      E::compute(exec::host{}, ein, advantage::estimator_outputs<S>{all.adv, all.returns}, raw);
      whiten(comm, exec::host{}, std::span<const S>(all.adv), std::span<const float>(all.mask),
             std::span<S>(all.adv), options.estimator.whitening);
    } else {
      E::compute(exec::host{}, ein, advantage::estimator_outputs<S>{all.adv, all.returns},
                 options.estimator);
    }
  } else if constexpr (std::is_same_v<E, estimator::reinforce_pp_baseline>) {
    // REINFORCE++-baseline: R − mean of its group (groups stay on one rank), broadcast to the
    // tokens, then whitened over the whole batch — on several ranks with the moments merged over
    // ranks (the same path as GAE's whitening above).
    if (comm.size() > 1) {
      expect(options.estimator.whitening.scope == whiten_scope::batch, where,
             "per-segment whitening across ranks is not supported (use whiten_scope::batch)");
      std::vector<S> centred(static_cast<std::size_t>(b), S(0));
      advantage::group_advantages(exec::host{}, std::span<const S>(seq_rewards),
                                  std::span<const index_t>(groups), std::span<S>(centred),
                                  advantage::group_options{.scale = advantage::group_scale::none,
                                                           .singleton = options.estimator.singleton});
      backend::cpu::broadcast(std::span<const S>(centred), offsets, std::span<const float>(all.mask),
                              std::span<S>(all.adv));
      whiten(comm, exec::host{}, std::span<const S>(all.adv), std::span<const float>(all.mask),
             std::span<S>(all.adv), options.estimator.whitening);
      all.returns = all.adv;
    } else {
      E::compute(exec::host{}, ein, advantage::estimator_outputs<S>{all.adv, all.returns},
                 options.estimator);
    }
  } else {
    E::compute(exec::host{}, ein, advantage::estimator_outputs<S>{all.adv, all.returns},
               options.estimator);
  }

  // ---- 5 updates
  rl_metrics m;
  {
    std::array<double, 6> s{0, 0, 0, static_cast<double>(b), static_cast<double>(resampled), 0};
    for (double r : rewards) s[0] += r;
    s[1] = static_cast<double>(completions.num_tokens());
    for (auto t : out.truncated) s[2] += t;
    for (auto f : filtered) s[5] += f;
    all_reduce(comm, s);
    m.resampled_groups = s[4];
    m.filtered_groups = s[5];
    m.reward_mean = s[0] / s[3];
    m.completion_tokens = s[1];
    m.truncated_fraction = s[2] / s[3];
  }
  std::array<double, 6> stat_sums{};  // Σ over updates of loss, pg, kl, -, -, value loss
  // The update loop is collective (counts, statistics and gradients are all-reduced per
  // mini-batch), so every rank runs the same number of mini-batches: the most any rank has. A rank
  // with fewer prompts runs its last ones with no sequences (zero gradient, zero counts), so ranks
  // may pass different numbers of prompts and the normalisers stay the global sums.
  for (index_t epoch = 0; epoch < options.epochs; ++epoch) {
    const auto perm = epoch_permutation(b, options.seed, epoch);
    auto ranges = micro_batches(b, options.mini_batch);
    ranges.resize(static_cast<std::size_t>(minis), std::array<index_t, 2>{b, b});
    for (const auto& [m0, m1] : ranges) {
      const auto mb = all.gather(std::span<const index_t>(perm).subspan(m0, m1 - m0));
      const token_sequences mseq = mb.seqs.view();
      std::array<double, 2> counts{0, 0};
      for (index_t i = 0; i < mseq.num_sequences(); ++i) {
        double w = 0;
        for (index_t t = mseq.seq_offsets[i]; t < mseq.seq_offsets[i + 1]; ++t) w += mb.mask[t];
        counts[0] += w;
        counts[1] += (w > 0 || options.loss.aggregation.include_empty_sequences) ? 1.0 : 0.0;
      }
      all_reduce(comm, counts);
      agg_normalizer norm;
      norm.tokens = counts[0];
      norm.sequences = counts[1];
      norm.constant = options.normalizer_constant;
      policy.zero_grad();
      if constexpr (Cr::enabled) critic.zero_grad();
      std::array<double, 6> upd{};
      std::vector<S> lp, grad, val, vgrad, ent, ent_grad;
      for (const auto& [b0, b1] : micro_batches(mseq.num_sequences(), options.micro_batch)) {
        const sequence_slice sl = make_slice(mseq, b0, b1);
        const token_sequences micro = sl.view_of(mseq, b0, b1);
        const index_t t0 = sl.token_begin, nt = sl.token_end - sl.token_begin;
        lp.assign(static_cast<std::size_t>(nt), S(0));
        grad.assign(static_cast<std::size_t>(nt), S(0));
        ent.assign(with_entropy ? static_cast<std::size_t>(nt) : 0, S(0));
        ent_grad.assign(ent.size(), S(0));
        // The lm_head + log-prob op only on the loss's tokens (the mask; the prompts are most of
        // the rows) when ℓold and ℓref are this ℓ itself: then ℓ = 0 off the mask enters every
        // term as ℓ − ℓ = 0 (ratio 1, no KL), and the loss's gradient is 0 off the mask.
        // Otherwise a real ℓold / ℓref against ℓ = 0 could overflow exp() on masked tokens.
        const bool lm_head_on_mask = old_from_update && !run_reference;
        policy_logprobs(policy, micro, std::span<S>(lp), st, options.temperature, std::span<S>(ent),
                        {}, lm_head_on_mask ? rl_detail::sub(mb.mask, t0, nt) : std::span<const float>{});
        policy_gradient_inputs<S> in;
        in.logprobs = lp;
        // On-policy: ℓold = this forward's ℓ, detached (the loss never differentiates ℓold).
        in.old_logprobs = old_from_update ? std::span<const S>(lp) : rl_detail::sub(mb.old_lp, t0, nt);
        in.advantages = rl_detail::sub(mb.adv, t0, nt);
        // Without the reference pass the loss's KL weight is 0 (above): any finite ℓref gives the
        // same loss and gradient; ℓref = ℓ makes the estimate itself 0 (k1, k2, k3 at d = 0).
        in.ref_logprobs = loss_reads_reference && !run_reference ? std::span<const S>(lp)
                                                                 : rl_detail::sub(mb.ref_lp, t0, nt);
        in.mask = rl_detail::sub(mb.mask, t0, nt);
        in.seq_offsets = sl.offsets;
        in.importance_weights = rl_detail::sub(mb.is_weights, t0, nt);
        in.entropy = ent;
        const auto r = Loss::compute(exec::host{}, in, options.loss,
                                     policy_gradient_outputs<S>{grad, ent_grad}, norm);
        upd[0] += r.loss;
        upd[1] += r.pg_loss;
        if (run_reference) upd[2] += r.kl_loss;  // else 0: not computed
        // token-mean statistics weighted by this micro-batch's Σ m (combined below)
        double wm = 0;
        for (float x : in.mask) wm += x;
        upd[3] += r.clip_fraction * wm;
        upd[4] += r.approx_kl * wm;
        policy_backward(policy, micro, st, std::span<const S>(grad), options.temperature,
                        std::span<const S>(ent_grad));
        if constexpr (Cr::enabled) {
          val.assign(static_cast<std::size_t>(nt), S(0));
          vgrad.assign(static_cast<std::size_t>(nt), S(0));
          critic.values(micro, std::span<S>(val));
          value_inputs<S> vin{val, rl_detail::sub(mb.old_values, t0, nt),
                              rl_detail::sub(mb.returns, t0, nt), in.mask, sl.offsets};
          const auto vr = loss::value_clipped<agg::token_mean>::compute(
              exec::host{}, vin, options.value, value_outputs<S>{vgrad}, norm);
          upd[5] += vr.loss;
          critic.backward(std::span<const S>(vgrad));
        }
      }
      all_reduce(comm, upd);
      for (std::size_t k = 0; k < upd.size(); ++k) stat_sums[k] += upd[k];
      m.clip_fraction += counts[0] > 0 ? upd[3] / counts[0] : 0.0;
      m.approx_kl += counts[0] > 0 ? upd[4] / counts[0] : 0.0;
      m.grad_norm = apply_gradients(policy, optimizer, comm, options.max_grad_norm);
      if constexpr (Cr::enabled) apply_gradients(critic, critic_optimizer, comm, options.max_grad_norm);
      ++m.updates;
    }
  }
  const double u = static_cast<double>(m.updates);
  m.loss = stat_sums[0] / u;
  m.pg_loss = stat_sums[1] / u;
  m.kl_loss = stat_sums[2] / u;
  m.value_loss = stat_sums[5] / u;
  m.clip_fraction /= u;
  m.approx_kl /= u;
  m.rollout = std::move(out);
  m.rewards = std::move(rewards);
  m.greedy_rewards = std::move(greedy_rewards);
  m.reference_pass = run_reference;
  m.old_logprob_pass = options.old_logprobs == old_logprob_source::policy && !old_from_update;
  return m;
}

// Without a critic.
template <class Loss, class Estimator, policy P, generator G, reference_model R, reward_source W,
          class O, dist::communicator C>
rl_metrics rl_step(P& policy, G& gen, R& reference, W& reward, O& optimizer, const rl_batch& batch,
                   const rl_step_options<Loss, Estimator>& options, C& comm) {
  critic::none<typename P::scalar_type> none;
  rl_detail::no_optimizer no_opt;
  return rl_step<Loss, Estimator>(policy, gen, reference, reward, optimizer, none, no_opt, batch,
                                  options, comm);
}

template <class Loss, class Estimator, policy P, generator G, reference_model R, reward_source W,
          class O>
rl_metrics rl_step(P& policy, G& gen, R& reference, W& reward, O& optimizer, const rl_batch& batch,
                   const rl_step_options<Loss, Estimator>& options = {}) {
  dist::single_process_communicator comm;
  return rl_step<Loss, Estimator>(policy, gen, reference, reward, optimizer, batch, options, comm);
}

}  // namespace pipeline

POSTTRAIN_NAMESPACE_END
