#pragma once
// pretrain: next-token prediction on the plain-text corpus.
#include "common.hpp"

namespace reference_trainer::stages {

// pretrain: next-token prediction on the plain-text corpus (every token but the first trained).
void run_pretrain(context& c, const rt::stage_options& s) {
  auto opt = make_optimizer(s);
  const byte_tokenizer tok;
  rt::pp::sft_step_options<rt::pt::algo::sft> o;
  o.max_grad_norm = s.max_grad_norm;
  for (long step = c.ckpt->begin({{c.policy.parameters(), &opt}}); step <= s.steps; ++step) {
    check_interrupt(c, step);
    rt::pp::owned_sequences seqs;
    std::vector<float> mask;
    for (std::size_t i : c.comm->shard(batch_rows(c.recipe.seed, c.stage_index, step, s.batch, c.data.pretrain.size()))) {
      std::vector<index_t> ids{byte_tokenizer::bos};
      const auto body = tok.encode(c.data.pretrain[i]);
      ids.insert(ids.end(), body.begin(), body.end());
      ids.push_back(byte_tokenizer::eos);
      seqs.append(ids);
      mask.push_back(0.0f);
      mask.insert(mask.end(), ids.size() - 1, 1.0f);
    }
    const auto m = rt::pp::sft_step<rt::pt::algo::sft>(c.policy, opt, {seqs.view(), mask}, o, *c.comm);
    nlohmann::json rec = to_json(m);
    rec.update({{"stage", "pretrain"}, {"stage_index", c.stage_index}, {"step", step},
                {"time_s", c.out.seconds()}});
    c.out.record(rec);
    char live[64];
    std::snprintf(live, sizeof live, "loss %.4f", m.loss);
    c.out.step(step, static_cast<double>(seqs.tokens.size()), live);
    c.ckpt->after_step(step);
  }
}

// sft: chat-formatted prompt/answer pairs, prompt tokens masked (Llama 3); Loss = algo::sft
}  // namespace reference_trainer::stages
