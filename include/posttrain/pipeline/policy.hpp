#pragma once
// The Policy concept: a user's model (our reference transformer, a libtorch module, a custom CUDA
// engine behind host views) as the pipeline steps see it. pipeline/ knows no model.
//
//   P::scalar_type                 float or double: logits / hidden states, parameters, gradients
//   p.vocab_size() -> index_t      V
//   p.forward(const token_sequences&)   one row per token of the packed batch [N, ·], row t
//                                  predicting tokens[t + 1]; returns EITHER
//       matrix_view<const S>       the logits [N, V]                              (logits path)
//       policy_hidden<S>           hidden [N, H] and the output projection (lm_head) [V, H]:
//                                  the fused linear + log-prob path, [N, V] never materialised
//                                  The views stay valid until the next forward.
//   p.backward(d_logits [N, V])                 logits path
//   p.backward(d_hidden [N, H], d_lm_head [V, H])   hidden path
//                                  the gradient of the last forward's batch; ADDS the parameter
//                                  gradients into gradients() (micro-batches accumulate)
//   p.parameters() -> std::span<S>, p.gradients() -> std::span<S>   flat views, equal sizes (for
//                                  all-reduce, clipping, averaging, checkpointing)
//   p.zero_grad()                  gradients() = 0
//
// static_assert(check_policy<P>()) prints one sentence per missing member
// (tests/compile_fail/pipeline_policy.cpp).
//
// policy_logprobs / policy_backward run the forward and the backward between the policy and the
// token-aligned per-token log-probs the losses read (pipeline/types.hpp): ops/token_logprobs.hpp
// on the logits path, ops/fused_linear_logprobs.hpp on the hidden path.
#include <concepts>
#include <span>
#include <type_traits>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/views.hpp"
#include "posttrain/ops/fused_linear_logprobs.hpp"
#include "posttrain/ops/token_logprobs.hpp"
#include "posttrain/pipeline/types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pipeline {

template <class S>
struct policy_hidden {
  matrix_view<const S> hidden{};   // [N, H]
  matrix_view<const S> lm_head{};  // [V, H]
};

namespace policy_detail {

template <class P>
concept has_scalar = requires { typename P::scalar_type; } &&
                     (std::same_as<typename P::scalar_type, float> ||
                      std::same_as<typename P::scalar_type, double>);

template <class P>
concept has_vocab = requires(const P& p) {
  { p.vocab_size() } -> std::convertible_to<index_t>;
};

template <class P>
concept logits_forward = has_scalar<P> && requires(P& p, const token_sequences& s) {
  { p.forward(s) } -> std::same_as<matrix_view<const typename P::scalar_type>>;
};

template <class P>
concept hidden_forward = has_scalar<P> && requires(P& p, const token_sequences& s) {
  { p.forward(s) } -> std::same_as<policy_hidden<typename P::scalar_type>>;
};

template <class P>
concept logits_backward = has_scalar<P> &&
    requires(P& p, matrix_view<const typename P::scalar_type> d) { p.backward(d); };

template <class P>
concept hidden_backward = has_scalar<P> &&
    requires(P& p, matrix_view<const typename P::scalar_type> d) { p.backward(d, d); };

template <class P>
concept flat_views = has_scalar<P> && model_detail::flat_views<P>;

}  // namespace policy_detail

template <class P>
concept policy = policy_detail::has_scalar<P> && policy_detail::has_vocab<P> &&
                 policy_detail::flat_views<P> &&
                 ((policy_detail::logits_forward<P> && policy_detail::logits_backward<P>) ||
                  (policy_detail::hidden_forward<P> && policy_detail::hidden_backward<P>));

template <class P>
constexpr bool check_policy() {
  static_assert(policy_detail::has_scalar<P>,
                "a policy needs `using scalar_type = float;` or `double`: the type of its logits, "
                "parameters and gradients");
  static_assert(policy_detail::has_vocab<P>,
                "a policy needs `index_t vocab_size() const`: the number of logits per token");
  if constexpr (policy_detail::has_scalar<P>) {
    static_assert(policy_detail::logits_forward<P> || policy_detail::hidden_forward<P>,
                  "a policy needs `forward(const pipeline::token_sequences&)` returning the logits "
                  "as matrix_view<const scalar_type> [N, V], or pipeline::policy_hidden<scalar_type> "
                  "(hidden states [N, H] and lm_head [V, H])");
    if constexpr (policy_detail::logits_forward<P>)
      static_assert(policy_detail::logits_backward<P>,
                    "a policy whose forward returns logits needs `backward(matrix_view<const "
                    "scalar_type> d_logits)` that adds the parameter gradients of the last forward");
    if constexpr (policy_detail::hidden_forward<P>)
      static_assert(policy_detail::hidden_backward<P>,
                    "a policy whose forward returns hidden states needs `backward(matrix_view<const "
                    "scalar_type> d_hidden, matrix_view<const scalar_type> d_lm_head)` that adds "
                    "the parameter gradients of the last forward");
    static_assert(policy_detail::flat_views<P>,
                  "a policy needs `std::span<scalar_type> parameters()`, `std::span<scalar_type> "
                  "gradients()` (flat views of equal size) and `zero_grad()`");
  }
  return policy<P>;
}

