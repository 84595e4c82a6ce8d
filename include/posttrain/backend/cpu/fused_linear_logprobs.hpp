#pragma once
// CPU kernels of ops/fused_linear_logprobs.hpp (called after the front end has validated
// everything, with a workspace of at least fused_linear_workspace_bytes).
//
// Per chunk of c tokens [r0, r0 + c):
//   forward           Z = X_c · Wᵀ  (Eigen GEMM in A = accum_t<T>, into the c × V workspace),
//                     then the CPU token log-prob forward on Z.
//   backward          Z recomputed as above, the token log-prob backward written over Z in place
//                     (dZ), then dH_c = dZ · W and dW += dZᵀ · X_c.
//   forward_backward  Z, the forward (its lse / entropy kept in the workspace when the caller does
//                     not ask for them), the backward over Z in place, then the two GEMMs: the
//                     logits are computed once (6·N·H·V FLOP instead of 8·N·H·V).
// Every GEMM walks the vocabulary in tiles of weight_tile_rows rows of W (and of dW): one GEMM per
// tile keeps the packed weight tile in cache, where one GEMM over the whole weight re-packs all of
// W per chunk (3–4x slower at c = 32; measured numbers in docs/ops/fused_linear_logprobs.md).
// float and double operands are mapped directly (any leading dimension). bfloat16 operands are
// widened to float first: the chunk of hidden rows once per chunk, each weight tile into a tile
// buffer in the workspace (the memory stays bounded by the chunk; the conversion costs V·H per
// chunk next to the GEMM's 2·c·V·H). Every sum accumulates in A.
#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

#include "posttrain/backend/cpu/token_logprobs.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/views.hpp"
#include "posttrain/ops/fused_linear_logprobs_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cpu {

namespace fused_linear_detail {

inline constexpr index_t weight_tile_rows = 256;
inline constexpr std::size_t alignment = 64;

constexpr std::size_t aligned(std::size_t bytes) {
  return (bytes + alignment - 1) / alignment * alignment;
}

// Byte offsets of the workspace pieces for chunks of c tokens.
struct layout {
  std::size_t z = 0, x = 0, w = 0, dh = 0, stats = 0, total = 0;
};

template <class T>
constexpr layout workspace_layout(index_t c, index_t h, index_t v, fused_linear_pass pass) {
  using A = accum_t<T>;
  constexpr bool widen = !std::is_same_v<T, A>;
  const auto sa = sizeof(A);
  const auto uc = static_cast<std::size_t>(c), uh = static_cast<std::size_t>(h),
             uv = static_cast<std::size_t>(v);
  layout l;
  std::size_t at = 0;
  l.z = at;
  at += aligned(uc * uv * sa);
  l.x = at;
  if (widen) at += aligned(uc * uh * sa);
  l.w = at;
  if (widen) at += aligned(static_cast<std::size_t>(std::min(v, weight_tile_rows)) * uh * sa);
  l.dh = at;
  if (pass != fused_linear_pass::forward) at += aligned(uc * uh * sa);
  l.stats = at;
  if (pass == fused_linear_pass::forward_backward) at += aligned(2 * uc * sa);
  l.total = at + alignment;  // + alignment: the caller's pointer may be misaligned (never 0)
  return l;
}

template <class A>
using rmat = Eigen::Matrix<A, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class A>
using map_t = Eigen::Map<rmat<A>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class A>
using cmap_t = Eigen::Map<const rmat<A>, Eigen::Unaligned, Eigen::OuterStride<>>;

template <class A>
map_t<A> map(A* p, index_t rows, index_t cols, index_t ld) {
  return map_t<A>(p, rows, cols, Eigen::OuterStride<>(ld));
}
template <class A>
cmap_t<A> cmap(const A* p, index_t rows, index_t cols, index_t ld) {
  return cmap_t<A>(p, rows, cols, Eigen::OuterStride<>(ld));
}

// Rows [r0, r0 + rows) of m widened into dst (rows × cols, contiguous).
template <class T, class A>
void widen_rows(matrix_view<const T> m, index_t r0, index_t rows, A* dst) {
  for (index_t i = 0; i < rows; ++i) {
    const T* src = m.row_data(r0 + i);
    A* out = dst + i * m.cols;
    for (index_t j = 0; j < m.cols; ++j) out[j] = token_logprobs_detail::to_accum(src[j]);
  }
}

// The pieces of one call, carved out of the workspace.
template <class T>
struct chunk_state {
  using A = accum_t<T>;
  matrix_view<const T> hidden, weight;
  index_t c = 0;  // chunk capacity
  A* z = nullptr;
  A* x = nullptr;  // widened hidden rows (bfloat16 only)
  A* w = nullptr;  // widened weight tile (bfloat16 only)
  A* dh = nullptr;
  A* stats = nullptr;

