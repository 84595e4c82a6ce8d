// pipeline::preference_step: DPO's gradient equals a float64 reference written here (bigram
// log-probs, masked prompt and format tokens), micro-batches equal the full batch, a precomputed
// reference (also after save/load) gives the frozen reference's update bit for bit, reference-free
// SimPO runs with reference::none, and bad input throws before the parameters change.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include <posttrain/algo.hpp>
#include <posttrain/optim/adamw.hpp>
#include <posttrain/pipeline/preference_step.hpp>

#include "pipeline/test_policy.hpp"

using namespace pt_test;

namespace {

constexpr pt::index_t V = 6;

struct data {
  // 3 pairs; token 5 plays a format token (header / end of turn), masked in both sides.
  std::vector<pt::index_t> c_tok{0, 1, 5, 2, 3, 5, 0, 2, 5, 4, 4, 0, 3, 5, 1, 1};
  std::vector<pt::index_t> c_off{0, 6, 11, 16};
  std::vector<float> c_mask{0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1};
  std::vector<pt::index_t> r_tok{0, 1, 5, 3, 5, 0, 2, 5, 2, 2, 2, 0, 3, 5, 4};
  std::vector<pt::index_t> r_off{0, 5, 11, 15};
  std::vector<float> r_mask{0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1};
  std::vector<std::uint64_t> c_ids{10, 11, 12}, r_ids{20, 21, 22};
  pp::preference_data get() const {
    return {{c_tok, c_off, c_ids}, {r_tok, r_off, r_ids}, c_mask, r_mask};
  }
};

// Σ m·log p of sequence b under table w, and its gradient contribution scaled by `coef`.
double seq_logprob(const std::vector<double>& w, const std::vector<pt::index_t>& tok,
                   const std::vector<pt::index_t>& off, const std::vector<float>& mask,
                   std::size_t b, double coef, std::vector<double>* grad) {
  return bigram_seq_logprob(w, V, tok, off, mask, b, coef, grad);
}

}  // namespace

