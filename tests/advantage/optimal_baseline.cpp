// Tests of advantage/optimal_baseline.hpp against float64 transcriptions of verl's
// compute_optimal_token_baseline_advantage and compute_multi_turn_optimal_token_baseline_advantage
// (reference section 2.1), written over padded [B, T] rows with a group id per row.
#include "posttrain/advantage/optimal_baseline.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <map>
#include <random>
#include <vector>

#include "posttrain/core/error.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/ragged.hpp"
#include "posttrain/core/workspace.hpp"

#include "core/count_allocations.hpp"

namespace pt = posttrain;
namespace adv = posttrain::advantage;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
using vec = std::vector<double>;
using fvec = std::vector<float>;
using offs = std::vector<pt::index_t>;

struct batch {
  int B = 0, T = 0;
  vec r, lp, sp, rho;  // [B*T]
  fvec m;
  std::vector<int> gid;  // group id per row (contiguous runs here)
  offs groups() const {
    offs g = {0};
    for (int i = 1; i <= B; ++i)
      if (i == B || gid[i] != gid[i - 1]) g.push_back(i);
    return g;
  }
};

// Random padded batch; rows of a group are contiguous. Masks: left-aligned responses with
// optional interior holes (multi-turn tool output), optional empty rows. Masked tokens hold NaN.
batch make_batch(const std::vector<int>& group_sizes, int T, unsigned seed, bool holes,
                 bool empty_rows) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  batch b;
  for (std::size_t g = 0; g < group_sizes.size(); ++g)
    for (int k = 0; k < group_sizes[g]; ++k) b.gid.push_back(static_cast<int>(g));
  b.B = static_cast<int>(b.gid.size());
  b.T = T;
  const std::size_t n = static_cast<std::size_t>(b.B * T);
  b.r.assign(n, kNaN);
  b.lp.assign(n, kNaN);
  b.sp.assign(n, kNaN);
  b.rho.assign(n, kNaN);
  b.m.assign(n, 0.0f);
  for (int i = 0; i < b.B; ++i) {
    int len = 1 + static_cast<int>(u(rng) * T);
    if (len > T) len = T;
    if (empty_rows && u(rng) < 0.15) len = 0;
    for (int t = 0; t < len; ++t) {
      const std::size_t k = static_cast<std::size_t>(i * T + t);
      if (holes && t > 0 && t + 1 < len && u(rng) < 0.25) continue;
      b.m[k] = 1.0f;
      b.r[k] = (t + 1 == len) ? (u(rng) < 0.5 ? 1.0 : 0.0) : 0.05 * (u(rng) - 0.5);
      // A random distribution: π_t of the sampled token and Σπ² >= π_t².
      const double pi = 0.05 + 0.9 * u(rng);
      b.lp[k] = std::log(pi);
      b.sp[k] = pi * pi + (1 - pi) * (1 - pi) * u(rng);
      b.rho[k] = 0.5 + u(rng);
    }
  }
  return b;
}

// Per row of the padded batch: the reward-to-go G_t = Σ_{u>=t} r_u·m_u and the cumulative
// weight W_t = Σ_{u<=t} m_u·(1 − 2π_u + Σπ²_u)·(ρ_u² when use_rho), both [B*T].
void returns_and_weights(const batch& b, bool use_rho, vec& G, vec& W) {
  const int B = b.B, T = b.T;
  G.assign(B * T, 0.0);
  W.assign(B * T, 0.0);
  for (int i = 0; i < B; ++i) {
    double acc = 0;
    for (int t = T - 1; t >= 0; --t) {
      const int k = i * T + t;
      acc += b.m[k] != 0 ? b.r[k] * b.m[k] : 0.0;
      G[k] = acc;
    }
    double w = 0;
    for (int t = 0; t < T; ++t) {
      const int k = i * T + t;
      if (b.m[k] != 0) {
        double x = 1 - 2 * std::exp(b.lp[k]) + b.sp[k];
        if (use_rho) x *= b.rho[k] * b.rho[k];
        w += x * b.m[k];
      }
      W[k] = w;
    }
  }
}