  chunk_state(std::span<std::byte> ws, matrix_view<const T> h, matrix_view<const T> wt, index_t chunk,
              fused_linear_pass pass)
      : hidden(h), weight(wt), c(chunk) {
    const layout l = workspace_layout<T>(chunk, h.cols, wt.rows, pass);
    auto base = reinterpret_cast<std::uintptr_t>(ws.data());
    base = (base + alignment - 1) / alignment * alignment;
    auto at = [&](std::size_t off) { return reinterpret_cast<A*>(base + off); };
    z = at(l.z);
    x = at(l.x);
    w = at(l.w);
    dh = at(l.dh);
    stats = at(l.stats);
  }

  // The hidden rows of the chunk as an A matrix (widened into x for bfloat16).
  cmap_t<A> hidden_rows(index_t r0, index_t rows) const {
    if constexpr (std::is_same_v<T, A>) {
      return cmap(hidden.row_data(r0), rows, hidden.cols, hidden.ld);
    } else {
      widen_rows(hidden, r0, rows, x);
      return cmap<A>(x, rows, hidden.cols, hidden.cols);
    }
  }

  // Calls f(v0, W_tile) over tiles of weight_tile_rows rows of the weight (widened for bfloat16).
  template <class F>
  void for_weight_tiles(F&& f) const {
    const index_t v = weight.rows, hs = weight.cols;
    for (index_t v0 = 0; v0 < v; v0 += weight_tile_rows) {
      const index_t vt = std::min(weight_tile_rows, v - v0);
      if constexpr (std::is_same_v<T, A>) {
        f(v0, cmap(weight.row_data(v0), vt, hs, weight.ld));
      } else {
        widen_rows(weight, v0, vt, w);
        f(v0, cmap<A>(w, vt, hs, hs));
      }
    }
  }

  // Z = X_c · Wᵀ for the chunk (returns the X_c map, still valid for dW).
  cmap_t<A> logits(index_t r0, index_t rows) const {
    const index_t v = weight.rows;
    const cmap_t<A> xc = hidden_rows(r0, rows);
    auto zm = map<A>(z, rows, v, v);
    for_weight_tiles([&](index_t v0, const cmap_t<A>& wt) {
      zm.middleCols(v0, wt.rows()).noalias() = xc * wt.transpose();
    });
    return xc;
  }

  // dH_c = dZ · W into dh, then written (converted) into the chunk's rows of d_hidden; and
  // dW += dZᵀ · X_c.
  template <class G>
  void weight_grads(const cmap_t<A>& xc, index_t r0, index_t rows, matrix_view<G> d_hidden,
                    matrix_view<A> d_weight) const {
    const index_t v = weight.rows, hs = hidden.cols;
    const auto dz = cmap<A>(z, rows, v, v);
    if (!d_hidden.empty()) {
      auto dhm = map<A>(dh, rows, hs, hs);
      dhm.setZero();
      for_weight_tiles([&](index_t v0, const cmap_t<A>& wt) {
        dhm.noalias() += dz.middleCols(v0, wt.rows()) * wt;
      });
      for (index_t i = 0; i < rows; ++i) {
        G* out = d_hidden.row_data(r0 + i);
        const A* src = dh + i * hs;
        for (index_t j = 0; j < hs; ++j)
          out[j] = token_logprobs_detail::from_accum<G>(src[j]);
      }
    }
    if (!d_weight.empty())
      for (index_t v0 = 0; v0 < v; v0 += weight_tile_rows) {  // tiles stay in cache
        const index_t vt = std::min(weight_tile_rows, v - v0);
        map(d_weight.row_data(v0), vt, hs, d_weight.ld).noalias() +=
            dz.middleCols(v0, vt).transpose() * xc;
      }
  }
};

template <class A>
std::span<A> part(std::span<A> s, index_t r0, index_t rows) {
  return s.empty() ? s : s.subspan(static_cast<std::size_t>(r0), static_cast<std::size_t>(rows));
}

template <class A>
void zero(matrix_view<A> m) {
  for (index_t i = 0; i < m.rows; ++i) std::fill(m.row_data(i), m.row_data(i) + m.cols, A(0));
}

}  // namespace fused_linear_detail

