// Tests for dist/communicator.hpp: the communicator concept, its diagnostics helper and the
// single-process communicator.
// dist/nccl_communicator.cuh has no runtime test here (it needs NCCL and GPUs): it is compiled by
// test_header_self_containment_cuda when the nccl component is built. dist/normalizers.hpp:
// tests/dist/normalizers.cpp and tests/dist/mpi_normalizers.cpp.
#include "posttrain/dist/communicator.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

namespace pt = posttrain;

namespace {

struct missing_all_reduce {
  int rank() const { return 0; }
  int size() const { return 1; }
};

struct missing_size {
  void all_reduce_sum(std::span<double>) {}
  int rank() const { return 0; }
};

struct non_const_rank {
  void all_reduce_sum(std::span<double>) {}
  int rank() { return 0; }
  int size() const { return 1; }
};

struct device_comm {
  using exec_type = pt::exec::cuda;
  void all_reduce_sum(std::span<double>) const {}
  int rank() const { return 0; }
  int size() const { return 1; }
};

// A two-"rank" fake: the sum over ranks of v is v + peer, the peer holding the given values.
struct fake_pair_communicator {
  std::vector<double> peer;
  void all_reduce_sum(std::span<double> values) const {
    for (std::size_t i = 0; i < values.size(); ++i) values[i] += peer[i];
  }
  int rank() const { return 0; }
  int size() const { return 2; }
};

// A generic statistic written against the concept: the global mean of all ranks' values.
template <pt::dist::communicator Comm>
double global_mean(const Comm& comm, std::span<const double> local) {
  double stats[2] = {0.0, static_cast<double>(local.size())};
  for (double v : local) stats[0] += v;
  comm.all_reduce_sum(stats);
  return stats[1] > 0 ? stats[0] / stats[1] : 0.0;
}

}  // namespace

TEST(Communicator, ConceptAcceptsTheLibraryModels) {
  static_assert(pt::dist::communicator<pt::dist::single_process_communicator>);
  static_assert(pt::dist::communicator<fake_pair_communicator>);
  static_assert(pt::dist::communicator<device_comm>);
  static_assert(pt::dist::assert_communicator<fake_pair_communicator>());
}

TEST(Communicator, ConceptRejectsIncompleteTypes) {
  static_assert(!pt::dist::communicator<missing_all_reduce>);
  static_assert(!pt::dist::communicator<missing_size>);
  static_assert(!pt::dist::communicator<non_const_rank>);
  static_assert(!pt::dist::communicator<int>);
}

TEST(Communicator, ExecTagDefaultsToHost) {
  static_assert(
      std::is_same_v<pt::dist::communicator_exec_t<fake_pair_communicator>, pt::exec::host>);
  static_assert(std::is_same_v<pt::dist::communicator_exec_t<pt::dist::single_process_communicator>,
                               pt::exec::host>);
  static_assert(std::is_same_v<pt::dist::communicator_exec_t<const device_comm&>, pt::exec::cuda>);
}

TEST(SingleProcessCommunicator, IsTheIdentityOnOneRank) {
  const pt::dist::single_process_communicator comm;
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.size(), 1);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> values{1.5, -2.0, 0.0, 1e300, nan};
  comm.all_reduce_sum(values);
  EXPECT_EQ(values[0], 1.5);
  EXPECT_EQ(values[1], -2.0);
  EXPECT_EQ(values[2], 0.0);
  EXPECT_EQ(values[3], 1e300);
  EXPECT_TRUE(std::isnan(values[4]));
  std::vector<double> empty;
  comm.all_reduce_sum(empty);
  EXPECT_TRUE(empty.empty());
}

TEST(Communicator, GenericCodeRunsOnAnyModel) {
  const std::vector<double> local{1.0, 2.0, 3.0};
  EXPECT_DOUBLE_EQ(global_mean(pt::dist::single_process_communicator{}, local), 2.0);
  // Peer rank holds sum 14 over 4 values: (6 + 14) / (3 + 4).
  const fake_pair_communicator pair{{14.0, 4.0}};
  EXPECT_DOUBLE_EQ(global_mean(pair, local), 20.0 / 7.0);
}
