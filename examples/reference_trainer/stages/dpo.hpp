#pragma once
// dpo: preference optimisation (algo R: dpo, ipo, simpo, dpo_nll, dpo_length_normalized, orpo) on
// pairs of the policy's own samples, one preference_step<R> per step.
//   pairs "online"  (Qwen 2's online DPO) every step: N samples per prompt from the current
//                   policy, the stage's reward (verifier or reward model) picks the best and the
//                   worst (pipeline::online_preference_pairs; all-equal groups dropped)
//   pairs "offline" (Qwen2.5's offline DPO) before the first step: `prompts` prompts × N samples,
//                   verifier-checked pairs (stages/preferences.hpp: a correct sample, or a
//                   corrected wrong one, over a wrong one) stored in
//                   OUT/data/stageK_pairs.jsonl and read back; each step `batch` of those pairs
// mask_format: Llama 3's format-token masking (headers, end-of-turn out of both log-probs).
// Reference-free losses (simpo, orpo) get reference::none: no reference forward at all.
//
// kto_vanilla_paired (algo::kto_vanilla_paired, OpenRLHF's VanillaKTOLoss): the pairs above
// (online or offline), each pair's chosen desirable and its rejected undesirable, with the
// cross reference points KL_c / KL_r of the whole batch, one pipeline::kto_paired_step per step.
//
// Data-parallel (mpirun, distributed.hpp), DPO and paired KTO: every rank samples and holds every
// pair (offline: rank 0 writes the file; online: each step's pairs drawn redundantly), then trains
// on its contiguous share of the step's pairs. Unpaired KTO: offline and online; every rank draws the whole step's rows (online: the
// same samples, redundantly), packs them with their mismatched pairs, and trains on its share.
//
// kto (algo K: kto, kto_apo_zero_unpaired): unpaired rows through pipeline::kto_step<K> with a
// frozen reference (the stage's start policy) and the stage's β.
//   pairs "online"  every step: N samples per prompt from the current policy, each one row,
//                   labelled by the row's verifier (desirable = score 1, undesirable otherwise)
//   pairs "offline" the offline pairs above, unpaired (TRL's unpair_preference_dataset: chosen
//                   desirable, rejected undesirable); each step `batch` pairs = 2·batch rows
// pack_kto builds the mismatched pairs (completions rotated by one) for KTO's z0.
#include "preferences.hpp"