// Bytes of workspace for chunks of `chunk` tokens (chunk already clamped to [1, N], 0 when N = 0).
// Never 0, so a null pointer always means a size query.
template <class T>
constexpr std::size_t fused_linear_workspace_bytes(index_t chunk, index_t hidden, index_t vocab,
                                                   fused_linear_pass pass) {
  return fused_linear_detail::workspace_layout<T>(chunk, hidden, vocab, pass).total;
}

template <class T>
void fused_linear_logprobs_forward(std::span<std::byte> workspace, matrix_view<const T> hidden,
                                   matrix_view<const T> weight, std::span<const index_t> targets,
                                   index_t chunk, double temperature, index_t ignore_index,
                                   int num_threads, std::span<accum_t<T>> logprob,
                                   std::span<accum_t<T>> lse, std::span<accum_t<T>> entropy,
                                   std::span<accum_t<T>> sum_p_squared) {
  namespace d = fused_linear_detail;
  using A = accum_t<T>;
  const d::chunk_state<T> st(workspace, hidden, weight, chunk, fused_linear_pass::forward);
  const index_t n = hidden.rows, v = weight.rows;
  for (index_t r0 = 0; r0 < n; r0 += chunk) {
    const index_t rows = std::min(chunk, n - r0);
    (void)st.logits(r0, rows);
    token_logprobs_forward<A, A>(matrix_view<const A>(st.z, rows, v, v), d::part(targets, r0, rows),
                                 temperature, ignore_index, num_threads,
                                 d::part(logprob, r0, rows), d::part(lse, r0, rows),
                                 d::part(entropy, r0, rows), d::part(sum_p_squared, r0, rows));
  }
}

// d_hidden / d_weight may be empty (not computed). d_weight is zeroed first unless accumulate.
template <class T, class G>
void fused_linear_logprobs_backward(std::span<std::byte> workspace, matrix_view<const T> hidden,
                                    matrix_view<const T> weight, std::span<const index_t> targets,
                                    index_t chunk, double temperature, index_t ignore_index,
                                    int num_threads, std::span<const accum_t<T>> lse,
                                    std::span<const accum_t<T>> entropy,
                                    std::span<const accum_t<T>> d_logprob,
                                    std::span<const accum_t<T>> d_entropy,
                                    matrix_view<G> d_hidden, matrix_view<accum_t<T>> d_weight,
                                    bool accumulate) {
  namespace d = fused_linear_detail;
  using A = accum_t<T>;
  if (!accumulate) d::zero(d_weight);
  const d::chunk_state<T> st(workspace, hidden, weight, chunk, fused_linear_pass::backward);
  const index_t n = hidden.rows, v = weight.rows;
  for (index_t r0 = 0; r0 < n; r0 += chunk) {
    const index_t rows = std::min(chunk, n - r0);
    const auto xc = st.logits(r0, rows);
    const matrix_view<A> z(st.z, rows, v, v);
    token_logprobs_backward<A, A, A>(z, d::part(targets, r0, rows), temperature, ignore_index,
                                     num_threads, d::part(lse, r0, rows),
                                     d::part(entropy, r0, rows), d::part(d_logprob, r0, rows),
                                     d::part(d_entropy, r0, rows), z);
    st.weight_grads(xc, r0, rows, d_hidden, d_weight);
  }
}

