#pragma once
// CPU loop of loss::reward_model (front end: loss/reward_model.hpp, which validates every argument
// before calling here). Sequential over blocks of pairs, sums in double in a fixed order:
// deterministic.
//
// The pairs are taken in blocks of rm_block. A block first forms the link arguments d of all its
// pairs, then evaluates the link on the whole block, then combines the terms per pair. For the
// logistic links (L(d) = log(1 + e^{−d}): rm::bradley_terry, rm::log_exp; Link::logistic) the
// block evaluation is vectorized (logistic_block): one e^{−|d|} and one log per comparison, through
// Eigen's packet exp/log on a fixed-size array, instead of std::log1p (glibc's log1p alone was
// over half the time) plus a second std::exp per pair. The array is padded to a whole block so
// every pair takes the same packet path: a pair's value does not depend on its position or on the
// batch size. Other links call Link::evaluate per comparison.
//
// Sums over pairs (ranking, centring, reward means) are Eigen's fixed-size sums of each zero-padded
// block, added block after block: a reassociation of the left-to-right sum that depends only on
// the pair index (blocks start at multiples of rm_block), not on the batch size or the addresses.
#include <Eigen/Core>
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <span>

#include "posttrain/backend/cpu/mask_bits.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/loss/reward_model_types.hpp"

