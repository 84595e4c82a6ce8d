// loss::value_clipped: ½·agg(max((v−R)², (clip(v, V_old ± c) − R)²)).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "posttrain/loss/value.hpp"

namespace {

namespace pt = posttrain;
using pt::index_t;
using vl = pt::loss::value_clipped<pt::agg::token_mean>;

struct data {
  std::vector<double> v, vo, r;
  std::vector<float> m;
  std::vector<index_t> off{0};
};

data make(unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  data d;
  for (int i = 0; i < 4; ++i) {
    for (int t = 0; t < 5; ++t) {
      d.vo.push_back(u(g));
      double v = d.vo.back() + 1.2 * u(g);
      d.v.push_back(v);
      d.r.push_back(u(g));
      d.m.push_back(t == 2 ? 0.f : 1.f);
    }
    d.off.push_back(d.off.back() + 5);
  }
  // keep away from clip boundaries (finite differences)
  for (std::size_t t = 0; t < d.v.size(); ++t)
    for (double c : {0.2, 0.5})
      if (std::abs(std::abs(d.v[t] - d.vo[t]) - c) < 1e-3) d.v[t] += 5e-3;
  return d;
}

double naive(const data& d, double c) {
  double s = 0, w = 0;
  for (std::size_t t = 0; t < d.v.size(); ++t) {
    if (d.m[t] == 0) continue;
    const double vc = std::min(std::max(d.v[t], d.vo[t] - c), d.vo[t] + c);
    s += 0.5 * std::max((d.v[t] - d.r[t]) * (d.v[t] - d.r[t]), (vc - d.r[t]) * (vc - d.r[t]));
    w += 1;
  }
  return s / w;
}

pt::value_inputs<double> in_of(const data& d) { return {d.v, d.vo, d.r, d.m, d.off}; }

TEST(ValueClipped, MatchesNaiveAndFiniteDifferences) {
  for (auto o : {pt::value_conventions::verl, pt::value_conventions::trl}) {
    data d = make(51);
    std::vector<double> g(d.v.size(), 9.0);
    const auto res = vl::compute(in_of(d), o, std::span<double>(g));
    EXPECT_NEAR(res.loss, o.coef * naive(d, o.clip), 1e-13);
    EXPECT_GT(res.clip_fraction, 0.0);
    for (std::size_t t = 0; t < d.v.size(); ++t) {
      if (d.m[t] == 0) {
        EXPECT_EQ(g[t], 0.0);
        continue;
      }
      data p = d, m = d;
      p.v[t] += 1e-6, m.v[t] -= 1e-6;
      const double fd = o.coef * (naive(p, o.clip) - naive(m, o.clip)) / 2e-6;
      EXPECT_NEAR(g[t], fd, 1e-7);
    }
  }
}

TEST(ValueClipped, NoClipAndMaskedNaN) {
  data d = make(52);
  d.v[2] = std::nan("");  // masked
  pt::value_options o{std::numeric_limits<double>::infinity(), 1.0};
  std::vector<double> g(d.v.size());
  const auto res = vl::compute(in_of(d), o, std::span<double>(g));
  double s = 0, w = 0;
  for (std::size_t t = 0; t < d.v.size(); ++t)
    if (d.m[t] != 0) s += 0.5 * (d.v[t] - d.r[t]) * (d.v[t] - d.r[t]), w += 1;
  EXPECT_NEAR(res.loss, s / w, 1e-13);
  EXPECT_EQ(res.clip_fraction, 0.0);
  for (double x : g) EXPECT_TRUE(std::isfinite(x));
}

TEST(ValueClipped, MicroBatchInvarianceSeqMean) {
  using sm = pt::loss::value_clipped<pt::agg::seq_mean_token_mean>;
  data d = make(53);
  std::vector<double> g(d.v.size()), gs(d.v.size());
  const auto full = sm::compute(in_of(d), {}, std::span<double>(g));
  pt::agg_normalizer n{{}, 4.0, {}};
  double total = 0;
  for (int h = 0; h < 2; ++h) {
    const std::size_t b0 = h * 10;
    std::vector<index_t> off{0, 5, 10};
    pt::value_inputs<double> in{std::span<const double>(d.v).subspan(b0, 10),
                                std::span<const double>(d.vo).subspan(b0, 10),
                                std::span<const double>(d.r).subspan(b0, 10),
                                std::span<const float>(d.m).subspan(b0, 10), off};
    total += sm::compute(in, {}, std::span<double>(gs).subspan(b0, 10), n).loss;
  }
  EXPECT_NEAR(total, full.loss, 1e-14);
  for (std::size_t t = 0; t < g.size(); ++t) EXPECT_NEAR(gs[t], g[t], 1e-15);
}

TEST(ValueClipped, ValidationLeavesOutputUntouched) {
  data d = make(54);
  std::vector<double> g(d.v.size(), 7.0);
  auto bad = [&](pt::value_inputs<double> in, pt::value_options o) {
    EXPECT_THROW(vl::compute(in, o, std::span<double>(g)), pt::error);
    for (double x : g) EXPECT_EQ(x, 7.0);
  };
  { auto in = in_of(d); in.returns = in.returns.first(3); bad(in, {}); }
  { auto in = in_of(d); in.old_values = {}; bad(in, {}); }
  bad(in_of(d), {-0.1, 1.0});
  bad(in_of(d), {std::nan(""), 1.0});
  bad(in_of(d), {0.2, std::nan("")});
  std::vector<double> small(3);
  EXPECT_THROW(vl::compute(in_of(d), {}, std::span<double>(small)), pt::error);
}

}  // namespace
