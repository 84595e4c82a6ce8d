// Tests of the DPO-family links (loss/preference/*.hpp) one pair at a time: every link against its
// naive float64 formula (preference_naive.hpp), its derivatives against central differences of
// that formula, the invariants of section 7 (DPO = log 2 at z = 0, hinge flat beyond the margin,
// IPO minimum at z = 1/(2β), ...), finiteness at extreme log-ratios, float agreement, and the
// hyperparameter validation of each link.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "loss/preference_naive.hpp"
#include "posttrain/core/error.hpp"
#include "posttrain/loss/preference.hpp"

namespace pt = posttrain;
namespace pref = posttrain::pref;
namespace nv = preference_naive;
using pt::loss::preference_options;

namespace {

static_assert(pref::preference_link<pref::sigmoid>);
static_assert(pref::preference_link<pref::simpo>);
static_assert(pref::preference_link<pref::robust>);
static_assert(pref::preference_link<pref::hinge>);
static_assert(pref::preference_link<pref::ipo>);
static_assert(pref::preference_link<pref::exo_pair>);
static_assert(pref::preference_link<pref::nca_pair>);
static_assert(pref::preference_link<pref::bco_pair>);
static_assert(pref::preference_link<pref::sppo_hard>);
static_assert(pref::preference_link<pref::apo_zero>);
static_assert(pref::preference_link<pref::apo_down>);
static_assert(pref::preference_link<pref::discopop>);
struct not_a_link {};
static_assert(!pref::preference_link<not_a_link>);
static_assert(pt::seq::sequence_reduction<pt::seq::sum>);
static_assert(!pt::seq::sequence_reduction<not_a_link>);

// One option set of the grids below, flat: the shared fields and the own fields of the two links
// that have them (simpo's γ, discopop's τ), split by shared() / own<Link>() into what a link takes.
struct flat_options {
  double beta = 0.1;
  double label_smoothing = 0.0;
  double gamma = 0.5;
  double tau = 0.05;
};

preference_options shared(const flat_options& f) {
  return {.beta = f.beta, .label_smoothing = f.label_smoothing};
}

template <class Link>
pref::link_options_t<Link> own(const flat_options& f) {
  if constexpr (std::is_same_v<Link, pref::simpo>)
    return {.gamma = f.gamma};
  else if constexpr (std::is_same_v<Link, pref::discopop>)
    return {.tau = f.tau};
  else
    return {};
}

template <class Link, class T>
pref::pair_value<T> evaluate(T dc, T dr, const flat_options& f) {
  return pref::link_call::evaluate<Link>(dc, dr, shared(f), own<Link>(f));
}

nv::params naive_params(const flat_options& o) {
  return {o.beta, o.label_smoothing, o.gamma, o.tau};
}

const std::vector<double> kDeltas{-3.0, -1.1, -0.37, 0.0, 0.25, 0.9, 2.4};

// Loss vs the naive formula and both derivatives vs central differences of the naive formula,
// over a grid of (Δc, Δr) and the given option sets.
template <class Link>
void check_link(nv::link_fn naive, const std::vector<flat_options>& option_sets) {
  const double h = 1e-5;
  for (const flat_options& o : option_sets) {
    const nv::params np = naive_params(o);
    for (double dc : kDeltas)
      for (double dr : kDeltas) {
        SCOPED_TRACE(std::string(Link::name) + " beta=" + std::to_string(o.beta) +
                     " eps=" + std::to_string(o.label_smoothing) + " dc=" + std::to_string(dc) +
                     " dr=" + std::to_string(dr));
        const auto v = evaluate<Link>(dc, dr, o);
        const double want = naive(dc, dr, np);
        EXPECT_NEAR(v.loss, want, 1e-12 * (1 + std::fabs(want)));
        const double fd_c = (naive(dc + h, dr, np) - naive(dc - h, dr, np)) / (2 * h);
        const double fd_r = (naive(dc, dr + h, np) - naive(dc, dr - h, np)) / (2 * h);
        EXPECT_NEAR(v.d_chosen, fd_c, 1e-7 * (1 + std::fabs(fd_c)));
        EXPECT_NEAR(v.d_rejected, fd_r, 1e-7 * (1 + std::fabs(fd_r)));
        // float evaluation agrees with double to float precision
        const auto f = evaluate<Link>(static_cast<float>(dc), static_cast<float>(dr), o);
        EXPECT_NEAR(f.loss, v.loss, 2e-5 * (1 + std::fabs(v.loss)));
        EXPECT_NEAR(f.d_chosen, v.d_chosen, 2e-5 * (1 + std::fabs(v.d_chosen)));
        EXPECT_NEAR(f.d_rejected, v.d_rejected, 2e-5 * (1 + std::fabs(v.d_rejected)));
      }
  }
}

std::vector<flat_options> betas() { return {{.beta = 0.1}, {.beta = 0.5}, {.beta = 2.0}}; }

}  // namespace

