// Tests of the block evaluation of loss::reward_model (backend/cpu/reward_model.hpp): the
// vectorized logistic link against long double over the whole range of d (±0, where 1 + e^{−|d|}
// rounds to 1, exp's underflow, ±1e4), batches that end inside, at and just past a block (values,
// per-pair losses and gradients against a naive float64 form, with margins, edited responses
// behind a mask with NaN rewards, centring), a pair's bits independent of its position in the
// batch, and the per-comparison path of a link that is not logistic.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "posttrain/backend/cpu/reward_model.hpp"
#include "posttrain/loss/reward_model.hpp"

namespace pt = posttrain;
namespace cpu = posttrain::backend::cpu;
using pt::index_t;
using pt::loss::reward_model_inputs;
using pt::loss::reward_model_normalizer;
using pt::loss::reward_model_outputs;
using bt = pt::loss::reward_model<pt::rm::bradley_terry>;

namespace {

// log(1 + e^{−d}) and −1/(1 + e^{d}) in long double.
long double ref_loss(long double d) {
  return d > 0 ? std::log1p(std::exp(-d)) : -d + std::log1p(std::exp(d));
}
long double ref_slope(long double d) { return -1.0L / (1.0L + std::exp(d)); }

// A link that is not logistic, so the backend calls evaluate per comparison: squared hinge.
struct squared_hinge {
  static constexpr const char* name = "squared_hinge";
  static constexpr bool takes_margin = true;
  template <class T>
  static pt::rm::link_value<T> evaluate(T d) {
    const T g = d < T(1) ? T(1) - d : T(0);
    return {g * g, T(-2) * g};
  }
};

struct data {
  std::vector<double> rc, rr, margin, re;
  std::vector<float> emask;
  reward_model_inputs<double> in() const { return {rc, rr, margin, re, emask}; }
};

data make(std::mt19937_64& rng, index_t n) {
  std::normal_distribution<double> g(0.0, 3.0);
  data d;
  for (index_t i = 0; i < n; ++i) {
    d.rc.push_back(g(rng));
    d.rr.push_back(g(rng));
    d.margin.push_back(std::abs(g(rng)) * 0.3);
    const bool has = i % 3 != 1;
    d.emask.push_back(has ? 1.0f : 0.0f);
    d.re.push_back(has ? g(rng) : std::numeric_limits<double>::quiet_NaN());
  }
  return d;
}

// Naive per-pair loss and gradients for a link (l, dl).
template <class L, class DL>
void naive_pair(const data& d, std::size_t i, double c, L l, DL dl, double& loss, double& gc,
                double& gr, double& ge) {
  const double dcr = d.rc[i] - d.rr[i] - d.margin[i];
  loss = l(dcr) + c * (d.rc[i] + d.rr[i]) * (d.rc[i] + d.rr[i]);
  gc = dl(dcr) + 2 * c * (d.rc[i] + d.rr[i]);
  gr = -dl(dcr) + 2 * c * (d.rc[i] + d.rr[i]);
  ge = 0;
  if (d.emask[i] != 0.0f) {
    const double dec = d.re[i] - d.rc[i], der = d.re[i] - d.rr[i];
    loss += l(dec) + l(der);
    gc -= dl(dec);
    gr -= dl(der);
    ge = dl(dec) + dl(der);
  }
}

template <class Loss, class L, class DL>
void check_against_naive(index_t n, L l, DL dl) {
  std::mt19937_64 rng(static_cast<unsigned>(n) + 40);
  const data d = make(rng, n);
  const double c = 0.02;
  const auto N = static_cast<std::size_t>(n);
  std::vector<double> gc(N), gr(N), ge(N), pl(N);
  const auto r = Loss::compute(d.in(), {c}, {gc, gr, ge, pl});
  double total = 0, ranking = 0, centering = 0;
  for (std::size_t i = 0; i < N; ++i) {
    double loss, wc, wr, we;
    naive_pair(d, i, c, l, dl, loss, wc, wr, we);
    total += loss;
    centering += (d.rc[i] + d.rr[i]) * (d.rc[i] + d.rr[i]);
    ranking += loss - c * (d.rc[i] + d.rr[i]) * (d.rc[i] + d.rr[i]);
    EXPECT_NEAR(pl[i], loss, 1e-12 * (1 + std::abs(loss))) << "n " << n << " i " << i;
    EXPECT_NEAR(gc[i], wc / static_cast<double>(n), 1e-14) << "n " << n << " i " << i;
    EXPECT_NEAR(gr[i], wr / static_cast<double>(n), 1e-14) << "n " << n << " i " << i;
    EXPECT_NEAR(ge[i], we / static_cast<double>(n), 1e-14) << "n " << n << " i " << i;
    if (d.emask[i] == 0.0f) {
      EXPECT_EQ(ge[i], 0.0);
    }
  }
  const double P = static_cast<double>(n);
  EXPECT_NEAR(r.loss, total / P, 1e-12 * (1 + std::abs(total / P))) << "n " << n;
  EXPECT_NEAR(r.ranking_loss, ranking / P, 1e-12 * (1 + std::abs(ranking / P)));
  EXPECT_NEAR(r.centering, centering / P, 1e-12 * (1 + centering / P));
}

}  // namespace

