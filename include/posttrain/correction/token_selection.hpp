#pragma once
// correction/token_selection.hpp — token and sequence selection for loss::policy_gradient (the
// correction/ family with correction/rollout.hpp; was loss/policy_gradient/token_selection.hpp) (algorithms.md §3 clip_cov / kl_cov,
// §4.1 step 5): producers of detached per-token 0/1 weights that go into
// policy_gradient_inputs.importance_weights (multiplied with any rollout IS weight by the caller).
// A weight multiplies the surrogate only: a dropped token still counts in the aggregation
// denominator, as in the peers, which multiply the per-token loss and aggregate with the
// unchanged mask. Every producer writes 0 where m = 0 (never read by the loss).
//
// off_policy_sequence_mask  TRL OPSM (DeepSeek-V3.2): avg_kl_i = Σ m·(ℓsamp − ℓ) / max(Σ m, 1);
//                           w_t = [A_t ≥ 0 or avg_kl_i ≤ δ]. ℓsamp = vLLM log-probs, else ℓold.
// high_entropy_mask         TRL top_entropy_quantile ρ: θ = quantile(valid H, 1 − ρ) with
//                           torch.quantile "linear" interpolation (linear_quantile), or a caller
//                           θ (e.g. the quantile of entropies gathered over ranks);
//                           w_t = [H_t ≥ θ]; no valid token → all 0 (TRL).
// clip_cov_weights          verl clip_cov: Ā = Σ m·A/(Σ m + 1e-8), ℓ̄ likewise (sg),
//                           c_t = (A_t − Ā)(ℓ_t − ℓ̄); candidates: m_t > 0, not clipped
//                           (surrogate::clip: L2 > L1 with the same options) and lb < c_t < ub;
//                           k = max(⌊ratio·Σ m⌋, 1); the min(k, #candidates) candidates with the
//                           smallest random keys get w = 0, all others 1. With iid keys this is
//                           verl's torch.randperm choice (uniform k-subset); keys come from the
//                           caller (reproducible, rank-independent) or a seeded engine (keys =
//                           successive engine() values, ties → lower index).
//                           Loss: loss::policy_gradient<surrogate::clip, kl, agg> with these
//                           weights and no dual clip = verl agg(max(L1, L2)·corr) exactly
//                           (dropped tokens stay in the denominator; tested end to end).
// kl_cov_selection          verl kl_cov: over valid tokens (m > 0) with PLAIN means (verl
//                           detaches and averages the selected entries, unweighted),
//                           c_t = (A_t − Ā)(ℓ_t − ℓ̄); the top k = max(1, ⌊n_valid·ratio⌋) by
//                           c_t (ties → lower index; torch.topk leaves them unspecified) get 1.
// (the verl kl_cov LOSS that uses kl_cov_selection is loss::kl_cov, loss/kl_cov.hpp)
// loss::kl_cov<Kl, Agg>     verl kl_cov loss: L_t = w_t·(−A_t·r_t + s_t·coef·|ℓ_t − ℓold_t|)
//                           (+ β·KL − c_H·H as in policy_gradient), no clipping, s_t = selection.
//   Why a loss of its own and not a surrogate alone: the extra term needs the per-token
//   selection s_t, which pg_surrogate::evaluate(ℓ, logr, A, options) cannot see. So the loss is
//   policy_gradient<surrogate::ratio, Kl, Agg> (−A·r, a surrogate in this file) plus
//   Agg(w·s·coef·|logr|) aggregated with the same mask, offsets and normaliser; aggregation is
//   linear in the per-token loss, so this equals verl's agg(pg_losses) in value and gradient
//   (d|x|/dx = sign(x), 0 at 0 as torch). Defaults kl_cov_ratio 2e-4, ppo_kl_coef 0.1.
//
// Inputs are policy_gradient_inputs<T> (T = float or double; the fields each function reads are
// listed at it) or selection_inputs<T>; outputs are caller spans of N. Nothing is written when
// validation fails. Docs: docs/loss/token_selection.md.
#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/random.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/loss/policy_gradient/clip.hpp"
#include "posttrain/loss/policy_gradient_types.hpp"
#include "posttrain/ops/aggregate.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace selection_detail {

