#pragma once
// CPU pass of loss::policy_gradient (front end: loss/policy_gradient.hpp, which validates every
// argument first). Per row (per-sequence aggregations, sequence-level surrogates, the sequence KL
// correction) or over the whole batch, no full-length scratch:
//   0. aggregation weights from the mask alone (fused_aggregate): dLoss/dL_t = m_t·scale_i;
//   1. sequence-level surrogates and the sequence KL correction: a pre-pass over the row for its
//      statistic (log-ratio sum via the surrogate's token_log_ratio / length_divisor, the row's IS
//      weight, the KL sequence ratio); per-token slopes and clip flags go to row-sized buffers;
//   2. blocks of 512 tokens, each through small loops that do one job (detail::pg_pass): the
//      block's mask and its tokens with m ≠ 0; entropy gradients; the block ratio exp and block
//      k3; the surrogate's terms; IS weights; the KL value and slope, its IS correction (token or
//      sequence), β; m·L_t into the aggregate and the loss parts (entropy_aggregation::token_mean:
//      the bonus summed aside); the statistics; dLoss/dℓ_t = dLoss/dL_t·∂L_t/∂ℓ_t written
//      directly — or, when a row-level term follows (sequence gradients, sequence KL), kept in a
//      row buffer and written by
//   3. a pass over the row that adds the row term (dLoss/dlog s_i through each token's slope).
// Which loops exist is decided at compile time by the composition's traits (KL or not, sequence
// level, sequence gradient, weight use, given ratio, block k3); the per-call inputs (IS weights,
// entropy, KL correction, outputs) skip whole loops, not tokens. The loops hand their per-token
// terms to one another in a block-sized struct on the stack (pg_block_terms), and each sum has one
// accumulator fed in token order, so the results are those of the single fused loop this replaced
// (session 7: bit for bit on every surrogate × KL × aggregation × mode combination).
// The ratio e^{clamp(ℓ − ℓold)} of the token-level surrogates (clip, cispo, sapo, reinforce) is
// exped 512 tokens at a time with Eigen's vectorised exp before the branchy surrogate loop
// (ratio_block: within 2 ulp of std::exp; subnormal, overflowing and non-finite arguments take
// std::exp), a sequence-level one's e^{log s_i} once per row. An in-loss k3 (and
// straight_through<k3>) is likewise evaluated 512 tokens at a time by kl_divergence's block kernel
// (backend/cpu/kl.hpp k3_block: vector exp, series/closed form as a select instead of an
// unpredictable branch; float tokens in float, as the scalar k3<float>). Each sum keeps the order
// of the unfused composition (per-token arrays, then aggregate_loss), so results equal it up to
// those last bits and FMA contraction (tests/loss/policy_gradient_fused.cpp). Sequential, sums in
// double: deterministic. Only the block exp and block k3 read ℓ, ℓold, ℓref at tokens with m = 0
// (never used).
#include <algorithm>
#include <array>
#include <cmath>
#include <span>
#include <type_traits>

#include <Eigen/Core>

#include "posttrain/backend/cpu/fused_aggregate.hpp"
#include "posttrain/backend/cpu/kl.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/loss/policy_gradient/clip.hpp"
#include "posttrain/loss/policy_gradient_types.hpp"
#include "posttrain/ops/aggregate_types.hpp"
#include "posttrain/ops/kl_types.hpp"

