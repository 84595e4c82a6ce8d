#pragma once
// round: one Llama 3 post-training round through pipeline::iterative_round, on the current policy
// and the reward model of the reward_model stage before it (reward "rm"; "verifier+rm" mixes in
// the verifier):
//   best of `samples` samples for each of `prompts` prompts by the reward model (rejection
//   sampling) → `steps` full-batch SFT passes on them → `runs` DPO runs (algo::dpo_nll, Llama 3's
//   β 0.1 and NLL 0.2 on the chosen tokens; `beta` overrides β), each on best/worst pairs of its
//   own new draw with the format tokens masked, `steps` full-batch passes each → the runs averaged
//   (model averaging). The recipe repeats [reward_model, round] for R rounds: each round samples
//   the latest model and retrains the reward model first.
#include "common.hpp"

namespace reference_trainer::stages {

// Checkpoints: the round is one step (pipeline::iterative_round runs its SFT and DPO passes in one
// call), so it cannot stop or resume part-way. Ctrl-C before it starts saves step 0; Ctrl-C during
// it is acted on when the round has finished (after_step(1) saves the finished round's policy, and
// --resume continues with the next stage). Its optimizers live only inside the round, so nothing
// else needs saving. A recipe-level checkpoint_every does not reach inside the round (it logs so
// when the round starts); a stage-level one on a round stage is an error (trainer.cpp).
inline void run_round(context& c, const rt::stage_options& s) {
  using sft_loss = rt::pt::algo::sft;
  using dpo_loss = rt::pt::algo::dpo_nll;
  auto sft_opt = make_optimizer(s);
  auto dpo_opt = make_optimizer(s);
  if (c.ckpt->begin({{c.policy.parameters(), &sft_opt}}) > 1) return;  // saved after the round
  check_interrupt(c, 1);
  c.out.log("round: one indivisible step (sampling, " + std::to_string(s.steps) + " SFT passes, " +
            std::to_string(s.runs) + " DPO runs): no checkpoint inside it; Ctrl-C stops after it, "
            "and after a crash --resume redoes the whole round");
  rt::generator<S> gen(c.policy);
  stage_reward reward = reward_of(c, s);
  const auto rows = batch_rows(c.recipe.seed, c.stage_index, 1, s.prompts, c.data.rl.size());
  const prompt_set p = render_prompts(c.data.rl, rows);
  rt::pp::round_options<sft_loss, dpo_loss> o;
  o.sampling = make_request(c, s, p, 1);
  o.sft_epochs = s.steps;
  o.sft.max_grad_norm = s.max_grad_norm;
  o.dpo_epochs = s.steps;
  o.dpo.loss = dpo_loss::paper().loss;
  o.dpo.loss.beta = s.beta;
  o.dpo.max_grad_norm = s.max_grad_norm;
  o.dpo_runs = s.runs;
  o.mask_format_tokens = true;
  const auto m = rt::pp::iterative_round(c.policy, gen, reward, sft_opt, dpo_opt, o);
  c.out.record({{"stage", "round"}, {"stage_index", c.stage_index}, {"step", 1},
                {"best_of_n_reward", m.best_of_n_reward}, {"sft_loss", m.sft_loss},
                {"pairs", m.pairs}, {"dpo_loss", m.dpo_loss},
                {"dpo_reward_accuracy", m.dpo_reward_accuracy}, {"runs", s.runs},
                {"time_s", c.out.seconds()}});
  char live[128];
  std::snprintf(live, sizeof live, "best-of-N RM score %.3f  sft loss %.4f  pairs %ld  dpo loss %.4f",
                m.best_of_n_reward, m.sft_loss, static_cast<long>(m.pairs), m.dpo_loss);
  c.out.step(1, 0.0, live);
  char note[96];
  std::snprintf(note, sizeof note, "%ld DPO runs averaged, %ld pairs", s.runs, static_cast<long>(m.pairs));
  c.note = note;
  c.ckpt->after_step(1);
}

}  // namespace reference_trainer::stages
