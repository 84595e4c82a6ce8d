#pragma once
// The reference transformer (model/) as the pipeline concepts see it (pipeline/ knows no model;
// these adapters are the only place the two meet):
//
//   policy<S>       Policy: forward → policy_hidden (hidden [N, H] + lm_head [V, H]), so the
//                   pipeline's fused linear + log-prob op runs and [N, V] logits are never built;
//                   backward(d_hidden, d_lm_head) adds d_lm_head into the lm_head gradient region
//                   (the embedding's when tied) and runs the transformer's backward.
//   reference       pipeline::reference::frozen<policy<S>>: a copy of the policy (copying the
//                   transformer rebinds its views), forward only.
//   generator<S>    Generator: reference_model::generate (batched, KV cache, one RNG per sample
//                   seeded by the request) on the policy's current weights.
//   critic<S>       Critic: its own trunk + a scalar value head (PPO); token-aligned values
//                   v[t] = head(hidden[t − 1]) (the state that produced tokens[t]), 0 on first
//                   tokens; may be initialised from any transformer, or from a reward model's
//                   trunk and score head (Tülu 3: the value model starts as the reward model).
//   reward_model<S> RewardModel: its own trunk + a scalar score head (HF's
//                   *ForSequenceClassification "score.weight", no bias); one score per sequence,
//                   the head on the hidden state of its last token.
#include <algorithm>
#include <span>
#include <utility>
#include <vector>

#include <posttrain/pipeline.hpp>

#include "model.hpp"

namespace reference_trainer {

namespace pt = posttrain;
namespace pp = posttrain::pipeline;
namespace rm = reference_model;
using pt::index_t;

template <class S>
class policy {
 public:
  using scalar_type = S;

  explicit policy(rm::transformer<S> model) : model_(std::move(model)) {}

  index_t vocab_size() const { return model_.config().vocab_size; }

  pp::policy_hidden<S> forward(const pp::token_sequences& s) {
    const rm::matrix<S>& h = model_.forward(s.tokens, s.seq_offsets, act_);
    return {pt::matrix_view<const S>(h.data(), h.rows(), h.cols()), model_.lm_head()};
  }

  void backward(pt::matrix_view<const S> d_hidden, pt::matrix_view<const S> d_lm_head) {
    // lm_head_grad() aliases the embedding gradient when tied: add, never overwrite.
    pt::matrix_view<S> g = model_.lm_head_grad();
    pt::expect(d_lm_head.rows == g.rows && d_lm_head.cols == g.cols, "reference_trainer::policy",
               "d_lm_head is [", d_lm_head.rows, ", ", d_lm_head.cols, "], expected [", g.rows,
               ", ", g.cols, "]");
    for (index_t i = 0; i < g.rows; ++i)
      for (index_t j = 0; j < g.cols; ++j) g(i, j) += d_lm_head(i, j);
    const Eigen::Map<const rm::matrix<S>> dh(d_hidden.data, d_hidden.rows, d_hidden.cols);
    model_.backward(act_, rm::matrix<S>(dh));
  }

  std::span<S> parameters() { return model_.parameters(); }
  std::span<S> gradients() { return model_.gradients(); }
  void zero_grad() { model_.zero_grad(); }

  rm::transformer<S>& model() { return model_; }
  const rm::transformer<S>& model() const { return model_; }

 private:
  rm::transformer<S> model_;
  rm::activations<S> act_;
};

template <class S>
class generator {
 public:
  explicit generator(const policy<S>& p) : policy_(&p) {}

  void generate(const pp::generation_request& r, pp::generation& out) {
    rm::sampling_options o;
    o.temperature = r.sampling.temperature;
    o.top_k = r.sampling.top_k;
    o.top_p = r.sampling.top_p;
    o.max_new_tokens = r.sampling.max_new_tokens;
    o.stop_tokens = r.sampling.stop_tokens;
    const auto samples = rm::generate(policy_->model(), r.prompts.tokens, r.prompts.seq_offsets,
                                      r.seeds, o);
    pp::generation g;
    for (const rm::completion& c : samples) {
      g.completions.append(c.tokens);
      // The sampler's own log-prob (after temperature / top-k / top-p): what rollout
      // correction divides by. Greedy decoding has a point mass: 0.
      for (double lp : c.sampling_logprobs) g.logprobs.push_back(std::min(lp, 0.0));
      const bool stopped = c.reason == rm::stop_reason::stop_token;
      g.stop.push_back(stopped ? pp::stop_reason::stop_token : pp::stop_reason::length);
      g.truncated.push_back(stopped ? 0 : 1);
    }
    out = std::move(g);
  }

