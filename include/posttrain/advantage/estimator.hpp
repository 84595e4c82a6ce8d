#pragma once
// The AdvantageEstimator concept and one policy type per estimator family (namespace
// posttrain::estimator), so that a pipeline step or an algo:: recipe can take the estimator as a
// type: `template <advantage_estimator E> void step(...) { E::compute(exec, in, out, opts); }`.
//
// A model E provides
//   E::name                 const char*, the peers' name (verl adv_estimator where it has one)
//   E::contract             estimator_contract: which inputs it reads (token or outcome rewards,
//                           critic values, groups, behaviour statistics, greedy baselines, lengths)
//                           and whether it produces one advantage per sequence
//   E::options_type         its option struct (the wrapped function's), default-constructible
//   E::defaults             the preset used when no options are passed
//   E::compute(exec, estimator_inputs<T>, estimator_outputs<T>, options)   for T = float, double
// and every model below is checked with static_assert(check_advantage_estimator<E>()).
//
// estimator_inputs<T> (views; unused ones stay empty; N tokens, B sequences, G groups):
//   token_rewards[N]   per-token rewards (score on the last token, in-reward KL folded in)
//   rewards[B]         outcome rewards; if empty, outcome estimators use R_b = Σ_t m_t·r_t of
//                      token_rewards (verl's token_level_rewards.sum(-1))
//   values[N]          critic values (gae)
//   mask[N]            float weights (empty = all ones); seq_offsets[B + 1] (required)
//   group_offsets[G+1] contiguous groups over the B sequences
//   group_ids[B]       or, instead of group_offsets, one group id per sequence in any order
//                      (verl's uid / prompt index): the estimators with one advantage per
//                      sequence (grpo, dr_grpo, rloo, opo, gpg, grpo_passk) group by them
//                      (stable: members keep their order) and write back in the caller's order,
//                      bit for bit group_by_ids + permutation + the call + scatter
//   old_logprobs[N], sum_pi_squared[N], is_weights[N] (optional)     optimal token baseline
//   baselines[B]       greedy-rollout rewards (remax)
//   lengths[B]         response lengths (opo); if empty, Σ_t m_t of the mask
// estimator_outputs<T>:
//   advantages[N]              required: the token advantages the loss reads, 0 where m = 0
//                              (outcome estimators write A_b·m_t, verl's broadcast)
//   returns[N]                 optional (empty = not requested): the estimator's returns (GAE
//                              A + V, REINFORCE++ G, ReMax / OTB reward-to-go); outcome
//                              estimators return the advantages again, as verl does
//   sequence_advantages[B]     optional, outcome estimators only (contract.sequence_output): A_b
// Every output is checked before anything is written; then the wrapped function validates its
// own arguments (sizes, offsets, options) before it writes. Host memory (exec::host) for every
// model today; the wrapped functions carry their own exec dispatch.
//
// Models (options type, default preset):
//   gae                         gae_options, gae_conventions::verl
//   grpo                        group_options, group_conventions::verl (every peer convention is
//                               an options preset: trl, trl_batch, openrlhf, open_instruct_*, ...)
//   dr_grpo                     group_options, group_conventions::dr_grpo
//   rloo                        rloo_options, rloo_conventions::verl
//   reinforce_pp                reinforce_pp_options, reinforce_pp_conventions::verl
//   reinforce_pp_baseline       reinforce_pp_baseline_options,
//   reinforce_pp_conventions::verl_baseline remax                       remax_options (none), {}
//   opo                         opo_options (none), {}
//   gpg                         gpg_options, {}
//   grpo_passk                  passk_options, {}
//   optimal_token_baseline      otb_options, otb_conventions::verl
//   tir_optimal_token_baseline  otb_options, otb_conventions::verl_tir
// (GDPO, advantage/gdpo.hpp, takes a [B, K] reward matrix and is not a model of this concept.)
#include <algorithm>
#include <concepts>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "posttrain/advantage/common.hpp"
#include "posttrain/advantage/gae.hpp"
#include "posttrain/advantage/gpg.hpp"
#include "posttrain/advantage/group.hpp"
#include "posttrain/advantage/opo.hpp"
#include "posttrain/advantage/optimal_baseline.hpp"
#include "posttrain/advantage/reinforce.hpp"
#include "posttrain/advantage/rloo.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/ragged.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/ops/reductions.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace advantage {

enum class reward_level {
  token,    // reads token_rewards[N]
  outcome,  // reads rewards[B] (or the masked sums of token_rewards)
};