// What the backward needs from the forward of one batch.
template <class S>
struct forward_state {
  bool hidden_path = false;
  matrix_view<const S> logits{};  // logits path
  policy_hidden<S> hidden{};      // hidden path
  std::vector<index_t> targets;   // row t -> tokens[t + 1], or ignore_index at sequence ends
  std::vector<S> row_logprob, row_lse, row_entropy, row_sum_p2;  // the last two: only when asked
  // With a `needed` mask (hidden path): the rows the lm_head ran on, ascending, and their hidden
  // states gathered [rows, H]; empty = every row.
  bool compact = false;
  std::vector<index_t> rows;
  std::vector<S> rows_hidden;
  // The backward's scratch, kept between calls so that a step's micro-batches reuse one [N, V]
  // (or [N, H] + [V, H]) buffer instead of allocating and zeroing it each time.
  mutable std::vector<S> d_logits, d_hidden, d_head, d_row, d_row_h;
};

inline constexpr index_t ignore_target = -100;

// Row targets of next-token prediction: row t predicts tokens[t + 1] within its sequence.
inline void next_token_targets(const token_sequences& s, std::vector<index_t>& targets) {
  targets.assign(s.tokens.size(), ignore_target);
  for (index_t b = 0; b < s.num_sequences(); ++b)
    for (index_t t = s.seq_offsets[b]; t + 1 < s.seq_offsets[b + 1]; ++t) targets[t] = s.tokens[t + 1];
}

