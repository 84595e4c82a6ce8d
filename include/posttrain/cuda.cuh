#pragma once
// posttrain::cuda: the CPU library plus the CUDA backend. Compile with nvcc and link
// posttrain::cuda (find_package(posttrain CONFIG REQUIRED COMPONENTS cuda)). With this header the
// front ends of ops/ and advantage/ accept exec::cuda{stream} (device memory) as well as
// exec::host; docs/cuda.md lists, per op, the kernel and what is validated on the device.
//
//   backend/cuda/error.cuh            cuda_check, cuda_device_available
//   backend/cuda/memory.cuh           device_buffer<T> (stream-ordered cudaMallocAsync / cudaFreeAsync)
//   backend/cuda/reductions.cuh       segmented masked moments (ops/reductions.hpp on the device)
//   backend/cuda/whiten.cuh           whitening, every whiten_options convention (ops/whiten.hpp)
//   backend/cuda/scan.cuh             reverse segmented scan of affine maps (one CTA per sequence)
//   backend/cuda/gae.cuh              GAE as an affine-map scan (advantage/gae.hpp)
//   backend/cuda/reinforce.cuh        discounted returns, reverse cumulative sums
//   backend/cuda/group_advantage.cuh  GRPO / Dr.GRPO / RLOO, broadcast to tokens; the
//                                     exec::cuda dispatch of every advantage front end
//   backend/cuda/token_logprobs.cuh   log-prob / lse / entropy / Σp² forward, backward and fused
//                                     forward+backward over large vocabularies (ops/token_logprobs.hpp)
//   backend/cuda/fused_linear_logprobs.cuh  hidden × lm_headᵀ → log-probs chunked over tokens with
//                                     cuBLAS, and the backward (ops/fused_linear_logprobs.hpp)
//   backend/cuda/kto.cuh              loss::kto forward + backward (loss/kto.hpp on the device)
#if !defined(__CUDACC__)
#error "<posttrain/cuda.cuh> is compiled by nvcc only; include <posttrain/posttrain.hpp> from C++"
#endif

#include "posttrain/backend/cuda/error.cuh"
#include "posttrain/backend/cuda/memory.cuh"
#include "posttrain/backend/cuda/reductions.cuh"
#include "posttrain/backend/cuda/whiten.cuh"
#include "posttrain/backend/cuda/kl.cuh"
#include "posttrain/backend/cuda/scan.cuh"
#include "posttrain/backend/cuda/gae.cuh"
#include "posttrain/backend/cuda/reinforce.cuh"
#include "posttrain/backend/cuda/group_advantage.cuh"
#include "posttrain/backend/cuda/token_logprobs.cuh"
#include "posttrain/backend/cuda/fused_linear_logprobs.cuh"
#include "posttrain/backend/cuda/kto.cuh"
#include "posttrain/posttrain.hpp"