struct estimator_contract {
  reward_level rewards = reward_level::outcome;
  bool values = false;           // critic values[N]
  bool groups = false;           // group_offsets
  bool behaviour_stats = false;  // old_logprobs[N], sum_pi_squared[N] (is_weights optional)
  bool baselines = false;        // baselines[B]
  bool lengths = false;          // lengths[B] (or from the mask)
  bool sequence_output = false;  // one advantage per sequence, broadcast to the tokens
};

template <class T>
struct estimator_inputs {
  std::span<const T> token_rewards{};
  std::span<const T> rewards{};
  std::span<const T> values{};
  std::span<const float> mask{};
  std::span<const index_t> seq_offsets{};
  std::span<const index_t> group_offsets{};
  std::span<const T> old_logprobs{};
  std::span<const T> sum_pi_squared{};
  std::span<const T> is_weights{};
  std::span<const T> baselines{};
  std::span<const double> lengths{};
  std::span<const index_t> group_ids{};
};

template <class T>
struct estimator_outputs {
  std::span<T> advantages{};
  std::span<T> returns{};
  std::span<T> sequence_advantages{};
};

// Estimators without options.
struct remax_options {};
struct opo_options {};

namespace detail {

// Checks the outputs and the presence of the inputs the contract names (the wrapped function
// checks their sizes); the mask weights are checked here so that no later step can fail after a
// write.
template <class T>
void validate_estimator_io(const estimator_contract& c, const estimator_inputs<T>& in,
                           const estimator_outputs<T>& out, std::string_view where) {
  expect(!in.seq_offsets.empty(), where,
         "inputs.seq_offsets is empty, expected B + 1 >= 1 offsets (every estimator writes token "
         "advantages)");
  expect_offsets(in.seq_offsets, in.seq_offsets.back(), where, "inputs.seq_offsets");
  const index_t n = in.seq_offsets.back(), b = ssize(in.seq_offsets) - 1;
  expect_size(out.advantages, n, where, "outputs.advantages", "one per token (seq_offsets.back())");
  expect_size_or_empty(out.returns, n, where, "outputs.returns",
                       "one per token, or empty (not requested)");
  expect(out.returns.empty() || n == 0 || out.returns.data() != out.advantages.data(), where,
         "outputs.returns and outputs.advantages are the same buffer, expected distinct outputs");
  if (c.sequence_output)
    expect_size_or_empty(out.sequence_advantages, b, where, "outputs.sequence_advantages",
                         "one per sequence, or empty (not requested)");
  else
    expect(out.sequence_advantages.empty(), where,
           "outputs.sequence_advantages is set, but this estimator has token-level advantages "
           "only (leave it empty)");
  expect_size_or_empty(in.mask, n, where, "inputs.mask", "one weight per token");
  check_mask(in.mask, where);
  if (c.rewards == reward_level::token)
    expect(n == 0 || !in.token_rewards.empty(), where,
           "inputs.token_rewards is empty, expected one reward per token");
  else
    expect(b == 0 || !in.rewards.empty() || !in.token_rewards.empty(), where,
           "inputs.rewards and inputs.token_rewards are both empty, expected outcome rewards[B] "
           "(or token rewards to sum per sequence)");
  if (c.values)
    expect(n == 0 || !in.values.empty(), where,
           "inputs.values is empty, expected critic values[N]");
  if (c.groups) {
    expect(in.group_offsets.empty() || in.group_ids.empty(), where,
           "inputs.group_offsets and inputs.group_ids are both set, expected one of them");
    if (in.group_offsets.empty() && !in.group_ids.empty()) {
      expect(c.sequence_output, where,
             "inputs.group_ids is given, but this estimator writes token-level advantages: pass "
             "contiguous inputs.group_offsets (core/ragged.hpp group_by_ids and a permutation)");
      expect_size(in.group_ids, b, where, "inputs.group_ids", "one group id per sequence");
    } else {
      expect(!in.group_offsets.empty(), where,
             "inputs.group_offsets is empty, expected G + 1 group offsets over the sequences (or "
             "inputs.group_ids, one id per sequence)");
    }
  } else {
    expect(in.group_ids.empty(), where,
           "inputs.group_ids is set, but this estimator does not use groups (leave it empty)");
  }
  if (c.behaviour_stats)
    expect(n == 0 || (!in.old_logprobs.empty() && !in.sum_pi_squared.empty()), where,
           "inputs.old_logprobs / inputs.sum_pi_squared are empty, expected one per token");
  if (c.baselines)
    expect(b == 0 || !in.baselines.empty(), where,
           "inputs.baselines is empty, expected one greedy-rollout reward per sequence");
}

// R[B]: inputs.rewards, or Σ_t m_t·r_t of inputs.token_rewards.
template <class Exec, class T>
std::vector<T> outcome_rewards(Exec exec, const estimator_inputs<T>& in, std::string_view where) {
  const index_t b = ssize(in.seq_offsets) - 1;
  if (!in.rewards.empty()) {
    expect_size(in.rewards, b, where, "inputs.rewards", "one outcome reward per sequence");
    return std::vector<T>(in.rewards.begin(), in.rewards.end());
  }
  std::vector<T> r(static_cast<std::size_t>(b));
  if (b > 0) sequence_rewards(exec, in.token_rewards, in.mask, in.seq_offsets, std::span<T>(r));
  return r;
}

// Bytes of run_outcome's own scratch on the host (R[B], A[B], the lengths when computed, the
// per-sequence moments when R is summed from token rewards, and with inputs.group_ids the grouping:
// order, offsets, group of each sequence, its hash table, R / A / lengths in grouped order),
// before the wrapped function's.
template <class T>
workspace_size outcome_workspace_size(const estimator_contract& c, const estimator_inputs<T>& in) {
  const std::size_t b = in.seq_offsets.empty() ? 0 : in.seq_offsets.size() - 1;
  workspace_size size;
  size.add<T>(b);
  size.add<T>(b);
  if (c.lengths && in.lengths.empty()) size.add<double>(b);
  if (in.rewards.empty()) size.add<masked_stats>(b);
  if (c.groups && in.group_offsets.empty() && !in.group_ids.empty()) {
    size.add<index_t>(b);      // order
    size.add<index_t>(b + 1);  // group offsets
    size.add<index_t>(b);      // group of each sequence
    size.add<std::byte>(group_by_ids_workspace_bytes(static_cast<index_t>(b)));
    size.add<T>(b);  // R in grouped order
    size.add<T>(b);  // A in grouped order
    size.add<double>(c.lengths ? b : 0);
  }
  return size;
}

// R[B] into r: inputs.rewards, or Σ_t m_t·r_t of inputs.token_rewards (sequence_rewards'
// workspace form, with the moments in `sums`[B], a piece taken from a workspace).
template <class T>
void outcome_rewards_into(exec::host exec, const estimator_inputs<T>& in, std::span<T> r,
                          std::span<masked_stats> sums, std::string_view where) {
  const index_t b = ssize(in.seq_offsets) - 1;
  if (!in.rewards.empty()) {
    expect_size(in.rewards, b, where, "inputs.rewards", "one outcome reward per sequence");
    std::copy(in.rewards.begin(), in.rewards.end(), r.begin());
  } else if (b > 0) {
    // sums was taken whole pieces at a time: its rounded size is the caller's.
    sequence_rewards(exec, in.token_rewards, in.mask, in.seq_offsets, r,
                     workspace(sums.data(), ::posttrain::detail::workspace_round_up(
                                                sums.size_bytes())));
  }
}

// run_outcome on the host with caller scratch: R, A (and the lengths, and the grouping by
// inputs.group_ids) come from ws, and fn gets the rest of ws for the wrapped function; bit for bit
// the allocating form, no allocation.
template <class T, class Fn>
void run_outcome(exec::host exec, const estimator_contract& c, const estimator_inputs<T>& in,
                 const estimator_outputs<T>& out, std::string_view where, workspace ws, Fn&& fn) {
  validate_estimator_io(c, in, out, where);
  const index_t b = ssize(in.seq_offsets) - 1;
  const std::size_t nb = static_cast<std::size_t>(b);
  const std::span<T> r = ws.take<T>(nb, where);
  const std::span<T> a = ws.take<T>(nb, where);
  const std::span<double> computed =
      ws.take<double>(c.lengths && in.lengths.empty() ? nb : 0, where);
  const std::span<masked_stats> sums = ws.take<masked_stats>(in.rewards.empty() ? nb : 0, where);
  const bool by_ids = c.groups && in.group_offsets.empty() && !in.group_ids.empty();
  const std::size_t ng = by_ids ? nb : 0;
  const std::span<index_t> order = ws.take<index_t>(ng, where);
  const std::span<index_t> offsets = ws.take<index_t>(by_ids ? nb + 1 : 0, where);
  const std::span<index_t> group_of = ws.take<index_t>(ng, where);
  const std::span<std::byte> table =
      ws.take<std::byte>(by_ids ? group_by_ids_workspace_bytes(b) : 0, where);
  const std::span<T> rg = ws.take<T>(ng, where);
  const std::span<T> ag = ws.take<T>(ng, where);
  const std::span<double> lg = ws.take<double>(by_ids && c.lengths ? nb : 0, where);
  outcome_rewards_into(exec, in, r, sums, where);
  std::span<const double> lengths = in.lengths;
  if (c.lengths && lengths.empty()) {
    sequence_lengths(exec, in.mask, in.seq_offsets, computed);
    lengths = computed;
  }
  if (!by_ids) {
    fn(std::span<const T>(r), a, in.group_offsets, lengths, ws);
  } else {
    if (c.lengths)
      expect_size(lengths, ssize(r), where, "inputs.lengths", "one length per sequence");
    const index_t groups =
        group_by_ids(in.group_ids, order, offsets, group_of, workspace(table.data(), table.size()));
    for (std::size_t k = 0; k < nb; ++k) {
      const auto i = static_cast<std::size_t>(order[k]);
      rg[k] = r[i];
      if (c.lengths) lg[k] = lengths[i];
    }
    fn(std::span<const T>(rg), ag,
       std::span<const index_t>(offsets.first(static_cast<std::size_t>(groups) + 1)),
       std::span<const double>(lg), ws);
    for (std::size_t k = 0; k < nb; ++k) a[static_cast<std::size_t>(order[k])] = ag[k];
  }
  if (!out.sequence_advantages.empty()) std::copy(a.begin(), a.end(), out.sequence_advantages.begin());
  broadcast_to_tokens(exec, std::span<const T>(a), in.seq_offsets, in.mask, out.advantages);
  if (!out.returns.empty())
    std::copy(out.advantages.begin(), out.advantages.end(), out.returns.begin());
}

// The common body of the outcome models: fn(R, A, groups, lengths) computes A[B] over
// contiguous groups (validating first). With inputs.group_ids instead of group_offsets, R (and
// the lengths) are taken into grouped order (group_by_ids: stable), fn runs there, and A is
// scattered back: the same arithmetic on the same values, so bit for bit the contiguous call.
// This form allocates its scratch (R, A, lengths) for the call; the workspace form is above.
template <class Exec, class T, class Fn>
void run_outcome(Exec, const estimator_contract& c, const estimator_inputs<T>& in,
                 const estimator_outputs<T>& out, std::string_view where, Fn&& fn) {
  static_assert(detail::on_host_v<Exec>,
                "the outcome estimators run on the host (exec::host) today");
  workspace_buffer buffer;
  run_outcome(exec::host{}, c, in, out, where, buffer.view(outcome_workspace_size(c, in)),
              [&](std::span<const T> r, std::span<T> a, std::span<const index_t> groups,
                  std::span<const double> lengths, workspace) { fn(r, a, groups, lengths); });
}

}  // namespace detail

}  // namespace advantage