// Forward: lp[t] = log p(tokens[t] | earlier tokens of its sequence), 0 on first tokens.
// `temperature` divides the logits (the peers' rollout temperature). entropy (optional, [N]):
// entropy[t] = H of the distribution that predicts tokens[t] (row t − 1), 0 on first tokens;
// sum_p_squared (optional, [N]) likewise Σ_v p_v² of that distribution (the optimal token
// baseline's behaviour statistic; no gradient).
// needed (optional, [N], token-aligned like lp): on the hidden path the lm_head + log-prob op runs
// only on the rows whose token has needed[t] > 0 (e.g. the loss mask: response tokens); lp,
// entropy and sum_p_squared are 0 elsewhere, and policy_backward ignores d_lp there (the caller
// promises it is 0). The prompt rows of an RL batch are most of its rows, so this saves most of
// the op's 2·N·H·V (forward) + 6·N·H·V (backward) FLOP. The logits path computes every row.
template <policy P>
void policy_logprobs(P& p, const token_sequences& s, std::span<typename P::scalar_type> lp,
                     forward_state<typename P::scalar_type>& st, double temperature = 1.0,
                     std::span<typename P::scalar_type> entropy = {},
                     std::span<typename P::scalar_type> sum_p_squared = {},
                     std::span<const float> needed = {}) {
  using S = typename P::scalar_type;
  constexpr const char* where = "pipeline::policy_logprobs";
  const index_t n = s.num_tokens();
  expect_size(lp, n, where, "logprobs", "one per token");
  expect_size_or_empty(entropy, n, where, "entropy", "one per token, or empty");
  expect_size_or_empty(sum_p_squared, n, where, "sum_p_squared", "one per token, or empty");
  expect_size_or_empty(needed, n, where, "needed", "one per token, or empty");
  next_token_targets(s, st.targets);
  st.rows.clear();
  st.compact = false;
  st.row_logprob.assign(static_cast<std::size_t>(n), S(0));
  st.row_lse.assign(static_cast<std::size_t>(n), S(0));
  st.row_entropy.assign(entropy.empty() ? 0 : static_cast<std::size_t>(n), S(0));
  st.row_sum_p2.assign(sum_p_squared.empty() ? 0 : static_cast<std::size_t>(n), S(0));
  const index_t v = p.vocab_size();
  if constexpr (policy_detail::logits_forward<P>) {
    st.hidden_path = false;
    st.logits = p.forward(s);
    expect(st.logits.rows == n && st.logits.cols == v, where, "the policy's logits are [",
           st.logits.rows, ", ", st.logits.cols, "], expected [", n, ", ", v,
           "] (one row per token, vocab_size() columns)");
    token_logprobs(exec::host{}, st.logits, std::span<const index_t>(st.targets),
                   token_logprobs_outputs<S>{st.row_logprob, st.row_lse, st.row_entropy, st.row_sum_p2},
                   token_logprobs_options{temperature, ignore_target, 1});
  } else {
    st.hidden_path = true;
    st.hidden = p.forward(s);
    expect(st.hidden.hidden.rows == n && st.hidden.lm_head.rows == v &&
               st.hidden.lm_head.cols == st.hidden.hidden.cols,
           where, "the policy's hidden states are [", st.hidden.hidden.rows, ", ",
           st.hidden.hidden.cols, "] and lm_head [", st.hidden.lm_head.rows, ", ",
           st.hidden.lm_head.cols, "], expected [", n, ", H] and [", v, ", H]");
    fused_linear_logprobs_options o;
    o.temperature = temperature;
    o.ignore_index = ignore_target;
    if (needed.empty()) {
      fused_linear_logprobs(exec::host{}, st.hidden.hidden, st.hidden.lm_head,
                            std::span<const index_t>(st.targets),
                            token_logprobs_outputs<S>{st.row_logprob, st.row_lse, st.row_entropy, st.row_sum_p2}, o);
    } else {
      // Row t − 1 produces lp[t]: gather the needed rows, run the op on them, scatter back.
      st.compact = true;
      for (index_t b = 0; b < s.num_sequences(); ++b)
        for (index_t t = s.seq_offsets[b] + 1; t < s.seq_offsets[b + 1]; ++t)
          if (needed[t] > 0) st.rows.push_back(t - 1);
      const index_t nr = static_cast<index_t>(st.rows.size()), h = st.hidden.hidden.cols;
      st.rows_hidden.resize(static_cast<std::size_t>(nr * h));
      std::vector<index_t> tg(static_cast<std::size_t>(nr));
      std::vector<S> lpr(tg.size()), lser(tg.size()), entr(st.row_entropy.empty() ? 0 : tg.size()),
          p2r(st.row_sum_p2.empty() ? 0 : tg.size());
      for (index_t i = 0; i < nr; ++i) {
        const index_t r = st.rows[static_cast<std::size_t>(i)];
        for (index_t j = 0; j < h; ++j) st.rows_hidden[static_cast<std::size_t>(i * h + j)] = st.hidden.hidden(r, j);
        tg[static_cast<std::size_t>(i)] = st.targets[static_cast<std::size_t>(r)];
      }
      if (nr > 0)
        fused_linear_logprobs(exec::host{}, matrix_view<const S>(st.rows_hidden.data(), nr, h),
                              st.hidden.lm_head, std::span<const index_t>(tg),
                              token_logprobs_outputs<S>{lpr, lser, entr, p2r}, o);
      for (index_t i = 0; i < nr; ++i) {
        const auto r = static_cast<std::size_t>(st.rows[static_cast<std::size_t>(i)]);
        const auto k = static_cast<std::size_t>(i);
        st.row_logprob[r] = lpr[k];
        st.row_lse[r] = lser[k];
        if (!entr.empty()) st.row_entropy[r] = entr[k];
        if (!p2r.empty()) st.row_sum_p2[r] = p2r[k];
      }
    }
  }
  for (index_t b = 0; b < s.num_sequences(); ++b) {
    const index_t b0 = s.seq_offsets[b], b1 = s.seq_offsets[b + 1];
    if (b0 < b1) lp[b0] = S(0);
    for (index_t t = b0 + 1; t < b1; ++t) lp[t] = st.row_logprob[t - 1];
    if (!entropy.empty()) {
      if (b0 < b1) entropy[b0] = S(0);
      for (index_t t = b0 + 1; t < b1; ++t) entropy[t] = st.row_entropy[t - 1];
    }
    if (!sum_p_squared.empty()) {
      if (b0 < b1) sum_p_squared[b0] = S(0);
      for (index_t t = b0 + 1; t < b1; ++t) sum_p_squared[t] = st.row_sum_p2[t - 1];
    }
  }
}

