// The two "ppo_kl" statistics of loss::policy_gradient (issue 9 item 8): approx_kl is verl's
// (mean of −clamp(logr) with the preset's log-ratio clamp), approx_kl_unclamped is OpenRLHF's
// (mean of −logr before its ±20 clamp). Float64 references on tokens past the clamp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "posttrain/algo.hpp"

namespace pt = posttrain;

TEST(PolicyGradientStatistics, ApproxKlClampedAndUnclamped) {
  const std::vector<pt::index_t> seqs{0, 3, 6};
  const std::vector<float> mask{1, 1, 0, 1, 0.5f, 1};
  const std::vector<double> lp{-0.5, -30.0, -1.0, -0.2, -0.4, -0.9};
  const std::vector<double> old{-0.6, -2.0, -40.0, -26.0, -0.3, -1.0};
  const std::vector<double> adv{1.0, -1.0, 0.5, 0.5, -0.25, 2.0};
  pt::policy_gradient_inputs<double> in{lp, old, adv, {}, mask, seqs, {}, {}, {}};
  const auto p = pt::algo::ppo_sample_mean::openrlhf();
  const auto r = pt::algo::ppo_sample_mean::compute(pt::exec::host{}, in, p.loss, {}, {});
  double sm = 0, clamped = 0, raw = 0;
  for (std::size_t t = 0; t < lp.size(); ++t) {
    const double m = mask[t], logr = lp[t] - old[t];
    sm += m;
    clamped -= m * std::clamp(logr, -20.0, 20.0);
    raw -= m * logr;
  }
  EXPECT_NEAR(r.approx_kl, clamped / sm, 1e-12);
  EXPECT_NEAR(r.approx_kl_unclamped, raw / sm, 1e-12);
  EXPECT_GT(std::abs(r.approx_kl - r.approx_kl_unclamped), 0.4);  // the clamp is active here (8 − 5.8 over Σ m = 4.5)
  // Without a clamp (TRL preset) the two agree.
  const auto t = pt::algo::ppo::compute(pt::exec::host{}, in, pt::policy_gradient_loss_options{},
                                        {}, {});
  EXPECT_DOUBLE_EQ(t.approx_kl, t.approx_kl_unclamped);
}