TEST(RewardModelBlocks, LogisticBlockAgainstLongDouble) {
  std::vector<double> ds{0.0,    -0.0,   1e-300, -1e-300, 1e-17, -1e-17, 1e-8,  -1e-8,
                         0.5,    -0.5,   1.0,    -1.0,    5.0,   -5.0,   20.0,  -20.0,
                         36.0,   -36.0,  37.5,   -37.5,   40.0,  -40.0,  700.0, -700.0,
                         709.0,  -709.0, 710.0,  -710.0,  745.0, -745.0, 1e4,   -1e4};
  std::mt19937_64 rng(41);
  std::uniform_real_distribution<double> u(-50.0, 50.0);
  while (ds.size() < 2 * static_cast<std::size_t>(cpu::rm_block) + 3) ds.push_back(u(rng));
  for (std::size_t k0 = 0; k0 < ds.size(); k0 += static_cast<std::size_t>(cpu::rm_block)) {
    cpu::rm_block_array d = cpu::rm_block_array::Zero(), loss, slope;
    const std::size_t n = std::min(ds.size() - k0, static_cast<std::size_t>(cpu::rm_block));
    for (std::size_t i = 0; i < n; ++i) d[static_cast<index_t>(i)] = ds[k0 + i];
    cpu::logistic_block(d, loss, slope);
    for (std::size_t i = 0; i < n; ++i) {
      const auto k = static_cast<index_t>(i);
      const long double x = ds[k0 + i];
      const double wl = static_cast<double>(ref_loss(x)), ws = static_cast<double>(ref_slope(x));
      // a few ulp, and exp's floor near 1e-308 where e^{−|d|} underflows
      EXPECT_NEAR(loss[k], wl, 4e-16 * std::abs(wl) + 1e-300) << "d " << ds[k0 + i];
      EXPECT_NEAR(slope[k], ws, 4e-16 * std::abs(ws) + 1e-300) << "d " << ds[k0 + i];
      EXPECT_TRUE(std::isfinite(loss[k]) && std::isfinite(slope[k]));
    }
  }
}

TEST(RewardModelBlocks, BatchesAroundBlockBoundariesMatchNaive) {
  auto l = [](double d) { return std::log(1.0 + std::exp(-d)); };
  auto dl = [](double d) { return -1.0 / (1.0 + std::exp(d)); };
  const index_t B = cpu::rm_block;
  for (index_t n : {index_t(1), index_t(7), B - 1, B, B + 1, 3 * B + 5})
    check_against_naive<bt>(n, l, dl);
}

TEST(RewardModelBlocks, NonLogisticLinkEvaluatesPerComparison) {
  static_assert(!cpu::is_logistic_link_v<squared_hinge>);
  static_assert(cpu::is_logistic_link_v<pt::rm::bradley_terry> &&
                cpu::is_logistic_link_v<pt::rm::log_exp>);
  auto l = [](double d) { return d < 1 ? (1 - d) * (1 - d) : 0.0; };
  auto dl = [](double d) { return d < 1 ? -2 * (1 - d) : 0.0; };
  for (index_t n : {index_t(5), cpu::rm_block + 3})
    check_against_naive<pt::loss::reward_model<squared_hinge>>(n, l, dl);
}

// Pair p alone and pair p inside a batch of 600 (another block, another lane): the same bits.
TEST(RewardModelBlocks, PairValuesIndependentOfPosition) {
  std::mt19937_64 rng(42);
  const index_t n = 600;
  const data d = make(rng, n);
  const auto N = static_cast<std::size_t>(n);
  std::vector<float> fc(d.rc.begin(), d.rc.end()), fr(d.rr.begin(), d.rr.end());
  std::vector<double> gc(N), gr(N), ge(N), pl(N);
  std::vector<float> fgc(N), fgr(N);
  const reward_model_normalizer norm{10.0};
  bt::compute(d.in(), {0.05}, {gc, gr, ge, pl}, norm);
  bt::compute(reward_model_inputs<float>{fc, fr}, {}, {fgc, fgr}, norm);
  for (index_t p : {index_t(0), index_t(1), index_t(255), index_t(256), index_t(259), n - 1}) {
    const auto k = static_cast<std::size_t>(p);
    auto one = [&](const std::vector<double>& v) {
      return v.empty() ? std::span<const double>() : std::span<const double>(&v[k], 1);
    };
    double c1, r1, e1, l1;
    bt::compute(reward_model_inputs<double>{one(d.rc), one(d.rr), one(d.margin), one(d.re),
                                            std::span<const float>(&d.emask[k], 1)},
                {0.05}, {{&c1, 1}, {&r1, 1}, {&e1, 1}, {&l1, 1}}, norm);
    EXPECT_EQ(c1, gc[k]) << "pair " << p;
    EXPECT_EQ(r1, gr[k]) << "pair " << p;
    EXPECT_EQ(e1, ge[k]) << "pair " << p;
    EXPECT_EQ(l1, pl[k]) << "pair " << p;
    float fc1, fr1;
    bt::compute(reward_model_inputs<float>{std::span<const float>(&fc[k], 1),
                                           std::span<const float>(&fr[k], 1)},
                {}, {{&fc1, 1}, {&fr1, 1}}, norm);
    EXPECT_EQ(fc1, fgc[k]) << "pair " << p;
    EXPECT_EQ(fr1, fgr[k]) << "pair " << p;
  }
}
