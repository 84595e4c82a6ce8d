// Shared-prefix passes (prefix_sharing.hpp): the layout's detection, and the shared computation
// against the unshared one (set_prefix_sharing(false)) on mixed batches: per-token log-probs and
// every parameter gradient, in double (tight) and float; a finite-difference check of the gradient
// through the shared path; generation with repeated prompts (its prefill shares).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <posttrain/ops/fused_linear_logprobs.hpp>

#include "fd.hpp"
#include "generate.hpp"
#include "prefix_sharing.hpp"
#include "test_models.hpp"
#include "transformer.hpp"

namespace rm = reference_model;
using rm::index_t;

namespace {

// Qwen2 with attention biases, or Llama without.
rm::model_config tiny(bool qwen2, bool tied) {
  return rm::testing::tiny(qwen2 ? rm::architecture::qwen2 : rm::architecture::llama, tied, qwen2);
}

using packed = rm::testing::packed_rows;
using rm::testing::randomize;

// Groups of different sizes and prompt lengths, a group of one, equal prompts that are not
// adjacent, an empty completion (a row that is only its prompt), two identical rows, and a prompt
// that shares only its first two tokens (a chat header) with another group.
packed mixed_batch() {
  const std::vector<index_t> a{1, 5, 2, 9, 4, 7}, b{3, 8, 8, 2}, c{1, 5, 11, 0, 6}, d{2, 2, 10};
  packed p;
  p.add(a, {3, 4, 12});
  p.add(a, {3, 6});
  p.add(c, {7, 7, 7, 1});   // shares {1, 5} with a
  p.add(a, {});             // empty completion
  p.add(b, {0, 1});         // group of one
  p.add(c, {2});            // c again, not adjacent to the first c
  p.add(a, {9, 9, 9, 9, 9});
  p.add(d, {4, 4});
  p.add(d, {4, 4});         // identical rows
  p.add(c, {2, 3});
  return p;
}

// loss = Σ_t w_t log p(tokens[t + 1] | ...) over the rows that have a next token.
template <class S>
struct result {
  std::vector<S> logprobs, grads;
  S loss = 0;
};

template <class S>
result<S> run(rm::transformer<S>& m, const packed& b, bool share, bool with_grad = true) {
  m.set_prefix_sharing(share);
  const index_t n = static_cast<index_t>(b.tokens.size());
  std::vector<index_t> targets(static_cast<std::size_t>(n), -100);
  for (std::size_t s = 0; s + 1 < b.offsets.size(); ++s)
    for (index_t t = b.offsets[s]; t + 1 < b.offsets[s + 1]; ++t) targets[t] = b.tokens[t + 1];
  std::vector<S> weight(static_cast<std::size_t>(n));
  for (index_t t = 0; t < n; ++t) weight[t] = S(std::sin(0.7 * double(t) + 0.3));
  rm::activations<S> act;
  const rm::matrix<S>& h = m.forward(b.tokens, b.offsets, act);
  result<S> r;
  r.logprobs.assign(static_cast<std::size_t>(n), S(0));
  std::vector<S> lse(r.logprobs.size());
  const posttrain::matrix_view<const S> hv{h.data(), h.rows(), h.cols()};
  posttrain::fused_linear_logprobs(posttrain::exec::host{}, hv, m.lm_head(), targets,
                                   posttrain::token_logprobs_outputs<S>{r.logprobs, lse});
  for (index_t t = 0; t < n; ++t) r.loss += weight[t] * r.logprobs[t];
  if (with_grad) {
    m.zero_grad();
    rm::matrix<S> dh(h.rows(), h.cols());
    posttrain::fused_linear_logprobs_options o;
    o.accumulate_d_weight = true;
    posttrain::fused_linear_logprobs_backward(
        posttrain::exec::host{}, hv, m.lm_head(), targets,
        posttrain::token_logprobs_grads<S>{lse, {}, weight, {}},
        posttrain::matrix_view<S>{dh.data(), dh.rows(), dh.cols()}, m.lm_head_grad(), o);
    m.backward(act, dh);
    r.grads.assign(m.gradients().begin(), m.gradients().end());
  }
  return r;
}

template <class S>
void expect_shared_equals_unshared(bool qwen2, bool tied, double tol) {
  rm::transformer<S> m(tiny(qwen2, tied));
  randomize(m, 21, 0.5);
  const packed b = mixed_batch();
  const result<S> alone = run(m, b, false), shared = run(m, b, true);
  ASSERT_EQ(alone.logprobs.size(), shared.logprobs.size());
  for (std::size_t t = 0; t < alone.logprobs.size(); ++t)
    EXPECT_NEAR(shared.logprobs[t], alone.logprobs[t], tol * (1 + std::abs(alone.logprobs[t])))
        << "log-prob of row " << t;
  double scale = 0;
  for (S g : alone.grads) scale = std::max(scale, double(std::abs(g)));
  for (const rm::tensor_info& ti : m.layout().tensors)
    for (std::size_t i = 0; i < ti.numel(); ++i) {
      const std::size_t k = ti.offset + i;
      ASSERT_NEAR(shared.grads[k], alone.grads[k], tol * (1 + scale)) << ti.name << "[" << i << "]";
    }
}

}  // namespace

