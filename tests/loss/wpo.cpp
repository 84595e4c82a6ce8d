// Tests of WPO (loss::wpo_pair_weights, inputs.pair_weights; algo::wpo): the weights against a
// naive float64 form computed from the logits themselves (log Σp² = logsumexp(2z) − 2·logsumexp(z),
// TRL's log_denom) with Σp² from ops::token_logprobs, the three presets (TRL HEAD no clamp, v0.26
// and open-instruct clamp ≤ 1, open-instruct without Σp²), the weighted loss value and its
// gradient by central differences (weights detached), zero and unit weights, and validation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "loss/preference_naive.hpp"
#include "loss/preference_testing.hpp"
#include "posttrain/ops/token_logprobs.hpp"

namespace pt = posttrain;
namespace pref = posttrain::pref;
namespace algo = posttrain::algo;
namespace nv = preference_naive;
namespace tst = preference_testing;
using pt::index_t;
using pt::loss::preference_options;
using pt::loss::preference_outputs;

namespace {

// Token log-probs and Σp² of one side from random logits [N, V] via ops::token_logprobs, and the
// naive float64 ℓ − log Σp² from the same logits.
struct side_stats {
  std::vector<double> logprob, sum_p2, aligned;
};

side_stats from_logits(std::mt19937_64& rng, const std::vector<float>& mask, int vocab) {
  const auto n = static_cast<index_t>(mask.size());
  std::normal_distribution<double> z(0.0, 2.0);
  std::uniform_int_distribution<index_t> tgt(0, vocab - 1);
  std::vector<double> logits(static_cast<std::size_t>(n * vocab));
  for (auto& x : logits) x = z(rng);
  // Mostly the argmax (then p_y ≥ Σp², the aligned log-prob is ≥ 0 and weights exceed 1).
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  std::vector<index_t> targets(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) {
    const auto row = logits.begin() + i * vocab;
    targets[i] =
        coin(rng) < 0.7 ? static_cast<index_t>(std::max_element(row, row + vocab) - row) : tgt(rng);
  }
  side_stats s;
  s.logprob.resize(mask.size());
  s.sum_p2.resize(mask.size());
  pt::token_logprobs(
      pt::exec::host{}, pt::matrix_view<const double>(logits.data(), n, vocab, vocab),
      std::span<const index_t>(targets),
      pt::token_logprobs_outputs<double>{.logprob = s.logprob, .sum_p_squared = s.sum_p2});
  for (index_t i = 0; i < n; ++i) {
    double m1 = -1e300, m2 = -1e300;
    for (int v = 0; v < vocab; ++v) m1 = std::max(m1, logits[i * vocab + v]);
    m2 = 2 * m1;
    double a = 0, b = 0;
    for (int v = 0; v < vocab; ++v) {
      a += std::exp(logits[i * vocab + v] - m1);
      b += std::exp(2 * logits[i * vocab + v] - m2);
    }
    const double lse1 = m1 + std::log(a), lse2 = m2 + std::log(b);
    const double lp = logits[i * vocab + targets[i]] - lse1;
    s.aligned.push_back(lp - (lse2 - 2 * lse1));
  }
  return s;
}

double masked_mean(const std::vector<double>& x, const std::vector<float>& mask, index_t b,
                   index_t e) {
  double s = 0, w = 0;
  for (index_t t = b; t < e; ++t)
    if (mask[t] != 0.0f) {
      s += mask[t] * x[t];
      w += mask[t];
    }
  return s / std::max(w, 1.0);
}

}  // namespace

TEST(Wpo, WeightsMatchNaiveFromLogitsForEveryPreset) {
  std::mt19937_64 rng(3);
  tst::pair_data d = tst::make_data(rng, 6, 0, 6, true);
  const side_stats c = from_logits(rng, d.chosen.mask, 11),
                   r = from_logits(rng, d.rejected.mask, 11);
  d.chosen.logprobs = c.logprob;
  d.rejected.logprobs = r.logprob;
  const auto batch = d.inputs().batch;
  std::vector<double> w_head(6), w_v026(6), w_oi(6);
  pt::loss::wpo_pair_weights(batch, std::span<const double>(c.logprob),
                             std::span<const double>(r.logprob), std::span<const double>(c.sum_p2),
                             std::span<const double>(r.sum_p2), std::span<double>(w_head),
                             pref::presets::wpo_trl);
  pt::loss::wpo_pair_weights(batch, std::span<const double>(c.logprob),
                             std::span<const double>(r.logprob), std::span<const double>(c.sum_p2),
                             std::span<const double>(r.sum_p2), std::span<double>(w_v026),
                             pref::presets::wpo_trl_v026);
  pt::loss::wpo_pair_weights(batch, std::span<const double>(c.logprob),
                             std::span<const double>(r.logprob), {}, {}, std::span<double>(w_oi),
                             pref::presets::wpo_open_instruct);
  bool some_above_one = false;
  for (index_t p = 0; p < 6; ++p) {
    const index_t c0 = d.chosen.offsets[p], c1 = d.chosen.offsets[p + 1];
    const index_t r0 = d.rejected.offsets[p], r1 = d.rejected.offsets[p + 1];
    const double a = masked_mean(c.aligned, d.chosen.mask, c0, c1) +
                     masked_mean(r.aligned, d.rejected.mask, r0, r1);
    EXPECT_NEAR(w_head[p], std::exp(a), 1e-12 * std::exp(a)) << p;  // TRL HEAD: w_c·w_r
    EXPECT_NEAR(w_v026[p], std::min(std::exp(a), 1.0), 1e-12) << p;
    const double plain = masked_mean(c.logprob, d.chosen.mask, c0, c1) +
                         masked_mean(r.logprob, d.rejected.mask, r0, r1);
    EXPECT_NEAR(w_oi[p], std::min(std::exp(plain), 1.0), 1e-12) << p;
    EXPECT_NEAR(nv::wpo_mean(c.logprob, c.sum_p2, d.chosen.mask, c0, c1),
                masked_mean(c.aligned, d.chosen.mask, c0, c1), 1e-12);
    some_above_one = some_above_one || std::exp(a) > 1.0;
  }
  EXPECT_TRUE(some_above_one);  // the clamp is exercised
}