// verl's handle_zero_tail: when one row of a group is strictly the longest (len[j] is the length
// of rows[j]), its baseline from the second-longest length on is 0.
void zero_unique_longest_tail(const std::vector<int>& rows, const vec& len, int T, vec& base) {
  vec sorted = len;
  std::sort(sorted.begin(), sorted.end());
  const int mx = static_cast<int>(sorted.back()),
            second = static_cast<int>(sorted[sorted.size() - 2]);
  int count = 0, who = -1;
  for (std::size_t j = 0; j < rows.size(); ++j)
    if (len[j] == mx) ++count, who = rows[j];
  if (count == 1 && mx > second)
    for (int t = second; t < T; ++t) base[who * T + t] = 0.0;
}

// verl compute_optimal_token_baseline_advantage, padded rows, float64.
void ref_column(const batch& b, bool use_rho, bool zero_tail, double eps, vec& adv_out,
                vec& ret_out) {
  const int B = b.B, T = b.T;
  vec G, W, base(B * T, 0.0);
  returns_and_weights(b, use_rho, G, W);
  std::map<int, std::vector<int>> groups;
  for (int i = 0; i < B; ++i) groups[b.gid[i]].push_back(i);
  for (auto& [id, rows] : groups) {
    if (rows.size() == 1) continue;
    for (int t = 0; t < T; ++t) {
      double num = 0, den = 0;
      for (int i : rows) {
        num += G[i * T + t] * W[i * T + t] * b.m[i * T + t];
        den += W[i * T + t] * b.m[i * T + t];
      }
      for (int i : rows) base[i * T + t] = num / (den + eps);
    }
    if (zero_tail) {
      vec len;
      for (int i : rows) {
        double s = 0;
        for (int t = 0; t < T; ++t) s += b.m[i * T + t];
        len.push_back(s);
      }
      zero_unique_longest_tail(rows, len, T, base);
    }
  }
  adv_out.assign(B * T, 0.0);
  ret_out.assign(B * T, 0.0);
  for (int k = 0; k < B * T; ++k)
    if (b.m[k] != 0) adv_out[k] = (G[k] - base[k]) * b.m[k], ret_out[k] = G[k];
}

// verl compute_multi_turn_optimal_token_baseline_advantage, padded rows, float64.
void ref_tir(const batch& b, bool use_rho, bool zero_tail, double eps, vec& adv_out, vec& ret_out) {
  const int B = b.B, T = b.T;
  vec G, W;
  returns_and_weights(b, use_rho, G, W);
  // Compact each row's valid tokens to the left.
  std::vector<int> len(B, 0);
  vec cw(B * T, 0.0), cr(B * T, 0.0), cb(B * T, 0.0);
  for (int i = 0; i < B; ++i)
    for (int t = 0; t < T; ++t)
      if (b.m[i * T + t] != 0) {
        cw[i * T + len[i]] = W[i * T + t];
        cr[i * T + len[i]] = G[i * T + t];
        ++len[i];
      }
  std::map<int, std::vector<int>> groups;
  for (int i = 0; i < B; ++i)
    if (len[i] > 0) groups[b.gid[i]].push_back(i);
  for (auto& [id, rows] : groups) {
    if (rows.size() == 1) continue;
    for (int p = 0; p < T; ++p) {
      double num = 0, den = 0;
      for (int i : rows) num += cr[i * T + p] * cw[i * T + p], den += cw[i * T + p];
      for (int i : rows) cb[i * T + p] = num / (den + eps);
    }
    if (zero_tail) {
      vec l;
      for (int i : rows) l.push_back(len[i]);
      zero_unique_longest_tail(rows, l, T, cb);
    }
  }
  adv_out.assign(B * T, 0.0);
  ret_out.assign(B * T, 0.0);
  for (int i = 0; i < B; ++i) {
    int k = 0;
    for (int t = 0; t < T; ++t)
      if (b.m[i * T + t] != 0) {
        adv_out[i * T + t] = (cr[i * T + k] - cb[i * T + k]) * b.m[i * T + t];
        ret_out[i * T + t] = G[i * T + t];
        ++k;
      }
  }
}

