// Tests for dist/normalizers.hpp and the communicator overloads of aggregate_loss and whiten over
// MPI (posttrain::mpi): R ranks (1 as a singleton, 2 under mpiexec -n 2) against one process over
// the concatenated data. Every rank generates every rank's part from the same seed, keeps its
// own, and computes the one-process reference over all parts itself.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "posttrain/dist/mpi_communicator.hpp"
#include "posttrain/dist/normalizers.hpp"
#include "posttrain/ops/aggregate.hpp"
#include "posttrain/ops/reductions.hpp"
#include "posttrain/ops/whiten.hpp"

namespace pt = posttrain;

namespace {

struct batch {
  std::vector<pt::index_t> offsets{0};
  std::vector<double> values;
  std::vector<float> mask;
};

// Rows of random lengths (some empty), values around `shift`, 0/1 masks.
batch make_batch(int rows, std::mt19937& rng, double shift) {
  std::uniform_int_distribution<int> len(0, 9);
  std::normal_distribution<double> x(shift, 1.5);
  std::bernoulli_distribution keep(0.75);
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

// Every rank's part, the same on every rank.
std::vector<batch> all_parts(int ranks, int rows, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<batch> parts;
  for (int r = 0; r < ranks; ++r) parts.push_back(make_batch(rows + r, rng, 100.0 * r));
  return parts;
}

batch concat(const std::vector<batch>& parts) {
  batch all;
  for (const batch& p : parts) {
    const pt::index_t base = all.offsets.back();
    for (std::size_t i = 1; i < p.offsets.size(); ++i) all.offsets.push_back(base + p.offsets[i]);
    all.values.insert(all.values.end(), p.values.begin(), p.values.end());
    all.mask.insert(all.mask.end(), p.mask.begin(), p.mask.end());
  }
  return all;
}

// Index in concat(parts) of the first token of part r.
std::size_t part_start(const std::vector<batch>& parts, int r) {
  std::size_t at = 0;
  for (int q = 0; q < r; ++q) at += parts[static_cast<std::size_t>(q)].values.size();
  return at;
}

double sum_over_ranks(double x) {
  double total = 0.0;
  MPI_Allreduce(&x, &total, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return total;
}

template <class Mode>
void check_aggregation(const pt::agg_options& options, const std::string& name) {
  pt::dist::mpi_communicator comm;
  const std::vector<batch> parts = all_parts(comm.size(), 5, 17);
  const batch all = concat(parts);
  pt::agg_normalizer normalizer;
  if constexpr (Mode::divisor == pt::agg::divisor_kind::constant) normalizer.constant = 29.0;
  std::vector<double> full_grad(all.values.size());
  const pt::agg_result full = pt::aggregate_loss<Mode>(
      pt::exec::host{}, std::span<const double>(all.values), all.mask, all.offsets, normalizer,
      std::span<double>(full_grad), options);
  const batch& mine = parts[static_cast<std::size_t>(comm.rank())];
  std::vector<double> grad(mine.values.size());
  const pt::agg_result part = pt::aggregate_loss<Mode>(
      comm, pt::exec::host{}, std::span<const double>(mine.values), mine.mask, mine.offsets,
      normalizer, std::span<double>(grad), options);
  EXPECT_EQ(part.divisor, full.divisor) << name;
  // The ranks' losses add up to the one-process loss; each gradient is the same number.
  const double loss = sum_over_ranks(part.loss);
  EXPECT_NEAR(loss, full.loss, 1e-14 * std::max(1.0, std::abs(full.loss))) << name;
  const std::size_t at = part_start(parts, comm.rank());
  for (std::size_t t = 0; t < grad.size(); ++t)
    EXPECT_EQ(grad[t], full_grad[at + t]) << name << " token " << t;
}

}  // namespace

TEST(MpiNormalizers, AggregateLossOnRanksEqualsOneProcess) {
  check_aggregation<pt::agg::token_mean>({}, "token_mean");
  check_aggregation<pt::agg::token_sum>({}, "token_sum");
  check_aggregation<pt::agg::constant_divisor>({}, "constant_divisor");
  check_aggregation<pt::agg::seq_mean_token_sum>(pt::agg_conventions::verl(), "seq_sum verl");
  check_aggregation<pt::agg::seq_mean_token_mean>(pt::agg_conventions::verl(), "seq_mean verl");
  check_aggregation<pt::agg::seq_mean_token_mean>(pt::agg_conventions::trl(), "seq_mean trl");
}

TEST(MpiNormalizers, GlobalNormalizerSumsTheRanksCounts) {
  pt::dist::mpi_communicator comm;
  const std::vector<batch> parts = all_parts(comm.size(), 4, 3);
  const batch all = concat(parts);
  const batch& mine = parts[static_cast<std::size_t>(comm.rank())];
  const pt::agg_counts want = pt::aggregation_counts(pt::exec::host{}, all.mask, all.offsets);
  const pt::agg_normalizer n = pt::dist::global_normalizer(
      comm, pt::aggregation_counts(pt::exec::host{}, mine.mask, mine.offsets));
  EXPECT_EQ(*n.tokens, want.tokens);
  EXPECT_EQ(*n.sequences, want.sequences);
  EXPECT_FALSE(n.constant.has_value());
}

TEST(MpiNormalizers, MomentsOnRanksEqualTheConcatenation) {
  pt::dist::mpi_communicator comm;
  const std::vector<batch> parts = all_parts(comm.size(), 6, 9);
  const batch all = concat(parts);
  const batch& mine = parts[static_cast<std::size_t>(comm.rank())];
  const pt::masked_stats want = pt::masked_moments(pt::exec::host{}, all.values, all.mask);
  const pt::masked_stats got = pt::dist::all_reduce_moments(
      comm, pt::masked_moments(pt::exec::host{}, mine.values, mine.mask));
  EXPECT_EQ(got.count, want.count);
  EXPECT_NEAR(got.mean, want.mean, 1e-13 * std::max(1.0, std::abs(want.mean)));
  EXPECT_NEAR(got.m2, want.m2, 1e-12 * std::max(1.0, want.m2));
  // Every rank holds the same bits: rank 0's broadcast equals this rank's.
  double bits[2] = {got.mean, got.m2};
  MPI_Bcast(bits, 2, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  EXPECT_EQ(bits[0], got.mean);
  EXPECT_EQ(bits[1], got.m2);
}

TEST(MpiNormalizers, WhitenOnRanksEqualsOneProcess) {
  pt::dist::mpi_communicator comm;
  const std::vector<batch> parts = all_parts(comm.size(), 5, 21);
  const batch all = concat(parts);
  const batch& mine = parts[static_cast<std::size_t>(comm.rank())];
  const std::size_t at = part_start(parts, comm.rank());
  for (const pt::whiten_options& o :
       {pt::whiten_conventions::verl, pt::whiten_conventions::openrlhf_global}) {
    std::vector<double> full(all.values.size()), out(mine.values.size());
    pt::whiten(pt::exec::host{}, all.values, all.mask, std::span<double>(full), o);
    pt::whiten(comm, pt::exec::host{}, mine.values, mine.mask, std::span<double>(out), o);
    for (std::size_t t = 0; t < out.size(); ++t)
      EXPECT_NEAR(out[t], full[at + t], 1e-12 * std::max(1.0, std::abs(full[at + t])))
          << "token " << t;
  }
}

TEST(MpiNormalizers, GroupWhiteningWithGroupsSplitAcrossRanks) {
  // Group g has a part on every rank (segment g of each rank); one process sees the parts of
  // group g next to each other.
  pt::dist::mpi_communicator comm;
  constexpr int groups = 4;
  std::mt19937 rng(44);
  std::vector<batch> parts;
  for (int r = 0; r < comm.size(); ++r) parts.push_back(make_batch(groups, rng, 0.3 * r));
  batch all;
  std::vector<std::size_t> where(parts[static_cast<std::size_t>(comm.rank())].values.size());
  for (int g = 0; g < groups; ++g) {
    for (int r = 0; r < comm.size(); ++r) {
      const batch& p = parts[static_cast<std::size_t>(r)];
      for (auto t = p.offsets[g]; t < p.offsets[g + 1]; ++t) {
        if (r == comm.rank()) where[static_cast<std::size_t>(t)] = all.values.size();
        all.values.push_back(p.values[static_cast<std::size_t>(t)]);
        all.mask.push_back(p.mask[static_cast<std::size_t>(t)]);
      }
    }
    all.offsets.push_back(static_cast<pt::index_t>(all.values.size()));
  }
  pt::whiten_options o = pt::whiten_conventions::trl_ppo;
  o.scope = pt::whiten_scope::per_segment;
  o.on_degenerate = pt::degenerate_policy::zero;
  std::vector<double> full(all.values.size());
  const pt::index_t full_degenerate =
      pt::whiten(pt::exec::host{}, all.values, all.mask, all.offsets, std::span<double>(full), o);
  const batch& mine = parts[static_cast<std::size_t>(comm.rank())];
  std::vector<double> out(mine.values.size());
  const pt::index_t degenerate = pt::whiten(comm, pt::exec::host{}, mine.values, mine.mask,
                                            mine.offsets, std::span<double>(out), o);
  EXPECT_EQ(degenerate, full_degenerate);
  for (std::size_t t = 0; t < out.size(); ++t)
    EXPECT_NEAR(out[t], full[where[t]], 1e-12 * std::max(1.0, std::abs(full[where[t]])))
        << "token " << t;
}

TEST(MpiNormalizers, ARankWithBadInputMakesEveryRankThrow) {
  pt::dist::mpi_communicator comm;
  const std::vector<batch> parts = all_parts(comm.size(), 3, 5);
  batch mine = parts[static_cast<std::size_t>(comm.rank())];
  if (comm.rank() == comm.size() - 1) mine.mask.push_back(1.0f);  // one weight too many
  std::vector<double> out(mine.values.size(), 7.0);
  EXPECT_THROW(pt::whiten(comm, pt::exec::host{}, mine.values, mine.mask,
                          std::span<double>(out), pt::whiten_conventions::verl),
               pt::error);
  for (double v : out) EXPECT_EQ(v, 7.0);
}

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  // Only rank 0 prints results; every rank runs every test.
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int failed = RUN_ALL_TESTS();
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any_failed;
}
