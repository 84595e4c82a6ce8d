#pragma once
// posttrain::cuda: the CPU library plus the CUDA backend. Compile with nvcc and link
// posttrain::cuda (find_package(posttrain CONFIG REQUIRED COMPONENTS cuda)).
//
//   backend/cuda/error.cuh    cuda_check, cuda_device_available
//   backend/cuda/memory.cuh   device_buffer<T> (stream-ordered cudaMallocAsync / cudaFreeAsync)
#if !defined(__CUDACC__)
#error "<posttrain/cuda.cuh> is compiled by nvcc only; include <posttrain/posttrain.hpp> from C++"
#endif

#include "posttrain/backend/cuda/error.cuh"
#include "posttrain/backend/cuda/memory.cuh"
#include "posttrain/posttrain.hpp"