// ---------------------------------------------------------------------------------------------
// The concept.

template <class E>
concept advantage_estimator = requires {
  { E::name } -> std::convertible_to<const char*>;
  { E::contract } -> std::convertible_to<advantage::estimator_contract>;
  typename E::options_type;
  { E::defaults } -> std::convertible_to<typename E::options_type>;
}
&&std::default_initializable<typename E::options_type>&& requires(
    const advantage::estimator_inputs<float>& fi, const advantage::estimator_outputs<float>& fo,
    const advantage::estimator_inputs<double>& di, const advantage::estimator_outputs<double>& dout,
    const typename E::options_type& o) {
  E::compute(exec::host{}, fi, fo, o);
  E::compute(exec::host{}, di, dout, o);
};

template <class E>
constexpr bool check_advantage_estimator() {
  static_assert(advantage_estimator<E>,
                "an advantage estimator needs a static `name` (const char*), a static `contract` "
                "(advantage::estimator_contract), a default-constructible `options_type` with a "
                "static `defaults` preset, and a static compute(exec, estimator_inputs<T>, "
                "estimator_outputs<T>, options_type) for T = float and double");
  return advantage_estimator<E>;
}

// E::compute with E's default preset, for generic code.
template <advantage_estimator E, execution_tag Exec, class T>
void compute_advantages(Exec exec, const advantage::estimator_inputs<T>& in,
                        const advantage::estimator_outputs<T>& out,
                        const typename E::options_type& options = E::defaults) {
  E::compute(exec, in, out, options);
}