void run(const batch& b, bool use_rho, const adv::otb_options& o, vec& a, vec& ret) {
  a.assign(b.r.size(), -99);
  ret.assign(b.r.size(), -99);
  const offs so = pt::padded_offsets(b.B, b.T);
  adv::optimal_token_baseline(pt::exec::host{}, b.r, std::span<const double>(b.lp),
                              std::span<const double>(b.sp),
                              use_rho ? std::span<const double>(b.rho) : std::span<const double>(),
                              b.m, so, b.groups(), std::span<double>(a), std::span<double>(ret), o);
}

void expect_near(const vec& got, const vec& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], tol * (1 + std::abs(want[i]))) << "index " << i;
}

using reference_fn = void (*)(const batch&, bool, bool, double, vec&, vec&);

// The library with options o against a verl reference (ref_column or ref_tir, with o's
// handle_zero_tail and ε = 1e-8); returns the library's advantages.
vec expect_matches_reference(const batch& b, bool rho, const adv::otb_options& o,
                             reference_fn ref) {
  vec a, ret, wa, wr;
  run(b, rho, o, a, ret);
  ref(b, rho, o.handle_zero_tail, 1e-8, wa, wr);
  expect_near(a, wa, 1e-12);
  expect_near(ret, wr, 1e-12);
  return a;
}

const std::vector<int> kSizes = {4, 1, 5, 3, 8, 2};

}  // namespace

TEST(OptimalTokenBaseline, ColumnMatchesVerlLoop) {
  for (bool holes : {false, true})
    for (bool rho : {false, true})
      for (bool tail : {false, true}) {
        const batch b = make_batch(kSizes, 12, 11 + holes * 2 + rho * 4 + tail * 8, holes, true);
        adv::otb_options o = adv::otb_conventions::verl;
        o.handle_zero_tail = tail;
        expect_matches_reference(b, rho, o, ref_column);
      }
}

TEST(OptimalTokenBaseline, TirMatchesVerlMultiTurnLoop) {
  for (bool rho : {false, true})
    for (bool tail : {false, true}) {
      const batch b = make_batch(kSizes, 14, 101 + rho + tail * 2, /*holes=*/true, true);
      adv::otb_options o = adv::otb_conventions::verl_tir;
      o.handle_zero_tail = tail;
      const vec a = expect_matches_reference(b, rho, o, ref_tir);
      // The convenience entry point is the same computation.
      vec a2(a.size(), -1), r2(a.size(), -1);
      const offs so = pt::padded_offsets(b.B, b.T);
      adv::tir_optimal_token_baseline(
          pt::exec::host{}, b.r, std::span<const double>(b.lp), std::span<const double>(b.sp),
          rho ? std::span<const double>(b.rho) : std::span<const double>(), b.m, so, b.groups(),
          std::span<double>(a2), std::span<double>(r2), o);
      EXPECT_EQ(a2, a);
    }
}

TEST(OptimalTokenBaseline, ColumnAndTirAgreeWithoutHolesOrEmptyRows) {
  const batch b = make_batch(kSizes, 10, 7, /*holes=*/false, /*empty_rows=*/false);
  vec a1, r1, a2, r2;
  adv::otb_options col = adv::otb_conventions::verl;
  col.handle_zero_tail = true;
  run(b, true, col, a1, r1);
  run(b, true, adv::otb_conventions::verl_tir, a2, r2);
  expect_near(a1, a2, 1e-13);
  expect_near(r1, r2, 0);
  // With holes they differ (the alignment matters).
  const batch h = make_batch(kSizes, 10, 7, /*holes=*/true, false);
  run(h, true, col, a1, r1);
  run(h, true, adv::otb_conventions::verl_tir, a2, r2);
  double diff = 0;
  for (std::size_t i = 0; i < a1.size(); ++i) diff = std::max(diff, std::abs(a1[i] - a2[i]));
  EXPECT_GT(diff, 1e-6);
}

