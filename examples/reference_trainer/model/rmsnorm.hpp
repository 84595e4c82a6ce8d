#pragma once
// RMSNorm (LlamaRMSNorm / Qwen2RMSNorm):
//   r_i = 1 / sqrt(mean_j x_ij² + ε),   x̂_ij = x_ij r_i,   y_ij = w_j x̂_ij
// Backward (per row, H = row length, g = dy ⊙ w):
//   dw_j += Σ_i dy_ij x̂_ij
//   dx_i  = r_i (g_i − x̂_i · mean_j(g_ij x̂_ij))
// r is saved by the forward; dx is ADDED to (the norm sits on a residual branch whose input
// already holds the skip connection's gradient).
#include <cmath>

#include "parameters.hpp"

namespace reference_model {

template <class S, class X, class W>
void rmsnorm_forward(const X& x, const W& w, double eps, matrix<S>& y, vector<S>& rstd) {
  const index_t n = x.rows(), h = x.cols();
  y.resize(n, h);
  rstd.resize(n);
  for (index_t i = 0; i < n; ++i) {
    const S ms = x.row(i).squaredNorm() / S(h);
    const S r = S(1) / std::sqrt(ms + S(eps));
    rstd(i) = r;
    y.row(i) = (x.row(i) * r).cwiseProduct(w.transpose());
  }
}

template <class S, class X, class W, class DY, class DX, class DW>
void rmsnorm_backward(const X& x, const W& w, const vector<S>& rstd, const DY& dy, DX& dx,
                      DW& dw) {
  const index_t n = x.rows(), h = x.cols();
  for (index_t i = 0; i < n; ++i) {
    const S r = rstd(i);
    auto xhat = (x.row(i) * r).eval();
    dw += dy.row(i).cwiseProduct(xhat).transpose();
    auto g = dy.row(i).cwiseProduct(w.transpose()).eval();
    const S m = g.dot(xhat) / S(h);
    dx.row(i) += r * (g - m * xhat);
  }
}

}  // namespace reference_model
