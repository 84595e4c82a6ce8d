#pragma once
// correction/rollout.hpp (the correction/ family; was loss/policy_gradient/rollout_correction.hpp):
// rollout-vs-trainer mismatch corrections (algorithms.md §5): producers of per-token DETACHED
// importance weights (fed to loss::policy_gradient as inputs.importance_weights: they multiply
// the surrogate, not the aggregation denominator) and of rejection masks (fed as inputs.mask:
// verl multiplies its response_mask, so rejected tokens leave the denominator too).
//
// 1. rollout_is_weights(in, rollout_is_options, weights[N]) — every peer's IS weight:
//      d_t   = clamp(ℓ_t − ℓroll_t, token_log_ratio_min, token_log_ratio_max)       (m_t ≠ 0)
//      S_i   = Σ_{t∈i} m_t·d_t,   M_i = S_i / max(Σ_{t∈i} m_t + length_epsilon, length_floor)
//      log w = d_t | S_i | M_i      (weight_level token | sequence_sum | sequence_mean)
//      log w ← clamp(log w, log_weight_min, log_weight_max);  w = e^{log w}
//      filter (zero w): ratio form: ρ_f = e^{clamp(d_t | S_i | M_i of filter_level)} outside
//              [filter_min, filter_max] (inclusive keep); tv_divergence form (open-instruct):
//              τ_i = Σ m·|e^{d_t} − 1| / max(Σ m, 1) outside [filter_min, filter_max] AND
//              sign(d_t)·A_t > 0
//      w ← w·m_t if multiply_by_mask (verl); w ← clamp(w, truncate_min, truncate_max) on kept
//      tokens (TIS); w_t = 0 where m_t = 0 or the token was filtered.
//      batch_normalize (verl): token level D = Σ w·m / (Σ m + ε); sequence levels
//      D = mean over non-empty rows of Σ_row w·m / (Σ_row m + ε), ε = length_epsilon; w ← w / D
//      unless D ≤ normalize_min (1e-8).
// 2. rollout_rejection_mask(in, rollout_rejection_options, mask_out[N]) — verl
//    compute_rollout_rejection_mask: lr = clamp(ℓ − ℓroll, ±20), k1 = −lr, k2 = ½lr²,
//    k3 = e^{lr} − 1 − lr; every criterion must pass (AND):
//      token_k1          log(lower) ≤ k1_t ≤ log(upper)       token_k2/k3   k_t ≤ upper
//      seq_sum_k1        log(lower) ≤ Σ m·k1 ≤ log(upper)     seq_sum_k2/k3 Σ m·k ≤ upper
//      seq_mean_k1       same on Σ m·k1/(Σ m + ε)              seq_mean_k2/k3 Σ m·k/(Σ m + ε) ≤ upper
//      seq_max_k2/k3     max_{m>0} k ≤ upper (0 for an empty row)
//    mask_out_t = m_t·keep_t.
//
// Inputs  rollout_inputs<T> (T = float or double, N packed tokens of B rows): logprobs[N] (ℓ:
//         the trainer's log-probs — verl/TRL/OpenRLHF/open-instruct use ℓold, verl bypass mode
//         the current ℓ), rollout_logprobs[N] (ℓroll from vLLM/SGLang), mask[N] (float weights,
//         empty = ones; tokens with m = 0 are never read), seq_offsets[B+1] (required by the
//         sequence levels, batch normalisation at sequence level and seq_* criteria),
//         advantages[N] (only for the tv_divergence filter). Output weights[N] (T) or
//         mask_out[N] (float); mask_out may alias in.mask. Nothing is written when validation fails.
//
// Peer presets (rollout_presets::):
//   verl(level, threshold = 2.0, batch_normalize)    rollout_is = "token" | "sequence" (sum),
//                                                    clamp ±20, w·m, min(w, threshold)
//   verl_icepop(level, lower, upper, normalize)      rollout_is_threshold = "lower_upper" (verl
//                                                    ≥ 0.9): w·m zeroed outside [lower, upper]
//   trl(mode, clip_max = 3.0, clip_min = −∞)          vllm_importance_sampling_mode token/sequence
//                                                    × truncate/mask, sequence = SUM, no clamp;
//                                                    None = ∓∞
//   openrlhf(type, low = 0.5, high = 5.0)            tis (clamp ρ_t) | icepop (ρ_t·[lo ≤ ρ_t ≤ hi])
//                                                    | seq_mask_tis (ρ_t·[lo ≤ e^{mean d} ≤ hi])
//   open_instruct(open_instruct_rho{...})            compute_rho_correction: d clamped ±10, ρ_eff
//                                                    token or e^{mean d} (max(Σm,1)), mask bounds,
//                                                    tv-divergence drop, clamp bounds; 0 = off
// Docs: docs/loss/rollout_correction.md.
#include <cmath>
#include <limits>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"