TEST(OptimalTokenBaseline, SingletonGroupHasNoBaseline) {
  const batch b = make_batch({1, 1, 1}, 6, 3, true, false);
  for (const auto& o : {adv::otb_conventions::verl, adv::otb_conventions::verl_tir}) {
    vec a, ret;
    run(b, false, o, a, ret);
    for (std::size_t k = 0; k < a.size(); ++k) EXPECT_EQ(a[k], ret[k]) << k;  // A = G·m, m ∈ {0,1}
  }
  // TIR: a group with one non-empty member and an empty one is a singleton; the column form
  // counts the empty row (N = 2) and subtracts G·W/(W + ε).
  batch c = make_batch({2}, 4, 5, false, false);
  for (int t = 0; t < 4; ++t) c.m[4 + t] = 0.0f;
  vec a, ret;
  run(c, false, adv::otb_conventions::verl_tir, a, ret);
  for (int t = 0; t < 4; ++t) EXPECT_EQ(a[t], ret[t]);
  run(c, false, adv::otb_conventions::verl, a, ret);
  vec wa, wr;
  ref_column(c, false, false, 1e-8, wa, wr);
  expect_near(a, wa, 1e-12);
  for (int t = 0; t < 4; ++t) {
    if (c.m[t] != 0 && ret[t] != 0) {
      EXPECT_LT(std::abs(a[t]), 1e-6 * std::abs(ret[t]));
    }
  }
}

TEST(OptimalTokenBaseline, IdenticalRowsGiveZeroAdvantage) {
  // Every member identical: B_t = G_t·ΣW/(ΣW + ε), so A = G·ε/(ΣW + ε) ≈ 0.
  batch b = make_batch({1}, 8, 9, false, false);
  batch g = b;
  g.B = 4;
  g.gid.assign(4, 0);
  for (int i = 1; i < 4; ++i) {
    g.r.insert(g.r.end(), b.r.begin(), b.r.end());
    g.lp.insert(g.lp.end(), b.lp.begin(), b.lp.end());
    g.sp.insert(g.sp.end(), b.sp.begin(), b.sp.end());
    g.rho.insert(g.rho.end(), b.rho.begin(), b.rho.end());
    g.m.insert(g.m.end(), b.m.begin(), b.m.end());
  }
  for (const auto& o : {adv::otb_conventions::verl, adv::otb_conventions::verl_tir}) {
    vec a, ret;
    run(g, true, o, a, ret);
    for (double x : a) EXPECT_NEAR(x, 0.0, 1e-7);
  }
}

TEST(OptimalTokenBaseline, ZeroTailHandExample) {
  // One group, lengths 5, 3, 2 (left-aligned): the unique longest row gets B = 0 from t = 3.
  batch b = make_batch({3}, 5, 21, false, false);
  const int lens[3] = {5, 3, 2};
  for (int i = 0; i < 3; ++i)
    for (int t = 0; t < 5; ++t) {
      const int k = i * 5 + t;
      b.m[k] = t < lens[i] ? 1.0f : 0.0f;
      if (t < lens[i] && std::isnan(b.r[k])) b.r[k] = 0.5, b.lp[k] = -0.3, b.sp[k] = 0.6;
    }
  vec a, ret;
  adv::otb_options o = adv::otb_conventions::verl;
  o.handle_zero_tail = true;
  run(b, false, o, a, ret);
  EXPECT_EQ(a[3], ret[3]);
  EXPECT_EQ(a[4], ret[4]);
  EXPECT_NE(a[2], ret[2]);
  // Without the option the tail keeps the (single-member) column baseline G·W/(W + ε) ≈ G.
  run(b, false, adv::otb_conventions::verl, a, ret);
  EXPECT_NEAR(a[3], 0.0, 1e-7);
  // Two rows tied for longest: no tail rule.
  b.m[1 * 5 + 3] = b.m[1 * 5 + 4] = 1.0f;
  b.r[8] = b.r[9] = 0.1, b.lp[8] = b.lp[9] = -1, b.sp[8] = b.sp[9] = 0.5;
  run(b, false, o, a, ret);
  vec wa, wr;
  ref_column(b, false, true, 1e-8, wa, wr);
  expect_near(a, wa, 1e-12);
  EXPECT_NE(a[4], ret[4]);  // the baseline stays on the tied rows
}

