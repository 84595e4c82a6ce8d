// Tests of loss::reward_model (loss/reward_model.hpp): Bradley-Terry and LogExp against a naive
// float64 reference (margins, centring, Llama 3 edited > chosen > rejected ranking), gradients by
// central differences, invariants (log 2 at equal rewards), extremes, micro-batch invariance,
// float inputs, every validation error (outputs untouched) and no allocation in a host call.
#include "posttrain/loss/reward_model.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "posttrain/core/error.hpp"

#include "core/count_allocations.hpp"

namespace pt = posttrain;
using pt::loss::reward_model_inputs;
using pt::loss::reward_model_normalizer;
using pt::loss::reward_model_options;
using pt::loss::reward_model_outputs;
using bt = pt::loss::reward_model<pt::rm::bradley_terry>;
using logexp = pt::loss::reward_model<pt::rm::log_exp>;

namespace {

struct data {
  std::vector<double> rc, rr, margin, re;
  std::vector<float> emask;
  reward_model_inputs<double> in() const { return {rc, rr, margin, re, emask}; }
};

data make(std::mt19937_64& rng, int n, bool margin, bool edited, bool edited_mask) {
  std::normal_distribution<double> g(0.0, 2.0);
  data d;
  for (int i = 0; i < n; ++i) {
    d.rc.push_back(g(rng));
    d.rr.push_back(g(rng));
    if (margin) d.margin.push_back(std::abs(g(rng)) * 0.5);
    if (edited) d.re.push_back(g(rng));
    if (edited_mask) {
      d.emask.push_back(i % 3 == 1 ? 0.0f : 1.0f);
      if (i % 3 == 1) d.re.back() = std::numeric_limits<double>::quiet_NaN();
    }
  }
  return d;
}

double naive_l(double d) { return std::log(1.0 + std::exp(-d)); }

double naive_loss(const data& d, double c) {
  double s = 0;
  const std::size_t n = d.rc.size();
  for (std::size_t i = 0; i < n; ++i) {
    const double m = d.margin.empty() ? 0.0 : d.margin[i];
    s += naive_l(d.rc[i] - d.rr[i] - m);
    if (!d.re.empty() && (d.emask.empty() || d.emask[i] != 0.0f))
      s += naive_l(d.re[i] - d.rc[i]) + naive_l(d.re[i] - d.rr[i]);
    s += c * (d.rc[i] + d.rr[i]) * (d.rc[i] + d.rr[i]);
  }
  return n ? s / static_cast<double>(n) : 0.0;
}

template <class Loss>
void check_fd(data d, double c) {
  const std::size_t n = d.rc.size();
  std::vector<double> gc(n), gr(n), ge(d.re.empty() ? 0 : n);
  Loss::compute(d.in(), {c}, {gc, gr, ge, {}});
  auto f = [&](const data& x) { return Loss::compute(x.in(), {c}).loss; };
  const double h = 1e-6;
  for (std::size_t i = 0; i < n; ++i) {
    for (int which = 0; which < 3; ++which) {
      std::vector<double>* v = which == 0 ? &d.rc : which == 1 ? &d.rr : &d.re;
      if (v->empty()) continue;
      if (which == 2 && !d.emask.empty() && d.emask[i] == 0.0f) {
        EXPECT_EQ(ge[i], 0.0);
        continue;
      }
      const double x0 = (*v)[i];
      (*v)[i] = x0 + h;
      const double up = f(d);
      (*v)[i] = x0 - h;
      const double dn = f(d);
      (*v)[i] = x0;
      const double fd = (up - dn) / (2 * h);
      const double got = which == 0 ? gc[i] : which == 1 ? gr[i] : ge[i];
      EXPECT_NEAR(got, fd, 1e-7) << "which " << which << " i " << i;
    }
  }
}

}  // namespace

