// CUDA fused linear + log-probs (backend/cuda/fused_linear_logprobs.cuh) against an independent
// float64 reference (GEMMs and rows in double, gradients judged against the magnitude bound of
// their terms) and the host backend (exec::host) on the same random inputs: forward, backward
// (d_hidden, d_weight, with and without the entropy gradient), forward_backward, accumulation,
// chunk sizes (1, not dividing N, >= N, automatic), leading dimensions, ignored rows, temperature;
// float (fp32 GEMM, no TF32), double and bfloat16 (logits chunk stored in bf16 on the device), the
// argmax-at-1e4 row, N = 0 without a cuBLAS handle, CUDA graph capture with the caller's cuBLAS
// workspace, and the workspace contract. The validation tests, the reference-vs-host test and
// the bf16 tolerance test run without a device; the rest skip with the reason when no CUDA device
// is available.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "cuda_testing.cuh"
#include "float64_reference.hpp"
#include "posttrain/backend/cuda/fused_linear_logprobs.cuh"
#include "posttrain/cuda.cuh"
#include "posttrain/ops/fused_linear_logprobs.hpp"

namespace pt = posttrain;
namespace ptc = posttrain::backend::cuda;
using pt::index_t;

namespace {

using namespace cuda_testing;

struct spec {
  index_t n = 37, h = 24, v = 1001, ldx = 24, ldw = 26;
  index_t chunk = 8;
  double tau = 1.0, scale = 0.5;
  bool entropy_grad = true, accumulate = false;
  unsigned seed = 1;
};

template <class T>
std::vector<T> random_values(std::size_t count, double scale, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd(0.0, scale);
  std::vector<T> x(count);
  for (auto& e : x) e = T(static_cast<float>(nd(rng)));
  return x;
}

// Dense [rows, cols] of a strided host buffer.
template <class V>
std::vector<double> dense(const V& buf, index_t rows, index_t cols, index_t ld) {
  std::vector<double> r;
  for (index_t i = 0; i < rows; ++i)
    for (index_t j = 0; j < cols; ++j) r.push_back(to_d(buf[static_cast<std::size_t>(i * ld + j)]));
  return r;
}

// The float64 reference of one spec: forward per row (float64_reference.hpp), dZ, and the two
// gradient GEMMs in double, with the magnitude bound of each gradient element,
//   bound(dH[i,k]) = Σ_v |dZ|[i,v]·|W[v,k]|,   bound(dW[v,k]) = Σ_i |dZ|[i,v]·|X[i,k]| (+ |init|),
// |dZ| = |g_lp|(1[v = y] + p) + |g_H| p (|log p| + H): the sum of the magnitudes of every term
// (the classic forward-error bound of a sum). A gradient element is then correct within
// rtol·bound. Unlike an absolute tolerance (the former 1e-2 × H = 0.64 against gradients of ~1.5),
// this scales with each element's own terms, so dropping the entropy-gradient term or zeroing rows
// of d_weight fails it (Bfloat16ToleranceCanFail proves so without a GPU).
struct reference {
  std::vector<double> lp, lse, ent, dh, dw, dh_bound, dw_bound;
};

template <class T>
struct inputs {
  std::vector<T> x, w;
  std::vector<index_t> y;
  std::vector<double> glp, gh;  // values exactly representable in accum_t<T>
};

template <class T>
inputs<T> make_inputs(const spec& s) {
  using A = pt::accum_t<T>;
  inputs<T> in;
  in.x = random_values<T>(static_cast<std::size_t>(s.n * s.ldx), s.scale, s.seed);
  in.w = random_values<T>(static_cast<std::size_t>(s.v * s.ldw), s.scale, s.seed + 1);
  std::mt19937_64 rng(s.seed + 2);
  std::uniform_int_distribution<index_t> col(0, s.v - 1);
  std::uniform_real_distribution<double> ud(-1.0, 1.0);
  in.y.resize(static_cast<std::size_t>(s.n));
  in.glp.resize(in.y.size());
  in.gh.assign(in.y.size(), 0.0);
  for (std::size_t i = 0; i < in.y.size(); ++i) {
    in.y[i] = i % 7 == 2 ? -100 : col(rng);
    in.glp[i] = static_cast<double>(A(ud(rng)));
    const double g = ud(rng);
    if (s.entropy_grad) in.gh[i] = static_cast<double>(A(g));
  }
  return in;
}

template <class T>
reference make_reference(const spec& s, const inputs<T>& in, double dw_init) {
  const index_t n = s.n, h = s.h, v = s.v;
  reference r;
  r.lp.resize(n);
  r.lse.resize(n);
  r.ent.resize(n);
  std::vector<double> dz(static_cast<std::size_t>(n * v)), dzb(dz.size()), z(v);
  for (index_t i = 0; i < n; ++i) {
    for (index_t j = 0; j < v; ++j) {
      double a = 0;
      for (index_t k = 0; k < h; ++k) a += to_d(in.x[i * s.ldx + k]) * to_d(in.w[j * s.ldw + k]);
      z[j] = a;
    }
    const f64::row_result rr = f64::row(z.data(), v, in.y[i], s.tau);
    r.lp[i] = rr.logprob;
    r.lse[i] = rr.lse;
    r.ent[i] = rr.entropy;
    f64::row_grad(z.data(), v, in.y[i], s.tau, in.glp[i], in.gh[i], dz.data() + i * v);
    for (index_t j = 0; j < v; ++j) {
      if (in.y[i] == -100) continue;
      const double lp = z[j] / s.tau - rr.lse, p = std::exp(lp);
      dzb[i * v + j] = (std::fabs(in.glp[i]) * ((j == in.y[i] ? 1.0 : 0.0) + p) +
                        std::fabs(in.gh[i]) * p * (std::fabs(lp) + std::fabs(rr.entropy))) /
                       s.tau;
    }
  }
  r.dh.assign(static_cast<std::size_t>(n * h), 0.0);
  r.dh_bound = r.dh;
  r.dw.assign(static_cast<std::size_t>(v * h), dw_init);
  r.dw_bound.assign(r.dw.size(), std::fabs(dw_init));
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < v; ++j) {
      const double g = dz[i * v + j], b = dzb[i * v + j];
      if (g == 0.0 && b == 0.0) continue;
      for (index_t k = 0; k < h; ++k) {
        const double xw = to_d(in.w[j * s.ldw + k]), xx = to_d(in.x[i * s.ldx + k]);
        r.dh[i * h + k] += g * xw;
        r.dh_bound[i * h + k] += b * std::fabs(xw);
        r.dw[j * h + k] += g * xx;
        r.dw_bound[j * h + k] += b * std::fabs(xx);
      }
    }
  return r;
}

