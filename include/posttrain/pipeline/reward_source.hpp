#pragma once
// The RewardSource concept: a batch of (prompt, completion, example metadata) → one reward per
// sample.
//
//   r.score(const reward_query&, std::span<double> rewards)    rewards[B], B = samples
//
// reward_query: prompts[B] and completions[B] (packed token_sequences, sample b's prompt is
// prompts' sequence b), examples[B] (example_info: id, ground_truth, verifier name; may be empty).
// The steps check every reward is finite (a NaN reward is a posttrain::error before any update).
//
// Models (namespace pipeline::reward):
//   precomputed                rewards looked up by example_info::id (offline data, a cache)
//   callable<F>                F(prompt tokens, completion tokens, const example_info&) -> double
//   text<Tokenizer, F>         decodes both with a Tokenizer (pipeline/tokenizer.hpp), then
//                              F(std::string_view prompt, std::string_view completion,
//                                const example_info&) -> double: the shape of a verifier
//                              (e.g. a gsm8k answer match against example_info::ground_truth)
//   weighted<Sources...>       Σ_k w_k·r_k (several verifiers, format + correctness, ...)
//   gated<Gate, Source>        R = Source when Gate's score >= threshold, else `otherwise` (e.g. a
//                              format check gating the correctness reward, R1-style)
//   verifiers<Tokenizer, V...> open-instruct's dispatch by name: sample b is scored by the V whose
//                              static name() equals example_info::verifier (the RLVR row's
//                              "dataset"), as weight·v.score(decoded completion, ground_truth)
//                              (weight = v.weight when V has one, else 1). Any type with those two
//                              members works: the reward/ verifiers (gsm8k_verifier,
//                              math_verifier, ifeval_verifier, ...) or your own. An example naming
//                              no listed verifier is an error before any reward is written.
//
// static_assert(check_reward_source<R>()) names a missing member
// (tests/compile_fail/pipeline_reward_source.cpp).
#include <array>
#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/pipeline/types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pipeline {

struct reward_query {
  token_sequences prompts{};
  token_sequences completions{};
  std::span<const example_info> examples{};  // [B] or empty

  index_t num_samples() const { return completions.num_sequences(); }
  std::span<const index_t> prompt(index_t b) const {
    return prompts.tokens.subspan(prompts.seq_offsets[b],
                                  prompts.seq_offsets[b + 1] - prompts.seq_offsets[b]);
  }
  std::span<const index_t> completion(index_t b) const {
    return completions.tokens.subspan(completions.seq_offsets[b],
                                      completions.seq_offsets[b + 1] - completions.seq_offsets[b]);
  }
  const example_info& example(index_t b) const {
    static const example_info empty{};
    return examples.empty() ? empty : examples[b];
  }
  void validate(std::string_view where) const {
    prompts.validate(where, "query.prompts");
    completions.validate(where, "query.completions");
    expect(prompts.num_sequences() == completions.num_sequences(), where, "query.prompts has ",
           prompts.num_sequences(), " sequences, query.completions ", completions.num_sequences(),
           ", expected one prompt per sample");
    expect_size_or_empty(examples, completions.num_sequences(), where, "query.examples",
                         "one per sample, or empty");
  }
};

template <class R>
concept reward_source = requires(R& r, const reward_query& q, std::span<double> out) {
  r.score(q, out);
};

template <class R>
constexpr bool check_reward_source() {
  static_assert(reward_source<R>,
                "a reward source needs `score(const pipeline::reward_query&, std::span<double> "
                "rewards)` writing one reward per sample");
  return reward_source<R>;
}

// Checks a source's output: every reward finite.
inline void expect_finite_rewards(std::span<const double> rewards, std::string_view where) {
  for (std::size_t b = 0; b < rewards.size(); ++b)
    expect(std::isfinite(rewards[b]), where, "the reward source returned rewards[", b,
           "] = ", rewards[b], ", expected a finite reward");
}

namespace reward {

class precomputed {
 public:
  precomputed() = default;
  void set(std::uint64_t id, double r) { table_[id] = r; }
  void score(const reward_query& q, std::span<double> out) const {
    constexpr const char* where = "reward::precomputed::score";
    expect_size(out, q.num_samples(), where, "rewards", "one per sample");
    expect(ssize(q.examples) == q.num_samples(), where,
           "query.examples is empty, expected one example_info per sample (the id is the key)");
    for (index_t b = 0; b < q.num_samples(); ++b)
      expect(table_.count(q.examples[b].id) == 1, where, "no reward for example id ",
             q.examples[b].id, " (sample ", b, ")");
    for (index_t b = 0; b < q.num_samples(); ++b) out[b] = table_.at(q.examples[b].id);
  }

