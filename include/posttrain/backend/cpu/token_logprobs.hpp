#pragma once
// CPU kernels of ops/token_logprobs.hpp (called after the front end has validated everything), and
// backend::token_logprobs_backend<exec::host> (the contract is in ops/token_logprobs_types.hpp).
//
// Forward, per row, one read of the logits: the row is walked in chunks of `chunk_size` elements
// (bfloat16 is widened into an L1 buffer first); each chunk takes its max, then sums
// exp(z − max) (and, when requested, exp(z − max)·(z − max) and exp(2(z − max))) in the lanes of
// Eigen packets (SSE2 to AVX-512, whatever the compiler targets), and the chunk's
// math::softmax_stats is combined into the row's state. The order of every sum is fixed by the
// row alone, so results do not depend on the thread count or the run.
//
// Backward, per row, one read of the logits and one write of the gradient, elementwise, so the
// gradient may overwrite the logits in place (the target's logit is read before the row is
// written).
//
// float and bfloat16 logits accumulate in float with a vectorised exp2 (see exp_kernel); double
// logits accumulate in double with Eigen's pexp. Rows whose target is ignore_index are never
// read. Rows are split over `num_threads` std::threads in contiguous blocks.
#include <Eigen/Core>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <type_traits>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/views.hpp"
#include "posttrain/core/workspace.hpp"
#include "posttrain/math/logsumexp.hpp"
#include "posttrain/ops/token_logprobs_types.hpp"

// std::thread only: libstdc++ (11 and later) declares it in <bits/std_thread.h>, which <thread>
// includes along with jthread, stop_token and the semaphores (~4% of the umbrella's parse time;
// docs/architecture.md, "Include cost"). Other standard libraries get <thread>.
#if defined(__GLIBCXX__) && __has_include(<bits/std_thread.h>)
#include <bits/std_thread.h>
#else
#include <thread>
#endif

// GCC 12.1/12.2 warn "__Y may be used uninitialized" inside their own AVX-512 intrinsics when
// they are inlined here (GCC bug 105593, fixed in 12.3); the warning is about the headers.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ == 12
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#define POSTTRAIN_TOKEN_LOGPROBS_POP_DIAGNOSTIC
#endif

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cpu {

namespace token_logprobs_detail {

inline constexpr index_t chunk_size = 2048;
// Below this many logits per thread another thread costs more than it saves.
inline constexpr index_t min_elements_per_thread = index_t(1) << 17;

// Scalar conversions. bfloat16 is the top half of a float.
POSTTRAIN_FORCEINLINE float to_accum(float x) { return x; }
POSTTRAIN_FORCEINLINE double to_accum(double x) { return x; }
POSTTRAIN_FORCEINLINE float to_accum(Eigen::bfloat16 x) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(x.value) << 16);
}

template <class G, class A>
POSTTRAIN_FORCEINLINE G from_accum(A x) {
  if constexpr (std::is_same_v<G, Eigen::bfloat16>) {
    // Round to nearest even; NaN stays a quiet NaN.
    const float f = static_cast<float>(x);
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    const std::uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    G out;
    out.value = static_cast<std::uint16_t>((f == f) ? rounded : 0x7FC0u);
    return out;
  } else {
    return static_cast<G>(x);
  }
}

namespace ei = Eigen::internal;

template <class A>
using packet_t = typename ei::packet_traits<A>::type;

template <class A>
inline constexpr int packet_size = ei::unpacket_traits<packet_t<A>>::size;

// The exp of the kernels, on packets. Sums are kept in "base units" y = (z − max)·to_base with
// e = exp_base(y): float uses base 2 and a short exp2 (range reduction by truncation to
// r in [-1/2, 1/2], a degree-6 polynomial for 2^r with max relative error 1e-7, and the exponent
// added as an integer: about 12 vector instructions, no floor and no special cases, because the
// argument is clamped to [floor_y, 0] first). double uses Eigen's pexp in natural units.
// floor_y keeps exp_base a normal number (denormals are slow on x86, and such terms are
// irrelevant next to the max's 1), and e is raised to floor_e before squaring for Σ p² for the
// same reason.
template <class A>
struct exp_kernel;

