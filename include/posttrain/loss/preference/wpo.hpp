#pragma once
// loss::wpo_pair_weights — WPO (Zhou et al. 2024, weighted preference optimisation): detached
// per-pair weights for inputs.pair_weights of any loss::preference composition (algo::wpo = DPO).
//
//   For each sequence y (chosen or rejected completion of pair p), tokens t with mask m_t:
//     a_y = Σ_t m_t·(ℓ_t − log Σ_v p_v,t²) / max(Σ_t m_t, 1)     (ℓ − log Σp²: "aligned" log-prob)
//     w_p = exp(a_c + a_r)                  (clamp_at_one = false: TRL HEAD, w_c·w_r, no clamp)
//     w_p = min(exp(a_c + a_r), 1)          (clamp_at_one = true: TRL v0.26, open-instruct)
//   Without Σp² (empty spans) the alignment term is dropped: a_y = token mean of ℓ, which is what
//   open-instruct's `wpo` computes (pref::presets::wpo_open_instruct, pass no Σp²).
//
//   Inputs: batch (P pairs), policy token log-probs ℓ [Nc], [Nr] (the same ones the loss reads; the
//   weights are detached: no gradient flows through them), and optionally Σ_v p_v² per token
//   [Nc], [Nr] — ops::token_logprobs writes it into token_logprobs_outputs::sum_p_squared
//   (log Σp² = logsumexp(2z) − 2·logsumexp(z), TRL's log_denom). Unmasked Σp² must be in
//   (0, 1] (1e-4 slack for rounding); masked tokens are never read.
//   Output: pair_weights [P] (double). Sums in double. a_c + a_r ≤ 2·log V, so w is finite.
#include <cmath>
#include <span>
#include <string>

#include "posttrain/config.hpp"
#include "posttrain/core/batch.hpp"
#include "posttrain/core/validate.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace loss {

struct wpo_options {
  bool clamp_at_one = false;  // TRL HEAD: false; TRL v0.26 / open-instruct: true
};

namespace detail {

template <class T>
double wpo_aligned_mean(std::span<const T> logprobs, std::span<const T> sum_p_squared,
                        std::span<const float> mask, index_t begin, index_t end) {
  double s = 0, w = 0;
  for (index_t t = begin; t < end; ++t) {
    const double m = mask.empty() ? 1.0 : static_cast<double>(mask[t]);
    if (m == 0.0) continue;
    double x = static_cast<double>(logprobs[t]);
    if (!sum_p_squared.empty()) x -= std::log(static_cast<double>(sum_p_squared[t]));
    s += m * x;
    w += m;
  }
  return s / (w > 1.0 ? w : 1.0);
}

template <class T>
void expect_sum_p_squared(std::span<const T> values, const token_batch& side,
                          std::string_view where, std::string_view argument) {
  if (values.empty()) return;
  expect_size(values, side.num_tokens(), where, argument, "one per token, or empty");
  for (index_t t = 0; t < side.num_tokens(); ++t) {
    if (side.weight(t) == 0.0f) continue;
    const double v = static_cast<double>(values[t]);
    expect(std::isfinite(v) && v > 0.0 && v <= 1.0 + 1e-4, where, argument, "[", t, "] = ", v,
           ", expected Σ p² in (0, 1] (pass Σp², not its log)");
  }
}

}  // namespace detail

template <class T>
void wpo_pair_weights(const preference_batch& batch, std::span<const T> chosen_logprobs,
                      std::span<const T> rejected_logprobs, std::span<const T> chosen_sum_p_squared,
                      std::span<const T> rejected_sum_p_squared, std::span<double> pair_weights,
                      const wpo_options& options = {}) {
  const std::string where = "loss::wpo_pair_weights";
  batch.validate(where);
  expect_size(chosen_logprobs, batch.chosen.num_tokens(), where, "chosen_logprobs",
              "one per chosen token");
  expect_size(rejected_logprobs, batch.rejected.num_tokens(), where, "rejected_logprobs",
              "one per rejected token");
  expect(chosen_sum_p_squared.empty() == rejected_sum_p_squared.empty(), where,
         "chosen_sum_p_squared and rejected_sum_p_squared must both be given or both be empty");
  detail::expect_sum_p_squared(chosen_sum_p_squared, batch.chosen, where, "chosen_sum_p_squared");
  detail::expect_sum_p_squared(rejected_sum_p_squared, batch.rejected, where,
                               "rejected_sum_p_squared");
  expect_size(pair_weights, batch.num_pairs(), where, "pair_weights", "one per pair");
  for (index_t p = 0; p < batch.num_pairs(); ++p) {
    const double a_c =
        detail::wpo_aligned_mean(chosen_logprobs, chosen_sum_p_squared, batch.chosen.mask,
                                 batch.chosen.seq_offsets[p], batch.chosen.seq_offsets[p + 1]);
    const double a_r =
        detail::wpo_aligned_mean(rejected_logprobs, rejected_sum_p_squared, batch.rejected.mask,
                                 batch.rejected.seq_offsets[p], batch.rejected.seq_offsets[p + 1]);
    const double x = a_c + a_r;
    pair_weights[p] = std::exp(options.clamp_at_one && x > 0.0 ? 0.0 : x);
  }
}

}  // namespace loss

namespace pref::presets {

// WPO weights: TRL HEAD use_weighting (w_c·w_r, no clamp).
inline constexpr loss::wpo_options wpo_trl{};
// TRL v0.26 use_weighting: min(exp(a_c + a_r), 1) with the Σp² alignment.
inline constexpr loss::wpo_options wpo_trl_v026{.clamp_at_one = true};
// open-instruct `wpo`: min(exp(ā_c + ā_r), 1) on plain token means (pass no Σp²). open-instruct's
// code only broadcasts when T == B (§7.8); this is its intended semantics.
inline constexpr loss::wpo_options wpo_open_instruct{.clamp_at_one = true};

}  // namespace pref::presets

POSTTRAIN_NAMESPACE_END
