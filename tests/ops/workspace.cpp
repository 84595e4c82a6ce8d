// The workspace overloads of the ops (core/workspace.hpp): segment_stats, whiten,
// whiten_with_moments, aggregate_loss, token_logprobs_fused and the fused losses' per-row
// aggregation (backend/cpu/fused_aggregate.hpp) give the same bits as their
// allocating overloads, allocate nothing themselves (counted through a replaced global operator
// new), accept a workspace at any base address when sized by their *_workspace_bytes, and throw
// before writing any output when the workspace is too small.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <optional>
#include <random>
#include <span>
#include <vector>

#include "posttrain/backend/cpu/fused_aggregate.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/ops/aggregate.hpp"
#include "posttrain/ops/reductions.hpp"
#include "posttrain/ops/token_logprobs.hpp"
#include "posttrain/ops/whiten.hpp"

#include "../core/count_allocations.hpp"

namespace pt = posttrain;

namespace {

struct batch {
  std::vector<pt::index_t> offsets{0};
  std::vector<double> values;
  std::vector<float> mask;
};

batch make_batch(int rows, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> len(0, 40);
  std::normal_distribution<double> x(0.5, 2.0);
  std::bernoulli_distribution keep(0.8);
  batch b;
  for (int i = 0; i < rows; ++i) {
    const int n = len(rng);
    for (int t = 0; t < n; ++t) {
      b.values.push_back(x(rng));
      b.mask.push_back(keep(rng) ? 1.0f : 0.0f);
    }
    b.offsets.push_back(static_cast<pt::index_t>(b.values.size()));
  }
  return b;
}

// A workspace of exactly `bytes` bytes starting `offset` bytes into a larger buffer.
pt::workspace at_offset(std::vector<std::byte>& storage, std::size_t offset, std::size_t bytes) {
  storage.assign(offset + bytes, std::byte{0});
  return pt::workspace(storage.data() + offset, bytes);
}

}  // namespace

TEST(OpsWorkspace, SegmentStatsSameBitsNoAllocationAndTooSmallWritesNothing) {
  const batch b = make_batch(12, 1);
  const pt::exec::host host;
  const auto S = static_cast<std::size_t>(b.offsets.size() - 1);
  std::vector<double> want_mean(S), want_var(S), mean(S), var(S);
  // The allocating overload allocates (so a count of 0 below means something).
  EXPECT_GT(count_allocations([&] {
              pt::segment_stats(host, b.values, b.mask, b.offsets,
                                {.mean = want_mean, .var_unbiased = want_var});
            }),
            0);
  const std::size_t bytes = pt::segment_stats_workspace_bytes(host, pt::ssize(std::span(b.offsets)) - 1);
  std::vector<std::byte> storage;
  for (std::size_t offset : {0u, 3u, 17u}) {
    pt::workspace ws = at_offset(storage, offset, bytes);
    const long n = count_allocations([&] {
      pt::segment_stats(host, b.values, b.mask, b.offsets, {.mean = mean, .var_unbiased = var}, ws);
    });
    EXPECT_EQ(n, 0);
    EXPECT_EQ(mean, want_mean);
    EXPECT_EQ(var, want_var);
  }
  std::vector<double> untouched(S, -3.0);
  pt::workspace small = at_offset(storage, 0, bytes / 2);
  EXPECT_THROW(pt::segment_stats(host, b.values, b.mask, b.offsets, {.mean = untouched}, small),
               pt::error);
  for (double v : untouched) EXPECT_EQ(v, -3.0);
}

