#pragma once
// What every pipeline step shares: slicing a packed batch into micro-batches, summing counts and
// gradients over ranks, and the clip + optimizer tail of a step.
//
// Gradient reduction. Each step passes the GLOBAL normalisers (token / sequence / pair counts
// summed over micro-batches and ranks) to every loss call, so each rank's accumulated gradient is
// its share of the full-batch gradient and the full gradient is their plain sum: one
// all_reduce_sum over one packed double buffer per step (not a mean).
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <span>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/dist/communicator.hpp"
#include "posttrain/optim/clip.hpp"
#include "posttrain/optim/optimizer.hpp"
#include "posttrain/pipeline/types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pipeline {

// Sequences [b0, b1) of a packed batch as a batch of their own (offsets rebased to 0).
struct sequence_slice {
  std::vector<index_t> offsets;
  index_t token_begin = 0, token_end = 0;
  token_sequences view_of(const token_sequences& s, index_t b0, index_t b1) const {
    return {s.tokens.subspan(token_begin, token_end - token_begin), offsets,
            s.ids.empty() ? std::span<const std::uint64_t>{} : s.ids.subspan(b0, b1 - b0)};
  }
};

inline sequence_slice make_slice(const token_sequences& s, index_t b0, index_t b1) {
  sequence_slice r;
  r.token_begin = s.seq_offsets[b0];
  r.token_end = s.seq_offsets[b1];
  r.offsets.reserve(static_cast<std::size_t>(b1 - b0 + 1));
  for (index_t b = b0; b <= b1; ++b) r.offsets.push_back(s.seq_offsets[b] - r.token_begin);
  return r;
}

// [b0, b1) ranges of at most `per` sequences (per = 0: one range).
inline std::vector<std::array<index_t, 2>> micro_batches(index_t count, index_t per) {
  std::vector<std::array<index_t, 2>> r;
  if (per <= 0) per = count > 0 ? count : 1;
  for (index_t b = 0; b < count; b += per) r.push_back({b, std::min(count, b + per)});
  return r;
}

template <dist::communicator C>
void all_reduce(C& comm, std::span<double> values) {
  if (comm.size() > 1) comm.all_reduce_sum(values);
}

// The largest of the ranks' counts (an all-gather built from all_reduce_sum: each rank writes its
// slot of a zero buffer, so the sum is exact). Lets ranks with fewer sequences agree on the number
// of collective iterations of a step.
template <dist::communicator C>
index_t all_reduce_max(C& comm, index_t local) {
  if (comm.size() <= 1) return local;
  std::vector<double> slots(static_cast<std::size_t>(comm.size()), 0.0);
  slots[static_cast<std::size_t>(comm.rank())] = static_cast<double>(local);
  comm.all_reduce_sum(std::span<double>(slots));
  double mx = 0;
  for (double x : slots) mx = std::max(mx, x);
  return static_cast<index_t>(mx);
}

// Sums a flat gradient view over ranks through one packed double buffer.
template <dist::communicator C, class S>
void all_reduce_gradients(C& comm, std::span<S> grads) {
  if (comm.size() <= 1 || grads.empty()) return;
  std::vector<double> buf(grads.begin(), grads.end());
  comm.all_reduce_sum(std::span<double>(buf));
  for (std::size_t i = 0; i < grads.size(); ++i) grads[i] = static_cast<S>(buf[i]);
}

// Options every training step shares.
struct step_options {
  index_t micro_batch = 0;  // sequences (pairs) per forward/backward; 0 = the whole batch
  double max_grad_norm = std::numeric_limits<double>::infinity();  // global-norm clip; inf = off
  double temperature = 1.0;  // divides the policy's logits (the rollout temperature)
};

inline void validate_step_options(const step_options& o, std::string_view where) {
  expect(o.micro_batch >= 0, where, "options.micro_batch = ", o.micro_batch,
         ", expected >= 0 (0 = the whole batch)");
  expect(!std::isnan(o.max_grad_norm) && o.max_grad_norm > 0, where, "options.max_grad_norm = ",
         o.max_grad_norm, ", expected > 0 (+inf = no clipping)");
  expect(std::isfinite(o.temperature) && o.temperature > 0, where, "options.temperature = ",
         o.temperature, ", expected finite and > 0");
}

// The tail of a step: all-reduce, clip, optimizer. Returns the gradient norm before clipping.
template <class P, class O, dist::communicator C>
double apply_gradients(P& policy, O& opt, C& comm, double max_grad_norm) {
  using S = typename P::scalar_type;
  static_assert(optim::check_optimizer<O, S>());
  auto grads = policy.gradients();
  all_reduce_gradients(comm, grads);
  const double norm = optim::clip_grad_norm<S>(grads, max_grad_norm);
  opt.step(policy.parameters(), std::span<const S>(grads));
  return norm;
}

// The frame of every offline step (sft, preference, KTO, reward model): zero the gradients, run
// micro(b0, b1, sums) over the micro-batches of `count` items (it adds its loss statistics into
// sums and its gradients into the model), sum `sums` over ranks, then all-reduce the gradients,
// clip and step. Everything that can fail validation must be checked before calling it.
template <std::size_t K>
struct step_totals {
  std::array<double, K> sums{};
  double grad_norm = 0;
  index_t micro_batches = 0;
};

template <std::size_t K, class M, class O, dist::communicator C, class F>
step_totals<K> run_micro_batches(M& model, O& optimizer, C& comm, const step_options& options,
                                 index_t count, F&& micro) {
  model.zero_grad();
  step_totals<K> t;
  for (const auto& range : micro_batches(count, options.micro_batch)) {
    micro(range[0], range[1], t.sums);
    ++t.micro_batches;
  }
  all_reduce(comm, std::span<double>(t.sums));
  t.grad_norm = apply_gradients(model, optimizer, comm, options.max_grad_norm);
  return t;
}

}  // namespace pipeline

POSTTRAIN_NAMESPACE_END