// Backward of the last policy_logprobs: d_lp[t] = dLoss/dlp[t] (token-aligned; ignored on first
// tokens) is taken back to the logits (or hidden and lm_head) and handed to p.backward, which
// adds the parameter gradients. The policy must not have run another forward in between.
// d_entropy (optional, [N], token-aligned like the forward's entropy) needs the forward to have
// computed the entropy.
template <policy P>
void policy_backward(P& p, const token_sequences& s,
                     const forward_state<typename P::scalar_type>& st,
                     std::span<const typename P::scalar_type> d_lp, double temperature = 1.0,
                     std::span<const typename P::scalar_type> d_entropy = {}) {
  using S = typename P::scalar_type;
  constexpr const char* where = "pipeline::policy_backward";
  const index_t n = s.num_tokens();
  expect_size(d_lp, n, where, "d_logprobs", "one per token");
  expect_size_or_empty(d_entropy, n, where, "d_entropy", "one per token, or empty");
  expect(d_entropy.empty() || ssize(std::span<const S>(st.row_entropy)) == n, where,
         "d_entropy is given but the forward computed no entropy (pass an entropy span to "
         "policy_logprobs)");
  // Row t − 1 carries dℓ[t]; the last row of each sequence predicts nothing and stays 0.
  std::vector<S>& d_row = st.d_row;
  std::vector<S>& d_row_h = st.d_row_h;
  d_row.assign(static_cast<std::size_t>(n), S(0));
  d_row_h.assign(d_entropy.empty() ? 0 : static_cast<std::size_t>(n), S(0));
  for (index_t b = 0; b < s.num_sequences(); ++b)
    for (index_t t = s.seq_offsets[b] + 1; t < s.seq_offsets[b + 1]; ++t) {
      d_row[t - 1] = d_lp[t];
      if (!d_entropy.empty()) d_row_h[t - 1] = d_entropy[t];
    }
  const std::span<const S> ent = d_entropy.empty() ? std::span<const S>{} : std::span<const S>(st.row_entropy);
  if (!st.hidden_path) {
    // token_logprobs_backward writes every element of d_logits: resize, never re-zero.
    st.d_logits.resize(static_cast<std::size_t>(n * st.logits.cols));
    matrix_view<S> d(st.d_logits.data(), n, st.logits.cols);
    token_logprobs_backward(exec::host{}, st.logits, std::span<const index_t>(st.targets),
                            token_logprobs_grads<S>{st.row_lse, ent, d_row, d_row_h}, d,
                            token_logprobs_options{temperature, ignore_target, 1});
    if constexpr (policy_detail::logits_backward<P>) p.backward(matrix_view<const S>(d));
  } else {
    const index_t h = st.hidden.hidden.cols, v = st.hidden.lm_head.rows;
    st.d_hidden.resize(static_cast<std::size_t>(n * h));
    st.d_head.resize(static_cast<std::size_t>(v * h));
    matrix_view<S> dh(st.d_hidden.data(), n, h), dw(st.d_head.data(), v, h);
    fused_linear_logprobs_options o;
    o.temperature = temperature;
    o.ignore_index = ignore_target;
    if (!st.compact) {
      fused_linear_logprobs_backward(exec::host{}, st.hidden.hidden, st.hidden.lm_head,
                                     std::span<const index_t>(st.targets),
                                     token_logprobs_grads<S>{st.row_lse, ent, d_row, d_row_h}, dh, dw, o);
    } else {
      // The forward's needed rows only: d_hidden is 0 on every other row.
      const index_t nr = static_cast<index_t>(st.rows.size());
      std::vector<index_t> tg(static_cast<std::size_t>(nr));
      std::vector<S> lser(tg.size()), dr(tg.size()), entr(ent.empty() ? 0 : tg.size()),
          drh(d_row_h.empty() ? 0 : tg.size()), dhr(static_cast<std::size_t>(nr * h));
      for (index_t i = 0; i < nr; ++i) {
        const auto r = static_cast<std::size_t>(st.rows[static_cast<std::size_t>(i)]);
        const auto k = static_cast<std::size_t>(i);
        tg[k] = st.targets[r];
        lser[k] = st.row_lse[r];
        dr[k] = d_row[r];
        if (!entr.empty()) entr[k] = ent[r];
        if (!drh.empty()) drh[k] = d_row_h[r];
      }
      std::fill(st.d_hidden.begin(), st.d_hidden.end(), S(0));
      if (nr > 0) {
        fused_linear_logprobs_backward(
            exec::host{}, matrix_view<const S>(st.rows_hidden.data(), nr, h), st.hidden.lm_head,
            std::span<const index_t>(tg), token_logprobs_grads<S>{lser, entr, dr, drh},
            matrix_view<S>(dhr.data(), nr, h), dw, o);
      } else {
        std::fill(st.d_head.begin(), st.d_head.end(), S(0));
      }
      for (index_t i = 0; i < nr; ++i)
        for (index_t j = 0; j < h; ++j)
          dh(st.rows[static_cast<std::size_t>(i)], j) = dhr[static_cast<std::size_t>(i * h + j)];
    }
    if constexpr (policy_detail::hidden_backward<P>)
      p.backward(matrix_view<const S>(dh), matrix_view<const S>(dw));
  }
}

}  // namespace pipeline

POSTTRAIN_NAMESPACE_END