template <class T>
void expect_float(std::string_view where) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "token selection accepts float or double inputs");
  (void)where;
}

template <class S>
inline double mask_at(const S& mask, std::size_t t) {
  return mask.empty() ? 1.0 : static_cast<double>(mask[t]);
}

// Writes the 0/1 weight of one token and accounts its mask weight m, so that kept_fraction is the
// masked mean of the written weights (Σ m·keep / Σ m, summed in token order).
struct keep_counter {
  double sum_m = 0.0, sum_kept = 0.0;
  template <class T>
  void write(T& weight, double m, bool keep) {
    weight = keep ? T(1) : T(0);
    sum_m += m;
    sum_kept += keep ? m : 0.0;
  }
  double kept_fraction() const { return sum_m > 0.0 ? sum_kept / sum_m : 0.0; }
};

}  // namespace selection_detail

// ---------------------------------------------------------------- linear_quantile

// torch.quantile(values, q) with interpolation="linear": sorted v, pos = q·(n − 1),
// lerp(v[⌊pos⌋], v[⌈pos⌉], pos − ⌊pos⌋) with torch.lerp's two-sided form. n ≥ 1, q ∈ [0, 1],
// values not NaN.
template <class T>
double linear_quantile(std::span<const T> values, double q) {
  constexpr std::string_view where = "linear_quantile";
  expect(!values.empty(), where, "values is empty, expected at least one value");
  expect(!std::isnan(q) && q >= 0.0 && q <= 1.0, where, "q = ", q, ", expected 0 <= q <= 1");
  for (std::size_t i = 0; i < values.size(); ++i)
    expect(!std::isnan(static_cast<double>(values[i])), where, "values[", i,
           "] is NaN, expected a number");
  std::vector<double> v(values.begin(), values.end());
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const auto hi = static_cast<std::size_t>(std::ceil(pos));
  const double w = pos - static_cast<double>(lo);
  const double a = v[lo], b = v[hi];
  return w < 0.5 ? a + w * (b - a) : b - (b - a) * (1.0 - w);
}

// ---------------------------------------------------------------- off_policy_sequence_mask

struct off_policy_mask_options {
  double threshold = 0.0;  // δ (TRL off_policy_mask_threshold; the feature is off when None)
};

struct selection_result {
  double kept_fraction = 0.0;  // masked token mean of the written weights (1 = kept)
  index_t dropped_rows = 0;    // rows with at least one valid dropped token
  index_t selected = 0;        // clip_cov / kl_cov: tokens selected
  index_t candidates = 0;      // clip_cov: candidates (lb < c < ub, not clipped)
  double threshold = 0.0;      // high_entropy_mask: θ used
};

// Reads logprobs ℓ, old_logprobs as ℓsamp (pass vLLM log-probs there when present), advantages,
// mask, seq_offsets (required).
template <class T>
selection_result off_policy_sequence_mask(exec::host, const policy_gradient_inputs<T>& in,
                                          const off_policy_mask_options& o, std::span<T> weights) {
  selection_detail::expect_float<T>("off_policy_sequence_mask");
  constexpr std::string_view where = "off_policy_sequence_mask";
  const index_t n = ssize(in.logprobs);
  expect_size(in.old_logprobs, n, where, "old_logprobs",
              "one per token: the sampling log-probs (vLLM, else ℓold)");
  expect_size(in.advantages, n, where, "advantages", "one per token of logprobs");
  expect_size_or_empty(in.mask, n, where, "mask", "one weight per token, or empty");
  expect_mask(in.mask, where, "mask");
  expect(!in.seq_offsets.empty(), where,
         "seq_offsets is empty, expected B + 1 offsets (the mask is per sequence)");
  expect_offsets(in.seq_offsets, n, where, "seq_offsets");
  expect(!std::isnan(o.threshold), where, "options.threshold is NaN, expected a number");
  expect_size(weights, n, where, "weights", "one per token of logprobs");

  selection_result r;
  selection_detail::keep_counter kept;
  for (std::size_t i = 0; i + 1 < in.seq_offsets.size(); ++i) {
    const auto b = static_cast<std::size_t>(in.seq_offsets[i]);
    const auto e = static_cast<std::size_t>(in.seq_offsets[i + 1]);
    double s = 0.0, w = 0.0;
    for (std::size_t t = b; t < e; ++t) {
      const double m = selection_detail::mask_at(in.mask, t);
      if (m == 0.0) continue;
      s += m * (static_cast<double>(in.old_logprobs[t]) - static_cast<double>(in.logprobs[t]));
      w += m;
    }
    const bool low_kl = s / std::max(w, 1.0) <= o.threshold;
    bool dropped = false;
    for (std::size_t t = b; t < e; ++t) {
      const double m = selection_detail::mask_at(in.mask, t);
      if (m == 0.0) {
        weights[t] = T(0);
        continue;
      }
      const bool keep = static_cast<double>(in.advantages[t]) >= 0.0 || low_kl;
      kept.write(weights[t], m, keep);
      dropped = dropped || !keep;
    }
    r.dropped_rows += dropped ? 1 : 0;
  }
  r.kept_fraction = kept.kept_fraction();
  return r;
}