// Elements of got outside rtol·bound + atol of want.
inline int outside(const std::vector<double>& got, const std::vector<double>& want,
                   const std::vector<double>& bound, double rtol, double atol) {
  int bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= rtol * bound[i] + atol)) ++bad;
  return bad;
}

inline void expect_grad(const std::vector<double>& got, const reference& r, bool hidden,
                        double rtol, double atol, const std::string& what) {
  const auto& want = hidden ? r.dh : r.dw;
  const auto& bound = hidden ? r.dh_bound : r.dw_bound;
  ASSERT_EQ(got.size(), want.size()) << what;
  int reported = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double tol = rtol * bound[i] + atol;
    if (!(std::fabs(got[i] - want[i]) <= tol) && reported++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: got " << got[i] << " vs float64 " << want[i]
                    << " (tol " << tol << ")";
  }
  EXPECT_EQ(outside(got, want, bound, rtol, atol), 0) << what;
}

struct tolerances {
  double fwd_rtol, fwd_atol;  // logprob, lse, entropy against float64 (and the host)
  double dh_rtol, dw_rtol;    // gradients: × the magnitude bound
  double grad_atol;
};

template <class T>
void check(const spec& s, const tolerances& tol) {
  using A = pt::accum_t<T>;
  const inputs<T> in = make_inputs<T>(s);
  std::vector<A> glp(in.glp.begin(), in.glp.end()), gh(in.gh.begin(), in.gh.end());
  const auto& hx = in.x;
  const auto& hw = in.w;
  const auto& y = in.y;
  pt::fused_linear_logprobs_options opt;
  opt.temperature = s.tau;
  opt.chunk_size = s.chunk;
  opt.accumulate_d_weight = s.accumulate;
  const auto n = static_cast<std::size_t>(s.n);
  const std::size_t dw_size = static_cast<std::size_t>(s.v * s.h);
  const A dw_init = s.accumulate ? A(0.25) : A(0);
  const reference ref = make_reference(s, in, static_cast<double>(dw_init));

  // Host backend (the CPU result on the same inputs).
  const pt::matrix_view<const T> hxv{hx.data(), s.n, s.h, s.ldx}, hwv{hw.data(), s.v, s.h, s.ldw};
  std::vector<A> h_lp(n), h_lse(n), h_ent(n);
  pt::fused_linear_logprobs(pt::exec::host{}, hxv, hwv, std::span<const index_t>(y),
                            pt::token_logprobs_outputs<A>{h_lp, h_lse, h_ent}, opt);
  std::vector<A> h_dh(static_cast<std::size_t>(s.n * s.h)), h_dw(dw_size, dw_init);
  pt::token_logprobs_grads<A> hin{h_lse, h_ent, glp, {}};
  if (s.entropy_grad) hin.d_entropy = gh;
  pt::fused_linear_logprobs_backward(pt::exec::host{}, hxv, hwv, std::span<const index_t>(y), hin,
                                     pt::matrix_view<A>{h_dh.data(), s.n, s.h},
                                     pt::matrix_view<A>{h_dw.data(), s.v, s.h}, opt);

  // Device.
  stream_guard st;
  ptc::cublas_handle blas;
  opt.blas_handle = blas.get();
  const pt::exec::cuda ex{st.s};
  std::vector<A> d_lp(n), d_lse(n), d_ent(n), f_lp(n), f_lse(n);
  std::vector<A> d_dh(h_dh.size()), d_dw(dw_size), f_dh(h_dh.size()), f_dw(dw_size);
  {
    ptc::device_buffer<T> dx(hx.size(), st.s), dw(hw.size(), st.s);
    ptc::device_buffer<index_t> dy(n, st.s);
    ptc::device_buffer<A> lp(n, st.s), lse(n, st.s), ent(n, st.s), g1(n, st.s), g2(n, st.s);
    ptc::device_buffer<A> dh(h_dh.size(), st.s), gw(dw_size, st.s);
    dx.copy_from_host(hx);
    dw.copy_from_host(hw);
    dy.copy_from_host(y);
    g1.copy_from_host(glp);
    g2.copy_from_host(gh);
    const pt::matrix_view<const T> xv{dx.data(), s.n, s.h, s.ldx}, wv{dw.data(), s.v, s.h, s.ldw};
    const pt::matrix_view<A> dhv{dh.data(), s.n, s.h}, gwv{gw.data(), s.v, s.h};
    const std::span<const index_t> ty(dy.data(), n);

    std::size_t bytes = 0;
    pt::fused_linear_logprobs(ex, nullptr, bytes, xv, wv, ty,
                              pt::token_logprobs_outputs<A>{lp.span(), lse.span(), ent.span()},
                              opt);
    EXPECT_EQ(bytes, pt::fused_linear_logprobs_workspace_bytes<T>(
                         ex, s.n, s.h, s.v, pt::fused_linear_pass::forward, opt));
    std::size_t bb = 0, fb = 0;
    pt::fused_linear_logprobs_backward(
        ex, nullptr, bb, xv, wv, ty,
        pt::token_logprobs_grads<A>{lse.span(), ent.span(), g1.span(), g2.span()}, dhv, gwv, opt);
    pt::fused_linear_logprobs_forward_backward(
        ex, nullptr, fb, xv, wv, ty, std::span<const A>(g1.span()), std::span<const A>(g2.span()),
        pt::token_logprobs_outputs<A>{lp.span()}, dhv, gwv, opt);
    ptc::device_buffer<std::byte> ws(std::max({bytes, bb, fb}), st.s);

    pt::fused_linear_logprobs(ex, ws.data(), bytes, xv, wv, ty,
                              pt::token_logprobs_outputs<A>{lp.span(), lse.span(), ent.span()},
                              opt);
    lp.copy_to_host(d_lp);
    lse.copy_to_host(d_lse);
    ent.copy_to_host(d_ent);
    std::vector<A> init(dw_size, dw_init);
    gw.copy_from_host(init);
    pt::token_logprobs_grads<A> din{lse.span(), ent.span(), g1.span(), {}};
    if (s.entropy_grad) din.d_entropy = g2.span();
    pt::fused_linear_logprobs_backward(ex, ws.data(), bb, xv, wv, ty, din, dhv, gwv, opt);
    dh.copy_to_host(d_dh);
    gw.copy_to_host(d_dw);
    st.sync();

    // forward_backward into fresh outputs.
    gw.copy_from_host(init);
    pt::fused_linear_logprobs_forward_backward(
        ex, ws.data(), fb, xv, wv, ty, std::span<const A>(g1.span()),
        s.entropy_grad ? std::span<const A>(g2.span()) : std::span<const A>(),
        pt::token_logprobs_outputs<A>{lp.span(), lse.span()}, dhv, gwv, opt);
    lp.copy_to_host(f_lp);
    lse.copy_to_host(f_lse);
    dh.copy_to_host(f_dh);
    gw.copy_to_host(f_dw);
    st.sync();
  }
  const std::string tag = "n=" + std::to_string(s.n) + " chunk=" + std::to_string(s.chunk);
  const double rf = tol.fwd_rtol, af = tol.fwd_atol;
  // Against the float64 reference.
  f64::expect_near(widen(d_lp), ref.lp, rf, af, tag + " logprob");
  f64::expect_near(widen(d_lse), ref.lse, rf, af, tag + " lse");
  f64::expect_near(widen(d_ent), ref.ent, rf, af, tag + " entropy");
  f64::expect_near(widen(f_lp), ref.lp, rf, af, tag + " fwd_bwd logprob");
  f64::expect_near(widen(f_lse), ref.lse, rf, af, tag + " fwd_bwd lse");
  expect_grad(widen(d_dh), ref, true, tol.dh_rtol, tol.grad_atol, tag + " d_hidden");
  expect_grad(widen(d_dw), ref, false, tol.dw_rtol, tol.grad_atol, tag + " d_weight");
  expect_grad(widen(f_dh), ref, true, tol.dh_rtol, tol.grad_atol, tag + " fwd_bwd d_hidden");
  expect_grad(widen(f_dw), ref, false, tol.dw_rtol, tol.grad_atol, tag + " fwd_bwd d_weight");
  // And the host backend on the same inputs (the reference checks it too: tests/ops).
  expect_close(widen(d_lp), widen(h_lp), rf, af, tag + " logprob vs host");
  expect_close(widen(d_ent), widen(h_ent), rf, af, tag + " entropy vs host");
  expect_grad(widen(h_dh), ref, true, tol.dh_rtol, tol.grad_atol, tag + " host d_hidden");
  expect_grad(widen(h_dw), ref, false, tol.dw_rtol, tol.grad_atol, tag + " host d_weight");
}