POSTTRAIN_NAMESPACE_BEGIN

template <class T>
struct rollout_inputs {
  std::span<const T> logprobs;          // ℓ[N] trainer log-probs (ℓold, or ℓ in bypass mode)
  std::span<const T> rollout_logprobs;  // ℓroll[N] inference-engine log-probs
  std::span<const float> mask;          // m[N] weights, empty = all ones
  std::span<const index_t> seq_offsets; // [B + 1]; required by sequence-level modes
  std::span<const T> advantages;        // A[N]; only for is_filter::tv_divergence
};

// ---------------------------------------------------------------- importance weights

enum class is_level {
  token,          // d_t
  sequence_sum,   // S_i = Σ m·d (verl "sequence", TRL sequence_*): the full sequence ratio
  sequence_mean,  // M_i = S_i / max(Σ m + ε, floor): geometric mean (OpenRLHF, open-instruct)
};

enum class is_filter {
  none,
  ratio,          // zero w where e^{stat at filter_level} ∉ [filter_min, filter_max]
  tv_divergence,  // open-instruct rho_mask_tv_divergence (see header comment)
};

struct rollout_is_options {
  static constexpr double inf = std::numeric_limits<double>::infinity();
  is_level weight_level = is_level::token;
  double token_log_ratio_min = -inf;  // clamp of d_t before anything (open-instruct ±10)
  double token_log_ratio_max = inf;
  double log_weight_min = -inf;       // clamp of log w (and of the filter statistic) before exp
  double log_weight_max = inf;        // (verl ±20)
  is_filter filter = is_filter::none;
  is_level filter_level = is_level::token;
  double filter_min = -inf;           // keep filter_min ≤ statistic ≤ filter_max
  double filter_max = inf;
  bool filter_masked_weight = false;  // ratio filter tests w·m (the weight of weight_level after
                                      // multiply_by_mask) instead of e^{stat}: verl IcePop
  double truncate_min = -inf;         // w ← clamp(w, truncate_min, truncate_max) (TIS)
  double truncate_max = inf;
  bool multiply_by_mask = false;      // w ← w·m before truncation (verl)
  bool batch_normalize = false;       // w ← w / mean(w) (verl rollout_is_batch_normalize)
  double normalize_min = 1e-8;        // skip the normalisation when mean(w) ≤ this
  double length_epsilon = 0.0;        // row divisor Σ m + ε of the means (verl masked_mean 1e-8)
  double length_floor = 0.0;          // row divisor floor (TRL/open-instruct max(Σ m, 1))
};

struct rollout_is_result {
  double mean_weight = 0.0;         // masked token mean of the written weights
  double filtered_fraction = 0.0;   // masked fraction of tokens zeroed by the filter
  double truncated_fraction = 0.0;  // masked fraction of kept tokens changed by the truncation
  double batch_norm_factor = 1.0;   // D (1 when not normalised or skipped)
  double mismatch_kl = 0.0;         // masked mean of ℓroll − ℓ (OpenRLHF vllm_kl), unclamped
};

// ---------------------------------------------------------------- rejection (verl)

enum class rs_criterion {
  token_k1, token_k2, token_k3,
  seq_sum_k1, seq_sum_k2, seq_sum_k3,
  seq_mean_k1, seq_mean_k2, seq_mean_k3,
  seq_max_k2, seq_max_k3,
};

// One criterion. k1 criteria use the ratio bounds lower, upper (> 0; verl "lower_upper"; a single
// verl threshold u means lower = 1/u); k2/k3 criteria use upper only (> 0; lower ignored).
struct rs_rule {
  rs_criterion criterion = rs_criterion::token_k1;
  double lower = 0.0;
  double upper = 0.0;
};

