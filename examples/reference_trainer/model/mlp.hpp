#pragma once
// SwiGLU MLP (LlamaMLP / Qwen2MLP), no biases:
//   g = x W_gateᵀ,  u = x W_upᵀ,  a = silu(g) ⊙ u,  y = a W_downᵀ,   silu(g) = g σ(g)
// Backward:
//   da = dy W_down,  dW_down += dyᵀ a
//   dg = da ⊙ u ⊙ silu'(g),  silu'(g) = σ(g) (1 + g (1 − σ(g)));   du = da ⊙ silu(g)
//   dx += dg W_gate + du W_up,  dW_gate += dgᵀ x,  dW_up += duᵀ x
#include <cmath>

#include "linear.hpp"

namespace reference_model {

template <class S>
struct mlp_cache {
  matrix<S> g, u, a;  // [N, I]
};

template <class S>
S sigmoid(S z) {
  return S(1) / (S(1) + std::exp(-z));
}

template <class S, class X, class Y>
void mlp_forward(const layer_view<S>& w, const X& x, mlp_cache<S>& c, Y& y) {
  const vector_map<S> none{nullptr, 0};
  c.g.resize(x.rows(), w.w_gate.rows());
  c.u.resize(x.rows(), w.w_up.rows());
  linear_forward<S>(x, w.w_gate, none, c.g);
  linear_forward<S>(x, w.w_up, none, c.u);
  c.a = c.g.unaryExpr([](S z) { return z * sigmoid(z); }).cwiseProduct(c.u);
  y.resize(x.rows(), w.w_down.rows());
  linear_forward<S>(c.a, w.w_down, none, y);
}

// dx is ADDED to.
template <class S, class X, class DY, class DX>
void mlp_backward(const layer_view<S>& w, layer_view<S>& dw, const X& x, const mlp_cache<S>& c,
                  const DY& dy, DX& dx) {
  vector_map<S> none{nullptr, 0};
  matrix<S> da(dy.rows(), w.w_down.cols());
  linear_backward<S>(c.a, w.w_down, dy, da, grad_mode::overwrite, dw.w_down, none);
  matrix<S> dg(c.g.rows(), c.g.cols()), du(c.g.rows(), c.g.cols());
  for (index_t i = 0; i < c.g.rows(); ++i)
    for (index_t j = 0; j < c.g.cols(); ++j) {
      const S z = c.g(i, j), sg = sigmoid(z), d = da(i, j);
      du(i, j) = d * z * sg;
      dg(i, j) = d * c.u(i, j) * sg * (S(1) + z * (S(1) - sg));
    }
  linear_backward<S>(x, w.w_gate, dg, dx, grad_mode::accumulate, dw.w_gate, none);
  linear_backward<S>(x, w.w_up, du, dx, grad_mode::accumulate, dw.w_up, none);
}

}  // namespace reference_model