const tolerances float_tol{1e-4, 2e-5, 1e-4, 1e-4, 1e-7};
// bf16 (the chunk's logits and their gradient stored in bf16, fp32 accumulation): sized by a CPU
// simulation of exactly that path against this float64 reference over 20 seeds of bf16_spec,
// whose worst |error| / bound was 0.0047 for d_hidden and 0.021 for d_weight (the bf16 rounding
// of z moves log p by up to |z|·2⁻⁹). Forward: |z| ≤ ~8 gives log p errors up to ~0.02.
const tolerances bf16_tol{2e-2, 2e-2, 2e-2, 5e-2, 0.0};
const spec bf16_spec{.h = 64, .v = 4099, .ldx = 64, .ldw = 64, .chunk = 16};

}  // namespace

TEST(CudaFusedLinearLogprobs, ValidatesWithoutTouchingTheDevice) {
  // Validation happens on the host before any CUDA call: these run without a GPU.
  std::vector<float> x(6, 0.0f), w(12, 0.0f), out(2, -7.0f);
  std::vector<index_t> y(2, 0);
  const pt::exec::cuda ex{nullptr};
  const pt::matrix_view<const float> xv{x.data(), 2, 3}, wv{w.data(), 4, 3};
  std::size_t bytes = 0;
  // No cuBLAS handle.
  EXPECT_THROW(pt::fused_linear_logprobs(ex, nullptr, bytes, xv, wv, std::span<const index_t>(y),
                                         pt::token_logprobs_outputs<float>{out}),
               pt::error);
  pt::fused_linear_logprobs_options opt;
  opt.blas_handle = reinterpret_cast<void*>(std::uintptr_t(1));  // never used: validation fails
  std::vector<index_t> y3(3, 0);
  EXPECT_THROW(pt::fused_linear_logprobs(ex, nullptr, bytes, xv, wv,
                                         std::span<const index_t>(y3),
                                         pt::token_logprobs_outputs<float>{out}, opt),
               pt::error);
  const pt::matrix_view<const float> bad_w{w.data(), 3, 4};  // H mismatch
  EXPECT_THROW(pt::fused_linear_logprobs(ex, nullptr, bytes, xv, bad_w,
                                         std::span<const index_t>(y),
                                         pt::token_logprobs_outputs<float>{out}, opt),
               pt::error);
  // A size query that passes validation writes the size and touches nothing.
  pt::fused_linear_logprobs(ex, nullptr, bytes, xv, wv, std::span<const index_t>(y),
                            pt::token_logprobs_outputs<float>{out}, opt);
  EXPECT_EQ(bytes, pt::fused_linear_logprobs_workspace_bytes<float>(
                       ex, 2, 3, 4, pt::fused_linear_pass::forward, opt));
  EXPECT_GE(bytes, std::size_t(2 * 4 * 4));
  std::size_t small = bytes - 1;
  std::vector<std::byte> ws(bytes);
  EXPECT_THROW(pt::fused_linear_logprobs(ex, ws.data(), small, xv, wv,
                                         std::span<const index_t>(y),
                                         pt::token_logprobs_outputs<float>{out}, opt),
               pt::error);
  EXPECT_EQ(out, std::vector<float>(2, -7.0f));
  // The device workspace is bounded by the chunk: c·V·sizeof(T), independent of N.
  opt.chunk_size = 64;
  const auto a = pt::fused_linear_logprobs_workspace_bytes<Eigen::bfloat16>(
      ex, 1000, 4096, 128256, pt::fused_linear_pass::backward, opt);
  const auto b = pt::fused_linear_logprobs_workspace_bytes<Eigen::bfloat16>(
      ex, 100000, 4096, 128256, pt::fused_linear_pass::backward, opt);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a, std::size_t(64) * 128256 * 2 + 256);
}

