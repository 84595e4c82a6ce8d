#pragma once
// rs_sft: rejection sampling (best of N by the verifier), SFT on the accepted samples.
#include "common.hpp"

namespace reference_trainer::stages {

// rs_sft: rejection sampling (pipeline::rejection_sampling: best of N per prompt by the stage's
// reward, first argmax) from the current policy, then one SFT step on the kept samples: those the
// verifier accepts (DeepSeek-V3's "SFT data filtered by rejection sampling"), or every best-of-N
// when the reward model ranks them (Llama 3's RS).
// Data-parallel (mpirun): each rank samples its share of the prompts; the kept counts differ per
// rank, so a rank that kept none trains on one fully masked sample (a no-op) to join the step.
template <class Loss>
void run_rs_sft(context& c, const rt::stage_options& s) {
  auto opt = make_optimizer(s);
  rt::generator<S> gen(c.policy);
  stage_reward reward = reward_of(c, s);
  const bool verifier_only = reward.model == nullptr;
  rt::pp::sft_step_options<Loss> o;
  o.max_grad_norm = s.max_grad_norm;
  for (long step = c.ckpt->begin({{c.policy.parameters(), &opt}}); step <= s.steps; ++step) {
    check_interrupt(c, step);
    // This rank's share of the prompts; sample k of the global batch draws with the same seed on
    // any layout (distributed.hpp).
    const auto rows = c.comm->shard(batch_rows(c.recipe.seed, c.stage_index, step, s.prompts, c.data.rl.size()));
    const prompt_set p = render_prompts(c.data.rl, rows);
    auto req = make_request(c, s, p, step);
    req.first_sample_index = c.comm->first_row(static_cast<std::size_t>(s.prompts)) * static_cast<std::size_t>(s.samples);
    const auto best = rt::pp::rejection_sampling(gen, reward, req, c.policy.vocab_size());
    // Verifier rewards: keep only accepted samples (reward > 0): a wrong best-of-N is not SFT data.
    rt::pp::owned_sequences kept;
    std::vector<float> mask;
    const auto all = best.sequences.view();
    for (std::size_t i = 0; i < best.best_reward.size(); ++i) {
      if (verifier_only && !(best.best_reward[i] > 0)) continue;
      const auto b0 = all.seq_offsets[i], b1 = all.seq_offsets[i + 1];
      kept.append(all.tokens.subspan(b0, b1 - b0));
      mask.insert(mask.end(), best.loss_mask.begin() + b0, best.loss_mask.begin() + b1);
    }
    // Global: Σ rewards, samples, kept (over the ranks).
    std::array<double, 3> global{0, static_cast<double>(best.samples.rewards.size()),
                                 static_cast<double>(kept.num_sequences())};
    for (double r : best.samples.rewards) global[0] += r;
    c.comm->all_reduce_sum(std::span<double>(global));
    const double mean_reward = global[1] > 0 ? global[0] / global[1] : 0.0;
    const auto n_kept = static_cast<long>(global[2]);
    nlohmann::json rec{{"stage", "rs_sft"}, {"stage_index", c.stage_index}, {"step", step},
                       {"reward", mean_reward}, {"kept", n_kept}, {"time_s", c.out.seconds()}};
    char live[96];
    std::snprintf(live, sizeof live, "reward %.3f  kept %ld/%ld", mean_reward, n_kept, s.prompts);
    if (n_kept > 0) {
      // A rank that kept nothing joins the step with one sample whose loss mask is all 0: no
      // loss, no gradient, no token in the normaliser (the step all-reduces on every rank).
      if (kept.num_sequences() == 0) {
        const auto b1 = all.seq_offsets[1];
        kept.append(all.tokens.subspan(0, b1));
        mask.assign(static_cast<std::size_t>(b1), 0.0f);
      }
      const auto m = rt::pp::sft_step<Loss>(c.policy, opt, {kept.view(), mask}, o, *c.comm);
      rec["loss"] = m.loss;
      rec["grad_norm"] = m.grad_norm;
    }
    c.out.record(rec);
    c.out.step(step, static_cast<double>(best.samples.out.completions.tokens.size()), live);
    c.ckpt->after_step(step);
  }
}

}  // namespace reference_trainer::stages