// ---------------------------------------------------------------------------------------------
// The models.

namespace estimator {

using advantage::estimator_contract;
using advantage::estimator_inputs;
using advantage::estimator_outputs;
using advantage::reward_level;

namespace detail {
// The advantage function of each group outcome estimator, Fn{}(exec, R, groups, A, options[, ws]),
// and Fn::workspace_bytes(exec::host, B, G, options), the size of its workspace form.
struct group_fn {
  void operator()(auto&&... a) const { advantage::group_advantages(a...); }
  static std::size_t workspace_bytes(exec::host e, index_t b, index_t g,
                                     const advantage::group_options& o) {
    return advantage::group_advantages_workspace_bytes(e, b, g, o);
  }
};
struct rloo_fn {
  void operator()(auto&&... a) const { advantage::rloo_advantages(a...); }
  static std::size_t workspace_bytes(exec::host e, index_t b, index_t g,
                                     const advantage::rloo_options& o) {
    return advantage::rloo_advantages_workspace_bytes(e, b, g, o);
  }
};
struct gpg_fn {
  void operator()(auto&&... a) const { advantage::gpg_advantages(a...); }
  static std::size_t workspace_bytes(exec::host e, index_t b, index_t g,
                                     const advantage::gpg_options& o) {
    return advantage::gpg_advantages_workspace_bytes(e, b, g, o);
  }
};
struct passk_fn {
  void operator()(auto&&... a) const { advantage::passk_advantages(a...); }
  static std::size_t workspace_bytes(exec::host e, index_t b, index_t g,
                                     const advantage::passk_options& o) {
    return advantage::passk_advantages_workspace_bytes(e, b, g, o);
  }
};
}  // namespace detail

// The group outcome estimators (one advantage per sequence from the rewards of its group:
// grpo, rloo, gpg, grpo_passk) share everything but their name, options and advantage function
// Fn (a function object: Fn{}(exec, R[B], group_offsets, A[B], options[, ws]) and
// Fn::workspace_bytes). Contiguous groups or group_ids (advantage::detail::run_outcome).
template <std::size_t N>
struct estimator_name {
  char text[N]{};
  constexpr estimator_name(const char (&s)[N]) {  // NOLINT: implicit from a string literal
    for (std::size_t i = 0; i < N; ++i) text[i] = s[i];
  }
};

// "estimator::" + name at compile time: error messages without building a std::string (which
// would allocate in a workspace call for names past the small-string buffer).
template <std::size_t N>
struct qualified_estimator_name {
  char text[N + 11]{};
  constexpr explicit qualified_estimator_name(const char (&s)[N]) {
    constexpr char prefix[] = "estimator::";
    for (std::size_t i = 0; i < 11; ++i) text[i] = prefix[i];
    for (std::size_t i = 0; i < N; ++i) text[11 + i] = s[i];
  }
};

template <estimator_name Name, class Options, Options Defaults, class Fn>
struct group_outcome {
  static constexpr const char* name = Name.text;
  static constexpr qualified_estimator_name<sizeof(Name.text)> qualified{Name.text};
  static constexpr estimator_contract contract{
      .rewards = reward_level::outcome, .groups = true, .sequence_output = true};
  using options_type = Options;
  static constexpr options_type defaults = Defaults;