// Forward outputs and the gradients for per-token gradients known up front; the logits of each
// chunk are computed once.
template <class T, class G>
void fused_linear_logprobs_forward_backward(
    std::span<std::byte> workspace, matrix_view<const T> hidden, matrix_view<const T> weight,
    std::span<const index_t> targets, index_t chunk, double temperature, index_t ignore_index,
    int num_threads, std::span<const accum_t<T>> d_logprob, std::span<const accum_t<T>> d_entropy,
    std::span<accum_t<T>> logprob, std::span<accum_t<T>> lse, std::span<accum_t<T>> entropy,
    std::span<accum_t<T>> sum_p_squared, matrix_view<G> d_hidden,
    matrix_view<accum_t<T>> d_weight, bool accumulate) {
  namespace d = fused_linear_detail;
  using A = accum_t<T>;
  if (!accumulate) d::zero(d_weight);
  const d::chunk_state<T> st(workspace, hidden, weight, chunk, fused_linear_pass::forward_backward);
  const index_t n = hidden.rows, v = weight.rows;
  const bool with_h = !d_entropy.empty();
  for (index_t r0 = 0; r0 < n; r0 += chunk) {
    const index_t rows = std::min(chunk, n - r0);
    const auto xc = st.logits(r0, rows);
    const matrix_view<A> z(st.z, rows, v, v);
    // lse (and entropy for the entropy gradient) in the caller's outputs, else in the workspace.
    const std::span<A> l = lse.empty() ? std::span<A>(st.stats, static_cast<std::size_t>(rows))
                                       : d::part(lse, r0, rows);
    std::span<A> h = d::part(entropy, r0, rows);
    if (with_h && h.empty()) h = std::span<A>(st.stats + chunk, static_cast<std::size_t>(rows));
    const auto t = d::part(targets, r0, rows);
    token_logprobs_forward<A, A>(matrix_view<const A>(z), t, temperature, ignore_index,
                                 num_threads, d::part(logprob, r0, rows), l, h,
                                 d::part(sum_p_squared, r0, rows));
    token_logprobs_backward<A, A, A>(
        z, t, temperature, ignore_index, num_threads, std::span<const A>(l),
        with_h ? std::span<const A>(h) : std::span<const A>(), d::part(d_logprob, r0, rows),
        d::part(d_entropy, r0, rows), z);
    st.weight_grads(xc, r0, rows, d_hidden, d_weight);
  }
}

}  // namespace backend::cpu

namespace backend {

template <>
struct fused_linear_logprobs_backend<exec::host> {
  template <class T>
  static std::size_t workspace_bytes(index_t chunk, index_t h, index_t v, fused_linear_pass pass) {
    return cpu::fused_linear_workspace_bytes<T>(chunk, h, v, pass);
  }
  template <class T, class A>
  static void forward(exec::host, std::span<std::byte> ws, matrix_view<const T> hidden,
                      matrix_view<const T> weight, std::span<const index_t> targets,
                      const token_logprobs_outputs<A>& out, index_t chunk,
                      const fused_linear_logprobs_options& o) {
    cpu::fused_linear_logprobs_forward<T>(ws, hidden, weight, targets, chunk,
                                                   o.temperature, o.ignore_index, o.num_threads,
                                                   out.logprob, out.lse, out.entropy,
                                                   out.sum_p_squared);
  }
  template <class T, class G, class A>
  static void backward(exec::host, std::span<std::byte> ws, matrix_view<const T> hidden,
                       matrix_view<const T> weight, std::span<const index_t> targets,
                       const token_logprobs_grads<A>& in, matrix_view<G> d_hidden,
                       matrix_view<A> d_weight, index_t chunk,
                       const fused_linear_logprobs_options& o) {
    cpu::fused_linear_logprobs_backward<T, G>(
        ws, hidden, weight, targets, chunk, o.temperature, o.ignore_index, o.num_threads, in.lse,
        in.entropy, in.d_logprob, in.d_entropy, d_hidden, d_weight, o.accumulate_d_weight);
  }
  template <class T, class G, class A>
  static void forward_backward(exec::host, std::span<std::byte> ws, matrix_view<const T> hidden,
                               matrix_view<const T> weight, std::span<const index_t> targets,
                               std::span<const A> d_logprob, std::span<const A> d_entropy,
                               const token_logprobs_outputs<A>& out, matrix_view<G> d_hidden,
                               matrix_view<A> d_weight, index_t chunk,
                               const fused_linear_logprobs_options& o) {
    cpu::fused_linear_logprobs_forward_backward<T, G>(
        ws, hidden, weight, targets, chunk, o.temperature, o.ignore_index, o.num_threads,
        d_logprob, d_entropy, out.logprob, out.lse, out.entropy, out.sum_p_squared, d_hidden,
        d_weight, o.accumulate_d_weight);
  }
};

}  // namespace backend

POSTTRAIN_NAMESPACE_END
