// Tests of KTO (loss/kto.hpp via algo::kto, algo::kto_apo_zero_unpaired, algo::kto_vanilla_paired):
// TRL's unpaired formulas and OpenRLHF's VanillaKTOLoss written naively in float64, ∂loss/∂ℓ by
// central differences (z0 held fixed: it is detached), the z0 helpers (clamp, global count),
// extremes, empty completions, micro-batch invariance, float inputs, validation errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "posttrain/core/error.hpp"
#include "posttrain/loss/algorithms_offline.hpp"

namespace pt = posttrain;
namespace algo = posttrain::algo;
using pt::index_t;
using pt::loss::kto_inputs;
using pt::loss::kto_normalizer;
using pt::loss::kto_options;
using pt::loss::kto_outputs;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double sig(double x) { return 1.0 / (1.0 + std::exp(-x)); }

struct data {
  std::vector<index_t> off{0};
  std::vector<float> mask;
  std::vector<double> lp, ref;
  std::vector<std::uint8_t> label;
  double z0 = 0.0;
  kto_inputs<double> in() const { return {{off, mask}, lp, ref, label, z0}; }
};

data make(std::mt19937_64& rng, int b, int max_len) {
  std::uniform_int_distribution<int> len(0, max_len);
  std::uniform_real_distribution<double> u(0, 1), lp(-2, -0.05);
  data d;
  for (int i = 0; i < b; ++i) {
    const int n = len(rng);
    double s = 0;
    for (int t = 0; t < n; ++t) {
      const float m = u(rng) < 0.2 ? 0.0f : (u(rng) < 0.2 ? 0.5f : 1.0f);
      d.mask.push_back(m);
      const double v = m == 0 ? kNaN : lp(rng);
      d.lp.push_back(v);
      if (m != 0) s += m * v;
    }
    d.off.push_back(static_cast<index_t>(d.lp.size()));
    d.ref.push_back(s + (u(rng) - 0.5) * 6);
    d.label.push_back(u(rng) < 0.6 ? 1 : 0);
  }
  d.z0 = 0.7;
  return d;
}

double delta(const data& d, int i) {
  double s = 0;
  for (index_t t = d.off[i]; t < d.off[i + 1]; ++t)
    if (d.mask[t] != 0) s += d.mask[t] * d.lp[t];
  return s - d.ref[i];
}

// TRL: mean(concat(λ_D·L_D, λ_U·L_U)).
double naive(const data& d, const kto_options& o, bool apo) {
  std::vector<double> all;
  for (std::size_t i = 0; i + 1 < d.off.size(); ++i) {
    const double D = delta(d, static_cast<int>(i));
    if (d.label[i]) {
      all.push_back(o.desirable_weight *
                    (apo ? 1 - sig(o.beta * D) : 1 - sig(o.beta * (D - d.z0))));
    }
  }
  for (std::size_t i = 0; i + 1 < d.off.size(); ++i) {
    const double D = delta(d, static_cast<int>(i));
    if (!d.label[i]) {
      all.push_back(o.undesirable_weight * (apo ? sig(o.beta * D) : 1 - sig(o.beta * (d.z0 - D))));
    }
  }
  double s = 0;
  for (double v : all) s += v;
  return all.empty() ? 0.0 : s / static_cast<double>(all.size());
}

template <class Comp>
void check(const data& d0, const kto_options& o, bool apo) {
  data d = d0;
  std::vector<double> g(d.lp.size(), kNaN);
  const auto r = Comp::compute(d.in(), o, kto_outputs<double>{g});
  EXPECT_NEAR(r.loss, naive(d, o, apo), 1e-13);
  const double h = 1e-6;
  for (std::size_t t = 0; t < d.lp.size(); ++t) {
    if (d.mask[t] == 0) {
      EXPECT_EQ(g[t], 0.0);
      continue;
    }
    const double x = d.lp[t];
    d.lp[t] = x + h;
    const double up = naive(d, o, apo);
    d.lp[t] = x - h;
    const double dn = naive(d, o, apo);
    d.lp[t] = x;
    EXPECT_NEAR(g[t], (up - dn) / (2 * h), 1e-8);
  }
}

}  // namespace

