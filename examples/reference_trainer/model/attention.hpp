#pragma once
// Grouped-query causal self-attention over a packed ragged batch (LlamaAttention / Qwen2Attention).
//   q = x W_qᵀ + b_q [N, nh·D],  k = x W_kᵀ + b_k,  v = x W_vᵀ + b_v [N, nkv·D]; RoPE on q and k
//   for sequence s (rows o_s .. o_{s+1}−1) and head h (kv head g = h / (nh / nkv)):
//     P = softmax(q_h k_gᵀ / √D  with j > i masked)   [T, T]       o_h = P v_g
//   y = o W_oᵀ + b_o
// A token attends only to earlier tokens of its own sequence: the blocks never span two sequences,
// so packing costs no padding work and cannot leak across samples.
// The blocks are segments (prefix_sharing.hpp): a segment may also read a context, the shared
// prefix of its group, whose keys every query sees: P = softmax([q k_ctxᵀ | q k_ownᵀ] / √D, own
// keys causal) [T, C + T], o = P [v_ctx; v_own]. A plain sequence is a segment without context.
// Backward per (s, h):
//   dP = do_h v_gᵀ,  dv_g += Pᵀ do_h,  dZ = P ⊙ (dP − rowsum(P ⊙ dP)),
//   dq_h = dZ k_g / √D,  dk_g += dZᵀ q_h / √D  (k, v including the context: its dk, dv add up over
//   every segment of the group); then the inverse rotation on dq, dk and the projections'
//   backward. P is kept from the forward (Σ_s T_s (C_s + T_s) · nh per layer).
#include <cmath>
#include <limits>
#include <span>
#include <vector>

#include "linear.hpp"
#include "prefix_sharing.hpp"
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
  // Softmax per (segment, head) block sh = s·nh + h: a row-major [T_s, C_s + T_s] matrix (C_s the
  // segment's shared-prefix context, 0 for an ordinary sequence) at p_data[p_offset[sh]]. One flat
  // buffer whose capacity is kept between batches (a batch of other sequence lengths does not free
  // and reallocate — and page-fault — thousands of blocks).
  // Eigen-aligned storage: the rows' alignment (and so Eigen's packet / scalar split, hence the
  // rounding) depends only on the offsets, never on where malloc put the buffer.
  std::vector<S, Eigen::aligned_allocator<S>> p_data;
  std::vector<std::size_t> p_offset;  // [blocks + 1]
  Eigen::Map<matrix<S>> p(index_t sh, index_t t, index_t cols) {
    return {p_data.data() + p_offset[static_cast<std::size_t>(sh)], t, cols};
  }
  Eigen::Map<const matrix<S>> p(index_t sh, index_t t, index_t cols) const {
    return {p_data.data() + p_offset[static_cast<std::size_t>(sh)], t, cols};
  }
  Eigen::Map<const matrix<S>> p(index_t sh, index_t t) const { return p(sh, t, t); }
};

struct attention_shape {
  index_t heads, kv_heads, head_dim;
};

// Causal softmax attention of one (segment, head) block: z = [q kcᵀ | q kᵀ]·scale, query i sees
// all C context keys (a shared prefix, C = kc.rows(), possibly 0) and its own keys 0..i; row
// softmax. P [T, C + T] is row-major: each row's unmasked head (C + i + 1 entries) is contiguous,
// so max / exp / sum / scale run as vectorised array operations (Eigen's packet exp) in one pass.
template <class S, class Q, class KC, class K, class P>
void causal_softmax(const Q& q, const KC& kc, const K& k, S scale, P&& p) {
  const index_t t = q.rows(), c = kc.rows();
  if (c > 0) p.leftCols(c).noalias() = (q * kc.transpose()) * scale;
  p.rightCols(t).noalias() = (q * k.transpose()) * scale;
  for (index_t i = 0; i < t; ++i) {
    auto r = p.row(i).head(c + i + 1).array();
    const S m = r.maxCoeff();
    r = (r - m).exp();
    r *= S(1) / r.sum();
    p.row(i).tail(t - i - 1).setZero();
  }
}

// The ordinary causal block (no context).
template <class S, class Q, class K, class P>
void causal_softmax(const Q& q, const K& k, S scale, P&& p) {
  causal_softmax<S>(q, k.topRows(0), k, scale, p);
}

// Scratch of attention_backward, kept between calls so the [N, ·] gradients are not reallocated
// (and page-faulted) every step; every element is overwritten before it is read.
template <class S>
struct attention_scratch {
  matrix<S> d_o, dq, dk, dv;
};

// One segment per sequence of a packed batch (no sharing).
inline std::vector<attention_segment> sequence_segments(std::span<const index_t> seq_offsets) {
  std::vector<attention_segment> s;
  for (std::size_t i = 0; i + 1 < seq_offsets.size(); ++i)
    s.push_back({seq_offsets[i], seq_offsets[i + 1] - seq_offsets[i], 0, 0});
  return s;
}