TEST(OpsWorkspace, WhitenSameBitsNoAllocationAndTooSmallWritesNothing) {
  const batch b = make_batch(9, 2);
  const pt::exec::host host;
  for (pt::whiten_options o : {pt::whiten_conventions::verl, pt::whiten_conventions::openrlhf_masked_normalize}) {
    o.on_degenerate = pt::degenerate_policy::zero;
    const pt::index_t scopes =
        o.scope == pt::whiten_scope::per_segment ? pt::ssize(std::span(b.offsets)) - 1 : 1;
    std::vector<double> want(b.values.size()), out(b.values.size());
    const pt::index_t want_degenerate =
        pt::whiten(host, b.values, b.mask, b.offsets, std::span<double>(want), o);
    pt::workspace_buffer buffer;
    buffer.reserve(pt::whiten_workspace_bytes(host, scopes));
    pt::index_t degenerate = -1;
    const long n = count_allocations([&] {
      degenerate = pt::whiten(host, b.values, b.mask, b.offsets, std::span<double>(out), o,
                              buffer.view(pt::whiten_workspace_bytes(host, scopes)));
    });
    EXPECT_EQ(n, 0);
    EXPECT_EQ(out, want);
    EXPECT_EQ(degenerate, want_degenerate);

    // With caller moments: the workspace holds the coefficients only.
    const std::vector<pt::masked_stats> moments =
        o.scope == pt::whiten_scope::per_segment
            ? pt::segment_moments(host, b.values, b.mask, b.offsets)
            : std::vector<pt::masked_stats>{pt::masked_moments(host, b.values, b.mask)};
    std::vector<double> with_moments(b.values.size());
    const std::size_t mbytes = pt::whiten_workspace_bytes(host, scopes, true);
    EXPECT_LT(mbytes, pt::whiten_workspace_bytes(host, scopes));
    buffer.reserve(mbytes);
    const long m = count_allocations([&] {
      pt::whiten_with_moments(host, b.values, b.mask, b.offsets,
                              std::span<const pt::masked_stats>(moments),
                              std::span<double>(with_moments), o, buffer.view(mbytes));
    });
    EXPECT_EQ(m, 0);
    EXPECT_EQ(with_moments, want);

    std::vector<double> untouched(b.values.size(), 9.0);
    std::vector<std::byte> storage(8);
    EXPECT_THROW(pt::whiten(host, b.values, b.mask, b.offsets, std::span<double>(untouched), o,
                            pt::workspace(storage.data(), storage.size())),
                 pt::error);
    for (double v : untouched) EXPECT_EQ(v, 9.0);
  }
}

TEST(OpsWorkspace, AggregateLossSameBitsNoAllocationAndTooSmallWritesNothing) {
  const batch b = make_batch(10, 3);
  const pt::exec::host host;
  using mode = pt::agg::seq_mean_token_mean;
  const auto o = pt::agg_conventions::verl();
  std::vector<double> want(b.values.size()), grad(b.values.size());
  const pt::agg_result r0 = pt::aggregate_loss<mode>(host, b.values, b.mask, b.offsets, {},
                                                     std::span<double>(want), o);
  const pt::index_t rows = pt::ssize(std::span(b.offsets)) - 1;
  const std::size_t bytes = pt::aggregate_workspace_bytes<mode>(host, rows);
  EXPECT_GT(bytes, 0u);
  EXPECT_EQ(pt::aggregate_workspace_bytes<mode>(host, rows, false), 0u);
  EXPECT_EQ(pt::aggregate_workspace_bytes<pt::agg::token_mean>(host, rows), 0u);
  pt::workspace_buffer buffer(bytes);
  pt::agg_result r1;
  const long n = count_allocations([&] {
    r1 = pt::aggregate_loss<mode>(host, b.values, b.mask, b.offsets, {}, std::span<double>(grad),
                                  o, buffer.view(bytes));
  });
  EXPECT_EQ(n, 0);
  EXPECT_EQ(r1.loss, r0.loss);
  EXPECT_EQ(r1.divisor, r0.divisor);
  EXPECT_EQ(grad, want);
  std::vector<double> untouched(b.values.size(), 5.0);
  EXPECT_THROW(pt::aggregate_loss<mode>(host, b.values, b.mask, b.offsets, {},
                                        std::span<double>(untouched), o, pt::workspace{}),
               pt::error);
  for (double v : untouched) EXPECT_EQ(v, 5.0);
}