// Whether the float packet has a matching int32 packet (Eigen's unpacket_traits::integer_packet);
// without one (no vectorisation) the float kernel falls back to pexp.
template <class A>
inline constexpr bool has_integer_packet =
    requires { typename ei::unpacket_traits<packet_t<A>>::integer_packet; };

template <>
struct exp_kernel<float> {
  using P = packet_t<float>;
  static constexpr bool base2 = packet_size<float> > 1 && has_integer_packet<float>;
  static constexpr float to_base = base2 ? 1.44269504088896340736f : 1.0f;     // log2(e)
  static constexpr float from_base = base2 ? 0.693147180559945309417f : 1.0f;  // ln(2)
  static constexpr float floor_y = base2 ? -125.0f : -87.0f;
  static constexpr float floor_e = 1e-18f;

  // base^y for y in [floor_y, 0].
  template <class Q>  // a template so that the discarded branch is not checked
  static POSTTRAIN_FORCEINLINE Q exp_base(const Q& y) {
    if constexpr (base2) {
      using PI = typename ei::unpacket_traits<Q>::integer_packet;
      using P = Q;
      const PI n = ei::pcast<P, PI>(ei::psub(y, ei::pset1<P>(0.5f)));  // nearest, for y <= 0
      const P r = ei::psub(y, ei::pcast<PI, P>(n));                     // [-1/2, 1/2]
      P p = ei::pset1<P>(1.534580661e-04f);
      p = ei::pmadd(p, r, ei::pset1<P>(1.339993090e-03f));
      p = ei::pmadd(p, r, ei::pset1<P>(9.618489072e-03f));
      p = ei::pmadd(p, r, ei::pset1<P>(5.550328642e-02f));
      p = ei::pmadd(p, r, ei::pset1<P>(2.402264625e-01f));
      p = ei::pmadd(p, r, ei::pset1<P>(6.931471825e-01f));
      p = ei::pmadd(p, r, ei::pset1<P>(1.0f));
      return ei::preinterpret<P>(
          ei::padd(ei::preinterpret<PI>(p), ei::plogical_shift_left<23>(n)));
    } else {
      return ei::pexp(y);
    }
  }
};

template <>
struct exp_kernel<double> {
  using P = packet_t<double>;
  static constexpr double to_base = 1.0;
  static constexpr double from_base = 1.0;
  static constexpr double floor_y = -700.0;
  static constexpr double floor_e = 1e-150;
  static POSTTRAIN_FORCEINLINE P exp_base(const P& y) { return ei::pexp(y); }
};

// Converts n elements of T to A (a plain loop the compiler vectorises).
template <class T, class A>
POSTTRAIN_FORCEINLINE void convert(const T* src, A* dst, index_t n) {
  for (index_t i = 0; i < n; ++i) dst[i] = to_accum(src[i]);
}
template <class G, class A>
POSTTRAIN_FORCEINLINE void convert_out(const A* src, G* dst, index_t n) {
  for (index_t i = 0; i < n; ++i) dst[i] = from_accum<G>(src[i]);
}

template <class A>
POSTTRAIN_FORCEINLINE math::softmax_stats<A> nan_stats() {
  const A nan = std::numeric_limits<A>::quiet_NaN();
  return {nan, nan, nan, nan};
}

