// CUDA fused linear + log-probs (backend/cuda/fused_linear_logprobs.cuh) against the host backend
// (exec::host) on the same random inputs: forward, backward (d_hidden, d_weight, with and without
// the entropy gradient), forward_backward, accumulation, chunk sizes (1, not dividing N, >= N,
// automatic), leading dimensions, ignored rows, temperature; float (fp32 GEMM, no TF32), double
// and bfloat16 (logits chunk stored in bf16 on the device, so looser tolerances), and the
// workspace contract. The validation tests run without a device; the rest skip with the reason
// when no CUDA device is available.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "cuda_testing.cuh"
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

template <class T>
void check(const spec& s, double rtol, double atol) {
  using A = pt::accum_t<T>;
  const auto hx = random_values<T>(static_cast<std::size_t>(s.n * s.ldx), s.scale, s.seed);
  const auto hw = random_values<T>(static_cast<std::size_t>(s.v * s.ldw), s.scale, s.seed + 1);
  std::mt19937_64 rng(s.seed + 2);
  std::uniform_int_distribution<index_t> col(0, s.v - 1);
  std::uniform_real_distribution<double> ud(-1.0, 1.0);
  std::vector<index_t> y(static_cast<std::size_t>(s.n));
  std::vector<A> glp(y.size()), gh(y.size(), A(0));
  for (std::size_t i = 0; i < y.size(); ++i) {
    y[i] = i % 7 == 2 ? -100 : col(rng);
    glp[i] = A(ud(rng));
    if (s.entropy_grad) gh[i] = A(ud(rng));
  }
  pt::fused_linear_logprobs_options opt;
  opt.temperature = s.tau;
  opt.chunk_size = s.chunk;
  opt.accumulate_d_weight = s.accumulate;
  const auto n = static_cast<std::size_t>(s.n);
  const std::size_t dw_size = static_cast<std::size_t>(s.v * s.h);
  const A dw_init = s.accumulate ? A(0.25) : A(0);

  // Host.
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
    EXPECT_EQ(bytes, pt::fused_linear_logprobs_workspace_bytes<T>(ex, s.n, s.h, s.v,
                                                                   pt::fused_linear_pass::forward,
                                                                   opt));
    std::size_t bb = 0, fb = 0;
    pt::fused_linear_logprobs_backward(ex, nullptr, bb, xv, wv, ty,
                                       pt::token_logprobs_grads<A>{lse.span(), ent.span(),
                                                                   g1.span(), g2.span()},
                                       dhv, gwv, opt);
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
  expect_close(widen(d_lp), widen(h_lp), rtol, atol, tag + " logprob");
  expect_close(widen(d_lse), widen(h_lse), rtol, atol, tag + " lse");
  expect_close(widen(d_ent), widen(h_ent), rtol, atol, tag + " entropy");
  expect_close(widen(f_lp), widen(h_lp), rtol, atol, tag + " fwd_bwd logprob");
  expect_close(widen(f_lse), widen(h_lse), rtol, atol, tag + " fwd_bwd lse");
  const double gatol = atol * static_cast<double>(s.h);
  expect_close(widen(d_dh), widen(h_dh), rtol, gatol, tag + " d_hidden");
  expect_close(widen(d_dw), widen(h_dw), rtol, gatol, tag + " d_weight");
  expect_close(widen(f_dh), widen(h_dh), rtol, gatol, tag + " fwd_bwd d_hidden");
  expect_close(widen(f_dw), widen(h_dw), rtol, gatol, tag + " fwd_bwd d_weight");
}

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
  for (index_t chunk : {1, 8, 37, 100, 0}) check<float>(spec{.chunk = chunk}, 1e-4, 2e-5);
}

TEST(CudaFusedLinearLogprobs, FloatTemperatureNoEntropyGradAccumulate) {
  POSTTRAIN_REQUIRE_DEVICE();
  check<float>(spec{.chunk = 5, .tau = 0.7, .entropy_grad = false, .accumulate = true}, 1e-4,
               2e-5);
}

TEST(CudaFusedLinearLogprobs, DoubleAgainstHost) {
  POSTTRAIN_REQUIRE_DEVICE();
  check<double>(spec{.n = 20, .chunk = 6}, 1e-10, 1e-12);
}

TEST(CudaFusedLinearLogprobs, Bfloat16AgainstHost) {
  POSTTRAIN_REQUIRE_DEVICE();
  // The device rounds the chunk's logits (and their gradient) to bf16; the host keeps float.
  check<Eigen::bfloat16>(spec{.h = 64, .v = 4099, .ldx = 64, .ldw = 64, .chunk = 16}, 2e-2, 1e-2);
}

TEST(CudaFusedLinearLogprobs, LargeVocabularySplitRowsChunk) {
  POSTTRAIN_REQUIRE_DEVICE();
  // V >= 16384 with a chunk below 2 × SMs takes the split-row token forward.
  check<float>(spec{.n = 12, .h = 16, .v = 32000, .ldx = 16, .ldw = 16, .chunk = 4}, 1e-4, 2e-5);
}
