// Tests of LD-DPO (seq::ld<Side>; algo::ld_dpo = TRL HEAD, algo::ld_dpo_policy_only = TRL v0.26):
// the shared/tail split against a naive float64 form (0/1 and fractional masks, empty and fully
// masked completions), reference scores through loss::preference<...>::reference_scores for both
// sides, ∂loss/∂ℓ per token (tail tokens weigh α) and ∂loss/∂ρ by central differences, the limits
// (α = 1 is DPO, equal lengths are DPO), the NLL term on plain sums, and validation.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "loss/preference_naive.hpp"
#include "loss/preference_testing.hpp"

namespace pt = posttrain;
namespace pref = posttrain::pref;
namespace seq = posttrain::seq;
namespace algo = posttrain::algo;
namespace nv = preference_naive;
namespace tst = preference_testing;
using pt::index_t;
using pt::loss::preference_options;
using pt::loss::preference_outputs;

namespace {

// Reference token log-probs on the same masks (NaN behind zero masks).
std::vector<double> reference_tokens(std::mt19937_64& rng, const tst::side& s) {
  std::uniform_real_distribution<double> lp(-3.0, -0.05);
  std::vector<double> r(s.logprobs.size());
  for (std::size_t t = 0; t < r.size(); ++t) r[t] = s.mask[t] == 0.0f ? tst::kNaN : lp(rng);
  return r;
}

struct ld_case {
  tst::pair_data d;
  std::vector<double> ref_c, ref_r;  // reference token log-probs
};

// Fills d's reference scores as TRL would: LD on the reference (HEAD) or plain sums (v0.26).
void naive_reference(ld_case& c, double alpha, bool reference_too) {
  tst::pair_data& d = c.d;
  for (index_t p = 0; p < d.pairs(); ++p) {
    const index_t c0 = d.chosen.offsets[p], c1 = d.chosen.offsets[p + 1];
    const index_t r0 = d.rejected.offsets[p], r1 = d.rejected.offsets[p + 1];
    const index_t shared =
        std::min(nv::positive(d.chosen.mask, c0, c1), nv::positive(d.rejected.mask, r0, r1));
    const double a = reference_too ? alpha : 1.0;
    d.chosen.reference[p] = nv::ld_score(c.ref_c, d.chosen.mask, c0, c1, shared, a);
    d.rejected.reference[p] = nv::ld_score(c.ref_r, d.rejected.mask, r0, r1, shared, a);
  }
}

double naive_ld_dpo(const tst::pair_data& d, double alpha, double beta) {
  double total = 0;
  for (index_t p = 0; p < d.pairs(); ++p) {
    const index_t c0 = d.chosen.offsets[p], c1 = d.chosen.offsets[p + 1];
    const index_t r0 = d.rejected.offsets[p], r1 = d.rejected.offsets[p + 1];
    const index_t shared =
        std::min(nv::positive(d.chosen.mask, c0, c1), nv::positive(d.rejected.mask, r0, r1));
    const double pc = nv::ld_score(d.chosen.logprobs, d.chosen.mask, c0, c1, shared, alpha);
    const double pr = nv::ld_score(d.rejected.logprobs, d.rejected.mask, r0, r1, shared, alpha);
    total += -nv::logsig(beta * ((pc - d.chosen.reference[p]) - (pr - d.rejected.reference[p])));
  }
  return d.pairs() ? total / static_cast<double>(d.pairs()) : 0.0;
}

template <class Comp>
void check_ld(bool reference_too, double alpha, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const preference_options o = pt::pref::presets::ld_dpo(alpha, 0.5);
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(Comp::name() + " round " + std::to_string(round));
    ld_case c{tst::make_data(rng, 5, 0, 7, round == 2), {}, {}};
    c.ref_c = reference_tokens(rng, c.d.chosen);
    c.ref_r = reference_tokens(rng, c.d.rejected);
    // The composition's reference scores equal the naive ones for its side.
    std::vector<double> rc(5), rr(5);
    Comp::reference_scores(c.d.inputs().batch, std::span<const double>(c.ref_c),
                           std::span<const double>(c.ref_r), o, std::span<double>(rc),
                           std::span<double>(rr));
    naive_reference(c, alpha, reference_too);
    for (std::size_t p = 0; p < 5; ++p) {
      EXPECT_NEAR(rc[p], c.d.chosen.reference[p], 1e-13);
      EXPECT_NEAR(rr[p], c.d.rejected.reference[p], 1e-13);
    }
    const double want = naive_ld_dpo(c.d, alpha, o.beta);
    EXPECT_NEAR(Comp::compute(c.d.inputs(), o).loss, want, 1e-13 * (1 + want));
    tst::check_gradient<Comp>(c.d, o);
  }
}

}  // namespace

