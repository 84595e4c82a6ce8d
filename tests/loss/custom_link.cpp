// "A new link is one file" (issue 9 item 2), as a test: a preference link with a hyperparameter of
// its own, defined here and nowhere in the library, composed with loss::preference. It derives
// from pref::link_defaults and states only its name, its options, their check and its formula;
// the composition's options_type carries its options as `.link`. Checked against a float64
// reference, with central differences of both slopes and of ∂loss/∂ℓ through the composition; a
// bad option of its own throws before any output is written; a preference_options without the
// link's part does not compile (tests/compile_fail/preference_link_options.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string_view>
#include <type_traits>
#include <vector>

#include "loss/preference_testing.hpp"
#include "posttrain/loss/preference.hpp"

namespace pt = posttrain;
namespace pref = posttrain::pref;
namespace tst = preference_testing;
using pt::loss::preference_options;

namespace {

// Soft hinge: loss = s·log(1 + e^{(1 − βz)/s}), z = Δc − Δr — a smooth SLiC hinge whose sharpness
// s > 0 is the link's own option (s → 0 is max(0, 1 − βz)).
//   ∂loss/∂Δc = −β·σ((1 − βz)/s) = −∂loss/∂Δr
struct soft_hinge : pref::link_defaults {
  static constexpr const char* name = "soft_hinge";

  struct options {
    double sharpness = 0.5;
  };

  static void validate(const preference_options& o, const options& s, std::string_view where) {
    link_defaults::validate(o, where);
    pt::expect_positive(s.sharpness, where, "options.link.sharpness");
    pt::expect_finite(s.sharpness, where, "options.link.sharpness");
  }

  template <class T>
  POSTTRAIN_HOST_DEVICE static pref::pair_value<T> evaluate(T delta_chosen, T delta_rejected,
                                                            const preference_options& o,
                                                            const options& s) {
    const T beta = T(o.beta), sharpness = T(s.sharpness);
    const T u = (T(1) - beta * (delta_chosen - delta_rejected)) / sharpness;
    const T slope = -beta * pt::math::sigmoid(u);
    return {sharpness * pt::math::log1pexp(u), slope, -slope};
  }
};

using soft_hinge_loss = pt::loss::preference<soft_hinge, pt::seq::sum>;

static_assert(pref::diagnose_preference_link<soft_hinge>());
static_assert(pref::has_link_options_v<soft_hinge>);
static_assert(std::is_same_v<soft_hinge_loss::options_type,
                             pt::loss::preference_loss_options<soft_hinge::options>>);
static_assert(pt::loss_model<soft_hinge_loss>);
// Links without options keep the plain shared options as their options_type.
static_assert(std::is_same_v<pt::loss::preference<pref::sigmoid, pt::seq::sum>::options_type,
                             preference_options>);

// The float64 reference, written from the formula above with plain exp/log.
double naive_soft_hinge(double dc, double dr, double beta, double sharpness) {
  return sharpness * std::log1p(std::exp((1.0 - beta * (dc - dr)) / sharpness));
}

// Mean over pairs of the naive link on summed log-ratios.
double naive_loss(const tst::pair_data& d, double beta, double sharpness) {
  double total = 0;
  for (pt::index_t p = 0; p < d.pairs(); ++p)
    total += naive_soft_hinge(tst::naive_score(d.chosen, p) - d.chosen.reference[p],
                              tst::naive_score(d.rejected, p) - d.rejected.reference[p], beta,
                              sharpness);
  return total / static_cast<double>(d.pairs());
}

}  // namespace