TEST(PreferenceLinks, SigmoidMatchesNaiveWithAndWithoutLabelSmoothing) {
  check_link<pref::sigmoid>(nv::sigmoid, {{.beta = 0.1},
                                          {.beta = 2.0},
                                          {.beta = 0.5, .label_smoothing = 0.1},
                                          {.beta = 1.0, .label_smoothing = 0.5}});
}
TEST(PreferenceLinks, SimpoMatchesNaive) {
  check_link<pref::simpo>(nv::simpo, {{.beta = 2.0, .gamma = 1.0},
                                      {.beta = 0.1, .gamma = 0.5},
                                      {.beta = 5.0, .label_smoothing = 0.2, .gamma = -0.3}});
}
TEST(PreferenceLinks, RobustMatchesNaive) {
  check_link<pref::robust>(nv::robust, {{.beta = 0.1},
                                        {.beta = 0.7, .label_smoothing = 0.2},
                                        {.beta = 2.0, .label_smoothing = 0.45}});
}
TEST(PreferenceLinks, HingeMatchesNaive) {
  // kDeltas never put βz exactly on the kink 1 for these β.
  check_link<pref::hinge>(nv::hinge, {{.beta = 0.1}, {.beta = 0.45}, {.beta = 2.0}});
}
TEST(PreferenceLinks, IpoMatchesNaive) { check_link<pref::ipo>(nv::ipo, betas()); }
TEST(PreferenceLinks, ExoPairMatchesNaive) {
  check_link<pref::exo_pair>(nv::exo_pair, {{.beta = 0.1, .label_smoothing = 1e-3},
                                            {.beta = 1.5, .label_smoothing = 0.1},
                                            {.beta = 0.5, .label_smoothing = 0.5}});
}
TEST(PreferenceLinks, NcaPairMatchesNaive) { check_link<pref::nca_pair>(nv::nca_pair, betas()); }
TEST(PreferenceLinks, BcoPairMatchesNaive) { check_link<pref::bco_pair>(nv::bco_pair, betas()); }
TEST(PreferenceLinks, SppoHardMatchesNaive) { check_link<pref::sppo_hard>(nv::sppo_hard, betas()); }
TEST(PreferenceLinks, ApoZeroMatchesNaive) { check_link<pref::apo_zero>(nv::apo_zero, betas()); }
TEST(PreferenceLinks, ApoDownMatchesNaive) { check_link<pref::apo_down>(nv::apo_down, betas()); }
TEST(PreferenceLinks, DiscopopMatchesNaive) {
  // β·z stays within ±14 so the naive w·e^{−x} cannot overflow.
  check_link<pref::discopop>(nv::discopop, {{.beta = 0.1},
                                            {.beta = 0.5, .tau = 0.05},
                                            {.beta = 2.0, .tau = 0.5},
                                            {.beta = 1.0, .tau = 2.0}});
}

