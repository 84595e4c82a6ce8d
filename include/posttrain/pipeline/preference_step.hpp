#pragma once
// pipeline::preference_step<Loss> — one offline preference update (the DPO family, IPO, SimPO,
// ORPO-style NLL terms: every loss whose inputs are loss::preference_inputs).
//
//   ρ_c, ρ_r = Loss::reference_scores(reference.logprobs(chosen), reference.logprobs(rejected))
//              (whole batch, before any write; skipped for reference_free losses)
//   for each micro-batch of options.micro_batch pairs:
//     one forward over [chosen pairs; rejected pairs] concatenated (TRL's concatenated_forward:
//     the policy keeps one forward's state)
//     Loss::compute(ℓ_c, ℓ_r, masks, ρ, normaliser = GLOBAL pairs and chosen tokens)
//     policy.backward of the concatenated gradient
//   all-reduce gradients; clip; optimizer.step
//
// Masks are token-aligned (pipeline/types.hpp): 0 on the prompt, and 0 on format tokens (role
// headers, end-of-turn) for Llama 3's format-token masking — pipeline/chat.hpp's render returns
// that mask. Pair p is (chosen sequence p, rejected sequence p).
// Reference: a pipeline::reference_model; Loss::uses_reference requires Reference::enabled (a
// reference_free loss accepts any, e.g. reference::none).
// Validated before anything is written: empty batch, mismatched pair counts, masks, token ids.
#include <array>
#include <span>
#include <type_traits>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/batch.hpp"
#include "posttrain/dist/communicator.hpp"
#include "posttrain/loss/concept.hpp"
#include "posttrain/loss/preference.hpp"
#include "posttrain/pipeline/policy.hpp"
#include "posttrain/pipeline/reference.hpp"
#include "posttrain/pipeline/step_common.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pipeline {

struct preference_data {
  token_sequences chosen{};             // P sequences (prompt + chosen response)
  token_sequences rejected{};           // P sequences (prompt + rejected response)
  std::span<const float> chosen_mask{};    // [Nc] token-aligned
  std::span<const float> rejected_mask{};  // [Nr]
};

template <class Loss>
struct preference_step_options : step_options {
  typename Loss::options_type loss{};
};

struct preference_metrics {
  double loss = 0, preference_loss = 0, nll = 0;  // full-batch values (summed over micro-batches)
  double chosen_reward = 0, rejected_reward = 0, reward_margin = 0, reward_accuracy = 0;  // means
  double pairs = 0, chosen_tokens = 0;
  double grad_norm = 0;
  index_t micro_batches = 0;
};

namespace preference_detail {
// Whether a preference loss subtracts reference scores: its own uses_reference, or that of the
// loss::preference composition it wraps (loss::alphapo: reference-free, with reward shaping).
template <class Loss>
constexpr bool uses_reference() {
  if constexpr (requires { Loss::uses_reference; })
    return Loss::uses_reference;
  else if constexpr (requires { typename Loss::composition; })
    return Loss::composition::uses_reference;
  else
    static_assert(sizeof(Loss) == 0,
                  "pipeline::preference_step<Loss>: Loss must say whether it uses reference scores "
                  "(static constexpr bool uses_reference, or a loss::preference `composition`)");
}

// The checks every step over preference_data makes before it writes anything (preference_step,
// kto_paired_step): token ids, one rejected per chosen, at least one pair, token-aligned masks.
// Returns the pair count.
inline index_t validate_pairs(const preference_data& data, index_t vocab, const char* where) {
  data.chosen.validate(where, "data.chosen", vocab);
  data.rejected.validate(where, "data.rejected", vocab);
  const index_t pairs = data.chosen.num_sequences();
  expect(pairs > 0, where, "data.chosen is empty, expected at least one pair");
  expect(data.rejected.num_sequences() == pairs, where, "data.rejected has ",
         data.rejected.num_sequences(), " sequences, expected ", pairs,
         " (one rejected per chosen)");
  detail::expect_token_aligned_mask(data.chosen_mask, data.chosen, where, "data.chosen_mask");
  detail::expect_token_aligned_mask(data.rejected_mask, data.rejected, where, "data.rejected_mask");
  return pairs;
}
}  // namespace preference_detail