// GCC 12.1/12.2 warn "__Y may be used uninitialized" inside their own AVX-512 intrinsics when
// Eigen's packet exp is inlined here (GCC bug 105593, fixed in 12.3), as in reward_model.hpp.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#define POSTTRAIN_POLICY_GRADIENT_POP_DIAGNOSTIC
#endif

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cpu {

namespace detail {
template <class S>
constexpr bool pg_sequence_gradient() {
  if constexpr (S::sequence_level) return !S::token_gradient;
  return false;
}

// Surrogates whose evaluate is evaluate_ratio(logp, logr, e^{clamp(logr)}, A, options): the
// ratio's exp can be taken outside the token's evaluation.
template <class S>
concept pg_ratio_given = requires(float f, double d, const policy_gradient_options& o,
                                  const typename S::options& s) {
  { pg_surrogate_call::evaluate_ratio<S>(f, f, f, f, o, s) } -> std::same_as<pg_token<float>>;
  { pg_surrogate_call::evaluate_ratio<S>(d, d, d, d, o, s) } -> std::same_as<pg_token<double>>;
};

// Block exp of the token ratios r_t = e^{clamp(ℓ_t − ℓold_t)}: Eigen's packet exp (measured
// within 1.4 ulp for float, 1.65 ulp for double against a long-double exp, SSE2 and AVX-512).
// Outside [lo, hi] — subnormal results, the AVX-512 float path's early overflow above ≈ 88.4,
// ±inf, NaN — tokens fall back to surrogate::detail::ratio_exp (std::exp), exactly as before.
template <class T>
struct ratio_block {
  static constexpr std::size_t size = 512;
  static constexpr T lo = sizeof(T) == 4 ? T(-87) : T(-708);
  static constexpr T hi = sizeof(T) == 4 ? T(88) : T(709);
  // fixed size, on the caller's stack: the call allocates nothing
  Eigen::Array<T, static_cast<int>(size), 1> log_ratio, ratio;

  // Tokens [first, first + k) of the block (logp, old point at its start).
  void compute(const T* logp, const T* old, std::size_t first, std::size_t k, T clamp_lo,
               T clamp_hi, const policy_gradient_options& o) {
    const auto n = static_cast<Eigen::Index>(k);
    using map_t = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
    const auto f = static_cast<Eigen::Index>(first);
    logp += first;
    old += first;
    auto lr = log_ratio.segment(f, n);
    auto r = ratio.segment(f, n);
    lr = (map_t(logp, n) - map_t(old, n)).max(clamp_lo).min(clamp_hi);
    r = lr.exp();
    unsigned in_range = 1;  // branch-free, vectorised; NaN fails both compares
    for (Eigen::Index j = 0; j < n; ++j)
      in_range &= static_cast<unsigned>(::posttrain::detail::all_of_branchless(lr[j] >= lo, lr[j] <= hi));
    if (in_range != 0) return;
    for (Eigen::Index j = 0; j < n; ++j)
      if (!(lr[j] >= lo && lr[j] <= hi))
        r[j] = surrogate::detail::ratio_exp(static_cast<T>(logp[j] - old[j]), o);
  }
};

// Block k3 of d_t = ℓ_t − ℓref_t (kl_element::value_is_k3): value and gradient of up to `size`
// tokens through kl_divergence's k3 blocks (kl_detail::k3_block), read per token by the row pass.
template <class T>
struct k3_block_values {
  static constexpr std::size_t size = 512;
  std::array<T, size> value, grad;  // on the caller's stack: the call allocates nothing

  template <class Element>
  void compute(const T* logp, const T* ref, std::size_t first, std::size_t k, bool with_grad,
               const Element& el) {
    // float tokens in float: the arithmetic of the scalar k3<float> this replaces (the double
    // evaluation of kl_divergence's blocks would cost 3x here, where no memory traffic hides it)
    kl_detail::k3_blocks<T, Element, T>(logp + first, ref + first, k, value.data() + first,
                                        with_grad ? grad.data() + first : nullptr, el);
  }
};

// Part of the surrogate concept (surrogate::defaults supplies multiply).
template <class S>
constexpr pg_weight_use pg_weight_use_of() {
  return S::importance_weight_use;
}

// m_t (1 when the mask is empty) and the capped IS weight min(w_t, C).
inline double mask_weight(std::span<const float> mask, std::size_t t) {
  return mask.empty() ? 1.0 : static_cast<double>(mask[t]);
}
template <class T>
double capped_weight(std::span<const T> weights, std::size_t t, double cap) {
  const double w = static_cast<double>(weights[t]);
  return w > cap ? cap : w;
}

// The row statistic of a sequence-level surrogate: log s_i = Σ m·term / D_i (every token then
// sees log s_i), 1/D_i, and the geometric-mean IS weight of the row (sequence_geo_mean). Fills
// the per-token slopes (when the gradient is written) and clip flags of the row.
struct pg_row_statistic {
  double log_ratio = 0.0, inv_len = 0.0, weight = 1.0;
};

template <class Surrogate, class T>
pg_row_statistic sequence_row_statistic(const policy_gradient_inputs<T>& in,
                                        const policy_gradient_options& o,
                                        const typename Surrogate::options& so,
                                        const agg_options& agg_opts, std::size_t b, std::size_t e,
                                        bool write_grad, std::span<double> tok_slope,
                                        std::span<unsigned char> tok_flags) {
  constexpr pg_weight_use weight_use = pg_weight_use_of<Surrogate>();
  const bool has_w = !in.importance_weights.empty();
  double s = 0.0, len = 0.0, log_w = 0.0;
  for (std::size_t t = b; t < e; ++t) {
    const double m = mask_weight(in.mask, t);
    if (m == 0.0) continue;
    // the row statistic in double, as every reduction over tokens
    const pg_seq_token<double> q = pg_surrogate_call::token_log_ratio<Surrogate>(
        static_cast<double>(in.logprobs[t]) - static_cast<double>(in.old_logprobs[t]),
        static_cast<double>(in.advantages[t]), o, so);
    s += m * q.log_ratio;
    len += m;
    if constexpr (pg_sequence_gradient<Surrogate>())
      if (write_grad) tok_slope[t - b] = q.slope;
    tok_flags[t - b] = static_cast<unsigned char>((q.clipped ? 1 : 0) | (q.clipped_lower ? 2 : 0));
    if constexpr (weight_use == pg_weight_use::log_ratio_sum)
      if (has_w)
        s += Surrogate::importance_log_term(
            capped_weight(in.importance_weights, t, o.importance_weight_cap));
    if constexpr (weight_use == pg_weight_use::sequence_geo_mean)
      if (has_w)
        log_w += m * std::log(capped_weight(in.importance_weights, t, o.importance_weight_cap) +
                              1e-10);
  }
  pg_row_statistic r;
  const double d = Surrogate::length_divisor(len, agg_opts);
  r.inv_len = d > 0.0 ? 1.0 / d : 0.0;
  r.log_ratio = s * r.inv_len;
  if constexpr (weight_use == pg_weight_use::sequence_geo_mean)
    if (has_w) r.weight = std::exp(log_w * r.inv_len);
  return r;
}

// The IS-corrected KL's sequence ratio ρ_i = e^{clamp(Σ m·logr / max(Σ m, 1))} and its slope
// dρ_i/dℓ_u / m_u (0 where the clamp is active).
struct kl_row_ratio {
  double ratio = 1.0, slope = 0.0;
};

template <class T>
kl_row_ratio kl_sequence_ratio(const policy_gradient_inputs<T>& in,
                               const policy_gradient_options& o, std::size_t b, std::size_t e) {
  double s = 0.0, len = 0.0;
  for (std::size_t t = b; t < e; ++t) {
    const double m = mask_weight(in.mask, t);
    if (m == 0.0) continue;
    s += m * (static_cast<double>(in.logprobs[t]) - static_cast<double>(in.old_logprobs[t]));
    len += m;
  }
  const double inv = 1.0 / (len > 1.0 ? len : 1.0);
  const double lr = s * inv;
  const bool clamped = lr < o.log_ratio_min || o.log_ratio_max < lr;
  kl_row_ratio r;
  r.ratio = std::exp(clamped ? (lr < o.log_ratio_min ? o.log_ratio_min : o.log_ratio_max) : lr);
  r.slope = clamped ? 0.0 : r.ratio * inv;
  return r;
}

// The statistics of the result: masked token means over the call, each sum in token order.
struct pg_statistics {
  double sum_m = 0, sum_clip = 0, sum_clip_lower = 0, sum_kl = 0, sum_ratio = 0;
  double sum_kl_unclamped = 0;

  void add(double m, bool clipped, bool clipped_lower, double clamped_log_ratio,
           double log_ratio, double ratio) {
    sum_m += m;
    sum_clip += clipped ? m : 0.0;
    sum_clip_lower += clipped_lower ? m : 0.0;
    sum_kl -= m * clamped_log_ratio;
    sum_kl_unclamped -= m * log_ratio;
    sum_ratio += m * ratio;
  }
  void finish(policy_gradient_result& r) const {
    if (sum_m > 0) {
      r.clip_fraction = sum_clip / sum_m;
      r.clip_fraction_lower = sum_clip_lower / sum_m;
      r.approx_kl = sum_kl / sum_m;
      r.approx_kl_unclamped = sum_kl_unclamped / sum_m;
      r.mean_ratio = sum_ratio / sum_m;
    }
  }
};

// The row-level gradient terms, once the row's sums are known: a sequence-level surrogate's
// m_t·g_seq·slope_t (plus the token KL part kept in tok_part), or tok_part alone, plus the
// sequence-ratio KL's m_t·g_kl.
template <bool SeqGrad, bool HasKl, class T>
void write_row_terms(std::span<T> grad, std::span<const float> mask, std::size_t b, std::size_t e,
                     double g_seq, std::span<const double> tok_slope,
                     std::span<const double> tok_part, bool kl_seq_is, double g_kl) {
  for (std::size_t t = b; t < e; ++t) {
    const double m = mask_weight(mask, t);
    double g = 0.0;
    if constexpr (SeqGrad) {
      if (m != 0.0) g = m * g_seq * tok_slope[t - b];
      if constexpr (HasKl) g += tok_part[t - b];
    } else {
      g = tok_part[t - b];
    }
    if (kl_seq_is && m != 0.0) g += m * g_kl;
    grad[t] = static_cast<T>(g);
  }
}
}  // namespace detail

namespace detail {

// The row-sized buffers of one call (each reused by every row; 0 when the composition has none):
// the clip flags and slopes of a sequence-level surrogate's row statistic, and the per-token part
// of the gradient when a row-level term is added after the row (sequence gradient, sequence KL).
struct pg_row_buffer_sizes {
  std::size_t flags = 0, slope = 0, part = 0;
};

template <class Surrogate, class Kl, class Agg>
pg_row_buffer_sizes pg_row_buffers(std::span<const index_t> seq_offsets,
                                   const policy_gradient_options& o, bool with_grad) {
  constexpr bool has_kl = !std::is_same_v<Kl, kl::none>;
  constexpr bool seq_grad = pg_sequence_gradient<Surrogate>();
  const bool kl_seq_is = has_kl && o.kl_correction == kl_is_correction::sequence;
  const bool by_row = Agg::per_sequence || Surrogate::sequence_level || kl_seq_is;
  const bool row_term = with_grad && (seq_grad || kl_seq_is);
  std::size_t max_len = 0;
  if (by_row && !seq_offsets.empty())
    for (std::size_t i = 0; i + 1 < seq_offsets.size(); ++i)
      max_len = std::max(max_len, static_cast<std::size_t>(seq_offsets[i + 1] - seq_offsets[i]));
  pg_row_buffer_sizes z;
  z.flags = Surrogate::sequence_level ? max_len : 0;
  z.slope = seq_grad && with_grad ? max_len : 0;
  z.part = row_term && (!seq_grad || has_kl) ? max_len : 0;
  return z;
}

struct pg_row_scratch {
  std::span<unsigned char> flags;
  std::span<double> slope, part;
};

// The per-token terms of one block of a segment, each array filled by one loop of pg_pass and
// read by the later ones (index j = t − block start; entries at tokens with m = 0 are not set).
inline constexpr std::size_t pg_block_size = 512;

template <class T>
struct pg_block_terms {
  std::array<double, pg_block_size> pg_value, pg_grad;  // w·surrogate loss and w·its slope
  std::array<double, pg_block_size> kl_value, kl_grad;  // (ρ·)K(d) and β·d(ρ·K)/dℓ
  std::array<T, pg_block_size> ratio;                   // the surrogate's ratio (statistics)
  // 1: clipped, 2: clipped_lower (not a char type: a char store may alias anything, so the
  // loops would reload every option after it)
  std::array<unsigned, pg_block_size> flags;
  std::array<double, pg_block_size> m;                  // the mask weight m_t (1 when empty)
  // The tokens with m ≠ 0 (their j, in increasing order): the loops below visit only these.
  std::array<unsigned short, pg_block_size> active;
  std::size_t active_count = 0;
  // [first, first + span): from the first to the last token with m ≠ 0 (span 0: none); dense
  // when every token in it has m ≠ 0 (the loops then run over j directly, no index list).
  std::size_t first = 0, span = 0;
  bool dense = false;
  std::size_t vec_first = 0, vec_span = 0;  // the block ratio exp's and block k3's range
};

// What a segment's loops share: its range and aggregation scale, the row statistics that come
// before its tokens (sequence-level log s_i, the KL sequence ratio) and the row sums that come
// after them (Σ dLoss/dL_t·∂L_t/∂(row statistic), written by write_row_terms).
struct pg_segment {
  std::size_t index = 0, begin = 0, end = 0;
  double scale = 0.0;  // dLoss/dL_t = m_t·scale
  pg_row_statistic seq;
  kl_row_ratio kl_seq;
  double seq_sum = 0.0, kl_seq_sum = 0.0;
};

// One call of the CPU policy-gradient loss. Each segment (a row, or the whole batch for
// token-level compositions) is cut into blocks of pg_block_size tokens, and each block goes
// through small loops that each do one job, in this order: entropy gradients; block ratio exp and
// block k3; surrogate terms; IS weights; KL value and slope, its IS correction, β; the aggregate
// and the loss parts; statistics; the gradient. Compile-time traits of the composition pick the
// loops (KL or not, sequence- or token-level, sequence gradient, weight use, given ratio, block
// k3); the per-call inputs (IS weights, entropy, KL correction, outputs) skip whole loops. Each
// sum has its own accumulator, fed in token order, so the results are those of the one-loop pass
// this replaces, bit for bit.
template <class Surrogate, class Kl, class Agg, class T>
class pg_pass {
 public:
  static constexpr bool has_kl = !std::is_same_v<Kl, kl::none>;
  static constexpr bool seq_level = Surrogate::sequence_level;
  static constexpr bool seq_grad = pg_sequence_gradient<Surrogate>();
  static constexpr pg_weight_use weight_use = pg_weight_use_of<Surrogate>();
  static constexpr bool ratio_given = pg_ratio_given<Surrogate>;
  static constexpr bool block_k3 = has_kl && ::posttrain::detail::kl_element<Kl, T>::value_is_k3;

  pg_pass(const policy_gradient_inputs<T>& in, const policy_gradient_options& o,
          const policy_gradient_outputs<T>& out, const agg_normalizer& norm,
          const agg_options& agg_opts, const typename Surrogate::options& so,
          const pg_row_scratch& rows, workspace ws)
      : in_(in),
        o_(o),
        out_(out),
        agg_opts_(agg_opts),
        so_(so),
        agg_(in.mask, in.seq_offsets, in.logprobs.size(), norm, agg_opts, ws),
        lr_lo_(::posttrain::detail::kl_bound<T>(o.log_ratio_min)),
        lr_hi_(::posttrain::detail::kl_bound<T>(o.log_ratio_max)),
        kl_el_{::posttrain::detail::kl_bound<T>(o.kl.input_min),
               ::posttrain::detail::kl_bound<T>(o.kl.input_max),
               ::posttrain::detail::kl_bound<T>(o.kl.output_min),
               ::posttrain::detail::kl_bound<T>(o.kl.output_max)},
        tok_flags_(rows.flags),
        tok_slope_(rows.slope),
        tok_part_(rows.part) {}

  policy_gradient_result run() {
    const std::size_t n = in_.logprobs.size();
    const std::size_t rows = in_.seq_offsets.empty() ? 0 : in_.seq_offsets.size() - 1;
    if (entropy_token_mean_) entropy_scale_ = entropy_token_mean_scale();

    const std::size_t segments = by_row_ ? rows : 1;
    for (std::size_t i = 0; i < segments; ++i) {
      pg_segment s;
      s.index = i;
      s.begin = by_row_ ? row_begin(i) : 0;
      s.end = by_row_ ? row_begin(i + 1) : n;
      segment(s);
    }
    return result();
  }

 private:
  void segment(pg_segment& s) {
    if constexpr (seq_level)
      s.seq = sequence_row_statistic<Surrogate>(in_, o_, so_, agg_opts_, s.begin, s.end,
                                                write_grad_, tok_slope_, tok_flags_);
    if (kl_seq_is_) s.kl_seq = kl_sequence_ratio(in_, o_, s.begin, s.end);
    if constexpr (ratio_given && seq_level)
      row_ratio_ = surrogate::detail::ratio_exp(static_cast<T>(s.seq.log_ratio), o_);
    s.scale = agg_.scale(s.index);
    agg_.begin_row(s.begin, s.end);
    for (std::size_t c = s.begin; c < s.end; c += pg_block_size) {
      const std::size_t k = std::min(pg_block_size, s.end - c);
      block_mask(c, k);
      if (write_entropy_grad_) entropy_gradients(s, c, k);
      if constexpr (ratio_given && !seq_level)
        if (has_old_ && block_.vec_span != 0)
          ratios_.compute(logprobs() + c, in_.old_logprobs.data() + c, block_.vec_first,
                          block_.vec_span, lr_lo_, lr_hi_, o_);
      if constexpr (block_k3)
        if (block_.vec_span != 0)
          k3s_.compute(logprobs() + c, in_.ref_logprobs.data() + c, block_.vec_first,
                       block_.vec_span, write_grad_, kl_el_);
      surrogate_terms(s, c);
      if (has_w_) importance_weights(s, c);
      if constexpr (has_kl) {
        kl_terms(c);
        if (kl_token_is_) kl_token_correction(c);
        if (kl_seq_is_) kl_sequence_correction(s);
        kl_coefficient();
      }
      aggregate_terms(s, c);
      statistics(s, c);
      if (write_grad_) {
        if constexpr (seq_grad)
          sequence_gradients(s, c, k);
        else
          token_gradients(s, c, k);
      }
    }
    agg_.end_row(s.index);
    // The row-level terms, now that the row's sums are known.
    if (row_term_)
      write_row_terms<seq_grad, has_kl>(out_.grad, in_.mask, s.begin, s.end,
                                        s.seq_sum * s.seq.inv_len,
                                        std::span<const double>(tok_slope_),
                                        std::span<const double>(tok_part_), kl_seq_is_,
                                        s.kl_seq_sum * s.kl_seq.slope);
  }

  // m_t of the block and the list of its tokens with m ≠ 0.
  void block_mask(std::size_t c, std::size_t k) {
    const float* const mask = in_.mask.data();
    std::size_t count = 0;
    if (mask == nullptr) {
      for (std::size_t j = 0; j < k; ++j) {
        block_.m[j] = 1.0;
        block_.active[j] = static_cast<unsigned short>(j);
      }
      count = k;
    } else {
      for (std::size_t j = 0; j < k; ++j) {
        const double m = static_cast<double>(mask[c + j]);
        block_.m[j] = m;
        block_.active[count] = static_cast<unsigned short>(j);
        count += m != 0.0 ? 1 : 0;
      }
    }
    block_.active_count = count;
    block_.first = count != 0 ? block_.active[0] : 0;
    block_.span = count != 0 ? block_.active[count - 1] + std::size_t{1} - block_.first : 0;
    block_.dense = block_.span == count;
    // The block exp's range: [first, first + span) widened to 64-byte boundaries of the block
    // (within it), so that every token takes the same path (packet or scalar tail) of Eigen's
    // exp as over the whole block: the same bits.
    constexpr std::size_t g = 64 / sizeof(T);
    const std::size_t vb = block_.first / g * g;
    const std::size_t ve = std::min(k, (block_.first + block_.span + g - 1) / g * g);
    block_.vec_first = vb;
    block_.vec_span = count != 0 ? ve - vb : 0;
  }

  // f(j) for every token j of the block with m ≠ 0, in increasing order.
  template <class F>
  [[gnu::always_inline]] inline void for_active(F&& f) const {
    if (block_.dense) {
      const std::size_t b = block_.first, e = b + block_.span;
      for (std::size_t j = b; j < e; ++j) f(j);
    } else {
      const std::size_t count = block_.active_count;
      for (std::size_t i = 0; i < count; ++i) f(static_cast<std::size_t>(block_.active[i]));
    }
  }

  // dLoss/dH_t = −c_H·e_t·dLoss/dL_t, or −c_H·m_t·e_t·entropy_scale (token_mean), every token.
  void entropy_gradients(const pg_segment& s, std::size_t c, std::size_t k) {
    T* const entropy_grad = out_.entropy_grad.data() + c;
    const double coef = o_.entropy_coef;
    const double scale = entropy_token_mean_ ? entropy_scale_ : s.scale;
    for (std::size_t j = 0; j < k; ++j) {
      double dh = block_.m[j] * scale;
      if (has_entropy_mask_) dh *= entropy_mask_at(c + j);
      entropy_grad[j] = static_cast<T>(-coef * dh);
    }
  }

  // The surrogate's loss, slope, ratio and clip flags of every token with m ≠ 0.
  void surrogate_terms(const pg_segment& s, std::size_t c) {
    const T* const old = in_.old_logprobs.data();
    const T* const adv = in_.advantages.data();
    // local copies: the stores into block_ could alias the caller's options for the compiler
    const policy_gradient_options o = o_;
    const typename Surrogate::options so = so_;
    for_active([&](std::size_t j) {
      const std::size_t t = c + j;
      const T logp = logprobs()[t];
      pg_token<T> q;
      if constexpr (ratio_given) {
        T r = row_ratio_;
        if constexpr (!seq_level) r = has_old_ ? ratios_.ratio[static_cast<Eigen::Index>(j)] : constant_ratio_;
        q = pg_surrogate_call::evaluate_ratio<Surrogate>(logp, log_ratio(s, t, old), r, adv[t],
                                                         o, so);
      } else {
        q = pg_surrogate_call::evaluate<Surrogate>(logp, log_ratio(s, t, old), adv[t], o, so);
      }
      bool clipped = q.clipped, clipped_lower = q.clipped_lower;
      if constexpr (seq_level) {
        clipped = clipped || (tok_flags_[t - s.begin] & 1) != 0;
        clipped_lower = clipped_lower || (tok_flags_[t - s.begin] & 2) != 0;
      }
      block_.pg_value[j] = static_cast<double>(q.loss);
      block_.pg_grad[j] = static_cast<double>(q.grad);
      block_.ratio[j] = q.ratio;
      block_.flags[j] = (clipped ? 1u : 0u) | (clipped_lower ? 2u : 0u);
    });
  }

  // The detached IS weight on the surrogate: min(w_t, C) (multiply) or the row's geometric mean
  // (sequence_geo_mean); log_ratio_sum surrogates took it into their row statistic instead.
  void importance_weights(const pg_segment& s, std::size_t c) {
    if constexpr (weight_use == pg_weight_use::log_ratio_sum) return;
    for_active([&](std::size_t j) {
      const std::size_t t = c + j;
      const double w = weight_use == pg_weight_use::multiply
                           ? capped_weight(in_.importance_weights, t, o_.importance_weight_cap)
                           : s.seq.weight;
      block_.pg_value[j] = w * block_.pg_value[j];
      block_.pg_grad[j] = w * block_.pg_grad[j];
    });
  }

  // K(ℓ_t − ℓref_t) and its slope (the block k3's, or the estimator's per token).
  void kl_terms(std::size_t c) {
    const T* const ref = in_.ref_logprobs.data();
    for_active([&](std::size_t j) {
      const std::size_t t = c + j;
      T kv, kg = T(0);  // kg is read only where write_grad
      if constexpr (block_k3) {
        kv = k3s_.value[j];
        if (write_grad_) kg = k3s_.grad[j];
      } else {
        kl_el_.value_and_grad(logprobs()[t] - ref[t], kv, kg);
      }
      block_.kl_value[j] = static_cast<double>(kv);
      block_.kl_grad[j] = static_cast<double>(kg);
    });
  }

  // ρ_t·K: ∂/∂ℓ = ρ·K' + K·∂ρ/∂ℓ (∂ρ/∂ℓ = ρ, 0 where the log-ratio clamp is active).
  void kl_token_correction(std::size_t c) {
    const T* const old = in_.old_logprobs.data();
    for_active([&](std::size_t j) {
      const std::size_t t = c + j;
      const T lr = logprobs()[t] - old[t];
      const bool clamped = lr < lr_lo_ || lr_hi_ < lr;
      const double rho = std::exp(static_cast<double>(math::clamp(lr, lr_lo_, lr_hi_)));
      const double v = block_.kl_value[j];
      block_.kl_grad[j] = rho * block_.kl_grad[j] + (clamped ? 0.0 : rho * v);
      block_.kl_value[j] = v * rho;
    });
  }

  // ρ_i·K: the token term ρ_i·K' here; K·∂ρ_i/∂ℓ_u goes to every token u of the row (kl_seq_sum).
  void kl_sequence_correction(pg_segment& s) {
    double sum = s.kl_seq_sum;
    const double kl_coef = o_.kl_coef, scale = s.scale, ratio = s.kl_seq.ratio;
    for_active([&](std::size_t j) {
      sum += (block_.m[j] * scale) * (kl_coef * block_.kl_value[j]);
      block_.kl_grad[j] *= ratio;
      block_.kl_value[j] *= ratio;
    });
    s.kl_seq_sum = sum;
  }

  void kl_coefficient() {
    const double kl_coef = o_.kl_coef;
    for_active([&](std::size_t j) {
      block_.kl_grad[j] = kl_coef * block_.kl_grad[j];
    });
  }

  // L_t = w·surrogate + β·KL − c_H·e·H into the aggregate; the loss parts, each agg(part).
  void aggregate_terms(const pg_segment& s, std::size_t c) {
    // sums in locals: agg_.add's stores could otherwise alias them
    double pg_loss = pg_loss_, kl_loss = kl_loss_, entropy = entropy_, entropy_sum = entropy_sum_;
    const double kl_coef = o_.kl_coef, entropy_coef = o_.entropy_coef;
    const T* const entropies = in_.entropy.data();
    for_active([&](std::size_t j) {
      const std::size_t t = c + j;
      const double m = block_.m[j];
      const double a = m * s.scale;  // dLoss/dL_t
      double l = block_.pg_value[j];
      if constexpr (has_kl) l += kl_coef * block_.kl_value[j];
      double h = 0.0;
      if (has_entropy_) {
        h = static_cast<double>(entropies[t]);
        if (has_entropy_mask_) h *= entropy_mask_at(t);
        if (entropy_token_mean_)
          entropy_sum += m * h;
        else
          l -= entropy_coef * h;
      }
      agg_.add(t, m * l);
      if (a != 0.0) {
        pg_loss += a * block_.pg_value[j];
        if constexpr (has_kl) kl_loss += a * block_.kl_value[j];
        if (has_entropy_ && !entropy_token_mean_) entropy += a * h;
      }
    });
    pg_loss_ = pg_loss;
    kl_loss_ = kl_loss;
    entropy_ = entropy;
    entropy_sum_ = entropy_sum;
  }

  void statistics(const pg_segment& s, std::size_t c) {
    const T* const old = in_.old_logprobs.data();
    pg_statistics stats = stats_;  // in a local, as the sums above
    for_active([&](std::size_t j) {
      const std::size_t t = c + j;
      const T logr = log_ratio(s, t, old);
      stats.add(block_.m[j], (block_.flags[j] & 1) != 0, (block_.flags[j] & 2) != 0,
                static_cast<double>(math::clamp(logr, lr_lo_, lr_hi_)), static_cast<double>(logr),
                static_cast<double>(block_.ratio[j]));
    });
    stats_ = stats;
  }

  // dLoss/dℓ_t = dLoss/dL_t·∂L_t/∂ℓ_t, written directly or, when a row term follows (the
  // sequence KL correction), kept in tok_part for write_row_terms.
  void token_gradients(const pg_segment& s, std::size_t c, std::size_t k) {
    T* const grad = out_.grad.data();
    double* const part = tok_part_.data();
    const bool row_term = row_term_;
    for (std::size_t j = 0; j < k; ++j) {
      const std::size_t t = c + j;
      const double m = block_.m[j];
      const double a = m * s.scale;
      double g;
      if (m == 0.0) {
        g = a * 0.0;  // dLoss/dL_t·0 for each term, exactly as the unfused composition writes it
        if constexpr (has_kl) g += a * 0.0;
      } else {
        g = a * block_.pg_grad[j];
        if constexpr (has_kl) g += a * block_.kl_grad[j];
      }
      if (row_term)
        part[t - s.begin] = g;
      else
        grad[t] = static_cast<T>(g);
    }
  }

  // Sequence-level surrogates with a row gradient: Σ dLoss/dL_t·∂L_t/∂log s_i over the row, and
  // the token KL part in tok_part; write_row_terms spreads the row term through the slopes.
  void sequence_gradients(pg_segment& s, std::size_t c, std::size_t k) {
    double sum = s.seq_sum;
    if constexpr (!has_kl) {
      // only the tokens with m ≠ 0 add to the row sum, in the same order
      const double scale = s.scale;
      for_active([&](std::size_t j) { sum += (block_.m[j] * scale) * block_.pg_grad[j]; });
      s.seq_sum = sum;
      return;
    }
    double* const part = tok_part_.data() + (c - s.begin);
    for (std::size_t j = 0; j < k; ++j) {
      const double m = block_.m[j];
      const double a = m * s.scale;
      if (m == 0.0) {
        if constexpr (has_kl) part[j] = 0.0 + a * 0.0;
        continue;
      }
      sum += a * block_.pg_grad[j];
      if constexpr (has_kl) part[j] = a * block_.kl_grad[j];
    }
    s.seq_sum = sum;
  }

  // entropy_aggregation::token_mean: 1 / (max(Σ m·e, 1)·D_H).
  double entropy_token_mean_scale() const {
    double count = 0.0;
    for (std::size_t t = 0; t < in_.logprobs.size(); ++t) count += mask_at(t) * entropy_mask_at(t);
    return 1.0 / ((count > 1.0 ? count : 1.0) * o_.entropy_divisor);
  }

  policy_gradient_result result() const {
    policy_gradient_result r;
    r.pg_loss = pg_loss_;
    r.kl_loss = kl_loss_;
    r.entropy = entropy_;
    r.loss = agg_.loss();
    if (entropy_token_mean_ && has_entropy_) {
      r.entropy = entropy_sum_ * entropy_scale_;
      r.loss -= o_.entropy_coef * r.entropy;
    }
    r.divisor = agg_.divisor();
    stats_.finish(r);
    return r;
  }

  // logr_t: the row's log s_i (sequence level), ℓ_t − ℓold_t, or 0 without ℓold.
  T log_ratio(const pg_segment& s, std::size_t t, const T* old) const {
    if constexpr (seq_level) return static_cast<T>(s.seq.log_ratio);
    return has_old_ ? logprobs()[t] - old[t] : T(0);
  }
  const T* logprobs() const { return in_.logprobs.data(); }
  double mask_at(std::size_t t) const { return mask_weight(in_.mask, t); }
  double entropy_mask_at(std::size_t t) const {
    return has_entropy_mask_ ? static_cast<double>(in_.entropy_mask[t]) : 1.0;
  }
  std::size_t row_begin(std::size_t i) const { return static_cast<std::size_t>(in_.seq_offsets[i]); }

  const policy_gradient_inputs<T>& in_;
  const policy_gradient_options& o_;
  const policy_gradient_outputs<T>& out_;
  const agg_options& agg_opts_;
  const typename Surrogate::options& so_;
  fused_aggregate<Agg> agg_;
  const T lr_lo_, lr_hi_;
  const ::posttrain::detail::kl_element<Kl, T> kl_el_;

  const bool has_old_ = !in_.old_logprobs.empty();
  const bool has_entropy_ = !in_.entropy.empty();
  const bool has_w_ = !in_.importance_weights.empty();
  const bool has_entropy_mask_ = !in_.entropy_mask.empty();
  // TRL's bonus: a token mean over m·e beside the aggregated loss, not part of L_t.
  const bool entropy_token_mean_ = o_.entropy_agg == entropy_aggregation::token_mean;
  const bool kl_token_is_ = has_kl && o_.kl_correction == kl_is_correction::token;
  const bool kl_seq_is_ = has_kl && o_.kl_correction == kl_is_correction::sequence;
  const bool write_grad_ = !out_.grad.empty();
  const bool write_entropy_grad_ = !out_.entropy_grad.empty();
  const bool by_row_ = Agg::per_sequence || seq_level || kl_seq_is_;
  const bool row_term_ = write_grad_ && (seq_grad || kl_seq_is_);
  // Without ℓold the ratio of a token-level surrogate is the constant e^{clamp(0)}; a
  // sequence-level one exps its row's log s once (row_ratio_).
  const T constant_ratio_ = surrogate::detail::ratio_exp(T(0), o_);
  T row_ratio_ = T(1);
  double entropy_scale_ = 0.0;

  std::span<unsigned char> tok_flags_;
  std::span<double> tok_slope_, tok_part_;
  ratio_block<T> ratios_;
  k3_block_values<T> k3s_;
  pg_block_terms<T> block_;

  // Sums in double, each in token order (the unfused composition's order).
  pg_statistics stats_;
  double pg_loss_ = 0, kl_loss_ = 0, entropy_ = 0;
  double entropy_sum_ = 0;  // token_mean: Σ m·e·H
};

}  // namespace detail

// Bytes of the caller workspace of policy_gradient below: the row buffers, then the aggregation's
// per-row scratch (0 for token-level compositions without a row term).
template <class Surrogate, class Kl, class Agg>
std::size_t policy_gradient_workspace_bytes(std::span<const index_t> seq_offsets,
                                            const policy_gradient_options& o, bool with_grad) {
  const detail::pg_row_buffer_sizes z = detail::pg_row_buffers<Surrogate, Kl, Agg>(seq_offsets, o,
                                                                                   with_grad);
  const std::size_t rows = seq_offsets.empty() ? 0 : seq_offsets.size() - 1;
  return workspace_size().add<unsigned char>(z.flags).add<double>(z.slope).add<double>(z.part) +
         fused_aggregate<Agg>::workspace_bytes(rows);
}

// Every piece of scratch is taken from ws (policy_gradient_workspace_bytes) before anything is
// written: a too-small workspace throws posttrain::error with the outputs untouched.
template <class Surrogate, class Kl, class Agg, class T>
policy_gradient_result policy_gradient(const policy_gradient_inputs<T>& in,
                                       const policy_gradient_options& o,
                                       const policy_gradient_outputs<T>& out,
                                       const agg_normalizer& norm, const agg_options& agg_opts,
                                       const typename Surrogate::options& so, workspace ws) {
  constexpr const char* where = "loss::policy_gradient";
  const detail::pg_row_buffer_sizes z =
      detail::pg_row_buffers<Surrogate, Kl, Agg>(in.seq_offsets, o, !out.grad.empty());
  detail::pg_row_scratch rows;
  rows.flags = ws.take<unsigned char>(z.flags, where);
  rows.slope = ws.take<double>(z.slope, where);
  rows.part = ws.take<double>(z.part, where);
  return detail::pg_pass<Surrogate, Kl, Agg, T>(in, o, out, norm, agg_opts, so, rows, ws).run();
}
}  // namespace backend::cpu

