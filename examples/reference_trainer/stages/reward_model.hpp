#pragma once
// reward_model: a scalar-head copy of the current policy (adapters.hpp reward_model<S>) trained
// with pipeline::reward_model_step<algo::bradley_terry> (no margin: Llama 3) on preference rows
// from the policy's own samples, verifier-ranked with Llama 3's edited > chosen > rejected
// (stages/preferences.hpp). The rows go to OUT/data/stageK_rm_{train,heldout}.jsonl; the held-out
// rows come from eval prompts, and the pairwise accuracy on them (score(chosen) > score(rejected))
// is the stage's metric. The trained model becomes the context's reward model (later stages:
// reward "rm" / "verifier+rm", the round's ranking, PPO's critic) and is saved with the stage's
// checkpoint (save_reward_model).
// Data-parallel (mpirun, distributed.hpp): every rank samples the same rows (rank 0 writes the
// files) and trains on its share of each step's `batch`; the step all-reduces the gradients.
#include "preferences.hpp"

namespace reference_trainer::stages {

// Pairwise accuracy of `model` on rows: the fraction with score(chosen) > score(rejected).
inline double pairwise_accuracy(rt::reward_model<S>& model,
                                const std::vector<rt::pp::preference_example>& rows) {
  if (rows.empty()) return 0.0;
  long right = 0;
  constexpr std::size_t chunk = 32;
  for (std::size_t b0 = 0; b0 < rows.size(); b0 += chunk) {
    std::vector<std::size_t> pick;
    for (std::size_t i = b0; i < std::min(rows.size(), b0 + chunk); ++i) pick.push_back(i);
    const packed_rm_rows p = pack_rm_rows(rows, pick);
    const auto sc = model.forward(p.chosen.view());
    const std::vector<S> chosen(sc.begin(), sc.end());
    const auto rejected = model.forward(p.rejected.view());
    for (std::size_t i = 0; i < pick.size(); ++i) right += chosen[i] > rejected[i] ? 1 : 0;
  }
  return static_cast<double>(right) / static_cast<double>(rows.size());
}

inline void run_reward_model(context& c, const rt::stage_options& s) {
  rt::generator<S> gen(c.policy);
  const std::string prefix = "stage" + std::to_string(c.stage_index) + "_rm_";
  const auto train_pick = batch_rows(c.recipe.seed, c.stage_index, 0, s.prompts, c.data.rl.size());
  std::vector<std::size_t> held_pick(std::min<std::size_t>(static_cast<std::size_t>(s.held_out), c.data.eval.size()));
  std::iota(held_pick.begin(), held_pick.end(), std::size_t{0});
  const auto sampled = sample_preferences(c, s, gen, c.data.rl, train_pick, 0, true);
  const auto train = store_preferences(sampled.rows, c.out_dir / "data" / (prefix + "train.jsonl"), c.comm);
  const auto held = store_preferences(
      sample_preferences(c, s, gen, c.data.eval, held_pick, s.steps + 1, true).rows,
      c.out_dir / "data" / (prefix + "heldout.jsonl"), c.comm);
  if (train.empty())
    throw std::runtime_error("stage " + std::to_string(c.stage_index) +
                             " (reward_model): no preference rows (every sample of every prompt "
                             "was correct); raise prompts or temperature");
  long edited = 0;
  for (const auto& e : train) edited += e.edited ? 1 : 0;
  c.out.log("reward_model: " + std::to_string(train.size()) + " training rows (" +
            std::to_string(edited) + " with an edited response) from " +
            std::to_string(sampled.samples) + " samples, " + std::to_string(held.size()) +
            " held-out rows");

  auto model = std::make_shared<rt::reward_model<S>>(c.policy.model());
  auto opt = make_optimizer(s);
  rt::pp::reward_model_step_options<rt::pt::algo::bradley_terry> o;
  o.loss = rt::pt::algo::bradley_terry::defaults().loss;
  o.max_grad_norm = s.max_grad_norm;
  // Mid-stage checkpoints hold the policy first (it is not trained here: an unused optimizer; the
  // checkpointer restores the stage's start parameters from it) and the reward model with its AdamW
  // state. The rows above are sampled from the stage's start policy, so a resumed stage draws the
  // same ones.
  auto policy_opt = make_optimizer(s);
  for (long step = c.ckpt->begin({{c.policy.parameters(), &policy_opt}, {model->parameters(), &opt}});
       step <= s.steps; ++step) {
    check_interrupt(c, step);
    // This rank's share of the step's rows (every rank sampled and holds all of them).
    const auto pick = c.comm->shard(batch_rows(c.recipe.seed, c.stage_index, step, s.batch, train.size()));
    const packed_rm_rows p = pack_rm_rows(train, pick);
    const auto m = rt::pp::reward_model_step<rt::pt::algo::bradley_terry>(*model, opt, p.data(), o, *c.comm);
    nlohmann::json rec = to_json(m);
    rec.update({{"stage", "reward_model"}, {"stage_index", c.stage_index}, {"step", step},
                {"time_s", c.out.seconds()}});
    c.out.record(rec);
    char live[96];
    std::snprintf(live, sizeof live, "loss %.4f  train acc %.2f", m.loss, m.accuracy);
    c.out.step(step, static_cast<double>(p.chosen.tokens.size() + p.rejected.tokens.size()), live);
    c.ckpt->after_step(step);
  }
  const double acc = pairwise_accuracy(*model, held);
  c.out.record({{"event", "rm_eval"}, {"stage", "reward_model"}, {"stage_index", c.stage_index},
                {"rm_heldout_accuracy", acc}, {"heldout_pairs", held.size()},
                {"train_rows", train.size()}, {"sample_reward", sampled.mean_reward}});
  char note[96];
  std::snprintf(note, sizeof note, "RM pairwise acc %.3f (%zu held-out pairs)", acc, held.size());
  c.note = note;
  c.reward_model = std::move(model);
}

// The reward model as a checkpoint directory: the trunk in HF layout (config.json +
// model.safetensors) and the score head as score.safetensors ("score.weight", [1, H]).
inline void save_reward_model(rt::reward_model<S>& m, const fs::path& dir) {
  rt::rm::save_checkpoint(m.trunk(), dir);
  const auto& w = m.head().weight;
  rt::rm::write_safetensors<S>(dir / "score.safetensors",
                               {{"score.weight", {1, static_cast<index_t>(w.size())},
                                 std::span<const S>(w.data(), static_cast<std::size_t>(w.size()))}});
}

inline std::shared_ptr<rt::reward_model<S>> load_reward_model(const fs::path& dir) {
  auto m = std::make_shared<rt::reward_model<S>>(rt::rm::load_checkpoint<S>(dir));
  const rt::rm::safetensors_file f(dir / "score.safetensors");
  std::vector<S> w(static_cast<std::size_t>(m->head().weight.size()));
  f.read<S>("score.weight", std::span<S>(w));
  m->set_head(w);
  return m;
}

}  // namespace reference_trainer::stages