TEST(CudaFusedLinearLogprobs, FloatAgainstHost) {
  POSTTRAIN_REQUIRE_DEVICE();
  for (index_t chunk : {1, 8, 37, 100, 0}) check<float>(spec{.chunk = chunk}, float_tol);
}

TEST(CudaFusedLinearLogprobs, FloatTemperatureNoEntropyGradAccumulate) {
  POSTTRAIN_REQUIRE_DEVICE();
  check<float>(spec{.chunk = 5, .tau = 0.7, .entropy_grad = false, .accumulate = true}, float_tol);
}

TEST(CudaFusedLinearLogprobs, DoubleAgainstHost) {
  POSTTRAIN_REQUIRE_DEVICE();
  check<double>(spec{.n = 20, .chunk = 6}, tolerances{1e-12, 1e-12, 1e-10, 1e-10, 1e-14});
}

// Runs without a GPU: the float64 reference of these tests agrees with the host backend (a wrong
// reference would otherwise only show on a GPU).
TEST(CudaFusedLinearLogprobs, Float64ReferenceAgreesWithTheHostBackend) {
  auto host_vs_reference = [](const spec& s, const tolerances& tol, auto type_tag) {
    using T = decltype(type_tag);
    using A = pt::accum_t<T>;
    const inputs<T> in = make_inputs<T>(s);
    const reference ref = make_reference(s, in, 0.0);
    pt::fused_linear_logprobs_options opt;
    opt.temperature = s.tau;
    opt.chunk_size = s.chunk;
    const auto n = static_cast<std::size_t>(s.n);
    const pt::matrix_view<const T> xv{in.x.data(), s.n, s.h, s.ldx},
        wv{in.w.data(), s.v, s.h, s.ldw};
    std::vector<A> lp(n), lse(n), ent(n), dh(static_cast<std::size_t>(s.n * s.h)),
        dw(static_cast<std::size_t>(s.v * s.h));
    const std::vector<A> glp(in.glp.begin(), in.glp.end()), gh(in.gh.begin(), in.gh.end());
    pt::fused_linear_logprobs(pt::exec::host{}, xv, wv, std::span<const index_t>(in.y),
                              pt::token_logprobs_outputs<A>{lp, lse, ent}, opt);
    pt::fused_linear_logprobs_backward(pt::exec::host{}, xv, wv, std::span<const index_t>(in.y),
                                       pt::token_logprobs_grads<A>{lse, ent, glp, gh},
                                       pt::matrix_view<A>{dh.data(), s.n, s.h},
                                       pt::matrix_view<A>{dw.data(), s.v, s.h}, opt);
    f64::expect_near(widen(lp), ref.lp, tol.fwd_rtol, tol.fwd_atol, "host logprob");
    f64::expect_near(widen(lse), ref.lse, tol.fwd_rtol, tol.fwd_atol, "host lse");
    f64::expect_near(widen(ent), ref.ent, tol.fwd_rtol, tol.fwd_atol, "host entropy");
    expect_grad(widen(dh), ref, true, tol.dh_rtol, tol.grad_atol, "host d_hidden");
    expect_grad(widen(dw), ref, false, tol.dw_rtol, tol.grad_atol, "host d_weight");
  };
  host_vs_reference(spec{.chunk = 8, .tau = 0.7}, float_tol, float{});
  host_vs_reference(spec{.n = 20, .chunk = 6}, tolerances{1e-12, 1e-12, 1e-10, 1e-10, 1e-14},
                    double{});
  host_vs_reference(bf16_spec, bf16_tol, Eigen::bfloat16{});
}

