#pragma once
// dist::mpi_communicator: the communicator concept (dist/communicator.hpp) over an MPI_Comm, for
// host memory. Needs the posttrain::mpi component (links MPI::MPI_CXX).
//
//   dist::mpi_communicator comm{MPI_COMM_WORLD};
//   comm.all_reduce_sum(values);   // MPI_Allreduce(MPI_IN_PLACE, ..., MPI_DOUBLE, MPI_SUM)
//
// The wrapper does not own the communicator (it never calls MPI_Comm_free) and does not
// initialise MPI: call MPI_Init before constructing it. Spans longer than INT_MAX elements are
// reduced in chunks. MPI errors are reported as posttrain::error with MPI's own error string (with
// MPI's default handler, MPI_ERRORS_ARE_FATAL, MPI aborts before that).
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "posttrain/config.hpp"
#include "posttrain/core/error.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/dist/communicator.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace dist {

// Throws posttrain::error "posttrain::<where>: MPI error: <MPI_Error_string>" unless status is
// MPI_SUCCESS.
inline void mpi_check(int status, std::string_view where) {
  if (status == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(status, text, &length) != MPI_SUCCESS) length = 0;
  throw error("posttrain::" + std::string(where) + ": MPI error " + std::to_string(status) +
              (length > 0 ? ": " + std::string(text, static_cast<std::size_t>(length)) : ""));
}

class mpi_communicator {
 public:
  using exec_type = exec::host;

  explicit mpi_communicator(MPI_Comm comm = MPI_COMM_WORLD) : comm_(comm) {
    int initialized = 0;
    mpi_check(MPI_Initialized(&initialized), "mpi_communicator");
    if (!initialized)
      throw error("posttrain::mpi_communicator: MPI is not initialised, call MPI_Init first");
    if (comm == MPI_COMM_NULL)
      throw error("posttrain::mpi_communicator: comm is MPI_COMM_NULL, expected a communicator");
    mpi_check(MPI_Comm_rank(comm_, &rank_), "mpi_communicator");
    mpi_check(MPI_Comm_size(comm_, &size_), "mpi_communicator");
  }

  void all_reduce_sum(std::span<double> values) const {
    std::size_t done = 0;
    while (done < values.size()) {
      const std::size_t chunk = std::min<std::size_t>(values.size() - done, INT_MAX);
      mpi_check(MPI_Allreduce(MPI_IN_PLACE, values.data() + done, static_cast<int>(chunk),
                              MPI_DOUBLE, MPI_SUM, comm_),
                "mpi_communicator::all_reduce_sum");
      done += chunk;
    }
  }

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  MPI_Comm native() const noexcept { return comm_; }

 private:
  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
};

static_assert(assert_communicator<mpi_communicator>());

}  // namespace dist

POSTTRAIN_NAMESPACE_END