TEST(OpsWorkspace, TokenLogprobsFusedSameBitsNoAllocationAndTooSmallWritesNothing) {
  const pt::index_t n = 70, v = 5000;  // several row blocks of ~1 MiB
  std::mt19937 rng(4);
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> logits(static_cast<std::size_t>(n * v));
  for (auto& x : logits) x = d(rng);
  std::vector<pt::index_t> targets(static_cast<std::size_t>(n));
  for (pt::index_t i = 0; i < n; ++i) targets[static_cast<std::size_t>(i)] = (i * 37) % v;
  std::vector<float> d_logprob(static_cast<std::size_t>(n), -1.0f / static_cast<float>(n));
  const pt::exec::host host;
  const pt::token_logprobs_options o{};

  std::vector<float> want_logits = logits, want_lp(static_cast<std::size_t>(n));
  pt::token_logprobs_fused(host, pt::matrix_view<float>(want_logits.data(), n, v), targets,
                           std::span<const float>(d_logprob),
                           pt::token_logprobs_outputs<float>{.logprob = want_lp}, o);
  // Without a caller lse the host keeps one block's lse in the workspace.
  const std::size_t bytes = pt::token_logprobs_fused_workspace_bytes<float>(host, n, v, false, o);
  EXPECT_GT(bytes, 0u);
  EXPECT_EQ(pt::token_logprobs_fused_workspace_bytes<float>(host, n, v, true, o), 0u);
  std::vector<float> got_logits = logits, got_lp(static_cast<std::size_t>(n));
  pt::workspace_buffer buffer(bytes);
  const long a = count_allocations([&] {
    pt::token_logprobs_fused(host, pt::matrix_view<float>(got_logits.data(), n, v), targets,
                             std::span<const float>(d_logprob),
                             pt::token_logprobs_outputs<float>{.logprob = got_lp}, o,
                             buffer.view(bytes));
  });
  EXPECT_EQ(a, 0);
  EXPECT_EQ(got_lp, want_lp);
  EXPECT_EQ(got_logits, want_logits);

  std::vector<float> untouched_logits = logits, untouched_lp(static_cast<std::size_t>(n), 2.0f);
  EXPECT_THROW(pt::token_logprobs_fused(host, pt::matrix_view<float>(untouched_logits.data(), n, v),
                                        targets, std::span<const float>(d_logprob),
                                        pt::token_logprobs_outputs<float>{.logprob = untouched_lp},
                                        o, pt::workspace{}),
               pt::error);
  EXPECT_EQ(untouched_logits, logits);
  for (float x : untouched_lp) EXPECT_EQ(x, 2.0f);
}

TEST(OpsWorkspace, FusedAggregateFromAWorkspaceEqualsTheAllocatingOne) {
  // The workspace starts as NaN bytes: every row value the pass reads must have been written.
  using mode = pt::agg::seq_mean_token_mean;
  const auto o = pt::agg_conventions::verl();  // empty rows excluded: all masked gives D = 0
  for (bool all_masked : {false, true}) {
    batch b = make_batch(11, 6);
    if (all_masked)
      for (float& m : b.mask) m = 0.0f;  // D = 0 for the local sequence count: zero scales
    const std::size_t rows = b.offsets.size() - 1;
    const pt::agg_normalizer n{};
    const pt::backend::cpu::fused_aggregate<mode> want(b.mask, b.offsets, b.values.size(), n, o);
    const std::size_t bytes = pt::backend::cpu::fused_aggregate<mode>::workspace_bytes(rows);
    std::vector<std::byte> storage(bytes, std::byte{0xFF});
    long allocs = 0;
    std::optional<pt::backend::cpu::fused_aggregate<mode>> got;
    allocs = count_allocations([&] {
      got.emplace(b.mask, b.offsets, b.values.size(), n, o,
                  pt::workspace(storage.data(), storage.size()));
    });
    EXPECT_EQ(allocs, 0);
    EXPECT_EQ(got->divisor(), want.divisor());
    for (std::size_t i = 0; i < rows; ++i) EXPECT_EQ(got->scale(i), want.scale(i)) << i;
  }
  EXPECT_EQ(pt::backend::cpu::fused_aggregate<pt::agg::token_mean>::workspace_bytes(9), 0u);
}