TEST(PreferenceLinks, SigmoidIsLog2AtZeroMarginAndSymmetricInSmoothing) {
  for (double beta : {0.01, 0.1, 5.0})
    for (double eps : {0.0, 0.1, 0.5}) {
      const preference_options o{.beta = beta, .label_smoothing = eps};
      for (double d : {-2.0, 0.0, 3.0}) {
        const auto v = pref::sigmoid::evaluate(d, d, o);
        EXPECT_NEAR(v.loss, std::log(2.0), 1e-15);
        EXPECT_NEAR(v.d_chosen, beta * (eps - 0.5), 1e-15);
        EXPECT_EQ(v.d_rejected, -v.d_chosen);
      }
    }
  // ε = 0.5 makes the loss even in z: ½·(log1pexp(u) + log1pexp(−u)).
  const preference_options half{.beta = 1.0, .label_smoothing = 0.5};
  EXPECT_NEAR(pref::sigmoid::evaluate(1.7, 0.0, half).loss,
              pref::sigmoid::evaluate(0.0, 1.7, half).loss, 1e-15);
  // robust with ε = 0 is plain DPO; simpo with γ = 0 is sigmoid.
  const preference_options o{.beta = 0.3, .label_smoothing = 0.0};
  for (double z : {-4.0, 0.3, 7.0}) {
    EXPECT_DOUBLE_EQ(pref::robust::evaluate(z, 0.0, o).loss,
                     pref::sigmoid::evaluate(z, 0.0, o).loss);
    EXPECT_DOUBLE_EQ(pref::simpo::evaluate(z, 0.0, o, {.gamma = 0.0}).loss,
                     pref::sigmoid::evaluate(z, 0.0, o).loss);
  }
}

TEST(PreferenceLinks, HingeIsZeroBeyondTheMargin) {
  const preference_options o{.beta = 0.5};
  for (double z : {2.0, 2.0 + 1e-12, 3.0, 1e4}) {  // βz >= 1
    const auto v = pref::hinge::evaluate(z, 0.0, o);
    EXPECT_EQ(v.loss, 0.0);
    EXPECT_EQ(v.d_chosen, 0.0);
    EXPECT_EQ(v.d_rejected, 0.0);
  }
  const auto inside = pref::hinge::evaluate(1.0, 0.0, o);  // βz = 0.5
  EXPECT_DOUBLE_EQ(inside.loss, 0.5);
  EXPECT_DOUBLE_EQ(inside.d_chosen, -0.5);
  EXPECT_DOUBLE_EQ(inside.d_rejected, 0.5);
}

TEST(PreferenceLinks, IpoMinimumAtHalfInverseBeta) {
  for (double beta : {0.1, 0.5, 4.0}) {
    const preference_options o{.beta = beta};
    const double target = 1 / (2 * beta);
    for (double dr : {-1.0, 0.0, 2.5}) {
      const auto at = pref::ipo::evaluate(dr + target, dr, o);
      EXPECT_NEAR(at.loss, 0.0, 1e-24);
      EXPECT_NEAR(at.d_chosen, 0.0, 1e-12);
      EXPECT_GT(pref::ipo::evaluate(dr + target + 0.01, dr, o).loss, 0.0);
      EXPECT_GT(pref::ipo::evaluate(dr + target - 0.01, dr, o).loss, 0.0);
    }
  }
}