// Runs without a GPU: the bf16 tolerance must reject a result that dropped the entropy-gradient
// term or zeroed most of d_weight (the former H-scaled tolerance accepted both). "without" is
// what a device that ignored d_entropy would return, judged against the right reference.
TEST(CudaFusedLinearLogprobs, Bfloat16ToleranceCanFail) {
  const auto in = make_inputs<Eigen::bfloat16>(bf16_spec);
  const reference with = make_reference(bf16_spec, in, 0.0);
  auto in0 = in;
  std::fill(in0.gh.begin(), in0.gh.end(), 0.0);
  const reference without = make_reference(bf16_spec, in0, 0.0);
  const auto& t = bf16_tol;
  const int dh_bad = outside(without.dh, with.dh, with.dh_bound, t.dh_rtol, t.grad_atol);
  const int dw_bad = outside(without.dw, with.dw, with.dw_bound, t.dw_rtol, t.grad_atol);
  EXPECT_GT(dh_bad, static_cast<int>(with.dh.size() / 20)) << "no-entropy d_hidden accepted";
  EXPECT_GT(dw_bad, static_cast<int>(with.dw.size() / 10)) << "no-entropy d_weight accepted";
  // Rows of d_weight zeroed except every 10th.
  std::vector<double> zeroed(with.dw.size(), 0.0);
  for (index_t j = 0; j < bf16_spec.v; j += 10)
    for (index_t k = 0; k < bf16_spec.h; ++k)
      zeroed[j * bf16_spec.h + k] = with.dw[j * bf16_spec.h + k];
  EXPECT_GT(outside(zeroed, with.dw, with.dw_bound, t.dw_rtol, t.grad_atol),
            static_cast<int>(with.dw.size() / 4))
      << "a d_weight zeroed in 9 rows of 10 accepted";
  // The reference itself passes its own tolerance, and the entropy term is there.
  EXPECT_EQ(outside(with.dw, with.dw, with.dw_bound, t.dw_rtol, t.grad_atol), 0);
  EXPECT_NE(with.dh, without.dh);
}

