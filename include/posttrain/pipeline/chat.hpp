#pragma once
// Chat format rendering: messages (system / user / assistant) → token ids with role headers and
// end-of-turn tokens (Llama 3's protocol), plus the masks the steps need.
//
//   [bos] for each message:  <start_header> role-name <end_header> "\n\n"  content  <end_of_turn>
//   add_generation_prompt:   <start_header> "assistant" <end_header> "\n\n"   (an RL / sampling
//                            prompt ends with the assistant's header)
//
// rendered_chat (all [N], token-aligned like every pipeline array):
//   tokens
//   prompt_mask   1 on everything that is not an assistant turn's content or its end-of-turn
//   format_mask   1 on format tokens: bos, headers (start, role name, end, "\n\n"), end-of-turn
//   loss_mask(include_format)   1 − prompt_mask: the assistant content (and its end-of-turn when
//                 include_format; Llama 3's DPO excludes it: format-token masking, SFT trains it)
// The ids of the special tokens come from chat_format (byte_tokenizer's by default); role names
// and content are encoded by the Tokenizer. Roles other than system/user/assistant are errors.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/pipeline/tokenizer.hpp"
#include "posttrain/pipeline/types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pipeline {

struct message {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

struct chat_format {
  index_t bos = byte_tokenizer::bos;  // < 0: no bos
  index_t start_header = byte_tokenizer::start_header;
  index_t end_header = byte_tokenizer::end_header;
  index_t end_of_turn = byte_tokenizer::end_of_turn;
  std::string header_separator = "\n\n";
};

struct rendered_chat {
  std::vector<index_t> tokens;
  std::vector<float> prompt_mask, format_mask;

