#pragma once
// loss::sequence_level_inputs<T> — preference inputs from per-sequence log-prob sums, for callers
// whose model code already reduced the tokens (OpenRLHF DPOLoss(policy_chosen_logps[P],
// policy_rejected_logps[P], reference_chosen_logps[P], reference_rejected_logps[P])).
//
// Each sum becomes a one-token sequence without a mask (offsets {0, 1, ..., P}, owned here), so a
// seq::sum composition reads it unchanged and the "token" gradient chosen_grad[p] is
// ∂loss/∂(chosen sum p). The reference sums are the reference scores as they are. Only the
// compositions that reduce with seq::sum are meaningful on sums (algo::dpo, cdpo, ipo_sum,
// hinge, ...); length-normalising ones need the tokens.
//
//   loss::sequence_level_inputs<double> s(pc, pr, rc, rr);
//   algo::dpo::compute(exec::host{}, s.inputs(), algo::dpo::openrlhf().loss, {gc, gr});
#include <span>
#include <string_view>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/loss/preference/parts.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace loss {

template <class T>
class sequence_level_inputs {
 public:
  sequence_level_inputs(std::span<const T> chosen, std::span<const T> rejected,
                        std::span<const T> reference_chosen = {},
                        std::span<const T> reference_rejected = {})
      : chosen_(chosen),
        rejected_(rejected),
        reference_chosen_(reference_chosen),
        reference_rejected_(reference_rejected) {
    constexpr std::string_view where = "loss::sequence_level_inputs";
    expect_size(rejected, ssize(chosen), where, "rejected", "one sum per pair (as chosen)");
    expect_size_or_empty(reference_chosen, ssize(chosen), where, "reference_chosen",
                         "one sum per pair, or empty (reference-free)");
    expect_size(reference_rejected, ssize(reference_chosen), where, "reference_rejected",
                "one sum per pair when reference_chosen is given, else empty");
    offsets_.resize(chosen.size() + 1);
    for (std::size_t p = 0; p < offsets_.size(); ++p) offsets_[p] = static_cast<index_t>(p);
  }

  // Views into this object and the caller's spans: valid while both live.
  preference_inputs<T> inputs() const {
    preference_inputs<T> in;
    in.batch = {{offsets_, {}}, {offsets_, {}}};
    in.chosen_logprobs = chosen_;
    in.rejected_logprobs = rejected_;
    in.reference_chosen = reference_chosen_;
    in.reference_rejected = reference_rejected_;
    return in;
  }

 private:
  std::span<const T> chosen_, rejected_, reference_chosen_, reference_rejected_;
  std::vector<index_t> offsets_;
};

}  // namespace loss

POSTTRAIN_NAMESPACE_END
