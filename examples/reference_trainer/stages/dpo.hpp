#pragma once
// dpo: preference optimisation on pairs of the policy's own samples.
#include "common.hpp"

namespace reference_trainer::stages {

// dpo: online DPO (Qwen 2): N samples per prompt from the current policy, the verifier picks the
// best and worst (all-equal groups dropped), one preference_step<R> on those pairs.
template <class R>
void run_dpo(context& c, const rt::stage_options& s) {
  auto opt = make_optimizer(s);
  rt::pp::reference::frozen<rt::policy<S>> reference(c.policy);
  rt::generator<S> gen(c.policy);
  reward_t reward{};
  rt::pp::preference_step_options<R> o;
  if constexpr (requires { R::defaults(); }) o.loss = R::defaults().loss;
  if constexpr (requires { o.loss.beta; }) o.loss.beta = s.beta;
  o.max_grad_norm = s.max_grad_norm;
  for (long step = 1; step <= s.steps; ++step) {
    check_interrupt(c, step);
    const auto rows = batch_rows(c.recipe.seed, c.stage_index, step, s.prompts, c.data.rl.size());
    const prompt_set p = render_prompts(c.data.rl, rows);
    rt::pp::sampling_request req;
    req.prompts = p.prompts.view();
    req.examples = p.examples;
    req.samples_per_prompt = s.samples;
    req.sampling.temperature = s.temperature;
    req.sampling.max_new_tokens = s.max_new_tokens;
    req.sampling.stop_tokens = {byte_tokenizer::end_of_turn};
    req.seed = rt::pp::sample_seed(c.recipe.seed + c.stage_index, static_cast<std::uint64_t>(step));
    const auto pairs = rt::pp::online_preference_pairs(gen, reward, req, c.policy.vocab_size());
    double mean_reward = 0;
    for (double r : pairs.samples.rewards) mean_reward += r;
    mean_reward /= static_cast<double>(pairs.samples.rewards.size());
    nlohmann::json rec{{"stage", "dpo"}, {"algo", s.algo}, {"stage_index", c.stage_index},
                       {"step", step}, {"reward", mean_reward}, {"pairs", pairs.prompt.size()},
                       {"time_s", c.out.seconds()}};
    char live[96];
    if (pairs.prompt.empty()) {
      // Every group all-correct or all-wrong: no preference signal this step.
      std::snprintf(live, sizeof live, "reward %.3f  no pairs", mean_reward);
    } else {
      const auto m = rt::pp::preference_step<R>(
          c.policy, reference, opt,
          {pairs.chosen.view(), pairs.rejected.view(), pairs.chosen_mask, pairs.rejected_mask}, o);
      rec["loss"] = m.loss;
      rec["reward_margin"] = m.reward_margin;
      rec["reward_accuracy"] = m.reward_accuracy;
      rec["grad_norm"] = m.grad_norm;
      std::snprintf(live, sizeof live, "reward %.3f  pairs %zu  loss %.4f", mean_reward,
                    pairs.prompt.size(), m.loss);
    }
    c.out.record(rec);
    c.out.step(step, static_cast<double>(pairs.samples.out.completions.tokens.size()), live);
  }
}
}  // namespace reference_trainer::stages
