#pragma once
// sft: chat-formatted answers, prompt masked.
#include "common.hpp"

namespace reference_trainer::stages {

// (token mean) or algo::sft_sum (Tülu 3's sum loss).
template <class Loss>
void run_sft(context& c, const rt::stage_options& s) {
  auto opt = make_optimizer(s);
  const byte_tokenizer tok;
  rt::pp::sft_step_options<Loss> o;
  o.max_grad_norm = s.max_grad_norm;
  for (long step = c.ckpt->begin({{c.policy.parameters(), &opt}}); step <= s.steps; ++step) {
    check_interrupt(c, step);
    std::vector<rt::pp::sft_example> batch;
    for (std::size_t i : c.comm->shard(batch_rows(c.recipe.seed, c.stage_index, step, s.batch, c.data.sft.size())))
      batch.push_back(c.data.sft[i]);
    const auto packed = rt::pp::pack_sft(tok, std::span<const rt::pp::sft_example>(batch));
    const auto m = rt::pp::sft_step<Loss>(c.policy, opt, {packed.sequences.view(), packed.loss_mask}, o, *c.comm);
    nlohmann::json rec = to_json(m);
    rec.update({{"stage", "sft"}, {"stage_index", c.stage_index}, {"step", step}, {"time_s", c.out.seconds()}});
    c.out.record(rec);
    char live[64];
    std::snprintf(live, sizeof live, "loss %.4f", m.loss);
    c.out.step(step, static_cast<double>(packed.sequences.tokens.size()), live);
    c.ckpt->after_step(step);
  }
}

// rs_sft: rejection sampling (pipeline::rejection_sampling: best of N per prompt by the
// verifier, first argmax) from the current policy, then one SFT step on the kept samples that the
}  // namespace reference_trainer::stages