// The weighted loss: Σ_p w_p·loss_p / P, gradients scaled by w_p (weights are constants).
TEST(Wpo, WeightedLossValueAndGradient) {
  std::mt19937_64 rng(5);
  tst::pair_data d = tst::make_data(rng, 5, 0, 5, true);
  d.weights = {0.5, 2.0, 0.0, 1.25, 0.1};
  const preference_options o{.beta = 0.7};
  double want = 0;
  for (index_t p = 0; p < 5; ++p) {
    const double dc = tst::naive_score(d.chosen, p) - d.chosen.reference[p];
    const double dr = tst::naive_score(d.rejected, p) - d.rejected.reference[p];
    want += d.weights[p] * -nv::logsig(0.7 * (dc - dr));
  }
  want /= 5;
  std::vector<double> losses(5);
  EXPECT_NEAR(algo::wpo::compute(d.inputs(), o, preference_outputs<double>{{}, {}, losses}).loss,
              want, 1e-14);
  EXPECT_EQ(losses[2], 0.0);
  tst::check_gradient<algo::wpo>(d, o);
  // Other links and NLL compositions honour the weights too.
  tst::check_gradient<algo::nca_pair>(d, {.beta = 0.5});
  tst::check_gradient<algo::dpo_nll>(d, {.nll_coef = 0.3});
  // Zero-weight pairs get no preference gradient; unit weights are the unweighted loss.
  std::vector<double> gc(d.chosen.logprobs.size()), gr(d.rejected.logprobs.size());
  algo::wpo::compute(d.inputs(), o, preference_outputs<double>{gc, gr});
  for (index_t t = d.chosen.offsets[2]; t < d.chosen.offsets[3]; ++t) EXPECT_EQ(gc[t], 0.0);
  for (index_t t = d.rejected.offsets[2]; t < d.rejected.offsets[3]; ++t) EXPECT_EQ(gr[t], 0.0);
  d.weights.clear();
  const double unweighted = algo::dpo::compute(d.inputs(), o).loss;
  d.weights.assign(5, 1.0);
  EXPECT_EQ(algo::wpo::compute(d.inputs(), o).loss, unweighted);
  // Micro-batch invariance holds pair by pair: a normaliser of 10 halves the loss.
  EXPECT_NEAR(algo::wpo::compute(d.inputs(), o, {}, {.pairs = 10}).loss, 0.5 * unweighted, 1e-15);
}

TEST(Wpo, ValidationErrorsLeaveOutputsUntouched) {
  std::mt19937_64 rng(7);
  tst::pair_data d = tst::make_data(rng, 3, 1, 4, false);
  std::vector<double> gc(d.chosen.logprobs.size(), 4.0);
  const preference_outputs<double> out{gc};
  d.weights = {1.0, -0.5, 1.0};
  tst::expect_error([&] { algo::wpo::compute(d.inputs(), {}, out); }, "pair_weights[1]");
  d.weights = {1.0, tst::kNaN, 1.0};
  tst::expect_error([&] { algo::wpo::compute(d.inputs(), {}, out); }, "pair_weights[1]");
  d.weights = {1.0, 1.0};
  tst::expect_error([&] { algo::wpo::compute(d.inputs(), {}, out); }, "pair_weights");
  for (double g : gc) EXPECT_EQ(g, 4.0);

  d.weights.clear();
  const auto batch = d.inputs().batch;
  std::vector<double> w(3, 8.0), w_short(2);
  std::vector<double> sp_c(d.chosen.logprobs.size(), 0.5), sp_r(d.rejected.logprobs.size(), 0.5);
  const std::span<const double> lc(d.chosen.logprobs), lr(d.rejected.logprobs);
  auto call = [&](std::span<const double> a, std::span<const double> b, std::span<double> o) {
    return [=] { pt::loss::wpo_pair_weights(batch, lc, lr, a, b, o); };
  };
  tst::expect_error(call(sp_c, {}, w), "both be given");
  tst::expect_error(call(sp_c, sp_r, w_short), "pair_weights");
  std::vector<double> logs = sp_c;
  for (auto& v : logs) v = std::log(v);  // log Σp² instead of Σp²
  tst::expect_error(call(logs, sp_r, w), "chosen_sum_p_squared");
  std::vector<double> big = sp_r;
  big[0] = 1.5;
  tst::expect_error(call(sp_c, big, w), "rejected_sum_p_squared[0]");
  std::vector<double> short_sp(sp_c.size() - 1, 0.5);
  tst::expect_error(call(short_sp, sp_r, w), "chosen_sum_p_squared");
  for (double v : w) EXPECT_EQ(v, 8.0);
  // Masked tokens are never read: NaN there is fine.
  std::vector<double> masked = sp_c;
  for (std::size_t t = 0; t < masked.size(); ++t)
    if (d.chosen.mask[t] == 0.0f) masked[t] = tst::kNaN;
  EXPECT_NO_THROW(call(masked, sp_r, w)());
  EXPECT_TRUE(pref::presets::wpo_trl_v026.clamp_at_one && !pref::presets::wpo_trl.clamp_at_one);
}
