// pipeline::kto_paired_step: paired ("vanilla") KTO on preference pairs. The loss, the reference
// points KL_c / KL_r and the rewards equal a float64 formula written here (bigram log-probs), the
// gradient equals central differences of that formula with KL_c / KL_r held (they are detached),
// micro-batches equal the full batch (the reference points are computed once per step), and bad
// input throws before the parameters change.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include <posttrain/algo.hpp>
#include <posttrain/optim/adamw.hpp>
#include <posttrain/pipeline/kto_paired_step.hpp>

#include "pipeline/test_policy.hpp"

using namespace pt_test;

namespace {

constexpr pt::index_t V = 6;
constexpr double beta = 0.7;

// 4 pairs (prompt ++ chosen, prompt ++ rejected), masks 1 on the responses.
struct pairs_data {
  std::vector<std::vector<pt::index_t>> prompts{{0, 1}, {2}, {3, 0}, {4}};
  std::vector<std::vector<pt::index_t>> chosen{{2, 3}, {5, 5, 1}, {1}, {0, 2}};
  std::vector<std::vector<pt::index_t>> rejected{{4, 4}, {1}, {2, 2, 5}, {3, 1}};
  std::vector<pt::index_t> c_tok, c_off{0}, r_tok, r_off{0};
  std::vector<float> c_mask, r_mask;
  pairs_data() {
    auto add = [](const std::vector<pt::index_t>& p, const std::vector<pt::index_t>& y,
                  std::vector<pt::index_t>& t, std::vector<pt::index_t>& o, std::vector<float>& m) {
      t.insert(t.end(), p.begin(), p.end());
      t.insert(t.end(), y.begin(), y.end());
      m.insert(m.end(), p.size(), 0.0f);
      m.insert(m.end(), y.size(), 1.0f);
      o.push_back(static_cast<pt::index_t>(t.size()));
    };
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      add(prompts[i], chosen[i], c_tok, c_off, c_mask);
      add(prompts[i], rejected[i], r_tok, r_off, r_mask);
    }
  }
  std::size_t size() const { return prompts.size(); }
  pp::preference_data get() const { return {{c_tok, c_off}, {r_tok, r_off}, c_mask, r_mask}; }
};

double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }

// Δ of every pair's chosen (side 0) or rejected (side 1) sequence: summed log-ratio of policy w to
// reference r.
std::vector<double> deltas(const std::vector<double>& w, const std::vector<double>& r,
                           const pairs_data& d, int side) {
  const auto& tok = side == 0 ? d.c_tok : d.r_tok;
  const auto& off = side == 0 ? d.c_off : d.r_off;
  const auto& mask = side == 0 ? d.c_mask : d.r_mask;
  std::vector<double> out;
  for (std::size_t p = 0; p < d.size(); ++p)
    out.push_back(bigram_seq_logprob(w, V, tok, off, mask, p) - bigram_seq_logprob(r, V, tok, off, mask, p));
  return out;
}

// KL_c or KL_r: max(mean Δ, 0).
double reference_point(const std::vector<double>& delta) {
  double s = 0;
  for (double x : delta) s += x;
  return std::max(s / static_cast<double>(delta.size()), 0.0);
}

// OpenRLHF's VanillaKTOLoss in float64 with the reference points given:
// Σ_p (1 − σ(β(Δc − KL_r)) + 1 − σ(β(KL_c − Δr))) / (2P).
double paired_kto_loss(const std::vector<double>& w, const std::vector<double>& r, const pairs_data& d,
                       double kl_c, double kl_r) {
  const auto dc = deltas(w, r, d, 0), dr = deltas(w, r, d, 1);
  double loss = 0;
  for (std::size_t p = 0; p < d.size(); ++p)
    loss += (1 - sigmoid(beta * (dc[p] - kl_r))) + (1 - sigmoid(beta * (kl_c - dr[p])));
  return loss / (2.0 * static_cast<double>(d.size()));
}

pp::preference_step_options<pt::algo::kto_vanilla_paired> options() {
  pp::preference_step_options<pt::algo::kto_vanilla_paired> o;
  o.loss.beta = beta;
  return o;
}

}  // namespace

TEST(KtoPairedStep, LossRewardsAndGradientEqualFloat64References) {
  pairs_data d;
  bigram_policy<double> policy(V, 4), ref_model(V, 8, 2.0);
  pp::reference::frozen<bigram_policy<double>> reference(ref_model);
  capture_optimizer cap;
  const auto m = pp::kto_paired_step<pt::algo::kto_vanilla_paired>(policy, reference, cap, d.get(), options());

  const auto dc = deltas(policy.w, ref_model.w, d, 0), dr = deltas(policy.w, ref_model.w, d, 1);
  const double kl_c = reference_point(dc), kl_r = reference_point(dr);
  // Both reference points active (not clamped to 0), so dropping either would fail the loss check.
  ASSERT_GT(kl_c, 0.0);
  ASSERT_GT(kl_r, 0.0);
  EXPECT_NEAR(m.kl_chosen, kl_c, 1e-14);
  EXPECT_NEAR(m.kl_rejected, kl_r, 1e-14);
  EXPECT_NEAR(m.loss, paired_kto_loss(policy.w, ref_model.w, d, kl_c, kl_r), 1e-14);
  EXPECT_GT(std::abs(paired_kto_loss(policy.w, ref_model.w, d, 0.0, 0.0) - m.loss), 1e-4);
  EXPECT_EQ(m.pairs, 4.0);
  EXPECT_EQ(m.micro_batches, 1);
  double sc = 0, sr = 0, acc = 0;
  for (std::size_t p = 0; p < d.size(); ++p) {
    sc += beta * dc[p];
    sr += beta * dr[p];
    acc += dc[p] > dr[p] ? 1.0 : 0.0;
  }
  EXPECT_NEAR(m.chosen_reward, sc / 4, 1e-14);
  EXPECT_NEAR(m.rejected_reward, sr / 4, 1e-14);
  EXPECT_NEAR(m.reward_margin, (sc - sr) / 4, 1e-14);
  EXPECT_EQ(m.reward_accuracy, acc / 4);

  // Central differences of the float64 formula with KL_c, KL_r held (detached: no gradient through
  // them).
  ASSERT_EQ(cap.grads.size(), policy.w.size());
  double norm2 = 0;
  for (std::size_t i = 0; i < policy.w.size(); ++i) {
    auto wp = policy.w, wm = policy.w;
    wp[i] += 1e-6;
    wm[i] -= 1e-6;
    const double fd = (paired_kto_loss(wp, ref_model.w, d, kl_c, kl_r) -
                       paired_kto_loss(wm, ref_model.w, d, kl_c, kl_r)) / 2e-6;
    EXPECT_NEAR(cap.grads[i], fd, 1e-8) << i;
    norm2 += cap.grads[i] * cap.grads[i];
  }
  EXPECT_NEAR(m.grad_norm, std::sqrt(norm2), 1e-12);
}