TEST(OptimalTokenBaseline, RaggedLayoutEqualsPaddedColumns) {
  const batch b = make_batch(kSizes, 9, 31, true, true);
  // Drop the trailing padding of every row: ragged rows of their last-valid length.
  vec r, lp, sp;
  fvec m;
  offs so = {0};
  std::vector<std::vector<int>> map(b.B);
  for (int i = 0; i < b.B; ++i) {
    int last = 0;
    for (int t = 0; t < b.T; ++t)
      if (b.m[i * b.T + t] != 0) last = t + 1;
    for (int t = 0; t < last; ++t) {
      const int k = i * b.T + t;
      map[i].push_back(k);
      r.push_back(b.r[k]), lp.push_back(b.lp[k]), sp.push_back(b.sp[k]), m.push_back(b.m[k]);
    }
    so.push_back(static_cast<pt::index_t>(r.size()));
  }
  for (const auto& o : {adv::otb_conventions::verl, adv::otb_conventions::verl_tir}) {
    vec a(r.size()), ret(r.size()), pa, pr;
    adv::optimal_token_baseline(pt::exec::host{}, r, std::span<const double>(lp),
                                std::span<const double>(sp), {}, m, so, b.groups(),
                                std::span<double>(a), std::span<double>(ret), o);
    run(b, false, o, pa, pr);
    std::size_t j = 0;
    for (int i = 0; i < b.B; ++i)
      for (int k : map[i]) {
        EXPECT_NEAR(a[j], pa[k], 1e-13);
        ++j;
      }
  }
}

TEST(OptimalTokenBaseline, AllMaskedRowsFloatInputsAndInPlace) {
  batch b = make_batch({3, 2}, 6, 41, true, false);
  for (int t = 0; t < 6; ++t) b.m[6 + t] = 0.0f, b.r[6 + t] = kNaN;  // row 1 all masked
  vec a, ret;
  run(b, true, adv::otb_conventions::verl, a, ret);
  for (int t = 0; t < 6; ++t) {
    EXPECT_EQ(a[6 + t], 0.0);
    EXPECT_EQ(ret[6 + t], 0.0);
  }
  for (double x : a) EXPECT_FALSE(std::isnan(x));
  // Float inputs.
  auto f = [](const vec& v) { return fvec(v.begin(), v.end()); };
  const fvec rf = f(b.r), lf = f(b.lp), sf = f(b.sp), wf = f(b.rho);
  fvec af(rf.size()), retf(rf.size());
  const offs so = pt::padded_offsets(b.B, b.T);
  adv::optimal_token_baseline(pt::exec::host{}, rf, std::span<const float>(lf),
                              std::span<const float>(sf), std::span<const float>(wf), b.m, so,
                              b.groups(), std::span<float>(af), std::span<float>(retf));
  for (std::size_t k = 0; k < af.size(); ++k) EXPECT_NEAR(af[k], a[k], 1e-5 * (1 + std::abs(a[k])));
  // In place: advantages written over the rewards.
  vec inplace = b.r;
  adv::optimal_token_baseline(pt::exec::host{}, inplace, std::span<const double>(b.lp),
                              std::span<const double>(b.sp), std::span<const double>(b.rho), b.m,
                              so, b.groups(), std::span<double>(inplace), std::span<double>());
  for (std::size_t k = 0; k < a.size(); ++k) EXPECT_EQ(inplace[k], a[k]);
  // Empty batch.
  vec none;
  EXPECT_NO_THROW(adv::optimal_token_baseline(pt::exec::host{}, none, std::span<const double>(),
                                              std::span<const double>(), {}, {}, offs{0}, offs{0},
                                              std::span<double>(none), std::span<double>()));
}