// verl's single-number threshold spec: k1 → [1/u, u], others → upper u.
inline rs_rule rs_threshold(rs_criterion c, double upper) {
  const bool k1 = c == rs_criterion::token_k1 || c == rs_criterion::seq_sum_k1 ||
                  c == rs_criterion::seq_mean_k1;
  return {c, k1 ? 1.0 / upper : 0.0, upper};
}

struct rollout_rejection_options {
  std::vector<rs_rule> rules;     // ANDed; at least one
  double log_ratio_bound = 20.0;  // lr = clamp(ℓ − ℓroll, ±bound) (verl SAFETY_BOUND)
  double length_epsilon = 1e-8;   // seq_mean divisor Σ m + ε (verl masked_mean)
};

struct rollout_rejection_result {
  double masked_fraction = 0.0;      // masked token mean of 1 − keep (verl rollout_rs_masked_fraction)
  double seq_masked_fraction = 0.0;  // rows with a rejected valid token / all rows
};

namespace rollout_detail {

inline bool is_k1(rs_criterion c) {
  return c == rs_criterion::token_k1 || c == rs_criterion::seq_sum_k1 ||
         c == rs_criterion::seq_mean_k1;
}
inline bool is_token_criterion(rs_criterion c) {
  return c == rs_criterion::token_k1 || c == rs_criterion::token_k2 ||
         c == rs_criterion::token_k3;
}
inline double clamp_d(double x, double lo, double hi) { return x < lo ? lo : (hi < x ? hi : x); }

inline void expect_not_nan(double v, std::string_view where, std::string_view argument) {
  expect(!std::isnan(v), where, argument, " is NaN, expected a number");
}
inline void expect_range(double lo, double hi, std::string_view where, std::string_view lo_name,
                         std::string_view hi_name) {
  expect_not_nan(lo, where, lo_name);
  expect_not_nan(hi, where, hi_name);
  expect(lo <= hi, where, lo_name, " = ", lo, " > ", hi_name, " = ", hi, ", expected lo <= hi");
}

template <class T>
void validate_common(const rollout_inputs<T>& in, bool need_offsets, bool need_adv,
                     std::string_view where) {
  const index_t n = ssize(in.logprobs);
  expect_size(in.rollout_logprobs, n, where, "rollout_logprobs", "one per token of logprobs");
  expect_size_or_empty(in.mask, n, where, "mask", "one weight per token, or empty");
  expect_mask(in.mask, where, "mask");
  if (need_offsets)
    expect(!in.seq_offsets.empty(), where,
           "seq_offsets is empty, expected B + 1 offsets (a sequence-level mode needs rows)");
  if (!in.seq_offsets.empty()) expect_offsets(in.seq_offsets, n, where, "seq_offsets");
  if (need_adv)
    expect_size(in.advantages, n, where, "advantages",
                "one per token (the tv_divergence filter needs sign(A))");
  else
    expect_size_or_empty(in.advantages, n, where, "advantages", "one per token, or empty");
}

// Rows of the batch: seq_offsets, or one row of everything when absent (token-level modes).
template <class T>
std::vector<index_t> rows_of(const rollout_inputs<T>& in) {
  if (!in.seq_offsets.empty()) return {in.seq_offsets.begin(), in.seq_offsets.end()};
  return {0, ssize(in.logprobs)};
}

}  // namespace rollout_detail

// ---------------------------------------------------------------- rollout_is_weights

