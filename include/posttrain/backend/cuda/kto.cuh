#pragma once
// CUDA backend of loss::kto<Link, SeqReduce> (contract: loss/kto_types.hpp; front end:
// loss/kto.hpp, whose compute(exec::cuda, ...) checks sizes and options on the host — it cannot
// read the offsets, labels or reference scores, which stay in device memory — and resolves the
// divisor before calling here).
//
//   kernel 1, one block per example b: the masked sum S_b and weight W_b of its log-probs (double,
//     cub::BlockReduce), then Δ_b = SeqReduce::score(S, W) − ρ_b, Link::evaluate (the same
//     POSTTRAIN_HOST_DEVICE policy the host runs), λ·L_b and β·Δ_b, and the token gradients
//     m_t·λ·L'·SeqReduce::token_scale(W)/examples of the block's tokens (exactly +0 where m_t = 0).
//   kernel 2, one block: the result's sums over examples in a fixed order (deterministic).
// Scratch (kto_scratch): B doubles for each of example_losses / rewards the caller does not pass,
// and the 5 sums. CUB's two-phase form kto<Link, SeqReduce>(d_temp, temp_bytes, ...) takes it
// from the caller (d_temp == nullptr: sets temp_bytes, at least 1, and returns without a CUDA
// call; too small: posttrain::error before any launch); the form without d_temp (the one
// kto_backend<exec::cuda> runs) allocates it stream-ordered (cudaMallocAsync / cudaFreeAsync on the
// call's stream) and delegates. The result is a host value: the call synchronises the stream
// once, after the gradient is written. Sums are in double, in a different
// order from the host's 8-lane sums: results agree with exec::host to rounding, not bit for bit.
// loss::kto_vanilla_paired has no device path (kto_backend<exec::cuda>::run_vanilla_paired is not
// provided).
#if !defined(__CUDACC__)
#error "<posttrain/backend/cuda/kto.cuh> is compiled by nvcc only"
#endif

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cub/block/block_reduce.cuh>

#include "posttrain/backend/cuda/error.cuh"
#include "posttrain/backend/cuda/memory.cuh"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/loss/kto_links.hpp"
#include "posttrain/loss/kto_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cuda {

namespace kto_detail {

inline constexpr int threads = 256;

template <class Link, class SeqReduce, class T>
__global__ void __launch_bounds__(threads)
    example_kernel(const T* logprobs, const float* mask, const index_t* offsets,
                   const T* reference, const std::uint8_t* desirable, double z0,
                   loss::kto_options o, double inv, T* grad, double* example_loss,
                   double* reward) {
  using reduce = cub::BlockReduce<double, threads>;
  __shared__ typename reduce::TempStorage storage;
  __shared__ double scale;
  const index_t b = blockIdx.x;
  const index_t t0 = offsets[b], t1 = offsets[b + 1];
  double s = 0.0, w = 0.0;
  for (index_t t = t0 + threadIdx.x; t < t1; t += threads) {
    const double m = mask == nullptr ? 1.0 : static_cast<double>(mask[t]);
    if (m != 0.0) {  // a masked token is never read (it may be NaN)
      s += m * static_cast<double>(logprobs[t]);
      w += m;
    }
  }
  const double sum = reduce(storage).Sum(s);
  __syncthreads();
  const double weight = reduce(storage).Sum(w);
  if (threadIdx.x == 0) {
    const double delta = SeqReduce::score(sum, weight) - static_cast<double>(reference[b]);
    const bool want = desirable[b] != 0;
    const auto v = Link::evaluate(delta, z0, want, o.beta);
    const double lambda = want ? o.desirable_weight : o.undesirable_weight;
    example_loss[b] = lambda * v.loss;
    reward[b] = o.beta * delta;
    scale = lambda * v.slope * inv * SeqReduce::token_scale(weight);
  }
  __syncthreads();
  if (grad == nullptr) return;
  const double g = scale;
  for (index_t t = t0 + threadIdx.x; t < t1; t += threads) {
    const float m = mask == nullptr ? 1.0f : mask[t];
    grad[t] = m != 0.0f ? static_cast<T>(static_cast<double>(m) * g) : T(0);
  }
}

// sums[0..4] = Σ λ·L, Σ_D β·Δ, Σ_U β·Δ, n_D, n_U over b = 0..B−1 (one block; each thread a
// fixed stride, then cub's fixed tree: the same order every run). A template (on the count type)
// so that this header-defined kernel has one definition across translation units (ODR).
template <class Count>
__global__ void __launch_bounds__(threads)
    sum_kernel(const double* example_loss, const double* reward, const std::uint8_t* desirable,
               Count examples, double* sums) {
  using reduce = cub::BlockReduce<double, threads>;
  __shared__ typename reduce::TempStorage storage;
  double part[5] = {0.0, 0.0, 0.0, 0.0, 0.0};
  for (Count b = threadIdx.x; b < examples; b += threads) {
    const bool want = desirable[b] != 0;
    part[0] += example_loss[b];
    part[want ? 1 : 2] += reward[b];
    part[want ? 3 : 4] += 1.0;
  }
  for (int k = 0; k < 5; ++k) {
    const double total = reduce(storage).Sum(part[k]);
    if (threadIdx.x == 0) sums[k] = total;
    __syncthreads();
  }
}

}  // namespace kto_detail

