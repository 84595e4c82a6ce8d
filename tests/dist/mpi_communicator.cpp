// Tests for dist/mpi_communicator.hpp (posttrain::mpi). Built only with the mpi component; runs as
// one process (MPI singleton) and, where mpiexec works, as two ranks. The main below initialises
// MPI around GoogleTest.
#include "posttrain/dist/mpi_communicator.hpp"

#include <gtest/gtest.h>
#include <mpi.h>

#include <vector>

namespace pt = posttrain;

TEST(MpiCommunicator, RankAndSizeMatchMpi) {
  const pt::dist::mpi_communicator comm;
  int rank = -1, size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  EXPECT_EQ(comm.rank(), rank);
  EXPECT_EQ(comm.size(), size);
  EXPECT_GE(comm.size(), 1);
  EXPECT_EQ(comm.native(), MPI_COMM_WORLD);
}

TEST(MpiCommunicator, AllReduceSumsOverRanks) {
  const pt::dist::mpi_communicator comm;
  const int r = comm.rank(), p = comm.size();
  // Rank r contributes (r + 1) * (i + 1) - 0.25 to element i.
  std::vector<double> values(5);
  for (std::size_t i = 0; i < values.size(); ++i)
    values[i] = (r + 1) * static_cast<double>(i + 1) - 0.25;
  comm.all_reduce_sum(values);
  for (std::size_t i = 0; i < values.size(); ++i) {
    double want = 0.0;
    for (int q = 0; q < p; ++q) want += (q + 1) * static_cast<double>(i + 1) - 0.25;
    EXPECT_DOUBLE_EQ(values[i], want) << "element " << i << " on rank " << r;
  }
  std::vector<double> empty;
  comm.all_reduce_sum(empty);
}

TEST(MpiCommunicator, RejectsTheNullCommunicator) {
  EXPECT_THROW(pt::dist::mpi_communicator{MPI_COMM_NULL}, pt::error);
}

TEST(MpiCommunicator, MpiErrorsBecomePosttrainErrors) {
  EXPECT_NO_THROW(pt::dist::mpi_check(MPI_SUCCESS, "test"));
  try {
    pt::dist::mpi_check(MPI_ERR_COUNT, "test_where");
    FAIL() << "mpi_check did not throw";
  } catch (const pt::error& e) {
    EXPECT_NE(std::string(e.what()).find("posttrain::test_where: MPI error"), std::string::npos)
        << e.what();
  }
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