TEST(KtoPairedStep, MicroBatchesEqualTheFullBatch) {
  // KL_c / KL_r are statistics of the whole step, computed before the micro-batch loop, and the
  // loss divides by the global pair count: any split gives the full-batch update.
  pairs_data d;
  bigram_policy<double> ref_model(V, 8, 2.0);
  pp::reference::frozen<bigram_policy<double>> reference(ref_model);
  bigram_policy<double> p_full(V, 4);
  capture_optimizer full;
  auto o = options();
  const auto mf = pp::kto_paired_step<pt::algo::kto_vanilla_paired>(p_full, reference, full, d.get(), o);
  for (pt::index_t k : {1, 3}) {
    bigram_policy<double> p(V, 4);
    capture_optimizer split;
    o.micro_batch = k;
    const auto ms = pp::kto_paired_step<pt::algo::kto_vanilla_paired>(p, reference, split, d.get(), o);
    EXPECT_EQ(ms.micro_batches, (4 + k - 1) / k);
    EXPECT_NEAR(ms.loss, mf.loss, 1e-12) << k;
    EXPECT_NEAR(ms.chosen_reward, mf.chosen_reward, 1e-12) << k;
    EXPECT_NEAR(ms.rejected_reward, mf.rejected_reward, 1e-12) << k;
    EXPECT_EQ(ms.kl_chosen, mf.kl_chosen);
    EXPECT_EQ(ms.kl_rejected, mf.kl_rejected);
    for (std::size_t i = 0; i < full.grads.size(); ++i) EXPECT_NEAR(split.grads[i], full.grads[i], 1e-12) << k;
  }
}

TEST(KtoPairedStep, TrainingRaisesTheRewardMargin) {
  pairs_data d;
  bigram_policy<double> policy(V, 4), ref_model(V, 8, 2.0);
  pp::reference::frozen<bigram_policy<double>> reference(ref_model);
  pt::optim::sgd opt{0.5};
  const auto first = pp::kto_paired_step<pt::algo::kto_vanilla_paired>(policy, reference, opt, d.get(), options());
  pp::kto_paired_metrics last;
  for (int s = 0; s < 30; ++s)
    last = pp::kto_paired_step<pt::algo::kto_vanilla_paired>(policy, reference, opt, d.get(), options());
  EXPECT_LT(last.loss, first.loss);
  EXPECT_GT(last.reward_margin, first.reward_margin + 0.1);
}

TEST(KtoPairedStep, BadInputThrowsAndLeavesParametersUntouched) {
  pairs_data d;
  bigram_policy<double> policy(V, 4), ref_model(V, 8);
  pp::reference::frozen<bigram_policy<double>> reference(ref_model);
  pt::optim::sgd opt{0.5};
  const auto before = policy.w;
  auto expect_rejected = [&](const pp::preference_data& batch, const char* what,
                             pp::preference_step_options<pt::algo::kto_vanilla_paired> o = options()) {
    EXPECT_THROW(pp::kto_paired_step<pt::algo::kto_vanilla_paired>(policy, reference, opt, batch, o), pt::error)
        << what;
    EXPECT_EQ(policy.w, before) << what;
  };
  expect_rejected(pp::preference_data{}, "empty batch");
  auto b1 = d.get();
  b1.rejected.seq_offsets = std::span<const pt::index_t>(d.r_off).first(3);
  expect_rejected(b1, "two rejected for four chosen");
  std::vector<float> first_token = d.c_mask;
  first_token[0] = 1;
  auto b2 = d.get();
  b2.chosen_mask = first_token;
  expect_rejected(b2, "mask on a first token");
  auto b3 = d.get();
  b3.rejected_mask = std::span<const float>(d.r_mask).first(d.r_mask.size() - 1);
  expect_rejected(b3, "rejected mask one short");
  std::vector<pt::index_t> oov = d.c_tok;
  oov[3] = V;
  auto b4 = d.get();
  b4.chosen.tokens = oov;
  expect_rejected(b4, "token id out of the vocabulary");
  auto o = options();
  o.loss.beta = 0;
  expect_rejected(d.get(), "beta 0", o);
  o = options();
  o.micro_batch = -1;
  expect_rejected(d.get(), "negative micro-batch", o);
}