 private:
  const policy<S>* policy_;
};

// Backward of a trunk + scalar head model (critic, reward model): d_rows (one d per hidden row)
// through the head and the trunk. The gradients accumulate (across micro-batches) into the flat
// buffer grads laid out as trunk, head weight, then the head bias when the head has one (a head
// without a bias, the reward model's, trains none).
template <class S>
void trunk_head_backward(rm::transformer<S>& trunk, rm::scalar_head<S>& head,
                         const rm::activations<S>& act, const rm::matrix<S>& hidden,
                         const std::vector<S>& d_rows, std::vector<S>& grads) {
  rm::matrix<S> dh = rm::matrix<S>::Zero(hidden.rows(), hidden.cols());
  head.d_weight.setZero();
  if (head.has_bias) head.d_bias = 0;
  head.backward(hidden, d_rows, dh);
  trunk.zero_grad();
  trunk.backward(act, dh);
  const auto tg = trunk.gradients();
  for (std::size_t i = 0; i < tg.size(); ++i) grads[i] += tg[i];
  for (index_t i = 0; i < head.d_weight.size(); ++i) grads[tg.size() + i] += head.d_weight(i);
  if (head.has_bias) grads.back() += head.d_bias;
}

template <class S>
class critic {
 public:
  static constexpr bool enabled = true;
  using scalar_type = S;

  // The value head starts at zero so the first values are 0 (no initial bias in the advantages).
  explicit critic(rm::transformer<S> trunk)
      : trunk_(std::move(trunk)), head_(trunk_.config().hidden_size, true) {
    params_.resize(trunk_.parameters().size() + head_.weight.size() + 1);
    grads_.assign(params_.size(), S(0));
    pack();
  }
  // From a reward model (Tülu 3): its trunk, and its score head as the value head (bias 0).
  critic(rm::transformer<S> trunk, const rm::scalar_head<S>& score) : critic(std::move(trunk)) {
    head_.weight = score.weight;
    pack();
  }

  void values(const pp::token_sequences& s, std::span<S> v) {
    unpack();
    const rm::matrix<S>& h = trunk_.forward(s.tokens, s.seq_offsets, act_);
    hidden_ = h;
    const rm::vector<S> out = head_.forward(h);
    for (index_t b = 0; b < s.num_sequences(); ++b) {
      const index_t b0 = s.seq_offsets[b], b1 = s.seq_offsets[b + 1];
      if (b0 < b1) v[b0] = S(0);
      for (index_t t = b0 + 1; t < b1; ++t) v[t] = out(t - 1);
    }
    offsets_.assign(s.seq_offsets.begin(), s.seq_offsets.end());
  }

  void backward(std::span<const S> d_values) {
    const index_t n = hidden_.rows();
    std::vector<S> d_rows(static_cast<std::size_t>(n), S(0));
    for (std::size_t b = 0; b + 1 < offsets_.size(); ++b)
      for (index_t t = offsets_[b] + 1; t < offsets_[b + 1]; ++t) d_rows[t - 1] = d_values[t];
    trunk_head_backward(trunk_, head_, act_, hidden_, d_rows, grads_);
  }

  // Flat views over trunk + head. The optimizer writes params_; values() copies them back in.
  std::span<S> parameters() { return params_; }
  std::span<S> gradients() { return grads_; }
  void zero_grad() { std::fill(grads_.begin(), grads_.end(), S(0)); }

