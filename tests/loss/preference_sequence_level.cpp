// loss/preference/sequence_level.hpp: preference inputs from per-sequence log-prob sums (OpenRLHF
// DPOLoss's inputs) against a float64 reference of DPO and cDPO on sums, and the checks on sizes.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "posttrain/algo.hpp"
#include "posttrain/loss/preference/sequence_level.hpp"

namespace pt = posttrain;

namespace {
double logsigmoid(double x) { return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x)); }
double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
}  // namespace

TEST(PreferenceSequenceLevel, DpoOnSumsFloat64Reference) {
  const std::vector<double> pc{-12.5, -30.0, -4.0}, pr{-14.0, -29.0, -9.5};
  const std::vector<double> rc{-13.0, -31.5, -5.0}, rr{-13.5, -28.0, -9.0};
  const pt::loss::sequence_level_inputs<double> s(pc, pr, rc, rr);
  for (const double eps : {0.0, 0.1}) {
    const auto o = pt::algo::cdpo::openrlhf(eps, 0.2).loss;
    std::vector<double> gc(3), gr(3), cw(3);
    const auto r = pt::algo::dpo::compute(pt::exec::host{}, s.inputs(), o,
                                          {gc, gr, {}, cw, {}});
    double loss = 0;
    for (int p = 0; p < 3; ++p) {
      const double u = 0.2 * ((pc[p] - rc[p]) - (pr[p] - rr[p]));
      loss += -(1 - eps) * logsigmoid(u) - eps * logsigmoid(-u);
      const double slope = -(1 - eps) * sigmoid(-u) + eps * sigmoid(u);
      EXPECT_NEAR(gc[p], 0.2 * slope / 3, 1e-14);
      EXPECT_NEAR(gr[p], -0.2 * slope / 3, 1e-14);
      EXPECT_NEAR(cw[p], 0.2 * (pc[p] - rc[p]), 1e-14);  // rewards on sums, as OpenRLHF logs
    }
    EXPECT_NEAR(r.loss, loss / 3, 1e-14);
  }
}

TEST(PreferenceSequenceLevel, MismatchedSizesAreRejected) {
  const std::vector<double> a{1, 2}, b{1};
  EXPECT_THROW(pt::loss::sequence_level_inputs<double>(a, b), pt::error);
  EXPECT_THROW(pt::loss::sequence_level_inputs<double>(a, a, a, b), pt::error);
  EXPECT_THROW(pt::loss::sequence_level_inputs<double>(a, a, a), pt::error);
  EXPECT_NO_THROW(pt::loss::sequence_level_inputs<double>(a, a));  // reference-free
}