// Statistics of one chunk of the scaled row z = x·scale (len <= chunk_size), in natural units.
// The ragged end (len not a multiple of the packet size) is copied into a -inf padded packet.
template <bool Entropy, bool SumP2, class A>
math::softmax_stats<A> chunk_stats(const A* src, index_t len, A scale) {
  using P = packet_t<A>;
  constexpr int PS = packet_size<A>;
  constexpr A ninf = -std::numeric_limits<A>::infinity();
  const index_t body = len - len % PS;
  alignas(64) A tail[PS];
  for (int j = 0; j < PS; ++j) tail[j] = body + j < len ? src[body + j] : ninf;
  const bool has_tail = body < len;

  // Pass 1: max and a NaN check over the chunk (four accumulators hide the max latency).
  P m0 = ei::pset1<P>(ninf), m1 = m0, m2 = m0, m3 = m0;
  P ok = ei::pcmp_eq(m0, m0);  // all bits set while no NaN has been seen
  index_t i = 0;
  for (; i + 4 * PS <= body; i += 4 * PS) {
    const P a = ei::ploadu<P>(src + i), b = ei::ploadu<P>(src + i + PS);
    const P c = ei::ploadu<P>(src + i + 2 * PS), d = ei::ploadu<P>(src + i + 3 * PS);
    m0 = ei::pmax(m0, a);
    m1 = ei::pmax(m1, b);
    m2 = ei::pmax(m2, c);
    m3 = ei::pmax(m3, d);
    ok = ei::pand(ok, ei::pand(ei::pand(ei::pcmp_eq(a, a), ei::pcmp_eq(b, b)),
                               ei::pand(ei::pcmp_eq(c, c), ei::pcmp_eq(d, d))));
  }
  for (; i < body; i += PS) {
    const P a = ei::ploadu<P>(src + i);
    m0 = ei::pmax(m0, a);
    ok = ei::pand(ok, ei::pcmp_eq(a, a));
  }
  if (has_tail) {
    const P a = ei::pload<P>(tail);
    m1 = ei::pmax(m1, a);
    ok = ei::pand(ok, ei::pcmp_eq(a, a));
  }
  alignas(64) A ok_lanes[PS];
  ei::pstore(ok_lanes, ok);
  for (int j = 0; j < PS; ++j)
    if (ok_lanes[j] == ok_lanes[j]) return nan_stats<A>();  // a lane that is not all-ones bits
  const A mx = ei::predux_max(ei::pmax(ei::pmax(m0, m1), ei::pmax(m2, m3)));
  if (mx == ninf) return {};  // nothing but -inf: no mass
  if (mx == -ninf) return nan_stats<A>();

  // Pass 2 (the chunk is in L1 now): the sums relative to the chunk max, in base units.
  using K = exp_kernel<A>;
  const P pmx = ei::pset1<P>(mx), pk = ei::pset1<P>(scale * K::to_base);
  const P pfloor = ei::pset1<P>(K::floor_y), pfloor_e = ei::pset1<P>(K::floor_e);
  P s = ei::pzero(pmx), t = s, q = s;
  auto accumulate = [&](const P& v) {
    const P y = ei::pmax(ei::pmul(ei::psub(v, pmx), pk), pfloor);
    const P e = K::exp_base(y);
    s = ei::padd(s, e);
    if constexpr (Entropy) t = ei::pmadd(e, y, t);
    if constexpr (SumP2) {
      const P ec = ei::pmax(e, pfloor_e);
      q = ei::pmadd(ec, ec, q);
    }
  };
  for (i = 0; i < body; i += PS) accumulate(ei::ploadu<P>(src + i));
  if (has_tail) accumulate(ei::pload<P>(tail));

  math::softmax_stats<A> c;
  c.m = mx * scale;
  c.s = ei::predux(s);
  c.t = Entropy ? ei::predux(t) * K::from_base : A(0);
  c.s2 = SumP2 ? ei::predux(q) : A(0);
  return c;
}

// Statistics of the scaled row z = x·scale, in natural units. One read of x.
template <bool Entropy, bool SumP2, class T, class A>
math::softmax_stats<A> row_stats(const T* x, index_t n, A scale) {
  math::softmax_stats<A> row;
  alignas(64) A buffer[std::is_same_v<T, A> ? 1 : chunk_size];
  for (index_t c0 = 0; c0 < n; c0 += chunk_size) {
    const index_t len = std::min(chunk_size, n - c0);
    const A* src;
    if constexpr (std::is_same_v<T, A>) {
      src = x + c0;
    } else {
      convert(x + c0, buffer, len);
      src = buffer;
    }
    const auto c = chunk_stats<Entropy, SumP2, A>(src, len, scale);
    if (c.s != c.s) return c;  // NaN
    row = math::softmax_stats<A>::combine(row, c);
  }
  return row;
}