TEST(CustomLink, SlopesMatchCentralDifferencesOfTheReference) {
  const double h = 1e-6;
  for (double beta : {0.1, 0.7, 3.0})
    for (double sharpness : {0.05, 0.5, 2.0})
      for (double dc : {-2.0, -0.3, 0.0, 0.8, 4.0})
        for (double dr : {-1.5, 0.0, 0.6, 3.0}) {
          const pref::pair_value<double> v =
              soft_hinge::evaluate(dc, dr, {.beta = beta}, {.sharpness = sharpness});
          const double want = naive_soft_hinge(dc, dr, beta, sharpness);
          EXPECT_NEAR(v.loss, want, 1e-12 * (1 + std::fabs(want)));
          const double fd_c = (naive_soft_hinge(dc + h, dr, beta, sharpness) -
                               naive_soft_hinge(dc - h, dr, beta, sharpness)) /
                              (2 * h);
          const double fd_r = (naive_soft_hinge(dc, dr + h, beta, sharpness) -
                               naive_soft_hinge(dc, dr - h, beta, sharpness)) /
                              (2 * h);
          EXPECT_NEAR(v.d_chosen, fd_c, 1e-6 * (1 + std::fabs(fd_c)))
              << beta << " " << sharpness << " " << dc << " " << dr;
          EXPECT_NEAR(v.d_rejected, fd_r, 1e-6 * (1 + std::fabs(fd_r)))
              << beta << " " << sharpness << " " << dc << " " << dr;
          const pref::pair_value<float> f =
              soft_hinge::evaluate(static_cast<float>(dc), static_cast<float>(dr), {.beta = beta},
                                   {.sharpness = sharpness});
          EXPECT_NEAR(f.loss, v.loss, 1e-5 * (1 + std::fabs(v.loss)));
          EXPECT_NEAR(f.d_chosen, v.d_chosen, 1e-5 * (1 + std::fabs(v.d_chosen)));
        }
}

TEST(CustomLink, CompositionReadsTheLinksOwnOptions) {
  std::mt19937_64 rng(2024);
  for (int round = 0; round < 3; ++round) {
    const tst::pair_data d = tst::make_data(rng, 5, 0, 6, round == 2);
    for (double sharpness : {0.25, 1.5}) {
      soft_hinge_loss::options_type o{};
      o.beta = 0.4;
      o.link.sharpness = sharpness;
      const double want = naive_loss(d, 0.4, sharpness);
      EXPECT_NEAR(soft_hinge_loss::compute(d.inputs(), o).loss, want,
                  1e-12 * (1 + std::fabs(want)));
      tst::check_gradient<soft_hinge_loss>(d, o);
    }
  }
  // The default options are the link's defaults (sharpness 0.5) with the shared defaults (β 0.1).
  const tst::pair_data d = tst::make_data(rng, 3, 1, 4, false);
  const double want = naive_loss(d, 0.1, 0.5);
  EXPECT_NEAR(soft_hinge_loss::compute(d.inputs()).loss, want, 1e-12 * (1 + std::fabs(want)));
}

TEST(CustomLink, BadOwnOptionThrowsBeforeAnyOutputIsWritten) {
  std::mt19937_64 rng(7);
  const tst::pair_data d = tst::make_data(rng, 3, 1, 4, false);
  std::vector<double> gc(d.chosen.logprobs.size(), 7.0), gr(d.rejected.logprobs.size(), 7.0);
  std::vector<double> losses(3, 7.0), rewards(3, 7.0);
  const pt::loss::preference_outputs<double> out{
      .chosen_grad = gc, .rejected_grad = gr, .pair_losses = losses, .chosen_rewards = rewards};
  for (double sharpness : {0.0, -1.0, std::numeric_limits<double>::quiet_NaN(),
                           std::numeric_limits<double>::infinity()}) {
    soft_hinge_loss::options_type o{};
    o.link.sharpness = sharpness;
    tst::expect_error([&] { soft_hinge_loss::compute(d.inputs(), o, out); },
                      "options.link.sharpness");
  }
  // The shared check still comes from link_defaults.
  tst::expect_error(
      [&] {
        soft_hinge_loss::compute(d.inputs(), {{.beta = 0.0}, {}}, out);
      },
      "options.beta");
  for (const std::vector<double>* v : {&gc, &gr, &losses, &rewards})
    for (double x : *v) EXPECT_EQ(x, 7.0);
}
