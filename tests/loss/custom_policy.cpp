// "A new policy is one file": a surrogate with hyperparameters of its own, defined in this test
// file only (derived from surrogate::defaults, which supplies every other hook), composed into
// loss::policy_gradient, whose options_type then carries its options as `.surrogate`. Checked
// against an independent float64 reference and central finite differences; its validation lives
// with it and runs before anything is written.
#include <gtest/gtest.h>

#include <cmath>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "policy_gradient_naive.hpp"
#include "posttrain/loss/policy_gradient.hpp"

namespace {

namespace pt = posttrain;
using namespace pg_test;

// The power surrogate: L = −A·(r^κ − 1)/κ with r = e^{clamp(ℓ − ℓold)}; κ → 0 is −A·log r.
// ∂L/∂ℓ = −A·r^κ (0 where the log-ratio clamp is active). κ is the surrogate's own option.
struct power : pt::surrogate::defaults {
  static constexpr const char* name = "power";

  struct options {
    double kappa = 0.5;
  };

  static void validate(const pt::policy_gradient_options&, const options& s,
                       std::string_view where) {
    pt::expect_positive(s.kappa, where, "options.surrogate.kappa");
    pt::expect_finite(s.kappa, where, "options.surrogate.kappa");
  }

  template <class T>
  static pt::pg_token<T> evaluate(T, T logr, T a, const pt::policy_gradient_options& o,
                                  const options& s) {
    const T lo = T(o.log_ratio_min), hi = T(o.log_ratio_max);
    const bool clamped = logr < lo || hi < logr;
    const T lr = logr < lo ? lo : (hi < logr ? hi : logr);
    const T k = T(s.kappa);
    const T rk = std::exp(k * lr);
    pt::pg_token<T> out;
    out.ratio = std::exp(lr);
    out.loss = -a * (rk - T(1)) / k;
    out.grad = clamped ? T(0) : -a * rk;
    return out;
  }
};

using token_mean_loss = pt::loss::policy_gradient<power, pt::kl::none, pt::agg::token_mean>;
using row_mean_loss = pt::loss::policy_gradient<power, pt::kl::k3, pt::agg::seq_mean_token_mean>;

static_assert(pt::check_pg_surrogate<power>());
static_assert(pt::check_loss_model<token_mean_loss>() && pt::check_loss_model<row_mean_loss>());
static_assert(std::is_same_v<token_mean_loss::options_type,
                             pt::basic_policy_gradient_loss_options<power::options>>);
static_assert(std::is_same_v<decltype(token_mean_loss::options_type{}.surrogate), power::options>);
// A surrogate without options of its own composes to the usual options (an empty .surrogate).
static_assert(std::is_same_v<
              pt::loss::policy_gradient<pt::surrogate::clip, pt::kl::none,
                                        pt::agg::token_mean>::options_type,
              pt::policy_gradient_loss_options>);

// Independent float64 reference of the power surrogate's per-token loss and slope.
std::vector<double> reference_losses(const batch& b, double kappa, double lo, double hi,
                                     std::vector<double>* slope = nullptr) {
  std::vector<double> L(b.n());
  if (slope) slope->assign(b.n(), 0.0);
  for (std::size_t t = 0; t < b.n(); ++t) {
    const double logr = b.logp[t] - b.old_logp[t];
    const double lr = std::min(std::max(logr, lo), hi);
    L[t] = -b.adv[t] * (std::pow(std::exp(lr), kappa) - 1.0) / kappa;
    if (slope && lr == logr) (*slope)[t] = -b.adv[t] * std::pow(std::exp(lr), kappa);
  }
  return L;
}

TEST(CustomPolicy, NewSurrogateWithOwnOptionsMatchesReferenceAndFiniteDifferences) {
  const batch b = make_batch({6, 0, 5, 7}, 0.8, 901);
  for (double kappa : {0.5, 1.0, 2.5}) {
    SCOPED_TRACE(kappa);
    token_mean_loss::options_type o;
    o.surrogate.kappa = kappa;
    std::vector<double> g(b.n());
    const auto r =
        token_mean_loss::compute(pt::exec::host{}, inputs_of(b), o, {std::span<double>(g), {}}, {});
    std::vector<double> slope;
    const auto L = reference_losses(b, kappa, -INFINITY, INFINITY, &slope);
    EXPECT_NEAR(r.loss, naive_token_mean(b, L), 1e-13);
    double w = 0;
    for (float m : b.mask) w += m;
    for (std::size_t t = 0; t < b.n(); ++t)
      EXPECT_NEAR(g[t], b.mask[t] * slope[t] / w, 1e-14) << t;
    expect_fd_grad(
        b,
        [&](const batch& x) {
          return token_mean_loss::compute(pt::exec::host{}, inputs_of(x), o, {}, {}).loss;
        },
        g);
    // The positional form takes the surrogate's options last: the same numbers.
    std::vector<double> g2(b.n());
    const auto r2 =
        token_mean_loss::compute(inputs_of(b), o.policy, {std::span<double>(g2), {}}, {}, {},
                                 o.surrogate);
    EXPECT_EQ(r2.loss, r.loss);
    EXPECT_EQ(g2, g);
  }
}

TEST(CustomPolicy, SharedOptionsAndKlComposeWithTheNewSurrogate) {
  // Shared options (log-ratio clamp, β·k3) and the per-row aggregation around the new surrogate.
  const batch b = make_batch({4, 6, 3}, 1.5, 902);
  row_mean_loss::options_type o;
  o.surrogate.kappa = 1.5;
  o.policy.log_ratio_min = -0.6;
  o.policy.log_ratio_max = 0.6;
  o.policy.kl_coef = 0.1;
  std::vector<double> g(b.n());
  const auto r = row_mean_loss::compute(pt::exec::host{}, inputs_of(b, true), o,
                                        {std::span<double>(g), {}}, {});
  auto L = reference_losses(b, 1.5, -0.6, 0.6);
  for (std::size_t t = 0; t < b.n(); ++t) {
    const double d = b.logp[t] - b.ref[t];
    L[t] += 0.1 * (std::exp(-d) + d - 1.0);  // k3 of ρ/π
  }
  EXPECT_NEAR(r.loss, naive_seq_mean_token_mean(b, L), 1e-12);
  expect_fd_grad(
      b,
      [&](const batch& x) {
        return row_mean_loss::compute(pt::exec::host{}, inputs_of(x, true), o, {}, {}).loss;
      },
      g);
}

TEST(CustomPolicy, ValidationOfTheSurrogatesOptionsLivesWithIt) {
  const batch b = make_batch({3, 4}, 0.3, 903);
  std::vector<double> g(b.n(), 7.0);
  for (double bad : {0.0, -1.0, std::nan(""), HUGE_VAL}) {
    token_mean_loss::options_type o;
    o.surrogate.kappa = bad;
    try {
      token_mean_loss::compute(pt::exec::host{}, inputs_of(b), o, {std::span<double>(g), {}}, {});
      ADD_FAILURE() << "kappa = " << bad << " accepted";
    } catch (const pt::error& e) {
      EXPECT_NE(std::string(e.what()).find("options.surrogate.kappa"), std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("loss::policy_gradient<power>"), std::string::npos)
          << e.what();
    }
    for (double x : g) EXPECT_EQ(x, 7.0);
  }
}

}  // namespace