template <bool Entropy, bool SumP2, class T, class A>
void forward_rows(matrix_view<const T> logits, std::span<const index_t> targets, A scale,
                  index_t ignore_index, std::span<A> logprob, std::span<A> lse,
                  std::span<A> entropy, std::span<A> sum_p_squared, index_t r0, index_t r1) {
  for (index_t i = r0; i < r1; ++i) {
    const index_t y = targets[static_cast<std::size_t>(i)];
    const auto ui = static_cast<std::size_t>(i);
    if (y == ignore_index) {
      logprob[ui] = A(0);
      if (!lse.empty()) lse[ui] = A(0);
      if constexpr (Entropy) entropy[ui] = A(0);
      if constexpr (SumP2) sum_p_squared[ui] = A(0);
      continue;
    }
    const T* x = logits.row_data(i);
    const math::softmax_stats<A> st = row_stats<Entropy, SumP2>(x, logits.cols, scale);
    const A l = st.lse();
    // Relative to the max, so a target at (or near) the max does not lose the digits of lse.
    logprob[ui] = (to_accum(x[y]) * scale - st.m) - std::log(st.s);
    if (!lse.empty()) lse[ui] = l;
    if constexpr (Entropy) entropy[ui] = st.entropy();
    if constexpr (SumP2) sum_p_squared[ui] = st.sum_p_squared();
  }
}

// d/dx_v of  g_lp·log p_y + g_H·H  with z = x·scale, p = softmax(z):
//   scale·( g_lp·1[v = y] − p_v·(g_lp + g_H·(log p_v + H)) ),  log p_v = z_v − lse.
template <bool WithEntropy, class T, class G, class A>
void backward_row(const T* x, G* g, index_t n, index_t y, A scale, A lse, A h, A g_lp, A g_h) {
  using P = packet_t<A>;
  constexpr int PS = packet_size<A>;
  if (!std::isfinite(lse)) {
    for (index_t v = 0; v < n; ++v) g[v] = from_accum<G>(std::numeric_limits<A>::quiet_NaN());
    return;
  }
  const A c = WithEntropy ? g_lp + g_h * h : g_lp;
  const A x_target = to_accum(x[y]);  // read before the row may be overwritten (in place)
  using K = exp_kernel<A>;
  const P pscale = ei::pset1<P>(scale), plse = ei::pset1<P>(lse);
  const P pfloor = ei::pset1<P>(K::floor_y / K::to_base), pzero = ei::pzero(pscale);
  const P pbase = ei::pset1<P>(K::to_base);
  const P pc = ei::pset1<P>(-scale * c), pgh = ei::pset1<P>(-scale * g_h);
  auto grad = [&](const P& v) {
    // log p clamped to [floor, 0]: rounding can push z − lse a hair above 0.
    const P lp = ei::pmin(ei::pmax(ei::psub(ei::pmul(v, pscale), plse), pfloor), pzero);
    const P p = K::exp_base(ei::pmul(lp, pbase));
    if constexpr (WithEntropy)
      return ei::pmul(p, ei::pmadd(pgh, lp, pc));
    else
      return ei::pmul(p, pc);
  };
  // grad over n <= chunk_size elements of A, into dst (may be src).
  auto grad_span = [&](const A* src, A* dst, index_t len) {
    const index_t body = len - len % PS;
    for (index_t v = 0; v < body; v += PS) ei::pstoreu(dst + v, grad(ei::ploadu<P>(src + v)));
    if (body < len) {
      alignas(64) A tmp[PS];
      for (int j = 0; j < PS; ++j) tmp[j] = body + j < len ? src[body + j] : A(0);
      ei::pstore(tmp, grad(ei::pload<P>(tmp)));
      for (index_t v = body; v < len; ++v) dst[v] = tmp[v - body];
    }
  };
  if constexpr (std::is_same_v<T, A> && std::is_same_v<G, A>) {
    for (index_t c0 = 0; c0 < n; c0 += chunk_size)
      grad_span(x + c0, g + c0, std::min(chunk_size, n - c0));
  } else {
    alignas(64) A buffer[chunk_size];
    for (index_t c0 = 0; c0 < n; c0 += chunk_size) {
      const index_t len = std::min(chunk_size, n - c0);
      if constexpr (std::is_same_v<T, A>)
        grad_span(x + c0, buffer, len);
      else {
        convert(x + c0, buffer, len);
        grad_span(buffer, buffer, len);
      }
      if constexpr (std::is_same_v<G, A>)
        std::copy(buffer, buffer + len, g + c0);
      else
        convert_out(buffer, g + c0, len);
    }
  }
  // The target: recompute from the saved logit (the row may alias g) and add scale·g_lp.
  const A lp_y = std::min(std::max(x_target * scale - lse, K::floor_y / K::to_base), A(0));
  const A p_y = std::exp(lp_y);
  const A g_y = WithEntropy ? -scale * p_y * (c + g_h * lp_y) : -scale * p_y * c;
  g[y] = from_accum<G>(g_y + scale * g_lp);
}

