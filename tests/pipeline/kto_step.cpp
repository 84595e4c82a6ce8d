// pipeline::kto_step: KTO on unpaired data. The loss equals a float64 formula written here (bigram
// log-probs, z0 from the mismatched pairs), the gradient equals the composition of the library's
// loss::kto with the test's bigram backward and central differences of the formula (z0 held, it is
// detached), micro-batches equal the full batch (z0 is computed once per step), apo_zero runs
// without mismatched pairs, pack_kto rotates completions as TRL does, and bad input throws before
// the parameters change.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include <posttrain/algo.hpp>
#include <posttrain/optim/adamw.hpp>
#include <posttrain/pipeline/chat.hpp>
#include <posttrain/pipeline/kto_step.hpp>

#include "pipeline/test_policy.hpp"

using namespace pt_test;

namespace {

constexpr pt::index_t V = 6;

// 5 unpaired examples (prompt ++ completion), mask 1 on the completion; the mismatched pairs
// prompt_i ++ completion_{i−1 mod 5}.
struct data {
  std::vector<std::vector<pt::index_t>> prompts{{0, 1}, {2}, {3, 0}, {4}, {1, 5}};
  std::vector<std::vector<pt::index_t>> completions{{2, 3}, {5, 5, 1}, {1}, {0, 2}, {4, 3, 3}};
  std::vector<std::uint8_t> desirable{1, 0, 1, 1, 0};
  std::vector<pt::index_t> tok, off{0}, kl_tok, kl_off{0};
  std::vector<float> mask, kl_mask;
  data() {
    auto add = [](const std::vector<pt::index_t>& p, const std::vector<pt::index_t>& c,
                  std::vector<pt::index_t>& t, std::vector<pt::index_t>& o, std::vector<float>& m) {
      t.insert(t.end(), p.begin(), p.end());
      t.insert(t.end(), c.begin(), c.end());
      m.insert(m.end(), p.size(), 0.0f);
      m.insert(m.end(), c.size(), 1.0f);
      o.push_back(static_cast<pt::index_t>(t.size()));
    };
    for (std::size_t i = 0; i < 5; ++i) {
      add(prompts[i], completions[i], tok, off, mask);
      add(prompts[i], completions[(i + 4) % 5], kl_tok, kl_off, kl_mask);
    }
  }
  pp::kto_data get() const {
    return {{tok, off}, mask, desirable, {kl_tok, kl_off}, kl_mask};
  }
};

double sigmoid(double x) { return 1 / (1 + std::exp(-x)); }

// z0 = max(mean_i(π_KL,i − ρ_KL,i), 0) under tables w (policy) and r (reference).
double kl_point(const std::vector<double>& w, const std::vector<double>& r, const data& d) {
  double s = 0;
  for (std::size_t i = 0; i < 5; ++i)
    s += bigram_seq_logprob(w, V, d.kl_tok, d.kl_off, d.kl_mask, i) -
         bigram_seq_logprob(r, V, d.kl_tok, d.kl_off, d.kl_mask, i);
  return std::max(s / 5, 0.0);
}

// TRL's KTO loss in float64 with z0 given: mean over the 5 examples of λ·(1 − σ(±β(Δ − z0))).
double kto_loss(const std::vector<double>& w, const std::vector<double>& r, const data& d,
                double z0, double beta, double wd, double wu) {
  double loss = 0;
  for (std::size_t i = 0; i < 5; ++i) {
    const double delta = bigram_seq_logprob(w, V, d.tok, d.off, d.mask, i) -
                         bigram_seq_logprob(r, V, d.tok, d.off, d.mask, i);
    loss += d.desirable[i] ? wd * (1 - sigmoid(beta * (delta - z0)))
                           : wu * (1 - sigmoid(beta * (z0 - delta)));
  }
  return loss / 5;
}

}  // namespace

