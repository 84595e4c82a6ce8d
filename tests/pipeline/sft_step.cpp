// pipeline::sft_step on the bigram test policies: the gradient equals a float64 reference written
// here (bigram log-softmax NLL, prompt tokens masked, each aggregation's divisor), the hidden
// (fused linear) path agrees with finite differences, K micro-batches equal one, training lowers
// the NLL, and bad input throws before the parameters change.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include <posttrain/algo.hpp>
#include <posttrain/optim/adamw.hpp>
#include <posttrain/pipeline/sft_step.hpp>

#include "pipeline/test_policy.hpp"

using namespace pt_test;

namespace {

constexpr pt::index_t V = 7;

struct data {
  std::vector<pt::index_t> tokens{1, 2, 3, 4, 0, 5, 6, 2, 2, 3, 1, 4, 6, 6, 0, 1};
  std::vector<pt::index_t> offsets{0, 5, 8, 8, 13, 16};  // one empty sequence
  // prompt tokens 0: sequence 0's prompt is 2 tokens, sequence 1's 1, ...
  std::vector<float> mask{0, 0, 1, 1, 1, 0, 1, 1, 0, 0, 0.5f, 1, 1, 0, 1, 1};
  pp::sft_batch batch() const { return {{tokens, offsets}, mask}; }
};

// Σ_t m_t·(−log p(y_t | a_t)) and its gradient dW, divided as the aggregation divides.
enum class divide { tokens, one, sequence_mean };
double reference_loss(const std::vector<double>& w, const data& d, divide mode,
                      std::vector<double>* grad) {
  if (grad) grad->assign(w.size(), 0.0);
  double total_m = 0, rows = 0;
  for (std::size_t b = 0; b + 1 < d.offsets.size(); ++b) {
    double rm = 0;
    for (auto t = d.offsets[b]; t < d.offsets[b + 1]; ++t) rm += d.mask[t];
    total_m += rm;
    rows += rm > 0;
  }
  double loss = 0;
  for (std::size_t b = 0; b + 1 < d.offsets.size(); ++b) {
    double rm = 0;
    for (auto t = d.offsets[b]; t < d.offsets[b + 1]; ++t) rm += d.mask[t];
    const double div = mode == divide::tokens ? total_m : mode == divide::one ? 1.0 : rows * rm;
    for (auto t = d.offsets[b] + 1; t < d.offsets[b + 1]; ++t) {
      const double m = d.mask[t];
      if (m == 0) continue;
      const auto a = d.tokens[t - 1], y = d.tokens[t];
      loss += -m * ref_logprob(w, V, a, y) / div;
      if (grad)
        for (pt::index_t j = 0; j < V; ++j) {
          const double p = std::exp(ref_logprob(w, V, a, j));
          (*grad)[a * V + j] += m * (p - (j == y ? 1.0 : 0.0)) / div;
        }
    }
  }
  return loss;
}

template <class Loss>
void expect_gradient_matches_reference(divide mode) {
  data d;
  bigram_policy<double> policy(V, 3);
  capture_optimizer cap;
  const auto m = pp::sft_step<Loss>(policy, cap, d.batch());
  std::vector<double> g;
  const double loss = reference_loss(policy.w, d, mode, &g);
  EXPECT_NEAR(m.loss, loss, 1e-13);
  ASSERT_EQ(cap.grads.size(), g.size());
  for (std::size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(cap.grads[i], g[i], 1e-14) << i;
  EXPECT_EQ(m.tokens, 9.5);
  EXPECT_EQ(m.sequences, 4.0);
}

}  // namespace

TEST(SftStep, TokenMeanGradientEqualsFloat64Reference) {
  expect_gradient_matches_reference<pt::algo::sft>(divide::tokens);
}
TEST(SftStep, SumGradientEqualsFloat64Reference) {
  expect_gradient_matches_reference<pt::algo::sft_sum>(divide::one);
}
TEST(SftStep, SequenceMeanGradientEqualsFloat64Reference) {
  expect_gradient_matches_reference<pt::algo::sft_sample_mean>(divide::sequence_mean);
}

TEST(SftStep, MicroBatchesEqualTheFullBatch) {
  data d;
  for (pt::index_t k : {1, 2, 3}) {
    bigram_policy<double> full(V, 5), split(V, 5);
    capture_optimizer a, b;
    pp::sft_step_options<pt::algo::sft_sample_mean> o;
    const auto ma = pp::sft_step<pt::algo::sft_sample_mean>(full, a, d.batch(), o);
    o.micro_batch = k;
    const auto mb = pp::sft_step<pt::algo::sft_sample_mean>(split, b, d.batch(), o);
    EXPECT_NEAR(ma.loss, mb.loss, 1e-12);
    EXPECT_GT(mb.micro_batches, 1);
    for (std::size_t i = 0; i < a.grads.size(); ++i) EXPECT_NEAR(a.grads[i], b.grads[i], 1e-12);
  }
}

TEST(SftStep, HiddenPathMicroBatchesEqualTheFullBatch) {
  // Micro-batches of different sizes reuse the backward's scratch buffers.
  data d;
  hidden_bigram<double> full(V, 3), split(V, 3);
  capture_optimizer a, b;
  pp::sft_step_options<pt::algo::sft> o;
  pp::sft_step<pt::algo::sft>(full, a, d.batch(), o);
  o.micro_batch = 2;
  pp::sft_step<pt::algo::sft>(split, b, d.batch(), o);
  for (std::size_t i = 0; i < a.grads.size(); ++i) EXPECT_NEAR(a.grads[i], b.grads[i], 1e-12);
}

TEST(SftStep, HiddenPathGradientMatchesFiniteDifferences) {
  data d;
  hidden_bigram<double> policy(V, 3);
  capture_optimizer cap;
  pp::sft_step<pt::algo::sft>(policy, cap, d.batch());
  const auto g = cap.grads;
  const double h = 1e-6;
  for (std::size_t i = 0; i < policy.params.size(); i += 3) {
    const double x = policy.params[i];
    policy.params[i] = x + h;
    const double up = pp::sft_step<pt::algo::sft>(policy, cap, d.batch()).loss;
    policy.params[i] = x - h;
    const double down = pp::sft_step<pt::algo::sft>(policy, cap, d.batch()).loss;
    policy.params[i] = x;
    EXPECT_NEAR(g[i], (up - down) / (2 * h), 1e-8) << i;
  }
}

TEST(SftStep, HiddenPathEqualsLogitsPathOfTheSameModel) {
  // hidden_bigram with H = V and U = I is the bigram table E: same loss, same dE.
  data d;
  hidden_bigram<double> hp(V, V);
  bigram_policy<double> lp(V);
  for (pt::index_t i = 0; i < V * V; ++i) {
    lp.w[i] = hp.params[i];
    hp.params[V * V + i] = (i / V == i % V) ? 1.0 : 0.0;
  }
  capture_optimizer a, b;
  const auto ma = pp::sft_step<pt::algo::sft>(hp, a, d.batch());
  const auto mb = pp::sft_step<pt::algo::sft>(lp, b, d.batch());
  EXPECT_NEAR(ma.loss, mb.loss, 1e-14);
  for (pt::index_t i = 0; i < V * V; ++i) EXPECT_NEAR(a.grads[i], b.grads[i], 1e-14);
}

TEST(SftStep, TrainingLowersTheNll) {
  data d;
  bigram_policy<float> policy(V, 9);
  pt::optim::adamw opt({0.05, 0.9, 0.999, 1e-8, 0.0});
  const double first = pp::sft_step<pt::algo::sft>(policy, opt, d.batch()).loss;
  double last = first;
  for (int i = 0; i < 30; ++i) last = pp::sft_step<pt::algo::sft>(policy, opt, d.batch()).loss;
  EXPECT_LT(last, 0.5 * first);
}

TEST(SftStep, ClippingBoundsTheGradientNorm) {
  data d;
  bigram_policy<double> policy(V, 3);
  capture_optimizer cap;
  pp::sft_step_options<pt::algo::sft> o;
  o.max_grad_norm = 0.01;
  const auto m = pp::sft_step<pt::algo::sft>(policy, cap, d.batch(), o);
  EXPECT_GT(m.grad_norm, 0.01);
  double sq = 0;
  for (double g : cap.grads) sq += g * g;
  EXPECT_NEAR(std::sqrt(sq), 0.01 * m.grad_norm / (m.grad_norm + 1e-6), 1e-15);  // torch's +1e-6
}

TEST(SftStep, BadInputThrowsAndLeavesParametersUntouched) {
  data d;
  bigram_policy<double> policy(V, 3);
  pt::optim::adamw opt;
  const auto before = policy.w;
  auto expect_throw = [&](const pp::sft_batch& b) {
    EXPECT_THROW(pp::sft_step<pt::algo::sft>(policy, opt, b), pt::error);
    EXPECT_EQ(policy.w, before);
  };
  std::vector<pt::index_t> no_seq{0};
  expect_throw({{std::span<const pt::index_t>(), no_seq}, {}});  // empty batch
  auto mask = d.mask;
  mask[0] = 1;  // first token of a sequence has no log-prob
  expect_throw({{d.tokens, d.offsets}, mask});
  expect_throw({{d.tokens, d.offsets}, std::span<const float>(d.mask).first(3)});  // size
  auto tokens = d.tokens;
  tokens[4] = V;  // out of the vocabulary
  expect_throw({{tokens, d.offsets}, d.mask});
  auto neg = d.mask;
  neg[3] = -1;
  expect_throw({{d.tokens, d.offsets}, neg});
  // A NaN in the model's logits reaches the optimizer as a NaN gradient: rejected before stepping.
  policy.w[1 * V + 0] = std::nan("");
  const auto nan_before = policy.w;
  EXPECT_THROW(pp::sft_step<pt::algo::sft>(policy, opt, d.batch()), pt::error);
  for (std::size_t i = 0; i < policy.w.size(); ++i)
    EXPECT_TRUE(policy.w[i] == nan_before[i] || (std::isnan(policy.w[i]) && std::isnan(nan_before[i])));
  EXPECT_EQ(opt.steps(), 0);
}