  template <execution_tag Exec, class T>
  static void compute(Exec exec, const estimator_inputs<T>& in, const estimator_outputs<T>& out,
                      const options_type& o = defaults) {
    advantage::detail::run_outcome(
        exec, contract, in, out, std::string_view(qualified.text),
        [&](std::span<const T> r, std::span<T> a, std::span<const index_t> groups, auto) {
          Fn{}(exec, r, groups, a, o);
        });
  }

  // Bytes of the workspace compute(exec::host, in, out, o, ws) needs for these inputs (the
  // outcome scratch of run_outcome and the advantage function's, Fn::workspace_bytes; with
  // group_ids G is bounded by B).
  template <class T>
  static std::size_t workspace_bytes(exec::host exec, const estimator_inputs<T>& in,
                                     const options_type& o = defaults) {
    const index_t b = in.seq_offsets.empty() ? 0 : ssize(in.seq_offsets) - 1;
    const index_t g = in.group_offsets.empty() ? b : ssize(in.group_offsets) - 1;
    return advantage::detail::outcome_workspace_size(contract, in) +
           Fn::workspace_bytes(exec, b, g, o);
  }

  // Caller scratch (workspace_bytes(exec, in, o) bytes): no allocation, with group_offsets or
  // group_ids; bit for bit the allocating form.
  template <class T>
  static void compute(exec::host exec, const estimator_inputs<T>& in,
                      const estimator_outputs<T>& out, const options_type& o, workspace ws) {
    advantage::detail::run_outcome(
        exec, contract, in, out, std::string_view(qualified.text), ws,
        [&](std::span<const T> r, std::span<T> a, std::span<const index_t> groups, auto,
            workspace rest) { Fn{}(exec, r, groups, a, o, rest); });
  }
};

// The token-level models (gae, reinforce_pp, remax, optimal_token_baseline) share everything but
// their name, the name their errors carry, the contract, the options and the call:
// Call{}(exec, in, out, options) after validate_estimator_io, and where the call has a workspace
// form, Call::workspace_bytes(exec::host, in, options) and Call{}(exec::host, in, out, options, ws).
template <estimator_name Name, estimator_name Where, estimator_contract Contract, class Options,
          Options Defaults, class Call>
struct token_level {
  static constexpr const char* name = Name.text;
  static constexpr estimator_contract contract = Contract;
  using options_type = Options;
  static constexpr options_type defaults = Defaults;

