#pragma once
// SwiGLU MLP (LlamaMLP / Qwen2MLP), no biases:
//   g = x W_gateᵀ,  u = x W_upᵀ,  a = silu(g) ⊙ u,  y = a W_downᵀ,   silu(g) = g σ(g)
//   (g and u come out of one GEMM against the adjacent [W_gate; W_up], see mlp_forward)
// Backward:
//   da = dy W_down,  dW_down += dyᵀ a
//   dg = da ⊙ u ⊙ silu'(g),  silu'(g) = σ(g) (1 + g (1 − σ(g)));   du = da ⊙ silu(g)
//   dx += dg W_gate + du W_up,  dW_gate += dgᵀ x,  dW_up += duᵀ x
#include <cmath>

#include "linear.hpp"

namespace reference_model {

template <class S>
struct mlp_cache {
  matrix<S> gu;  // [N, 2I]: g = x W_gateᵀ in columns [0, I), u = x W_upᵀ in [I, 2I)
  matrix<S> a;   // [N, I]
};

template <class S>
S sigmoid(S z) {
  return S(1) / (S(1) + std::exp(-z));
}

namespace detail {
// gate_proj and up_proj are adjacent in the flat buffer (parameters.hpp: gate then up, both
// [I, H] row-major), so together they are one [2I, H] matrix: one GEMM instead of two (the input
// is packed once). Views bound elsewhere fall back to two GEMMs.
template <class S, class M>
bool gate_up_adjacent(const M& gate, const M& up) {
  return up.data() == gate.data() + gate.size() && up.rows() == gate.rows() &&
         up.cols() == gate.cols();
}
}  // namespace detail

// g, u in one [N, 2I] buffer, then silu(g) ⊙ u as one vectorised array expression (Eigen's
// packet exp): a = g ⊙ u / (1 + e^(−g)).
template <class S, class X, class Y>
void mlp_forward(const layer_view<S>& w, const X& x, mlp_cache<S>& c, Y& y) {
  const vector_map<S> none{nullptr, 0};
  const index_t n = x.rows(), i_dim = w.w_gate.rows();
  c.gu.resize(n, 2 * i_dim);
  if (detail::gate_up_adjacent<S>(w.w_gate, w.w_up)) {
    const Eigen::Map<const matrix<S>> wgu(w.w_gate.data(), 2 * i_dim, w.w_gate.cols());
    c.gu.noalias() = x * wgu.transpose();
  } else {
    c.gu.leftCols(i_dim).noalias() = x * w.w_gate.transpose();
    c.gu.rightCols(i_dim).noalias() = x * w.w_up.transpose();
  }
  const auto g = c.gu.leftCols(i_dim).array();
  const auto u = c.gu.rightCols(i_dim).array();
  c.a.resize(n, i_dim);
  c.a.array() = g * u / (S(1) + (-g).exp());
  y.resize(n, w.w_down.rows());
  linear_forward<S>(c.a, w.w_down, none, y);
}

// Scratch of mlp_backward, kept between calls (every element is overwritten before it is read).
template <class S>
struct mlp_scratch {
  matrix<S> da;   // [N, I]
  matrix<S> dgu;  // [N, 2I]: dg | du
};

// dx is ADDED to.
template <class S, class X, class DY, class DX>
void mlp_backward(const layer_view<S>& w, layer_view<S>& dw, const X& x, const mlp_cache<S>& c,
                  const DY& dy, DX& dx, mlp_scratch<S>& scratch) {
  vector_map<S> none{nullptr, 0};
  const index_t n = x.rows(), i_dim = w.w_gate.rows();
  matrix<S>& da = scratch.da;
  matrix<S>& dgu = scratch.dgu;
  da.resize(n, i_dim);
  linear_backward<S>(c.a, w.w_down, dy, da, grad_mode::overwrite, dw.w_down, none);
  dgu.resize(n, 2 * i_dim);
  const auto g = c.gu.leftCols(i_dim).array();
  const auto u = c.gu.rightCols(i_dim).array();
  auto dg = dgu.leftCols(i_dim).array();
  auto du = dgu.rightCols(i_dim).array();
  // σ(g) into dg first, then du = da ⊙ g ⊙ σ, dg = da ⊙ u ⊙ σ ⊙ (1 + g (1 − σ)); vectorised.
  dg = S(1) / (S(1) + (-g).exp());
  du = da.array() * g * dg;
  dg = da.array() * u * dg * (S(1) + g * (S(1) - dg));
  if (detail::gate_up_adjacent<S>(w.w_gate, w.w_up) &&
      detail::gate_up_adjacent<S>(dw.w_gate, dw.w_up)) {
    const Eigen::Map<const matrix<S>> wgu(w.w_gate.data(), 2 * i_dim, w.w_gate.cols());
    Eigen::Map<matrix<S>> dwgu(dw.w_gate.data(), 2 * i_dim, dw.w_gate.cols());
    linear_backward<S>(x, wgu, dgu, dx, grad_mode::accumulate, dwgu, none);
  } else {
    linear_backward<S>(x, w.w_gate, dgu.leftCols(i_dim), dx, grad_mode::accumulate, dw.w_gate,
                       none);
    linear_backward<S>(x, w.w_up, dgu.rightCols(i_dim), dx, grad_mode::accumulate, dw.w_up,
                       none);
  }
}

// Without caller-held scratch (tests): allocates it for this call.
template <class S, class X, class DY, class DX>
void mlp_backward(const layer_view<S>& w, layer_view<S>& dw, const X& x, const mlp_cache<S>& c,
                  const DY& dy, DX& dx) {
  mlp_scratch<S> scratch;
  mlp_backward<S>(w, dw, x, c, dy, dx, scratch);
}

}  // namespace reference_model