TEST(LdDpo, MatchesNaiveSplitWithGradients) {
  for (double alpha : {0.0, 0.3, 0.75}) {
    check_ld<algo::ld_dpo>(true, alpha, 10 + static_cast<int>(alpha * 100));
    check_ld<algo::ld_dpo_policy_only>(false, alpha, 20 + static_cast<int>(alpha * 100));
  }
}

// Tail tokens receive α times the gradient of shared tokens; the split counts unmasked positions.
TEST(LdDpo, TailTokensWeighAlpha) {
  tst::pair_data d;
  // chosen: 4 tokens, the 2nd masked (NaN behind it): positions 1, -, 2, 3; rejected: 2 tokens.
  d.chosen.offsets = {0, 4};
  d.chosen.mask = {1, 0, 1, 1};
  d.chosen.logprobs = {-0.5, tst::kNaN, -1.0, -2.0};
  d.rejected.offsets = {0, 2};
  d.rejected.mask = {1, 1};
  d.rejected.logprobs = {-1.5, -0.25};
  d.chosen.reference = {-2.0};
  d.rejected.reference = {-1.0};
  const double alpha = 0.4;
  std::vector<double> gc(4), gr(2);
  const auto r = algo::ld_dpo::compute(d.inputs(), pt::pref::presets::ld_dpo(alpha),
                                       preference_outputs<double>{gc, gr});
  // shared = min(3, 2) = 2: chosen π = −0.5 − 1.0 + α·(−2.0).
  const double pc = -1.5 + alpha * -2.0, pr = -1.75;
  EXPECT_NEAR(r.loss, -nv::logsig(0.1 * ((pc + 2.0) - (pr + 1.0))), 1e-15);
  EXPECT_EQ(gc[1], 0.0);
  EXPECT_NEAR(gc[3], alpha * gc[0], 1e-16);
  EXPECT_EQ(gc[2], gc[0]);
  EXPECT_EQ(gr[0], gr[1]);
  EXPECT_NEAR(gr[0], -gc[0], 1e-16);
  // Rewards are β·Δ of the LD scores.
  EXPECT_NEAR(r.chosen_reward, 0.1 * (pc + 2.0), 1e-15);
}

