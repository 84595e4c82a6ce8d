// Tests for dist/normalizers.hpp and the communicator overloads of aggregate_loss
// (ops/aggregate.hpp) and whiten (ops/whiten.hpp): R ranks give what one process gives over all
// the data. Ranks are simulated by threads sharing a summing communicator (the MPI version of
// these checks is tests/dist/mpi_normalizers.cpp, run with mpiexec -n 2).
#include "posttrain/dist/normalizers.hpp"

#include <gtest/gtest.h>

#include <barrier>
#include <cmath>
#include <functional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "posttrain/dist/communicator.hpp"
#include "posttrain/ops/aggregate.hpp"
#include "posttrain/ops/reductions.hpp"
#include "posttrain/ops/whiten.hpp"

namespace pt = posttrain;

namespace {

// R threads as R ranks: all_reduce_sum sums every rank's buffer in rank order (a barrier before
// and after, so every rank reads the others' inputs before anyone writes its result).
class thread_world {
 public:
  explicit thread_world(int ranks)
      : ranks_(ranks), inputs_(static_cast<std::size_t>(ranks)), sync_(ranks) {}

  struct communicator {
    thread_world* world;
    int me;
    void all_reduce_sum(std::span<double> values) const { world->reduce(me, values); }
    int rank() const { return me; }
    int size() const { return world->ranks_; }
  };

  // Runs body(comm) on every rank; rethrows nothing (bodies record their own results).
  void run(const std::function<void(communicator&)>& body) {
    std::vector<std::thread> threads;
    for (int r = 0; r < ranks_; ++r)
      threads.emplace_back([this, r, &body] {
        communicator c{this, r};
        body(c);
      });
    for (auto& t : threads) t.join();
  }

 private:
  void reduce(int me, std::span<double> values) {
    inputs_[static_cast<std::size_t>(me)] = values;
    sync_.arrive_and_wait();
    std::vector<double> sum(values.size(), 0.0);
    for (const auto& in : inputs_) {
      // A collective with different sizes on different ranks is a caller bug the helpers must
      // never commit: fail loudly instead of reading past a buffer.
      if (in.size() != values.size()) std::abort();
      for (std::size_t i = 0; i < sum.size(); ++i) sum[i] += in[i];
    }
    sync_.arrive_and_wait();
    for (std::size_t i = 0; i < sum.size(); ++i) values[i] = sum[i];
    sync_.arrive_and_wait();
  }

