#pragma once
// round: one Llama 3 post-training round on the current policy and the reward model of the
// reward_model stage before it (reward "rm"; "verifier+rm" mixes in the verifier):
//   best of `samples` samples for each of `prompts` prompts by the reward model (rejection
//   sampling) → `steps` full-batch SFT passes on them → `runs` DPO runs (algo::dpo_nll, Llama 3's
//   β 0.1 and NLL 0.2 on the chosen tokens; `beta` overrides β), each on best/worst pairs of its
//   own new draw from the SFT model with the format tokens masked, against the SFT model as frozen
//   reference, `steps` full-batch passes each, from a fresh optimizer → the runs averaged
//   (uniform_average: Llama 3's model averaging). The recipe repeats [reward_model, round] for R
//   rounds: each round samples the latest model and retrains the reward model first.
//
// pipeline::iterative_round does all of this in one call; the stage runs the same phases itself
// (same seeds: best-of-N with the stage's request seed, DPO run k's pairs with seed + 1 + k) so
// that every pass is a step that can be checkpointed and resumed:
//   steps 1 … E                    SFT pass e (E = `steps`)
//   steps E + k·E + 1 … E + (k+1)·E  DPO run k, pass 1 … E            (k = 0 … runs − 1)
// A mid-stage checkpoint holds the policy with its optimizer (the SFT one, then run k's), the SFT
// model (run k's start and the DPO reference), each finished run's result, and the run
// statistics; the best-of-N rows are redrawn from the stage's start policy and run k's pairs from
// the SFT model, which gives the same ones. So N steps + --resume equal the uninterrupted round
// byte for byte (tests resume_mid_stages, resume_mid_round).
#include "common.hpp"

