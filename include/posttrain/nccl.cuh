#pragma once
// posttrain::nccl: the CUDA library plus the NCCL communicator. Compile with nvcc and link
// posttrain::nccl (find_package(posttrain CONFIG REQUIRED COMPONENTS nccl)).
//
//   dist/nccl_communicator.cuh   dist::nccl_communicator (all_reduce_sum of device spans),
//   nccl_check
#include "posttrain/cuda.cuh"
#include "posttrain/dist/nccl_communicator.cuh"