TEST(SharedPrefixLayout, GroupsEqualPromptsAndKeepsTheRest) {
  const packed b = mixed_batch();
  rm::shared_prefix_layout l;
  rm::build_shared_prefix_layout(b.tokens, b.offsets, true, l);
  EXPECT_FALSE(l.identity);
  // Distinct work: a (6) + 3 + 2 + 0 + 5, b alone (6), c (5) + 4 + 1 + 2, d + its completion (5,
  // the two identical rows share everything).
  EXPECT_EQ(l.rows(), 6 + 3 + 2 + 0 + 5 + 6 + 5 + 4 + 1 + 2 + 5);
  ASSERT_EQ(l.packed_rows(), static_cast<index_t>(b.tokens.size()));
  for (index_t t = 0; t < l.packed_rows(); ++t) {
    const index_t r = l.row_of[static_cast<std::size_t>(t)];
    EXPECT_EQ(l.tokens[static_cast<std::size_t>(r)], b.tokens[static_cast<std::size_t>(t)]);
    const auto s = std::upper_bound(b.offsets.begin(), b.offsets.end(), t) - 1;
    EXPECT_EQ(l.positions[static_cast<std::size_t>(r)], t - *s) << "position of packed row " << t;
  }
  // Every deduplicated row in exactly one segment, contexts are prefixes of their group.
  std::vector<int> covered(static_cast<std::size_t>(l.rows()), 0);
  index_t prefix = -1;
  for (const rm::attention_segment& s : l.segments) {
    for (index_t j = 0; j < s.length; ++j) ++covered[static_cast<std::size_t>(s.begin + j)];
    if (s.ctx_len == 0) prefix = s.begin;
    else EXPECT_EQ(s.ctx_begin, prefix);
  }
  EXPECT_TRUE(std::all_of(covered.begin(), covered.end(), [](int c) { return c == 1; }));
  // Sharing off: the identity layout, one segment per row.
  rm::build_shared_prefix_layout(b.tokens, b.offsets, false, l);
  EXPECT_TRUE(l.identity);
  EXPECT_EQ(l.segments.size(), b.offsets.size() - 1);
}

TEST(SharedPrefixLayout, AChatHeaderDoesNotMergeTwoPromptGroups) {
  // Two prompts share a 2-token header; each has 3 samples. Best: two groups with their full
  // 6-token prompts (saves 2 · 6 · 2 = 24), not one group with the 2-token header (saves 10).
  packed p;
  for (int i = 0; i < 3; ++i) p.add({1, 2, 3, 4, 5, 6}, {7, index_t(i)});
  for (int i = 0; i < 3; ++i) p.add({1, 2, 9, 9, 9, 9}, {7, index_t(i)});
  rm::shared_prefix_layout l;
  rm::build_shared_prefix_layout(p.tokens, p.offsets, true, l);
  // Each group: its prefix (the prompt and the samples' common first token 7: any common prefix is
  // exact) and 3 one-token continuations.
  EXPECT_EQ(l.rows(), 2 * (7 + 3));
  int prefixes = 0;
  for (const rm::attention_segment& s : l.segments) prefixes += s.ctx_len == 0;
  EXPECT_EQ(prefixes, 2);
}

TEST(SharedPrefix, EqualsUnsharedDouble) {
  for (bool qwen2 : {false, true})
    for (bool tied : {false, true}) expect_shared_equals_unshared<double>(qwen2, tied, 1e-12);
}

TEST(SharedPrefix, EqualsUnsharedFloat) {
  for (bool qwen2 : {false, true})
    for (bool tied : {false, true}) expect_shared_equals_unshared<float>(qwen2, tied, 2e-5);
}

TEST(SharedPrefix, GradientMatchesFiniteDifferences) {
  rm::transformer<double> m(tiny(true, true));
  randomize(m, 5, 0.4);
  const packed b = mixed_batch();
  const std::vector<double> analytic = run(m, b, true).grads;
  auto loss = [&] { return run(m, b, true, false).loss; };
  const double err = rm::testing::fd_max_error(m.parameters(), analytic, loss);
  EXPECT_LT(err, 1e-7) << "largest relative FD error over " << analytic.size() << " parameters";
}

TEST(SharedPrefix, GenerateWithRepeatedPromptsEqualsUnshared) {
  rm::transformer<double> m(tiny(false, true));
  randomize(m, 8, 0.5);
  packed prompts;
  for (int i = 0; i < 3; ++i) prompts.add({1, 5, 2, 9}, {});
  prompts.add({3, 3}, {});
  for (int i = 0; i < 2; ++i) prompts.add({1, 5, 2, 9}, {});
  const std::vector<std::uint64_t> seeds{1, 2, 3, 4, 5, 6};
  rm::sampling_options o;
  o.temperature = 1.0;
  o.max_new_tokens = 5;
  const auto shared = rm::generate(m, prompts.tokens, prompts.offsets, seeds, o);
  m.set_prefix_sharing(false);
  const auto alone = rm::generate(m, prompts.tokens, prompts.offsets, seeds, o);
  ASSERT_EQ(shared.size(), alone.size());
  for (std::size_t s = 0; s < shared.size(); ++s) {
    EXPECT_EQ(shared[s].tokens, alone[s].tokens) << "sample " << s;
    for (std::size_t t = 0; t < shared[s].model_logprobs.size(); ++t)
      EXPECT_NEAR(shared[s].model_logprobs[t], alone[s].model_logprobs[t], 1e-12);
  }
}
