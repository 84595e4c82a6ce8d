#pragma once
// Batch descriptors: named bundles of views over the packed ragged layout (core/ragged.hpp). They
// own nothing; validate() checks the invariants every op relies on and throws posttrain::error.
//
//   token_batch       seq_offsets[B + 1] over N packed tokens, and a per-token weight mask[N]
//                     (empty mask = every token weighs 1).
//   rollout_batch     a token_batch plus group_offsets[G + 1] over its B sequences (the samples of
//                     one prompt are one group; a batch without groups uses one group per
//                     sequence or leaves group_offsets empty).
//   preference_batch  P pairs: chosen and rejected are token_batches of P sequences each; pair p is
//                     (chosen sequence p, rejected sequence p).
#include <span>
#include <string_view>

#include "posttrain/config.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"

POSTTRAIN_NAMESPACE_BEGIN

struct token_batch {
  std::span<const index_t> seq_offsets;
  std::span<const float> mask;  // empty = all ones

  index_t num_sequences() const { return static_cast<index_t>(seq_offsets.size()) - 1; }
  index_t num_tokens() const { return seq_offsets.empty() ? 0 : seq_offsets.back(); }
  bool has_mask() const { return !mask.empty(); }
  float weight(index_t token) const { return mask.empty() ? 1.0f : mask[token]; }

  void validate(std::string_view where = "token_batch") const {
    expect(!seq_offsets.empty(), where, "seq_offsets is empty, expected B + 1 >= 1 elements");
    expect_offsets(seq_offsets, seq_offsets.back(), where, "seq_offsets");
    expect_size_or_empty(mask, num_tokens(), where, "mask", "one weight per token");
    expect_mask(mask, where, "mask");
  }
};

struct rollout_batch {
  token_batch tokens;
  std::span<const index_t> group_offsets;  // empty = no grouping

  index_t num_sequences() const { return tokens.num_sequences(); }
  index_t num_tokens() const { return tokens.num_tokens(); }
  index_t num_groups() const {
    return group_offsets.empty() ? 0 : static_cast<index_t>(group_offsets.size()) - 1;
  }

  void validate(std::string_view where = "rollout_batch") const {
    tokens.validate(where);
    if (!group_offsets.empty())
      expect_offsets(group_offsets, tokens.num_sequences(), where, "group_offsets");
  }
};

struct preference_batch {
  token_batch chosen;
  token_batch rejected;

  index_t num_pairs() const { return chosen.num_sequences(); }

  void validate(std::string_view where = "preference_batch") const {
    chosen.validate(where);
    rejected.validate(where);
    expect(chosen.num_sequences() == rejected.num_sequences(), where, "chosen has ",
           chosen.num_sequences(), " sequences but rejected has ", rejected.num_sequences(),
           ", expected one rejected sequence per chosen sequence");
  }
};

POSTTRAIN_NAMESPACE_END