TEST(Kto, UnpairedMatchesTrlAndFiniteDifferences) {
  std::mt19937_64 rng(51);
  for (int rep = 0; rep < 3; ++rep) {
    const data d = make(rng, 8, 6);
    check<algo::kto>(d, {}, false);
    check<algo::kto>(d, {.beta = 0.5, .desirable_weight = 1.33, .undesirable_weight = 0.7}, false);
    check<algo::kto_apo_zero_unpaired>(d, {.beta = 0.3, .undesirable_weight = 2.0}, true);
  }
}

TEST(Kto, RewardsCountsAndInvariants) {
  std::mt19937_64 rng(52);
  data d = make(rng, 6, 4);
  std::vector<double> el(6), rw(6);
  const auto r = algo::kto::compute(d.in(), {.beta = 0.2}, kto_outputs<double>{{}, el, rw});
  double nd = 0, sd = 0, su = 0;
  for (int i = 0; i < 6; ++i) {
    EXPECT_NEAR(rw[i], 0.2 * delta(d, i), 1e-14);
    (d.label[i] ? sd : su) += rw[i];
    nd += d.label[i];
  }
  EXPECT_EQ(r.desirable_count, nd);
  EXPECT_EQ(r.undesirable_count, 6 - nd);
  ASSERT_GT(nd, 0);
  ASSERT_LT(nd, 6);
  EXPECT_NEAR(r.desirable_reward, sd / nd, 1e-14);
  EXPECT_NEAR(r.undesirable_reward, su / (6 - nd), 1e-14);
  // Δ = z0 gives 1/2 for either label.
  std::vector<index_t> off{0, 0, 0};
  std::vector<double> ref{-0.7, -0.7};
  std::vector<std::uint8_t> lab{1, 0};
  kto_inputs<double> in{{off, {}}, {}, ref, lab, 0.7};
  EXPECT_NEAR(algo::kto::compute(in).loss, 0.5, 1e-15);
}

TEST(Kto, ReferencePointHelpers) {
  std::vector<double> pk{-3, -1, -2}, rk{-4, -3, -2};
  EXPECT_NEAR(pt::loss::kto_kl_reference(std::span<const double>(pk), std::span<const double>(rk)),
              1.0, 1e-15);
  EXPECT_EQ(pt::loss::kto_kl_reference(std::span<const double>(rk), std::span<const double>(pk)),
            0.0);  // clamped at 0
  // Two ranks with unequal batches: the global mean, not the mean of means.
  const auto a = pt::loss::kto_kl_partial(std::span<const double>(pk).subspan(0, 1),
                                          std::span<const double>(rk).subspan(0, 1));
  const auto b = pt::loss::kto_kl_partial(std::span<const double>(pk).subspan(1),
                                          std::span<const double>(rk).subspan(1));
  EXPECT_NEAR(pt::loss::kto_reference_point(a.sum + b.sum, a.count + b.count), 1.0, 1e-15);
  EXPECT_EQ(pt::loss::kto_reference_point(0.0, 0.0), 0.0);
  EXPECT_THROW(pt::loss::kto_reference_point(NAN, 1.0), pt::error);
  EXPECT_THROW(pt::loss::kto_reference_point(1.0, -1.0), pt::error);
  EXPECT_THROW(
      pt::loss::kto_kl_partial(std::span<const double>(pk), std::span<const double>(rk).subspan(1)),
      pt::error);
}

