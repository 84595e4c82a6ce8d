#pragma once
// loss::preference<Link, SeqReduce, Reference, Nll, Defaults> — the offline preference (DPO-family)
// loss as a compile-time composition, and loss::sequence_scores for caching reference scores.
//
//   For pairs p = 1..P with packed chosen/rejected token log-probs ℓ and float masks m:
//     π_c,p = SeqReduce(ℓ, m over chosen sequence p)   (seq::sum, seq::mean, or seq::ld: paired)
//     Δc,p  = π_c,p − ρ_c,p   (with_reference)   or   π_c,p   (reference_free); same for Δr,p
//     loss  = Σ_p w_p·Link(Δc,p, Δr,p) / normalizer.pairs  +  nll_coef·NLL_chosen (if Nll has one)
//   and ∂loss/∂ℓ_t for every chosen and rejected token (0 where m_t = 0; the reference gets none).
//   w_p: optional detached pair weights (inputs.pair_weights, e.g. WPO; default 1).
//   Batch-sorted links (pref::aot, pref::aot_unpaired) sort their keys over the pairs of the call
//   and evaluate rank by rank (loss/preference/aot.hpp); f-DPO scores wrap a link
//   (pref::f_divergence<Link, divergence::...>, loss/preference/f_divergence.hpp). Links that read
//   the sequence lengths (pref::uses_lengths_v: pref::f_divergence_length_normalized, TRL 1.16's
//   ipo / sigmoid_norm f-scores) get Link(Δc, Δr, W_c, W_r) with W = Σ m; they need seq::sum.
//   Defaults (pref::defaults::llama3 unless named) supplies option fields the caller left unset:
//   nll_coef (0.2 generic; algo::orpo / algo::cpo*: 1).
//
//   Options options_type = loss::preference_options_for<Link>: the shared preference_options
//           (β, ε, nll_coef, ld_alpha) for a link without options of its own; for a link with
//           (pref::simpo: γ, pref::discopop: τ, f_divergence<..., alpha_divergence>: α) the same
//           fields plus the link's, `.link` (loss/preference/link.hpp). Passing such a
//           composition a plain preference_options does not compile: the link's options would
//           silently take their defaults.
//
//   Inputs  preference_inputs<T>: batch (seq_offsets[P+1] and masks [N] of both sides),
//           chosen_logprobs[Nc], rejected_logprobs[Nr], reference_chosen[P], reference_rejected[P]
//           (reference scores reduced with the same SeqReduce as the policy: use sequence_scores
//           below; empty for reference_free). T = float or double; sums are taken in double.
//   Outputs preference_outputs<T>: chosen_grad[Nc], rejected_grad[Nr], pair_losses[P],
//           chosen_rewards[P] (β·Δc), rejected_rewards[P] (β·Δr); any may be empty.
//   Normaliser preference_normalizer: pairs (default: local P), chosen_tokens (default: local Σ m
//           of chosen tokens, read only by nll_token_mean). Pass global values to every
//           micro-batch/rank and the losses and gradients add up to the full batch's.
//   Workspace workspace_bytes(exec::host{}, P) and compute(exec::host{}, in, options, out, norm,
//           ws): no allocation in the call (0 bytes for every per-pair link; the batch-sorted
//           aot links keep keys, per-pair gradients and sort orders there). The other forms
//           allocate that scratch per call.
//
// Every argument is validated before anything is written (posttrain::error naming the argument).
// Named compositions with their peers: loss/preference/algorithms.hpp. Formulas per link:
// docs/loss/preference.md.
#include <array>
#include <cmath>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "posttrain/backend/cpu/preference.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/batch.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/loss/concept.hpp"
#include "posttrain/loss/preference/aot.hpp"
#include "posttrain/loss/preference/apo_down.hpp"
#include "posttrain/loss/preference/apo_zero.hpp"
#include "posttrain/loss/preference/bco_pair.hpp"
#include "posttrain/loss/preference/discopop.hpp"
#include "posttrain/loss/preference/exo_pair.hpp"
#include "posttrain/loss/preference/f_divergence.hpp"
#include "posttrain/loss/preference/hinge.hpp"
#include "posttrain/loss/preference/ipo.hpp"
#include "posttrain/loss/preference/link.hpp"
#include "posttrain/loss/preference/nca_pair.hpp"
#include "posttrain/loss/preference/parts.hpp"
#include "posttrain/loss/preference/robust.hpp"
#include "posttrain/loss/preference/sigmoid.hpp"
#include "posttrain/loss/preference/simpo.hpp"
#include "posttrain/loss/preference/sppo_hard.hpp"
#include "posttrain/loss/preference_types.hpp"
#include "posttrain/loss/sequence_reduce.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace loss {