  int ranks_;
  std::vector<std::span<double>> inputs_;
  std::barrier<> sync_;
};

static_assert(pt::dist::assert_communicator<thread_world::communicator>());

// A ragged batch of B rows with random lengths (some empty), values and 0/1 masks.
struct batch {
  std::vector<pt::index_t> offsets{0};
  std::vector<double> values;
  std::vector<float> mask;
};

batch make_batch(int rows, std::mt19937& rng, double shift = 0.0) {
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

// float64 reference of one segment's moments (plain two-pass).
pt::masked_stats reference_moments(std::span<const double> x, std::span<const float> m) {
  double count = 0, sum = 0;
  for (std::size_t i = 0; i < x.size(); ++i)
    if (m[i] != 0) {
      count += m[i];
      sum += m[i] * x[i];
    }
  if (count == 0) return {};
  const double mean = sum / count;
  double m2 = 0;
  for (std::size_t i = 0; i < x.size(); ++i)
    if (m[i] != 0) m2 += m[i] * (x[i] - mean) * (x[i] - mean);
  return {count, sum, mean, m2};
}

void expect_close(double got, double want, double rel, const std::string& what) {
  EXPECT_NEAR(got, want, rel * std::max(1.0, std::abs(want))) << what;
}

}  // namespace

TEST(Normalizers, SingleProcessIsTheIdentity) {
  pt::dist::single_process_communicator comm;
  const pt::agg_counts local{12.5, 3.0};
  const pt::agg_normalizer n = pt::dist::global_normalizer(comm, local, 7.0);
  EXPECT_EQ(*n.tokens, 12.5);
  EXPECT_EQ(*n.sequences, 3.0);
  EXPECT_EQ(*n.constant, 7.0);
  const pt::masked_stats s{4.0, 10.0, 2.5, 3.0};
  const pt::masked_stats r = pt::dist::all_reduce_moments(comm, s);
  EXPECT_EQ(r.count, s.count);
  EXPECT_EQ(r.sum, s.sum);
  EXPECT_EQ(r.mean, s.mean);
  EXPECT_EQ(r.m2, s.m2);
}

TEST(Normalizers, CountsAndMomentsOverThreeRanksEqualTheConcatenation) {
  std::mt19937 rng(11);
  std::vector<batch> parts;
  for (int r = 0; r < 3; ++r) parts.push_back(make_batch(5, rng, 1e3 * r));  // far-apart means
  const batch all = concat(parts);
  const pt::masked_stats want = reference_moments(all.values, all.mask);
  const pt::agg_counts want_counts = pt::aggregation_counts(pt::exec::host{}, all.mask, all.offsets);
  std::vector<pt::masked_stats> got(3);
  std::vector<pt::agg_counts> counts(3);
  thread_world world(3);
  world.run([&](thread_world::communicator& comm) {
    const batch& b = parts[static_cast<std::size_t>(comm.rank())];
    const pt::masked_stats local = pt::masked_moments(pt::exec::host{}, b.values, b.mask);
    got[static_cast<std::size_t>(comm.rank())] = pt::dist::all_reduce_moments(comm, local);
    counts[static_cast<std::size_t>(comm.rank())] = pt::dist::all_reduce_counts(
        comm, pt::aggregation_counts(pt::exec::host{}, b.mask, b.offsets));
  });
  for (int r = 0; r < 3; ++r) {
    const auto& g = got[static_cast<std::size_t>(r)];
    // Every rank holds the same bits (rank-order merge after an exact all-gather).
    EXPECT_EQ(g.count, got[0].count);
    EXPECT_EQ(g.mean, got[0].mean);
    EXPECT_EQ(g.m2, got[0].m2);
    EXPECT_EQ(g.count, want.count);
    expect_close(g.sum, want.sum, 1e-13, "sum");
    expect_close(g.mean, want.mean, 1e-13, "mean");
    expect_close(g.m2, want.m2, 1e-12, "m2");
    EXPECT_EQ(counts[static_cast<std::size_t>(r)].tokens, want_counts.tokens);
    EXPECT_EQ(counts[static_cast<std::size_t>(r)].sequences, want_counts.sequences);
  }
}

// Group moments: segment s of each rank is part of global group s.
TEST(Normalizers, SegmentMomentsMergeGroupPartsAcrossRanks) {
  std::mt19937 rng(5);
  constexpr int groups = 4;
  std::vector<batch> parts;
  for (int r = 0; r < 2; ++r) parts.push_back(make_batch(groups, rng, 0.5 * r));
  std::vector<std::vector<pt::masked_stats>> got(2);
  thread_world world(2);
  world.run([&](thread_world::communicator& comm) {
    const batch& b = parts[static_cast<std::size_t>(comm.rank())];
    std::vector<pt::masked_stats> s =
        pt::segment_moments(pt::exec::host{}, b.values, b.mask, b.offsets);
    pt::workspace_buffer buffer;
    pt::dist::all_reduce_moments(
        comm, std::span<pt::masked_stats>(s),
        buffer.view(pt::dist::all_reduce_moments_workspace_bytes(comm, groups)));
    got[static_cast<std::size_t>(comm.rank())] = s;
  });
  for (int g = 0; g < groups; ++g) {
    std::vector<double> x;
    std::vector<float> m;
    for (const batch& b : parts)
      for (auto t = b.offsets[g]; t < b.offsets[g + 1]; ++t) {
        x.push_back(b.values[static_cast<std::size_t>(t)]);
        m.push_back(b.mask[static_cast<std::size_t>(t)]);
      }
    const pt::masked_stats want = reference_moments(x, m);
    for (int r = 0; r < 2; ++r) {
      const auto& s = got[static_cast<std::size_t>(r)][static_cast<std::size_t>(g)];
      EXPECT_EQ(s.count, want.count) << "group " << g;
      expect_close(s.mean, want.mean, 1e-13, "group mean");
      expect_close(s.m2, want.m2, 1e-12, "group m2");
    }
  }
}

TEST(Normalizers, DifferentSegmentCountsThrowOnEveryRank) {
  thread_world world(2);
  std::vector<int> threw(2, 0);
  world.run([&](thread_world::communicator& comm) {
    std::vector<pt::masked_stats> s(comm.rank() == 0 ? 2 : 3);
    try {
      pt::dist::all_reduce_moments(comm, std::span<pt::masked_stats>(s));
    } catch (const pt::error& e) {
      threw[static_cast<std::size_t>(comm.rank())] =
          std::string(e.what()).find("different numbers of segments") != std::string::npos;
    }
  });
  EXPECT_EQ(threw[0], 1);
  EXPECT_EQ(threw[1], 1);
}

template <class Mode>
void check_aggregation_over_ranks(const pt::agg_options& options, const std::string& name) {
  std::mt19937 rng(23);
  std::vector<batch> parts;
  for (int r = 0; r < 3; ++r) parts.push_back(make_batch(4 + r, rng));
  const batch all = concat(parts);
  pt::agg_normalizer constant;
  if constexpr (Mode::divisor == pt::agg::divisor_kind::constant) constant.constant = 37.0;
  std::vector<double> full_grad(all.values.size());
  const pt::agg_result full = pt::aggregate_loss<Mode>(
      pt::exec::host{}, std::span<const double>(all.values), all.mask, all.offsets, constant,
      std::span<double>(full_grad), options);
  std::vector<pt::agg_result> results(3);
  std::vector<std::vector<double>> grads(3);
  thread_world world(3);
  world.run([&](thread_world::communicator& comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    const batch& b = parts[r];
    grads[r].assign(b.values.size(), -1.0);
    results[r] = pt::aggregate_loss<Mode>(comm, pt::exec::host{},
                                          std::span<const double>(b.values), b.mask, b.offsets,
                                          constant, std::span<double>(grads[r]), options);
  });
  double loss = 0.0;
  std::size_t at = 0;
  for (std::size_t r = 0; r < 3; ++r) {
    EXPECT_EQ(results[r].divisor, full.divisor) << name << " rank " << r;
    loss += results[r].loss;
    for (double g : grads[r]) EXPECT_EQ(g, full_grad[at++]) << name << " token " << at - 1;
  }
  expect_close(loss, full.loss, 1e-14, name + " loss");
}

TEST(Normalizers, AggregateLossOverRanksEqualsOneProcess) {
  check_aggregation_over_ranks<pt::agg::token_mean>({}, "token_mean");
  check_aggregation_over_ranks<pt::agg::token_sum>({}, "token_sum");
  check_aggregation_over_ranks<pt::agg::constant_divisor>({}, "constant_divisor");
  check_aggregation_over_ranks<pt::agg::seq_mean_token_sum>(pt::agg_conventions::verl(),
                                                            "seq_mean_token_sum verl");
  check_aggregation_over_ranks<pt::agg::seq_mean_token_mean>(pt::agg_conventions::verl(),
                                                             "seq_mean_token_mean verl");
  check_aggregation_over_ranks<pt::agg::seq_mean_token_mean>(pt::agg_conventions::trl(),
                                                             "seq_mean_token_mean trl");
}

TEST(Normalizers, AggregateLossKeepsACallerGlobalNormalizer) {
  // A set field is already global: the overload must not add the ranks' counts to it.
  std::mt19937 rng(3);
  std::vector<batch> parts = {make_batch(3, rng), make_batch(3, rng)};
  std::vector<double> divisors(2);
  thread_world world(2);
  world.run([&](thread_world::communicator& comm) {
    const batch& b = parts[static_cast<std::size_t>(comm.rank())];
    divisors[static_cast<std::size_t>(comm.rank())] =
        pt::aggregate_loss<pt::agg::token_mean>(comm, pt::exec::host{},
                                                std::span<const double>(b.values), b.mask,
                                                b.offsets, pt::agg_normalizer{1234.0, {}, {}})
            .divisor;
  });
  EXPECT_EQ(divisors[0], 1234.0);
  EXPECT_EQ(divisors[1], 1234.0);
}

TEST(Normalizers, ARejectedRankMakesEveryRankThrowAndWritesNothing) {
  std::mt19937 rng(8);
  std::vector<batch> parts = {make_batch(3, rng), make_batch(3, rng)};
  parts[1].mask.at(0) = -1.0f;  // invalid weight on rank 1 only
  std::vector<std::string> messages(2);
  std::vector<std::vector<double>> outs(2);
  thread_world world(2);
  world.run([&](thread_world::communicator& comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    const batch& b = parts[r];
    outs[r].assign(b.values.size(), 42.0);
    try {
      pt::whiten(comm, pt::exec::host{}, b.values, b.mask, std::span<double>(outs[r]),
                 pt::whiten_conventions::verl);
    } catch (const pt::error& e) {
      messages[r] = e.what();
    }
    try {
      pt::aggregate_loss<pt::agg::token_mean>(comm, pt::exec::host{},
                                              std::span<const double>(b.values), b.mask,
                                              b.offsets, {}, std::span<double>(outs[r]));
    } catch (const pt::error& e) {
      messages[r] += e.what();
    }
  });
  EXPECT_NE(messages[1].find("posttrain::whiten: mask"), std::string::npos) << messages[1];
  EXPECT_NE(messages[1].find("posttrain::aggregate_loss: mask"), std::string::npos)
      << messages[1];
  EXPECT_NE(messages[0].find("posttrain::whiten: the input of another rank was rejected"),
            std::string::npos)
      << messages[0];
  EXPECT_NE(messages[0].find("posttrain::aggregate_loss: the input of another rank"),
            std::string::npos)
      << messages[0];
  for (const auto& o : outs)
    for (double v : o) EXPECT_EQ(v, 42.0);
}

void check_whiten_over_ranks(const pt::whiten_options& options, const std::string& name) {
  std::mt19937 rng(31);
  constexpr int groups = 3;
  std::vector<batch> parts;
  for (int r = 0; r < 2; ++r) parts.push_back(make_batch(groups, rng, 2.0 * r));
  // One process: per_segment puts group g's parts from both ranks together.
  batch all;
  std::vector<std::vector<std::size_t>> where(2);  // index in `all` of each rank's token
  for (auto& w : where) w.clear();
  for (std::size_t r = 0; r < 2; ++r) where[r].resize(parts[r].values.size());
  for (int g = 0; g < groups; ++g) {
    for (std::size_t r = 0; r < 2; ++r)
      for (auto t = parts[r].offsets[g]; t < parts[r].offsets[g + 1]; ++t) {
        where[r][static_cast<std::size_t>(t)] = all.values.size();
        all.values.push_back(parts[r].values[static_cast<std::size_t>(t)]);
        all.mask.push_back(parts[r].mask[static_cast<std::size_t>(t)]);
      }
    all.offsets.push_back(static_cast<pt::index_t>(all.values.size()));
  }
  std::vector<double> full(all.values.size());
  const pt::index_t full_degenerate = pt::whiten(pt::exec::host{}, all.values, all.mask,
                                                 all.offsets, std::span<double>(full), options);
  std::vector<std::vector<double>> outs(2);
  std::vector<pt::index_t> degenerate(2);
  thread_world world(2);
  world.run([&](thread_world::communicator& comm) {
    const auto r = static_cast<std::size_t>(comm.rank());
    const batch& b = parts[r];
    outs[r].assign(b.values.size(), 0.0);
    degenerate[r] = pt::whiten(comm, pt::exec::host{}, b.values, b.mask, b.offsets,
                               std::span<double>(outs[r]), options);
  });
  for (std::size_t r = 0; r < 2; ++r) {
    EXPECT_EQ(degenerate[r], full_degenerate) << name;
    for (std::size_t t = 0; t < outs[r].size(); ++t)
      expect_close(outs[r][t], full[where[r][t]], 1e-12, name + " token");
  }
}

TEST(Normalizers, WhitenOverRanksEqualsOneProcess) {
  check_whiten_over_ranks(pt::whiten_conventions::verl, "verl batch");
  check_whiten_over_ranks(pt::whiten_conventions::openrlhf_global, "openrlhf batch");
  pt::whiten_options groupwise = pt::whiten_conventions::trl_ppo;
  groupwise.scope = pt::whiten_scope::per_segment;
  groupwise.on_degenerate = pt::degenerate_policy::zero;
  check_whiten_over_ranks(groupwise, "per group, parts on both ranks");
  check_whiten_over_ranks(pt::whiten_conventions::openrlhf_masked_normalize,
                          "openrlhf masked_normalize per group");
}

TEST(Normalizers, WhitenOverASingleProcessEqualsWhiten) {
  std::mt19937 rng(2);
  const batch b = make_batch(6, rng, 4.0);
  std::vector<double> want(b.values.size()), got(b.values.size());
  pt::whiten(pt::exec::host{}, b.values, b.mask, std::span<double>(want),
             pt::whiten_conventions::verl);
  pt::dist::single_process_communicator comm;
  pt::whiten(comm, pt::exec::host{}, b.values, b.mask, std::span<double>(got),
             pt::whiten_conventions::verl);
  // One rank: the merge of one part is that part exactly, so the results are bitwise equal.
  EXPECT_EQ(got, want);
}
