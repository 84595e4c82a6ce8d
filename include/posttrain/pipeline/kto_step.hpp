#pragma once
// pipeline::kto_step<Loss> — one KTO update on unpaired data (TRL KTOTrainer; Ethayarajh et al.
// 2024): B examples (prompt ++ completion, desirable / undesirable label) and, for the KL reference
// point, B mismatched pairs (prompt_i ++ completion_{i−1 mod B}: TRL's KL_completion_ids rotate
// completions by one within the per-device batch; pipeline/chat.hpp's pack_kto builds both).
//
//   ρ_b   = SeqReduce(reference ℓ of example b, mask)                  (whole batch, before any write)
//   z0    = max(Σ_ranks Σ_k (π_KL,k − ρ_KL,k) / Σ_ranks K, 0)         (detached: forward only)
//   for each micro-batch of options.micro_batch examples:
//     ℓ = policy forward;  Loss::compute(ℓ, ρ, labels, z0, normaliser = GLOBAL example count)
//     policy.backward of its gradient
//   all-reduce gradients; clip; optimizer.step
//
// The KL reference point is a batch statistic. It is computed once per step, from every KL pair of
// every rank (one forward over the KL sequences with the parameters of the step, no gradient; one
// all-reduce of (Σ, K)), before the micro-batch loop, and every micro-batch uses that same z0: so
// K micro-batches and R ranks give the full-batch update exactly. TRL estimates z0 in every forward
// (per micro-batch with gradient accumulation: the mean over processes of each process's mean of
// that micro-batch); with one micro-batch per step and equal per-device batches the two agree
// (TRL's mean of per-process means = the global mean). With gradient accumulation TRL's update
// depends on the accumulation split; ours does not (a documented difference).
// unpaired::apo_zero (algo::kto_apo_zero_unpaired) has no z0: the KL sequences may be empty and are
// not run.
//
// Loss: loss::kto<Link, SeqReduce> (algo::kto, algo::kto_apo_zero_unpaired). Reference: enabled
// (frozen or precomputed). Masks are token-aligned (pipeline/types.hpp): 1 on completion tokens.
// Validated before anything is written (posttrain::error, parameters untouched): empty batch,
// token ids, masks, labels (0 or 1, one per example), KL sequences (one per example, or none for
// apo_zero), options (the loss validates β and the weights before the first forward).
#include <array>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/dist/communicator.hpp"
#include "posttrain/loss/concept.hpp"
#include "posttrain/loss/kto.hpp"
#include "posttrain/pipeline/policy.hpp"
#include "posttrain/pipeline/reference.hpp"
#include "posttrain/pipeline/step_common.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pipeline {

struct kto_data {
  token_sequences examples{};                // B sequences: prompt ++ completion
  std::span<const float> mask{};             // [N] token-aligned, 1 on completion tokens
  std::span<const std::uint8_t> desirable{}; // [B] 1 desirable, 0 undesirable
  token_sequences kl_examples{};             // B mismatched pairs (or none: seq_offsets empty)
  std::span<const float> kl_mask{};          // [N_KL]
};

template <class Loss>
struct kto_step_options : step_options {
  typename Loss::options_type loss{};
};

struct kto_metrics {
  double loss = 0;                 // full-batch loss
  double kl_reference = 0;         // z0 used
  double desirable_reward = 0, undesirable_reward = 0;  // global means of β·Δ per label
  double desirable = 0, undesirable = 0;                // global counts
  double examples = 0;
  double grad_norm = 0;
  index_t micro_batches = 0;
};