TEST(Kto, ExtremesEmptyAndFloat) {
  std::vector<index_t> off{0, 1, 2, 2};
  std::vector<float> mask{1, 1};
  std::vector<double> lp{-1e4, -1e-3}, ref{0, -1e4, 5}, g(2);
  std::vector<std::uint8_t> lab{1, 0, 1};
  kto_inputs<double> in{{off, mask}, lp, ref, lab, 1e4};
  const auto r = algo::kto::compute(in, {.beta = 1.0}, kto_outputs<double>{g});
  EXPECT_TRUE(std::isfinite(r.loss));
  EXPECT_TRUE(std::isfinite(g[0]) && std::isfinite(g[1]));
  std::vector<float> lpf{-1e4f, -1e-3f}, reff{0, -1e4f, 5}, gf(2);
  kto_inputs<float> inf{{off, mask}, lpf, reff, lab, 1e4};
  EXPECT_NEAR(algo::kto::compute(inf, {.beta = 1.0}, kto_outputs<float>{gf}).loss, r.loss, 1e-6);
  // No examples at all.
  std::vector<index_t> none{0};
  EXPECT_EQ(algo::kto::compute(kto_inputs<double>{{none, {}}, {}, {}, {}, 0.0}).loss, 0.0);
  // Float vs double on random data.
  std::mt19937_64 rng(53);
  const data d = make(rng, 5, 5);
  std::vector<float> f(d.lp.begin(), d.lp.end()), rf(d.ref.begin(), d.ref.end()), gg(f.size());
  std::vector<double> gd(f.size());
  const auto rd = algo::kto::compute(d.in(), {}, kto_outputs<double>{gd});
  const auto rff = algo::kto::compute(kto_inputs<float>{{d.off, d.mask}, f, rf, d.label, d.z0}, {},
                                      kto_outputs<float>{gg});
  EXPECT_NEAR(rff.loss, rd.loss, 1e-6);
  for (std::size_t t = 0; t < f.size(); ++t) EXPECT_NEAR(gg[t], gd[t], 1e-7);
}

TEST(Kto, MicroBatchInvariance) {
  std::mt19937_64 rng(54);
  const data d = make(rng, 7, 5);
  const kto_options o{.beta = 0.4, .desirable_weight = 1.2};
  std::vector<double> g(d.lp.size()), gp(d.lp.size());
  const auto full = algo::kto::compute(d.in(), o, kto_outputs<double>{g});
  double sum = 0;
  for (auto [b, e] : {std::pair<int, int>{0, 3}, {3, 3}, {3, 7}}) {
    std::vector<index_t> off;
    for (int i = b; i <= e; ++i) off.push_back(d.off[i] - d.off[b]);
    const index_t t0 = d.off[b], n = d.off[e] - t0;
    kto_inputs<double> in{{off, std::span<const float>(d.mask).subspan(t0, n)},
                          std::span<const double>(d.lp).subspan(t0, n),
                          std::span<const double>(d.ref).subspan(b, e - b),
                          std::span<const std::uint8_t>(d.label).subspan(b, e - b),
                          d.z0};
    sum += algo::kto::compute(in, o, kto_outputs<double>{std::span<double>(gp).subspan(t0, n)},
                              kto_normalizer{7})
               .loss;
  }
  EXPECT_NEAR(sum, full.loss, 1e-14);
  for (std::size_t t = 0; t < g.size(); ++t) EXPECT_NEAR(gp[t], g[t], 1e-16);
}

TEST(Kto, ValidationLeavesOutputsUntouched) {
  std::mt19937_64 rng(55);
  data d = make(rng, 4, 4);
  std::vector<double> g(d.lp.size(), 6.0), small(1, 6.0);
  const kto_outputs<double> out{g};
  auto bad = [&](auto mutate, kto_options o = {}, kto_normalizer n = {}) {
    data x = d;
    mutate(x);
    EXPECT_THROW(algo::kto::compute(x.in(), o, out, n), pt::error);
  };
  bad([](data& x) { x.ref.pop_back(); });
  bad([](data& x) { x.ref[0] = NAN; });
  bad([](data& x) { x.label.pop_back(); });
  bad([](data& x) { x.label[0] = 2; });
  bad([](data& x) { x.z0 = NAN; });
  bad([](data& x) { x.lp.pop_back(); });
  bad([](data& x) { x.off.back() += 1; });
  bad([](data&) {}, {.beta = 0});
  bad([](data&) {}, {.desirable_weight = -1});
  bad([](data&) {}, {.undesirable_weight = NAN});
  bad([](data&) {}, {}, {-1});
  EXPECT_THROW(algo::kto::compute(d.in(), {}, kto_outputs<double>{small}), pt::error);
  for (double v : g) EXPECT_EQ(v, 6.0);
}