TEST(OptimalTokenBaseline, ValidationLeavesOutputsUntouched) {
  const batch b = make_batch({2, 2}, 4, 51, false, false);
  const offs so = pt::padded_offsets(b.B, b.T), g = b.groups();
  const std::size_t n = b.r.size();
  vec a(n, 5.0), ret(n, 5.0), short_lp(b.lp.begin(), b.lp.end() - 1);
  const pt::exec::host h;
  auto call = [&](const vec& r, const vec& lp, const vec& sp, const vec& rho, const fvec& m,
                  const offs& s, const offs& gr, std::span<double> out, std::span<double> rt,
                  adv::otb_options o = {}) {
    adv::optimal_token_baseline(h, r, std::span<const double>(lp), std::span<const double>(sp),
                                std::span<const double>(rho), m, s, gr, out, rt, o);
  };
  EXPECT_THROW(call(b.r, short_lp, b.sp, {}, b.m, so, g, a, ret), pt::error);
  EXPECT_THROW(call(b.r, b.lp, short_lp, {}, b.m, so, g, a, ret), pt::error);
  EXPECT_THROW(call(b.r, b.lp, b.sp, short_lp, b.m, so, g, a, ret), pt::error);
  EXPECT_THROW(call(b.r, b.lp, b.sp, {}, fvec(3, 1.0f), so, g, a, ret), pt::error);
  fvec neg = b.m;
  neg[0] = -1.0f;
  EXPECT_THROW(call(b.r, b.lp, b.sp, {}, neg, so, g, a, ret), pt::error);
  EXPECT_THROW(call(b.r, b.lp, b.sp, {}, b.m, offs{0, 4, 2, 16}, offs{0, 3}, a, ret), pt::error);
  EXPECT_THROW(call(b.r, b.lp, b.sp, {}, b.m, so, offs{0, 3}, a, ret), pt::error);  // back != B
  EXPECT_THROW(call(b.r, b.lp, b.sp, {}, b.m, so, offs{}, a, ret), pt::error);
  EXPECT_THROW(call(b.r, b.lp, b.sp, {}, b.m, so, g, std::span<double>(a.data(), n - 1), ret),
               pt::error);
  EXPECT_THROW(call(b.r, b.lp, b.sp, {}, b.m, so, g, a, std::span<double>(ret.data(), 2)),
               pt::error);
  EXPECT_THROW(call(b.r, b.lp, b.sp, {}, b.m, so, g, a, a), pt::error);  // same buffer
  EXPECT_THROW(call(b.r, b.lp, b.sp, {}, b.m, so, g, a, ret, {.epsilon = -1}), pt::error);
  EXPECT_THROW(call(b.r, b.lp, b.sp, {}, b.m, so, g, a, ret, {.epsilon = kNaN}), pt::error);
  EXPECT_THROW(call(b.r, b.lp, b.sp, {}, b.m, so, g, a, ret,
                    {.alignment = static_cast<adv::otb_alignment>(7)}),
               pt::error);
  vec overlap(n + 1, 0.0);
  std::copy(b.r.begin(), b.r.end(), overlap.begin());
  EXPECT_THROW(adv::optimal_token_baseline(
                   h, std::span<const double>(overlap.data(), n), std::span<const double>(b.lp),
                   std::span<const double>(b.sp), {}, b.m, so, g,
                   std::span<double>(overlap.data() + 1, n), std::span<double>()),
               pt::error);
  for (double v : a) EXPECT_EQ(v, 5.0);
  for (double v : ret) EXPECT_EQ(v, 5.0);
  EXPECT_NO_THROW(call(b.r, b.lp, b.sp, {}, b.m, so, g, a, ret));
  EXPECT_NE(a[0], 5.0);
}