namespace rollout_detail {

inline void validate_is_options(const rollout_is_options& o, std::string_view where) {
  expect_range(o.token_log_ratio_min, o.token_log_ratio_max, where, "options.token_log_ratio_min",
               "options.token_log_ratio_max");
  expect_range(o.log_weight_min, o.log_weight_max, where, "options.log_weight_min",
               "options.log_weight_max");
  expect_range(o.filter_min, o.filter_max, where, "options.filter_min", "options.filter_max");
  expect_range(o.truncate_min, o.truncate_max, where, "options.truncate_min",
               "options.truncate_max");
  expect(o.truncate_max > 0.0, where, "options.truncate_max = ", o.truncate_max,
         ", expected > 0 (verl rollout_is_threshold must be positive; infinity = no truncation)");
  expect_non_negative(o.normalize_min, where, "options.normalize_min");
  expect_non_negative(o.length_epsilon, where, "options.length_epsilon");
  expect_non_negative(o.length_floor, where, "options.length_floor");
}

template <class T>
rollout_is_result is_weights_host(const rollout_inputs<T>& in, const rollout_is_options& o,
                                  std::span<T> out) {
  const std::size_t n = in.logprobs.size();
  const auto mask_at = [&](std::size_t t) {
    return in.mask.empty() ? 1.0 : static_cast<double>(in.mask[t]);
  };
  const std::vector<index_t> rows = rows_of(in);
  const std::size_t b = rows.size() - 1;
  std::vector<double> d(n, 0.0), row_sum(b, 0.0), row_mean(b, 0.0), row_tv(b, 0.0),
      row_m(b, 0.0);
  std::vector<std::size_t> row_of(n, 0);
  double sum_m = 0.0, sum_kl = 0.0;
  for (std::size_t i = 0; i < b; ++i) {
    double s = 0.0, tv = 0.0, w = 0.0;
    for (auto t = static_cast<std::size_t>(rows[i]); t < static_cast<std::size_t>(rows[i + 1]);
         ++t) {
      row_of[t] = i;
      const double m = mask_at(t);
      if (m == 0.0) continue;
      const double raw =
          static_cast<double>(in.logprobs[t]) - static_cast<double>(in.rollout_logprobs[t]);
      d[t] = clamp_d(raw, o.token_log_ratio_min, o.token_log_ratio_max);
      s += m * d[t];
      tv += m * std::abs(std::exp(d[t]) - 1.0);
      w += m;
      sum_kl -= m * raw;
    }
    row_m[i] = w;
    sum_m += w;
    row_sum[i] = s;
    const double div = std::max(w + o.length_epsilon, o.length_floor);
    row_mean[i] = w > 0.0 ? s / div : 0.0;
    row_tv[i] = w > 0.0 ? tv / std::max(w, 1.0) : 0.0;
  }
  const auto log_stat = [&](is_level level, std::size_t t) {
    const double x = level == is_level::token          ? d[t]
                     : level == is_level::sequence_sum ? row_sum[row_of[t]]
                                                       : row_mean[row_of[t]];
    return clamp_d(x, o.log_weight_min, o.log_weight_max);
  };

  std::vector<double> w(n, 0.0);
  double n_filtered = 0.0, n_truncated = 0.0;
  for (std::size_t t = 0; t < n; ++t) {
    const double m = mask_at(t);
    if (m == 0.0) continue;
    double v = std::exp(log_stat(o.weight_level, t));
    bool keep = true;
    if (o.filter == is_filter::ratio) {
      const double rho = o.filter_masked_weight ? (o.multiply_by_mask ? v * m : v)
                                                : std::exp(log_stat(o.filter_level, t));
      keep = o.filter_min <= rho && rho <= o.filter_max;
    } else if (o.filter == is_filter::tv_divergence) {
      const double tv = row_tv[row_of[t]];
      const double a = static_cast<double>(in.advantages[t]);
      const double sign = d[t] > 0.0 ? 1.0 : (d[t] < 0.0 ? -1.0 : 0.0);
      keep = !((tv < o.filter_min || tv > o.filter_max) && sign * a > 0.0);
    }
    if (!keep) {
      n_filtered += m;
      continue;
    }
    if (o.multiply_by_mask) v *= m;
    const double c = clamp_d(v, o.truncate_min, o.truncate_max);
    if (c != v) n_truncated += m;
    w[t] = c;
  }

  rollout_is_result r;
  if (o.batch_normalize) {
    double mean = 0.0;
    if (o.weight_level == is_level::token) {
      double s = 0.0;
      for (std::size_t t = 0; t < n; ++t) s += w[t] * mask_at(t);
      mean = s / (sum_m + o.length_epsilon);
    } else {
      double s = 0.0, rows_nonempty = 0.0;
      for (std::size_t i = 0; i < b; ++i) {
        if (!(row_m[i] > 0.0)) continue;
        double rs = 0.0;
        for (auto t = static_cast<std::size_t>(rows[i]); t < static_cast<std::size_t>(rows[i + 1]);
             ++t)
          rs += w[t] * mask_at(t);
        s += rs / (row_m[i] + o.length_epsilon);
        rows_nonempty += 1.0;
      }
      mean = s / std::max(rows_nonempty, 1e-8);
    }
    if (mean > o.normalize_min) {
      for (double& x : w) x /= mean;
      r.batch_norm_factor = mean;
    }
  }
  double sw = 0.0;
  for (std::size_t t = 0; t < n; ++t) {
    sw += w[t] * mask_at(t);
    out[t] = static_cast<T>(w[t]);
  }
  if (sum_m > 0.0) {
    r.mean_weight = sw / sum_m;
    r.filtered_fraction = n_filtered / sum_m;
    r.truncated_fraction = n_truncated / sum_m;
    r.mismatch_kl = sum_kl / sum_m;
  }
  return r;
}

}  // namespace rollout_detail

