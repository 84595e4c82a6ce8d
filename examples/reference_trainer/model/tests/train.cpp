// Training pieces: AdamW equals torch's update formula (double reference written here); the
// scalar head's gradient by finite differences; a tiny model overfits a fixed batch with the fused
// log-prob loss, its backward and AdamW (the loss falls by more than half in 40 steps).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include <posttrain/ops/fused_linear_logprobs.hpp>

#include "fd.hpp"
#include "test_models.hpp"
#include "model.hpp"

namespace rm = reference_model;
using rm::index_t;

TEST(ReferenceModelAdamW, MatchesTorchFormula) {
  rm::adamw_options o{0.01, 0.8, 0.95, 1e-6, 0.1};
  std::vector<double> p = {0.5, -1.0, 2.0}, ref = p, m(3, 0), v(3, 0);
  rm::adamw<double> opt(3, o);
  std::mt19937_64 rng(1);
  std::normal_distribution<double> n;
  for (int t = 1; t <= 3; ++t) {
    std::vector<double> g = {n(rng), n(rng), n(rng)};
    opt.step(p, g);
    for (int i = 0; i < 3; ++i) {  // torch.optim.AdamW, written out
      ref[i] *= 1 - o.lr * o.weight_decay;
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * g[i];
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * g[i] * g[i];
      const double bc1 = 1 - std::pow(o.beta1, t), bc2 = 1 - std::pow(o.beta2, t);
      ref[i] -= o.lr / bc1 * m[i] / (std::sqrt(v[i]) / std::sqrt(bc2) + o.eps);
      EXPECT_NEAR(p[i], ref[i], 1e-15);
    }
  }
  std::vector<double> short_grad(2);
  EXPECT_THROW(opt.step(p, short_grad), posttrain::error);
  EXPECT_THROW(rm::adamw<double>(3, rm::adamw_options{-1.0}), posttrain::error);
}

TEST(ReferenceModelScalarHead, GradientMatchesFiniteDifferences) {
  std::mt19937_64 rng(2);
  rm::scalar_head<double> head(6, true);
  rm::matrix<double> h(5, 6);
  rm::testing::fill_normal(h, rng);
  rm::testing::fill_normal(head.weight, rng);
  head.bias = 0.3;
  const std::vector<double> c = {0.5, -1.0, 2.0, 0.1, -0.7};
  auto loss = [&] {
    const rm::vector<double> v = head.forward(h);
    double l = 0;
    for (int i = 0; i < 5; ++i) l += c[i] * v(i) * v(i);  // nonlinear in the values
    return l;
  };
  const rm::vector<double> v = head.forward(h);
  std::vector<double> dv(5);
  for (int i = 0; i < 5; ++i) dv[i] = 2 * c[i] * v(i);
  rm::matrix<double> dh = rm::matrix<double>::Zero(5, 6);
  head.backward(h, dv, dh);
  EXPECT_LT(rm::testing::fd_max_error({h.data(), 30}, {dh.data(), 30}, loss), 1e-7);
  EXPECT_LT(rm::testing::fd_max_error({head.weight.data(), 6}, {head.d_weight.data(), 6}, loss),
            1e-7);
  EXPECT_LT(rm::testing::fd_max_error({&head.bias, 1}, {&head.d_bias, 1}, loss), 1e-7);
}

TEST(ReferenceModelTrain, TinyModelOverfitsABatch) {
  const rm::model_config c = rm::testing::two_layers(rm::architecture::qwen2, 32, 32, 64);
  rm::transformer<float> m(c);
  m.init_random(3);
  std::vector<index_t> tokens, offsets = {0}, targets;
  std::mt19937_64 rng(4);
  for (int s = 0; s < 4; ++s) {
    const int t = 12 + 3 * s;
    for (int i = 0; i < t; ++i) tokens.push_back(static_cast<index_t>(rng() % 32));
    for (int i = 1; i < t; ++i) targets.push_back(tokens[tokens.size() - t + i]);
    targets.push_back(-100);
    offsets.push_back(static_cast<index_t>(tokens.size()));
  }
  const index_t n = static_cast<index_t>(tokens.size());
  const float count = float(n - 4);
  std::vector<float> d_lp(static_cast<std::size_t>(n), -1.0f / count), lp(d_lp.size()),
      lse(d_lp.size());
  rm::adamw<float> opt(m.parameters().size(), rm::adamw_options{3e-3, 0.9, 0.999, 1e-8, 0.0});
  double first = 0, last = 0;
  for (int step = 0; step < 40; ++step) {
    m.zero_grad();
    rm::activations<float> act;
    const rm::matrix<float>& h = m.forward(tokens, offsets, act);
    rm::matrix<float> dh(n, c.hidden_size);
    posttrain::fused_linear_logprobs_options o;
    o.accumulate_d_weight = true;
    posttrain::fused_linear_logprobs_forward_backward(
        posttrain::exec::host{}, posttrain::matrix_view<const float>{h.data(), n, h.cols()},
        m.lm_head(), targets, std::span<const float>(d_lp), {},
        posttrain::token_logprobs_outputs<float>{lp, lse},
        posttrain::matrix_view<float>{dh.data(), n, dh.cols()}, m.lm_head_grad(), o);
    m.backward(act, dh);
    opt.step(m.parameters(), m.gradients());
    double loss = 0;
    for (index_t i = 0; i < n; ++i) loss -= lp[static_cast<std::size_t>(i)] / count;
    if (step == 0) first = loss;
    last = loss;
  }
  EXPECT_NEAR(first, std::log(32.0), 0.3);  // near-uniform at initialisation
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
}