TEST(PreferenceLinks, OtherInvariants) {
  const preference_options o{.beta = 0.5};
  // SPPO-hard is zero at Δc = 1/(2β), Δr = −1/(2β).
  EXPECT_EQ(pref::sppo_hard::evaluate(1.0, -1.0, o).loss, 0.0);
  // At zero log-ratios: APO-zero = APO-down = 1, BCO-pair = NCA-pair = 2·log 2.
  EXPECT_DOUBLE_EQ(pref::apo_zero::evaluate(0.0, 0.0, o).loss, 1.0);
  EXPECT_DOUBLE_EQ(pref::apo_down::evaluate(0.0, 0.0, o).loss, 1.0);
  EXPECT_NEAR(pref::bco_pair::evaluate(0.0, 0.0, o).loss, 2 * std::log(2.0), 1e-15);
  EXPECT_NEAR(pref::nca_pair::evaluate(0.0, 0.0, o).loss, 2 * std::log(2.0), 1e-15);
  // DiscoPOP at x = 0: w = ½, loss = ½·log 2 + ½.
  EXPECT_NEAR(pref::discopop::evaluate(0.0, 0.0, o, {}).loss, 0.5 * std::log(2.0) + 0.5, 1e-15);
  // EXO is minimal (0) where σ(u) = 1 − ε, i.e. u = log((1−ε)/ε).
  const preference_options exo{.beta = 0.5, .label_smoothing = 0.1};
  const double u_star = std::log(0.9 / 0.1);
  const auto at = pref::exo_pair::evaluate(u_star / 0.5, 0.0, exo);
  EXPECT_NEAR(at.loss, 0.0, 1e-15);
  EXPECT_NEAR(at.d_chosen, 0.0, 1e-15);
  EXPECT_GT(pref::exo_pair::evaluate(u_star / 0.5 + 0.1, 0.0, exo).loss, 0.0);
}

// Every link at extreme log-ratios and large β: finite loss and derivatives, and the expected
// limits for the logistic ones.
template <class Link>
void expect_finite_at_extremes(const flat_options& o) {
  for (double dc : {-1e6, -1e4, -50.0, 0.0, 50.0, 1e4, 1e6})
    for (double dr : {-1e6, -1e4, 0.0, 1e4, 1e6}) {
      const auto v = evaluate<Link>(dc, dr, o);
      EXPECT_TRUE(std::isfinite(v.loss)) << Link::name << " " << dc << " " << dr;
      EXPECT_TRUE(std::isfinite(v.d_chosen)) << Link::name << " " << dc << " " << dr;
      EXPECT_TRUE(std::isfinite(v.d_rejected)) << Link::name << " " << dc << " " << dr;
      const auto f = evaluate<Link>(static_cast<float>(dc), static_cast<float>(dr), o);
      EXPECT_TRUE(std::isfinite(f.loss)) << Link::name << " float " << dc << " " << dr;
      EXPECT_TRUE(std::isfinite(f.d_chosen)) << Link::name << " float " << dc << " " << dr;
      EXPECT_TRUE(std::isfinite(f.d_rejected)) << Link::name << " float " << dc << " " << dr;
    }
}

TEST(PreferenceLinks, FiniteAtExtremes) {
  for (double beta : {0.1, 10.0, 1e3}) {
    const flat_options o{.beta = beta, .label_smoothing = 0.1};
    expect_finite_at_extremes<pref::sigmoid>(o);
    expect_finite_at_extremes<pref::simpo>(o);
    expect_finite_at_extremes<pref::robust>(o);
    expect_finite_at_extremes<pref::hinge>(o);
    expect_finite_at_extremes<pref::ipo>(o);
    expect_finite_at_extremes<pref::exo_pair>(o);
    expect_finite_at_extremes<pref::nca_pair>(o);
    expect_finite_at_extremes<pref::bco_pair>(o);
    expect_finite_at_extremes<pref::sppo_hard>(o);
    expect_finite_at_extremes<pref::apo_zero>(o);
    expect_finite_at_extremes<pref::apo_down>(o);
    expect_finite_at_extremes<pref::discopop>(o);
  }
  // Logistic limits: a hugely preferred pair costs 0, a hugely dispreferred one costs β·|z|.
  const preference_options o{.beta = 0.1};
  EXPECT_EQ(pref::sigmoid::evaluate(1e4, 0.0, o).loss, 0.0);
  EXPECT_NEAR(pref::sigmoid::evaluate(-1e4, 0.0, o).loss, 1e3, 1e-9);
  EXPECT_NEAR(pref::sigmoid::evaluate(-1e4, 0.0, o).d_chosen, -0.1, 1e-15);
  EXPECT_NEAR(pref::discopop::evaluate(-1e4, 0.0, o, {}).loss, 1e3, 1e-9);
  EXPECT_NEAR(pref::discopop::evaluate(-1e4, 0.0, o, {}).d_chosen, -0.1, 1e-15);
  EXPECT_EQ(pref::discopop::evaluate(1e4, 0.0, o, {}).loss, 0.0);
}