  template <execution_tag Exec, class T>
  static void compute(Exec exec, const estimator_inputs<T>& in, const estimator_outputs<T>& out,
                      const options_type& o = defaults) {
    advantage::detail::validate_estimator_io(contract, in, out, std::string_view(Where.text));
    Call{}(exec, in, out, o);
  }

  template <class T>
    requires(Call::has_workspace)
  static std::size_t workspace_bytes(exec::host exec, const estimator_inputs<T>& in,
                                     const options_type& o = defaults) {
    return Call::workspace_bytes(exec, in, o);
  }
  template <class T>
    requires(Call::has_workspace)
  static void compute(exec::host exec, const estimator_inputs<T>& in,
                      const estimator_outputs<T>& out, const options_type& o, workspace ws) {
    advantage::detail::validate_estimator_io(contract, in, out, std::string_view(Where.text));
    Call{}(exec, in, out, o, ws);
  }
};

// A model that is another with a different name and default preset (dr_grpo of grpo, the
// multi-turn OTB of OTB): the same computation, forms and workspace.
template <class Base, estimator_name Name, typename Base::options_type Defaults>
struct preset : Base {
  static constexpr const char* name = Name.text;
  static constexpr typename Base::options_type defaults = Defaults;

  template <execution_tag Exec, class T>
  static void compute(Exec exec, const estimator_inputs<T>& in, const estimator_outputs<T>& out,
                      const typename Base::options_type& o = defaults) {
    Base::compute(exec, in, out, o);
  }
  template <class T>
    requires requires(const estimator_inputs<T>& in) { Base::workspace_bytes(exec::host{}, in); }
  static void compute(exec::host exec, const estimator_inputs<T>& in,
                      const estimator_outputs<T>& out, const typename Base::options_type& o,
                      workspace ws) {
    Base::compute(exec, in, out, o, ws);
  }
  template <class T>
    requires requires(const estimator_inputs<T>& in) { Base::workspace_bytes(exec::host{}, in); }
  static std::size_t workspace_bytes(exec::host exec, const estimator_inputs<T>& in,
                                     const typename Base::options_type& o = defaults) {
    return Base::workspace_bytes(exec, in, o);
  }
};

namespace detail {
// The calls of the token-level models.
struct gae_call {
  static constexpr bool has_workspace = true;
  template <class T>
  static std::size_t workspace_bytes(exec::host exec, const estimator_inputs<T>& in,
                                     const advantage::gae_options& o) {
    return advantage::gae_workspace_bytes(exec, in.seq_offsets, o);  // the whitening's
  }
  template <class Exec, class T, class... Ws>
  void operator()(Exec exec, const estimator_inputs<T>& in, const estimator_outputs<T>& out,
                  const advantage::gae_options& o, Ws... ws) const {
    advantage::gae(exec, in.token_rewards, in.values, in.mask, in.seq_offsets, out.advantages,
                   out.returns, o, ws...);
  }
};
struct reinforce_pp_call {
  static constexpr bool has_workspace = true;
  template <class T>
  static std::size_t workspace_bytes(exec::host exec, const estimator_inputs<T>& in,
                                     const advantage::reinforce_pp_options& o) {
    return advantage::reinforce_plus_plus_workspace_bytes(exec, in.seq_offsets, o);
  }
  template <class Exec, class T, class... Ws>
  void operator()(Exec exec, const estimator_inputs<T>& in, const estimator_outputs<T>& out,
                  const advantage::reinforce_pp_options& o, Ws... ws) const {
    advantage::reinforce_plus_plus(exec, in.token_rewards, in.mask, in.seq_offsets,
                                   out.advantages, out.returns, o, ws...);
  }
};
struct remax_call {  // one scan, no scratch: the workspace form is the call itself (0 bytes)
  static constexpr bool has_workspace = true;
  template <class T>
  static std::size_t workspace_bytes(exec::host, const estimator_inputs<T>&,
                                     const advantage::remax_options&) {
    return 0;
  }
  template <class Exec, class T, class... Ws>
  void operator()(Exec exec, const estimator_inputs<T>& in, const estimator_outputs<T>& out,
                  const advantage::remax_options&, Ws...) const {
    advantage::remax(exec, in.token_rewards, in.baselines, in.mask, in.seq_offsets,
                     out.advantages, out.returns);
  }
};
struct otb_call {
  static constexpr bool has_workspace = true;
  template <class T>
  static std::size_t workspace_bytes(exec::host exec, const estimator_inputs<T>& in,
                                     const advantage::otb_options& o) {
    return advantage::optimal_token_baseline_workspace_bytes(exec, in.seq_offsets, o);
  }
  template <class Exec, class T, class... Ws>
  void operator()(Exec exec, const estimator_inputs<T>& in, const estimator_outputs<T>& out,
                  const advantage::otb_options& o, Ws... ws) const {
    advantage::optimal_token_baseline(exec, in.token_rewards, in.old_logprobs, in.sum_pi_squared,
                                      in.is_weights, in.mask, in.seq_offsets, in.group_offsets,
                                      out.advantages, out.returns, o, ws...);
  }
};
}  // namespace detail

// GAE (Schulman et al. 2016; verl `gae`, TRL PPO, OpenRLHF, open-instruct).
struct gae : token_level<"gae", "estimator::gae",
                         estimator_contract{.rewards = reward_level::token, .values = true},
                         advantage::gae_options, advantage::gae_conventions::verl,
                         detail::gae_call> {};

// GRPO (Shao et al. 2024) with any std / ε / singleton convention (verl `grpo`).
struct grpo : group_outcome<"grpo", advantage::group_options, advantage::group_conventions::verl,
                            detail::group_fn> {};

// Dr. GRPO (Liu et al. 2025): R − μ_g (verl norm_adv_by_std_in_grpo = False).
struct dr_grpo : preset<grpo, "dr_grpo", advantage::group_conventions::dr_grpo> {};

// RLOO (Kool et al. 2019; Ahmadian et al. 2024; verl `rloo`, TRL, OpenRLHF).
struct rloo : group_outcome<"rloo", advantage::rloo_options, advantage::rloo_conventions::verl,
                            detail::rloo_fn> {};

// REINFORCE++ (Hu 2025; verl `reinforce_plus_plus`, OpenRLHF `reinforce`).
struct reinforce_pp
    : token_level<"reinforce_plus_plus", "estimator::reinforce_pp",
                  estimator_contract{.rewards = reward_level::token},
                  advantage::reinforce_pp_options, advantage::reinforce_pp_conventions::verl,
                  detail::reinforce_pp_call> {};

// REINFORCE++-baseline (verl `reinforce_plus_plus_baseline`, OpenRLHF `reinforce_baseline`):
// token-level (whitened over the batch), so no sequence output; returns = advantages (verl).
struct reinforce_pp_baseline {
  static constexpr const char* name = "reinforce_plus_plus_baseline";
  static constexpr estimator_contract contract{.rewards = reward_level::outcome, .groups = true};
  using options_type = advantage::reinforce_pp_baseline_options;
  static constexpr options_type defaults = advantage::reinforce_pp_conventions::verl_baseline;