namespace detail {
template <class>
inline constexpr bool preference_dependent_false = false;

// The normalizers of the generic preference loop: norm's where set (> 0), else the batch's pair
// count and, where the NLL divides by tokens, the chosen tokens' total mask weight.
struct preference_loop_normalizers {
  double pairs = 0;
  double chosen_tokens = 0;
};

template <class T>
preference_loop_normalizers resolve_normalizers(const preference_inputs<T>& in,
                                                const preference_normalizer& norm,
                                                bool divides_by_tokens) {
  preference_loop_normalizers n{
      .pairs = norm.pairs > 0 ? norm.pairs : static_cast<double>(in.batch.num_pairs()),
      .chosen_tokens = norm.chosen_tokens};
  if (divides_by_tokens && !(n.chosen_tokens > 0)) {
    const token_batch& c = in.batch.chosen;
    n.chosen_tokens = 0;
    if (c.mask.empty())
      n.chosen_tokens = static_cast<double>(c.num_tokens());
    else
      for (float m : c.mask) n.chosen_tokens += static_cast<double>(m);
  }
  return n;
}

}  // namespace detail

template <class Link, class SeqReduce, class Reference = pref::with_reference,
          class Nll = pref::no_nll, class Defaults = pref::defaults::llama3>
struct preference : loss_interface<preference_options_for<Link>, preference_inputs,
                                   preference_outputs, preference_normalizer, preference_result> {
  static_assert(pref::diagnose_preference_link<Link>(),
                "loss::preference<Link, ...>: Link is not a preference link (see above)");
  static_assert(seq::diagnose_sequence_reduction<SeqReduce>(),
                "loss::preference<Link, SeqReduce, ...>: SeqReduce is not a sequence reduction "
                "(use seq::sum, seq::mean or seq::ld)");
  static_assert(std::is_same_v<Reference, pref::with_reference> ||
                    std::is_same_v<Reference, pref::reference_free>,
                "loss::preference<Link, SeqReduce, Reference, ...>: Reference must be "
                "pref::with_reference or pref::reference_free");
  static_assert(!pref::uses_lengths_v<Link> || std::is_same_v<SeqReduce, seq::sum>,
                "loss::preference<Link, SeqReduce, ...>: a length-normalising link "
                "(pref::f_divergence_length_normalized) divides by the lengths itself: use "
                "seq::sum (and reference sums)");
  static_assert(std::is_same_v<Nll, pref::no_nll> || std::is_same_v<Nll, pref::nll_token_mean> ||
                    std::is_same_v<Nll, pref::nll_sequence_mean>,
                "loss::preference<Link, SeqReduce, Reference, Nll>: Nll must be pref::no_nll, "
                "pref::nll_token_mean or pref::nll_sequence_mean");

  using link = Link;
  using options_type = preference_options_for<Link>;
  using link_options = pref::link_options_t<Link>;  // empty for most links
  // Options that would drop this link's own part: only for a link that has one, any options
  // derived from preference_options but not options_type (plain preference_options, another
  // link's options_type).
  template <class O>
  static constexpr bool lacks_link_part = pref::has_link_options_v<Link> &&
                                          std::is_base_of_v<preference_options, O> &&
                                          !std::is_same_v<O, options_type>;
  using sequence_reduction = SeqReduce;
  using reference = Reference;
  using nll = Nll;
  using defaults = Defaults;
  static constexpr bool uses_reference = Reference::uses_reference;
  static constexpr bool has_nll = Nll::enabled;
  static constexpr bool length_desensitized = seq::is_length_desensitized_v<SeqReduce>;
  static constexpr bool batch_sorted = pref::is_batch_sorted_v<Link>;

  // The NLL weight used: options.nll_coef, or Defaults::nll_coef when left unset (NaN).
  static double nll_coef(const preference_options& o) {
    return std::isnan(o.nll_coef) ? Defaults::nll_coef : o.nll_coef;
  }

  // "loss::preference<sigmoid, sum>" (+ ", reference_free" / ", nll"): the prefix of messages.
  static std::string name() { return message_prefix(); }

  // Throws posttrain::error for the first bad argument; compute() calls it before any work.
  template <class T>
  static void validate(const preference_inputs<T>& in, const options_type& options,
                       const preference_outputs<T>& out, const preference_normalizer& norm) {
    const std::string& where = message_prefix();  // built once: validation allocates nothing
    in.batch.validate(where);
    const index_t pairs = in.batch.num_pairs();
    expect_size(in.chosen_logprobs, in.batch.chosen.num_tokens(), where, "chosen_logprobs",
                "one per chosen token");
    expect_size(in.rejected_logprobs, in.batch.rejected.num_tokens(), where, "rejected_logprobs",
                "one per rejected token");
    if constexpr (uses_reference) {
      expect_size(in.reference_chosen, pairs, where, "reference_chosen",
                  "one reference score per pair");
      expect_size(in.reference_rejected, pairs, where, "reference_rejected",
                  "one reference score per pair");
      expect_all_finite(in.reference_chosen, where, "reference_chosen");
      expect_all_finite(in.reference_rejected, where, "reference_rejected");
    } else {
      expect(in.reference_chosen.empty() && in.reference_rejected.empty(), where,
             "reference_chosen/reference_rejected must be empty: this composition is "
             "reference_free (use pref::with_reference to subtract reference scores)");
    }
    pref::link_call::validate<Link>(options, link_part<Link>(options), where);
    if constexpr (has_nll) expect_non_negative(nll_coef(options), where, "options.nll_coef");
    if constexpr (length_desensitized) validate_ld_alpha(options, where);
    if (!in.pair_weights.empty()) {
      expect(!batch_sorted, where,
             "pair_weights must be empty: a batch-sorted link (aot) ranks keys across pairs, so "
             "per-pair weights would be misaligned (TRL rejects WPO with aot too)");
      expect_size(in.pair_weights, pairs, where, "pair_weights", "one weight per pair");
      for (std::size_t i = 0; i < in.pair_weights.size(); ++i)
        expect(std::isfinite(in.pair_weights[i]) && in.pair_weights[i] >= 0.0, where,
               "pair_weights[", i, "] = ", in.pair_weights[i], ", expected a finite weight >= 0");
    }
    expect_non_negative(norm.pairs, where, "normalizer.pairs");
    expect_non_negative(norm.chosen_tokens, where, "normalizer.chosen_tokens");
    expect_size_or_empty(out.chosen_grad, in.batch.chosen.num_tokens(), where, "chosen_grad",
                         "one per chosen token");
    expect_size_or_empty(out.rejected_grad, in.batch.rejected.num_tokens(), where, "rejected_grad",
                         "one per rejected token");
    expect_size_or_empty(out.pair_losses, pairs, where, "pair_losses", "one per pair");
    expect_size_or_empty(out.chosen_rewards, pairs, where, "chosen_rewards", "one per pair");
    expect_size_or_empty(out.rejected_rewards, pairs, where, "rejected_rewards", "one per pair");
  }

  // Bytes of the workspace compute(..., ws) needs for P = pairs pairs: 0 for every per-pair link
  // (no scratch); batch-sorted links (aot, aot_unpaired) keep their keys, per-pair gradients and
  // sort orders there.
  static std::size_t workspace_bytes(exec::host, index_t pairs) {
    expect(pairs >= 0, name() + "::workspace_bytes", "pairs is ", pairs, ", expected >= 0");
    return preference_backend<exec::host>::workspace_bytes<Link>(exec::host{}, pairs);
  }

  // Caller scratch (workspace_bytes(exec, P) bytes): no allocation in the call. A too-small
  // workspace throws before any output is written.
  template <class T>
  static preference_result compute(exec::host, const preference_inputs<T>& in,
                                   const options_type& options, const preference_outputs<T>& out,
                                   const preference_normalizer& norm, workspace ws) {
    validate(in, options, out, norm);
    return run(in, options, out, norm, ws);
  }

  // The allocating form: the workspace comes from a buffer of this call (none is allocated for a
  // per-pair link, whose workspace is 0 bytes).
  template <class T>
  static preference_result compute(exec::host, const preference_inputs<T>& in,
                                   const options_type& options = {},
                                   const preference_outputs<T>& out = {},
                                   const preference_normalizer& norm = {}) {
    validate(in, options, out, norm);
    workspace_buffer buffer;
    return run(in, options, out, norm,
               buffer.view(workspace_bytes(exec::host{}, in.batch.num_pairs())));
  }

  // A link with options of its own given options without them (a plain preference_options, or
  // another link's): a compile error rather than the link's defaults taken silently.
  template <class T, class O>
    requires lacks_link_part<O>
  static preference_result compute(exec::host, const preference_inputs<T>&, const O&,
                                   const preference_outputs<T>& = {},
                                   const preference_normalizer& = {}) {
    static_assert(detail::preference_dependent_false<O>,
                  "loss::preference<Link, ...>::compute: this link has options of its own; pass "
                  "options_type (loss::preference_options_for<Link>: the shared fields plus "
                  "`.link`), not a preference_options without them");
    return {};
  }

  // The reference scores ρ_c[P], ρ_r[P] this composition expects, from the reference model's token
  // log-probs over the same batch: SeqReduce per sequence for seq::sum / seq::mean; LD's paired
  // split (α = options.ld_alpha) for seq::ld<> (TRL HEAD); plain sums for
  // seq::ld<ld_side::policy_only> (TRL v0.26). Validates like compute().
  template <class T>
  static void reference_scores(const preference_batch& batch,
                               std::span<const T> reference_chosen_logprobs,
                               std::span<const T> reference_rejected_logprobs,
                               const preference_options& options, std::span<T> reference_chosen,
                               std::span<T> reference_rejected) {
    const std::string where = name() + "::reference_scores";
    batch.validate(where);
    const index_t pairs = batch.num_pairs();
    expect_size(reference_chosen_logprobs, batch.chosen.num_tokens(), where,
                "reference_chosen_logprobs", "one per chosen token");
    expect_size(reference_rejected_logprobs, batch.rejected.num_tokens(), where,
                "reference_rejected_logprobs", "one per rejected token");
    expect_size(reference_chosen, pairs, where, "reference_chosen", "one per pair");
    expect_size(reference_rejected, pairs, where, "reference_rejected", "one per pair");
    if constexpr (length_desensitized) {
      if constexpr (SeqReduce::side == seq::ld_side::policy_and_reference) {
        validate_ld_alpha(options, where);
        backend::cpu::ld_sequence_scores(reference_chosen_logprobs, batch.chosen, batch.rejected,
                                         options.ld_alpha, reference_chosen);
        backend::cpu::ld_sequence_scores(reference_rejected_logprobs, batch.rejected, batch.chosen,
                                         options.ld_alpha, reference_rejected);
      } else {
        backend::cpu::sequence_scores<seq::sum>(reference_chosen_logprobs, batch.chosen,
                                                reference_chosen);
        backend::cpu::sequence_scores<seq::sum>(reference_rejected_logprobs, batch.rejected,
                                                reference_rejected);
      }
    } else {
      backend::cpu::sequence_scores<SeqReduce>(reference_chosen_logprobs, batch.chosen,
                                               reference_chosen);
      backend::cpu::sequence_scores<SeqReduce>(reference_rejected_logprobs, batch.rejected,
                                               reference_rejected);
    }
  }

  // Host memory, the calling thread: same as compute(exec::host{}, ...).
  template <class T>
  static preference_result compute(const preference_inputs<T>& in, const options_type& options = {},
                                   const preference_outputs<T>& out = {},
                                   const preference_normalizer& norm = {}) {
    return compute(exec::host{}, in, options, out, norm);
  }

  // The same without the execution tag (see above).
  template <class T, class O>
    requires lacks_link_part<O>
  static preference_result compute(const preference_inputs<T>& in, const O& options,
                                   const preference_outputs<T>& out = {},
                                   const preference_normalizer& norm = {}) {
    return compute(exec::host{}, in, options, out, norm);
  }

  template <class T>
  static preference_result compute(exec::cuda, const preference_inputs<T>&,
                                   const options_type& = {}, const preference_outputs<T>& = {},
                                   const preference_normalizer& = {}) {
    static_assert(
        preference_backend<exec::cuda>::available && sizeof(T) > 0,
        "loss::preference has no CUDA backend yet (no loss::preference_backend<exec::cuda> "
        "specialisation, loss/preference_types.hpp): call compute(exec::host{}, ...) "
        "with host memory");
    return {};
  }

 private:
  // name(), built on first use and kept, so that a hot call's validation does not allocate it.
  static const std::string& message_prefix() {
    static const std::string prefix = [] {
      std::string n = std::string("loss::preference<") + Link::name + ", " + SeqReduce::name;
      if (!uses_reference) n += ", reference_free";
      if (std::is_same_v<Nll, pref::nll_token_mean>) n += ", nll_token_mean";
      if (std::is_same_v<Nll, pref::nll_sequence_mean>) n += ", nll_sequence_mean";
      return n + ">";
    }();
    return prefix;
  }

  // compute() after validation: the normalisers resolved, then the backend's pair loop.
  template <class T>
  static preference_result run(const preference_inputs<T>& in, const options_type& options,
                               const preference_outputs<T>& out, const preference_normalizer& norm,
                               workspace ws) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "loss::preference::compute accepts float or double log-probs");
    const detail::preference_loop_normalizers n =
        detail::resolve_normalizers(in, norm, std::is_same_v<Nll, pref::nll_token_mean>);
    return preference_backend<exec::host>::pair_loop<Link, SeqReduce, Reference, Nll>(
        exec::host{}, in, options, link_part<Link>(options), out, n.pairs, n.chosen_tokens,
        nll_coef(options), ws);
  }

  static void validate_ld_alpha(const preference_options& o, std::string_view where) {
    expect(std::isfinite(o.ld_alpha) && o.ld_alpha >= 0.0 && o.ld_alpha <= 1.0, where,
           "options.ld_alpha must be set to a value in [0, 1] for seq::ld (LD-DPO's tail weight; "
           "it has no default), got ",
           o.ld_alpha);
  }

  template <class T>
  static void expect_all_finite(std::span<const T> values, std::string_view where,
                                std::string_view argument) {
    for (std::size_t i = 0; i < values.size(); ++i)
      expect(std::isfinite(static_cast<double>(values[i])), where, argument, "[", i,
             "] = ", static_cast<double>(values[i]), ", expected a finite reference score");
  }
};