// The workspace form: the bits of the allocating form (and the float64 references) on random
// batches with singleton groups, an empty group, empty rows and holes, at any base alignment;
// no allocation in the call; a too-small workspace throws before any output is written.
TEST(OptimalTokenBaseline, WorkspaceFormSameBitsNoAllocation) {
  const pt::exec::host h;
  const batch b = make_batch({3, 1, 4, 2, 1}, 7, 61, true, true);
  const offs so = pt::padded_offsets(b.B, b.T);
  offs g = b.groups();
  g.insert(g.begin() + 2, g[2]);  // an empty group between the singleton and the group of 4
  const std::size_t n = b.r.size();
  for (const bool use_rho : {false, true})
    for (adv::otb_options o : {adv::otb_conventions::verl, adv::otb_conventions::verl_tir,
                               adv::otb_options{.handle_zero_tail = true},
                               adv::otb_options{.alignment = adv::otb_alignment::valid_tokens,
                                                .epsilon = 0.0}}) {
      const std::span<const double> rho = use_rho ? std::span<const double>(b.rho)
                                                  : std::span<const double>();
      vec want(n), want_ret(n);
      adv::optimal_token_baseline(h, b.r, std::span<const double>(b.lp),
                                  std::span<const double>(b.sp), rho, b.m, so, g,
                                  std::span<double>(want), std::span<double>(want_ret), o);
      vec ref, ref_ret;
      if (o.alignment == adv::otb_alignment::column)
        ref_column(b, use_rho, o.handle_zero_tail, o.epsilon, ref, ref_ret);
      else
        ref_tir(b, use_rho, o.handle_zero_tail, o.epsilon, ref, ref_ret);
      const std::size_t bytes = adv::optimal_token_baseline_workspace_bytes(h, so, o);
      std::vector<std::byte> storage(bytes + 64);
      for (const std::size_t offset : {0u, 5u, 40u}) {
        vec a(n, -7.0), ret(n, -7.0);
        const long made = count_allocations([&] {
          adv::optimal_token_baseline(h, b.r, std::span<const double>(b.lp),
                                      std::span<const double>(b.sp), rho, b.m, so, g,
                                      std::span<double>(a), std::span<double>(ret), o,
                                      pt::workspace(storage.data() + offset, bytes));
        });
        EXPECT_EQ(made, 0);
        EXPECT_EQ(a, want);
        EXPECT_EQ(ret, want_ret);
        for (std::size_t k = 0; k < n; ++k) {
          EXPECT_NEAR(a[k], ref[k], 1e-12 * (1 + std::abs(ref[k]))) << k;
          EXPECT_NEAR(ret[k], ref_ret[k], 1e-12 * (1 + std::abs(ref_ret[k]))) << k;
        }
      }
      vec untouched(n, -3.0), untouched_ret(n, -3.0);
      for (const std::size_t small : {std::size_t{0}, bytes / 2})
        EXPECT_THROW(adv::tir_optimal_token_baseline(
                         h, b.r, std::span<const double>(b.lp), std::span<const double>(b.sp),
                         rho, b.m, so, g, std::span<double>(untouched),
                         std::span<double>(untouched_ret), o,
                         pt::workspace(storage.data(), small)),
                     pt::error);
      for (std::size_t k = 0; k < n; ++k) {
        EXPECT_EQ(untouched[k], -3.0);
        EXPECT_EQ(untouched_ret[k], -3.0);
      }
    }
  // Float inputs: the same bits as the allocating float call.
  auto f = [](const vec& v) { return fvec(v.begin(), v.end()); };
  const fvec rf = f(b.r), lf = f(b.lp), sf = f(b.sp);
  fvec want(n), got(n, -7.0f);
  adv::optimal_token_baseline(h, rf, std::span<const float>(lf), std::span<const float>(sf), {},
                              b.m, so, g, std::span<float>(want), std::span<float>());
  pt::workspace_buffer buffer;
  adv::optimal_token_baseline(h, rf, std::span<const float>(lf), std::span<const float>(sf), {},
                              b.m, so, g, std::span<float>(got), std::span<float>(),
                              adv::otb_conventions::verl,
                              buffer.view(adv::optimal_token_baseline_workspace_bytes(h, so)));
  EXPECT_EQ(got, want);
  // No sequence, no token: 0 bytes, and the call with an empty workspace writes nothing.
  EXPECT_EQ(adv::optimal_token_baseline_workspace_bytes(h, offs{0}), 0u);
  vec none;
  EXPECT_NO_THROW(adv::optimal_token_baseline(h, none, std::span<const double>(),
                                              std::span<const double>(), {}, {}, offs{0}, offs{0},
                                              std::span<double>(none), std::span<double>(),
                                              adv::otb_conventions::verl, pt::workspace()));
  EXPECT_THROW(adv::optimal_token_baseline_workspace_bytes(h, offs{}), pt::error);
}
