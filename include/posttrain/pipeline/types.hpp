#pragma once
// pipeline/ data: the packed token batch every concept of the pipeline reads, and the per-example
// metadata reward sources see.
//
//   token_sequences   tokens[N] (int64 ids), seq_offsets[B + 1] over them, ids[B] (optional,
//                     example identities: reference::precomputed keys its table by them)
//
// Token alignment. Every per-token array of the pipeline is aligned with the tokens, not with the
// logits rows: logprob[t] = log p(tokens[t] | tokens[b .. t−1]) of sequence b, which the policy
// produces in logits row t − 1 (next-token prediction). The first token of a sequence has no
// log-prob: its value is 0 and every mask must be 0 there (checked). Loss masks are therefore
// simple: 0 on prompt and format tokens, 1 on the tokens that are trained.
#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pipeline {

struct token_sequences {
  std::span<const index_t> tokens{};       // [N]
  std::span<const index_t> seq_offsets{};  // [B + 1], seq_offsets[0] = 0, back() = N
  std::span<const std::uint64_t> ids{};    // [B] or empty

  index_t num_sequences() const {
    return seq_offsets.empty() ? 0 : static_cast<index_t>(seq_offsets.size()) - 1;
  }
  index_t num_tokens() const { return static_cast<index_t>(tokens.size()); }

  // Offsets monotone from 0 to N, ids one per sequence, every id in [0, vocab) when vocab > 0.
  void validate(std::string_view where, std::string_view name, index_t vocab = 0) const {
    expect(!seq_offsets.empty(), where, name, ".seq_offsets is empty, expected B + 1 >= 1 offsets");
    expect(seq_offsets.front() == 0, where, name, ".seq_offsets[0] = ", seq_offsets.front(),
           ", expected 0");
    expect_offsets(seq_offsets, num_tokens(), where, std::string(name) + ".seq_offsets");
    expect_size_or_empty(ids, num_sequences(), where, std::string(name) + ".ids",
                         "one id per sequence, or empty");
    if (vocab > 0)
      for (std::size_t t = 0; t < tokens.size(); ++t)
        expect(tokens[t] >= 0 && tokens[t] < vocab, where, name, ".tokens[", t,
               "] = ", tokens[t], ", expected a token id in [0, ", vocab, ")");
  }
};

// An owning packed batch (what generators and chat rendering return).
struct owned_sequences {
  std::vector<index_t> tokens;
  std::vector<index_t> seq_offsets{0};
  std::vector<std::uint64_t> ids;

  token_sequences view() const { return {tokens, seq_offsets, ids}; }
  index_t num_sequences() const { return static_cast<index_t>(seq_offsets.size()) - 1; }
  void append(std::span<const index_t> seq) {
    tokens.insert(tokens.end(), seq.begin(), seq.end());
    seq_offsets.push_back(static_cast<index_t>(tokens.size()));
  }
};

// What a reward source may know about the example a sample answers (open-instruct's RLVR rows:
// ground_truth and the verifier/dataset name), plus the example's identity.
struct example_info {
  std::uint64_t id = 0;
  std::string ground_truth;
  std::string verifier;
};

namespace detail {

// A token-aligned per-token mask must be 0 on the first token of every sequence (that token has no
// log-prob) and a valid weight (finite, >= 0) everywhere.
inline void expect_token_aligned_mask(std::span<const float> mask, const token_sequences& seqs,
                                      std::string_view where, std::string_view name) {
  expect_size(mask, seqs.num_tokens(), where, name, "one weight per token");
  expect_mask(mask, where, name);
  for (index_t b = 0; b < seqs.num_sequences(); ++b) {
    const index_t first = seqs.seq_offsets[b];
    if (first < seqs.seq_offsets[b + 1])
      expect(mask[first] == 0.0f, where, name, "[", first, "] = ", mask[first],
             " is the first token of sequence ", b,
             ", expected 0 (the first token has no log-prob to train)");
  }
}

}  // namespace detail

// What the model concepts share (policy.hpp, reference.hpp, critic.hpp, reward_model_step.hpp).
namespace model_detail {

// `static constexpr bool enabled` and `scalar_type`: the optional models a step may skip
// (ReferenceModel, Critic).
template <class M>
concept switchable = requires {
  { M::enabled } -> std::convertible_to<bool>;
  typename M::scalar_type;
};

// Flat parameter and gradient views and zero_grad (Policy, Critic, RewardModel).
template <class M>
concept flat_views = requires { typename M::scalar_type; } && requires(M& m) {
  { m.parameters() } -> std::same_as<std::span<typename M::scalar_type>>;
  { m.gradients() } -> std::same_as<std::span<typename M::scalar_type>>;
  m.zero_grad();
};

// The base of the `none` models (reference::none, critic::none): disabled, so the steps never
// call them; a call is an error naming the model.
template <class S>
struct disabled {
  static constexpr bool enabled = false;
  using scalar_type = S;
  [[noreturn]] static void refuse(const char* where, const char* what) {
    posttrain::detail::fail(where, "called on ", what, ", which is disabled (enabled = false): "
                            "the step should not ask");
  }
};

}  // namespace model_detail

}  // namespace pipeline

POSTTRAIN_NAMESPACE_END
