#pragma once
// Preference data from the policy's own samples, ranked by each row's verifier (gsm8k, math, ifeval), stored as JSONL in
// the pipeline's preference format (pipeline/jsonl.hpp read_preference_jsonl: prompt / chosen /
// rejected / optional edited) and read back from the file — the file is the interface, as for
// the task data.
//
// Per prompt, N samples scored 1 (correct) or 0 by the verifier:
//   DPO rows (with_edit = false)  rejected = the first wrong sample, chosen = the first correct
//                                 one, or the wrong one with the correct final answer substituted
//                                 when none is correct (rule-checked pairs, Qwen2.5's offline DPO
//                                 data; the edit keeps a weak model's prompts usable)
//   RM rows  (with_edit = true)   Llama 3's edited > chosen > rejected: rejected = the first wrong
//                                 sample, edited = that sample with the correct final answer
//                                 substituted ("#### <truth>"), chosen = the first correct sample;
//                                 when no sample is correct the edit is the chosen response (a
//                                 pair, no third response)
//   All-correct prompts are dropped (nothing to prefer).
#include "common.hpp"

namespace reference_trainer::stages {

// The completion's text: its bytes (the end-of-turn and any other special dropped).
inline std::string response_text(std::span<const index_t> completion) {
  std::vector<index_t> bytes;
  for (index_t t : completion)
    if (t < 256) bytes.push_back(t);
  return byte_tokenizer{}.decode(bytes);
}

// A wrong answer with the correct final answer substituted (Llama 3's "edited" response). Only
// gsm8k rows have a "#### answer" line to substitute; math and ifeval rows get no edited response
// (sample_preferences: such a row needs a correct sample to make a pair).
inline std::string corrected(const std::string& text, const std::string& truth) {
  const auto at = text.rfind("####");
  if (at == std::string::npos) return text + (text.empty() ? "" : "\n") + "#### " + truth;
  return text.substr(0, at) + "#### " + truth;
}

struct sampled_preferences {
  std::vector<rt::pp::preference_example> rows;
  double mean_reward = 0;  // verifier reward of all samples
  long samples = 0;
};

// `pick` rows of `rows` (RLVR prompts), s.samples samples each, seeded by (stage, seed_step).
template <class Gen>
sampled_preferences sample_preferences(const context& c, const rt::stage_options& s, Gen& gen,
                                       const std::vector<rt::pp::rlvr_example>& rows,
                                       std::span<const std::size_t> pick, long seed_step,
                                       bool with_edit) {
  // Drawn `chunk` prompts at a time (bounded memory); sample seeds by global sample index.
  constexpr std::size_t chunk = 32;
  const std::size_t n = static_cast<std::size_t>(s.samples);
  reward_t verifier{};
  std::vector<double> rewards;
  std::vector<std::string> texts;
  for (std::size_t b0 = 0; b0 < pick.size(); b0 += chunk) {
    const prompt_set p = render_prompts(rows, pick.subspan(b0, std::min(chunk, pick.size() - b0)));
    auto req = make_request(c, s, p, seed_step);
    req.first_sample_index = b0 * n;
    const auto scored = rt::pp::sample_and_score(gen, verifier, req, c.policy.vocab_size());
    const auto completions = scored.out.completions.view();
    const auto o = completions.seq_offsets;
    for (index_t b = 0; b < completions.num_sequences(); ++b)
      texts.push_back(response_text(completions.tokens.subspan(o[b], o[b + 1] - o[b])));
    rewards.insert(rewards.end(), scored.rewards.begin(), scored.rewards.end());
  }
  auto text_of = [&](std::size_t b) { return texts[b]; };
  sampled_preferences out;
  out.mean_reward = mean_of(rewards);
  out.samples = static_cast<long>(rewards.size());
  for (std::size_t i = 0; i < pick.size(); ++i) {
    std::optional<std::size_t> good, bad;
    for (std::size_t k = 0; k < n; ++k) {
      const std::size_t b = i * n + k;
      if (rewards[b] > 0 && !good) good = b;
      if (!(rewards[b] > 0) && !bad) bad = b;
    }
    if (!bad) continue;
    const auto& row = rows[pick[i]];
    if (row.verifier != posttrain::reward::gsm8k_verifier::name()) {
      if (!good) continue;  // no correction for math / ifeval rows: a pair needs a correct sample
      rt::pp::preference_example e;
      e.prompt = row.messages;
      e.rejected = {{"assistant", text_of(*bad)}};
      e.chosen = {{"assistant", text_of(*good)}};
      out.rows.push_back(std::move(e));
      continue;
    }
    rt::pp::preference_example e;
    e.prompt = row.messages;
    e.rejected = {{"assistant", text_of(*bad)}};
    if (with_edit) {
      const std::vector<rt::pp::message> edit{{"assistant", corrected(text_of(*bad), row.ground_truth)}};
      if (good) {
        e.chosen = {{"assistant", text_of(*good)}};
        e.edited = edit;
      } else {
        e.chosen = edit;
      }
    } else {
      e.chosen = {{"assistant", good ? text_of(*good) : corrected(text_of(*bad), row.ground_truth)}};
    }
    out.rows.push_back(std::move(e));
  }
  return out;
}

inline nlohmann::json messages_json(const std::vector<rt::pp::message>& m) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& x : m) a.push_back({{"role", x.role}, {"content", x.content}});
  return a;
}