namespace kto_detail {
struct not_kto {
  static constexpr bool is_kto = false;
  using seq_reduce = seq::sum;
  static constexpr bool needs_kl = false;
};
template <class Link, class SeqReduce>
struct kto_of {
  static constexpr bool is_kto = true;
  using seq_reduce = SeqReduce;
  static constexpr bool needs_kl = std::is_same_v<Link, unpaired::kto>;
};
// loss::kto<Link, SeqReduce> or a recipe deriving from it (algo::kto).
template <class Link, class SeqReduce>
kto_of<Link, SeqReduce> traits_of(const loss::kto<Link, SeqReduce>*);
not_kto traits_of(const void*);
template <class Loss>
using traits = decltype(traits_of(static_cast<const Loss*>(nullptr)));

// SeqReduce(ℓ, m) of every sequence, in double.
template <class SeqReduce, class S>
std::vector<S> sequence_scores(const token_sequences& s, std::span<const S> lp,
                               std::span<const float> mask) {
  std::vector<S> out;
  out.reserve(static_cast<std::size_t>(s.num_sequences()));
  for (index_t b = 0; b < s.num_sequences(); ++b) {
    double sum = 0, w = 0;
    for (index_t t = s.seq_offsets[b]; t < s.seq_offsets[b + 1]; ++t)
      if (mask[t] != 0) {
        sum += static_cast<double>(mask[t]) * static_cast<double>(lp[t]);
        w += mask[t];
      }
    out.push_back(static_cast<S>(SeqReduce::score(sum, w)));
  }
  return out;
}
}  // namespace kto_detail

