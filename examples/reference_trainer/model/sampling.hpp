#pragma once
// Sampling one token from a row of logits, as transformers' generate does it:
//   temperature τ (0 = greedy), then top-k (keep the k largest; 0 = off), then top-p (keep the
//   smallest set of most likely tokens whose probability reaches p; at least one), renormalise,
//   draw with one uniform number from the sample's own generator (inverse CDF: over the ids in
//   order when nothing is truncated, else over the kept tokens by decreasing probability).
// Two log-probs come back for the chosen token:
//   sampling_logprob  log of its probability in the distribution actually sampled from (after
//                     temperature, top-k and top-p): the rollout engine's own log-prob, what
//                     truncated importance sampling / rollout correction divide by;
//   model_logprob     log-softmax(logits / τ) before truncation (τ = 1 for greedy): what the
//                     trainer recomputes for the PPO ratio.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <span>
#include <vector>

#include <posttrain/core/validate.hpp>

namespace reference_model {

using posttrain::index_t;

struct sampling_options {
  double temperature = 1.0;  // >= 0; 0 = greedy (argmax, ties to the lowest id)
  index_t top_k = 0;         // >= 0; 0 = no top-k
  double top_p = 1.0;        // in (0, 1]; 1 = no top-p
  index_t max_new_tokens = 16;
  std::vector<index_t> stop_tokens;  // a sampled stop token ends its sequence (and is kept)
  // generate() only: rows with identical prompt tokens share one prefill (generate.hpp,
  // "Shared-prompt prefill"); same draws either way. false = prefill every row (tests, A/B).
  bool share_prompt_prefill = true;
};

inline void validate(const sampling_options& o, index_t vocab) {
  constexpr const char* where = "reference_model::sampling_options";
  using posttrain::expect;
  expect(std::isfinite(o.temperature) && o.temperature >= 0, where, "temperature is ",
         o.temperature, ", expected finite and >= 0 (0 = greedy)");
  expect(o.top_k >= 0, where, "top_k is ", o.top_k, ", expected >= 0 (0 = off)");
  expect(o.top_p > 0 && o.top_p <= 1, where, "top_p is ", o.top_p, ", expected in (0, 1]");
  expect(o.max_new_tokens >= 0, where, "max_new_tokens is ", o.max_new_tokens, ", expected >= 0");
  for (index_t t : o.stop_tokens)
    expect(t >= 0 && t < vocab, where, "stop token ", t, " is outside the vocabulary [0, ", vocab,
           ")");
}

struct sampled_token {
  index_t token = 0;
  double sampling_logprob = 0;
  double model_logprob = 0;
};

template <class S>
sampled_token sample_token(std::span<const S> logits, const sampling_options& o,
                           std::mt19937_64& rng) {
  const index_t v = static_cast<index_t>(logits.size());
  const double tau = o.temperature > 0 ? o.temperature : 1.0;
  // Per-thread scratch (no allocation per token): z = logits / τ, e = exp(z − max).
  thread_local std::vector<double> z_buf, e_buf;
  z_buf.resize(static_cast<std::size_t>(v));
  e_buf.resize(static_cast<std::size_t>(v));
  std::vector<double>& z = z_buf;
  double* e = e_buf.data();
  double m = -INFINITY;
  for (index_t i = 0; i < v; ++i) m = std::max(m, z[i] = double(logits[i]) / tau);
  double sum = 0;
  for (index_t i = 0; i < v; ++i) sum += (e[i] = std::exp(z[i] - m));
  const double lse = m + std::log(sum);
  // The uniform is drawn every step, greedy or not, so a sample's stream of draws depends only on
  // its own seed and step.
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  if (o.temperature == 0) {
    const index_t best = static_cast<index_t>(std::max_element(z.begin(), z.end()) - z.begin());
    return {best, 0.0, z[best] - lse};
  }
  if ((o.top_k == 0 || o.top_k >= v) && o.top_p >= 1) {
    // No truncation: inverse CDF in id order, no sort (generation's common case).
    const double target = u * sum;  // sum = Σ exp(z_i − m)
    double acc = 0;
    index_t chosen = v - 1;
    for (index_t i = 0; i < v; ++i) {
      acc += e[i];  // the same exp(z_i − m) as in `sum`: one exp per id, same rounding
      if (target < acc) {
        chosen = i;
        break;
      }
    }
    return {chosen, z[chosen] - lse, z[chosen] - lse};
  }
  // Candidates by decreasing probability (ties: lower id first, deterministic).
  std::vector<index_t> order(static_cast<std::size_t>(v));
  std::iota(order.begin(), order.end(), index_t(0));
  index_t keep = v;
  if (o.top_k > 0 && o.top_k < v) keep = o.top_k;
  std::partial_sort(order.begin(), order.begin() + keep, order.end(),
                    [&](index_t a, index_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); });
  if (o.top_p < 1) {
    // HF's TopPLogitsWarper: a token stays while the mass of the tokens before it is < p.
    double mass_before = 0, kept_total = 0;
    for (index_t r = 0; r < keep; ++r) kept_total += std::exp(z[order[r]] - lse);
    index_t r = 0;
    for (; r < keep; ++r) {
      if (r > 0 && mass_before >= o.top_p * kept_total) break;
      mass_before += std::exp(z[order[r]] - lse);
    }
    keep = r;
  }
  double kept = 0;
  for (index_t r = 0; r < keep; ++r) kept += std::exp(z[order[r]] - lse);
  const double target = u * kept;
  double acc = 0;
  index_t chosen = order[keep - 1];
  for (index_t r = 0; r < keep; ++r) {
    acc += std::exp(z[order[r]] - lse);
    if (target < acc) {
      chosen = order[r];
      break;
    }
  }
  return {chosen, z[chosen] - lse - std::log(kept), z[chosen] - lse};
}

}  // namespace reference_model