TEST(CudaFusedLinearLogprobs, Bfloat16AgainstFloat64AndHost) {
  POSTTRAIN_REQUIRE_DEVICE();
  // The device rounds the chunk's logits (and their gradient) to bf16; the host keeps float.
  // With and without d_entropy: Bfloat16ToleranceCanFail shows the two references differ beyond
  // this tolerance, so passing both means the device applies d_entropy exactly when given.
  check<Eigen::bfloat16>(bf16_spec, bf16_tol);
  spec no_h = bf16_spec;
  no_h.entropy_grad = false;
  check<Eigen::bfloat16>(no_h, bf16_tol);
}

TEST(CudaFusedLinearLogprobs, LargeVocabularySplitRowsChunk) {
  POSTTRAIN_REQUIRE_DEVICE();
  // V >= 16384 with a chunk below 2 × SMs takes the split-row token forward.
  check<float>(spec{.n = 12, .h = 16, .v = 32000, .ldx = 16, .ldw = 16, .chunk = 4}, float_tol);
}

// The argmax-at-1e4 row through the fused path (H = 1, hidden = 1: the chunk's logits are the
// weight column exactly): log p_y = −log(1 + e^−10) = −4.54e-5, which the finish order
// z_y − (m + log s) rounded to 0. One CTA per row (V = 3001) and split rows (V = 20000, chunk 2 <
// 2 × SMs); forward, and forward_backward with and without d_entropy (fused kernel / forward +
// backward kernels).
TEST(CudaFusedLinearLogprobs, ArgmaxAt1e4KeepsItsDigits) {
  POSTTRAIN_REQUIRE_DEVICE();
  for (const index_t v : {index_t(3001), index_t(20000)}) {
    const index_t n = 3;
    std::vector<float> w(static_cast<std::size_t>(v)), x(n, 1.0f);
    for (index_t j = 0; j < v; ++j) w[j] = static_cast<float>(f64::uniform(j + 1, 3.0));
    w[17] = 1e4f;
    w[v - 2] = 9990.0f;
    const std::vector<index_t> y{17, v - 2, 5};
    std::vector<double> wd(w.begin(), w.end()), ref(n);
    for (index_t i = 0; i < n; ++i) ref[i] = f64::row(wd.data(), v, y[i], 1.0).logprob;
    EXPECT_NEAR(ref[0], -std::log1p(std::exp(-10.0)), 1e-12);
    stream_guard st;
    ptc::cublas_handle blas;
    pt::fused_linear_logprobs_options opt;
    opt.blas_handle = blas.get();
    opt.chunk_size = 2;
    const pt::exec::cuda ex{st.s};
    std::vector<float> lp(n), lp_fb(n), lp_fbh(n);
    {
      ptc::device_buffer<float> dx(x.size(), st.s), dw(w.size(), st.s), out(n, st.s), lse(n, st.s),
          ent(n, st.s), g(n, st.s), dh(n, st.s), gw(w.size(), st.s);
      ptc::device_buffer<index_t> dy(n, st.s);
      dx.copy_from_host(x);
      dw.copy_from_host(w);
      dy.copy_from_host(y);
      const std::vector<float> ones(n, 1.0f);
      g.copy_from_host(ones);
      const pt::matrix_view<const float> xv{dx.data(), n, 1}, wv{dw.data(), v, 1};
      const std::span<const index_t> ty(dy.data(), static_cast<std::size_t>(n));
      std::size_t bytes = 0;
      pt::fused_linear_logprobs_forward_backward(
          ex, nullptr, bytes, xv, wv, ty, std::span<const float>(g.span()),
          std::span<const float>(g.span()), pt::token_logprobs_outputs<float>{out.span()},
          pt::matrix_view<float>{dh.data(), n, 1}, pt::matrix_view<float>{gw.data(), v, 1}, opt);
      ptc::device_buffer<std::byte> ws(bytes, st.s);
      pt::fused_linear_logprobs(ex, ws.data(), bytes, xv, wv, ty,
                                pt::token_logprobs_outputs<float>{out.span()}, opt);
      out.copy_to_host(lp);
      st.sync();
      pt::fused_linear_logprobs_forward_backward(
          ex, ws.data(), bytes, xv, wv, ty, std::span<const float>(g.span()), {},
          pt::token_logprobs_outputs<float>{out.span()}, pt::matrix_view<float>{dh.data(), n, 1},
          pt::matrix_view<float>{gw.data(), v, 1}, opt);
      out.copy_to_host(lp_fb);
      st.sync();
      pt::fused_linear_logprobs_forward_backward(
          ex, ws.data(), bytes, xv, wv, ty, std::span<const float>(g.span()),
          std::span<const float>(g.span()),
          pt::token_logprobs_outputs<float>{out.span(), lse.span(), ent.span()},
          pt::matrix_view<float>{dh.data(), n, 1}, pt::matrix_view<float>{gw.data(), v, 1}, opt);
      out.copy_to_host(lp_fbh);
      st.sync();
    }
    // log s carries its own float rounding (~6e-8): 3e-7 absolute; the old order was 4.5e-5 off.
    const std::string tag = "V=" + std::to_string(v);
    f64::expect_near(widen(lp), ref, 2e-6, 3e-7, tag + " forward logprob");
    f64::expect_near(widen(lp_fb), ref, 2e-6, 3e-7, tag + " forward_backward logprob");
    f64::expect_near(widen(lp_fbh), ref, 2e-6, 3e-7, tag + " forward_backward (d_entropy) logprob");
  }
}