namespace {
template <class Link>
void expect_rejects(const flat_options& o, const char* what) {
  EXPECT_THROW(pref::link_call::validate<Link>(shared(o), own<Link>(o), "test"), pt::error)
      << Link::name << ": " << what;
}
template <class Link>
void expect_accepts(const flat_options& o) {
  EXPECT_NO_THROW(pref::link_call::validate<Link>(shared(o), own<Link>(o), "test")) << Link::name;
}
template <class Link>
void expect_beta_validated() {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (double beta : {0.0, -0.1, nan, inf})
    expect_rejects<Link>({.beta = beta, .label_smoothing = 0.1}, "beta");
}
}  // namespace

TEST(PreferenceLinks, ValidatesHyperparameters) {
  expect_beta_validated<pref::sigmoid>();
  expect_beta_validated<pref::simpo>();
  expect_beta_validated<pref::robust>();
  expect_beta_validated<pref::hinge>();
  expect_beta_validated<pref::ipo>();
  expect_beta_validated<pref::exo_pair>();
  expect_beta_validated<pref::nca_pair>();
  expect_beta_validated<pref::bco_pair>();
  expect_beta_validated<pref::sppo_hard>();
  expect_beta_validated<pref::apo_zero>();
  expect_beta_validated<pref::apo_down>();
  expect_beta_validated<pref::discopop>();
  const double nan = std::numeric_limits<double>::quiet_NaN();

  expect_accepts<pref::sigmoid>({.label_smoothing = 0.0});
  expect_accepts<pref::sigmoid>({.label_smoothing = 0.5});
  expect_rejects<pref::sigmoid>({.label_smoothing = -0.01}, "eps < 0");
  expect_rejects<pref::sigmoid>({.label_smoothing = 0.6}, "eps > 0.5");
  expect_rejects<pref::sigmoid>({.label_smoothing = nan}, "eps NaN");

  expect_accepts<pref::robust>({.label_smoothing = 0.49});
  expect_rejects<pref::robust>({.label_smoothing = 0.5}, "eps = 0.5 divides by 0");
  expect_rejects<pref::robust>({.label_smoothing = -0.1}, "eps < 0");

  expect_accepts<pref::exo_pair>({.label_smoothing = 1e-3});
  expect_rejects<pref::exo_pair>({.label_smoothing = 0.0}, "eps = 0");
  expect_rejects<pref::exo_pair>({.label_smoothing = 0.7}, "eps > 0.5");

  expect_accepts<pref::simpo>({.gamma = -1.0});
  expect_rejects<pref::simpo>({.gamma = nan}, "gamma NaN");
  expect_rejects<pref::simpo>({.label_smoothing = 0.9}, "eps > 0.5");

  expect_rejects<pref::discopop>({.tau = 0.0}, "tau = 0");
  expect_rejects<pref::discopop>({.tau = -1.0}, "tau < 0");
  expect_rejects<pref::discopop>({.tau = nan}, "tau NaN");

  // Links ignore fields they do not read.
  expect_accepts<pref::hinge>({.label_smoothing = 0.9, .gamma = nan, .tau = -1});
  expect_accepts<pref::ipo>({.label_smoothing = 0.9, .gamma = nan, .tau = -1});

  // The message names the argument.
  try {
    pref::discopop::validate({}, {.tau = -1.0}, "algo::discopop");
    FAIL();
  } catch (const pt::error& e) {
    EXPECT_NE(std::string(e.what()).find("options.link.tau"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("algo::discopop"), std::string::npos) << e.what();
  }
}