 private:
  void pack() {
    const auto tp = trunk_.parameters();
    std::copy(tp.begin(), tp.end(), params_.begin());
    for (index_t i = 0; i < head_.weight.size(); ++i) params_[tp.size() + i] = head_.weight(i);
    params_.back() = head_.bias;
  }
  void unpack() {
    auto tp = trunk_.parameters();
    std::copy(params_.begin(), params_.begin() + static_cast<std::ptrdiff_t>(tp.size()), tp.begin());
    for (index_t i = 0; i < head_.weight.size(); ++i) head_.weight(i) = params_[tp.size() + i];
    head_.bias = params_.back();
  }

  rm::transformer<S> trunk_;
  rm::scalar_head<S> head_;
  rm::activations<S> act_;
  rm::matrix<S> hidden_;
  std::vector<index_t> offsets_;
  std::vector<S> params_, grads_;
};

template <class S>
class reward_model {
 public:
  using scalar_type = S;

  // The head starts at zero: every score 0 before training.
  explicit reward_model(rm::transformer<S> trunk)
      : trunk_(std::move(trunk)), head_(trunk_.config().hidden_size, false) {
    params_.resize(trunk_.parameters().size() + head_.weight.size());
    grads_.assign(params_.size(), S(0));
    pack();
  }

  std::span<const S> forward(const pp::token_sequences& s) {
    unpack();
    const rm::matrix<S>& h = trunk_.forward(s.tokens, s.seq_offsets, act_);
    hidden_ = h;
    const rm::vector<S> out = head_.forward(h);
    offsets_.assign(s.seq_offsets.begin(), s.seq_offsets.end());
    scores_.assign(static_cast<std::size_t>(s.num_sequences()), S(0));
    for (index_t b = 0; b < s.num_sequences(); ++b)
      if (s.seq_offsets[b + 1] > s.seq_offsets[b]) scores_[b] = out(s.seq_offsets[b + 1] - 1);
    return scores_;
  }

  void backward(std::span<const S> d_scores) {
    const index_t n = hidden_.rows();
    std::vector<S> d_rows(static_cast<std::size_t>(n), S(0));
    for (std::size_t b = 0; b + 1 < offsets_.size(); ++b)
      if (offsets_[b + 1] > offsets_[b]) d_rows[offsets_[b + 1] - 1] = d_scores[b];
    trunk_head_backward(trunk_, head_, act_, hidden_, d_rows, grads_);
  }

  std::span<S> parameters() { return params_; }
  std::span<S> gradients() { return grads_; }
  void zero_grad() { std::fill(grads_.begin(), grads_.end(), S(0)); }

  // The trained trunk and head (for checkpoints and for a critic initialised from this model).
  const rm::transformer<S>& trunk() {
    unpack();
    return trunk_;
  }
  const rm::scalar_head<S>& head() {
    unpack();
    return head_;
  }
  void set_head(std::span<const S> w) {
    for (index_t i = 0; i < head_.weight.size(); ++i) head_.weight(i) = w[static_cast<std::size_t>(i)];
    pack();
  }

 private:
  void pack() {
    const auto tp = trunk_.parameters();
    std::copy(tp.begin(), tp.end(), params_.begin());
    for (index_t i = 0; i < head_.weight.size(); ++i) params_[tp.size() + i] = head_.weight(i);
  }
  void unpack() {
    auto tp = trunk_.parameters();
    std::copy(params_.begin(), params_.begin() + static_cast<std::ptrdiff_t>(tp.size()), tp.begin());
    for (index_t i = 0; i < head_.weight.size(); ++i) head_.weight(i) = params_[tp.size() + i];
  }

  rm::transformer<S> trunk_;
  rm::scalar_head<S> head_;
  rm::activations<S> act_;
  rm::matrix<S> hidden_;
  std::vector<index_t> offsets_;
  std::vector<S> scores_, params_, grads_;
};

static_assert(pp::check_policy<policy<float>>());
static_assert(pp::check_generator<generator<float>>());
static_assert(pp::check_reference_model<pp::reference::frozen<policy<float>>>());
static_assert(pp::check_critic<critic<float>>());
static_assert(pp::check_reward_model<reward_model<float>>());

}  // namespace reference_trainer
