#pragma once
// PF-PPO: policy filtration by reward-weighted resampling (Zhang et al. 2024; verl
// compute_pf_ppo_reweight_data, applied after the advantages when algorithm.use_pf_ppo).
//
// INPUT CONTRACT: one score per sequence s[B] (verl: token_level_scores.sum(-1), the raw scores
// WITHOUT the in-reward KL; sequence_rewards() of the token scores), finite. The caller gathers
// every per-sequence and per-token array of the batch with the returned indices (rows may repeat).
// No gradient.
//
// pf_ppo_weights(exec, s[B], out w[B] (double), options):
//   pow         w_i = |s_i|^p                      (p = options.weight_pow, verl default 2)
//   max_min     w_i = 1 if s_i == max(s) or s_i == min(s), else 0
//   max_random  w_i = 0.4 if s_i == max(s), else 0.1
//   then        w_i = max(w_i + 1e-8, 1e-8)          (verl clamp(w + 1e-8, min=1e-8): every row
//   keeps
//                                                   a tiny probability)
// pf_ppo_resample(weights[B], rng, out indices[M]): M independent draws WITH replacement, row i
//   with probability w_i / Σ w (torch.multinomial(w, M, replacement=True); verl draws M = B).
//   Rows of weight 0 are never drawn. The draws come from the caller's seeded
//   std::uniform_random_bit_generator (a full 32- or 64-bit generator such as std::mt19937_64):
//   deterministic for a given seed and platform-independent (no std:: distribution is used), but
//   they CANNOT reproduce torch's RNG stream, so a run matches verl in distribution, not sample by
//   sample. Each draw: u ∈ [0, 1) from 53 random bits, then the first row whose cumulative weight
//   exceeds u·Σw (binary search over the double prefix sums).
// pf_ppo_resample_indices(exec, s[B], rng, out indices[M], options) = both steps.
//
// Validation before any write: scores finite, weight_pow finite, every weight finite (|s|^p can
// overflow, 0^p with p < 0 is inf), the method a valid enum; resample: weights finite and >= 0
// with a positive sum when M > 0. Host memory only (exec::host), no stream.
// Scratch: pf_ppo_weights needs none (it allocates nothing). pf_ppo_resample needs
// pf_ppo_resample_workspace_bytes(B) and pf_ppo_resample_indices
// pf_ppo_resample_indices_workspace_bytes(exec::host, B) bytes for the overloads taking a
// posttrain::workspace, which allocate nothing; the overloads without one allocate that much for
// the call. Both draw the same indices from the same generator state.
#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <span>
#include <string_view>
#include <type_traits>

#include "posttrain/advantage/common.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/random.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/core/workspace.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace advantage {

enum class pf_ppo_reweight {
  pow,         // |s|^p
  max_min,     // 1 for the best and the worst scores, 0 otherwise
  max_random,  // 0.4 for the best score, 0.1 otherwise
};

struct pf_ppo_options {
  pf_ppo_reweight method = pf_ppo_reweight::pow;  // verl reweight_method default
  double weight_pow = 2.0;                        // verl weight_pow default
};

namespace pf_ppo_conventions {
inline constexpr pf_ppo_options verl{};
}  // namespace pf_ppo_conventions

// The clamped resampling weight of one score (host and device); max / min are over the batch.
POSTTRAIN_HOST_DEVICE inline double pf_ppo_weight(double s, double max, double min,
                                                  const pf_ppo_options& o) {
  double w = 0.0;
  switch (o.method) {
    case pf_ppo_reweight::pow:
      w = std::pow(std::fabs(s), o.weight_pow);
      break;
    case pf_ppo_reweight::max_min:
      w = (s == max || s == min) ? 1.0 : 0.0;
      break;
    case pf_ppo_reweight::max_random:
      w = s == max ? 0.4 : 0.1;
      break;
  }
  w += 1e-8;
  return w > 1e-8 ? w : 1e-8;
}

namespace detail {

// u ∈ [0, 1) from 53 bits of a full-range 32- or 64-bit generator.
template <class URBG>
double uniform_53(URBG& rng) {
  using R = typename URBG::result_type;
  constexpr auto range = URBG::max() - URBG::min();
  if constexpr (range == std::numeric_limits<std::uint64_t>::max()) {
    const std::uint64_t x = static_cast<std::uint64_t>(rng() - URBG::min());
    return static_cast<double>(x >> 11) * 0x1.0p-53;
  } else {
    const std::uint64_t hi = static_cast<std::uint64_t>(static_cast<R>(rng() - URBG::min()));
    const std::uint64_t lo = static_cast<std::uint64_t>(static_cast<R>(rng() - URBG::min()));
    return static_cast<double>(((hi << 32) | lo) >> 11) * 0x1.0p-53;
  }
}

template <class URBG>
inline constexpr bool full_range_generator_v =
    (URBG::max() - URBG::min()) == std::numeric_limits<std::uint64_t>::max() ||
    (URBG::max() - URBG::min()) == std::numeric_limits<std::uint32_t>::max();

}  // namespace detail