// OpenRLHF VanillaKTOLoss on pairs.
TEST(KtoVanilla, MatchesOpenRlhfAndFiniteDifferences) {
  std::mt19937_64 rng(56);
  data c = make(rng, 5, 5), r = make(rng, 5, 5);
  auto inputs = [&](const data& cc, const data& rr) {
    pt::loss::preference_inputs<double> in;
    in.batch.chosen = {cc.off, cc.mask};
    in.batch.rejected = {rr.off, rr.mask};
    in.chosen_logprobs = cc.lp;
    in.rejected_logprobs = rr.lp;
    in.reference_chosen = cc.ref;
    in.reference_rejected = rr.ref;
    return in;
  };
  const double beta = 0.3;
  // KL held at the values of the unperturbed batch (detached).
  double mc = 0, mr = 0;
  for (int p = 0; p < 5; ++p) {
    mc += delta(c, p) / 5;
    mr += delta(r, p) / 5;
  }
  const double klc = std::max(mc, 0.0), klr = std::max(mr, 0.0);
  auto naive_v = [&](const data& cc, const data& rr) {
    double s = 0;
    for (int p = 0; p < 5; ++p)
      s += (1 - sig(beta * (delta(cc, p) - klr))) + (1 - sig(beta * (klc - delta(rr, p))));
    return s / 10;
  };
  std::vector<double> gc(c.lp.size()), gr(r.lp.size());
  const auto res = algo::kto_vanilla_paired::compute(inputs(c, r), {.beta = beta},
                                                     pt::loss::preference_outputs<double>{gc, gr});
  EXPECT_NEAR(res.loss, naive_v(c, r), 1e-14);
  EXPECT_NEAR(res.kl_chosen, klc, 1e-14);
  EXPECT_NEAR(res.kl_rejected, klr, 1e-14);
  const double h = 1e-6;
  for (data* s : {&c, &r})
    for (std::size_t t = 0; t < s->lp.size(); ++t) {
      const double g = s == &c ? gc[t] : gr[t];
      if (s->mask[t] == 0) {
        EXPECT_EQ(g, 0.0);
        continue;
      }
      const double x = s->lp[t];
      s->lp[t] = x + h;
      const double up = naive_v(c, r);
      s->lp[t] = x - h;
      const double dn = naive_v(c, r);
      s->lp[t] = x;
      EXPECT_NEAR(g, (up - dn) / (2 * h), 1e-8);
    }
  // Given global means override the local ones (and are clamped at 0).
  const auto ov = algo::kto_vanilla_paired::compute(
      inputs(c, r), {.beta = beta, .mean_delta_chosen = -5.0, .mean_delta_rejected = 2.0});
  EXPECT_EQ(ov.kl_chosen, 0.0);
  EXPECT_EQ(ov.kl_rejected, 2.0);
  // Validation: missing reference, bad beta; outputs untouched.
  std::vector<double> keep(c.lp.size(), 8.0);
  auto in = inputs(c, r);
  in.reference_chosen = {};
  EXPECT_THROW(
      algo::kto_vanilla_paired::compute(in, {}, pt::loss::preference_outputs<double>{keep}),
      pt::error);
  EXPECT_THROW(algo::kto_vanilla_paired::compute(inputs(c, r), {.beta = -1.0},
                                                 pt::loss::preference_outputs<double>{keep}),
               pt::error);
  EXPECT_THROW(algo::kto_vanilla_paired::compute(inputs(c, r), {.mean_delta_chosen = NAN},
                                                 pt::loss::preference_outputs<double>{keep}),
               pt::error);
  for (double v : keep) EXPECT_EQ(v, 8.0);
}
