#pragma once
// posttrain::mpi: the CPU library plus the MPI communicator. Link posttrain::mpi
// (find_package(posttrain CONFIG REQUIRED COMPONENTS mpi)).
//
//   dist/mpi_communicator.hpp   dist::mpi_communicator (all_reduce_sum over an MPI_Comm), mpi_check
#include "posttrain/dist/mpi_communicator.hpp"
#include "posttrain/posttrain.hpp"