// Writes detached importance weights w[N] (0 where m = 0 or filtered). Host memory.
template <class T>
rollout_is_result rollout_is_weights(exec::host, const rollout_inputs<T>& in,
                                     const rollout_is_options& o, std::span<T> weights) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "rollout_is_weights accepts float or double log-probs");
  constexpr std::string_view where = "rollout_is_weights";
  const bool seq = o.weight_level != is_level::token ||
                   (o.filter == is_filter::ratio && o.filter_level != is_level::token) ||
                   o.filter == is_filter::tv_divergence;
  rollout_detail::validate_common(in, seq, o.filter == is_filter::tv_divergence, where);
  rollout_detail::validate_is_options(o, where);
  expect_size(weights, ssize(in.logprobs), where, "weights", "one per token of logprobs");
  return rollout_detail::is_weights_host(in, o, weights);
}

template <class T>
rollout_is_result rollout_is_weights(const rollout_inputs<T>& in, const rollout_is_options& o,
                                     std::span<T> weights) {
  return rollout_is_weights(exec::host{}, in, o, weights);
}

// ---------------------------------------------------------------- rollout_rejection_mask

namespace rollout_detail {

template <class T>
rollout_rejection_result rejection_host(const rollout_inputs<T>& in,
                                        const rollout_rejection_options& o,
                                        std::span<float> out) {
  const std::size_t n = in.logprobs.size();
  const auto mask_at = [&](std::size_t t) {
    return in.mask.empty() ? 1.0 : static_cast<double>(in.mask[t]);
  };
  const std::vector<index_t> rows = rows_of(in);
  const std::size_t b = rows.size() - 1;
  std::vector<double> k1(n, 0.0), k2(n, 0.0), k3(n, 0.0);
  for (std::size_t t = 0; t < n; ++t) {
    if (mask_at(t) == 0.0) continue;
    const double lr = clamp_d(
        static_cast<double>(in.logprobs[t]) - static_cast<double>(in.rollout_logprobs[t]),
        -o.log_ratio_bound, o.log_ratio_bound);
    k1[t] = -lr;
    k2[t] = 0.5 * lr * lr;
    k3[t] = std::exp(lr) - 1.0 - lr;
  }
  std::vector<char> keep(n, 1);
  for (const rs_rule& rule : o.rules) {
    const rs_criterion c = rule.criterion;
    const bool k1_rule = is_k1(c);
    const double lo = k1_rule ? std::log(rule.lower) : 0.0;
    const double hi = k1_rule ? std::log(rule.upper) : rule.upper;
    const auto pass = [&](double stat) { return k1_rule ? (lo <= stat && stat <= hi) : stat <= hi; };
    const std::vector<double>& k = (c == rs_criterion::token_k1 || c == rs_criterion::seq_sum_k1 ||
                                    c == rs_criterion::seq_mean_k1)
                                       ? k1
                                   : (c == rs_criterion::token_k2 || c == rs_criterion::seq_sum_k2 ||
                                      c == rs_criterion::seq_mean_k2 || c == rs_criterion::seq_max_k2)
                                       ? k2
                                       : k3;
    if (is_token_criterion(c)) {
      for (std::size_t t = 0; t < n; ++t)
        if (mask_at(t) != 0.0 && !pass(k[t])) keep[t] = 0;
      continue;
    }
    for (std::size_t i = 0; i < b; ++i) {
      const auto bg = static_cast<std::size_t>(rows[i]), en = static_cast<std::size_t>(rows[i + 1]);
      double s = 0.0, w = 0.0, mx = -std::numeric_limits<double>::infinity();
      for (std::size_t t = bg; t < en; ++t) {
        const double m = mask_at(t);
        if (m == 0.0) continue;
        s += m * k[t];
        w += m;
        mx = std::max(mx, k[t]);
      }
      double stat = s;
      if (c == rs_criterion::seq_mean_k1 || c == rs_criterion::seq_mean_k2 ||
          c == rs_criterion::seq_mean_k3)
        stat = s / (w + o.length_epsilon);
      else if (c == rs_criterion::seq_max_k2 || c == rs_criterion::seq_max_k3)
        stat = w > 0.0 ? mx : 0.0;
      if (!pass(stat))
        for (std::size_t t = bg; t < en; ++t) keep[t] = 0;
    }
  }
  rollout_rejection_result r;
  double sum_m = 0.0, sum_rej = 0.0, rows_rej = 0.0;
  for (std::size_t i = 0; i < b; ++i) {
    bool any = false;
    for (auto t = static_cast<std::size_t>(rows[i]); t < static_cast<std::size_t>(rows[i + 1]);
         ++t) {
      const double m = mask_at(t);
      sum_m += m;
      if (!keep[t]) {
        sum_rej += m;
        any = any || m != 0.0;
      }
    }
    rows_rej += any ? 1.0 : 0.0;
  }
  for (std::size_t t = 0; t < n; ++t)
    out[t] = keep[t] ? static_cast<float>(mask_at(t)) : 0.0f;
  if (sum_m > 0.0) r.masked_fraction = sum_rej / sum_m;
  if (b > 0) r.seq_masked_fraction = rows_rej / static_cast<double>(b);
  return r;
}

}  // namespace rollout_detail