  std::vector<float> loss_mask(bool include_format = true) const {
    std::vector<float> m(tokens.size());
    for (std::size_t t = 0; t < tokens.size(); ++t)
      m[t] = (prompt_mask[t] == 0 && (include_format || format_mask[t] == 0)) ? 1.0f : 0.0f;
    return m;
  }
};

// Examples as the JSONL readers (pipeline/jsonl.hpp) return them.
struct sft_example {
  std::vector<message> messages;
};

struct preference_example {
  std::vector<message> prompt, chosen, rejected;
  std::optional<std::vector<message>> edited;
  std::optional<double> margin;
};

// Unpaired (KTO) data: TRL's {"prompt", "completion", "label"} rows.
struct kto_example {
  std::vector<message> prompt, completion;
  bool desirable = true;  // TRL's label: true = desirable
};

struct rlvr_example {
  std::vector<message> messages;
  std::string ground_truth;
  std::string verifier;
};

template <tokenizer Tok>
rendered_chat render_chat(const Tok& tok, std::span<const message> messages,
                          const chat_format& f = {}, bool add_generation_prompt = false) {
  constexpr const char* where = "pipeline::render_chat";
  for (std::size_t i = 0; i < messages.size(); ++i)
    expect(messages[i].role == "system" || messages[i].role == "user" ||
               messages[i].role == "assistant",
           where, "messages[", i, "].role = \"", messages[i].role,
           "\", expected \"system\", \"user\" or \"assistant\"");
  rendered_chat r;
  auto push = [&](index_t id, bool prompt, bool format) {
    r.tokens.push_back(id);
    r.prompt_mask.push_back(prompt ? 1.0f : 0.0f);
    r.format_mask.push_back(format ? 1.0f : 0.0f);
  };
  auto header = [&](std::string_view role) {
    push(f.start_header, true, true);
    for (index_t id : tok.encode(role)) push(id, true, true);
    push(f.end_header, true, true);
    for (index_t id : tok.encode(f.header_separator)) push(id, true, true);
  };
  if (f.bos >= 0) push(f.bos, true, true);
  for (const message& m : messages) {
    const bool response = m.role == "assistant";
    header(m.role);
    for (index_t id : tok.encode(m.content)) push(id, !response, false);
    push(f.end_of_turn, !response, true);
  }
  if (add_generation_prompt) header("assistant");
  return r;
}

// Packed SFT data: every example rendered, loss mask = the assistant turns (with their
// end-of-turn: SFT trains the model to stop).
struct packed_sft {
  owned_sequences sequences;
  std::vector<float> loss_mask;
};

template <tokenizer Tok>
packed_sft pack_sft(const Tok& tok, std::span<const sft_example> examples, const chat_format& f = {}) {
  packed_sft p;
  for (const auto& e : examples) {
    const rendered_chat r = render_chat(tok, std::span<const message>(e.messages), f);
    p.sequences.append(r.tokens);
    const auto m = r.loss_mask(true);
    p.loss_mask.insert(p.loss_mask.end(), m.begin(), m.end());
  }
  return p;
}

// Packed preference pairs: prompt ++ chosen and prompt ++ rejected rendered as chats; masks on the
// responses, without format tokens when mask_format_tokens (Llama 3: role headers and
// termination tokens excluded from the chosen and rejected log-probs).
struct packed_pairs {
  owned_sequences chosen, rejected;
  std::vector<float> chosen_mask, rejected_mask;
};

template <tokenizer Tok>
packed_pairs pack_preference(const Tok& tok, std::span<const preference_example> examples,
                             const chat_format& f = {}, bool mask_format_tokens = true) {
  packed_pairs p;
  auto add = [&](const std::vector<message>& prompt, const std::vector<message>& response,
                 owned_sequences& seqs, std::vector<float>& mask) {
    std::vector<message> all = prompt;
    all.insert(all.end(), response.begin(), response.end());
    const rendered_chat r = render_chat(tok, std::span<const message>(all), f);
    seqs.append(r.tokens);
    const auto m = r.loss_mask(!mask_format_tokens);
    mask.insert(mask.end(), m.begin(), m.end());
  };
  for (const auto& e : examples) {
    add(e.prompt, e.chosen, p.chosen, p.chosen_mask);
    add(e.prompt, e.rejected, p.rejected, p.rejected_mask);
  }
  return p;
}

// Packed unpaired (KTO) data: example i = prompt_i ++ completion_i, and its mismatched pair for
// the KL reference point, prompt_i ++ completion_{i−1 mod B} (TRL's KL_completion_ids: the
// completions rotated by one within the batch; pass one step's rows of one rank, as TRL builds
// them per device batch). Masks on the completions (without format tokens when
// mask_format_tokens); desirable[i] = the row's label. A batch of one pairs an example with itself
// (TRL requires per-device batches > 1 for a meaningful KL estimate).
struct packed_kto {
  owned_sequences examples, kl_examples;
  std::vector<float> mask, kl_mask;
  std::vector<std::uint8_t> desirable;
};

template <tokenizer Tok>
packed_kto pack_kto(const Tok& tok, std::span<const kto_example> examples, const chat_format& f = {},
                    bool mask_format_tokens = true) {
  packed_kto p;
  auto add = [&](const std::vector<message>& prompt, const std::vector<message>& completion,
                 owned_sequences& seqs, std::vector<float>& mask) {
    std::vector<message> all = prompt;
    all.insert(all.end(), completion.begin(), completion.end());
    const rendered_chat r = render_chat(tok, std::span<const message>(all), f);
    seqs.append(r.tokens);
    const auto m = r.loss_mask(!mask_format_tokens);
    mask.insert(mask.end(), m.begin(), m.end());
  };
  const std::size_t n = examples.size();
  for (std::size_t i = 0; i < n; ++i) {
    add(examples[i].prompt, examples[i].completion, p.examples, p.mask);
    add(examples[i].prompt, examples[(i + n - 1) % n].completion, p.kl_examples, p.kl_mask);
    p.desirable.push_back(examples[i].desirable ? 1 : 0);
  }
  return p;
}

// Packed RLVR prompts: each example's messages rendered with the generation prompt (ending in the
// assistant header), and its example_info (id = index + first_id, ground truth, verifier name):
// an rl_batch is {prompts.view(), examples}, scored by reward::verifiers.
struct packed_prompts {
  owned_sequences prompts;
  std::vector<example_info> examples;
};

template <tokenizer Tok>
packed_prompts pack_rlvr(const Tok& tok, std::span<const rlvr_example> examples,
                         const chat_format& f = {}, std::uint64_t first_id = 0) {
  packed_prompts p;
  for (std::size_t i = 0; i < examples.size(); ++i) {
    const auto& e = examples[i];
    p.prompts.append(render_chat(tok, std::span<const message>(e.messages), f, true).tokens);
    p.prompts.ids.push_back(first_id + i);
    p.examples.push_back({first_id + i, e.ground_truth, e.verifier});
  }
  return p;
}

}  // namespace pipeline

POSTTRAIN_NAMESPACE_END
