// The entropy bonus of loss::policy_gradient: options.entropy_agg (same_as_loss: −c·agg(e·H) with
// the loss's aggregation; token_mean: −c·Σ m·e·H / (max(Σ m·e, 1)·D_H) beside it, TRL 1.16) and
// inputs.entropy_mask e, against float64 references, with central differences of the loss in H
// and in ℓ, edge cases (Σ m·e < 1, everything masked, zero divisor) and bad input.
#include <limits>

#include "policy_gradient_naive.hpp"
#include "posttrain/conventions.hpp"
#include "posttrain/loss/policy_gradient/algorithms.hpp"

namespace {

using namespace pg_test;
namespace pt = posttrain;
using opts = pt::policy_gradient_options;

// Naive PPO per token (float64), no clamps, no dual clip.
double naive_clip(double logp, double old, double a, double el, double eh) {
  const double r = std::exp(logp - old);
  return std::max(-a * r, -a * std::min(std::max(r, 1 - el), 1 + eh));
}

// A 0/1 token-selection mask with some fractional weights, zero at every 3rd token.
std::vector<double> selection(const batch& b) {
  std::vector<double> e(b.n());
  for (std::size_t t = 0; t < b.n(); ++t) e[t] = t % 3 == 0 ? 0.0 : (t % 5 == 0 ? 0.5 : 1.0);
  return e;
}

// TRL's bonus term (float64): Σ m·e·H / max(Σ m·e, 1) / D.
double naive_token_mean_bonus(const batch& b, const std::vector<double>& e, double d) {
  double s = 0, w = 0;
  for (std::size_t t = 0; t < b.n(); ++t) s += b.mask[t] * e[t] * b.entropy[t], w += b.mask[t] * e[t];
  return s / std::max(w, 1.0) / d;
}

struct run_result {
  pt::policy_gradient_result r;
  std::vector<double> grad, hgrad;
};

template <class Algo>
run_result run(const batch& b, const std::vector<double>& e, const opts& o,
               const pt::agg_normalizer& norm = {}, const pt::agg_options& ao = {}) {
  pt::policy_gradient_inputs<double> in = inputs_of(b, Algo::uses_reference, true);
  if (!e.empty()) in.entropy_mask = e;
  run_result out;
  out.grad.assign(b.n(), -7.0);
  out.hgrad.assign(b.n(), -7.0);
  out.r = Algo::compute(in, o, {std::span<double>(out.grad), std::span<double>(out.hgrad)}, norm, ao,
                        typename Algo::surrogate_options{});
  return out;
}

// Central differences of the loss in H_t at every token vs entropy_grad.
template <class Algo>
void expect_fd_entropy(const batch& b0, const std::vector<double>& e, const opts& o,
                       const std::vector<double>& hgrad, const pt::agg_normalizer& norm = {},
                       const pt::agg_options& ao = {}) {
  const double h = 1e-5;
  for (std::size_t t = 0; t < b0.n(); ++t) {
    batch p = b0, m = b0;
    p.entropy[t] += h;
    m.entropy[t] -= h;
    const double fd = (run<Algo>(p, e, o, norm, ao).r.loss - run<Algo>(m, e, o, norm, ao).r.loss) / (2 * h);
    EXPECT_NEAR(hgrad[t], fd, 1e-9 * (1 + std::abs(fd))) << "token " << t;
  }
}

// TRL: the bonus is a token mean over m·e divided by GA whatever the loss's aggregation (here
// GRPO's per-row mean with β·k3 and a global sequence count); ∂/∂ℓ is the loss without bonus.
TEST(PolicyGradientEntropy, TokenMeanMatchesNaiveAndFiniteDifferences) {
  const batch b = make_batch({5, 7, 1, 9, 4, 0, 6}, 0.4, 21);
  const std::vector<double> e = selection(b);
  const double c = 0.05, ga = 2.0;
  opts o = pt::conventions::trl::entropy_bonus(pt::pg_presets::trl_grpo(0.04), c, ga);
  EXPECT_EQ(o.entropy_agg, pt::entropy_aggregation::token_mean);
  EXPECT_EQ(o.entropy_divisor, ga);
  EXPECT_EQ(o.entropy_coef, c);
  pt::agg_normalizer norm;
  norm.sequences = 7.0 * ga;
  const auto ao = pt::agg_conventions::trl();
  const run_result x = run<pt::algo::grpo>(b, e, o, norm, ao);

  // float64 reference: GRPO per-row token mean of clip + β·k3 over all 7 rows, / GA; minus c·bonus.
  std::vector<double> L(b.n());
  for (std::size_t t = 0; t < b.n(); ++t) {
    const double d = b.ref[t] - b.logp[t];
    L[t] = naive_clip(b.logp[t], b.old_logp[t], b.adv[t], 0.2, 0.2) +
           0.04 * (std::exp(d) - d - 1.0);
  }
  double rows_sum = 0;
  for (std::size_t i = 0; i + 1 < b.offsets.size(); ++i) {
    double s = 0, w = 0;
    for (auto t = b.offsets[i]; t < b.offsets[i + 1]; ++t) s += b.mask[t] * L[t], w += b.mask[t];
    rows_sum += s / std::max(w, 1.0);
  }
  const double policy = rows_sum / (7.0 * ga);
  const double bonus = naive_token_mean_bonus(b, e, ga);
  EXPECT_NEAR(x.r.entropy, bonus, 1e-13);
  EXPECT_NEAR(x.r.loss, policy - c * bonus, 1e-13);
  EXPECT_NEAR(x.r.pg_loss + 0.04 * x.r.kl_loss - c * x.r.entropy, x.r.loss, 1e-13);

  // dLoss/dH_t = −c·m·e / (max(Σ m·e, 1)·GA), 0 off the selection.
  double w = 0;
  for (std::size_t t = 0; t < b.n(); ++t) w += b.mask[t] * e[t];
  ASSERT_GT(w, 1.0);
  for (std::size_t t = 0; t < b.n(); ++t)
    EXPECT_NEAR(x.hgrad[t], -c * b.mask[t] * e[t] / (w * ga), 1e-15) << t;
  expect_fd_entropy<pt::algo::grpo>(b, e, o, x.hgrad, norm, ao);

  // The bonus does not touch ∂/∂ℓ: same gradient as without it, and the FD of the full loss.
  opts no_bonus = o;
  no_bonus.entropy_coef = 0.0;
  const run_result y = run<pt::algo::grpo>(b, e, no_bonus, norm, ao);
  for (std::size_t t = 0; t < b.n(); ++t) EXPECT_EQ(x.grad[t], y.grad[t]) << t;
  EXPECT_NEAR(x.r.loss, y.r.loss - c * bonus, 1e-13);
  expect_fd_grad(
      b,
      [&](const batch& v) { return run<pt::algo::grpo>(v, e, o, norm, ao).r.loss; }, x.grad);
}

// The default: −c·e_t·H_t inside L_t, aggregated by the loss's mode (here token_sum / constant and
// seq_mean_token_mean); the entropy mask multiplies H (and dLoss/dH).
TEST(PolicyGradientEntropy, SameAsLossWithEntropyMaskMatchesNaive) {
  const batch b = make_batch({6, 3, 8, 5}, 0.3, 22);
  const std::vector<double> e = selection(b);
  opts o = pt::pg_presets::dapo();
  o.entropy_coef = 0.03;
  std::vector<double> L(b.n());
  for (std::size_t t = 0; t < b.n(); ++t)
    L[t] = naive_clip(b.logp[t], b.old_logp[t], b.adv[t], 0.2, 0.28) - 0.03 * e[t] * b.entropy[t];
  std::vector<double> eh(b.n());
  for (std::size_t t = 0; t < b.n(); ++t) eh[t] = e[t] * b.entropy[t];

  const run_result x = run<pt::algo::dapo>(b, e, o);
  EXPECT_NEAR(x.r.loss, naive_token_mean(b, L), 1e-13);
  EXPECT_NEAR(x.r.entropy, naive_token_mean(b, eh), 1e-13);
  double w = 0;
  for (float m : b.mask) w += m;
  for (std::size_t t = 0; t < b.n(); ++t)
    EXPECT_NEAR(x.hgrad[t], -0.03 * b.mask[t] * e[t] / w, 1e-15) << t;
  expect_fd_entropy<pt::algo::dapo>(b, e, o, x.hgrad);
  expect_fd_grad(b, [&](const batch& v) { return run<pt::algo::dapo>(v, e, o).r.loss; }, x.grad);

  using sapo = pt::algo::sapo;
  const run_result s = run<sapo>(b, e, o, {}, pt::agg_conventions::verl());
  std::vector<double> Ls(b.n());
  for (std::size_t t = 0; t < b.n(); ++t) {
    const double r = std::exp(b.logp[t] - b.old_logp[t]);
    const double tau = b.adv[t] > 0 ? 1.0 : 1.05;
    Ls[t] = -(1.0 / (1.0 + std::exp(-tau * (r - 1.0)))) * (4.0 / tau) * b.adv[t] -
            0.03 * e[t] * b.entropy[t];
  }
  EXPECT_NEAR(s.r.loss, naive_seq_mean_token_mean(b, Ls, 1e-8), 1e-13);  // verl: |o_i| + 1e-8
  EXPECT_NEAR(s.r.entropy, naive_seq_mean_token_mean(b, eh, 1e-8), 1e-13);
  expect_fd_entropy<sapo>(b, e, o, s.hgrad, {}, pt::agg_conventions::verl());

  // An all-ones entropy mask is the same as none, bit for bit.
  const run_result ones = run<pt::algo::dapo>(b, std::vector<double>(b.n(), 1.0), o);
  const run_result none = run<pt::algo::dapo>(b, {}, o);
  EXPECT_EQ(ones.r.loss, none.r.loss);
  EXPECT_EQ(ones.r.entropy, none.r.entropy);
  for (std::size_t t = 0; t < b.n(); ++t) {
    EXPECT_EQ(ones.grad[t], none.grad[t]);
    EXPECT_EQ(ones.hgrad[t], none.hgrad[t]);
  }
}

// Σ m·e < 1 divides by 1 (TRL's clamp(min=1)); nothing selected: bonus 0, dH 0; a zero policy
// divisor leaves the token-mean bonus (it has its own).
TEST(PolicyGradientEntropy, TokenMeanSmallAndEmptySelection) {
  batch b = make_batch({4, 5}, 0.3, 23, false);
  std::vector<double> e(b.n(), 0.0);
  e[2] = 0.25;
  e[6] = 0.5;
  const opts o = pt::pg_presets::trl_entropy_bonus(pt::pg_presets::dapo(), 0.1, 1.0);
  const run_result x = run<pt::algo::dapo>(b, e, o);
  EXPECT_NEAR(x.r.entropy, 0.25 * b.entropy[2] + 0.5 * b.entropy[6], 1e-15);  // / max(0.75, 1)
  for (std::size_t t = 0; t < b.n(); ++t) EXPECT_NEAR(x.hgrad[t], -0.1 * e[t], 1e-16) << t;

  std::fill(e.begin(), e.end(), 0.0);
  const run_result z = run<pt::algo::dapo>(b, e, o);
  EXPECT_EQ(z.r.entropy, 0.0);
  for (double g : z.hgrad) EXPECT_EQ(g, 0.0);

  std::fill(e.begin(), e.end(), 1.0);
  pt::agg_normalizer zero;
  zero.tokens = 0.0;
  const run_result d = run<pt::algo::dapo>(b, e, o, zero);
  EXPECT_EQ(d.r.divisor, 0.0);
  EXPECT_NEAR(d.r.loss, -0.1 * naive_token_mean_bonus(b, e, 1.0), 1e-13);
  for (double g : d.grad) EXPECT_EQ(g, 0.0);
  for (std::size_t t = 0; t < b.n(); ++t) EXPECT_NEAR(d.hgrad[t], -0.1 / 9.0, 1e-16);

  for (float& m : b.mask) m = 0.0f;
  const run_result m = run<pt::algo::dapo>(b, e, o);
  EXPECT_EQ(m.r.loss, 0.0);
  EXPECT_EQ(m.r.entropy, 0.0);
  for (double g : m.hgrad) EXPECT_EQ(g, 0.0);
}

// Float inputs: same as the double run to float precision.
TEST(PolicyGradientEntropy, FloatMatchesDouble) {
  const batch b = make_batch({7, 2, 9}, 0.3, 24);
  const std::vector<double> e = selection(b);
  const opts o = pt::pg_presets::trl_entropy_bonus(pt::pg_presets::dapo(), 0.05, 4.0);
  const run_result x = run<pt::algo::dapo>(b, e, o);
  const std::vector<float> lp(b.logp.begin(), b.logp.end()), old(b.old_logp.begin(), b.old_logp.end()),
      adv(b.adv.begin(), b.adv.end()), h(b.entropy.begin(), b.entropy.end()), ef(e.begin(), e.end());
  pt::policy_gradient_inputs<float> in;
  in.logprobs = lp;
  in.old_logprobs = old;
  in.advantages = adv;
  in.mask = b.mask;
  in.entropy = h;
  in.entropy_mask = ef;
  std::vector<float> g(b.n()), hg(b.n());
  const auto r = pt::algo::dapo::compute(in, o, {std::span<float>(g), std::span<float>(hg)});
  EXPECT_NEAR(r.loss, x.r.loss, 1e-6);
  EXPECT_NEAR(r.entropy, x.r.entropy, 1e-6);
  for (std::size_t t = 0; t < b.n(); ++t) EXPECT_NEAR(hg[t], x.hgrad[t], 1e-8) << t;
}

TEST(PolicyGradientEntropy, BadInputThrowsAndWritesNothing) {
  const batch b = make_batch({4, 3}, 0.3, 25);
  const opts good = pt::pg_presets::trl_entropy_bonus(pt::pg_presets::dapo(), 0.05, 2.0);
  const auto expect_throws = [&](const std::vector<double>& e, const opts& o, const char* what) {
    pt::policy_gradient_inputs<double> in = inputs_of(b, false, true);
    in.entropy_mask = e;
    std::vector<double> g(b.n(), 5.0), hg(b.n(), 5.0);
    EXPECT_THROW(pt::algo::dapo::compute(in, o, {std::span<double>(g), std::span<double>(hg)}),
                 pt::error)
        << what;
    for (std::size_t t = 0; t < b.n(); ++t) {
      EXPECT_EQ(g[t], 5.0) << what;
      EXPECT_EQ(hg[t], 5.0) << what;
    }
  };
  const std::vector<double> ok(b.n(), 1.0);
  std::vector<double> e = ok;
  e.pop_back();
  expect_throws(e, good, "entropy_mask one short");
  e = ok;
  e[3] = -0.5;
  expect_throws(e, good, "negative entropy_mask");
  e[3] = std::numeric_limits<double>::quiet_NaN();
  expect_throws(e, good, "NaN entropy_mask");
  e[3] = std::numeric_limits<double>::infinity();
  expect_throws(e, good, "infinite entropy_mask");
  opts o = good;
  o.entropy_divisor = 0.0;
  expect_throws(ok, o, "entropy_divisor 0");
  o.entropy_divisor = -2.0;
  expect_throws(ok, o, "entropy_divisor < 0");
  o.entropy_divisor = std::numeric_limits<double>::infinity();
  expect_throws(ok, o, "entropy_divisor inf");
  o.entropy_divisor = std::numeric_limits<double>::quiet_NaN();
  expect_throws(ok, o, "entropy_divisor NaN");
  o = good;
  o.entropy_agg = static_cast<pt::entropy_aggregation>(7);
  expect_throws(ok, o, "unknown entropy_agg");
  // the valid call goes through
  pt::policy_gradient_inputs<double> in = inputs_of(b, false, true);
  in.entropy_mask = ok;
  EXPECT_NO_THROW(pt::algo::dapo::compute(in, good));
}

}  // namespace
