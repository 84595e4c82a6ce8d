#pragma once
// Data parallelism for the trainer: `mpirun -np R posttrain_reference_trainer --recipe ...`.
//
// Built with MPI (CMake found it: POSTTRAIN_RT_MPI=1) and started by an MPI launcher (mpirun /
// mpiexec set OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK), the trainer initialises MPI and every
// pipeline step gets a dist::mpi_communicator; otherwise the single-process communicator (so a
// build without MPI, and a plain run of an MPI build, never touch MPI).
//
// Every rank draws the same global batch (batch_rows is a function of (seed, stage, step)) and
// takes its contiguous share (shard()): batch / prompts must divide by the rank count. Stages whose
// rows come out of sampling in varying numbers (online pairs, a round's rows and pairs) draw them
// on every rank and take a share of any size (stages/common.hpp take_share). The
// pipeline steps all-reduce the gradients and the global normalisers, so the update equals the
// single-process one up to the order of the floating-point sums; sample k of the global batch
// draws with the same seed on any layout (first_sample_index). Rank 0 writes the data files,
// metrics, checkpoints and the summary; the other ranks are quiet. Every rank evaluates the whole
// held-out set (the same weights give the same result).
#include <cstdlib>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include <posttrain/core/exec.hpp>
#include <posttrain/dist/communicator.hpp>

#if defined(POSTTRAIN_RT_MPI) && POSTTRAIN_RT_MPI
#include <posttrain/dist/mpi_communicator.hpp>
#endif

namespace reference_trainer {

// A communicator (dist::communicator) that is the MPI one under a launcher, else a single process.
class trainer_communicator {
 public:
  using exec_type = posttrain::exec::host;

  void all_reduce_sum(std::span<double> values) const {
    if (size_ > 1) reduce_(values);
  }
  int rank() const { return rank_; }
  int size() const { return size_; }

  // The contiguous share of `rows` of this rank (rows.size() divisible by size()).
  template <class T>
  std::vector<T> shard(const std::vector<T>& rows) const {
    const std::size_t n = rows.size() / static_cast<std::size_t>(size_);
    const auto b = rows.begin() + static_cast<std::ptrdiff_t>(n * static_cast<std::size_t>(rank_));
    return std::vector<T>(b, b + static_cast<std::ptrdiff_t>(n));
  }
  // The global index of this rank's first row of a batch of `rows`.
  std::size_t first_row(std::size_t rows) const {
    return rows / static_cast<std::size_t>(size_) * static_cast<std::size_t>(rank_);
  }
  // True on every rank when `flag` is true on any rank (Ctrl-C must stop all ranks at one step).
  bool any(bool flag) const {
    if (size_ == 1) return flag;
    double v = flag ? 1.0 : 0.0;
    reduce_(std::span<double>(&v, 1));
    return v > 0;
  }
  void barrier() const { (void)any(false); }

  static trainer_communicator single() { return {}; }
#if defined(POSTTRAIN_RT_MPI) && POSTTRAIN_RT_MPI
  static trainer_communicator mpi() {
    static posttrain::dist::mpi_communicator comm{MPI_COMM_WORLD};
    trainer_communicator c;
    c.rank_ = comm.rank();
    c.size_ = comm.size();
    c.reduce_ = [](std::span<double> v) { comm.all_reduce_sum(v); };
    return c;
  }
#endif

 private:
  int rank_ = 0, size_ = 1;
  std::function<void(std::span<double>)> reduce_;
};

static_assert(posttrain::dist::assert_communicator<trainer_communicator>());

// Started by an MPI launcher?
inline bool launched_by_mpi() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMI_SIZE") != nullptr ||
         std::getenv("PMIX_RANK") != nullptr;
}

inline constexpr bool built_with_mpi() {
#if defined(POSTTRAIN_RT_MPI) && POSTTRAIN_RT_MPI
  return true;
#else
  return false;
#endif
}

// MPI_Init / MPI_Finalize around main() when launched by MPI and built with it.
class mpi_session {
 public:
  mpi_session(int* argc, char*** argv) {
#if defined(POSTTRAIN_RT_MPI) && POSTTRAIN_RT_MPI
    if (launched_by_mpi()) {
      MPI_Init(argc, argv);
      active_ = true;
    }
#else
    (void)argc;
    (void)argv;
#endif
  }
  ~mpi_session() {
#if defined(POSTTRAIN_RT_MPI) && POSTTRAIN_RT_MPI
    if (active_) MPI_Finalize();
#endif
  }
  mpi_session(const mpi_session&) = delete;
  mpi_session& operator=(const mpi_session&) = delete;
  bool active() const { return active_; }
  trainer_communicator communicator() const {
#if defined(POSTTRAIN_RT_MPI) && POSTTRAIN_RT_MPI
    if (active_) return trainer_communicator::mpi();
#endif
    return trainer_communicator::single();
  }

 private:
  bool active_ = false;
};

}  // namespace reference_trainer