// Writes mask_out[N] = m·keep (mask_out may alias in.mask). Host memory.
template <class T>
rollout_rejection_result rollout_rejection_mask(exec::host, const rollout_inputs<T>& in,
                                                const rollout_rejection_options& o,
                                                std::span<float> mask_out) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "rollout_rejection_mask accepts float or double log-probs");
  constexpr std::string_view where = "rollout_rejection_mask";
  bool seq = false;
  for (const rs_rule& r : o.rules) seq = seq || !rollout_detail::is_token_criterion(r.criterion);
  rollout_detail::validate_common(in, seq, false, where);
  expect(!o.rules.empty(), where, "options.rules is empty, expected at least one criterion");
  for (std::size_t i = 0; i < o.rules.size(); ++i) {
    const rs_rule& r = o.rules[i];
    const int c = static_cast<int>(r.criterion);
    expect(c >= 0 && c <= static_cast<int>(rs_criterion::seq_max_k3), where, "options.rules[", i,
           "].criterion is not an rs_criterion");
    expect(std::isfinite(r.upper) && r.upper > 0.0, where, "options.rules[", i, "].upper = ",
           r.upper, ", expected a finite threshold > 0");
    if (rollout_detail::is_k1(r.criterion))
      expect(std::isfinite(r.lower) && r.lower > 0.0, where, "options.rules[", i, "].lower = ",
             r.lower, ", expected a finite ratio bound > 0 (k1 criteria need lower and upper)");
  }
  expect_non_negative(o.log_ratio_bound, where, "options.log_ratio_bound");
  expect_non_negative(o.length_epsilon, where, "options.length_epsilon");
  expect_size(mask_out, ssize(in.logprobs), where, "mask_out", "one per token of logprobs");
  return rollout_detail::rejection_host(in, o, mask_out);
}

template <class T>
rollout_rejection_result rollout_rejection_mask(const rollout_inputs<T>& in,
                                                const rollout_rejection_options& o,
                                                std::span<float> mask_out) {
  return rollout_rejection_mask(exec::host{}, in, o, mask_out);
}

// ---------------------------------------------------------------- peer presets

enum class trl_is_mode { token_truncate, token_mask, sequence_truncate, sequence_mask };
enum class openrlhf_is_type { tis, icepop, seq_mask_tis };

// open-instruct GRPOExperimentConfig rho_* fields (0 = disabled, as there).
struct open_instruct_rho {
  double clamp_lower = 0.0;
  double clamp_upper = 2.0;
  double mask_lower = 0.0;
  double mask_upper = 0.0;
  bool sequence_level = false;  // rho_mask_sequence_level
  bool tv_divergence = false;   // rho_mask_tv_divergence
};