TEST(KtoStep, LossAndGradientEqualFloat64References) {
  data d;
  bigram_policy<double> policy(V, 4), ref_model(V, 8, 2.0);
  pp::reference::frozen<bigram_policy<double>> reference(ref_model);
  capture_optimizer cap;
  pp::kto_step_options<pt::algo::kto> o;
  o.loss.beta = 0.5;
  o.loss.desirable_weight = 1.0;
  o.loss.undesirable_weight = 1.3;
  const auto m = pp::kto_step<pt::algo::kto>(policy, reference, cap, d.get(), o);

  const double z0 = kl_point(policy.w, ref_model.w, d);
  ASSERT_GT(z0, 0.0);  // the reference point is active (not clamped to 0)
  EXPECT_NEAR(m.kl_reference, z0, 1e-14);
  EXPECT_NEAR(m.loss, kto_loss(policy.w, ref_model.w, d, z0, 0.5, 1.0, 1.3), 1e-14);
  EXPECT_EQ(m.desirable, 3.0);
  EXPECT_EQ(m.undesirable, 2.0);

  // The composition: the test's log-probs → loss::kto (library) → the test's bigram backward.
  std::vector<double> lp(d.tok.size(), 0.0), rho(5), g(policy.w.size(), 0.0);
  for (std::size_t i = 0; i < 5; ++i) {
    for (auto t = d.off[i] + 1; t < d.off[i + 1]; ++t) lp[t] = ref_logprob(policy.w, V, d.tok[t - 1], d.tok[t]);
    rho[i] = bigram_seq_logprob(ref_model.w, V, d.tok, d.off, d.mask, i);
  }
  pt::loss::kto_inputs<double> in;
  in.batch = pt::token_batch{d.off, d.mask};
  in.logprobs = lp;
  in.reference = rho;
  in.desirable = d.desirable;
  in.kl_reference = z0;
  std::vector<double> dl(lp.size(), 0.0);
  const auto r = pt::algo::kto::compute(pt::exec::host{}, in, o.loss, pt::loss::kto_outputs<double>{dl});
  EXPECT_NEAR(r.loss, m.loss, 1e-14);
  for (std::size_t t = 1; t < d.tok.size(); ++t)
    if (d.mask[t] != 0)
      for (pt::index_t j = 0; j < V; ++j)
        g[d.tok[t - 1] * V + j] += dl[t] * ((j == d.tok[t]) - std::exp(ref_logprob(policy.w, V, d.tok[t - 1], j)));
  ASSERT_EQ(cap.grads.size(), g.size());
  for (std::size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(cap.grads[i], g[i], 1e-14) << i;

  // Central differences of the float64 formula with z0 held (detached: no gradient through it).
  for (std::size_t i = 0; i < policy.w.size(); ++i) {
    auto wp = policy.w, wm = policy.w;
    wp[i] += 1e-6;
    wm[i] -= 1e-6;
    const double fd = (kto_loss(wp, ref_model.w, d, z0, 0.5, 1.0, 1.3) -
                       kto_loss(wm, ref_model.w, d, z0, 0.5, 1.0, 1.3)) / 2e-6;
    EXPECT_NEAR(cap.grads[i], fd, 1e-8) << i;
  }

  // z0 matters: a step that dropped it (z0 = 0) would miss the loss check above.
  EXPECT_GT(std::abs(kto_loss(policy.w, ref_model.w, d, 0.0, 0.5, 1.0, 1.3) - m.loss), 1e-4);
}

TEST(KtoStep, MicroBatchesEqualTheFullBatch) {
  // z0 is one statistic of the whole step (every KL pair, all ranks), computed before the
  // micro-batch loop; the loss divides by the global example count. So any split is exact.
  data d;
  bigram_policy<double> ref_model(V, 8, 2.0);
  pp::reference::frozen<bigram_policy<double>> reference(ref_model);
  capture_optimizer full;
  bigram_policy<double> p0(V, 4);
  pp::kto_step_options<pt::algo::kto> o;
  o.loss.beta = 0.5;
  const auto mf = pp::kto_step<pt::algo::kto>(p0, reference, full, d.get(), o);
  for (pt::index_t k : {1, 2, 3}) {
    bigram_policy<double> p(V, 4);
    capture_optimizer split;
    o.micro_batch = k;
    const auto ms = pp::kto_step<pt::algo::kto>(p, reference, split, d.get(), o);
    EXPECT_EQ(ms.micro_batches, (5 + k - 1) / k);
    EXPECT_NEAR(ms.loss, mf.loss, 1e-12);
    EXPECT_NEAR(ms.desirable_reward, mf.desirable_reward, 1e-12);
    EXPECT_NEAR(ms.undesirable_reward, mf.undesirable_reward, 1e-12);
    EXPECT_EQ(ms.kl_reference, mf.kl_reference);
    for (std::size_t i = 0; i < full.grads.size(); ++i) EXPECT_NEAR(split.grads[i], full.grads[i], 1e-12) << k;
  }
}

TEST(KtoStep, ApoZeroUnpairedNeedsNoMismatchedPairs) {
  data d;
  bigram_policy<double> policy(V, 4), ref_model(V, 8, 2.0);
  pp::reference::frozen<bigram_policy<double>> reference(ref_model);
  capture_optimizer cap;
  auto batch = d.get();
  batch.kl_examples = {};
  batch.kl_mask = {};
  pp::kto_step_options<pt::algo::kto_apo_zero_unpaired> o;
  o.loss.beta = 0.5;
  const auto m = pp::kto_step<pt::algo::kto_apo_zero_unpaired>(policy, reference, cap, batch, o);
  double loss = 0;
  for (std::size_t i = 0; i < 5; ++i) {
    const double x = 0.5 * (bigram_seq_logprob(policy.w, V, d.tok, d.off, d.mask, i) -
                            bigram_seq_logprob(ref_model.w, V, d.tok, d.off, d.mask, i));
    loss += d.desirable[i] ? 1 - sigmoid(x) : sigmoid(x);
  }
  EXPECT_NEAR(m.loss, loss / 5, 1e-14);
  EXPECT_EQ(m.kl_reference, 0.0);
}

TEST(KtoStep, TrainingRaisesDesirableAndLowersUndesirableRewards) {
  data d;
  bigram_policy<double> policy(V, 4), ref_model(V, 8, 2.0);
  pp::reference::frozen<bigram_policy<double>> reference(ref_model);
  pt::optim::sgd opt{0.5};
  pp::kto_step_options<pt::algo::kto> o;
  o.loss.beta = 0.5;
  const auto first = pp::kto_step<pt::algo::kto>(policy, reference, opt, d.get(), o);
  pp::kto_metrics last;
  for (int s = 0; s < 30; ++s) last = pp::kto_step<pt::algo::kto>(policy, reference, opt, d.get(), o);
  EXPECT_LT(last.loss, first.loss);
  EXPECT_GT(last.desirable_reward - last.undesirable_reward,
            first.desirable_reward - first.undesirable_reward + 0.1);
}

TEST(KtoStep, BadInputThrowsAndLeavesParametersUntouched) {
  data d;
  bigram_policy<double> policy(V, 4), ref_model(V, 8);
  pp::reference::frozen<bigram_policy<double>> reference(ref_model);
  pt::optim::sgd opt{0.5};
  const auto before = policy.w;
  auto expect_rejected = [&](const pp::kto_data& batch, const char* what,
                             pp::kto_step_options<pt::algo::kto> o = {}) {
    EXPECT_THROW(pp::kto_step<pt::algo::kto>(policy, reference, opt, batch, o), pt::error) << what;
    EXPECT_EQ(policy.w, before) << what;
  };
  const std::vector<std::uint8_t> bad_label{1, 0, 2, 1, 0}, short_label{1, 0};
  auto b1 = d.get();
  b1.desirable = bad_label;
  expect_rejected(b1, "label 2");
  auto b2 = d.get();
  b2.desirable = short_label;
  expect_rejected(b2, "two labels for five examples");
  auto b3 = d.get();
  b3.kl_examples = {};
  b3.kl_mask = {};
  expect_rejected(b3, "KTO without mismatched pairs");
  auto b4 = d.get();
  b4.kl_examples.seq_offsets = std::span<const pt::index_t>(d.kl_off).first(4);
  expect_rejected(b4, "three KL pairs for five examples");
  std::vector<float> first_token = d.mask;
  first_token[0] = 1;
  auto b5 = d.get();
  b5.mask = first_token;
  expect_rejected(b5, "mask on a first token");
  std::vector<pt::index_t> oov = d.tok;
  oov[3] = V;
  auto b6 = d.get();
  b6.examples.tokens = oov;
  expect_rejected(b6, "token id out of the vocabulary");
  expect_rejected(pp::kto_data{}, "empty batch");
  pp::kto_step_options<pt::algo::kto> o;
  o.loss.beta = 0;
  expect_rejected(d.get(), "beta 0", o);
  o.loss.beta = 0.1;
  o.loss.undesirable_weight = -1;
  expect_rejected(d.get(), "negative weight", o);
}

TEST(KtoStep, PackKtoRotatesCompletionsAsTrl) {
  pp::byte_tokenizer tok;
  const std::vector<pp::kto_example> rows{
      {{{"user", "a"}}, {{"assistant", "x"}}, true},
      {{{"user", "bb"}}, {{"assistant", "yy"}}, false},
      {{{"user", "c"}}, {{"assistant", "zzz"}}, true}};
  const auto p = pp::pack_kto(tok, std::span<const pp::kto_example>(rows));
  ASSERT_EQ(p.examples.num_sequences(), 3);
  ASSERT_EQ(p.kl_examples.num_sequences(), 3);
  EXPECT_EQ(p.desirable, (std::vector<std::uint8_t>{1, 0, 1}));
  for (std::size_t i = 0; i < 3; ++i) {
    std::vector<pp::message> own = rows[i].prompt, mismatched = rows[i].prompt;
    own.insert(own.end(), rows[i].completion.begin(), rows[i].completion.end());
    const auto& prev = rows[(i + 2) % 3].completion;  // completion i − 1 (mod 3)
    mismatched.insert(mismatched.end(), prev.begin(), prev.end());
    const auto r_own = pp::render_chat(tok, std::span<const pp::message>(own));
    const auto r_kl = pp::render_chat(tok, std::span<const pp::message>(mismatched));
    const auto e = p.examples.view(), k = p.kl_examples.view();
    EXPECT_EQ(std::vector<pt::index_t>(e.tokens.begin() + e.seq_offsets[i], e.tokens.begin() + e.seq_offsets[i + 1]),
              r_own.tokens) << i;
    EXPECT_EQ(std::vector<pt::index_t>(k.tokens.begin() + k.seq_offsets[i], k.tokens.begin() + k.seq_offsets[i + 1]),
              r_kl.tokens) << i;
  }
  // Masks: the completions' content only (format tokens masked), token-aligned.
  ASSERT_EQ(p.mask.size(), p.examples.tokens.size());
  ASSERT_EQ(p.kl_mask.size(), p.kl_examples.tokens.size());
  double trained = 0;
  for (float m : p.mask) trained += m;
  EXPECT_EQ(trained, 1 + 2 + 3);  // "x", "yy", "zzz"
}