template <class Loss, policy P, reference_model R, class O, dist::communicator C>
kto_metrics kto_step(P& policy, R& reference, O& optimizer, const kto_data& data,
                     const kto_step_options<Loss>& options, C& comm) {
  using S = typename P::scalar_type;
  using tr = kto_detail::traits<Loss>;
  static_assert(tr::is_kto, "pipeline::kto_step<Loss>: Loss must be a loss::kto<Link, SeqReduce> "
                            "composition (algo::kto, algo::kto_apo_zero_unpaired)");
  static_assert(check_loss_model<Loss>());
  static_assert(R::enabled, "pipeline::kto_step: KTO subtracts reference scores, so the reference "
                            "model cannot be reference::none");
  static_assert(std::is_same_v<typename R::scalar_type, S>,
                "pipeline::kto_step: the reference model's scalar_type must be the policy's");
  using SR = typename tr::seq_reduce;
  constexpr const char* where = "pipeline::kto_step";
  const index_t v = policy.vocab_size();
  data.examples.validate(where, "data.examples", v);
  const index_t count = data.examples.num_sequences();
  expect(count > 0, where, "data.examples is empty, expected at least one example");
  detail::expect_token_aligned_mask(data.mask, data.examples, where, "data.mask");
  expect_size(data.desirable, count, where, "data.desirable", "one label per example");
  for (std::size_t i = 0; i < data.desirable.size(); ++i)
    expect(data.desirable[i] <= 1, where, "data.desirable[", i, "] = ", int(data.desirable[i]),
           ", expected 0 (undesirable) or 1 (desirable)");
  const bool has_kl = !data.kl_examples.seq_offsets.empty();
  if constexpr (tr::needs_kl)
    expect(has_kl, where, "data.kl_examples is empty, but KTO's reference point needs the "
                          "mismatched pairs (pack_kto builds them)");
  if (has_kl) {
    data.kl_examples.validate(where, "data.kl_examples", v);
    expect(data.kl_examples.num_sequences() == count, where, "data.kl_examples has ",
           data.kl_examples.num_sequences(), " sequences, expected ", count,
           " (one mismatched pair per example)");
    detail::expect_token_aligned_mask(data.kl_mask, data.kl_examples, where, "data.kl_mask");
  }
  validate_step_options(options, where);
  loss::detail::validate_kto_options(options.loss, where);

  // Reference scores of the examples (no gradient), before any update.
  std::vector<S> ref_lp(data.examples.tokens.size(), S(0));
  reference.logprobs(data.examples, std::span<S>(ref_lp));
  const std::vector<S> rho = kto_detail::sequence_scores<SR>(data.examples, std::span<const S>(ref_lp), data.mask);

  forward_state<S> st;
  // z0 from every rank's mismatched pairs (detached).
  std::array<double, 4> global{static_cast<double>(count), 0, 0, 0};  // B, Σ(π−ρ)_KL, K, n_D
  for (auto d : data.desirable) global[3] += d;
  if (tr::needs_kl && has_kl) {
    std::vector<S> kl_lp(data.kl_examples.tokens.size(), S(0)), kl_ref(kl_lp.size(), S(0));
    policy_logprobs(policy, data.kl_examples, std::span<S>(kl_lp), st, options.temperature);
    reference.logprobs(data.kl_examples, std::span<S>(kl_ref));
    const auto pi_kl = kto_detail::sequence_scores<SR>(data.kl_examples, std::span<const S>(kl_lp), data.kl_mask);
    const auto rho_kl = kto_detail::sequence_scores<SR>(data.kl_examples, std::span<const S>(kl_ref), data.kl_mask);
    const loss::kto_kl_sum part = loss::kto_kl_partial(std::span<const S>(pi_kl), std::span<const S>(rho_kl));
    global[1] = part.sum;
    global[2] = part.count;
  }
  all_reduce(comm, global);
  const double z0 = tr::needs_kl ? loss::kto_reference_point(global[1], global[2]) : 0.0;
  const loss::kto_normalizer norm{global[0]};

  kto_metrics m;
  m.examples = global[0];
  m.desirable = global[3];
  m.undesirable = global[0] - global[3];
  m.kl_reference = z0;
  std::vector<S> lp, grad;
  std::vector<double> rewards;
  // sums: loss, Σ β·Δ desirable, Σ β·Δ undesirable
  const auto t = run_micro_batches<3>(policy, optimizer, comm, options, count,
                                      [&](index_t b0, index_t b1, std::array<double, 3>& sums) {
    const sequence_slice sl = make_slice(data.examples, b0, b1);
    const token_sequences mb = sl.view_of(data.examples, b0, b1);
    const index_t nt = sl.token_end - sl.token_begin;
    lp.assign(static_cast<std::size_t>(nt), S(0));
    grad.assign(static_cast<std::size_t>(nt), S(0));
    rewards.assign(static_cast<std::size_t>(b1 - b0), 0.0);
    policy_logprobs(policy, mb, std::span<S>(lp), st, options.temperature);
    loss::kto_inputs<S> in;
    in.batch = token_batch{sl.offsets, data.mask.subspan(sl.token_begin, nt)};
    in.logprobs = lp;
    in.reference = std::span<const S>(rho).subspan(b0, b1 - b0);
    in.desirable = data.desirable.subspan(b0, b1 - b0);
    in.kl_reference = z0;
    loss::kto_outputs<S> out;
    out.grad = grad;
    out.rewards = rewards;
    const auto r = Loss::compute(exec::host{}, in, options.loss, out, norm);
    sums[0] += r.loss;
    for (index_t i = b0; i < b1; ++i) sums[data.desirable[i] ? 1 : 2] += rewards[i - b0];
    policy_backward(policy, mb, st, std::span<const S>(grad), options.temperature);
  });
  m.loss = t.sums[0];
  m.desirable_reward = m.desirable > 0 ? t.sums[1] / m.desirable : 0.0;
  m.undesirable_reward = m.undesirable > 0 ? t.sums[2] / m.undesirable : 0.0;
  m.micro_batches = t.micro_batches;
  m.grad_norm = t.grad_norm;
  return m;
}

template <class Loss, policy P, reference_model R, class O>
kto_metrics kto_step(P& policy, R& reference, O& optimizer, const kto_data& data,
                     const kto_step_options<Loss>& options = {}) {
  dist::single_process_communicator comm;
  return kto_step<Loss>(policy, reference, optimizer, data, options, comm);
}

}  // namespace pipeline

POSTTRAIN_NAMESPACE_END