namespace rollout_presets {

inline constexpr double inf = rollout_is_options::inf;

// verl compute_rollout_correction_weights: rollout_is "token" (is_level::token) or "sequence"
// (is_level::sequence_sum); clamp ±20; w·m; min(w, threshold); optional batch normalisation.
inline rollout_is_options verl(is_level level = is_level::sequence_sum, double threshold = 2.0,
                               bool batch_normalize = false) {
  rollout_is_options o;
  o.weight_level = level;
  o.log_weight_min = -20.0;
  o.log_weight_max = 20.0;
  o.truncate_max = threshold;
  o.multiply_by_mask = true;
  o.batch_normalize = batch_normalize;
  o.length_epsilon = 1e-8;
  return o;
}

// verl "lower_upper" rollout_is_threshold (IcePop, verl ≥ 0.9): w·m zeroed outside
// [lower, upper] (inclusive), no truncation; clamp ±20, optional batch normalisation.
inline rollout_is_options verl_icepop(is_level level, double lower, double upper,
                                      bool batch_normalize = false) {
  rollout_is_options o = verl(level, inf, batch_normalize);
  o.filter = is_filter::ratio;
  o.filter_level = level;
  o.filter_masked_weight = true;
  o.filter_min = lower;
  o.filter_max = upper;
  return o;
}

// TRL GRPO vLLM importance sampling (default sequence_mask, clip_max 3.0, clip_min None = −∞).
inline rollout_is_options trl(trl_is_mode mode = trl_is_mode::sequence_mask,
                              double clip_max = 3.0, double clip_min = -inf) {
  rollout_is_options o;
  const bool seq = mode == trl_is_mode::sequence_mask || mode == trl_is_mode::sequence_truncate;
  o.weight_level = seq ? is_level::sequence_sum : is_level::token;
  if (mode == trl_is_mode::token_truncate || mode == trl_is_mode::sequence_truncate) {
    o.truncate_min = clip_min;
    o.truncate_max = clip_max;
  } else {
    o.filter = is_filter::ratio;
    o.filter_level = o.weight_level;
    o.filter_min = clip_min;
    o.filter_max = clip_max;
  }
  return o;
}

// OpenRLHF PolicyLoss vLLM IS correction (--algo.advantage.is_correction_threshold 0.5 5.0).
inline rollout_is_options openrlhf(openrlhf_is_type type = openrlhf_is_type::tis,
                                   double low = 0.5, double high = 5.0) {
  rollout_is_options o;
  if (type == openrlhf_is_type::tis) {
    o.truncate_min = low;
    o.truncate_max = high;
  } else {
    o.filter = is_filter::ratio;
    o.filter_level =
        type == openrlhf_is_type::icepop ? is_level::token : is_level::sequence_mean;
    o.filter_min = low;
    o.filter_max = high;
  }
  return o;
}

// open-instruct compute_rho_correction (use_rho_correction = True).
inline rollout_is_options open_instruct(const open_instruct_rho& rho = {}) {
  rollout_is_options o;
  o.token_log_ratio_min = -10.0;
  o.token_log_ratio_max = 10.0;
  o.weight_level = rho.sequence_level ? is_level::sequence_mean : is_level::token;
  o.length_floor = 1.0;
  o.filter = rho.tv_divergence ? is_filter::tv_divergence : is_filter::ratio;
  o.filter_level = o.weight_level;
  o.filter_min = rho.mask_lower > 0.0 ? rho.mask_lower : -inf;
  o.filter_max = rho.mask_upper > 0.0 ? rho.mask_upper : inf;
  if (o.filter == is_filter::ratio && rho.mask_lower <= 0.0 && rho.mask_upper <= 0.0)
    o.filter = is_filter::none;
  o.truncate_min = rho.clamp_lower > 0.0 ? rho.clamp_lower : -inf;
  o.truncate_max = rho.clamp_upper > 0.0 ? rho.clamp_upper : inf;
  return o;
}

// verl rollout_rs: one or more criteria with verl's threshold spec.
inline rollout_rejection_options verl_rejection(std::vector<rs_rule> rules) {
  return rollout_rejection_options{std::move(rules)};
}

}  // namespace rollout_presets

POSTTRAIN_NAMESPACE_END