template <class Loss, policy P, reference_model R, class O, dist::communicator C>
preference_metrics preference_step(P& policy, R& reference, O& optimizer,
                                   const preference_data& data,
                                   const preference_step_options<Loss>& options, C& comm) {
  using S = typename P::scalar_type;
  constexpr bool uses_reference = preference_detail::uses_reference<Loss>();
  static_assert(check_loss_model<Loss>());
  static_assert(std::is_same_v<typename Loss::template inputs<S>, loss::preference_inputs<S>>,
                "pipeline::preference_step<Loss>: Loss must take loss::preference_inputs (a "
                "loss::preference<...> composition: algo::dpo, ipo, simpo, dpo_nll, ...)");
  static_assert(!uses_reference || R::enabled,
                "pipeline::preference_step: this loss subtracts reference scores, so the reference "
                "model cannot be reference::none (use reference::frozen or reference::precomputed)");
  static_assert(std::is_same_v<typename R::scalar_type, S>,
                "pipeline::preference_step: the reference model's scalar_type must be the policy's");
  constexpr const char* where = "pipeline::preference_step";
  const index_t pairs = preference_detail::validate_pairs(data, policy.vocab_size(), where);
  validate_step_options(options, where);

  // Reference token log-probs of the whole batch (no gradient), before any update.
  std::vector<S> ref_c, ref_r;
  if constexpr (uses_reference) {
    ref_c.assign(data.chosen.tokens.size(), S(0));
    ref_r.assign(data.rejected.tokens.size(), S(0));
    reference.logprobs(data.chosen, std::span<S>(ref_c));
    reference.logprobs(data.rejected, std::span<S>(ref_r));
  }

  std::array<double, 2> counts{static_cast<double>(pairs), 0.0};
  for (float m : data.chosen_mask) counts[1] += m;
  all_reduce(comm, counts);
  loss::preference_normalizer norm{counts[0], counts[1]};

  preference_metrics m;
  m.pairs = counts[0];
  m.chosen_tokens = counts[1];
  forward_state<S> st;
  // sums: loss, pref, nll, Σ chosen reward, Σ rejected, Σ margin, Σ acc
  const auto t = run_micro_batches<7>(policy, optimizer, comm, options, pairs,
                                      [&](index_t p0, index_t p1, std::array<double, 7>& sums) {
    const sequence_slice cs = make_slice(data.chosen, p0, p1), rs = make_slice(data.rejected, p0, p1);
    const index_t nc = cs.token_end - cs.token_begin, nr = rs.token_end - rs.token_begin;
    // [chosen pairs; rejected pairs] as one packed batch.
    owned_sequences both;
    both.tokens.assign(data.chosen.tokens.begin() + cs.token_begin,
                       data.chosen.tokens.begin() + cs.token_end);
    both.tokens.insert(both.tokens.end(), data.rejected.tokens.begin() + rs.token_begin,
                       data.rejected.tokens.begin() + rs.token_end);
    both.seq_offsets = cs.offsets;
    for (std::size_t i = 1; i < rs.offsets.size(); ++i) both.seq_offsets.push_back(nc + rs.offsets[i]);
    const token_sequences view = both.view();
    std::vector<S> lp(both.tokens.size(), S(0)), grad(both.tokens.size(), S(0));
    policy_logprobs(policy, view, std::span<S>(lp), st, options.temperature);

    const auto cmask = data.chosen_mask.subspan(cs.token_begin, nc);
    const auto rmask = data.rejected_mask.subspan(rs.token_begin, nr);
    const preference_batch pb{token_batch{cs.offsets, cmask}, token_batch{rs.offsets, rmask}};
    std::vector<S> rho_c, rho_r;
    if constexpr (uses_reference) {
      rho_c.assign(static_cast<std::size_t>(p1 - p0), S(0));
      rho_r.assign(static_cast<std::size_t>(p1 - p0), S(0));
      Loss::reference_scores(pb, std::span<const S>(ref_c).subspan(cs.token_begin, nc),
                             std::span<const S>(ref_r).subspan(rs.token_begin, nr), options.loss,
                             std::span<S>(rho_c), std::span<S>(rho_r));
    }
    loss::preference_inputs<S> in;
    in.batch = pb;
    in.chosen_logprobs = std::span<const S>(lp).first(nc);
    in.rejected_logprobs = std::span<const S>(lp).subspan(nc, nr);
    in.reference_chosen = rho_c;
    in.reference_rejected = rho_r;
    loss::preference_outputs<S> out;
    out.chosen_grad = std::span<S>(grad).first(nc);
    out.rejected_grad = std::span<S>(grad).subspan(nc, nr);
    const auto r = Loss::compute(exec::host{}, in, options.loss, out, norm);
    const double n = static_cast<double>(p1 - p0);
    sums[0] += r.loss;
    sums[1] += r.preference_loss;
    sums[2] += r.nll;
    sums[3] += r.chosen_reward * n;
    sums[4] += r.rejected_reward * n;
    sums[5] += r.reward_margin * n;
    sums[6] += r.reward_accuracy * n;
    policy_backward(policy, view, st, std::span<const S>(grad), options.temperature);
  });
  const auto& sums = t.sums;
  m.micro_batches = t.micro_batches;
  m.grad_norm = t.grad_norm;
  m.loss = sums[0];
  m.preference_loss = sums[1];
  m.nll = sums[2];
  m.chosen_reward = sums[3] / m.pairs;
  m.rejected_reward = sums[4] / m.pairs;
  m.reward_margin = sums[5] / m.pairs;
  m.reward_accuracy = sums[6] / m.pairs;
  return m;
}

template <class Loss, policy P, reference_model R, class O>
preference_metrics preference_step(P& policy, R& reference, O& optimizer,
                                   const preference_data& data,
                                   const preference_step_options<Loss>& options = {}) {
  dist::single_process_communicator comm;
  return preference_step<Loss>(policy, reference, optimizer, data, options, comm);
}

}  // namespace pipeline

POSTTRAIN_NAMESPACE_END