TEST(RewardModel, MatchesNaiveReference) {
  std::mt19937_64 rng(1);
  for (bool margin : {false, true})
    for (bool edited : {false, true})
      for (bool emask : {false, true}) {
        if (emask && !edited) continue;
        for (double c : {0.0, 0.01}) {
          const data d = make(rng, 9, margin, edited, emask);
          const auto r = bt::compute(d.in(), {c});
          EXPECT_NEAR(r.loss, naive_loss(d, c), 1e-12);
          if (!margin) {
            EXPECT_NEAR(logexp::compute(d.in(), {c}).loss, r.loss, 1e-12);
          }
          double cen = 0;
          for (std::size_t i = 0; i < d.rc.size(); ++i)
            cen += (d.rc[i] + d.rr[i]) * (d.rc[i] + d.rr[i]);
          EXPECT_NEAR(r.centering, cen / 9, 1e-12);
          EXPECT_NEAR(r.loss, r.ranking_loss + c * r.centering, 1e-12);
        }
      }
}

TEST(RewardModel, GradientsByFiniteDifferences) {
  std::mt19937_64 rng(2);
  check_fd<bt>(make(rng, 7, true, false, false), 0.0);
  check_fd<bt>(make(rng, 7, true, true, false), 0.05);
  check_fd<bt>(make(rng, 7, false, true, true), 0.05);
  check_fd<logexp>(make(rng, 7, false, true, false), 0.02);
  check_fd<logexp>(make(rng, 7, false, false, false), 0.0);
}

TEST(RewardModel, Log2AtEqualRewardsAndStatistics) {
  std::vector<double> rc{1.5, -2.0, 0.0}, rr{1.5, -2.0, 0.0};
  std::vector<double> gc(3), gr(3);
  std::vector<double> pl(3);
  const auto r = bt::compute(reward_model_inputs<double>{rc, rr}, {}, {gc, gr, {}, pl});
  EXPECT_NEAR(r.loss, std::log(2.0), 1e-15);
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(gc[i], -0.5 / 3, 1e-15);
    EXPECT_NEAR(gr[i], 0.5 / 3, 1e-15);
    EXPECT_NEAR(pl[i], std::log(2.0), 1e-15);
  }
  EXPECT_EQ(r.accuracy, 0.0);  // ties count as wrong
  std::vector<double> a{2, 0}, b{1, 1};
  const auto s = bt::compute(reward_model_inputs<double>{a, b});
  EXPECT_DOUBLE_EQ(s.accuracy, 0.5);
  EXPECT_DOUBLE_EQ(s.chosen_reward, 1.0);
  EXPECT_DOUBLE_EQ(s.rejected_reward, 1.0);
  EXPECT_DOUBLE_EQ(s.margin, 0.0);
}

TEST(RewardModel, ExtremeRewardsAreFinite) {
  for (double big : {1e4, -1e4}) {
    std::vector<double> rc{big, -big}, rr{-big, big}, re{big, big};
    std::vector<double> gc(2), gr(2), ge(2);
    for (double c : {0.0, 1.0}) {
      const auto r = bt::compute(reward_model_inputs<double>{rc, rr, {}, re}, {c}, {gc, gr, ge});
      const auto q = logexp::compute(reward_model_inputs<double>{rc, rr, {}, re}, {c});
      EXPECT_TRUE(std::isfinite(r.loss));
      EXPECT_NEAR(r.loss, q.loss, 1e-9 * std::abs(r.loss));
      for (double g : {gc[0], gc[1], gr[0], gr[1], ge[0], ge[1]}) EXPECT_TRUE(std::isfinite(g));
    }
    // Wrongly ordered pair at distance 2e4: loss = 2e4 exactly to rounding.
    const auto w = bt::compute(reward_model_inputs<double>{std::span<const double>(&rc[1], 1),
                                                           std::span<const double>(&rr[1], 1)});
    EXPECT_NEAR(w.loss, std::max(0.0, rr[1] - rc[1]), 1e-9);  // 2e4 when wrongly ordered
  }
  std::vector<float> fc{1e4f}, fr{-1e4f};
  std::vector<float> g1(1), g2(1);
  const auto f = logexp::compute(reward_model_inputs<float>{fr, fc}, {}, {g1, g2});
  EXPECT_NEAR(f.loss, 2e4, 1e-6);
  EXPECT_FLOAT_EQ(g1[0], -1.0f);
  EXPECT_FLOAT_EQ(g2[0], 1.0f);
}