// Over segments (prefix_sharing.hpp): the rows of segment s attend to its context rows and
// causally to themselves; positions are each row's position in its sequence.
template <class S, class X, class Y>
void attention_forward(const layer_view<S>& w, const attention_shape& a, const rope_table<S>& rope,
                       const X& x, std::span<const attention_segment> segments,
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
  const index_t nseg = static_cast<index_t>(segments.size());
  c.o.resize(n, a.heads * d);
  c.p_offset.resize(static_cast<std::size_t>(nseg * a.heads) + 1);
  c.p_offset[0] = 0;
  for (index_t sh = 0; sh < nseg * a.heads; ++sh) {
    const attention_segment& sg = segments[static_cast<std::size_t>(sh / a.heads)];
    const auto t = static_cast<std::size_t>(sg.length), cols = static_cast<std::size_t>(sg.ctx_len + sg.length);
    const auto i = static_cast<std::size_t>(sh);
    c.p_offset[i + 1] = c.p_offset[i] + t * cols;
  }
  c.p_data.resize(c.p_offset.back());  // keeps its capacity when the batch shrinks
  {
    serial_eigen_scope serial;
    const index_t blocks = nseg * a.heads;
    // Blocks write disjoint parts of c.o and c.p (a segment's context is only read).
#pragma omp parallel for schedule(dynamic) num_threads(serial.threads()) if (serial.threads() > 1)
    for (index_t sh = 0; sh < blocks; ++sh) {
      const attention_segment& sg = segments[static_cast<std::size_t>(sh / a.heads)];
      const index_t h = sh % a.heads, g = h / group;
      const index_t o0 = sg.begin, t = sg.length, c0 = sg.ctx_begin, cl = sg.ctx_len;
      if (t == 0) continue;
      auto p = c.p(sh, t, cl + t);
      causal_softmax<S>(c.q.block(o0, h * d, t, d), c.k.block(c0, g * d, cl, d),
                        c.k.block(o0, g * d, t, d), scale, p);
      auto oh = c.o.block(o0, h * d, t, d);
      oh.noalias() = p.rightCols(t) * c.v.block(o0, g * d, t, d);
      if (cl > 0) oh.noalias() += p.leftCols(cl) * c.v.block(c0, g * d, cl, d);
    }
  }
  y.resize(n, w.wo.rows());
  linear_forward<S>(c.o, w.wo, w.bo, y);
}

// Over a packed batch of sequences (no sharing).
template <class S, class X, class Y>
void attention_forward(const layer_view<S>& w, const attention_shape& a, const rope_table<S>& rope,
                       const X& x, std::span<const index_t> seq_offsets,
                       std::span<const index_t> positions, attention_cache<S>& c, Y& y) {
  const std::vector<attention_segment> segs = sequence_segments(seq_offsets);
  attention_forward<S>(w, a, rope, x, std::span<const attention_segment>(segs), positions, c, y);
}