// The host backend of the policy-gradient family (loss/policy_gradient_types.hpp).
template <>
struct loss::policy_gradient_backend<exec::host> {
  static constexpr bool available = true;

  template <class Surrogate, class Kl, class Agg>
  static std::size_t workspace_bytes(exec::host, std::span<const index_t> seq_offsets,
                                     const policy_gradient_options& o, bool with_grad) {
    return backend::cpu::policy_gradient_workspace_bytes<Surrogate, Kl, Agg>(seq_offsets, o,
                                                                             with_grad);
  }

  template <class Surrogate, class Kl, class Agg, class T>
  static policy_gradient_result run(exec::host, const policy_gradient_inputs<T>& in,
                                    const policy_gradient_options& o,
                                    const policy_gradient_outputs<T>& out,
                                    const agg_normalizer& norm, const agg_options& agg_opts,
                                    const typename Surrogate::options& so, workspace ws) {
    return backend::cpu::policy_gradient<Surrogate, Kl, Agg>(in, o, out, norm, agg_opts, so, ws);
  }
};


POSTTRAIN_NAMESPACE_END

#ifdef POSTTRAIN_POLICY_GRADIENT_POP_DIAGNOSTIC
#pragma GCC diagnostic pop
#undef POSTTRAIN_POLICY_GRADIENT_POP_DIAGNOSTIC
#endif