namespace reference_trainer::stages {

// algo::kto_vanilla_paired: paired KTO (pipeline::kto_paired_step; the pairs are run_dpo's).
template <class R>
inline constexpr bool paired_kto = std::is_same_v<R, rt::pt::algo::kto_vanilla_paired>;

template <class R>
constexpr bool uses_reference() {
  if constexpr (paired_kto<R>)
    return true;
  else
    return R::uses_reference;
}

template <class R>
auto make_reference(rt::policy<S>& p) {
  if constexpr (uses_reference<R>())
    return rt::pp::reference::frozen<rt::policy<S>>(p);
  else
    return rt::pp::reference::none<S>{};
}

// The offline pairs of a dpo-family stage: sampled once from the stage's prompts before its first
// step, stored as OUT/data/stageK_pairs.jsonl and read back (the file is the interface).
template <class Gen>
sampled_preferences sample_offline_pairs(const context& c, const rt::stage_options& s, Gen& gen,
                                         std::vector<rt::pp::preference_example>& offline) {
  const auto pick = batch_rows(c.recipe.seed, c.stage_index, 0, s.prompts, c.data.rl.size());
  auto sampled = sample_preferences(c, s, gen, c.data.rl, pick, 0, false);
  offline = store_preferences(sampled.rows, c.out_dir / "data" /
                                                ("stage" + std::to_string(c.stage_index) + "_pairs.jsonl"),
                              c.comm);
  if (offline.empty())
    throw std::runtime_error("stage " + std::to_string(c.stage_index) +
                             " (dpo, offline pairs): every sample was correct, no pair to learn "
                             "from; raise prompts, samples or temperature");
  return sampled;
}

template <class R>
void run_dpo(context& c, const rt::stage_options& s) {
  auto opt = make_optimizer(s);
  auto reference = make_reference<R>(c.policy);
  rt::generator<S> gen(c.policy);
  stage_reward reward = reward_of(c, s);
  rt::pp::preference_step_options<R> o;
  if constexpr (requires { R::defaults(); }) o.loss = R::defaults().loss;
  if constexpr (requires { o.loss.beta; }) o.loss.beta = s.beta;
  o.max_grad_norm = s.max_grad_norm;
  const byte_tokenizer tok;
  std::vector<rt::pp::preference_example> offline;
  if (s.pairs == "offline") {
    const auto sampled = sample_offline_pairs(c, s, gen, offline);
    c.out.log("dpo: " + std::to_string(offline.size()) + " offline pairs from " +
              std::to_string(sampled.samples) + " samples (reward " +
              std::to_string(sampled.mean_reward).substr(0, 5) + ")");
  }
  rt::trainer_communicator alone = rt::trainer_communicator::single();
  for (long step = c.ckpt->begin({{c.policy.parameters(), &opt}}); step <= s.steps; ++step) {
    check_interrupt(c, step);
    rt::trainer_communicator* comm = c.comm;  // the step's: all ranks, or this one alone
    rt::pp::owned_sequences chosen, rejected;
    std::vector<float> chosen_mask, rejected_mask;
    nlohmann::json rec{{"stage", "dpo"}, {"algo", s.algo}, {"stage_index", c.stage_index},
                       {"step", step}};
    double generated = 0, mean_reward = 0;
    if (s.pairs == "offline") {
      std::vector<rt::pp::preference_example> batch;
      // This rank's share of the step's pairs (distributed.hpp; every rank holds every pair).
      for (std::size_t i : c.comm->shard(batch_rows(c.recipe.seed, c.stage_index, step, s.batch, offline.size())))
        batch.push_back(offline[i]);
      auto packed = rt::pp::pack_preference(tok, std::span<const rt::pp::preference_example>(batch), {},
                                            s.mask_format);
      chosen = std::move(packed.chosen);
      rejected = std::move(packed.rejected);
      chosen_mask = std::move(packed.chosen_mask);
      rejected_mask = std::move(packed.rejected_mask);
    } else {
      const auto rows = batch_rows(c.recipe.seed, c.stage_index, step, s.prompts, c.data.rl.size());
      const prompt_set p = render_prompts(c.data.rl, rows);
      auto pairs = rt::pp::online_preference_pairs(gen, reward, make_request(c, s, p, step),
                                                   c.policy.vocab_size());
      if (s.mask_format) rt::pp::mask_format(pairs, {});
      mean_reward = mean_of(pairs.samples.rewards);
      generated = static_cast<double>(pairs.samples.out.completions.tokens.size());
      rec["reward"] = mean_reward;
      chosen = std::move(pairs.chosen);
      rejected = std::move(pairs.rejected);
      chosen_mask = std::move(pairs.chosen_mask);
      rejected_mask = std::move(pairs.rejected_mask);
      // Every rank drew the same pairs; this rank trains on its contiguous share (uneven when the
      // ranks do not divide the pair count). Fewer pairs than ranks: every rank runs the whole,
      // identical step alone (no rank may join a step with no pair).
      const index_t all = chosen.num_sequences(), ranks = c.comm->size(), r = c.comm->rank();
      if (ranks > 1 && all >= ranks) {
        keep_sequences(chosen, chosen_mask, all * r / ranks, all * (r + 1) / ranks);
        keep_sequences(rejected, rejected_mask, all * r / ranks, all * (r + 1) / ranks);
      } else if (ranks > 1) {
        comm = &alone;
      }
    }
    double global_pairs = static_cast<double>(chosen.num_sequences());
    comm->all_reduce_sum(std::span<double>(&global_pairs, 1));
    const auto n_pairs = static_cast<std::size_t>(global_pairs);
    rec["pairs"] = n_pairs;
    rec["time_s"] = c.out.seconds();
    char live[128];
    if (n_pairs == 0) {
      // Every group all-correct or all-wrong: no preference signal this step.
      std::snprintf(live, sizeof live, "reward %.3f  no pairs", mean_reward);
    } else if constexpr (paired_kto<R>) {
      const auto m = rt::pp::kto_paired_step<R>(
          c.policy, reference, opt, {chosen.view(), rejected.view(), chosen_mask, rejected_mask}, o,
          *comm);
      rec.update(to_json(m));
      std::snprintf(live, sizeof live, "reward %.3f  pairs %zu  loss %.4f  KL_c %.4f  KL_r %.4f",
                    mean_reward, n_pairs, m.loss, m.kl_chosen, m.kl_rejected);
    } else {
      const auto m = rt::pp::preference_step<R>(
          c.policy, reference, opt, {chosen.view(), rejected.view(), chosen_mask, rejected_mask}, o,
          *comm);
      rec.update(to_json(m));
      std::snprintf(live, sizeof live, "reward %.3f  pairs %zu  loss %.4f", mean_reward, n_pairs,
                    m.loss);
    }
    c.out.record(rec);
    c.out.step(step, generated + static_cast<double>(chosen.tokens.size() + rejected.tokens.size()), live);
    c.ckpt->after_step(step);
  }
}

template <class K>
void run_kto(context& c, const rt::stage_options& s) {
  auto opt = make_optimizer(s);
  rt::pp::reference::frozen<rt::policy<S>> reference(c.policy);
  rt::generator<S> gen(c.policy);
  rt::pp::kto_step_options<K> o;
  o.loss = K::defaults().loss;
  o.loss.beta = s.beta;
  o.max_grad_norm = s.max_grad_norm;
  const byte_tokenizer tok;
  std::vector<rt::pp::preference_example> offline;
  if (s.pairs == "offline") {
    const auto sampled = sample_offline_pairs(c, s, gen, offline);
    c.out.log("kto: " + std::to_string(offline.size()) + " offline pairs (unpaired: " +
              std::to_string(2 * offline.size()) + " rows) from " + std::to_string(sampled.samples) +
              " samples");
  }
  const reward_t verifier{};
  if (s.pairs != "offline" && s.reward != "verifier")
    c.out.log("kto: rows labelled by the verifier (the stage's reward \"" + s.reward +
              "\" is not used)");
  for (long step = c.ckpt->begin({{c.policy.parameters(), &opt}}); step <= s.steps; ++step) {
    check_interrupt(c, step);
    std::vector<rt::pp::kto_example> rows;
    nlohmann::json rec{{"stage", "dpo"}, {"algo", s.algo}, {"stage_index", c.stage_index},
                       {"step", step}};
    double generated = 0, mean_reward = 0;
    if (s.pairs == "offline") {
      for (std::size_t i : batch_rows(c.recipe.seed, c.stage_index, step, s.batch, offline.size())) {
        rows.push_back({offline[i].prompt, offline[i].chosen, true});
        rows.push_back({offline[i].prompt, offline[i].rejected, false});
      }
    } else {
      const auto pick = batch_rows(c.recipe.seed, c.stage_index, step, s.prompts, c.data.rl.size());
      const prompt_set p = render_prompts(c.data.rl, pick);
      auto scorer = verifier;
      const auto scored = rt::pp::sample_and_score(gen, scorer, make_request(c, s, p, step),
                                                   c.policy.vocab_size());
      const auto completions = scored.out.completions.view();
      const auto off = completions.seq_offsets;
      const std::size_t n = static_cast<std::size_t>(s.samples);
      for (index_t b = 0; b < completions.num_sequences(); ++b) {
        const auto i = static_cast<std::size_t>(b) / n;  // prompt i's samples are i·N … i·N+N−1
        rows.push_back({c.data.rl[pick[i]].messages,
                        {{"assistant", response_text(completions.tokens.subspan(off[b], off[b + 1] - off[b]))}},
                        scored.rewards[static_cast<std::size_t>(b)] >= 1.0});
      }
      mean_reward = mean_of(scored.rewards);
      generated = static_cast<double>(completions.tokens.size());
      rec["reward"] = mean_reward;
    }
    // Packed over the whole step's rows (the mismatched KL pairs rotate completions within the
    // global batch, as in one process), then this rank's contiguous share of examples and KL pairs:
    // kto_step all-reduces z0's partial sums and the normaliser, so R ranks give one process's update.
    const auto packed = rt::pp::pack_kto(tok, std::span<const rt::pp::kto_example>(rows), {}, s.mask_format);
    const auto all_examples = packed.examples.view(), all_kl = packed.kl_examples.view();
    const index_t share = all_examples.num_sequences() / c.comm->size();
    const index_t b0 = share * c.comm->rank(), b1 = b0 + share;
    const auto ex = rt::pp::make_slice(all_examples, b0, b1);
    rt::pp::kto_data data{ex.view_of(all_examples, b0, b1),
                          std::span<const float>(packed.mask).subspan(static_cast<std::size_t>(ex.token_begin),
                                                                      static_cast<std::size_t>(ex.token_end - ex.token_begin)),
                          std::span<const std::uint8_t>(packed.desirable).subspan(static_cast<std::size_t>(b0),
                                                                                  static_cast<std::size_t>(share)),
                          {}, {}};
    rt::pp::sequence_slice kl;
    if (!all_kl.seq_offsets.empty()) {
      kl = rt::pp::make_slice(all_kl, b0, b1);
      data.kl_examples = kl.view_of(all_kl, b0, b1);
      data.kl_mask = std::span<const float>(packed.kl_mask).subspan(static_cast<std::size_t>(kl.token_begin),
                                                                    static_cast<std::size_t>(kl.token_end - kl.token_begin));
    }
    const auto m = rt::pp::kto_step<K>(c.policy, reference, opt, data, o, *c.comm);
    rec.update(to_json(m));
    rec["time_s"] = c.out.seconds();
    char live[112];
    std::snprintf(live, sizeof live, "reward %.3f  desirable %.2f  loss %.4f  z0 %.4f", mean_reward,
                  desirable_fraction(m), m.loss, m.kl_reference);
    c.out.record(rec);
    c.out.step(step, generated + static_cast<double>(packed.examples.tokens.size() +
                                                     packed.kl_examples.tokens.size()), live);
    c.ckpt->after_step(step);
  }
}

}  // namespace reference_trainer::stages
