// The fused pass of loss::value_clipped (loss/value.hpp: aggregation weights from the mask, then
// one pass writing dloss/dv) against the unfused composition it replaced: per-token loss and
// derivative arrays, aggregate_loss, grad = coef·dLoss/dL·dL/dv. Same bits for divisor and
// clip_fraction; loss and every gradient element within a few ulp (bit-identical with the default
// flags; with -march=native GCC contracts a·b + c into FMAs differently in the two loops: observed
// 1 ulp of the double loss): relative 1e-6 (float) / 1e-14 (double) of max(|x|, scale), scale the
// largest |gradient| / 100 for the elements. Every aggregation mode and normaliser, float and
// double, fractional masks, empty / fully masked rows, no mask, infinite clip, zero divisor.
// The formula itself is checked against a float64 reference in tests/loss/value.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "posttrain/loss/value.hpp"

namespace {

namespace pt = posttrain;
using pt::index_t;

std::uint64_t bits(double x) { return std::bit_cast<std::uint64_t>(x); }

template <class T>
bool close(double got, double want, double scale) {
  if (!std::isfinite(want) || !std::isfinite(got)) return bits(got) == bits(want);
  return std::abs(got - want) <= (sizeof(T) == 4 ? 1e-6 : 1e-14) * std::max(std::abs(want), scale);
}

// The composition before fusion (the oracle).
template <class A, class T>
pt::value_result unfused(const pt::value_inputs<T>& in, const pt::value_options& o,
                         std::span<T> grad, const pt::agg_normalizer& norm,
                         const pt::agg_options& ao) {
  const std::size_t n = in.values.size();
  std::vector<double> loss(n, 0.0), dl(n, 0.0), agg_grad(n, 0.0);
  double sum_m = 0.0, sum_clip = 0.0;
  for (std::size_t t = 0; t < n; ++t) {
    const double m = in.mask.empty() ? 1.0 : static_cast<double>(in.mask[t]);
    if (m == 0.0) continue;
    const double v = in.values[t], vo = in.old_values[t], r = in.returns[t];
    const bool inside = !(v < vo - o.clip) && !(vo + o.clip < v);
    const double vc = inside ? v : (v < vo - o.clip ? vo - o.clip : vo + o.clip);
    const double a = (v - r) * (v - r), b = (vc - r) * (vc - r);
    if (b > a) {
      loss[t] = 0.5 * b;
      dl[t] = inside ? vc - r : 0.0;
      sum_clip += m;
    } else {
      loss[t] = 0.5 * a;
      dl[t] = v - r;
    }
    sum_m += m;
  }
  const pt::agg_result agg =
      pt::aggregate_loss<A>(pt::exec::host{}, std::span<const double>(loss), in.mask,
                            in.seq_offsets, norm, std::span<double>(agg_grad), ao);
  for (std::size_t t = 0; t < grad.size(); ++t)
    grad[t] = static_cast<T>(o.coef * agg_grad[t] * dl[t]);
  return {o.coef * agg.loss, agg.divisor, sum_m > 0 ? sum_clip / sum_m : 0.0};
}

struct batch {
  std::vector<double> v, vo, r;
  std::vector<float> m;
  std::vector<index_t> off{0};
};

// Rows of lengths 0..13 (every position modulo 4), fractional weights, one fully masked row.
batch make(unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> u(-1, 1);
  const float levels[] = {0.0f, 0.25f, 0.5f, 1.0f, 1.0f, 0.7f};
  std::uniform_int_distribution<int> pick(0, 5);
  batch d;
  for (int len : {5, 0, 13, 1, 9, 4, 3, 6}) {
    for (int t = 0; t < len; ++t) {
      d.vo.push_back(u(g));
      d.v.push_back(d.vo.back() + 1.2 * u(g));
      d.r.push_back(u(g));
      d.m.push_back(len == 9 ? 0.0f : levels[pick(g)]);
    }
    d.off.push_back(d.off.back() + len);
  }
  return d;
}

template <class A, class T>
void check(const batch& d, bool with_mask, const pt::value_options& o,
           const pt::agg_normalizer& norm, const pt::agg_options& ao, const std::string& ctx) {
  const std::vector<T> v(d.v.begin(), d.v.end()), vo(d.vo.begin(), d.vo.end()),
      r(d.r.begin(), d.r.end());
  pt::value_inputs<T> in{v, vo, r, {}, d.off};
  if (with_mask) in.mask = d.m;
  std::vector<T> g1(v.size(), T(-7)), g2(v.size(), T(-7));
  const auto r1 = pt::loss::value_clipped<A>::compute(pt::exec::host{}, in, o,
                                                      std::span<T>(g1), norm, ao);
  const auto r2 = unfused<A, T>(in, o, std::span<T>(g2), norm, ao);
  EXPECT_TRUE(close<T>(r1.loss, r2.loss, 0.0)) << ctx << ": " << r1.loss << " vs " << r2.loss;
  EXPECT_EQ(bits(r1.divisor), bits(r2.divisor)) << ctx;
  EXPECT_EQ(bits(r1.clip_fraction), bits(r2.clip_fraction)) << ctx;
  double scale = 0;
  for (T g : g2) scale = std::max(scale, std::abs(static_cast<double>(g)));
  for (std::size_t t = 0; t < g1.size(); ++t)
    EXPECT_TRUE(close<T>(g1[t], g2[t], scale / 100))
        << ctx << ": grad[" << t << "] " << g1[t] << " vs " << g2[t];
}

template <class A>
void check_mode(const std::string& name) {
  const batch d = make(81);
  batch masked = d;
  for (auto& m : masked.m) m = 0.0f;
  pt::agg_normalizer local;
  local.constant = 9.0;
  pt::agg_normalizer global = local;
  global.tokens = 6.5;
  global.sequences = 4.0;
  pt::agg_normalizer zero = local;
  zero.tokens = 0.0;
  zero.sequences = 0.0;
  const double inf = std::numeric_limits<double>::infinity();
  for (const pt::value_options& o : {pt::value_conventions::verl, pt::value_conventions::trl,
                                     pt::value_options{inf, -0.5}, pt::value_options{0.0, 1.0}})
    for (const auto& [nn, norm] : {std::pair{"local", local}, std::pair{"global", global},
                                   std::pair{"zero", zero}})
      for (const auto& ao : {pt::agg_conventions::verl(), pt::agg_conventions::trl()})
        for (bool with_mask : {true, false}) {
          const std::string ctx = name + " clip " + std::to_string(o.clip) + " coef " +
                                  std::to_string(o.coef) + " " + nn +
                                  (with_mask ? " mask" : " no mask");
          check<A, double>(d, with_mask, o, norm, ao, ctx + " double");
          check<A, float>(d, with_mask, o, norm, ao, ctx + " float");
          check<A, double>(masked, true, o, norm, ao, ctx + " every token masked");
        }
}

TEST(ValueFused, EveryModeMatchesUnfusedBitForBit) {
  check_mode<pt::agg::token_mean>("token_mean");
  check_mode<pt::agg::token_sum>("token_sum");
  check_mode<pt::agg::constant_divisor>("constant_divisor");
  check_mode<pt::agg::seq_mean_token_sum>("seq_mean_token_sum");
  check_mode<pt::agg::seq_mean_token_mean>("seq_mean_token_mean");
  check_mode<pt::agg::seq_mean_token_sum_norm>("seq_mean_token_sum_norm");
}

// The comparison is between non-trivial results: a clipped token exists, the loss is non-zero.
TEST(ValueFused, ComparedResultsAreNonTrivial) {
  const batch d = make(81);
  const pt::value_inputs<double> in{d.v, d.vo, d.r, d.m, d.off};
  const auto r = pt::loss::value_clipped<pt::agg::seq_mean_token_mean>::compute(
      pt::exec::host{}, in, pt::value_conventions::trl);
  EXPECT_GT(r.loss, 0.0);
  EXPECT_GT(r.clip_fraction, 0.0);
}

}  // namespace