// N = 0 with a null cuBLAS handle (allowed by the front end): the backward passes write zeros to
// d_weight (or leave it, when accumulating) instead of failing on the handle.
TEST(CudaFusedLinearLogprobs, EmptyBatchWithoutHandleZeroesDWeight) {
  POSTTRAIN_REQUIRE_DEVICE();
  const index_t h = 8, v = 50;
  stream_guard st;
  const pt::exec::cuda ex{st.s};
  pt::fused_linear_logprobs_options opt;  // blas_handle stays null
  ptc::device_buffer<float> dx(h, st.s), dw(static_cast<std::size_t>(v * h), st.s),
      gw(static_cast<std::size_t>(v * h), st.s), dh(1, st.s), g(1, st.s), lse(1, st.s), lp(1, st.s);
  ptc::device_buffer<index_t> dy(1, st.s);
  const pt::matrix_view<const float> xv{dx.data(), 0, h}, wv{dw.data(), v, h};
  const std::span<const index_t> ty(dy.data(), 0);
  const pt::matrix_view<float> dhv{dh.data(), 0, h}, gwv{gw.data(), v, h};
  const std::vector<float> sevens(static_cast<std::size_t>(v * h), 7.0f);
  std::vector<float> got(sevens.size());
  std::size_t bytes = 0;
  const pt::token_logprobs_grads<float> in{
      std::span<const float>(lse.data(), 0), {}, std::span<const float>(g.data(), 0), {}};
  pt::fused_linear_logprobs_backward(ex, nullptr, bytes, xv, wv, ty, in, dhv, gwv, opt);
  ptc::device_buffer<std::byte> ws(bytes, st.s);
  for (const bool accumulate : {false, true}) {
    opt.accumulate_d_weight = accumulate;
    const float want = accumulate ? 7.0f : 0.0f;
    gw.copy_from_host(sevens);
    ASSERT_NO_THROW(
        pt::fused_linear_logprobs_backward(ex, ws.data(), bytes, xv, wv, ty, in, dhv, gwv, opt));
    gw.copy_to_host(got);
    st.sync();
    EXPECT_EQ(got, std::vector<float>(got.size(), want)) << "backward, accumulate " << accumulate;
    gw.copy_from_host(sevens);
    std::size_t fb = bytes;
    ASSERT_NO_THROW(pt::fused_linear_logprobs_forward_backward(
        ex, ws.data(), fb, xv, wv, ty, std::span<const float>(g.data(), 0), {},
        pt::token_logprobs_outputs<float>{std::span<float>(lp.data(), 0)}, dhv, gwv, opt));
    gw.copy_to_host(got);
    st.sync();
    EXPECT_EQ(got, std::vector<float>(got.size(), want))
        << "forward_backward, accumulate " << accumulate;
  }
}