// GCC 12.1/12.2 warn "__Y may be used uninitialized" inside their own AVX-512 intrinsics when
// Eigen's packet exp/log are inlined here (GCC bug 105593, fixed in 12.3); the warning is about
// the headers (as in backend/cpu/token_logprobs.hpp).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#define POSTTRAIN_REWARD_MODEL_POP_DIAGNOSTIC
#endif

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cpu {

inline constexpr index_t rm_block = 256;

using rm_block_array = Eigen::Array<double, rm_block, 1>;

// A reward-model link whose L is log(1 + e^{−d}) (declares `static constexpr bool logistic`).
template <class Link>
inline constexpr bool is_logistic_link_v = requires {
  requires Link::logistic;
};

// L(d) = log(1 + e^{−d}) and L'(d) = −σ(−d) for a block of arguments, with e = e^{−|d|} ∈ (0, 1]:
//   L(d)  = max(−d, 0) + log1p(e)
//   L'(d) = −(d < 0 ? 1 : e) / (1 + e)
// log1p(e) = log(u) − ((u − 1) − e)/u with u = fl(1 + e): u − 1 and (u − 1) − e are exact
// (Sterbenz), the second term is u's rounding error to first order, so the result is as accurate
// as log(u); where u rounds to 1 it returns e exactly. No argument overflows: exp sees only −|d|.
// The select of L' is on d's sign bit (integer ops), so the loop vectorizes.
inline void logistic_block(const rm_block_array& d, rm_block_array& loss, rm_block_array& slope) {
  const rm_block_array e = (-d.abs()).exp();
  const rm_block_array u = 1.0 + e;
  loss = (-d).max(0.0) + (u.log() - ((u - 1.0) - e) / u);
  const double* dp = d.data();
  const double* ep = e.data();
  const double* up = u.data();
  double* sp = slope.data();
  const std::uint64_t one = std::bit_cast<std::uint64_t>(1.0);
  for (index_t i = 0; i < rm_block; ++i) {
    // all ones where d has its sign bit set (d < 0 or −0, where e = 1 anyway)
    const std::uint64_t negative = std::uint64_t(0) - (std::bit_cast<std::uint64_t>(dp[i]) >> 63);
    const std::uint64_t num = (std::bit_cast<std::uint64_t>(ep[i]) & ~negative) | (one & negative);
    sp[i] = -std::bit_cast<double>(num) / up[i];
  }
}

template <class Link>
void link_block(const rm_block_array& d, rm_block_array& loss, rm_block_array& slope) {
  if constexpr (is_logistic_link_v<Link>) {
    logistic_block(d, loss, slope);
  } else {
    for (index_t i = 0; i < rm_block; ++i) {
      const auto v = Link::evaluate(d[i]);
      loss[i] = v.loss;
      slope[i] = v.slope;
    }
  }
}

// divisor: the resolved pair normaliser (0 when there are no pairs: every term is then 0).
template <class Link, class T>
loss::reward_model_result reward_model(const loss::reward_model_inputs<T>& in,
                                       const loss::reward_model_options& options,
                                       const loss::reward_model_outputs<T>& out, double divisor) {
  using bits = mask_bits::uint_of<double>;
  const index_t pairs = static_cast<index_t>(in.chosen.size());
  const double inv = divisor > 0 ? 1.0 / divisor : 0.0;
  const double c = options.center_coef;
  const bool edited = !in.edited.empty();
  double ranking = 0, centering = 0, sum_c = 0, sum_r = 0;
  index_t correct = 0;

  // Per block: rewards, link arguments and values of the chosen/rejected comparison (0) and, with
  // edited responses, edited/chosen (1) and edited/rejected (2); then per pair the loss lp and the
  // gradients. Pairs past the end of the batch and pairs without an edited response see d = 0 and
  // are selected away.
  rm_block_array rc, rr, d0, d1, d2, l0, l1, l2, s0, s1, s2, lp, gc, gr, ge;
  bits keep[rm_block];  // all ones where pair i of the block has an edited response

  for (index_t k0 = 0; k0 < pairs; k0 += rm_block) {
    const index_t n = std::min(rm_block, pairs - k0);
    const index_t pad = rm_block - n;
    for (index_t i = 0; i < n; ++i) {
      rc[i] = static_cast<double>(in.chosen[k0 + i]);
      rr[i] = static_cast<double>(in.rejected[k0 + i]);
    }
    rc.tail(pad).setZero();
    rr.tail(pad).setZero();
    d0 = rc - rr;
    if (!in.margin.empty())
      for (index_t i = 0; i < n; ++i) d0[i] -= static_cast<double>(in.margin[k0 + i]);
    link_block<Link>(d0, l0, s0);
    lp = l0;
    gc = s0;
    gr = -s0;
    ge.setZero();
    if (edited) {
      for (index_t i = 0; i < n; ++i) {
        keep[i] =
            in.edited_mask.empty() ? ~bits(0) : mask_bits::keep<double>(in.edited_mask[k0 + i]);
        // r_e of a pair without an edited response is never used (it may be NaN): selected to 0.
        const double re = static_cast<double>(in.edited[k0 + i]);
        d1[i] = mask_bits::select(re - rc[i], keep[i]);
        d2[i] = mask_bits::select(re - rr[i], keep[i]);
      }
      for (index_t i = n; i < rm_block; ++i) keep[i] = 0;
      d1.tail(pad).setZero();
      d2.tail(pad).setZero();
      link_block<Link>(d1, l1, s1);
      link_block<Link>(d2, l2, s2);
      for (index_t i = 0; i < rm_block; ++i) {
        lp[i] += mask_bits::select(l1[i] + l2[i], keep[i]);
        ge[i] = mask_bits::select(s1[i] + s2[i], keep[i]);
        gc[i] -= mask_bits::select(s1[i], keep[i]);
        gr[i] -= mask_bits::select(s2[i], keep[i]);
      }
    }
    lp.tail(pad).setZero();
    ranking += lp.sum();
    const rm_block_array s = rc + rr;
    centering += (s * s).sum();
    if (c != 0.0) {
      lp += c * s * s;
      gc += 2.0 * c * s;
      gr += 2.0 * c * s;
    }
    for (index_t i = 0; i < n; ++i) correct += rc[i] > rr[i] ? 1 : 0;
    sum_c += rc.sum();
    sum_r += rr.sum();
    if (!out.pair_losses.empty())
      for (index_t i = 0; i < n; ++i) out.pair_losses[k0 + i] = lp[i];
    if (!out.chosen_grad.empty())
      for (index_t i = 0; i < n; ++i) out.chosen_grad[k0 + i] = static_cast<T>(gc[i] * inv);
    if (!out.rejected_grad.empty())
      for (index_t i = 0; i < n; ++i) out.rejected_grad[k0 + i] = static_cast<T>(gr[i] * inv);
    if (!out.edited_grad.empty())
      for (index_t i = 0; i < n; ++i) out.edited_grad[k0 + i] = static_cast<T>(ge[i] * inv);
  }
  loss::reward_model_result r;
  r.ranking_loss = ranking * inv;
  r.centering = centering * inv;
  r.loss = r.ranking_loss + c * r.centering;
  if (pairs > 0) {
    const double n = static_cast<double>(pairs);
    r.accuracy = static_cast<double>(correct) / n;
    r.chosen_reward = sum_c / n;
    r.rejected_reward = sum_r / n;
    r.margin = (sum_c - sum_r) / n;
  }
  return r;
}

}  // namespace backend::cpu

// The host backend of loss::reward_model (loss/reward_model_types.hpp).
template <>
struct loss::reward_model_backend<exec::host> {
  static constexpr bool available = true;
  template <class Link, class T>
  static loss::reward_model_result run(exec::host, const loss::reward_model_inputs<T>& in,
                                       const loss::reward_model_options& options,
                                       const loss::reward_model_outputs<T>& out, double divisor) {
    return backend::cpu::reward_model<Link>(in, options, out, divisor);
  }
};

POSTTRAIN_NAMESPACE_END

#if defined(POSTTRAIN_REWARD_MODEL_POP_DIAGNOSTIC)
#pragma GCC diagnostic pop
#undef POSTTRAIN_REWARD_MODEL_POP_DIAGNOSTIC
#endif
