// The fused CPU pass of loss::policy_gradient (backend/cpu/policy_gradient.hpp: aggregation
// weights from the mask first, then one pass per row writing dLoss/dℓ directly) against the
// unfused composition it replaced (policy_gradient_unfused.hpp: full-length per-token arrays,
// aggregate_loss, then the gradient): every result field and every gradient element must agree to
// a few ulp (see expect_close), float and double, for every surrogate, with and without KL (token /
// sequence IS correction), entropy, IS weights, every aggregation mode and normaliser, fractional
// masks, empty and fully masked rows, no mask, huge log-ratios (±60 unclamped: overflow to inf
// and underflow exactly as std::exp), a zero divisor and partial outputs.
// The formulas themselves are checked against float64 references in the other
// policy_gradient_*.cpp tests; this file proves the fusion changes no result beyond rounding.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "policy_gradient_naive.hpp"
#include "policy_gradient_unfused.hpp"
#include "posttrain/loss/policy_gradient.hpp"
#include "posttrain/loss/policy_gradient/algorithms.hpp"

namespace {

namespace pt = posttrain;
using pg_test::batch;
using pg_test::make_batch;

std::uint64_t bits(double x) { return std::bit_cast<std::uint64_t>(x); }

// Why not bit for bit. The fused pass takes the ratios e^{clamp(ℓ − ℓold)} of the token-level
// surrogates from Eigen's packet exp (backend ratio_block; measured ≤ 1.4 ulp float, ≤ 1.65 ulp
// double from the exact exp, where std::exp is ≤ 0.51), and with -march=native GCC contracts
// a·b + c into FMAs differently in the two loops. Every per-token term then carries ≲ 4 ulp of T
// relative error (the exp's 2, plus the surrogate's few roundings), and every result is a sum of
// such terms, so |fused − unfused| ≤ 4u·Σ|term|. The tolerance is rtol·max(|unfused|, scale):
// rtol = 1e-6 for float (≈ 17 ulp of 2^-24, per-token terms are in float) and 1e-14 for double
// (≈ 90 ulp), scale = the magnitude the value is formed from (the largest part of the loss, the
// largest gradient element / 100) so that a sum that cancels to ≈ 0 is judged against its terms.
// Observed on these scenarios (AVX-512 build): at most 1.5e-7 relative for float (2.5 ulp) and
// 1.2e-15 for double (6 ulp): a tenth of rtol fails, rtol passes with a margin of ≈ 7.
// Infinities and NaN must match exactly (same class, same sign): the exp's overflow, underflow
// and non-finite paths are std::exp's.
template <class T>
constexpr double rtol = sizeof(T) == 4 ? 1e-6 : 1e-14;

template <class T>
bool close(double got, double want, double scale) {
  if (!std::isfinite(want) || !std::isfinite(got))
    return bits(got) == bits(want) || (std::isnan(got) && std::isnan(want));
  return std::abs(got - want) <= rtol<T> * std::max(std::abs(want), scale);
}

// One scenario: a batch plus which optional inputs and outputs are present.
struct scenario {
  std::string name;
  batch b;
  bool mask = true, old = true, ref = true, entropy = false, weights = false;
  bool grad = true, entropy_grad = false;
};

template <class T>
std::vector<T> as(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

// Out of line: keeps the two compositions from being inlined into one another's caller (GCC 12
// then reports a spurious -Wfree-nonheap-object on the caller's vectors) and the test's build
// time down.
template <class S, class K, class A, class T>
[[gnu::noinline]] pt::policy_gradient_result run_fused(
    const pt::policy_gradient_inputs<T>& in, const pt::policy_gradient_options& o,
    const pt::policy_gradient_outputs<T>& out, const pt::agg_normalizer& norm,
    const pt::agg_options& ao) {
  // the surrogate's default options, as the unfused composition's
  using policy = pt::loss::policy_gradient<S, K, A>;
  return policy::compute(pt::exec::host{}, in, o, out, norm, ao,
                         typename policy::surrogate_options{});
}

template <class S, class K, class A, class T>
[[gnu::noinline]] pt::policy_gradient_result run_unfused(
    const pt::policy_gradient_inputs<T>& in, const pt::policy_gradient_options& o,
    const pt::policy_gradient_outputs<T>& out, const pt::agg_normalizer& norm,
    const pt::agg_options& ao) {
  return pt::pg_unfused::policy_gradient<S, K, A>(in, o, out, norm, ao);
}

template <class S, class K, class A, class T>
void expect_same_as_unfused(const scenario& sc, pt::policy_gradient_options o,
                            const pt::agg_normalizer& norm, const pt::agg_options& ao,
                            const std::string& what) {
  using policy = pt::loss::policy_gradient<S, K, A>;
  if (!sc.entropy) o.entropy_coef = 0.0;  // the entropy term needs H
  const std::vector<T> logp = as<T>(sc.b.logp), old = as<T>(sc.b.old_logp),
                       adv = as<T>(sc.b.adv), ref = as<T>(sc.b.ref),
                       ent = as<T>(sc.b.entropy), w = as<T>(sc.b.weights);
  pt::policy_gradient_inputs<T> in;
  in.logprobs = logp;
  if (sc.old) in.old_logprobs = old;
  in.advantages = adv;
  if (policy::uses_reference && sc.ref) in.ref_logprobs = ref;
  if (sc.mask) in.mask = sc.b.mask;
  in.seq_offsets = sc.b.offsets;
  if (sc.entropy) in.entropy = ent;
  if (sc.weights) in.importance_weights = w;
  const std::size_t n = sc.b.n();
  std::vector<T> g_new(n, T(-7)), h_new(n, T(-7)), g_old(n, T(-7)), h_old(n, T(-7));
  pt::policy_gradient_outputs<T> out_new, out_old;
  if (sc.grad) {
    out_new.grad = g_new;
    out_old.grad = g_old;
  }
  if (sc.entropy_grad) {
    out_new.entropy_grad = h_new;
    out_old.entropy_grad = h_old;
  }

  const auto r_new = run_fused<S, K, A, T>(in, o, out_new, norm, ao);
  const auto r_old = run_unfused<S, K, A, T>(in, o, out_old, norm, ao);
  const std::string ctx = what + " / " + sc.name + (sizeof(T) == 4 ? " / float" : " / double");
  // the loss and its parts: judged against the largest part (the loss may cancel between them)
  const double parts = std::max({std::abs(r_old.pg_loss), std::abs(o.kl_coef * r_old.kl_loss),
                                 std::abs(o.entropy_coef * r_old.entropy)});
  const auto check = [&](double got, double want, double scale, const char* field) {
    EXPECT_TRUE(close<T>(got, want, scale))
        << ctx << ": " << field << " " << got << " vs " << want << " (scale " << scale << ")";
  };
  check(r_new.loss, r_old.loss, parts, "loss");
  check(r_new.pg_loss, r_old.pg_loss, parts, "pg_loss");
  check(r_new.kl_loss, r_old.kl_loss, std::abs(r_old.kl_loss), "kl_loss");
  check(r_new.entropy, r_old.entropy, std::abs(r_old.entropy), "entropy");
  EXPECT_EQ(bits(r_new.divisor), bits(r_old.divisor)) << ctx << ": divisor (from the mask only)";
  check(r_new.clip_fraction, r_old.clip_fraction, 0.0, "clip_fraction");
  check(r_new.clip_fraction_lower, r_old.clip_fraction_lower, 0.0, "clip_fraction_lower");
  check(r_new.approx_kl, r_old.approx_kl, 0.0, "approx_kl");
  check(r_new.mean_ratio, r_old.mean_ratio, 0.0, "mean_ratio");
  double g_scale = 0, h_scale = 0;
  for (std::size_t t = 0; t < n; ++t) {
    if (std::isfinite(static_cast<double>(g_old[t])))
      g_scale = std::max(g_scale, std::abs(static_cast<double>(g_old[t])));
    if (std::isfinite(static_cast<double>(h_old[t])))
      h_scale = std::max(h_scale, std::abs(static_cast<double>(h_old[t])));
  }
  int bad = 0;
  for (std::size_t t = 0; t < n && bad < 3; ++t) {
    if (!close<T>(g_new[t], g_old[t], g_scale / 100)) {
      ADD_FAILURE() << ctx << ": grad[" << t << "] " << g_new[t] << " vs " << g_old[t];
      ++bad;
    }
    if (!close<T>(h_new[t], h_old[t], h_scale / 100)) {
      ADD_FAILURE() << ctx << ": entropy_grad[" << t << "] " << h_new[t] << " vs " << h_old[t];
      ++bad;
    }
  }
}

// Fractional weights, exact zeros, and the batch's own structure (empty rows stay empty).
batch with_fractional_mask(batch b, unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_int_distribution<int> pick(0, 4);
  const float levels[] = {0.0f, 0.25f, 0.5f, 1.0f, 0.7f};
  for (auto& m : b.mask) m = levels[pick(g)];
  return b;
}

std::vector<scenario> scenarios() {
  std::vector<scenario> s;
  // Rows of length 0, 1, 3, 4, 5, 9, 13 (every position modulo 4 of the accumulators), 0/1 mask
  // with masked first tokens; one row fully masked.
  batch ragged = make_batch({5, 0, 13, 1, 9, 4, 3}, 0.5, 71);
  for (auto t = ragged.offsets[4]; t < ragged.offsets[5]; ++t)
    ragged.mask[static_cast<std::size_t>(t)] = 0.0f;
  s.push_back({"ragged", ragged});
  s.push_back({"fractional mask", with_fractional_mask(ragged, 72)});
  scenario opt{"entropy, IS weights, entropy_grad", with_fractional_mask(ragged, 73)};
  opt.entropy = opt.weights = opt.entropy_grad = true;
  s.push_back(opt);
  scenario only_h{"entropy_grad only", ragged};
  only_h.entropy = only_h.entropy_grad = true;
  only_h.grad = false;
  s.push_back(only_h);
  s.push_back({"no mask", make_batch({6, 11, 2, 8}, 0.3, 74, false)});
  s.back().mask = false;
  scenario none{"every token masked", ragged};
  for (auto& m : none.b.mask) m = 0.0f;
  none.entropy = none.entropy_grad = true;
  s.push_back(none);
  // |ℓ − ℓold| up to 60: exp overflows without the clamp (inf·0, inf − inf paths).
  scenario huge{"huge log-ratios", make_batch({7, 10, 5, 12}, 60.0, 75)};
  huge.weights = true;
  s.push_back(huge);
  // up to 120: e^{logr} overflows float (inf ratios, inf/NaN losses where the old code had them)
  scenario overflow{"overflowing log-ratios", make_batch({9, 6, 11}, 120.0, 78)};
  s.push_back(overflow);
  // ℓ − ℓref of −86.9 … −89 on about half the tokens: the in-loss float k3 block falls back to the double kernel
  // for a block holding d < −87 (Eigen's float exp overflows before expf does), and e^{−d} itself overflows float
  // past ≈ −88.72; the other tokens of the same block must be unaffected.
  scenario far_ref{"reference 87-89 nats away", make_batch({9, 14, 6, 11}, 0.5, 79)};
  const double far[] = {86.9, 87.2, 88.0, 88.5, 88.7, 88.75, 89.0};
  for (std::size_t t = 0; t < far_ref.b.ref.size(); t += 2)
    far_ref.b.ref[t] = far_ref.b.logp[t] + far[(t / 2) % std::size(far)];
  s.push_back(far_ref);
  return s;
}

using opts = pt::policy_gradient_options;

template <class S, class K, class A>
void check_composition(const std::string& name) {
  std::vector<std::pair<std::string, opts>> options;
  opts base;
  base.clip_low = 0.2;
  base.clip_high = 0.28;
  base.dual_clip = 3.0;
  base.kl_coef = 0.1;
  base.entropy_coef = 0.01;
  base.importance_weight_cap = 1.5;
  options.push_back({"defaults", base});
  opts clamped = base;
  clamped.log_ratio_min = -20;
  clamped.log_ratio_max = 10;
  clamped.kl = pt::kl_options{-10.0, 10.0, -5.0, 5.0};
  options.push_back({"clamps", clamped});
  if constexpr (!std::is_same_v<K, pt::kl::none>) {
    opts tok = base;
    tok.kl_correction = pt::kl_is_correction::token;
    options.push_back({"kl token IS", tok});
    opts seq = clamped;
    seq.kl_correction = pt::kl_is_correction::sequence;
    options.push_back({"kl sequence IS", seq});
    seq.log_ratio_min = -0.01;  // sequence ratio clamp active (zero slope)
    seq.log_ratio_max = 0.01;
    options.push_back({"kl sequence IS, clamp active", seq});
  }
  std::vector<std::pair<std::string, pt::agg_normalizer>> norms;
  pt::agg_normalizer local;
  local.constant = 11.0;  // the constant modes need one
  norms.push_back({"local", local});
  pt::agg_normalizer global = local;
  global.tokens = 7.5;
  global.sequences = 3.0;
  norms.push_back({"global", global});
  pt::agg_normalizer zero = local;
  zero.tokens = 0.0;
  zero.sequences = 0.0;
  norms.push_back({"zero divisor", zero});
  const std::pair<std::string, pt::agg_options> aggs[] = {
      {"verl", pt::agg_conventions::verl()}, {"trl", pt::agg_conventions::trl()}};

  for (const auto& sc : scenarios())
    for (const auto& [on, o] : options)
      for (const auto& [nn, norm] : norms)
        for (const auto& [an, ao] : aggs) {
          const std::string what = name + " / " + on + " / " + nn + " / " + an;
          expect_same_as_unfused<S, K, A, double>(sc, o, norm, ao, what);
          expect_same_as_unfused<S, K, A, float>(sc, o, norm, ao, what);
        }
}

template <class S, class K>
void check_every_aggregation(const std::string& name) {
  check_composition<S, K, pt::agg::token_mean>(name + "<token_mean>");
  check_composition<S, K, pt::agg::token_sum>(name + "<token_sum>");
  check_composition<S, K, pt::agg::constant_divisor>(name + "<constant_divisor>");
  check_composition<S, K, pt::agg::seq_mean_token_sum>(name + "<seq_mean_token_sum>");
  check_composition<S, K, pt::agg::seq_mean_token_mean>(name + "<seq_mean_token_mean>");
  check_composition<S, K, pt::agg::seq_mean_token_sum_norm>(name + "<seq_mean_token_sum_norm>");
}

template <class S>
void check_surrogate(const std::string& name) {
  check_every_aggregation<S, pt::kl::none>(name);
  check_composition<S, pt::kl::k3, pt::agg::seq_mean_token_mean>(name + "+k3");
  check_composition<S, pt::kl::k1, pt::agg::token_mean>(name + "+k1");
}

TEST(PolicyGradientFused, ClipMatchesUnfused) { check_surrogate<pt::surrogate::clip>("clip"); }
TEST(PolicyGradientFused, CispoMatchesUnfused) {
  check_surrogate<pt::surrogate::cispo>("cispo");
}
TEST(PolicyGradientFused, SapoMatchesUnfused) { check_surrogate<pt::surrogate::sapo>("sapo"); }
TEST(PolicyGradientFused, ReinforceMatchesUnfused) {
  check_surrogate<pt::surrogate::reinforce>("reinforce");
}
TEST(PolicyGradientFused, GspoMatchesUnfused) { check_surrogate<pt::surrogate::gspo>("gspo"); }
TEST(PolicyGradientFused, GspoTokenMatchesUnfused) {
  check_surrogate<pt::surrogate::gspo_token>("gspo_token");
}
TEST(PolicyGradientFused, GmpoMatchesUnfused) { check_surrogate<pt::surrogate::gmpo>("gmpo"); }
TEST(PolicyGradientFused, VespoMatchesUnfused) {
  check_surrogate<pt::surrogate::vespo>("vespo");
}
TEST(PolicyGradientFused, RlooSequenceMatchesUnfused) {
  check_surrogate<pt::surrogate::rloo_sequence>("rloo_sequence");
}

// The ratio of one token (mean_ratio with a one-hot mask) at the edges of the block exp: where
// Eigen's packet exp is not used (subnormal results, float above 88 where the AVX-512 float exp
// overflows early, ±inf) it is std::exp's bits; inside, within 2 ulp of std::exp. Every token
// sits in the same 512-token block, so the block's fallback path is taken.
template <class T>
void check_ratio_edges() {
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<double> logr{-inf, -1000, -745.5, -709.9, -104, -100, -88, -87.5, -60, -1,
                                 0, 0.3, 20, 60, 88.5, 88.72, 88.7229, 89, 100, 709.5, 709.9,
                                 1000, inf};
  const std::size_t n = logr.size();
  std::vector<T> lp(n, T(-1)), old(n), adv(n, T(0.5));
  for (std::size_t t = 0; t < n; ++t) old[t] = static_cast<T>(-1.0 - logr[t]);
  const std::vector<pt::index_t> off{0, static_cast<pt::index_t>(n)};
  for (std::size_t k = 0; k < n; ++k) {
    std::vector<float> mask(n, 0.0f);
    mask[k] = 1.0f;
    pt::policy_gradient_inputs<T> in;
    in.logprobs = lp;
    in.old_logprobs = old;
    in.advantages = adv;
    in.mask = mask;
    in.seq_offsets = off;
    const auto r = pt::algo::ppo::compute(in, pt::policy_gradient_options{});
    const T lr = lp[k] - old[k];
    const double want = static_cast<double>(std::exp(lr));
    const bool eigen_range = sizeof(T) == 4 ? (lr >= T(-87) && lr <= T(88))
                                            : (lr >= T(-708) && lr <= T(709));
    if (eigen_range)
      EXPECT_NEAR(r.mean_ratio, want, 2.5 * std::numeric_limits<T>::epsilon() * want)
          << "logr " << lr;
    else
      EXPECT_EQ(bits(r.mean_ratio), bits(want)) << "logr " << lr << ": " << r.mean_ratio;
    EXPECT_FALSE(std::isnan(r.loss)) << "logr " << lr;  // A > 0: the clip caps an inf ratio
  }
}

TEST(PolicyGradientFused, RatioExpAtTheEdgesIsStdExp) {
  check_ratio_edges<float>();
  check_ratio_edges<double>();
}

// REINFORCE needs no ℓold (and no offsets with a token-level mode): logr = 0 in the statistics.
TEST(PolicyGradientFused, ReinforceWithoutOldLogprobsOrOffsets) {
  const batch b = with_fractional_mask(make_batch({4, 7, 0, 6}, 0.4, 76), 77);
  using gpg = pt::algo::gpg;
  pt::policy_gradient_inputs<double> in;
  in.logprobs = b.logp;
  in.advantages = b.adv;
  in.mask = b.mask;
  in.entropy = b.entropy;
  std::vector<double> g1(b.n()), g2(b.n()), h1(b.n()), h2(b.n());
  opts o;
  o.entropy_coef = 0.02;
  const auto r1 = gpg::compute(pt::exec::host{}, in, o, {g1, h1});
  const auto r2 = pt::pg_unfused::policy_gradient<gpg::surrogate, gpg::kl_estimator,
                                                  gpg::aggregation>(in, o, {g2, h2}, {}, {});
  // no ℓold: the ratio is the constant e^0 = 1 (no block exp); native FMA contraction only
  EXPECT_NEAR(r1.loss, r2.loss, 1e-14 * std::abs(r2.loss));
  EXPECT_NEAR(r1.entropy, r2.entropy, 1e-14 * std::abs(r2.entropy));
  EXPECT_EQ(r1.mean_ratio, 1.0);
  EXPECT_EQ(r2.mean_ratio, 1.0);
  for (std::size_t t = 0; t < b.n(); ++t) {
    EXPECT_NEAR(g1[t], g2[t], 1e-14 * std::abs(g2[t])) << t;
    EXPECT_NEAR(h1[t], h2[t], 1e-14 * std::abs(h2[t])) << t;
  }
  EXPECT_NE(r1.loss, 0.0);  // the comparison is not between two empty results
}

}  // namespace