template <class T>
selection_result off_policy_sequence_mask(const policy_gradient_inputs<T>& in,
                                          const off_policy_mask_options& o, std::span<T> weights) {
  return off_policy_sequence_mask(exec::host{}, in, o, weights);
}

// ---------------------------------------------------------------- high_entropy_mask

struct high_entropy_mask_options {
  double top_quantile = 1.0;             // ρ (TRL top_entropy_quantile): keep the top ρ share
  std::optional<double> threshold = {};  // θ given by the caller (gathered over ranks): ρ unused
};

// Reads entropy and mask.
template <class T>
selection_result high_entropy_mask(exec::host, const policy_gradient_inputs<T>& in,
                                   const high_entropy_mask_options& o, std::span<T> weights) {
  selection_detail::expect_float<T>("high_entropy_mask");
  constexpr std::string_view where = "high_entropy_mask";
  const index_t n = ssize(in.entropy);
  expect_size_or_empty(in.mask, n, where, "mask", "one weight per token of entropy, or empty");
  expect_mask(in.mask, where, "mask");
  expect(!std::isnan(o.top_quantile) && o.top_quantile >= 0.0 && o.top_quantile <= 1.0, where,
         "options.top_quantile = ", o.top_quantile, ", expected 0 <= rho <= 1");
  if (o.threshold) expect(!std::isnan(*o.threshold), where, "options.threshold is NaN");
  std::vector<T> valid;
  for (std::size_t t = 0; t < in.entropy.size(); ++t) {
    if (selection_detail::mask_at(in.mask, t) == 0.0) continue;
    expect(!std::isnan(static_cast<double>(in.entropy[t])), where, "entropy[", t,
           "] is NaN at a valid token, expected a number");
    valid.push_back(in.entropy[t]);
  }
  expect_size(weights, n, where, "weights", "one per token of entropy");

  selection_result r;
  if (!o.threshold && valid.empty()) {  // TRL: no valid entropy anywhere → nothing kept
    std::fill(weights.begin(), weights.end(), T(0));
    return r;
  }
  const double theta =
      o.threshold ? *o.threshold : linear_quantile(std::span<const T>(valid), 1.0 - o.top_quantile);
  r.threshold = theta;
  selection_detail::keep_counter kept;
  for (std::size_t t = 0; t < in.entropy.size(); ++t) {
    const double m = selection_detail::mask_at(in.mask, t);
    kept.write(weights[t], m, m != 0.0 && static_cast<double>(in.entropy[t]) >= theta);
  }
  r.kept_fraction = kept.kept_fraction();
  return r;
}

template <class T>
selection_result high_entropy_mask(const policy_gradient_inputs<T>& in,
                                   const high_entropy_mask_options& o, std::span<T> weights) {
  return high_entropy_mask(exec::host{}, in, o, weights);
}

// ---------------------------------------------------------------- clip_cov_weights

struct clip_cov_options {
  double ratio = 2e-4;  // clip_cov_ratio (> 0)
  double lb = 1.0;      // clip_cov_lb
  double ub = 5.0;      // clip_cov_ub
};

