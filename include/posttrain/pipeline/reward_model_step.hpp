#pragma once
// pipeline::reward_model_step<Loss> — one reward-model update, and reward::learned<Model>, the
// reward source that scores with such a model.
//
// The RewardModel concept (a scalar-head model):
//   M::scalar_type                                     float or double
//   m.forward(const token_sequences&) -> std::span<const S>   one score per sequence [B]
//   m.backward(std::span<const S> d_scores)            adds the parameter gradients of the last
//                                                      forward
//   m.parameters(), m.gradients(), m.zero_grad()       flat views, as a policy's
// static_assert(check_reward_model<M>()) (tests/compile_fail/pipeline_reward_model.cpp).
//
// reward_model_step: per micro-batch of options.micro_batch prompts, ONE forward over
// [chosen; rejected; edited] (the edited responses only when data.edited is given: Llama 3's
// edited > chosen > rejected ranking), Loss::compute with the global pair count (all-reduced),
// backward of the concatenated score gradients; then all-reduce, clip, optimizer.
// Loss: a loss_model over loss::reward_model_inputs (algo::bradley_terry with or without margins,
// algo::reward_log_exp). Validated before any write: empty batch, mismatched counts, margin size.
#include <array>
#include <concepts>
#include <span>
#include <type_traits>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/dist/communicator.hpp"
#include "posttrain/loss/concept.hpp"
#include "posttrain/loss/reward_model.hpp"
#include "posttrain/pipeline/reward_source.hpp"
#include "posttrain/pipeline/step_common.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pipeline {

template <class M>
concept reward_model = model_detail::flat_views<M> &&
    requires(M& m, const token_sequences& s, std::span<const typename M::scalar_type> d) {
      { m.forward(s) } -> std::same_as<std::span<const typename M::scalar_type>>;
      m.backward(d);
    };

template <class M>
constexpr bool check_reward_model() {
  constexpr bool has_scalar = requires { typename M::scalar_type; };
  static_assert(has_scalar, "a reward model needs `using scalar_type = float;` or `double`");
  if constexpr (has_scalar) {
    using S = typename M::scalar_type;
    static_assert(requires(M& m, const token_sequences& s) {
      { m.forward(s) } -> std::same_as<std::span<const S>>;
    }, "a reward model needs `std::span<const scalar_type> forward(const pipeline::token_sequences&)` "
       "returning one score per sequence");
    static_assert(requires(M& m, std::span<const S> d) { m.backward(d); },
                  "a reward model needs `backward(std::span<const scalar_type> d_scores)` adding "
                  "the parameter gradients of the last forward");
    static_assert(model_detail::flat_views<M>, "a reward model needs `std::span<scalar_type> parameters()`, `gradients()` and `zero_grad()`");
  }
  return reward_model<M>;
}

struct reward_model_data {
  token_sequences chosen{};                 // P sequences (prompt + chosen)
  token_sequences rejected{};               // P
  token_sequences edited{};                 // P or empty (seq_offsets empty): Llama 3 ranking
  std::span<const double> margin{};         // [P] or empty
  std::span<const float> edited_mask{};     // [P] or empty: prompts that have an edited response
};

template <class Loss>
struct reward_model_step_options : step_options {
  typename Loss::options_type loss{};
};

struct reward_model_metrics {
  double loss = 0, accuracy = 0, margin = 0, pairs = 0, grad_norm = 0;
  index_t micro_batches = 0;
};