template <bool WithEntropy, class T, class G, class A>
void backward_rows(matrix_view<const T> logits, std::span<const index_t> targets, A scale,
                   index_t ignore_index, std::span<const A> lse, std::span<const A> entropy,
                   std::span<const A> d_logprob, std::span<const A> d_entropy,
                   matrix_view<G> d_logits, index_t r0, index_t r1) {
  for (index_t i = r0; i < r1; ++i) {
    const auto ui = static_cast<std::size_t>(i);
    const index_t y = targets[ui];
    G* g = d_logits.row_data(i);
    if (y == ignore_index) {
      std::fill(g, g + d_logits.cols, from_accum<G>(A(0)));
      continue;
    }
    const A h = WithEntropy ? entropy[ui] : A(0);
    const A gh = WithEntropy ? d_entropy[ui] : A(0);
    backward_row<WithEntropy>(logits.row_data(i), g, logits.cols, y, scale, lse[ui], h,
                              d_logprob[ui], gh);
  }
}

// Runs body(r0, r1) over [0, rows) in `threads` contiguous blocks.
template <class Body>
void parallel_rows(index_t rows, index_t cols, int threads, Body&& body) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const index_t by_work = std::max<index_t>(1, rows * cols / min_elements_per_thread);
  const index_t t = std::min<index_t>({static_cast<index_t>(threads), rows, by_work});
  if (t <= 1) {
    body(index_t(0), rows);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(static_cast<std::size_t>(t - 1));
  auto begin = [&](index_t b) { return rows * b / t; };
  for (index_t b = 1; b < t; ++b) pool.emplace_back([&, b] { body(begin(b), begin(b + 1)); });
  body(begin(0), begin(1));
  for (auto& th : pool) th.join();
}

}  // namespace token_logprobs_detail

// Forward over rows: logprob (required), lse / entropy / sum_p_squared (empty = skip).
template <class T, class A>
void token_logprobs_forward(matrix_view<const T> logits, std::span<const index_t> targets,
                            double temperature, index_t ignore_index, int num_threads,
                            std::span<A> logprob, std::span<A> lse, std::span<A> entropy,
                            std::span<A> sum_p_squared) {
  namespace d = token_logprobs_detail;
  const A scale = static_cast<A>(1.0 / temperature);
  auto run = [&]<bool Entropy, bool SumP2>() {
    d::parallel_rows(logits.rows, logits.cols, num_threads, [&](index_t r0, index_t r1) {
      d::forward_rows<Entropy, SumP2, T, A>(logits, targets, scale, ignore_index, logprob, lse,
                                            entropy, sum_p_squared, r0, r1);
    });
  };
  const bool h = !entropy.empty(), q = !sum_p_squared.empty();
  if (h && q)
    run.template operator()<true, true>();
  else if (h)
    run.template operator()<true, false>();
  else if (q)
    run.template operator()<false, true>();
  else
    run.template operator()<false, false>();
}

// Backward over rows: d_logits = dL/dlogits from d_logprob and (optional, empty = 0) d_entropy.
template <class T, class G, class A>
void token_logprobs_backward(matrix_view<const T> logits, std::span<const index_t> targets,
                             double temperature, index_t ignore_index, int num_threads,
                             std::span<const A> lse, std::span<const A> entropy,
                             std::span<const A> d_logprob, std::span<const A> d_entropy,
                             matrix_view<G> d_logits) {
  namespace d = token_logprobs_detail;
  const A scale = static_cast<A>(1.0 / temperature);
  auto run = [&]<bool WithEntropy>() {
    d::parallel_rows(logits.rows, logits.cols, num_threads, [&](index_t r0, index_t r1) {
      d::backward_rows<WithEntropy, T, G, A>(logits, targets, scale, ignore_index, lse, entropy,
                                             d_logprob, d_entropy, d_logits, r0, r1);
    });
  };
  if (!d_entropy.empty())
    run.template operator()<true>();
  else
    run.template operator()<false>();
}

}  // namespace backend::cpu