TEST(LdDpo, LimitsEdgeCasesAndReferenceDerivatives) {
  std::mt19937_64 rng(31);
  const tst::pair_data d = tst::make_data(rng, 6, 0, 6, true);
  // α = 1 is DPO on sums.
  EXPECT_NEAR(algo::ld_dpo::compute(d.inputs(), pt::pref::presets::ld_dpo(1.0)).loss,
              algo::dpo::compute(d.inputs(), {}).loss, 1e-14);
  // Pairs of equal unmasked length have no tail: LD = DPO for any α.
  tst::pair_data eq = tst::make_data(rng, 4, 3, 3, false);
  eq.rejected.mask = eq.chosen.mask;
  for (std::size_t t = 0; t < eq.rejected.logprobs.size(); ++t)
    if (eq.rejected.mask[t] == 0.0f)
      eq.rejected.logprobs[t] = tst::kNaN;
    else if (std::isnan(eq.rejected.logprobs[t]))
      eq.rejected.logprobs[t] = -1.0;
  EXPECT_NEAR(algo::ld_dpo::compute(eq.inputs(), pt::pref::presets::ld_dpo(0.2)).loss,
              algo::dpo::compute(eq.inputs(), {}).loss, 1e-14);
  // An empty or fully masked side: shared = 0, the other side is all tail.
  tst::pair_data e;
  e.chosen.offsets = {0, 0};
  e.rejected.offsets = {0, 2};
  e.rejected.mask = {0, 1};
  e.rejected.logprobs = {tst::kNaN, -2.0};
  e.chosen.reference = {0.0};
  e.rejected.reference = {-1.0};
  EXPECT_NEAR(algo::ld_dpo::compute(e.inputs(), pt::pref::presets::ld_dpo(0.5)).loss,
              -nv::logsig(0.1 * (0.0 - (0.5 * -2.0 + 1.0))), 1e-15);
  const tst::pair_data none;
  EXPECT_EQ(algo::ld_dpo::compute(none.inputs(), pt::pref::presets::ld_dpo(0.5)).loss, 0.0);
  // ∂/∂ρ = −∂/∂π (single tokens are shared).
  const tst::pair_data one =
      tst::single_tokens({-1.0, -2.5}, {-2.0, -0.7}, {-1.4, -2.0}, {-1.2, -1.5});
  tst::check_reference_gradient<algo::ld_dpo>(one, pt::pref::presets::ld_dpo(0.3));
  // With an NLL term, the NLL uses the plain sums (every chosen token weighs 1 in it).
  using ld_nll =
      pt::loss::preference<pref::sigmoid, seq::ld<>, pref::with_reference, pref::nll_token_mean>;
  preference_options o = pt::pref::presets::ld_dpo(0.3, 0.5);
  o.nll_coef = 0.7;
  tst::check_gradient<ld_nll>(d, o);
  const auto r = ld_nll::compute(d.inputs(), o);
  double s = 0, w = 0;
  for (std::size_t t = 0; t < d.chosen.logprobs.size(); ++t)
    if (d.chosen.mask[t] != 0.0f) {
      s -= d.chosen.mask[t] * d.chosen.logprobs[t];
      w += d.chosen.mask[t];
    }
  EXPECT_NEAR(r.nll, s / w, 1e-13);
}

TEST(LdDpo, ValidationErrorsLeaveOutputsUntouched) {
  std::mt19937_64 rng(37);
  const tst::pair_data d = tst::make_data(rng, 3, 1, 4, false);
  std::vector<double> gc(d.chosen.logprobs.size(), 3.0);
  const preference_outputs<double> out{gc};
  tst::expect_error([&] { algo::ld_dpo::compute(d.inputs(), {}, out); }, "options.ld_alpha");
  tst::expect_error([&] { algo::ld_dpo::compute(d.inputs(), {.ld_alpha = 1.5}, out); },
                    "options.ld_alpha");
  tst::expect_error([&] { algo::ld_dpo_policy_only::compute(d.inputs(), {.ld_alpha = -0.1}, out); },
                    "options.ld_alpha");
  for (double g : gc) EXPECT_EQ(g, 3.0);
  std::vector<double> rc(3, 9.0), rr(3, 9.0), short_ref(2);
  const auto batch = d.inputs().batch;
  tst::expect_error(
      [&] {
        algo::ld_dpo::reference_scores(batch, std::span<const double>(d.chosen.logprobs),
                                       std::span<const double>(short_ref), {.ld_alpha = 0.5},
                                       std::span<double>(rc), std::span<double>(rr));
      },
      "reference_rejected_logprobs");
  tst::expect_error(
      [&] {
        algo::ld_dpo::reference_scores(batch, std::span<const double>(d.chosen.logprobs),
                                       std::span<const double>(d.rejected.logprobs), {},
                                       std::span<double>(rc), std::span<double>(rr));
      },
      "options.ld_alpha");
  for (double v : rc) EXPECT_EQ(v, 9.0);
  EXPECT_EQ(algo::ld_dpo::name(), "loss::preference<sigmoid, ld>");
  EXPECT_EQ(algo::ld_dpo_policy_only::name(), "loss::preference<sigmoid, ld_policy_only>");
}
