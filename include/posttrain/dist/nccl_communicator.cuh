#pragma once
// dist::nccl_communicator: the communicator concept (dist/communicator.hpp) over an ncclComm_t,
// for device memory (exec_type = exec::cuda). Needs the posttrain::nccl component.
//
//   dist::nccl_communicator comm{nccl_comm, stream};
//   comm.all_reduce_sum(device_values);   // ncclAllReduce in place, ncclSum, enqueued on stream
//
// all_reduce_sum takes spans of DEVICE memory (double or float) and only enqueues the collective:
// synchronise the stream before reading the result on the host. The wrapper does not own the
// ncclComm_t (it never calls ncclCommDestroy) or the stream. NCCL errors throw posttrain::error
// with ncclGetErrorString.
#include <cuda_runtime.h>
#include <nccl.h>

#include <span>
#include <string>
#include <string_view>

#include "posttrain/config.hpp"
#include "posttrain/core/error.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/dist/communicator.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace dist {

inline void nccl_check(ncclResult_t status, std::string_view where) {
  if (status == ncclSuccess) return;
  throw error("posttrain::" + std::string(where) + ": NCCL error: " + ncclGetErrorString(status));
}

class nccl_communicator {
 public:
  using exec_type = exec::cuda;

  nccl_communicator(ncclComm_t comm, cudaStream_t stream) : comm_(comm), stream_(stream) {
    if (comm == nullptr)
      throw error("posttrain::nccl_communicator: comm is null, expected an initialised ncclComm_t");
    nccl_check(ncclCommUserRank(comm_, &rank_), "nccl_communicator");
    nccl_check(ncclCommCount(comm_, &size_), "nccl_communicator");
  }

  // `values` is device memory; the sum is enqueued on stream().
  void all_reduce_sum(std::span<double> values) const {
    if (values.empty()) return;
    nccl_check(ncclAllReduce(values.data(), values.data(), values.size(), ncclDouble, ncclSum,
                             comm_, stream_),
               "nccl_communicator::all_reduce_sum");
  }
  void all_reduce_sum(std::span<float> values) const {
    if (values.empty()) return;
    nccl_check(ncclAllReduce(values.data(), values.data(), values.size(), ncclFloat, ncclSum, comm_,
                             stream_),
               "nccl_communicator::all_reduce_sum");
  }

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  ncclComm_t native() const noexcept { return comm_; }
  cudaStream_t stream() const noexcept { return stream_; }

 private:
  ncclComm_t comm_;
  cudaStream_t stream_;
  int rank_ = 0;
  int size_ = 1;
};

static_assert(assert_communicator<nccl_communicator>());

}  // namespace dist

POSTTRAIN_NAMESPACE_END