namespace backend {

template <>
struct token_logprobs_backend<exec::host> {
  template <class T, class A>
  static void forward(exec::host, matrix_view<const T> logits, std::span<const index_t> targets,
                      const token_logprobs_outputs<A>& out, const token_logprobs_options& opt) {
    cpu::token_logprobs_forward<T, A>(logits, targets, opt.temperature, opt.ignore_index,
                                      opt.num_threads, out.logprob, out.lse, out.entropy,
                                      out.sum_p_squared);
  }
  template <class T, class G, class A>
  static void backward(exec::host, matrix_view<const T> logits, std::span<const index_t> targets,
                       const token_logprobs_grads<A>& in, matrix_view<G> d_logits,
                       const token_logprobs_options& opt) {
    cpu::token_logprobs_backward<T, G, A>(logits, targets, opt.temperature, opt.ignore_index,
                                          opt.num_threads, in.lse, in.entropy, in.d_logprob,
                                          in.d_entropy, d_logits);
  }

  // Rows per block of the fused pass: about 1 MiB of logits per thread, so the block is still in
  // cache when the backward reads it again.
  template <class T>
  static index_t fused_block_rows(index_t cols, const token_logprobs_options& opt) {
    const index_t row_bytes = std::max<index_t>(1, cols * index_t(sizeof(T)));
    const index_t threads = std::max(1, opt.num_threads);
    return std::max<index_t>(1, (index_t(1) << 20) / row_bytes) * threads;
  }

  // The lse of one block when the caller does not ask for it (the backward needs it).
  template <class T, class A>
  static std::size_t fused_workspace_bytes(exec::host, index_t rows, index_t cols,
                                           bool lse_given, const token_logprobs_options& opt) {
    if (lse_given || rows <= 0) return 0;
    const index_t block = std::min(fused_block_rows<T>(cols, opt), rows);
    return workspace_size().add<A>(static_cast<std::size_t>(block));
  }

  // Forward, then the backward in place, over blocks of rows small enough to stay in cache.
  template <class T, class A>
  static void fused(exec::host, matrix_view<T> logits, std::span<const index_t> targets,
                    std::span<const A> d_logprob, const token_logprobs_outputs<A>& out,
                    const token_logprobs_options& opt, workspace ws) {
    const index_t n = logits.rows;
    const index_t block = fused_block_rows<T>(logits.cols, opt);
    const std::span<A> lse_block = ws.take<A>(
        out.lse.empty() ? static_cast<std::size_t>(std::min(block, n)) : 0,
        "token_logprobs_fused");
    auto part = [](auto s, index_t r0, index_t rows) {
      return s.empty() ? s
                       : s.subspan(static_cast<std::size_t>(r0), static_cast<std::size_t>(rows));
    };
    for (index_t r0 = 0; r0 < n; r0 += block) {
      const index_t rows = std::min(block, n - r0);
      const matrix_view<T> m(logits.row_data(r0), rows, logits.cols, logits.ld);
      const std::span<A> l = out.lse.empty() ? lse_block.first(static_cast<std::size_t>(rows))
                                             : part(out.lse, r0, rows);
      const auto t = part(targets, r0, rows);
      cpu::token_logprobs_forward<T, A>(m, t, opt.temperature, opt.ignore_index, opt.num_threads,
                                        part(out.logprob, r0, rows), l,
                                        part(out.entropy, r0, rows),
                                        part(out.sum_p_squared, r0, rows));
      cpu::token_logprobs_backward<T, T, A>(m, t, opt.temperature, opt.ignore_index,
                                            opt.num_threads, std::span<const A>(l), {},
                                            part(d_logprob, r0, rows), {}, m);
    }
  }
};

}  // namespace backend


POSTTRAIN_NAMESPACE_END

#ifdef POSTTRAIN_TOKEN_LOGPROBS_POP_DIAGNOSTIC
#pragma GCC diagnostic pop
#undef POSTTRAIN_TOKEN_LOGPROBS_POP_DIAGNOSTIC
#endif