TEST(PreferenceStep, DpoGradientEqualsFloat64Reference) {
  data d;
  bigram_policy<double> policy(V, 4), ref_model(V, 8);
  pp::reference::frozen<bigram_policy<double>> reference(ref_model);
  capture_optimizer cap;
  pp::preference_step_options<pt::algo::dpo> o;
  o.loss.beta = 0.3;
  const auto m = pp::preference_step<pt::algo::dpo>(policy, reference, cap, d.get(), o);

  const double beta = 0.3, P = 3;
  std::vector<double> g(policy.w.size(), 0.0);
  double loss = 0, acc = 0;
  for (std::size_t p = 0; p < 3; ++p) {
    const double z = beta * ((seq_logprob(policy.w, d.c_tok, d.c_off, d.c_mask, p, 0, nullptr) -
                              seq_logprob(ref_model.w, d.c_tok, d.c_off, d.c_mask, p, 0, nullptr)) -
                             (seq_logprob(policy.w, d.r_tok, d.r_off, d.r_mask, p, 0, nullptr) -
                              seq_logprob(ref_model.w, d.r_tok, d.r_off, d.r_mask, p, 0, nullptr)));
    loss += std::log1p(std::exp(-z)) / P;
    acc += z > 0;
    const double dz = -beta / (1 + std::exp(z)) / P;  // d(−log σ(z))/dπ_c
    seq_logprob(policy.w, d.c_tok, d.c_off, d.c_mask, p, dz, &g);
    seq_logprob(policy.w, d.r_tok, d.r_off, d.r_mask, p, -dz, &g);
  }
  EXPECT_NEAR(m.loss, loss, 1e-14);
  EXPECT_NEAR(m.reward_accuracy, acc / P, 1e-15);
  ASSERT_EQ(cap.grads.size(), g.size());
  for (std::size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(cap.grads[i], g[i], 1e-14) << i;
}

TEST(PreferenceStep, MicroBatchesEqualTheFullBatch) {
  data d;
  for (pt::index_t k : {1, 2}) {
    bigram_policy<double> a_pol(V, 4), b_pol(V, 4), ref_model(V, 8);
    pp::reference::frozen<bigram_policy<double>> reference(ref_model);
    capture_optimizer a, b;
    pp::preference_step_options<pt::algo::dpo_nll> o;  // the NLL term's token normaliser too
    const auto ma = pp::preference_step<pt::algo::dpo_nll>(a_pol, reference, a, d.get(), o);
    o.micro_batch = k;
    const auto mb = pp::preference_step<pt::algo::dpo_nll>(b_pol, reference, b, d.get(), o);
    EXPECT_NEAR(ma.loss, mb.loss, 1e-12);
    EXPECT_NEAR(ma.nll, mb.nll, 1e-12);
    EXPECT_NEAR(ma.reward_margin, mb.reward_margin, 1e-12);
    for (std::size_t i = 0; i < a.grads.size(); ++i) EXPECT_NEAR(a.grads[i], b.grads[i], 1e-12);
  }
}

TEST(PreferenceStep, PrecomputedReferenceEqualsFrozenReference) {
  data d;
  bigram_policy<double> p1(V, 4), p2(V, 4), ref_model(V, 8);
  pp::reference::frozen<bigram_policy<double>> frozen(ref_model);
  pp::reference::precomputed<double> cached;
  const auto batch = d.get();
  cached.precompute(frozen, batch.chosen);
  cached.precompute(frozen, batch.rejected);
  EXPECT_EQ(cached.size(), 6u);
  const std::string path = ::testing::TempDir() + "pipeline_ref_logprobs.bin";
  cached.save(path);
  pp::reference::precomputed<double> loaded;
  loaded.load(path);
  std::remove(path.c_str());

  capture_optimizer a, b;
  const auto ma = pp::preference_step<pt::algo::dpo>(p1, frozen, a, batch);
  const auto mb = pp::preference_step<pt::algo::dpo>(p2, loaded, b, batch);
  EXPECT_EQ(ma.loss, mb.loss);
  EXPECT_EQ(a.grads, b.grads);
}

TEST(PreferenceStep, PrecomputedRejectsUnknownIdsAndBadFiles) {
  data d;
  bigram_policy<double> ref_model(V, 8);
  pp::reference::frozen<bigram_policy<double>> frozen(ref_model);
  pp::reference::precomputed<double> cached;
  cached.precompute(frozen, d.get().chosen);
  std::vector<double> out(d.r_tok.size(), -7.0);
  EXPECT_THROW(cached.logprobs(d.get().rejected, out), pt::error);  // ids 20.. not cached
  EXPECT_EQ(out[0], -7.0);
  EXPECT_THROW(cached.load("/nonexistent/pipeline_ref.bin"), pt::error);
  const std::string path = ::testing::TempDir() + "pipeline_ref_bad.bin";
  { std::FILE* f = std::fopen(path.c_str(), "wb"); std::fputs("PTREFLP1\x05", f); std::fclose(f); }
  EXPECT_THROW(cached.load(path), pt::error);
  EXPECT_EQ(cached.size(), 3u);  // the old table survives a failed load
  std::remove(path.c_str());
}

TEST(PreferenceStep, ReferenceFreeSimpoRunsWithoutAReference) {
  data d;
  bigram_policy<double> policy(V, 4);
  pp::reference::none<double> none;
  pt::optim::adamw opt({0.05, 0.9, 0.999, 1e-8, 0.0});
  double first = 0, last = 0;
  for (int i = 0; i < 20; ++i) {
    const auto m = pp::preference_step<pt::algo::simpo>(policy, none, opt, d.get());
    if (i == 0) first = m.loss;
    last = m.loss;
  }
  EXPECT_LT(last, first);  // training on the preference lowers its loss
}

TEST(PreferenceStep, BadInputThrowsAndLeavesParametersUntouched) {
  data d;
  bigram_policy<double> policy(V, 4), ref_model(V, 8);
  pp::reference::frozen<bigram_policy<double>> reference(ref_model);
  pt::optim::adamw opt;
  const auto before = policy.w;
  auto batch = d.get();
  std::vector<pt::index_t> two{0, 6, 11};
  batch.chosen.seq_offsets = two;
  batch.chosen.tokens = std::span<const pt::index_t>(d.c_tok).first(11);
  batch.chosen_mask = std::span<const float>(d.c_mask).first(11);
  batch.chosen.ids = std::span<const std::uint64_t>(d.c_ids).first(2);
  EXPECT_THROW(pp::preference_step<pt::algo::dpo>(policy, reference, opt, batch), pt::error);
  std::vector<pt::index_t> zero{0};
  pp::preference_data empty{{{}, zero}, {{}, zero}, {}, {}};
  EXPECT_THROW(pp::preference_step<pt::algo::dpo>(policy, reference, opt, empty), pt::error);
  auto bad_mask = d.get();
  bad_mask.rejected_mask = std::span<const float>(d.r_mask).first(4);
  EXPECT_THROW(pp::preference_step<pt::algo::dpo>(policy, reference, opt, bad_mask), pt::error);
  EXPECT_EQ(policy.w, before);
  EXPECT_EQ(opt.steps(), 0);
}

TEST(PreferenceStep, OrpoAndCpoRunReferenceFreeAndSplitIntoMicroBatches) {
  data d;
  pp::reference::none<double> none;
  auto check = [&]<class Loss>() {
    bigram_policy<double> a_pol(V, 4), b_pol(V, 4);
    capture_optimizer a, b;
    pp::preference_step_options<Loss> o;
    const auto ma = pp::preference_step<Loss>(a_pol, none, a, d.get(), o);
    o.micro_batch = 1;
    const auto mb = pp::preference_step<Loss>(b_pol, none, b, d.get(), o);
    EXPECT_GT(ma.nll, 0.0);  // the NLL term on the chosen tokens is part of the loss
    EXPECT_NEAR(ma.loss, mb.loss, 1e-12);
    for (std::size_t i = 0; i < a.grads.size(); ++i) EXPECT_NEAR(a.grads[i], b.grads[i], 1e-12);
  };
  check.template operator()<pt::algo::orpo>();
  check.template operator()<pt::algo::cpo>();
}

namespace {
// AlphaPO (TRL CPOTrainer, alpha ≠ 0) in float64, written out here: u = (1 − e^{−α·π})/α on the
// summed log-probs, −log σ(β(u_c − u_r)) per pair over P, plus the chosen token-mean NLL.
double alphapo_loss(const std::vector<double>& w, const data& d, double alpha, double beta,
                    double nll_coef) {
  double loss = 0, nll = 0, tokens = 0;
  for (std::size_t p = 0; p < 3; ++p) {
    const double pc = bigram_seq_logprob(w, V, d.c_tok, d.c_off, d.c_mask, p);
    const double pr = bigram_seq_logprob(w, V, d.r_tok, d.r_off, d.r_mask, p);
    const double uc = (1 - std::exp(-alpha * pc)) / alpha, ur = (1 - std::exp(-alpha * pr)) / alpha;
    loss += std::log1p(std::exp(-beta * (uc - ur))) / 3.0;
    nll -= pc;
  }
  for (float m : d.c_mask) tokens += m;
  return loss + nll_coef * nll / tokens;
}
}  // namespace

TEST(PreferenceStep, AlphaPoGradientEqualsFiniteDifferencesOfAFloat64Reference) {
  // AlphaPO is reference-free with reward shaping: it runs through the paired path with
  // reference::none; its loss = the formula above and its gradient = central differences of it.
  data d;
  bigram_policy<double> policy(V, 4);
  pp::reference::none<double> none;
  capture_optimizer cap;
  const double alpha = 0.7;
  auto o = pp::preference_step_options<pt::algo::alphapo>{};
  o.loss = pt::algo::alphapo::trl(alpha).loss;
  const double beta = o.loss.preference.beta, nll_coef = o.loss.preference.nll_coef;
  const auto m = pp::preference_step<pt::algo::alphapo>(policy, none, cap, d.get(), o);
  EXPECT_NEAR(m.loss, alphapo_loss(policy.w, d, alpha, beta, nll_coef), 1e-13);
  ASSERT_EQ(cap.grads.size(), policy.w.size());
  double moved = 0;
  for (std::size_t i = 0; i < policy.w.size(); ++i) {
    auto wp = policy.w, wm = policy.w;
    wp[i] += 1e-6;
    wm[i] -= 1e-6;
    const double fd = (alphapo_loss(wp, d, alpha, beta, nll_coef) -
                       alphapo_loss(wm, d, alpha, beta, nll_coef)) / 2e-6;
    EXPECT_NEAR(cap.grads[i], fd, 1e-8) << i;
  }
  // α matters: α → 0 is plain CPO, whose gradient differs.
  capture_optimizer cpo;
  o.loss.alpha = 0.0;
  pp::preference_step<pt::algo::alphapo>(policy, none, cpo, d.get(), o);
  for (std::size_t i = 0; i < cap.grads.size(); ++i) moved += std::abs(cap.grads[i] - cpo.grads[i]);
  EXPECT_GT(moved, 1e-3);
  // Micro-batches of one pair give the same update.
  capture_optimizer split;
  o.loss.alpha = alpha;
  o.micro_batch = 1;
  const auto ms = pp::preference_step<pt::algo::alphapo>(policy, none, split, d.get(), o);
  EXPECT_NEAR(ms.loss, m.loss, 1e-12);
  for (std::size_t i = 0; i < cap.grads.size(); ++i) EXPECT_NEAR(split.grads[i], cap.grads[i], 1e-12);
}