template <class Loss, reward_model M, class O, dist::communicator C>
reward_model_metrics reward_model_step(M& model, O& optimizer, const reward_model_data& data,
                                       const reward_model_step_options<Loss>& options, C& comm) {
  using S = typename M::scalar_type;
  static_assert(check_loss_model<Loss>());
  static_assert(std::is_same_v<typename Loss::template inputs<S>, loss::reward_model_inputs<S>>,
                "pipeline::reward_model_step<Loss>: Loss must take loss::reward_model_inputs "
                "(algo::bradley_terry, algo::reward_log_exp)");
  constexpr const char* where = "pipeline::reward_model_step";
  data.chosen.validate(where, "data.chosen");
  data.rejected.validate(where, "data.rejected");
  const index_t pairs = data.chosen.num_sequences();
  expect(pairs > 0, where, "data.chosen is empty, expected at least one pair");
  expect(data.rejected.num_sequences() == pairs, where, "data.rejected has ",
         data.rejected.num_sequences(), " sequences, expected ", pairs);
  const bool has_edited = !data.edited.seq_offsets.empty();
  if (has_edited) {
    data.edited.validate(where, "data.edited");
    expect(data.edited.num_sequences() == pairs, where, "data.edited has ",
           data.edited.num_sequences(), " sequences, expected ", pairs, " (or none)");
  }
  expect_size_or_empty(data.margin, pairs, where, "data.margin", "one per pair, or empty");
  expect_size_or_empty(data.edited_mask, pairs, where, "data.edited_mask", "one per pair, or empty");
  validate_step_options(options, where);

  std::array<double, 1> global{static_cast<double>(pairs)};
  all_reduce(comm, global);
  const loss::reward_model_normalizer norm{global[0]};
  reward_model_metrics m;
  m.pairs = global[0];
  // sums: loss, Σ accuracy, Σ margin
  const auto t = run_micro_batches<3>(model, optimizer, comm, options, pairs,
                                      [&](index_t p0, index_t p1, std::array<double, 3>& sums) {
    const index_t np = p1 - p0;
    owned_sequences all;
    auto add = [&](const token_sequences& s) {
      for (index_t b = p0; b < p1; ++b)
        all.append(s.tokens.subspan(s.seq_offsets[b], s.seq_offsets[b + 1] - s.seq_offsets[b]));
    };
    add(data.chosen);
    add(data.rejected);
    if (has_edited) add(data.edited);
    const token_sequences view = all.view();
    const std::span<const S> scores = model.forward(view);
    expect(ssize(scores) == view.num_sequences(), where, "the reward model returned ",
           scores.size(), " scores, expected ", view.num_sequences(), " (one per sequence)");
    std::vector<S> grad(scores.size(), S(0));
    std::vector<S> margin;
    if (!data.margin.empty())
      for (index_t p = p0; p < p1; ++p) margin.push_back(static_cast<S>(data.margin[p]));
    loss::reward_model_inputs<S> in;
    in.chosen = scores.first(np);
    in.rejected = scores.subspan(np, np);
    in.margin = margin;
    if (has_edited) {
      in.edited = scores.subspan(2 * np, np);
      if (!data.edited_mask.empty()) in.edited_mask = data.edited_mask.subspan(p0, np);
    }
    loss::reward_model_outputs<S> out;
    out.chosen_grad = std::span<S>(grad).first(np);
    out.rejected_grad = std::span<S>(grad).subspan(np, np);
    if (has_edited) out.edited_grad = std::span<S>(grad).subspan(2 * np, np);
    const auto r = Loss::compute(exec::host{}, in, options.loss, out, norm);
    sums[0] += r.loss;
    sums[1] += r.accuracy * static_cast<double>(np);
    sums[2] += r.margin * static_cast<double>(np);
    model.backward(std::span<const S>(grad));
  });
  m.micro_batches = t.micro_batches;
  m.grad_norm = t.grad_norm;
  m.loss = t.sums[0];
  m.accuracy = t.sums[1] / m.pairs;
  m.margin = t.sums[2] / m.pairs;
  return m;
}

template <class Loss, reward_model M, class O>
reward_model_metrics reward_model_step(M& model, O& optimizer, const reward_model_data& data,
                                       const reward_model_step_options<Loss>& options = {}) {
  dist::single_process_communicator comm;
  return reward_model_step<Loss>(model, optimizer, data, options, comm);
}

namespace reward {

// A learned reward model as a reward source: R_b = model score of prompt_b ++ completion_b.
template <pipeline::reward_model M>
struct learned {
  M* model;
  void score(const reward_query& q, std::span<double> out) {
    expect_size(out, q.num_samples(), "reward::learned::score", "rewards", "one per sample");
    owned_sequences all;
    for (index_t b = 0; b < q.num_samples(); ++b) {
      std::vector<index_t> s(q.prompt(b).begin(), q.prompt(b).end());
      s.insert(s.end(), q.completion(b).begin(), q.completion(b).end());
      all.append(s);
    }
    const auto scores = model->forward(all.view());
    expect(ssize(scores) == q.num_samples(), "reward::learned::score", "the model returned ",
           scores.size(), " scores, expected ", q.num_samples());
    for (index_t b = 0; b < q.num_samples(); ++b) out[b] = static_cast<double>(scores[b]);
  }
};

}  // namespace reward

}  // namespace pipeline

POSTTRAIN_NAMESPACE_END