// The fused linear path captured into a CUDA graph (global capture mode, as PyTorch's
// torch.cuda.graph) with the caller's cuBLAS workspace: the handle is bound to the stream and
// given a workspace before capture; the call must not rebind it (cublasSetStream would reset the
// workspace), and the split-row chunk's stream-ordered scratch becomes graph memory nodes. Two
// replays give the eager result bit for bit, within tolerance of the float64 reference.
TEST(CudaFusedLinearLogprobs, GraphCaptureWithUserWorkspace) {
  POSTTRAIN_REQUIRE_DEVICE();
  // With d_entropy: forward + backward kernels; without: the fused kernel (its grid comes from
  // the occupancy query, made while the stream is captured).
  for (const bool with_h : {true, false}) {
    spec s{.n = 64, .h = 32, .v = 20000, .ldx = 32, .ldw = 32, .chunk = 16};
    s.entropy_grad = with_h;
    const std::string tag = with_h ? "captured (d_entropy) " : "captured (fused) ";
    const inputs<float> in = make_inputs<float>(s);
    const reference ref = make_reference(s, in, 0.0);
    const auto n = static_cast<std::size_t>(s.n);
    const std::vector<float> glp(in.glp.begin(), in.glp.end()), gh(in.gh.begin(), in.gh.end());
    stream_guard st;
    ptc::cublas_handle blas;
    ptc::cublas_check(cublasSetStream(blas, st.s), "cublasSetStream");
    const std::size_t blas_ws_bytes = std::size_t(32) << 20;
    ptc::device_buffer<std::byte> blas_ws(blas_ws_bytes, st.s);
    ptc::cublas_check(cublasSetWorkspace(blas, blas_ws.data(), blas_ws_bytes),
                      "cublasSetWorkspace");
    pt::fused_linear_logprobs_options opt;
    opt.blas_handle = blas.get();
    opt.chunk_size = s.chunk;
    const pt::exec::cuda ex{st.s};
    ptc::device_buffer<float> dx(in.x.size(), st.s), dw(in.w.size(), st.s), lp(n, st.s),
        lse(n, st.s), ent(n, st.s), g1(n, st.s), g2(n, st.s),
        dh(static_cast<std::size_t>(s.n * s.h), st.s),
        gw(static_cast<std::size_t>(s.v * s.h), st.s);
    ptc::device_buffer<index_t> dy(n, st.s);
    dx.copy_from_host(in.x);
    dw.copy_from_host(in.w);
    dy.copy_from_host(in.y);
    g1.copy_from_host(glp);
    g2.copy_from_host(gh);
    const pt::matrix_view<const float> xv{dx.data(), s.n, s.h, s.ldx},
        wv{dw.data(), s.v, s.h, s.ldw};
    const std::span<const index_t> ty(dy.data(), n);
    std::size_t bytes = 0;
    auto run = [&](void* workspace) {
      pt::fused_linear_logprobs_forward_backward(
          ex, workspace, bytes, xv, wv, ty, std::span<const float>(g1.span()),
          with_h ? std::span<const float>(g2.span()) : std::span<const float>(),
          pt::token_logprobs_outputs<float>{lp.span(), lse.span(), ent.span()},
          pt::matrix_view<float>{dh.data(), s.n, s.h}, pt::matrix_view<float>{gw.data(), s.v, s.h},
          opt);
    };
    run(nullptr);
    ptc::device_buffer<std::byte> ws(bytes, st.s);
    auto results = [&] {
      std::vector<float> a(n), b(dh.size()), c(gw.size());
      lp.copy_to_host(a);
      dh.copy_to_host(b);
      gw.copy_to_host(c);
      st.sync();
      return std::make_tuple(a, b, c);
    };
    run(ws.data());
    const auto eager = results();

    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    ptc::cuda_check(cudaStreamBeginCapture(st.s, cudaStreamCaptureModeGlobal), "BeginCapture");
    try {
      run(ws.data());
    } catch (...) {
      (void)cudaStreamEndCapture(st.s, &graph);
      throw;
    }
    ptc::cuda_check(cudaStreamEndCapture(st.s, &graph), "cudaStreamEndCapture");
    ptc::cuda_check(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
    cudaStream_t bound = nullptr;
    ptc::cublas_check(cublasGetStream(blas, &bound), "cublasGetStream");
    EXPECT_EQ(bound, st.s) << tag << "the call moved the caller's handle to another stream";
    for (int replay = 0; replay < 2; ++replay) {
      ptc::cuda_check(cudaMemsetAsync(lp.data(), 0, n * sizeof(float), st.s), "memset");
      ptc::cuda_check(cudaMemsetAsync(gw.data(), 0, gw.size() * sizeof(float), st.s), "memset");
      ptc::cuda_check(cudaGraphLaunch(exec, st.s), "cudaGraphLaunch");
      const auto replayed = results();
      EXPECT_EQ(std::get<0>(replayed), std::get<0>(eager)) << tag << "logprob, replay " << replay;
      EXPECT_EQ(std::get<1>(replayed), std::get<1>(eager)) << tag << "d_hidden, replay " << replay;
      EXPECT_EQ(std::get<2>(replayed), std::get<2>(eager)) << tag << "d_weight, replay " << replay;
    }
    (void)cudaGraphExecDestroy(exec);
    (void)cudaGraphDestroy(graph);
    f64::expect_near(widen(std::get<0>(eager)), ref.lp, float_tol.fwd_rtol, float_tol.fwd_atol,
                     tag + "logprob");
    expect_grad(widen(std::get<1>(eager)), ref, true, float_tol.dh_rtol, float_tol.grad_atol,
                tag + "d_hidden");
    expect_grad(widen(std::get<2>(eager)), ref, false, float_tol.dw_rtol, float_tol.grad_atol,
                tag + "d_weight");
  }
}