template <execution_tag Exec, detail::values V>
void pf_ppo_weights(Exec, const V& scores_in, std::span<double> weights,
                    const pf_ppo_options& options = pf_ppo_conventions::verl) {
  static_assert(std::is_same_v<Exec, exec::host>,
                "posttrain::advantage::pf_ppo_weights runs on exec::host only");
  using T = detail::value_t<V>;
  constexpr std::string_view where = "advantage::pf_ppo_weights";
  const std::span<const T> scores(scores_in);
  expect(options.method == pf_ppo_reweight::pow || options.method == pf_ppo_reweight::max_min ||
             options.method == pf_ppo_reweight::max_random,
         where, "options.method is not a pf_ppo_reweight");
  expect_finite(options.weight_pow, where, "options.weight_pow");
  expect_size(weights, ssize(scores), where, "weights", "one weight per score");
  detail::validate_rewards(scores, nan_policy::raise, where, "scores");
  double mx = -INFINITY, mn = INFINITY;
  for (const T s : scores)
    mx = std::max(mx, static_cast<double>(s)), mn = std::min(mn, static_cast<double>(s));
  // Every weight is checked before the first is written (a second evaluation of the same pure
  // function, rather than a scratch copy: no allocation, the same bits).
  for (std::size_t i = 0; i < scores.size(); ++i) {
    const double w = pf_ppo_weight(static_cast<double>(scores[i]), mx, mn, options);
    expect(std::isfinite(w), where, "the weight of scores[", i,
           "] = ", static_cast<double>(scores[i]), " is ", w, " (|s|^", options.weight_pow,
           "), expected finite");
  }
  for (std::size_t i = 0; i < scores.size(); ++i)
    weights[i] = pf_ppo_weight(static_cast<double>(scores[i]), mx, mn, options);
}

// Bytes of the workspace pf_ppo_resample(weights, rng, indices, ws) needs for B = `rows` weights
// (their prefix sums).
inline std::size_t pf_ppo_resample_workspace_bytes(index_t rows) {
  expect(rows >= 0, "advantage::pf_ppo_resample_workspace_bytes", "rows is ", rows,
         ", expected >= 0");
  return workspace_size().add<double>(static_cast<std::size_t>(rows));
}

// pf_ppo_resample with the prefix sums in caller scratch (pf_ppo_resample_workspace_bytes): no
// allocation, the same draws.
template <class URBG>
requires uniform_random_bit_generator<std::remove_reference_t<URBG>>
void pf_ppo_resample(std::span<const double> weights, URBG&& rng, std::span<index_t> indices,
                     workspace ws) {
  using G = std::remove_reference_t<URBG>;
  static_assert(detail::full_range_generator_v<G>,
                "pf_ppo_resample needs a generator whose outputs span a full 32- or 64-bit range "
                "(std::mt19937, std::mt19937_64, ...) so that the draws are platform-independent");
  constexpr std::string_view where = "advantage::pf_ppo_resample";
  const std::span<double> cdf = ws.take<double>(weights.size(), where);
  double total = 0.0;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    expect(std::isfinite(weights[i]) && weights[i] >= 0.0, where, "weights[", i, "] = ", weights[i],
           ", expected finite and >= 0");
    cdf[i] = (total += weights[i]);
  }
  expect(indices.empty() || total > 0.0, where,
         "the weights sum to 0 (or there are none), expected a positive sum to draw from");
  expect(std::isfinite(total), where, "the weights sum to ", total, ", expected finite");
  index_t last = 0;  // the last row of positive weight (a draw never lands past it)
  for (std::size_t i = 0; i < weights.size(); ++i)
    if (weights[i] > 0.0) last = static_cast<index_t>(i);
  for (index_t& out : indices) {
    const double x = detail::uniform_53(rng) * total;
    const auto it = std::upper_bound(cdf.begin(), cdf.end(), x);
    out = it == cdf.end() ? last : std::min(static_cast<index_t>(it - cdf.begin()), last);
  }
}

// The prefix sums are allocated for this call (the workspace form above over a workspace_buffer).
template <class URBG>
requires uniform_random_bit_generator<std::remove_reference_t<URBG>>
void pf_ppo_resample(std::span<const double> weights, URBG&& rng, std::span<index_t> indices) {
  workspace_buffer buffer;
  pf_ppo_resample(weights, rng, indices,
                  buffer.view(pf_ppo_resample_workspace_bytes(ssize(weights))));
}

// Bytes of the workspace pf_ppo_resample_indices(exec::host, ..., ws) needs for B = `rows` scores
// (the weights, then pf_ppo_resample's prefix sums).
inline std::size_t pf_ppo_resample_indices_workspace_bytes(exec::host, index_t rows) {
  expect(rows >= 0, "advantage::pf_ppo_resample_indices_workspace_bytes", "rows is ", rows,
         ", expected >= 0");
  return workspace_size().add<double>(static_cast<std::size_t>(rows)) +
         pf_ppo_resample_workspace_bytes(rows);
}

// pf_ppo_resample_indices with caller scratch (pf_ppo_resample_indices_workspace_bytes): no
// allocation, the same draws.
template <detail::values V, class URBG>
requires uniform_random_bit_generator<std::remove_reference_t<URBG>>
void pf_ppo_resample_indices(exec::host exec, const V& scores, URBG&& rng,
                             std::span<index_t> indices, const pf_ppo_options& options,
                             workspace ws) {
  const std::span<const detail::value_t<V>> s(scores);
  const std::span<double> w = ws.take<double>(s.size(), "advantage::pf_ppo_resample_indices");
  pf_ppo_weights(exec, s, w, options);
  pf_ppo_resample(std::span<const double>(w), rng, indices, ws);
}

template <execution_tag Exec, detail::values V, class URBG>
requires uniform_random_bit_generator<std::remove_reference_t<URBG>>
void pf_ppo_resample_indices(Exec exec, const V& scores, URBG&& rng, std::span<index_t> indices,
                             const pf_ppo_options& options = pf_ppo_conventions::verl) {
  static_assert(std::is_same_v<Exec, exec::host>,
                "posttrain::advantage::pf_ppo_resample_indices runs on exec::host only");
  const std::span<const detail::value_t<V>> s(scores);
  workspace_buffer buffer;
  pf_ppo_resample_indices(exec, s, rng, indices, options,
                          buffer.view(pf_ppo_resample_indices_workspace_bytes(exec, ssize(s))));
}

}  // namespace advantage

POSTTRAIN_NAMESPACE_END
