// loss::bco_pair_running_mean (TRL v0.26 bco_pair with the running reward mean δ̄) and
// pref::running_moments (TRL RunningMoments): naive float64 transcriptions of TRL's update and
// loss over a sequence of batches, central differences of every token gradient (δ̄ detached),
// δ̄ = 0 equals the HEAD link, reference-free, pair weights, float vs double, empty batches,
// huge shifts, and bad input leaving outputs and state untouched.
#include "posttrain/loss/preference/bco_pair_running.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "posttrain/loss/preference/algorithms.hpp"
#include "preference_naive.hpp"
#include "preference_testing.hpp"

namespace {

namespace pt = posttrain;
namespace nv = preference_naive;
using namespace preference_testing;
using bco = pt::algo::bco_pair_running_mean;

// trl/trainer/utils.py RunningMoments.update, single process, xs a tensor of values.
struct naive_moments {
  double mean = 0, var = 1, count = 1e-24;
  void update(const std::vector<double>& xs) {
    double m = 0;
    for (double x : xs) m += x;
    m /= static_cast<double>(xs.size());
    double v = 0;
    for (double x : xs) v += (x - m) * (x - m);
    v /= static_cast<double>(xs.size());  // unbiased=False
    const double n = static_cast<double>(xs.size());
    const double delta = m - mean, tot = count + n;
    const double new_sum = v * n;
    const double old_sum = var * count + delta * delta * count * n / tot;
    mean += delta * n / tot;
    var = (old_sum + new_sum) / tot;
    count = tot;
  }
};

struct naive_out {
  double loss = 0, batch_mean = 0;
  std::vector<double> rc, rr;
};

// Per-pair β·Δ (summed log-probs), their 2P mean, and the shifted loss (pair weights ω_p).
naive_out naive(const pair_data& d, double beta, double shift, bool with_reference = true) {
  naive_out o;
  const auto P = static_cast<std::size_t>(d.pairs());
  for (std::size_t i = 0; i < P; ++i) {
    double dc = naive_score(d.chosen, i);
    double dr = naive_score(d.rejected, i);
    if (with_reference) {
      dc -= d.chosen.reference[i];
      dr -= d.rejected.reference[i];
    }
    o.rc.push_back(beta * dc);
    o.rr.push_back(beta * dr);
    const double w = d.weights.empty() ? 1.0 : d.weights[i];
    o.loss += w * (-nv::logsig(beta * dc - shift) - nv::logsig(-(beta * dr - shift)));
    o.batch_mean += beta * dc + beta * dr;
  }
  if (P > 0) {
    o.loss /= static_cast<double>(P);
    o.batch_mean /= 2.0 * static_cast<double>(P);
  }
  return o;
}

template <class B>
void check_gradient_fixed_shift(pair_data d, double shift, const pt::loss::preference_options& o,
                                bool with_reference = true) {
  std::vector<double> gc(d.chosen.logprobs.size(), kNaN), gr(d.rejected.logprobs.size(), kNaN);
  B::compute(d.inputs(with_reference), shift, o, pt::loss::preference_outputs<double>{gc, gr});
  const double h = 1e-6;
  for (side* s : {&d.chosen, &d.rejected}) {
    const std::vector<double>& g = s == &d.chosen ? gc : gr;
    for (std::size_t t = 0; t < s->logprobs.size(); ++t) {
      if (s->mask[t] == 0.0f) {
        EXPECT_EQ(g[t], 0.0);
        continue;
      }
      const double saved = s->logprobs[t];
      s->logprobs[t] = saved + h;
      const double up = B::compute(d.inputs(with_reference), shift, o).loss;
      s->logprobs[t] = saved - h;
      const double down = B::compute(d.inputs(with_reference), shift, o).loss;
      s->logprobs[t] = saved;
      const double fd = (up - down) / (2 * h);
      EXPECT_NEAR(g[t], fd, 1e-7 * (1 + std::fabs(fd))) << t;
    }
  }
}

TEST(BcoPairRunning, RunningMomentsMatchTrl) {
  std::mt19937_64 rng(201);
  std::normal_distribution<double> x(0.3, 2.0);
  pt::pref::running_moments s;
  naive_moments n;
  EXPECT_EQ(s.mean, 0.0);
  EXPECT_EQ(s.var, 1.0);
  EXPECT_EQ(s.count, 1e-24);
  for (int step = 0; step < 50; ++step) {
    const double v = x(rng);
    s.update(v);
    n.update({v});
    ASSERT_NEAR(s.mean, n.mean, 1e-13 * (1 + std::fabs(n.mean))) << step;
    ASSERT_NEAR(s.var, n.var, 1e-12 * (1 + n.var)) << step;
    ASSERT_EQ(s.count, n.count);
    if (step == 0) {
      EXPECT_NEAR(s.mean, v, 1e-15 * (1 + std::fabs(v)));  // count 1e-24 ≈ 0
    }
  }
  // Running mean of equally weighted batch means after the first.
  pt::pref::running_moments t;
  t.update(1.0);
  t.update(2.0);
  t.update(6.0);
  EXPECT_NEAR(t.mean, 3.0, 1e-15);
  EXPECT_NEAR(t.stddev, std::sqrt(t.var * 3.0 / 2.0), 1e-15);
  // Several ranks: update with the ranks' mean, population variance and count at once equals
  // TRL's update from the gathered values.
  pt::pref::running_moments a;
  naive_moments b;
  a.update(0.5);
  b.update({0.5});
  const std::vector<double> ranks{1.0, -2.0, 4.0, 0.25};
  double m = 0, v = 0;
  for (double r : ranks) m += r / 4.0;
  for (double r : ranks) v += (r - m) * (r - m) / 4.0;
  a.update(m, v, 4.0);
  b.update(ranks);
  EXPECT_NEAR(a.mean, b.mean, 1e-15);
  EXPECT_NEAR(a.var, b.var, 1e-14);
}

TEST(BcoPairRunning, TrlSequenceOverBatchesMatchesNaive) {
  std::mt19937_64 rng(202);
  const pt::loss::preference_options o{.beta = 0.2};
  pt::pref::running_moments state;
  naive_moments ns;
  for (int batch = 0; batch < 4; ++batch) {
    const pair_data d = make_data(rng, 5, 0, 6, batch == 2);
    // TRL: rewards → running.update(mean) → δ̄ = running.mean → loss.
    const double x = bco::batch_reward_mean(d.inputs(), o);
    const naive_out pre = naive(d, 0.2, 0.0);
    ASSERT_NEAR(x, pre.batch_mean, 1e-13);
    state.update(x);
    ns.update({pre.batch_mean});
    ASSERT_NEAR(state.mean, ns.mean, 1e-13);
    std::vector<double> rc(5, kNaN), rr(5, kNaN), pl(5, kNaN);
    const auto r = bco::compute(d.inputs(), state.mean, o, {{}, {}, pl, rc, rr});
    const naive_out n = naive(d, 0.2, ns.mean);
    EXPECT_NEAR(r.loss, n.loss, 1e-12) << batch;
    double plsum = 0;
    for (std::size_t i = 0; i < 5; ++i) {
      EXPECT_NEAR(rc[i], n.rc[i], 1e-12);  // unshifted rewards
      EXPECT_NEAR(rr[i], n.rr[i], 1e-12);
      plsum += pl[i];
    }
    EXPECT_NEAR(plsum / 5.0, r.loss, 1e-13);
    double mc = 0;
    for (double v : n.rc) mc += v / 5.0;
    EXPECT_NEAR(r.chosen_reward, mc, 1e-12);
    check_gradient_fixed_shift<bco>(d, state.mean, o);
  }
}

TEST(BcoPairRunning, ZeroShiftIsTheHeadLinkAndShiftIsLikeAReferenceMove) {
  std::mt19937_64 rng(203);
  const pair_data d = make_data(rng, 6, 1, 7, true);
  const pt::loss::preference_options o{.beta = 0.1};
  std::vector<double> gc(d.chosen.logprobs.size()), gr(d.rejected.logprobs.size());
  std::vector<double> hc(gc.size()), hr(gr.size());
  const auto a = bco::compute(d.inputs(), 0.0, o, {gc, gr});
  const auto b = pt::algo::bco_pair::compute(d.inputs(), o, {hc, hr});
  EXPECT_EQ(a.loss, b.loss);
  for (std::size_t t = 0; t < gc.size(); ++t) EXPECT_EQ(gc[t], hc[t]);
  for (std::size_t t = 0; t < gr.size(); ++t) EXPECT_EQ(gr[t], hr[t]);
  // A positive δ̄ raises the chosen term and lowers the rejected one; the loss changes.
  const auto s = bco::compute(d.inputs(), 0.7, o);
  EXPECT_NEAR(s.loss, naive(d, 0.1, 0.7).loss, 1e-12);
  EXPECT_GT(std::fabs(s.loss - a.loss), 1e-3);
  EXPECT_NEAR(s.reward_margin, a.reward_margin, 1e-12);
}

TEST(BcoPairRunning, ReferenceFreeAndPairWeights) {
  std::mt19937_64 rng(204);
  pair_data d = make_data(rng, 4, 1, 6, false);
  const pt::loss::preference_options o{.beta = 0.05};
  using free = pt::loss::bco_pair_running_mean<pt::pref::reference_free>;
  const double x = free::batch_reward_mean(d.inputs(false), o);
  EXPECT_NEAR(x, naive(d, 0.05, 0.0, false).batch_mean, 1e-13);
  EXPECT_NEAR(free::compute(d.inputs(false), x, o).loss, naive(d, 0.05, x, false).loss, 1e-12);
  check_gradient_fixed_shift<free>(d, x, o, false);
  EXPECT_NE(free::name().find("reference_free"), std::string::npos);
  d.weights = {0.5, 0.0, 2.0, 1.25};
  EXPECT_NEAR(bco::compute(d.inputs(), -0.3, o).loss, naive(d, 0.05, -0.3).loss, 1e-12);
  check_gradient_fixed_shift<bco>(d, -0.3, o);
}

TEST(BcoPairRunning, FloatMatchesDouble) {
  std::mt19937_64 rng(205);
  const pair_data d = make_data(rng, 4, 1, 6, true);
  const float_inputs f(d);
  std::vector<float> gc(f.chosen.size()), gr(f.rejected.size());
  std::vector<double> hc(f.chosen.size()), hr(f.rejected.size());
  const auto a = bco::compute(f.in, 0.4, {}, pt::loss::preference_outputs<float>{gc, gr});
  const auto b = bco::compute(d.inputs(), 0.4, {}, {hc, hr});
  EXPECT_NEAR(a.loss, b.loss, 1e-5 * (1 + std::fabs(b.loss)));
  for (std::size_t t = 0; t < gc.size(); ++t) EXPECT_NEAR(gc[t], hc[t], 1e-6);
  for (std::size_t t = 0; t < gr.size(); ++t) EXPECT_NEAR(gr[t], hr[t], 1e-6);
  EXPECT_NEAR(bco::batch_reward_mean(f.in, {}), bco::batch_reward_mean(d.inputs(), {}), 1e-5);
}

TEST(BcoPairRunning, EmptyBatchAndHugeShifts) {
  pair_data empty;
  EXPECT_EQ(bco::batch_reward_mean(empty.inputs(), {}), 0.0);
  const auto e = bco::compute(empty.inputs(), 3.0, {});
  EXPECT_EQ(e.loss, 0.0);
  EXPECT_EQ(e.chosen_reward, 0.0);  // no pairs: no shifted mean reported

  const pair_data d = single_tokens({-1.0, -2.0}, {-1.5, -0.5}, {-1.2, -1.0}, {-1.0, -1.0});
  for (double shift : {-1e4, 1e4, -50.0, 50.0}) {
    std::vector<double> gc(2), gr(2);
    const auto r = bco::compute(d.inputs(), shift, {.beta = 1.0}, {gc, gr});
    EXPECT_TRUE(std::isfinite(r.loss)) << shift;
    EXPECT_NEAR(r.loss, shift > 0 ? shift : -shift, 1e-6 * std::fabs(shift) + 3.0);
    for (double g : {gc[0], gc[1], gr[0], gr[1]}) {
      EXPECT_TRUE(std::isfinite(g));
      EXPECT_LE(std::fabs(g), 0.5 + 1e-12);  // β/pairs bounds each pair's slope
    }
  }
}

TEST(BcoPairRunning, BadInputThrowsAndLeavesEverythingUntouched) {
  std::mt19937_64 rng(206);
  const pair_data d = make_data(rng, 3, 1, 4, false);
  std::vector<double> gc(d.chosen.logprobs.size(), 7.0), gr(d.rejected.logprobs.size(), 7.0);
  std::vector<double> pl(3, 7.0), rc(3, 7.0);
  const pt::loss::preference_outputs<double> out{gc, gr, pl, rc};
  auto untouched = [&] {
    for (const auto* v : {&gc, &gr, &pl, &rc})
      for (double x : *v) EXPECT_EQ(x, 7.0);
  };
  expect_error([&] { bco::compute(d.inputs(), kNaN, {}, out); }, "reward_shift");
  untouched();
  expect_error([&] { bco::compute(d.inputs(), 0.1, {.beta = -1.0}, out); }, "options.beta");
  untouched();
  auto in = d.inputs();
  in.reference_chosen = {};
  expect_error([&] { bco::compute(in, 0.1, {}, out); }, "reference_chosen");
  untouched();
  expect_error([&] { bco::batch_reward_mean(in, {}); }, "reference_chosen");
  std::vector<double> short_pl(2);
  expect_error(
      [&] {
        bco::compute(d.inputs(), 0.1, {}, pt::loss::preference_outputs<double>{gc, gr, short_pl});
      },
      "pair_losses");
  untouched();

  pt::pref::running_moments s;
  s.update(0.5);
  const pt::pref::running_moments before = s;
  auto same = [&] { EXPECT_EQ(std::memcmp(&s, &before, sizeof s), 0); };
  expect_error([&] { s.update(kNaN); }, "batch_mean");
  same();
  expect_error([&] { s.update(1.0, -1.0); }, "batch_var");
  same();
  expect_error([&] { s.update(1.0, 0.0, 0.0); }, "batch_count");
  same();
  pt::pref::running_moments broken;
  broken.var = -1.0;
  expect_error([&] { broken.update(1.0); }, "state");
}

}  // namespace
