#pragma once
// optim::clip_grad_norm — global-norm gradient clipping over flat gradient views, as
// torch.nn.utils.clip_grad_norm_ (norm_type 2, foreach off):
//
//   ‖g‖ = sqrt(Σ_views Σ_i g_i²)          (accumulated in double)
//   c   = max_norm / (‖g‖ + 1e-6);  if c < 1: g ← g·c
//
// Returns ‖g‖ before clipping. max_norm = +inf leaves g unchanged (the norm is still returned).
// Several views (e.g. policy and critic, or parameter groups) share one global norm. Call it
// after the gradients are all-reduced, so every rank clips by the same factor. Validated before
// any write: max_norm > 0 and not NaN; a non-finite norm is an error (torch's
// error_if_nonfinite = True) and leaves the gradients unchanged.
#include <cmath>
#include <initializer_list>
#include <limits>
#include <span>

#include "posttrain/config.hpp"
#include "posttrain/core/validate.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace optim {

template <class S>
double grad_norm(std::initializer_list<std::span<S>> views) {
  double sq = 0;
  for (const auto& v : views)
    for (const S& g : v) sq += static_cast<double>(g) * static_cast<double>(g);
  return std::sqrt(sq);
}

template <class S>
double clip_grad_norm(std::initializer_list<std::span<S>> views, double max_norm) {
  constexpr const char* where = "optim::clip_grad_norm";
  expect(!std::isnan(max_norm) && max_norm > 0, where, "max_norm = ", max_norm,
         ", expected > 0 (+inf = no clipping)");
  const double norm = grad_norm<S>(views);
  expect(std::isfinite(norm), where, "the gradient norm is ", norm,
         ", expected finite (a NaN or inf gradient)");
  const double c = max_norm / (norm + 1e-6);
  if (c < 1.0)
    for (const auto& v : views)
      for (S& g : v) g = static_cast<S>(static_cast<double>(g) * c);
  return norm;
}

template <class S>
double clip_grad_norm(std::span<S> grads, double max_norm) {
  return clip_grad_norm<S>({grads}, max_norm);
}

}  // namespace optim

POSTTRAIN_NAMESPACE_END
