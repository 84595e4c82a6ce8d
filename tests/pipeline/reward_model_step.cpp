// pipeline::reward_model_step with a bag-of-tokens scorer (score = Σ_t w[token_t]): the gradient
// equals a float64 Bradley–Terry reference (with margins; with Llama 3's edited > chosen >
// rejected ranking), micro-batches equal the full batch, training raises the accuracy, and
// reward::learned scores prompt ++ completion with the model.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include <posttrain/algo.hpp>
#include <posttrain/optim/adamw.hpp>
#include <posttrain/pipeline/reward_model_step.hpp>

#include "pipeline/test_policy.hpp"

using namespace pt_test;

namespace {

constexpr pt::index_t V = 5;

// The scorer's weights over the V = 5 tokens of these tests.
bag_scorer scorer() { return bag_scorer({0.1, -0.2, 0.3, 0.05, -0.1}); }
static_assert(pp::check_reward_model<bag_scorer>());

struct data {
  std::vector<pt::index_t> c{0, 2, 2, 0, 1, 2, 0, 3}, co{0, 3, 6, 8};
  std::vector<pt::index_t> r{0, 1, 0, 1, 1, 0, 4}, ro{0, 2, 5, 7};
  std::vector<pt::index_t> e{0, 2, 2, 2, 0, 3, 0, 3, 3}, eo{0, 4, 6, 9};
  std::vector<double> margin{0.5, 0.0, 1.0};
  std::vector<float> emask{1, 0, 1};
};

double sum_w(const std::vector<double>& w, const std::vector<pt::index_t>& t,
             const std::vector<pt::index_t>& o, std::size_t b) {
  double s = 0;
  for (auto i = o[b]; i < o[b + 1]; ++i) s += w[t[i]];
  return s;
}
void add_grad(std::vector<double>& g, const std::vector<pt::index_t>& t,
              const std::vector<pt::index_t>& o, std::size_t b, double d) {
  for (auto i = o[b]; i < o[b + 1]; ++i) g[t[i]] += d;
}
double nls(double x) { return std::log1p(std::exp(-x)); }    // −log σ(x)
double dnls(double x) { return -1.0 / (1.0 + std::exp(x)); }  // d/dx

}  // namespace

TEST(RewardModelStep, BradleyTerryWithMarginAndRankingMatchesFloat64Reference) {
  data d;
  bag_scorer model = scorer();
  capture_optimizer cap;
  pp::reward_model_data rd{{d.c, d.co}, {d.r, d.ro}, {d.e, d.eo}, d.margin, d.emask};
  const auto m = pp::reward_model_step<pt::algo::bradley_terry>(model, cap, rd);
  std::vector<double> g(V, 0.0);
  double loss = 0;
  for (std::size_t p = 0; p < 3; ++p) {
    const double rc = sum_w(model.w, d.c, d.co, p), rr = sum_w(model.w, d.r, d.ro, p);
    const double dcr = rc - rr - d.margin[p];
    loss += nls(dcr) / 3;
    add_grad(g, d.c, d.co, p, dnls(dcr) / 3);
    add_grad(g, d.r, d.ro, p, -dnls(dcr) / 3);
    if (d.emask[p] > 0) {
      const double re = sum_w(model.w, d.e, d.eo, p);
      loss += (nls(re - rc) + nls(re - rr)) / 3;
      add_grad(g, d.e, d.eo, p, (dnls(re - rc) + dnls(re - rr)) / 3);
      add_grad(g, d.c, d.co, p, -dnls(re - rc) / 3);
      add_grad(g, d.r, d.ro, p, -dnls(re - rr) / 3);
    }
  }
  EXPECT_NEAR(m.loss, loss, 1e-14);
  for (pt::index_t i = 0; i < V; ++i) EXPECT_NEAR(cap.grads[i], g[i], 1e-14) << i;
}

TEST(RewardModelStep, MicroBatchesEqualTheFullBatch) {
  data d;
  bag_scorer a_m = scorer(), b_m = scorer();
  capture_optimizer a, b;
  pp::reward_model_data rd{{d.c, d.co}, {d.r, d.ro}, {d.e, d.eo}, d.margin, d.emask};
  pp::reward_model_step_options<pt::algo::bradley_terry> o;
  const auto ma = pp::reward_model_step<pt::algo::bradley_terry>(a_m, a, rd, o);
  o.micro_batch = 2;
  const auto mb = pp::reward_model_step<pt::algo::bradley_terry>(b_m, b, rd, o);
  EXPECT_EQ(mb.micro_batches, 2);
  EXPECT_NEAR(ma.loss, mb.loss, 1e-12);
  EXPECT_NEAR(ma.accuracy, mb.accuracy, 1e-15);
  for (pt::index_t i = 0; i < V; ++i) EXPECT_NEAR(a.grads[i], b.grads[i], 1e-12);
}

TEST(RewardModelStep, TrainingRaisesAccuracyAndLearnedSourceScores) {
  data d;
  bag_scorer model = scorer();
  pt::optim::adamw opt({0.05, 0.9, 0.999, 1e-8, 0.0});
  pp::reward_model_data rd{{d.c, d.co}, {d.r, d.ro}, {}, {}, {}};
  const double first = pp::reward_model_step<pt::algo::bradley_terry>(model, opt, rd).loss;
  pp::reward_model_metrics m;
  for (int i = 0; i < 40; ++i) m = pp::reward_model_step<pt::algo::bradley_terry>(model, opt, rd);
  EXPECT_LT(m.loss, first);
  EXPECT_EQ(m.accuracy, 1.0);

  pp::reward::learned<bag_scorer> source{&model};
  std::vector<pt::index_t> pt_{0, 1}, po{0, 1, 2}, ct{2, 2, 1}, cto{0, 2, 3};
  std::vector<double> out(2);
  source.score({{pt_, po}, {ct, cto}, {}}, out);
  EXPECT_DOUBLE_EQ(out[0], model.w[0] + 2 * model.w[2]);
  EXPECT_DOUBLE_EQ(out[1], model.w[1] + model.w[1]);
}

TEST(RewardModelStep, BadInputThrowsAndLeavesParametersUntouched) {
  data d;
  bag_scorer model = scorer();
  pt::optim::adamw opt;
  const auto before = model.w;
  std::vector<double> short_margin{1.0};
  EXPECT_THROW(pp::reward_model_step<pt::algo::bradley_terry>(
                   model, opt, {{d.c, d.co}, {d.r, d.ro}, {}, short_margin, {}}),
               pt::error);
  std::vector<pt::index_t> two{0, 2, 5};
  EXPECT_THROW(pp::reward_model_step<pt::algo::bradley_terry>(
                   model, opt, {{d.c, d.co}, {std::span<const pt::index_t>(d.r).first(5), two}, {}, {}, {}}),
               pt::error);
  std::vector<pt::index_t> zero{0};
  EXPECT_THROW(pp::reward_model_step<pt::algo::bradley_terry>(model, opt, {{{}, zero}, {{}, zero}, {}, {}, {}}),
               pt::error);
  EXPECT_EQ(model.w, before);
}