  template <execution_tag Exec, class T>
  static void compute(Exec exec, const estimator_inputs<T>& in, const estimator_outputs<T>& out,
                      const options_type& o = defaults) {
    constexpr std::string_view where = "estimator::reinforce_pp_baseline";
    advantage::detail::validate_estimator_io(contract, in, out, where);
    const std::vector<T> r = advantage::detail::outcome_rewards(exec, in, where);
    advantage::reinforce_plus_plus_baseline(exec, std::span<const T>(r), in.group_offsets, in.mask,
                                            in.seq_offsets, out.advantages, o);
    if (!out.returns.empty())
      std::copy(out.advantages.begin(), out.advantages.end(), out.returns.begin());
  }

  // R[B] (and the per-sequence moments when R is summed from token rewards) and
  // advantage::reinforce_plus_plus_baseline's scratch: no allocation.
  template <class T>
  static std::size_t workspace_bytes(exec::host exec, const estimator_inputs<T>& in,
                                     const options_type& o = defaults) {
    const std::size_t b = in.seq_offsets.empty() ? 0 : in.seq_offsets.size() - 1;
    const index_t g = in.group_offsets.empty() ? 0 : ssize(in.group_offsets) - 1;
    workspace_size own;
    own.add<T>(b);
    own.add<masked_stats>(in.rewards.empty() ? b : 0);
    return own +
           advantage::reinforce_plus_plus_baseline_workspace_bytes<T>(exec, in.seq_offsets, g, o);
  }
  template <class T>
  static void compute(exec::host exec, const estimator_inputs<T>& in,
                      const estimator_outputs<T>& out, const options_type& o, workspace ws) {
    constexpr std::string_view where = "estimator::reinforce_pp_baseline";
    advantage::detail::validate_estimator_io(contract, in, out, where);
    const std::size_t b = in.seq_offsets.size() - 1;
    const std::span<T> r = ws.take<T>(b, where);
    const std::span<masked_stats> sums = ws.take<masked_stats>(in.rewards.empty() ? b : 0, where);
    advantage::detail::outcome_rewards_into(exec, in, r, sums, where);
    advantage::reinforce_plus_plus_baseline(exec, std::span<const T>(r), in.group_offsets, in.mask,
                                            in.seq_offsets, out.advantages, o, ws);
    if (!out.returns.empty())
      std::copy(out.advantages.begin(), out.advantages.end(), out.returns.begin());
  }
};

// ReMax (Li et al. 2023; verl `remax`): reverse cumsum minus the greedy rollout's reward.
struct remax : token_level<"remax", "estimator::remax",
                           estimator_contract{.rewards = reward_level::token, .baselines = true},
                           advantage::remax_options, advantage::remax_options{},
                           detail::remax_call> {};

// OPO (verl `opo`): length-weighted group baseline.
struct opo {
  static constexpr const char* name = "opo";
  static constexpr estimator_contract contract{
      .rewards = reward_level::outcome, .groups = true, .lengths = true, .sequence_output = true};
  using options_type = advantage::opo_options;
  static constexpr options_type defaults{};

