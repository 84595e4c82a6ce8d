#pragma once
// pipeline::sft_step<Loss> — one supervised fine-tuning update.
//
//   for each micro-batch k (options.micro_batch sequences):
//     ℓ = policy_logprobs(policy, sequences_k)                 (token-aligned, pipeline/types.hpp)
//     g = Loss::compute(ℓ, {offsets_k, loss_mask_k}, normaliser = GLOBAL counts)
//     policy.backward(d logits of g)                            (adds into policy.gradients())
//   all-reduce gradients over ranks; clip to options.max_grad_norm; optimizer.step
//
// Loss: a loss_model whose inputs are loss::sft_inputs (algo::sft = token mean, algo::sft_sum
// (Tülu 3 "sum"), algo::sft_sample_mean, or any loss::sft<agg mode>). loss_mask[N] is 0 on prompt
// tokens (and the first token of every sequence, checked): Llama 3's "prompt tokens masked".
// The normaliser carries the global token count Σ m and sequence count (rows with Σ m > 0, or all
// rows with aggregation.include_empty_sequences) over every micro-batch and rank, so the update
// is the same for any micro-batch size and rank count (tests/pipeline/sft_step.cpp).
// normalizer_constant: C of agg::constant_divisor modes (required by them).
//
// Validated before anything is written (posttrain::error, parameters untouched): an empty batch,
// token ids outside [0, V), mask size and first-token zeros, options; the optimizer checks the
// gradients are finite before it steps.
#include <cmath>
#include <optional>
#include <span>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/dist/communicator.hpp"
#include "posttrain/loss/concept.hpp"
#include "posttrain/loss/sft.hpp"
#include "posttrain/pipeline/policy.hpp"
#include "posttrain/pipeline/step_common.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pipeline {

struct sft_batch {
  token_sequences sequences{};      // prompt + response, packed
  std::span<const float> loss_mask{};  // [N] 0 on prompt tokens, 1 (or a weight) on trained ones
};

template <class Loss>
struct sft_step_options : step_options {
  typename Loss::options_type loss{};
  std::optional<double> normalizer_constant{};  // agg::constant_divisor's C
};

struct sft_metrics {
  double loss = 0;       // the full-batch loss (summed over micro-batches and ranks)
  double tokens = 0;     // global Σ m
  double sequences = 0;  // global contributing sequences
  double grad_norm = 0;  // before clipping
  index_t micro_batches = 0;
};

template <class Loss, policy P, class O, dist::communicator C>
sft_metrics sft_step(P& policy, O& optimizer, const sft_batch& batch,
                     const sft_step_options<Loss>& options, C& comm) {
  using S = typename P::scalar_type;
  static_assert(check_loss_model<Loss>());
  static_assert(std::is_same_v<typename Loss::template inputs<S>, loss::sft_inputs<S>>,
                "pipeline::sft_step<Loss>: Loss must take loss::sft_inputs (loss::sft<Mode>, "
                "algo::sft, algo::sft_sum, algo::sft_sample_mean)");
  static_assert(optim::check_optimizer<O, S>());
  constexpr const char* where = "pipeline::sft_step";
  const token_sequences& s = batch.sequences;
  s.validate(where, "batch.sequences", policy.vocab_size());
  expect(s.num_sequences() > 0, where, "batch.sequences is empty, expected at least one sequence");
  detail::expect_token_aligned_mask(batch.loss_mask, s, where, "batch.loss_mask");
  validate_step_options(options, where);

  // Global normalisers: Σ m and contributing rows, summed over ranks.
  const bool include_empty = options.loss.aggregation.include_empty_sequences;
  std::array<double, 2> counts{0, 0};
  for (index_t b = 0; b < s.num_sequences(); ++b) {
    double w = 0;
    for (index_t t = s.seq_offsets[b]; t < s.seq_offsets[b + 1]; ++t) w += batch.loss_mask[t];
    counts[0] += w;
    counts[1] += (w > 0 || include_empty) ? 1.0 : 0.0;
  }
  all_reduce(comm, counts);
  agg_normalizer norm;
  norm.tokens = counts[0];
  norm.sequences = counts[1];
  norm.constant = options.normalizer_constant;

  sft_metrics m;
  m.tokens = counts[0];
  m.sequences = counts[1];
  forward_state<S> st;
  std::vector<S> lp, grad;
  const auto t = run_micro_batches<1>(policy, optimizer, comm, options, s.num_sequences(),
                                      [&](index_t b0, index_t b1, std::array<double, 1>& sums) {
    const sequence_slice sl = make_slice(s, b0, b1);
    const token_sequences mb = sl.view_of(s, b0, b1);
    const auto mask = batch.loss_mask.subspan(sl.token_begin, sl.token_end - sl.token_begin);
    lp.assign(mb.tokens.size(), S(0));
    grad.assign(mb.tokens.size(), S(0));
    policy_logprobs(policy, mb, std::span<S>(lp), st, options.temperature);
    const loss::sft_inputs<S> in{lp, token_batch{sl.offsets, mask}};
    const auto r = Loss::compute(exec::host{}, in, options.loss, loss::sft_outputs<S>{grad}, norm);
    sums[0] += r.loss;
    policy_backward(policy, mb, st, std::span<const S>(grad), options.temperature);
  });
  m.loss = t.sums[0];
  m.micro_batches = t.micro_batches;
  m.grad_norm = t.grad_norm;
  return m;
}

template <class Loss, policy P, class O>
sft_metrics sft_step(P& policy, O& optimizer, const sft_batch& batch,
                     const sft_step_options<Loss>& options = {}) {
  dist::single_process_communicator comm;
  return sft_step<Loss>(policy, optimizer, batch, options, comm);
}

}  // namespace pipeline

POSTTRAIN_NAMESPACE_END