TEST(RewardModel, FloatMatchesDouble) {
  std::mt19937_64 rng(3);
  const data d = make(rng, 6, true, true, false);
  std::vector<float> c(d.rc.begin(), d.rc.end()), r(d.rr.begin(), d.rr.end()),
      m(d.margin.begin(), d.margin.end()), e(d.re.begin(), d.re.end());
  std::vector<float> gc(6);
  std::vector<double> gcd(6);
  const auto rf = bt::compute(reward_model_inputs<float>{c, r, m, e}, {0.1}, {gc});
  const auto rd = bt::compute(d.in(), {0.1}, {gcd});
  EXPECT_NEAR(rf.loss, rd.loss, 1e-5 * (1 + std::abs(rd.loss)));
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(gc[i], gcd[i], 1e-6);
}

TEST(RewardModel, EmptyBatchAndMicroBatchInvariance) {
  const auto e = bt::compute(reward_model_inputs<double>{});
  EXPECT_EQ(e.loss, 0.0);
  std::mt19937_64 rng(4);
  const data d = make(rng, 10, true, true, true);
  std::vector<double> gc(10), gr(10), ge(10);
  const auto full = bt::compute(d.in(), {0.03}, {gc, gr, ge});
  double sum = 0;
  std::vector<double> pc(10), pr(10), pe(10);
  for (const auto& range : {std::pair<int, int>{0, 4}, {4, 0}, {4, 6}}) {
    const int b = range.first, n = range.second;  // not a structured binding: captured below
    auto sub = [&](const std::vector<double>& v) {
      return v.empty() ? std::span<const double>() : std::span<const double>(v).subspan(b, n);
    };
    reward_model_inputs<double> in{sub(d.rc), sub(d.rr), sub(d.margin), sub(d.re),
                                   std::span<const float>(d.emask).subspan(b, n)};
    sum += bt::compute(in, {0.03},
                       {std::span<double>(pc).subspan(b, n), std::span<double>(pr).subspan(b, n),
                        std::span<double>(pe).subspan(b, n)},
                       reward_model_normalizer{10})
               .loss;
  }
  EXPECT_NEAR(sum, full.loss, 1e-12);
  for (int i = 0; i < 10; ++i) {
    EXPECT_NEAR(pc[i], gc[i], 1e-15);
    EXPECT_NEAR(pr[i], gr[i], 1e-15);
    EXPECT_NEAR(pe[i], ge[i], 1e-15);
  }
}