  template <execution_tag Exec, class T>
  static void compute(Exec exec, const estimator_inputs<T>& in, const estimator_outputs<T>& out,
                      const options_type& = defaults) {
    advantage::detail::run_outcome(
        exec, contract, in, out, "estimator::opo",
        [&](std::span<const T> r, std::span<T> a, std::span<const index_t> groups,
            std::span<const double> lengths) {
          advantage::opo_advantages(exec, r, lengths, groups, a);
        });
  }

  // run_outcome's scratch (R, A, the lengths when computed, the grouping by ids) and one baseline
  // per group: no allocation.
  template <class T>
  static std::size_t workspace_bytes(exec::host exec, const estimator_inputs<T>& in,
                                     const options_type& = defaults) {
    const index_t b = in.seq_offsets.empty() ? 0 : ssize(in.seq_offsets) - 1;
    const index_t g = in.group_offsets.empty() ? b : ssize(in.group_offsets) - 1;
    return advantage::detail::outcome_workspace_size(contract, in) +
           advantage::opo_advantages_workspace_bytes(exec, b, g);
  }
  template <class T>
  static void compute(exec::host exec, const estimator_inputs<T>& in,
                      const estimator_outputs<T>& out, const options_type&, workspace ws) {
    advantage::detail::run_outcome(
        exec, contract, in, out, "estimator::opo", ws,
        [&](std::span<const T> r, std::span<T> a, std::span<const index_t> groups,
            std::span<const double> lengths, workspace rest) {
          advantage::opo_advantages(exec, r, lengths, groups, a, rest);
        });
  }
};

// GPG (Chu et al. 2025; verl `gpg`).
struct gpg
    : group_outcome<"gpg", advantage::gpg_options, advantage::gpg_options{}, detail::gpg_fn> {};

// GRPO pass@k (verl `grpo_passk`).
struct grpo_passk : group_outcome<"grpo_passk", advantage::passk_options,
                                  advantage::passk_options{}, detail::passk_fn> {};

// Optimal token baseline (verl `optimal_token_baseline`).
struct optimal_token_baseline
    : token_level<"optimal_token_baseline", "estimator::optimal_token_baseline",
                  estimator_contract{
                      .rewards = reward_level::token, .groups = true, .behaviour_stats = true},
                  advantage::otb_options, advantage::otb_conventions::verl, detail::otb_call> {};

// Multi-turn optimal token baseline (verl `tir_optimal_token_baseline`).
struct tir_optimal_token_baseline : preset<optimal_token_baseline, "tir_optimal_token_baseline",
                                           advantage::otb_conventions::verl_tir> {};

}  // namespace estimator

static_assert(check_advantage_estimator<estimator::gae>());
static_assert(check_advantage_estimator<estimator::grpo>());
static_assert(check_advantage_estimator<estimator::dr_grpo>());
static_assert(check_advantage_estimator<estimator::rloo>());
static_assert(check_advantage_estimator<estimator::reinforce_pp>());
static_assert(check_advantage_estimator<estimator::reinforce_pp_baseline>());
static_assert(check_advantage_estimator<estimator::remax>());
static_assert(check_advantage_estimator<estimator::opo>());
static_assert(check_advantage_estimator<estimator::gpg>());
static_assert(check_advantage_estimator<estimator::grpo_passk>());
static_assert(check_advantage_estimator<estimator::optimal_token_baseline>());
static_assert(check_advantage_estimator<estimator::tir_optimal_token_baseline>());

POSTTRAIN_NAMESPACE_END
