// Consumer of the installed MPI component: compiled and linked by the packaging test (not run).
#include <posttrain/mpi.hpp>
#include <vector>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int status = 0;
  {
    const posttrain::dist::mpi_communicator comm{MPI_COMM_WORLD};
    std::vector<double> values{1.0, 2.0};
    comm.all_reduce_sum(values);
    status = values[0] == comm.size() ? 0 : 1;
  }
  MPI_Finalize();
  return status;
}