TEST(RewardModel, ValidationLeavesOutputsUntouched) {
  std::vector<double> rc{1, 2, 3}, rr{0, 1, 2}, two{1, 2}, bad{1, NAN, 2}, m{0.1, 0.1, 0.1};
  std::vector<float> em{1, 1, 1}, emneg{1, -1, 1};
  std::vector<double> gc(3, 7.0), gr(3, 7.0), small(2, 7.0);
  std::vector<double> pl(3, 7.0);
  reward_model_outputs<double> out{gc, gr, {}, pl};
  auto untouched = [&] {
    for (double v : gc) EXPECT_EQ(v, 7.0);
    for (double v : gr) EXPECT_EQ(v, 7.0);
    for (double v : pl) EXPECT_EQ(v, 7.0);
  };
  EXPECT_THROW(bt::compute(reward_model_inputs<double>{rc, two}, {}, out), pt::error);
  EXPECT_THROW(bt::compute(reward_model_inputs<double>{rc, bad}, {}, out), pt::error);
  EXPECT_THROW(bt::compute(reward_model_inputs<double>{bad, rr}, {}, out), pt::error);
  EXPECT_THROW(bt::compute(reward_model_inputs<double>{rc, rr, two}, {}, out), pt::error);
  EXPECT_THROW(bt::compute(reward_model_inputs<double>{rc, rr, bad}, {}, out), pt::error);
  EXPECT_THROW(logexp::compute(reward_model_inputs<double>{rc, rr, m}, {}, out), pt::error);
  EXPECT_THROW(bt::compute(reward_model_inputs<double>{rc, rr, {}, two}, {}, out), pt::error);
  EXPECT_THROW(bt::compute(reward_model_inputs<double>{rc, rr, {}, bad}, {}, out), pt::error);
  EXPECT_THROW(bt::compute(reward_model_inputs<double>{rc, rr, {}, {}, em}, {}, out), pt::error);
  EXPECT_THROW(bt::compute(reward_model_inputs<double>{rc, rr, {}, rc, emneg}, {}, out), pt::error);
  EXPECT_THROW(bt::compute(reward_model_inputs<double>{rc, rr}, {-1.0}, out), pt::error);
  EXPECT_THROW(bt::compute(reward_model_inputs<double>{rc, rr}, {NAN}, out), pt::error);
  EXPECT_THROW(bt::compute(reward_model_inputs<double>{rc, rr}, {}, out, {-1.0}), pt::error);
  EXPECT_THROW(bt::compute(reward_model_inputs<double>{rc, rr}, {}, {gc, small, {}, pl}),
               pt::error);
  EXPECT_THROW(bt::compute(reward_model_inputs<double>{rc, rr}, {}, {gc, gr, small, pl}),
               pt::error);
  untouched();
  // A NaN edited reward behind a zero edited_mask is never read.
  std::vector<float> em0{1, 0, 1};
  EXPECT_NO_THROW(bt::compute(reward_model_inputs<double>{rc, rr, {}, bad, em0}, {}, out));
  for (double v : gc) EXPECT_TRUE(std::isfinite(v));
}

// A host call allocates nothing (there is no scratch to supply: the backend's blocks live on the
// stack), with every input and output in use, against the naive reference; its messages still
// name the loss and its link.
TEST(RewardModel, HostCallAllocatesNothing) {
  std::mt19937_64 rng(7);
  for (const int n : {0, 1, 300}) {
    const data d = make(rng, n, true, true, true);
    const auto un = static_cast<std::size_t>(n);
    std::vector<double> gc(un), gr(un), ge(un), pl(un);
    pt::loss::reward_model_result r{};
    EXPECT_EQ(count_allocations([&] {
                r = bt::compute(pt::exec::host{}, d.in(), {0.01}, {gc, gr, ge, pl});
              }),
              0);
    EXPECT_NEAR(r.loss, naive_loss(d, 0.01), 1e-12);
    data no_margin = d;
    no_margin.margin.clear();
    EXPECT_EQ(count_allocations([&] {
                r = logexp::compute(pt::exec::host{}, no_margin.in(), {}, {gc, gr, ge, pl});
              }),
              0);
    EXPECT_NEAR(r.loss, naive_loss(no_margin, 0.0), 1e-12);
  }
  const data d = make(rng, 3, false, false, false);
  std::vector<double> short_grad(2);
  try {
    bt::compute(d.in(), {}, {short_grad, {}, {}, {}});
    ADD_FAILURE() << "a short chosen_grad was accepted";
  } catch (const pt::error& e) {
    EXPECT_NE(std::string(e.what()).find("loss::reward_model<bradley_terry>"), std::string::npos)
        << e.what();
  }
  try {
    logexp::compute(make(rng, 3, true, false, false).in());
    ADD_FAILURE() << "a margin was accepted by log_exp";
  } catch (const pt::error& e) {
    EXPECT_NE(std::string(e.what()).find("loss::reward_model<log_exp>"), std::string::npos)
        << e.what();
  }
}
