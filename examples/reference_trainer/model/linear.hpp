#pragma once
// Linear layer in torch's convention:  y = x Wᵀ + b,   x [N, in], W [out, in], b [out] (optional).
// Backward:  dx = dy W,  dW += dyᵀ x,  db += Σ_rows dy.
// Parameter gradients accumulate (micro-batches add up); dx is overwritten or added to, as asked,
// because the residual stream adds the gradients of several branches into one buffer.
#include "parameters.hpp"

namespace reference_model {

template <class S, class X, class W, class B, class Y>
void linear_forward(const X& x, const W& w, const B& b, Y& y) {
  y.noalias() = x * w.transpose();
  if (b.size() != 0) y.rowwise() += b.transpose();
}

enum class grad_mode { overwrite, accumulate };

template <class S, class X, class W, class DY, class DX, class DW, class DB>
void linear_backward(const X& x, const W& w, const DY& dy, DX& dx, grad_mode dx_mode, DW& dw,
                     DB& db) {
  if (dx_mode == grad_mode::overwrite)
    dx.noalias() = dy * w;
  else
    dx.noalias() += dy * w;
  dw.noalias() += dy.transpose() * x;
  if (db.size() != 0) db += dy.colwise().sum().transpose();
}

}  // namespace reference_model
