#pragma once
// Grouped-query causal self-attention over a packed ragged batch (LlamaAttention / Qwen2Attention).
//   q = x W_qᵀ + b_q [N, nh·D],  k = x W_kᵀ + b_k,  v = x W_vᵀ + b_v [N, nkv·D]; RoPE on q and k
//   for sequence s (rows o_s .. o_{s+1}−1) and head h (kv head g = h / (nh / nkv)):
//     P = softmax(q_h k_gᵀ / √D  with j > i masked)   [T, T]       o_h = P v_g
//   y = o W_oᵀ + b_o
// A token attends only to earlier tokens of its own sequence: the blocks never span two sequences,
// so packing costs no padding work and cannot leak across samples.
// Backward per (s, h):
//   dP = do_h v_gᵀ,  dv_g += Pᵀ do_h,  dZ = P ⊙ (dP − rowsum(P ⊙ dP)),
//   dq_h = dZ k_g / √D,  dk_g += dZᵀ q_h / √D;  then the inverse rotation on dq, dk and the
//   projections' backward. P is kept from the forward (Σ_s T_s² · nh per layer).
#include <cmath>
#include <limits>
#include <span>
#include <vector>

#include "linear.hpp"
#include "rope.hpp"

namespace reference_model {

// The per-(sequence, head) products are small (T × T × D): one OpenMP region over the blocks, each
// block's GEMMs single-threaded, rather than a parallel region inside every small GEMM (thousands
// per step, each a synchronisation). Restores Eigen's thread count on exit.
class serial_eigen_scope {
 public:
  serial_eigen_scope() : threads_(Eigen::nbThreads()) { Eigen::setNbThreads(1); }
  ~serial_eigen_scope() { Eigen::setNbThreads(threads_); }
  int threads() const { return threads_; }
  serial_eigen_scope(const serial_eigen_scope&) = delete;
  serial_eigen_scope& operator=(const serial_eigen_scope&) = delete;