// Reads logprobs, old_logprobs, advantages, mask; pg gives ε_low/ε_high (and any log-ratio
// clamp) of the surrogate::clip that the loss uses. keys[N]: one random key per token.
template <class T>
selection_result clip_cov_weights(exec::host, const policy_gradient_inputs<T>& in,
                                  const clip_cov_options& o, const policy_gradient_options& pg,
                                  std::span<const std::uint64_t> keys, std::span<T> weights) {
  selection_detail::expect_float<T>("clip_cov_weights");
  constexpr std::string_view where = "clip_cov_weights";
  const index_t n = ssize(in.logprobs);
  expect_size(in.old_logprobs, n, where, "old_logprobs", "one per token of logprobs");
  expect_size(in.advantages, n, where, "advantages", "one per token of logprobs");
  expect_size_or_empty(in.mask, n, where, "mask", "one weight per token, or empty");
  expect_mask(in.mask, where, "mask");
  expect(std::isfinite(o.ratio) && o.ratio > 0.0, where, "options.ratio = ", o.ratio,
         ", expected a finite clip_cov_ratio > 0");
  expect(!std::isnan(o.lb) && !std::isnan(o.ub) && o.lb <= o.ub, where, "options.lb = ", o.lb,
         ", options.ub = ", o.ub, ", expected lb <= ub");
  surrogate::clip::validate(pg, where);
  expect(!std::isnan(pg.log_ratio_min) && !std::isnan(pg.log_ratio_max) &&
             pg.log_ratio_min <= pg.log_ratio_max,
         where, "pg.log_ratio_min/max, expected lo <= hi");
  expect_size(keys, n, where, "keys", "one random key per token");
  expect_size(weights, n, where, "weights", "one per token of logprobs");

  double sm = 0.0, sa = 0.0, sl = 0.0;
  for (std::size_t t = 0; t < in.logprobs.size(); ++t) {
    const double m = selection_detail::mask_at(in.mask, t);
    if (m == 0.0) continue;
    sm += m;
    sa += m * static_cast<double>(in.advantages[t]);
    sl += m * static_cast<double>(in.logprobs[t]);
  }
  const double mean_a = sa / (sm + 1e-8), mean_l = sl / (sm + 1e-8);
  std::vector<std::size_t> cand;
  for (std::size_t t = 0; t < in.logprobs.size(); ++t) {
    if (!(selection_detail::mask_at(in.mask, t) > 0.0)) continue;
    const T logr = in.logprobs[t] - in.old_logprobs[t];
    if (surrogate::clip::evaluate(in.logprobs[t], logr, in.advantages[t], pg).clipped) continue;
    const double c = (static_cast<double>(in.advantages[t]) - mean_a) *
                     (static_cast<double>(in.logprobs[t]) - mean_l);
    if (o.lb < c && c < o.ub) cand.push_back(t);
  }
  const auto k = static_cast<std::size_t>(
      std::max<double>(std::floor(o.ratio * sm), 1.0));  // verl max(int(ratio·Σm), 1)
  const std::size_t take = std::min(k, cand.size());
  std::partial_sort(
      cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(take), cand.end(),
      [&](std::size_t a, std::size_t b) { return keys[a] != keys[b] ? keys[a] < keys[b] : a < b; });
  for (std::size_t t = 0; t < in.logprobs.size(); ++t)
    weights[t] = selection_detail::mask_at(in.mask, t) == 0.0 ? T(0) : T(1);
  for (std::size_t j = 0; j < take; ++j) weights[cand[j]] = T(0);
  selection_result r;
  r.candidates = static_cast<index_t>(cand.size());
  r.selected = static_cast<index_t>(take);
  double dropped = 0.0;
  for (std::size_t j = 0; j < take; ++j) dropped += selection_detail::mask_at(in.mask, cand[j]);
  if (sm > 0.0) r.kept_fraction = 1.0 - dropped / sm;
  r.dropped_rows = 0;
  return r;
}

