// examples/01_primitives.cpp — the posttrain primitives end to end on synthetic data.
//
// A tiny "model" emits random logits for a packed batch of 4 responses (ragged lengths, one
// prompt token masked out per response). We compute, with the CPU backend:
//   1. token log-probs and entropies from the logits (one pass per row),
//   2. the k3 KL to a perturbed reference and its token-mean / seq-mean-token-mean aggregations,
//   3. whitened rewards under verl's and OpenRLHF's conventions,
//   4. a DPO loss over 2 chosen/rejected pairs, and the SFT-style backward to d(logits),
// and print each as a table. Run it with `./run.sh demo`.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include <posttrain/posttrain.hpp>

namespace pt = posttrain;

int main() {
  constexpr pt::index_t vocab = 512;
  const std::vector<pt::index_t> lengths{5, 8, 3, 6};
  const std::vector<pt::index_t> offsets = pt::offsets_from_lengths(lengths);
  const pt::index_t n = offsets.back();
  const pt::index_t b = static_cast<pt::index_t>(lengths.size());

  std::mt19937 rng(2026);
  std::normal_distribution<float> normal(0.f, 2.f);
  std::uniform_int_distribution<pt::index_t> token(0, vocab - 1);
  std::vector<float> logits(static_cast<std::size_t>(n * vocab));
  for (float& z : logits) z = normal(rng);
  std::vector<pt::index_t> targets(static_cast<std::size_t>(n));
  for (auto& y : targets) y = token(rng);
  // The first token of every response is prompt: mask 0 (and an ignored target, as HF labels do).
  std::vector<float> mask(static_cast<std::size_t>(n), 1.f);
  for (pt::index_t s = 0; s < b; ++s) {
    mask[static_cast<std::size_t>(offsets[s])] = 0.f;
    targets[static_cast<std::size_t>(offsets[s])] = -100;
  }

  // 1. Token log-probs and entropies at temperature 0.7.
  const pt::matrix_view<const float> logits_view{logits.data(), n, vocab};
  const pt::token_logprobs_options lp_options{.temperature = 0.7};
  const auto lp = pt::token_logprobs(pt::exec::host{}, logits_view, targets, lp_options);

  std::vector<double> seq_logprob(static_cast<std::size_t>(b)), seq_entropy(seq_logprob.size());
  std::vector<double> seq_tokens(seq_logprob.size());
  pt::segment_stats(pt::exec::host{}, std::span<const float>(lp.logprob), mask, offsets,
                    {.count = seq_tokens, .mean = seq_logprob});
  pt::segment_stats(pt::exec::host{}, std::span<const float>(lp.entropy), mask, offsets,
                    {.mean = seq_entropy});
  std::printf("1. token log-probs, V = %lld, temperature 0.7 (mean over response tokens)\n",
              static_cast<long long>(vocab));
  std::printf("   %-4s %7s %12s %12s\n", "seq", "tokens", "log-prob", "entropy");
  for (pt::index_t s = 0; s < b; ++s)
    std::printf("   %-4lld %7.0f %12.4f %12.4f\n", static_cast<long long>(s), seq_tokens[s],
                seq_logprob[s], seq_entropy[s]);
  std::printf("   (uniform over V would give log-prob %.4f and entropy %.4f)\n\n",
              -std::log(double(vocab)), std::log(double(vocab)));

  // 2. k3 KL to a reference that differs by small noise, aggregated two ways.
  std::vector<float> ref(lp.logprob);
  std::normal_distribution<float> small(0.f, 0.3f);
  for (float& r : ref) r += small(rng);
  std::vector<float> kl(static_cast<std::size_t>(n)), kl_grad(kl.size());
  pt::kl_divergence<pt::kl::k3>(pt::exec::host{}, std::span<const float>(lp.logprob),
                                std::span<const float>(ref), pt::kl_conventions::verl(pt::kl_kind::k3),
                                std::span<float>(kl), std::span<float>(kl_grad));
  const auto token_mean = pt::aggregate_loss<pt::agg::token_mean>(
      pt::exec::host{}, std::span<const float>(kl), mask, offsets);
  const auto seq_mean = pt::aggregate_loss<pt::agg::seq_mean_token_mean>(
      pt::exec::host{}, std::span<const float>(kl), mask, offsets);
  std::printf("2. k3 KL to a perturbed reference (verl clamps)\n");
  std::printf("   %-22s %10s %10s\n", "aggregation", "value", "divisor");
  std::printf("   %-22s %10.5f %10.0f\n", "token-mean", token_mean.loss, token_mean.divisor);
  std::printf("   %-22s %10.5f %10.0f\n\n", "seq-mean-token-mean", seq_mean.loss,
              seq_mean.divisor);

  // 3. Whitening per-token rewards under two peer conventions.
  std::vector<float> rewards(static_cast<std::size_t>(n));
  for (float& r : rewards) r = 1.f + normal(rng);
  std::vector<float> verl_w(rewards.size()), openrlhf_w(rewards.size());
  pt::whiten(pt::exec::host{}, std::span<const float>(rewards), mask, std::span<float>(verl_w),
             pt::whiten_conventions::verl);
  pt::whiten(pt::exec::host{}, std::span<const float>(rewards), mask,
             std::span<float>(openrlhf_w), pt::whiten_conventions::openrlhf_global);
  std::printf("3. whitening of the first response's rewards (token 0 is masked)\n");
  std::printf("   %-6s %10s %14s %16s\n", "token", "reward", "verl", "openrlhf");
  for (pt::index_t t = 0; t < lengths[0]; ++t)
    std::printf("   %-6lld %10.4f %14.6f %16.6f\n", static_cast<long long>(t), rewards[t],
                verl_w[t], openrlhf_w[t]);
  std::printf("   (verl: unbiased var + 1e-8 inside rsqrt; OpenRLHF: biased var, max(var, 1e-8))\n\n");

  // 4. DPO over pairs (response 0 chosen vs 1 rejected, 2 vs 3), then the NLL backward to logits.
  const std::vector<pt::index_t> chosen_offsets{0, lengths[0], lengths[0] + lengths[2]};
  const std::vector<pt::index_t> rejected_offsets{0, lengths[1], lengths[1] + lengths[3]};
  auto gather = [&](std::span<const float> v, std::initializer_list<pt::index_t> seqs) {
    std::vector<float> out;
    for (pt::index_t s : seqs) out.insert(out.end(), v.begin() + offsets[s], v.begin() + offsets[s + 1]);
    return out;
  };
  const auto chosen_lp = gather(lp.logprob, {0, 2}), rejected_lp = gather(lp.logprob, {1, 3});
  const auto chosen_mask = gather(mask, {0, 2}), rejected_mask = gather(mask, {1, 3});
  std::vector<float> ref_chosen(2), ref_rejected(2);
  pt::loss::sequence_scores<pt::seq::sum>(std::span<const float>(gather(ref, {0, 2})),
                                          pt::token_batch{chosen_offsets, chosen_mask},
                                          std::span<float>(ref_chosen));
  pt::loss::sequence_scores<pt::seq::sum>(std::span<const float>(gather(ref, {1, 3})),
                                          pt::token_batch{rejected_offsets, rejected_mask},
                                          std::span<float>(ref_rejected));
  const pt::loss::preference_inputs<float> pairs{
      .batch = {.chosen = {chosen_offsets, chosen_mask},
                .rejected = {rejected_offsets, rejected_mask}},
      .chosen_logprobs = chosen_lp,
      .rejected_logprobs = rejected_lp,
      .reference_chosen = ref_chosen,
      .reference_rejected = ref_rejected};
  std::vector<float> chosen_grad(chosen_lp.size()), rejected_grad(rejected_lp.size());
  const auto dpo = pt::algo::dpo::compute(pairs, {.beta = 0.1},
                                          {.chosen_grad = chosen_grad, .rejected_grad = rejected_grad});
  std::printf("4. DPO (sigmoid, beta 0.1) over 2 pairs with cached reference scores\n");
  std::printf("   %-10s %10s %14s %14s %10s\n", "loss", "margin", "chosen reward",
              "rejected rwd", "accuracy");
  std::printf("   %-10.5f %10.5f %14.5f %14.5f %10.2f\n", dpo.loss, dpo.reward_margin,
              dpo.chosen_reward, dpo.rejected_reward, dpo.reward_accuracy);

  // SFT-style backward: token-mean NLL over the response tokens, d(loss)/d(logits).
  std::vector<float> nll(lp.logprob.size()), d_logprob(nll.size());
  for (std::size_t i = 0; i < nll.size(); ++i) nll[i] = -lp.logprob[i];
  const auto sft = pt::aggregate_loss<pt::agg::token_mean>(
      pt::exec::host{}, std::span<const float>(nll), mask, offsets, {}, std::span<float>(d_logprob));
  for (float& g : d_logprob) g = -g;  // d(-logprob)/d(logprob)
  std::vector<float> d_logits(logits.size());
  pt::token_logprobs_backward(pt::exec::host{}, logits_view, targets,
                              {.lse = lp.lse, .d_logprob = d_logprob},
                              pt::matrix_view<float>{d_logits.data(), n, vocab}, lp_options);
  double norm = 0, row_sum = 0;
  for (float g : d_logits) norm += double(g) * g;
  for (pt::index_t v = 0; v < vocab; ++v) row_sum += d_logits[static_cast<std::size_t>(vocab + v)];
  std::printf("\n5. SFT token-mean NLL = %.5f; |d loss / d logits| = %.6f; a row of the gradient "
              "sums to %.2e (softmax rows sum to zero)\n",
              sft.loss, std::sqrt(norm), row_sum);
  return 0;
}