// Writes the rows as preference JSONL (atomically), then reads them back with the pipeline reader:
// the stage trains on what the file holds.
// Under MPI (comm with several ranks) every rank holds the same rows: rank 0 writes, all read.
inline std::vector<rt::pp::preference_example> store_preferences(
    const std::vector<rt::pp::preference_example>& rows, const fs::path& path,
    const rt::trainer_communicator* comm = nullptr) {
  if (comm != nullptr && comm->size() > 1) {
    if (comm->rank() == 0) store_preferences(rows, path);
    comm->barrier();
    return rt::pp::read_preference_jsonl(path.string());
  }
  fs::create_directories(path.parent_path());
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp);
    for (const auto& e : rows) {
      nlohmann::json j{{"prompt", messages_json(e.prompt)},
                       {"chosen", messages_json(e.chosen)},
                       {"rejected", messages_json(e.rejected)}};
      if (e.edited) j["edited"] = messages_json(*e.edited);
      // A sampled byte sequence need not be UTF-8 (an untrained model's): such bytes become
      // U+FFFD in the file, so the rows are what the file says, not the raw bytes.
      out << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    }
  }
  fs::rename(tmp, path);
  return rt::pp::read_preference_jsonl(path.string());
}

// Rows as reward-model data: prompt ++ chosen / rejected / edited rendered as chats (a row without
// an edited response repeats its chosen one there, with edited_mask 0).
struct packed_rm_rows {
  rt::pp::owned_sequences chosen, rejected, edited;
  std::vector<float> edited_mask;
  bool any_edited = false;
  rt::pp::reward_model_data data() const {
    rt::pp::reward_model_data d{chosen.view(), rejected.view(), {}, {}, {}};
    if (any_edited) {
      d.edited = edited.view();
      d.edited_mask = edited_mask;
    }
    return d;
  }
};

inline packed_rm_rows pack_rm_rows(const std::vector<rt::pp::preference_example>& rows,
                                   std::span<const std::size_t> pick) {
  const byte_tokenizer tok;
  packed_rm_rows p;
  auto render = [&](const std::vector<rt::pp::message>& prompt, const std::vector<rt::pp::message>& r) {
    std::vector<rt::pp::message> all = prompt;
    all.insert(all.end(), r.begin(), r.end());
    return rt::pp::render_chat(tok, std::span<const rt::pp::message>(all)).tokens;
  };
  for (std::size_t i : pick) {
    const auto& e = rows[i];
    p.chosen.append(render(e.prompt, e.chosen));
    p.rejected.append(render(e.prompt, e.rejected));
    p.edited.append(render(e.prompt, e.edited ? *e.edited : e.chosen));
    p.edited_mask.push_back(e.edited ? 1.0f : 0.0f);
    p.any_edited = p.any_edited || e.edited.has_value();
  }
  return p;
}

}  // namespace reference_trainer::stages