// dx is ADDED to; parameter gradients accumulate into dw. `scratch` holds the intermediate
// gradients (resized here, fully overwritten: every row belongs to exactly one segment).
template <class S, class X, class DY, class DX>
void attention_backward(const layer_view<S>& w, layer_view<S>& dw, const attention_shape& a,
                        const rope_table<S>& rope, const X& x,
                        std::span<const attention_segment> segments,
                        std::span<const index_t> positions, const attention_cache<S>& c,
                        const DY& dy, DX& dx, attention_scratch<S>& scratch) {
  const index_t n = x.rows(), d = a.head_dim, group = a.heads / a.kv_heads;
  matrix<S>& d_o = scratch.d_o;
  matrix<S>& dq = scratch.dq;
  matrix<S>& dk = scratch.dk;
  matrix<S>& dv = scratch.dv;
  d_o.resize(n, a.heads * d);
  linear_backward<S>(c.o, w.wo, dy, d_o, grad_mode::overwrite, dw.wo, dw.bo);
  dq.resize(n, a.heads * d);
  dk.resize(n, a.kv_heads * d);
  dv.resize(n, a.kv_heads * d);
  const S scale = S(1) / std::sqrt(S(d));
  // Groups: a segment without context (a prefix, or an ordinary sequence) and the continuation
  // segments after it that read it as their context.
  std::vector<index_t> group_begin;
  for (std::size_t s = 0; s < segments.size(); ++s)
    if (segments[s].ctx_len == 0) group_begin.push_back(static_cast<index_t>(s));
  group_begin.push_back(static_cast<index_t>(segments.size()));
  const index_t ngroups = static_cast<index_t>(group_begin.size()) - 1;
  {
    serial_eigen_scope serial;
    // One task per (group, KV head): the query heads of a KV group add into the same dk, dv
    // blocks, and every continuation of a shared prefix adds into the prefix's dk, dv, so all of
    // them stay in one task (no two tasks write the same rows and columns). The prefix comes first
    // and its first head assigns dk, dv (no zero fill); everything after adds.
    const index_t blocks = ngroups * a.kv_heads;
#pragma omp parallel for schedule(dynamic) num_threads(serial.threads()) if (serial.threads() > 1)
    for (index_t gg = 0; gg < blocks; ++gg) {
      const index_t gr = gg / a.kv_heads, g = gg % a.kv_heads;
      matrix<S> dp;
      vector<S> rs;
      for (index_t s = group_begin[gr]; s < group_begin[gr + 1]; ++s) {
        const attention_segment& sg = segments[static_cast<std::size_t>(s)];
        const index_t o0 = sg.begin, t = sg.length, c0 = sg.ctx_begin, cl = sg.ctx_len;
        if (t == 0) continue;
        dp.resize(t, cl + t);
        rs.resize(t);
        const auto vc = c.v.block(c0, g * d, cl, d);
        const auto kc = c.k.block(c0, g * d, cl, d);
        auto dvc = dv.block(c0, g * d, cl, d);
        auto dkc = dk.block(c0, g * d, cl, d);
        for (index_t h = g * group; h < (g + 1) * group; ++h) {
          const bool first = h == g * group;
          const auto p = c.p(s * a.heads + h, t, cl + t);
          const auto doh = d_o.block(o0, h * d, t, d);
          const auto qh = c.q.block(o0, h * d, t, d);
          auto dvb = dv.block(o0, g * d, t, d);
          auto dkb = dk.block(o0, g * d, t, d);
          // dP = do [V_ctx; V]ᵀ;  dV += Pᵀ do (the context part into the prefix's rows).
          dp.rightCols(t).noalias() = doh * c.v.block(o0, g * d, t, d).transpose();
          if (cl > 0) dp.leftCols(cl).noalias() = doh * vc.transpose();
          if (first)
            dvb.noalias() = p.rightCols(t).transpose() * doh;
          else
            dvb.noalias() += p.rightCols(t).transpose() * doh;
          if (cl > 0) dvc.noalias() += p.leftCols(cl).transpose() * doh;
          // dZ = P ⊙ (dP − rowsum(P ⊙ dP)), scaled once here for both dq and dk.
          rs.noalias() = p.cwiseProduct(dp).rowwise().sum();
          for (index_t i = 0; i < t; ++i)
            dp.row(i) = (p.row(i).array() * (dp.row(i).array() - rs(i))) * scale;
          // dq = dZ [K_ctx; K];  dK += dZᵀ q (the context part into the prefix's rows).
          auto dqh = dq.block(o0, h * d, t, d);
          dqh.noalias() = dp.rightCols(t) * c.k.block(o0, g * d, t, d);
          if (cl > 0) dqh.noalias() += dp.leftCols(cl) * kc;
          if (first)
            dkb.noalias() = dp.rightCols(t).transpose() * qh;
          else
            dkb.noalias() += dp.rightCols(t).transpose() * qh;
          if (cl > 0) dkc.noalias() += dp.leftCols(cl).transpose() * qh;
        }
      }
    }
  }
  rope.apply(dq, positions, a.heads, -1);
  rope.apply(dk, positions, a.kv_heads, -1);
  linear_backward<S>(x, w.wq, dq, dx, grad_mode::accumulate, dw.wq, dw.bq);
  linear_backward<S>(x, w.wk, dk, dx, grad_mode::accumulate, dw.wk, dw.bk);
  linear_backward<S>(x, w.wv, dv, dx, grad_mode::accumulate, dw.wv, dw.bv);
}

// Over a packed batch of sequences (no sharing).
template <class S, class X, class DY, class DX>
void attention_backward(const layer_view<S>& w, layer_view<S>& dw, const attention_shape& a,
                        const rope_table<S>& rope, const X& x, std::span<const index_t> seq_offsets,
                        std::span<const index_t> positions, const attention_cache<S>& c,
                        const DY& dy, DX& dx, attention_scratch<S>& scratch) {
  const std::vector<attention_segment> segs = sequence_segments(seq_offsets);
  attention_backward<S>(w, dw, a, rope, x, std::span<const attention_segment>(segs), positions, c,
                        dy, dx, scratch);
}

// Without caller-held scratch (tests): allocates it for this call.
template <class S, class X, class DY, class DX>
void attention_backward(const layer_view<S>& w, layer_view<S>& dw, const attention_shape& a,
                        const rope_table<S>& rope, const X& x, std::span<const index_t> seq_offsets,
                        std::span<const index_t> positions, const attention_cache<S>& c,
                        const DY& dy, DX& dx) {
  attention_scratch<S> scratch;
  attention_backward<S>(w, dw, a, rope, x, seq_offsets, positions, c, dy, dx, scratch);
}

}  // namespace reference_model