 private:
  int threads_;
};

template <class S>
struct attention_cache {
  matrix<S> q, k, v;           // after RoPE: [N, nh·D], [N, nkv·D], [N, nkv·D]
  matrix<S> o;                 // heads concatenated, before o_proj: [N, nh·D]
  std::vector<matrix<S>> p;    // softmax per (sequence, head), index s·nh + h
};

struct attention_shape {
  index_t heads, kv_heads, head_dim;
};

// Causal softmax attention of one (sequence, head) block: z = q kᵀ·scale, masked, row softmax.
template <class S, class Q, class K>
void causal_softmax(const Q& q, const K& k, S scale, matrix<S>& p) {
  const index_t t = q.rows();
  p.noalias() = (q * k.transpose()) * scale;
  for (index_t i = 0; i < t; ++i) {
    const S m = p.row(i).head(i + 1).maxCoeff();
    S sum = 0;
    for (index_t j = 0; j <= i; ++j) sum += (p(i, j) = std::exp(p(i, j) - m));
    const S inv = S(1) / sum;
    p.row(i).head(i + 1) *= inv;
    p.row(i).tail(t - i - 1).setZero();
  }
}

template <class S, class X, class Y>
void attention_forward(const layer_view<S>& w, const attention_shape& a, const rope_table<S>& rope,
                       const X& x, std::span<const index_t> seq_offsets,
                       std::span<const index_t> positions, attention_cache<S>& c, Y& y) {
  const index_t n = x.rows(), d = a.head_dim, group = a.heads / a.kv_heads;
  c.q.resize(n, a.heads * d);
  c.k.resize(n, a.kv_heads * d);
  c.v.resize(n, a.kv_heads * d);
  linear_forward<S>(x, w.wq, w.bq, c.q);
  linear_forward<S>(x, w.wk, w.bk, c.k);
  linear_forward<S>(x, w.wv, w.bv, c.v);
  rope.apply(c.q, positions, a.heads, +1);
  rope.apply(c.k, positions, a.kv_heads, +1);
  const S scale = S(1) / std::sqrt(S(d));
  const index_t nseq = static_cast<index_t>(seq_offsets.size()) - 1;
  c.o.resize(n, a.heads * d);
  c.p.resize(static_cast<std::size_t>(nseq * a.heads));
  {
    serial_eigen_scope serial;
    const index_t blocks = nseq * a.heads;
    // Blocks write disjoint parts of c.o and c.p.
#pragma omp parallel for schedule(dynamic) num_threads(serial.threads()) if (serial.threads() > 1)
    for (index_t sh = 0; sh < blocks; ++sh) {
      const index_t s = sh / a.heads, h = sh % a.heads, g = h / group;
      const index_t o0 = seq_offsets[s], t = seq_offsets[s + 1] - o0;
      matrix<S>& p = c.p[static_cast<std::size_t>(sh)];
      p.resize(t, t);
      if (t == 0) continue;
      causal_softmax<S>(c.q.block(o0, h * d, t, d), c.k.block(o0, g * d, t, d), scale, p);
      c.o.block(o0, h * d, t, d).noalias() = p * c.v.block(o0, g * d, t, d);
    }
  }
  y.resize(n, w.wo.rows());
  linear_forward<S>(c.o, w.wo, w.bo, y);
}

// dx is ADDED to; parameter gradients accumulate into dw.
template <class S, class X, class DY, class DX>
void attention_backward(const layer_view<S>& w, layer_view<S>& dw, const attention_shape& a,
                        const rope_table<S>& rope, const X& x, std::span<const index_t> seq_offsets,
                        std::span<const index_t> positions, const attention_cache<S>& c,
                        const DY& dy, DX& dx) {
  const index_t n = x.rows(), d = a.head_dim, group = a.heads / a.kv_heads;
  matrix<S> d_o(n, a.heads * d);
  linear_backward<S>(c.o, w.wo, dy, d_o, grad_mode::overwrite, dw.wo, dw.bo);
  matrix<S> dq = matrix<S>::Zero(n, a.heads * d), dk = matrix<S>::Zero(n, a.kv_heads * d),
            dv = matrix<S>::Zero(n, a.kv_heads * d);
  const S scale = S(1) / std::sqrt(S(d));
  const index_t nseq = static_cast<index_t>(seq_offsets.size()) - 1;
  {
    serial_eigen_scope serial;
    // One task per (sequence, KV head): the query heads of a group add into the same dk, dv
    // blocks, so they stay in one task (no two tasks write the same rows and columns).
    const index_t blocks = nseq * a.kv_heads;
#pragma omp parallel for schedule(dynamic) num_threads(serial.threads()) if (serial.threads() > 1)
    for (index_t sg = 0; sg < blocks; ++sg) {
      const index_t s = sg / a.kv_heads, g = sg % a.kv_heads;
      const index_t o0 = seq_offsets[s], t = seq_offsets[s + 1] - o0;
      if (t == 0) continue;
      matrix<S> dp;
      for (index_t h = g * group; h < (g + 1) * group; ++h) {
        const matrix<S>& p = c.p[static_cast<std::size_t>(s * a.heads + h)];
        const auto doh = d_o.block(o0, h * d, t, d);
        dp.noalias() = doh * c.v.block(o0, g * d, t, d).transpose();
        dv.block(o0, g * d, t, d).noalias() += p.transpose() * doh;
        // dZ = P ⊙ (dP − rowsum(P ⊙ dP)), scaled once here for both dq and dk.
        const vector<S> rs = p.cwiseProduct(dp).rowwise().sum();
        dp = (p.cwiseProduct(dp - rs.replicate(1, t))) * scale;
        dq.block(o0, h * d, t, d).noalias() += dp * c.k.block(o0, g * d, t, d);
        dk.block(o0, g * d, t, d).noalias() += dp.transpose() * c.q.block(o0, h * d, t, d);
      }
    }
  }
  rope.apply(dq, positions, a.heads, -1);
  rope.apply(dk, positions, a.kv_heads, -1);
  linear_backward<S>(x, w.wq, dq, dx, grad_mode::accumulate, dw.wq, dw.bq);
  linear_backward<S>(x, w.wk, dk, dx, grad_mode::accumulate, dw.wk, dw.bk);
  linear_backward<S>(x, w.wv, dv, dx, grad_mode::accumulate, dw.wv, dw.bv);
}

}  // namespace reference_model