 private:
  std::unordered_map<std::uint64_t, double> table_;
};

template <class F>
struct callable {
  F fn;
  void score(const reward_query& q, std::span<double> out) {
    expect_size(out, q.num_samples(), "reward::callable::score", "rewards", "one per sample");
    for (index_t b = 0; b < q.num_samples(); ++b)
      out[b] = static_cast<double>(fn(q.prompt(b), q.completion(b), q.example(b)));
  }
};
template <class F>
callable(F) -> callable<F>;

template <class Tokenizer, class F>
struct text {
  Tokenizer tokenizer;
  F fn;
  void score(const reward_query& q, std::span<double> out) {
    expect_size(out, q.num_samples(), "reward::text::score", "rewards", "one per sample");
    for (index_t b = 0; b < q.num_samples(); ++b) {
      const std::string p = tokenizer.decode(q.prompt(b)), c = tokenizer.decode(q.completion(b));
      out[b] = static_cast<double>(fn(std::string_view(p), std::string_view(c), q.example(b)));
    }
  }
};
template <class Tokenizer, class F>
text(Tokenizer, F) -> text<Tokenizer, F>;

// Σ_k w_k·r_k over the sources (each scored once per batch).
template <class... Sources>
struct weighted {
  static_assert(sizeof...(Sources) >= 1, "reward::weighted needs at least one source");
  std::tuple<Sources...> sources;
  std::array<double, sizeof...(Sources)> weights{};

  void score(const reward_query& q, std::span<double> out) {
    constexpr const char* where = "reward::weighted::score";
    expect_size(out, q.num_samples(), where, "rewards", "one per sample");
    for (std::size_t k = 0; k < weights.size(); ++k)
      expect(std::isfinite(weights[k]), where, "weights[", k, "] = ", weights[k],
             ", expected finite");
    std::vector<double> acc(out.size(), 0.0), part(out.size());
    std::size_t k = 0;
    std::apply(
        [&](auto&... s) {
          ((s.score(q, std::span<double>(part)),
            [&] {
              for (std::size_t b = 0; b < part.size(); ++b) acc[b] += weights[k] * part[b];
              ++k;
            }()),
           ...);
        },
        sources);
    std::copy(acc.begin(), acc.end(), out.begin());
  }
};

template <class Gate, class Source>
struct gated {
  Gate gate;
  Source source;
  double threshold = 1.0;
  double otherwise = 0.0;

  void score(const reward_query& q, std::span<double> out) {
    constexpr const char* where = "reward::gated::score";
    expect_size(out, q.num_samples(), where, "rewards", "one per sample");
    expect(!std::isnan(threshold) && std::isfinite(otherwise), where,
           "threshold must not be NaN and otherwise must be finite");
    std::vector<double> g(out.size()), r(out.size());
    gate.score(q, std::span<double>(g));
    source.score(q, std::span<double>(r));
    for (std::size_t b = 0; b < out.size(); ++b) out[b] = g[b] >= threshold ? r[b] : otherwise;
  }
};
template <class Gate, class Source>
gated(Gate, Source, double, double) -> gated<Gate, Source>;

template <class V>
concept named_text_verifier = requires(const V& v, std::string_view prediction, std::string_view label) {
  { V::name() } -> std::convertible_to<std::string>;
  { v.score(prediction, label) } -> std::convertible_to<double>;
};

template <class Tokenizer, named_text_verifier... V>
struct verifiers {
  static_assert(sizeof...(V) >= 1, "reward::verifiers needs at least one verifier type");
  Tokenizer tokenizer;
  std::tuple<V...> list;

  void score(const reward_query& q, std::span<double> out) {
    constexpr const char* where = "reward::verifiers::score";
    expect_size(out, q.num_samples(), where, "rewards", "one per sample");
    expect(ssize(q.examples) == q.num_samples(), where,
           "query.examples is empty, expected one example_info per sample (verifier name and "
           "ground truth)");
    for (index_t b = 0; b < q.num_samples(); ++b) {
      bool known = false;
      std::apply([&](const auto&... v) { ((known = known || std::decay_t<decltype(v)>::name() == q.examples[b].verifier), ...); }, list);
      expect(known, where, "sample ", b, " names verifier \"", q.examples[b].verifier,
             "\", which is not one of this source's verifiers");
    }
    for (index_t b = 0; b < q.num_samples(); ++b) {
      const std::string completion = tokenizer.decode(q.completion(b));
      const example_info& e = q.examples[b];
      std::apply([&](const auto&... v) {
        ((std::decay_t<decltype(v)>::name() == e.verifier
              ? (void)(out[b] = weight_of(v) * static_cast<double>(v.score(completion, e.ground_truth)))
              : (void)0),
         ...);
      }, list);
    }
  }

 private:
  template <class X>
  static double weight_of(const X& v) {
    if constexpr (requires { { v.weight } -> std::convertible_to<double>; })
      return static_cast<double>(v.weight);
    else
      return 1.0;
  }
};

}  // namespace reward

static_assert(check_reward_source<reward::precomputed>());

}  // namespace pipeline

POSTTRAIN_NAMESPACE_END