namespace reference_trainer::stages {

inline void run_round(context& c, const rt::stage_options& s) {
  using sft_loss = rt::pt::algo::sft;
  using dpo_loss = rt::pt::algo::dpo_nll;
  const long E = s.steps, runs = s.runs, total = E * (1 + runs);
  if (runs < 1 || runs > 12)
    throw std::runtime_error("stage " + std::to_string(c.stage_index) + " (round): runs " +
                             std::to_string(runs) + ", expected 1 to 12");
  rt::generator<S> gen(c.policy);
  stage_reward reward = reward_of(c, s);
  const auto rows = batch_rows(c.recipe.seed, c.stage_index, 1, s.prompts, c.data.rl.size());
  const prompt_set p = render_prompts(c.data.rl, rows);
  const rt::pp::sampling_request request = make_request(c, s, p, 1);
  // Best of N from the stage's start policy (before begin(): a resumed stage starts from it too).
  const auto best = rt::pp::rejection_sampling(gen, reward, request, c.policy.vocab_size());
  const double best_of_n_reward = mean_of(best.best_reward);
  // Data-parallel (mpirun): every rank draws the same best-of-N rows and pairs (redundantly) and
  // trains on its contiguous share (take_share); the averaging is the same on every rank.
  rt::trainer_communicator alone = rt::trainer_communicator::single();
  rt::pp::owned_sequences sft_rows = best.sequences;
  std::vector<float> sft_mask = best.loss_mask;
  rt::trainer_communicator* sft_comm = take_share(c, alone, sft_rows, sft_mask);
  rt::trainer_communicator* pairs_comm = c.comm;
  index_t pairs_all = 0;

  const auto theta = c.policy.parameters();
  const std::size_t n = theta.size();
  // Checkpointed state besides the policy: the SFT model, each run's result, and per run
  // (pairs, last pass loss, last pass reward accuracy) plus the last SFT pass loss.
  std::vector<float> sft_model(n);
  std::vector<std::vector<float>> results(static_cast<std::size_t>(runs), std::vector<float>(n));
  std::vector<float> stats(static_cast<std::size_t>(1 + 3 * runs), 0.0f);
  auto opt = make_optimizer(s);  // the SFT passes', then each DPO run's (fresh at its first pass)
  std::vector<rt::pt::optim::adamw> unused(static_cast<std::size_t>(runs + 2));
  std::vector<rt::trainable> trained{{theta, &opt}, {sft_model, &unused[0]}, {stats, &unused[1]}};
  for (long k = 0; k < runs; ++k) trained.push_back({results[static_cast<std::size_t>(k)], &unused[static_cast<std::size_t>(k + 2)]});

  rt::pp::sft_step_options<sft_loss> so;
  so.max_grad_norm = s.max_grad_norm;
  rt::pp::preference_step_options<dpo_loss> dpo;
  dpo.loss = dpo_loss::paper().loss;
  dpo.loss.beta = s.beta;
  dpo.max_grad_norm = s.max_grad_norm;
  // With the SFT model in the policy for a moment (the pair draws and the reference are of it).
  std::vector<float> held(n);
  auto with_sft_model = [&](auto&& f) {
    std::copy(theta.begin(), theta.end(), held.begin());
    std::copy(sft_model.begin(), sft_model.end(), theta.begin());
    f();
    std::copy(held.begin(), held.end(), theta.begin());
  };
  std::optional<rt::pp::reference::frozen<rt::policy<S>>> reference;
  long pairs_run = -1;
  rt::pp::preference_pairs pairs;

  for (long step = c.ckpt->begin(std::move(trained)); step <= total; ++step) {
    check_interrupt(c, step);
    nlohmann::json rec{{"stage", "round"}, {"stage_index", c.stage_index}, {"step", step}};
    char live[128];
    double tokens = 0;
    if (step <= E) {
      const auto m = rt::pp::sft_step<sft_loss>(c.policy, opt, {sft_rows.view(), sft_mask}, so, *sft_comm);
      if (step == E) std::copy(theta.begin(), theta.end(), sft_model.begin());
      stats[0] = static_cast<float>(m.loss);
      rec["phase"] = "sft";
      rec["loss"] = m.loss;
      rec["best_of_n_reward"] = best_of_n_reward;
      rec["grad_norm"] = m.grad_norm;
      tokens = static_cast<double>(best.sequences.tokens.size());
      std::snprintf(live, sizeof live, "best-of-N RM score %.3f  sft loss %.4f", best_of_n_reward, m.loss);
    } else {
      const long k = (step - E - 1) / E, e = (step - E - 1) % E;  // run k, pass e (0-based)
      if (e == 0) {  // a run starts from the SFT model with a fresh optimizer
        std::copy(sft_model.begin(), sft_model.end(), theta.begin());
        opt = make_optimizer(s);
      }
      if (!reference) with_sft_model([&] { reference.emplace(c.policy); });
      if (pairs_run != k) {
        with_sft_model([&] {
          auto r = request;
          r.seed = request.seed + 1 + static_cast<std::uint64_t>(k);
          pairs = rt::pp::online_preference_pairs(gen, reward, r, c.policy.vocab_size());
          rt::pp::mask_format(pairs, {});
        });
        pairs_run = k;
        pairs_all = pairs.chosen.num_sequences();
        pairs_comm = take_share(c, alone, pairs.chosen, pairs.chosen_mask);
        take_share(c, alone, pairs.rejected, pairs.rejected_mask);
      }
      const auto np = pairs_all;
      const auto ks = static_cast<std::size_t>(k);
      stats[1 + 3 * ks] = static_cast<float>(np);
      rec["phase"] = "dpo";
      rec["run"] = k;
      rec["pairs"] = np;
      if (np > 0) {  // all groups tied: the run trains nothing (its result is the SFT model)
        const auto m = rt::pp::preference_step<dpo_loss>(
            c.policy, *reference, opt,
            {pairs.chosen.view(), pairs.rejected.view(), pairs.chosen_mask, pairs.rejected_mask}, dpo,
            *pairs_comm);
        stats[2 + 3 * ks] = static_cast<float>(m.loss);
        stats[3 + 3 * ks] = static_cast<float>(m.reward_accuracy);
        rec["loss"] = m.loss;
        rec["reward_accuracy"] = m.reward_accuracy;
        rec["grad_norm"] = m.grad_norm;
        tokens = static_cast<double>(pairs.chosen.tokens.size() + pairs.rejected.tokens.size());
      }
      if (e == E - 1) std::copy(theta.begin(), theta.end(), results[ks].begin());
      std::snprintf(live, sizeof live, "DPO run %ld/%ld  pairs %ld  loss %.4f", k + 1, runs,
                    static_cast<long>(np), np > 0 ? static_cast<double>(stats[2 + 3 * ks]) : 0.0);
    }
    rec["time_s"] = c.out.seconds();
    c.out.record(rec);
    c.out.step(step, tokens, live);
    c.ckpt->after_step(step);
  }
  // Model averaging of the runs (one run: its result is the policy already; no passes: every run's
  // result is the start policy, which the policy still is).
  if (runs > 1 && E > 0) {
    std::vector<std::span<const float>> models(results.begin(), results.end());
    rt::pt::uniform_average(std::span<const std::span<const float>>(models), theta);
  }
  long total_pairs = 0, trained_runs = 0;
  double dpo_loss_mean = 0, accuracy_mean = 0;
  for (long k = 0; k < runs; ++k) {
    const auto ks = static_cast<std::size_t>(k);
    total_pairs += static_cast<long>(stats[1 + 3 * ks]);
    if (stats[1 + 3 * ks] > 0 && E > 0) {
      dpo_loss_mean += stats[2 + 3 * ks];
      accuracy_mean += stats[3 + 3 * ks];
      ++trained_runs;
    }
  }
  if (trained_runs > 0) {
    dpo_loss_mean /= static_cast<double>(trained_runs);
    accuracy_mean /= static_cast<double>(trained_runs);
  }
  c.out.record({{"event", "round"}, {"stage", "round"}, {"stage_index", c.stage_index},
                {"best_of_n_reward", best_of_n_reward}, {"sft_loss", stats[0]}, {"pairs", total_pairs},
                {"dpo_loss", dpo_loss_mean}, {"dpo_reward_accuracy", accuracy_mean}, {"runs", runs},
                {"time_s", c.out.seconds()}});
  char note[96];
  std::snprintf(note, sizeof note, "%ld DPO runs averaged, %ld pairs", runs, total_pairs);
  c.note = note;
}

}  // namespace reference_trainer::stages
