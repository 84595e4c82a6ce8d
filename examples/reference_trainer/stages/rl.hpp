#pragma once
// rl: online RL through pipeline::rl_step with the named algorithm and conventions preset.
//   reward   the stage's reward: verifier, rm, or verifier + rm_weight · RM (DeepSeek-V3)
//   order    "reward_variance" (Qwen2.5): before the first step the stage's steps × prompts prompts
//            are sampled N times each under the stage's reward and taken in the order of
//            pipeline::order_by_reward_variance (high-variance prompts first); "random": a seeded
//            draw per step
//   critic   (PPO) from the last reward_model stage's model when there is one (Tülu 3: the value
//            model starts as the reward model), else from the policy's trunk
#include "common.hpp"

namespace reference_trainer::stages {

// The preset of recipe R under the named conventions; an algorithm a peer does not have is an
// error naming the conventions it does have.
template <class R>
typename R::preset_type preset_for(const std::string& conv, const std::string& algo) {
  std::string have;
  if constexpr (requires { R::trl(); }) {
    if (conv == "trl") return R::trl();
    have += " trl";
  }
  if constexpr (requires { R::verl(); }) {
    if (conv == "verl") return R::verl();
    have += " verl";
  }
  if constexpr (requires { R::openrlhf(); }) {
    if (conv == "openrlhf") return R::openrlhf();
    have += " openrlhf";
  }
  if constexpr (requires { R::open_instruct(); }) {
    if (conv == "open_instruct") return R::open_instruct();
    have += " open_instruct";
  }
  throw usage_error("algorithm " + algo + " has no " + conv + " conventions; it has:" + have);
}

// The conventions recipe R has presets for, e.g. "trl verl".
template <class R>
std::string conventions_of() {
  std::string have;
  if constexpr (requires { R::trl(); }) have += " trl";
  if constexpr (requires { R::verl(); }) have += " verl";
  if constexpr (requires { R::openrlhf(); }) have += " openrlhf";
  if constexpr (requires { R::open_instruct(); }) have += " open_instruct";
  return have;
}

// rl: pipeline::rl_step with recipe R (its loss, its estimator, the conventions' preset).
template <class R>
void run_rl(context& c, const rt::stage_options& s) {
  using E = typename R::advantage;
  auto preset = preset_for<R>(c.conventions, s.algo);
  auto opt = make_optimizer(s);
  rt::generator<S> gen(c.policy);
  stage_reward reward = reward_of(c, s);
  rt::pp::rl_step_options<R, E> o;
  o.loss = preset.loss;
  o.estimator = preset.advantage;
  if constexpr (requires { o.loss.policy.kl_coef; })
    if (s.kl_coef > 0) o.loss.policy.kl_coef = s.kl_coef;
  o.samples_per_prompt = s.samples;
  o.epochs = s.epochs;
  o.mini_batch = s.mini_batch;
  o.max_grad_norm = s.max_grad_norm;
  o.sampling.temperature = s.temperature;
  o.sampling.max_new_tokens = s.max_new_tokens;
  o.sampling.stop_tokens = {byte_tokenizer::end_of_turn};
  o.temperature = s.temperature;
  // Constant-divisor aggregations (Dr. GRPO, TRL's dr_grpo) divide by the generation budget.
  o.normalizer_constant = static_cast<double>(s.max_new_tokens);
  // PPO's GAE reads values: a critic, from the reward model (Tülu 3) or the policy's trunk.
  // KL anchor: the policy now (a frozen copy), only when the loss reads it (kl_coef ≠ 0): at β = 0
  // rl_step skips the reference pass and takes reference::none (no copy of the weights).
  std::optional<rt::pp::reference::frozen<rt::policy<S>>> frozen;
  if (rt::pt::loss_reference_needed<R>(o.loss)) frozen.emplace(c.policy);
  rt::pp::reference::none<S> no_reference;
  std::optional<rt::critic<S>> critic;
  std::optional<rt::pt::optim::adamw> critic_opt;
  if constexpr (E::contract.values) {
    if (c.reward_model) {
      critic.emplace(c.reward_model->trunk(), c.reward_model->head());
      c.out.log("rl: the critic starts from the reward model of the last reward_model stage");
    } else {
      critic.emplace(c.policy.model());
    }
    critic_opt.emplace(make_optimizer(s));
  }
  std::vector<std::size_t> ordered;  // order "reward_variance": every step's prompts, in order
  if (s.order == "reward_variance") {
    for (long step = 1; step <= s.steps; ++step) {
      const auto r = batch_rows(c.recipe.seed, c.stage_index, step, s.prompts, c.data.rl.size());
      ordered.insert(ordered.end(), r.begin(), r.end());
    }
    // Scored `prompts` prompts at a time (bounded memory); sample seeds by global sample index,
    // as one request over the whole pool would draw them.
    rt::generator<S> scout(c.policy);
    std::vector<double> rewards;
    for (std::size_t b0 = 0; b0 < ordered.size(); b0 += static_cast<std::size_t>(s.prompts)) {
      const std::size_t b1 = std::min(ordered.size(), b0 + static_cast<std::size_t>(s.prompts));
      const prompt_set chunk = render_prompts(c.data.rl, std::span<const std::size_t>(ordered).subspan(b0, b1 - b0));
      auto req = make_request(c, s, chunk, 0);
      req.first_sample_index = b0 * static_cast<std::size_t>(s.samples);
      const auto scored = rt::pp::sample_and_score(scout, reward, req, c.policy.vocab_size());
      rewards.insert(rewards.end(), scored.rewards.begin(), scored.rewards.end());
    }
    const auto order = rt::pp::order_by_reward_variance(rewards, s.samples);
    std::vector<std::size_t> sorted;
    for (index_t i : order) sorted.push_back(ordered[static_cast<std::size_t>(i)]);
    ordered = std::move(sorted);
    c.out.log("rl: " + std::to_string(ordered.size()) + " prompts ordered by reward variance");
  }
  std::vector<rt::trainable> trained{{c.policy.parameters(), &opt}};
  if (critic) trained.push_back({critic->parameters(), &*critic_opt});
  for (long step = c.ckpt->begin(trained); step <= s.steps; ++step) {
    check_interrupt(c, step);
    auto rows = batch_rows(c.recipe.seed, c.stage_index, step, s.prompts, c.data.rl.size());
    if (!ordered.empty())
      rows.assign(ordered.begin() + (step - 1) * s.prompts, ordered.begin() + step * s.prompts);
    rows = c.comm->shard(rows);  // this rank's share (distributed.hpp)
    const prompt_set p = render_prompts(c.data.rl, rows);
    o.seed = rt::pp::sample_seed(c.recipe.seed + c.stage_index, static_cast<std::uint64_t>(step));
    o.first_sample_index = c.comm->first_row(static_cast<std::size_t>(s.prompts)) * static_cast<std::size_t>(s.samples);
    const rt::pp::rl_batch batch{p.prompts.view(), p.examples};
    auto step_with = [&](auto& reference) {
      if constexpr (E::contract.values)
        return rt::pp::rl_step<R, E>(c.policy, gen, reference, reward, opt, *critic, *critic_opt,
                                     batch, o, *c.comm);
      else
        return rt::pp::rl_step<R, E>(c.policy, gen, reference, reward, opt, batch, o, *c.comm);
    };
    const rt::pp::rl_metrics m = frozen ? step_with(*frozen) : step_with(no_reference);
    nlohmann::json rec = to_json(m);
    rec.update({{"stage", "rl"}, {"algo", s.algo}, {"stage_index", c.stage_index}, {"step", step},
                {"response_length", m.completion_tokens / static_cast<double>(s.prompts * s.samples)},
                {"time_s", c.out.seconds()}});
    c.out.record(rec);
    char live[96];
    std::snprintf(live, sizeof live, "reward %.3f  loss %+.4f  kl(ref) %.4f", m.reward_mean, m.loss,
                  m.kl_loss);
    c.out.step(step, static_cast<double>(p.prompts.tokens.size()) + m.completion_tokens, live);
    c.ckpt->after_step(step);
  }
}

}  // namespace reference_trainer::stages