// Per-sequence scores π_b = SeqReduce(ℓ, m over sequence b) for B = batch.num_sequences()
// sequences, e.g. to cache reference scores once with the reduction the loss will use.
template <class SeqReduce, class T>
void sequence_scores(std::span<const T> token_logprobs, const token_batch& batch,
                     std::span<T> scores) {
  static_assert(seq::diagnose_sequence_reduction<SeqReduce>(),
                "loss::sequence_scores<SeqReduce>: use seq::sum or seq::mean");
  static_assert(!seq::is_length_desensitized_v<SeqReduce>,
                "loss::sequence_scores<seq::ld>: LD-DPO is a paired reduction; use "
                "loss::preference<...>::reference_scores");
  const std::string where = std::string("loss::sequence_scores<") + SeqReduce::name + ">";
  batch.validate(where);
  expect_size(token_logprobs, batch.num_tokens(), where, "token_logprobs", "one per token");
  expect_size(scores, batch.num_sequences(), where, "scores", "one per sequence");
  backend::cpu::sequence_scores<SeqReduce>(token_logprobs, batch, scores);
}

template <class SeqReduce, class T>
std::vector<T> sequence_scores(std::span<const T> token_logprobs, const token_batch& batch) {
  std::vector<T> scores(batch.seq_offsets.empty() ? 0 : batch.seq_offsets.size() - 1);
  sequence_scores<SeqReduce>(token_logprobs, batch, std::span<T>(scores));
  return scores;
}

}  // namespace loss

POSTTRAIN_NAMESPACE_END