// Same, keys drawn from a seeded engine: keys[t] = g() for t = 0..N−1 in order (drawn after
// validation only). Use a standard engine (std::mt19937_64) for results that match across
// platforms.
template <class T, class URBG>
requires uniform_random_bit_generator<std::remove_reference_t<URBG>> selection_result
clip_cov_weights(exec::host, const policy_gradient_inputs<T>& in, const clip_cov_options& o,
                 const policy_gradient_options& pg, URBG&& g, std::span<T> weights) {
  // Validate with placeholder keys first so a bad call consumes no randomness.
  const std::vector<std::uint64_t> none(in.logprobs.size(), 0);
  std::vector<T> scratch(weights.size());
  clip_cov_weights(exec::host{}, in, o, pg, std::span<const std::uint64_t>(none),
                   std::span<T>(scratch));
  std::vector<std::uint64_t> keys(in.logprobs.size());
  for (auto& k : keys) k = static_cast<std::uint64_t>(g());
  return clip_cov_weights(exec::host{}, in, o, pg, std::span<const std::uint64_t>(keys), weights);
}

// ---------------------------------------------------------------- kl_cov

struct kl_cov_options {
  double ratio = 2e-4;  // kl_cov_ratio, 0 < ratio <= 1
  double coef = 0.1;    // ppo_kl_coef (verl PolicyLossConfig default)
};

// Reads logprobs, advantages, mask. selection[N] = 1 for the top-k covariance tokens, else 0.
template <class T>
selection_result kl_cov_selection(exec::host, const policy_gradient_inputs<T>& in,
                                  const kl_cov_options& o, std::span<T> selection) {
  selection_detail::expect_float<T>("kl_cov_selection");
  constexpr std::string_view where = "kl_cov_selection";
  const index_t n = ssize(in.logprobs);
  expect_size(in.advantages, n, where, "advantages", "one per token of logprobs");
  expect_size_or_empty(in.mask, n, where, "mask", "one weight per token, or empty");
  expect_mask(in.mask, where, "mask");
  expect(std::isfinite(o.ratio) && o.ratio > 0.0 && o.ratio <= 1.0, where,
         "options.ratio = ", o.ratio, ", expected 0 < kl_cov_ratio <= 1");
  expect_size(selection, n, where, "selection", "one per token of logprobs");

  std::vector<std::size_t> valid;
  double sa = 0.0, sl = 0.0;
  for (std::size_t t = 0; t < in.logprobs.size(); ++t) {
    if (!(selection_detail::mask_at(in.mask, t) > 0.0)) continue;
    valid.push_back(t);
    sa += static_cast<double>(in.advantages[t]);
    sl += static_cast<double>(in.logprobs[t]);
  }
  std::fill(selection.begin(), selection.end(), T(0));
  selection_result r;
  if (valid.empty()) return r;
  const double cnt = static_cast<double>(valid.size());
  const double mean_a = sa / cnt, mean_l = sl / cnt;
  std::vector<double> cov(in.logprobs.size(), 0.0);
  for (std::size_t t : valid)
    cov[t] = (static_cast<double>(in.advantages[t]) - mean_a) *
             (static_cast<double>(in.logprobs[t]) - mean_l);
  const auto k =
      std::min(valid.size(), static_cast<std::size_t>(std::max(1.0, std::floor(cnt * o.ratio))));
  std::partial_sort(
      valid.begin(), valid.begin() + static_cast<std::ptrdiff_t>(k), valid.end(),
      [&](std::size_t a, std::size_t b) { return cov[a] != cov[b] ? cov[a] > cov[b] : a < b; });
  for (std::size_t j = 0; j < k; ++j) selection[valid[j]] = T(1);
  r.selected = static_cast<index_t>(k);
  r.candidates = static_cast<index_t>(valid.size());
  return r;
}

// Peer presets of the selections' companions.
namespace selection_presets {

// verl clip_cov / kl_cov policy options: ε 0.2/0.2, no dual clip, no log-ratio clamp.
inline policy_gradient_options verl_clip_cov() { return {}; }
inline policy_gradient_options verl_kl_cov() { return {}; }

}  // namespace selection_presets

POSTTRAIN_NAMESPACE_END