// Scratch of kto for B examples: the per-example losses and rewards the caller does not keep
// (empty out.example_losses / out.rewards), then the 5 sums.
inline workspace_size kto_scratch(index_t examples, bool with_example_losses, bool with_rewards) {
  workspace_size size;
  if (examples <= 0) return size;
  const auto nb = static_cast<std::size_t>(examples);
  size.add<double>(with_example_losses ? 0 : nb);
  size.add<double>(with_rewards ? 0 : nb);
  size.add<double>(5);
  return size;
}

namespace kto_detail {

template <class Link, class SeqReduce, class T>
loss::kto_result kto_into(exec::cuda e, const loss::kto_inputs<T>& in, const loss::kto_options& o,
                          const loss::kto_outputs<T>& out, double divisor, workspace& ws) {
  const index_t b = ssize(in.batch.seq_offsets) - 1;
  loss::kto_result r;
  r.kl_reference = in.kl_reference;
  if (b <= 0) return r;
  const double inv = divisor > 0 ? 1.0 / divisor : 0.0;
  const bool own_losses = out.example_losses.empty(), own_rewards = out.rewards.empty();
  const std::size_t nb = static_cast<std::size_t>(b);
  constexpr const char* where = "loss::kto on exec::cuda";
  double* losses = own_losses ? ws.take<double>(nb, where).data() : out.example_losses.data();
  double* rewards = own_rewards ? ws.take<double>(nb, where).data() : out.rewards.data();
  double* sums = ws.take<double>(5, where).data();
  example_kernel<Link, SeqReduce, T><<<static_cast<unsigned>(b), threads, 0, e.stream>>>(
      in.logprobs.data(), in.batch.mask.empty() ? nullptr : in.batch.mask.data(),
      in.batch.seq_offsets.data(), in.reference.data(), in.desirable.data(), in.kl_reference, o,
      inv, out.grad.empty() ? nullptr : out.grad.data(), losses, rewards);
  cuda_check(cudaGetLastError(), "loss::kto on exec::cuda (example kernel launch)");
  sum_kernel<<<1, threads, 0, e.stream>>>(losses, rewards, in.desirable.data(), b, sums);
  cuda_check(cudaGetLastError(), "loss::kto on exec::cuda (sum kernel launch)");
  double host[5];
  cuda_check(cudaMemcpyAsync(host, sums, sizeof(host), cudaMemcpyDeviceToHost, e.stream),
             "loss::kto on exec::cuda (result copy)");
  cuda_check(cudaStreamSynchronize(e.stream), "loss::kto on exec::cuda (synchronise)");
  r.loss = host[0] * inv;
  r.desirable_count = host[3];
  r.undesirable_count = host[4];
  if (r.desirable_count > 0) r.desirable_reward = host[1] / r.desirable_count;
  if (r.undesirable_count > 0) r.undesirable_reward = host[2] / r.undesirable_count;
  return r;
}

}  // namespace kto_detail

// Two-phase: d_temp == nullptr sets temp_bytes (kto_scratch, at least 1) and returns a default
// result without a CUDA call; otherwise the loss over the caller's scratch (device memory).
template <class Link, class SeqReduce, class T>
loss::kto_result kto(void* d_temp, std::size_t& temp_bytes, exec::cuda e,
                     const loss::kto_inputs<T>& in, const loss::kto_options& o,
                     const loss::kto_outputs<T>& out, double divisor) {
  loss::kto_result r;
  two_phase(d_temp, temp_bytes,
            kto_scratch(ssize(in.batch.seq_offsets) - 1, !out.example_losses.empty(),
                        !out.rewards.empty()),
            "kto", [&](workspace& ws) {
              r = kto_detail::kto_into<Link, SeqReduce>(e, in, o, out, divisor, ws);
            });
  return r;
}

// The same with its scratch allocated stream-ordered for the call.
template <class Link, class SeqReduce, class T>
loss::kto_result kto(exec::cuda e, const loss::kto_inputs<T>& in, const loss::kto_options& o,
                     const loss::kto_outputs<T>& out, double divisor) {
  loss::kto_result r;
  with_stream_scratch(kto_scratch(ssize(in.batch.seq_offsets) - 1, !out.example_losses.empty(),
                                  !out.rewards.empty()),
                      e.stream, [&](workspace& ws) {
                        r = kto_detail::kto_into<Link, SeqReduce>(e, in, o, out, divisor, ws);
                      });
  return r;
}

}  // namespace backend::cuda

// The device backend of loss::kto (loss/kto_types.hpp); spans in device memory.
template <>
struct loss::kto_backend<exec::cuda> {
  static constexpr bool available = true;
  template <class Link, class SeqReduce, class T>
  static loss::kto_result run(exec::cuda e, const loss::kto_inputs<T>& in,
                              const loss::kto_options& options, const loss::kto_outputs<T>& out,
                              double examples_divisor) {
    return backend::cuda::kto<Link, SeqReduce>(e, in, options, out, examples_divisor);
  }
};

POSTTRAIN_NAMESPACE_END
