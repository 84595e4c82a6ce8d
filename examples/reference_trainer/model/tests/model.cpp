// The whole model's gradient by finite differences (double, tiny configs): the loss is
// Σ_t c_t · log p(y_t) over a packed batch, log-probs from the library's fused linear + log-prob
// op on forward()'s hidden states, d(hidden) and d(lm_head) from its backward, then
// transformer::backward. Every parameter is perturbed. Also: packing equals running each sequence
// alone, and bad batches are rejected before any work.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <vector>

#include <posttrain/ops/fused_linear_logprobs.hpp>

#include "fd.hpp"
#include "test_models.hpp"
#include "threads.hpp"
#include "transformer.hpp"

namespace rm = reference_model;
using rm::index_t;
using md = rm::matrix<double>;

namespace {

using rm::testing::randomize;
using rm::testing::tiny;

struct batch {
  std::vector<index_t> tokens = {1, 5, 2, 9, 12, 0, 3, 3, 7};
  std::vector<index_t> offsets = {0, 4, 4, 9};
  std::vector<index_t> targets = {5, 2, 9, -100, 0, 3, 3, 7, 4};  // -100: no next token
  std::vector<double> weight = {0.3, -1.2, 0.7, 0.0, 1.1, 0.4, -0.5, 0.9, -0.8};
};

double loss_and_grad(rm::transformer<double>& m, const batch& b, bool with_grad) {
  rm::activations<double> act;
  const md& h = m.forward(b.tokens, b.offsets, act);
  const index_t n = h.rows();
  std::vector<double> lp(static_cast<std::size_t>(n)), lse(lp.size());
  const posttrain::matrix_view<const double> hv{h.data(), n, h.cols()};
  posttrain::fused_linear_logprobs(posttrain::exec::host{}, hv, m.lm_head(), b.targets,
                                   posttrain::token_logprobs_outputs<double>{lp, lse});
  double loss = 0;
  for (std::size_t i = 0; i < lp.size(); ++i) loss += b.weight[i] * lp[i];
  if (with_grad) {
    md dh(n, h.cols());
    posttrain::fused_linear_logprobs_options o;
    o.accumulate_d_weight = true;  // tied: adds to the embedding's gradient
    posttrain::fused_linear_logprobs_backward(
        posttrain::exec::host{}, hv, m.lm_head(), b.targets,
        posttrain::token_logprobs_grads<double>{lse, {}, b.weight, {}},
        posttrain::matrix_view<double>{dh.data(), n, dh.cols()}, m.lm_head_grad(), o);
    m.backward(act, dh);
  }
  return loss;
}

}  // namespace

class WholeModelGradient
    : public ::testing::TestWithParam<std::tuple<rm::architecture, bool, bool>> {};

TEST_P(WholeModelGradient, EveryParameterMatchesFiniteDifferences) {
  const auto [arch, tied, bias] = GetParam();
  rm::transformer<double> m(tiny(arch, tied, bias));
  randomize(m, 11, 0.4);
  const batch b;
  m.zero_grad();
  loss_and_grad(m, b, true);
  const std::vector<double> analytic(m.gradients().begin(), m.gradients().end());
  auto loss = [&] { return loss_and_grad(m, b, false); };
  const double err = rm::testing::fd_max_error(m.parameters(), analytic, loss);
  char text[32];
  std::snprintf(text, sizeof text, "%.2e", err);
  RecordProperty("max_fd_error", text);
  EXPECT_LT(err, 1e-7) << "largest relative FD error over " << analytic.size() << " parameters";
  // Gradients accumulate: a second backward doubles them.
  loss_and_grad(m, b, true);
  for (std::size_t i = 0; i < analytic.size(); ++i)
    ASSERT_NEAR(m.gradients()[i], 2 * analytic[i], 1e-12 * (1 + std::abs(analytic[i])));
}

INSTANTIATE_TEST_SUITE_P(Configs, WholeModelGradient,
                         ::testing::Values(std::tuple{rm::architecture::llama, false, false},
                                           std::tuple{rm::architecture::llama, true, true},
                                           std::tuple{rm::architecture::qwen2, true, false},
                                           std::tuple{rm::architecture::qwen2, false, false}));

TEST(ReferenceModel, PackedEqualsEachSequenceAlone) {
  rm::transformer<double> m(tiny(rm::architecture::qwen2, false, false));
  randomize(m, 12, 0.4);
  const batch b;
  rm::activations<double> act;
  const md packed = m.forward(b.tokens, b.offsets, act);
  for (std::size_t s = 0; s + 1 < b.offsets.size(); ++s) {
    const index_t o0 = b.offsets[s], t = b.offsets[s + 1] - o0;
    const std::vector<index_t> one(b.tokens.begin() + o0, b.tokens.begin() + o0 + t);
    const std::vector<index_t> off = {0, t};
    rm::activations<double> a1;
    const md alone = m.forward(one, off, a1);
    if (t > 0) {
      EXPECT_LT((alone - packed.middleRows(o0, t)).cwiseAbs().maxCoeff(), 1e-13);
    }
  }
}

TEST(ReferenceModel, RejectsBadBatches) {
  rm::transformer<float> m(tiny(rm::architecture::llama, false, false));
  rm::activations<float> act;
  const std::vector<index_t> tokens = {1, 2, 3};
  EXPECT_THROW(m.forward(tokens, std::vector<index_t>{0, 2}, act), posttrain::error);
  EXPECT_THROW(m.forward(tokens, std::vector<index_t>{1, 3}, act), posttrain::error);
  EXPECT_THROW(m.forward(tokens, std::vector<index_t>{0, 2, 1, 3}, act), posttrain::error);
  EXPECT_THROW(m.forward(std::vector<index_t>{1, 13, 2}, std::vector<index_t>{0, 3}, act),
               posttrain::error);
  EXPECT_THROW(m.forward(std::vector<index_t>{1, -1, 2}, std::vector<index_t>{0, 3}, act),
               posttrain::error);
  EXPECT_TRUE(act.tokens.empty()) << "a rejected batch must leave the activations untouched";
  rm::model_config bad = tiny(rm::architecture::llama, false, false);
  bad.num_key_value_heads = 3;
  EXPECT_THROW(rm::transformer<float>{bad}, posttrain::error);
}

TEST(ReferenceModel, ThreadCountDoesNotChangeResults) {
  // Attention blocks run one per thread and Eigen's parallel GEMMs split the output, never a
  // reduction: one and two threads give bit-identical hidden states and gradients.
  rm::model_config c = tiny(rm::architecture::qwen2, false, false);
  c.hidden_size = 64;
  c.intermediate_size = 96;
  rm::transformer<float> m(c);
  m.init_random(13);
  std::vector<index_t> tokens, offsets = {0};
  for (int s = 0; s < 5; ++s) {
    for (int i = 0; i < 40 + 7 * s; ++i) tokens.push_back((s * 31 + i * 7) % c.vocab_size);
    offsets.push_back(static_cast<index_t>(tokens.size()));
  }
  const int before = rm::num_threads();
  std::vector<std::vector<float>> grads;
  std::vector<rm::matrix<float>> hidden;
  for (int threads : {1, 2}) {
    rm::set_num_threads(threads);
    m.zero_grad();
    rm::activations<float> act;
    hidden.push_back(m.forward(tokens, offsets, act));
    rm::matrix<float> d = hidden.back() * 0.5f;
    m.backward(act, d);
    grads.emplace_back(m.gradients().begin(), m.gradients().end());
  }
  rm::set_num_threads(before);
  EXPECT_EQ(hidden[0], hidden[1]);
  EXPECT_EQ(grads[0], grads[1]);
}
