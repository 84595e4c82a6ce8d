// CUDA token_logprobs (backend/cuda/token_logprobs.cuh) against the CPU op (exec::host) on the
// same random inputs: forward outputs, backward (with and without the entropy gradient, in place
// and out of place) and the fused forward + backward. float, bfloat16 and double logits; V not a
// multiple of the vector width, a leading dimension that misaligns rows, N = 1, ignored rows,
// extreme logits, a Llama-3 sized vocabulary. The validation tests run without a device; the rest
// skip with the reason when no CUDA device is available.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "cuda_testing.cuh"
#include "posttrain/backend/cuda/token_logprobs.cuh"
#include "posttrain/cuda.cuh"

namespace pt = posttrain;
namespace ptc = posttrain::backend::cuda;
using pt::index_t;

namespace {

using namespace cuda_testing;

// The tests name .ignored even when empty: nvcc passes designated initialisers on to the host
// compiler as positional ones, and g++ -Wextra warns about an omitted std::vector member.
struct problem_spec {
  index_t n = 4, v = 1001, ld = 1001;
  double scale = 3.0;           // logits ~ scale · N(0, 1)
  double temperature = 1.0;
  std::vector<index_t> ignored;  // rows set to ignore_index (their logits are NaN)
  bool extreme = false;          // every row has ±1e4 entries
  unsigned seed = 1;
};

template <class T>
struct problem {
  std::vector<T> logits;
  std::vector<index_t> targets;
};

template <class T>
problem<T> make_problem(const problem_spec& s) {
  std::mt19937_64 rng(s.seed);
  std::normal_distribution<double> nd(0.0, s.scale);
  std::uniform_int_distribution<index_t> col(0, s.v - 1);
  problem<T> p;
  p.logits.assign(static_cast<std::size_t>(s.n * s.ld), T(std::nanf("")));  // padding is NaN
  p.targets.resize(static_cast<std::size_t>(s.n));
  for (index_t i = 0; i < s.n; ++i) {
    for (index_t j = 0; j < s.v; ++j) p.logits[i * s.ld + j] = T(nd(rng));
    if (s.extreme) {
      p.logits[i * s.ld + col(rng)] = T(1e4);
      p.logits[i * s.ld + col(rng)] = T(-1e4);
      p.logits[i * s.ld + col(rng)] = T(9990.0);
    }
    p.targets[i] = col(rng);
  }
  for (index_t i : s.ignored) {
    p.targets[i] = -100;
    for (index_t j = 0; j < s.v; ++j) p.logits[i * s.ld + j] = T(std::nanf(""));
  }
  return p;
}

// Runs forward, backward (in place when in_place) and fused on the device and the host; compares.
template <class T>
void check_against_host(const problem_spec& s, double rtol_fwd, double rtol_grad,
                        bool with_entropy_grad, bool in_place) {
  using A = pt::accum_t<T>;
  const problem<T> p = make_problem<T>(s);
  const auto n = static_cast<std::size_t>(s.n);
  pt::token_logprobs_options opt;
  opt.temperature = s.temperature;

  // Host reference.
  std::vector<A> h_lp(n), h_lse(n), h_h(n), h_sp(n);
  const pt::matrix_view<const T> hl{p.logits.data(), s.n, s.v, s.ld};
  pt::token_logprobs(pt::exec::host{}, hl, std::span<const index_t>(p.targets),
                     pt::token_logprobs_outputs<A>{h_lp, h_lse, h_h, h_sp}, opt);
  std::mt19937_64 rng(s.seed + 7);
  std::uniform_real_distribution<double> ud(-1.0, 1.0);
  std::vector<A> g_lp(n), g_h(n);
  for (std::size_t i = 0; i < n; ++i) {
    g_lp[i] = A(ud(rng));
    g_h[i] = with_entropy_grad ? A(ud(rng)) : A(0);
  }
  std::vector<T> h_grad(p.logits.size(), T(0));
  const pt::matrix_view<T> hg{h_grad.data(), s.n, s.v, s.ld};
  pt::token_logprobs_grads<A> hin{h_lse, h_h, g_lp, {}};
  if (with_entropy_grad) hin.d_entropy = g_h;
  pt::token_logprobs_backward(pt::exec::host{}, hl, std::span<const index_t>(p.targets), hin, hg,
                              opt);

  // Device.
  stream_guard st;
  std::vector<A> d_lp_h(n), d_lse_h(n), d_h_h(n), d_sp_h(n);
  std::vector<T> d_grad_h(p.logits.size());
  std::vector<A> f_lp_h(n), f_lse_h(n), f_h_h(n);
  std::vector<T> f_grad_h(p.logits.size());
  {
    ptc::device_buffer<T> dl(p.logits.size(), st.s), dg(p.logits.size(), st.s),
        df(p.logits.size(), st.s);
    ptc::device_buffer<index_t> dt(n, st.s);
    ptc::device_buffer<A> lp(n, st.s), lse(n, st.s), h(n, st.s), sp(n, st.s), glp(n, st.s),
        gh(n, st.s), flp(n, st.s), flse(n, st.s), fh(n, st.s);
    dl.copy_from_host(p.logits);
    df.copy_from_host(p.logits);
    dg.copy_from_host(p.logits);  // padding keeps the same (NaN) values as the host's input
    dt.copy_from_host(p.targets);
    glp.copy_from_host(g_lp);
    gh.copy_from_host(g_h);
    const pt::exec::cuda ex{st.s};
    const pt::matrix_view<const T> dlv{dl.data(), s.n, s.v, s.ld};
    pt::token_logprobs(ex, dlv, dt.span(),
                       pt::token_logprobs_outputs<A>{lp.span(), lse.span(), h.span(), sp.span()},
                       opt);
    pt::token_logprobs_grads<A> din{lse.span(), h.span(), glp.span(), {}};
    if (with_entropy_grad) din.d_entropy = gh.span();
    if (in_place) {
      pt::token_logprobs_backward(ex, pt::matrix_view<T>{dl.data(), s.n, s.v, s.ld}, dt.span(),
                                  din, pt::matrix_view<T>{dl.data(), s.n, s.v, s.ld}, opt);
      dl.copy_to_host(d_grad_h);
    } else {
      pt::token_logprobs_backward(ex, dlv, dt.span(), din,
                                  pt::matrix_view<T>{dg.data(), s.n, s.v, s.ld}, opt);
      dg.copy_to_host(d_grad_h);
    }
    lp.copy_to_host(d_lp_h);
    lse.copy_to_host(d_lse_h);
    h.copy_to_host(d_h_h);
    sp.copy_to_host(d_sp_h);
    if (!with_entropy_grad) {
      pt::token_logprobs_fused(ex, pt::matrix_view<T>{df.data(), s.n, s.v, s.ld}, dt.span(),
                               glp.span(),
                               pt::token_logprobs_outputs<A>{flp.span(), flse.span(), fh.span()},
                               opt);
      flp.copy_to_host(f_lp_h);
      flse.copy_to_host(f_lse_h);
      fh.copy_to_host(f_h_h);
      df.copy_to_host(f_grad_h);
    }
    st.sync();
  }
  st.sync();

  expect_close(widen(d_lp_h), widen(h_lp), rtol_fwd, rtol_fwd, "logprob");
  expect_close(widen(d_lse_h), widen(h_lse), rtol_fwd, rtol_fwd, "lse");
  expect_close(widen(d_h_h), widen(h_h), rtol_fwd, 10 * rtol_fwd, "entropy");
  expect_close(widen(d_sp_h), widen(h_sp), 10 * rtol_fwd, rtol_fwd, "sum_p_squared");
  // Gradient: only the [N, V] part (the padding is not written by either side).
  std::vector<double> gd, gh_ref, gf;
  for (index_t i = 0; i < s.n; ++i)
    for (index_t j = 0; j < s.v; ++j) {
      gd.push_back(to_d(d_grad_h[i * s.ld + j]));
      gh_ref.push_back(to_d(h_grad[i * s.ld + j]));
      gf.push_back(to_d(f_grad_h[i * s.ld + j]));
    }
  expect_close(gd, gh_ref, rtol_grad, 1e-6, "d_logits");
  if (!with_entropy_grad) {
    expect_close(widen(f_lp_h), widen(h_lp), rtol_fwd, rtol_fwd, "fused logprob");
    expect_close(widen(f_lse_h), widen(h_lse), rtol_fwd, rtol_fwd, "fused lse");
    expect_close(widen(f_h_h), widen(h_h), rtol_fwd, 10 * rtol_fwd, "fused entropy");
    expect_close(gf, gh_ref, rtol_grad, 1e-6, "fused d_logits");
  }
}

}  // namespace

TEST(CudaTokenLogprobs, FrontEndValidatesWithoutTouchingTheDevice) {
  // Validation happens on the host before any CUDA call: these run without a GPU.
  std::vector<float> logits(6, 0.0f);
  std::vector<index_t> targets(3, 0);
  std::vector<float> out(2, -7.0f);
  const pt::exec::cuda ex{nullptr};
  const pt::matrix_view<const float> m{logits.data(), 2, 3, 3};
  EXPECT_THROW(pt::token_logprobs(ex, m, std::span<const index_t>(targets),
                                  pt::token_logprobs_outputs<float>{out}),
               pt::error);
  std::vector<index_t> t2(2, 0);
  pt::token_logprobs_options bad;
  bad.temperature = 0.0;
  EXPECT_THROW(pt::token_logprobs(ex, m, std::span<const index_t>(t2),
                                  pt::token_logprobs_outputs<float>{out}, bad),
               pt::error);
  std::vector<float> d(1, 0.0f);
  EXPECT_THROW(pt::token_logprobs_fused(ex, pt::matrix_view<float>{logits.data(), 2, 3, 3},
                                        std::span<const index_t>(t2), std::span<const float>(d),
                                        pt::token_logprobs_outputs<float>{out}),
               pt::error);
  EXPECT_EQ(out, std::vector<float>(2, -7.0f));
}

TEST(CudaTokenLogprobs, Float_V1001_MisalignedRows_IgnoredRows) {
  POSTTRAIN_REQUIRE_DEVICE();
  // ld = 1003: rows start at every 4-byte offset modulo 16.
  const problem_spec s{.n = 9, .v = 1001, .ld = 1003, .ignored = {2, 7}};
  check_against_host<float>(s, 2e-5, 1e-4, false, false);
  check_against_host<float>(s, 2e-5, 1e-4, true, true);
}

TEST(CudaTokenLogprobs, Float_SingleRow_Temperature) {
  POSTTRAIN_REQUIRE_DEVICE();
  problem_spec s{.n = 1, .v = 4099, .ld = 4099, .temperature = 0.7, .ignored = {}};
  check_against_host<float>(s, 2e-5, 1e-4, true, false);
  s.v = 1;
  s.ld = 1;
  check_against_host<float>(s, 2e-5, 1e-4, false, true);
}

TEST(CudaTokenLogprobs, Float_ExtremeLogits) {
  POSTTRAIN_REQUIRE_DEVICE();
  const problem_spec s{.n = 5, .v = 3001, .ld = 3001, .ignored = {}, .extreme = true};
  check_against_host<float>(s, 2e-5, 1e-4, true, false);
}

TEST(CudaTokenLogprobs, Bfloat16_V1001_And_InPlace) {
  POSTTRAIN_REQUIRE_DEVICE();
  // ld = 1001 is odd: rows misaligned for 16-byte loads.
  const problem_spec s{.n = 6, .v = 1001, .ld = 1001, .ignored = {0}};
  check_against_host<Eigen::bfloat16>(s, 1e-4, 1e-2, false, true);
  check_against_host<Eigen::bfloat16>(s, 1e-4, 1e-2, true, false);
}

TEST(CudaTokenLogprobs, Bfloat16_Llama3Vocabulary) {
  POSTTRAIN_REQUIRE_DEVICE();
  const problem_spec s{.n = 3, .v = 128256, .ld = 128256, .ignored = {1}};
  check_against_host<Eigen::bfloat16>(s, 1e-4, 1e-2, false, true);
}

// N < 2 × SMs with a large V: the forward splits rows over several CTAs (misaligned rows too).
TEST(CudaTokenLogprobs, Float_SplitRows_SmallN) {
  POSTTRAIN_REQUIRE_DEVICE();
  problem_spec s{.n = 4, .v = 50001, .ld = 50003, .temperature = 1.3, .ignored = {1}};
  check_against_host<float>(s, 2e-5, 1e-4, true, false);
  s.extreme = true;
  check_against_host<float>(s, 2e-5, 1e-4, false, true);
}

TEST(CudaTokenLogprobs, Double_SmallRows) {
  POSTTRAIN_REQUIRE_DEVICE();
  const problem_spec s{.n = 17, .v = 257, .ld = 259, .ignored = {16}};
  check_against_host<double>(s, 1e-11, 1e-9, true, false);
  check_against_host<double>(s, 1e-11, 1e-9, false, true);
}

// __half through the raw entry point, compared with the float host op on the same (rounded)
// values.
TEST(CudaTokenLogprobs, HalfRawEntryPoint) {
  POSTTRAIN_REQUIRE_DEVICE();
  const index_t n = 4, v = 1001;
  std::mt19937_64 rng(5);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::vector<__half> hv(static_cast<std::size_t>(n * v));
  std::vector<float> fv(hv.size());
  for (std::size_t i = 0; i < hv.size(); ++i) {
    hv[i] = __float2half_rn(nd(rng));
    fv[i] = __half2float(hv[i]);
  }
  const std::vector<index_t> targets{3, 1000, -100, 0};
  std::vector<float> ref(n), got(n);
  pt::token_logprobs(pt::exec::host{}, pt::matrix_view<const float>{fv.data(), n, v, v},
                     std::span<const index_t>(targets), pt::token_logprobs_outputs<float>{ref});
  stream_guard st;
  {
    ptc::device_buffer<__half> dl(hv.size(), st.s);
    ptc::device_buffer<index_t> dt(targets.size(), st.s);
    ptc::device_buffer<float> lp(static_cast<std::size_t>(n), st.s);
    dl.copy_from_host(hv);
    dt.copy_from_host(targets);
    ptc::token_logprobs_forward<__half, float>(dl.data(), n, v, v, dt.data(), 1.0, -100,
                                               lp.data(), nullptr, nullptr, nullptr, st.s);
    lp.copy_to_host(got);
    st.sync();
  }
  std::vector<double> a(got.begin(), got.end()), b(ref.begin(), ref.end());
  expect_close(a, b, 2e-5, 2e-5, "half logprob");
}

// Eigen::half (bit-identical to __half) through the front end: forward, backward and fused on
// exec::cuda, compared with the float host op on the same (rounded) values.
TEST(CudaTokenLogprobs, HalfThroughTheFrontEnd) {
  POSTTRAIN_REQUIRE_DEVICE();
  const index_t n = 5, v = 777;
  std::mt19937_64 rng(6);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  std::vector<Eigen::half> hv(static_cast<std::size_t>(n * v));
  std::vector<float> fv(hv.size());
  for (std::size_t i = 0; i < hv.size(); ++i) {
    hv[i] = Eigen::half(nd(rng));
    fv[i] = static_cast<float>(hv[i]);
  }
  const std::vector<index_t> targets{3, 776, -100, 0, 100};
  const std::vector<float> g{0.5f, -1.0f, 2.0f, 0.25f, -0.75f};
  std::vector<float> ref_lp(n), ref_lse(n), ref_grad(fv.size());
  const pt::matrix_view<const float> fm{fv.data(), n, v, v};
  pt::token_logprobs(pt::exec::host{}, fm, std::span<const index_t>(targets),
                     pt::token_logprobs_outputs<float>{ref_lp, ref_lse});
  pt::token_logprobs_backward(pt::exec::host{}, fm, std::span<const index_t>(targets),
                              pt::token_logprobs_grads<float>{ref_lse, {}, g, {}},
                              pt::matrix_view<float>{ref_grad.data(), n, v, v});
  std::vector<float> lp(n), lse(n), flp(n);
  std::vector<Eigen::half> grad(hv.size()), fused(hv.size());
  stream_guard st;
  const pt::exec::cuda ex{st.s};
  {
    ptc::device_buffer<Eigen::half> dl(hv.size(), st.s), dg(hv.size(), st.s), df(hv.size(), st.s);
    ptc::device_buffer<index_t> dt(targets.size(), st.s);
    ptc::device_buffer<float> dlp(n, st.s), dlse(n, st.s), dgl(n, st.s), dflp(n, st.s);
    dl.copy_from_host(hv);
    df.copy_from_host(hv);
    dt.copy_from_host(targets);
    dgl.copy_from_host(g);
    const pt::matrix_view<const Eigen::half> m{dl.data(), n, v, v};
    const std::span<const index_t> t(dt.data(), targets.size());
    pt::token_logprobs(ex, m, t, pt::token_logprobs_outputs<float>{dlp.span(), dlse.span()});
    pt::token_logprobs_backward(ex, m, t,
                                pt::token_logprobs_grads<float>{dlse.span(), {}, dgl.span(), {}},
                                pt::matrix_view<Eigen::half>{dg.data(), n, v, v});
    pt::token_logprobs_fused(ex, pt::matrix_view<Eigen::half>{df.data(), n, v, v}, t,
                             std::span<const float>(dgl.span()),
                             pt::token_logprobs_outputs<float>{dflp.span()});
    dlp.copy_to_host(lp);
    dlse.copy_to_host(lse);
    dflp.copy_to_host(flp);
    dg.copy_to_host(grad);
    df.copy_to_host(fused);
    st.sync();
  }
  const std::vector<double> rl(ref_lp.begin(), ref_lp.end());
  expect_close(std::vector<double>(lp.begin(), lp.end()), rl, 2e-5, 2e-5, "half logprob");
  expect_close(std::vector<double>(flp.begin(), flp.end()), rl, 2e-5, 2e-5, "half fused logprob");
  std::vector<double> rg(ref_grad.begin(), ref_grad.end()), dg2(grad.size()), df2(grad.size());
  for (std::size_t i = 0; i < grad.size(); ++i) {
    dg2[i] = static_cast<float>(grad[i]);
    df2[i] = static_cast<float>(fused[i]);
  }
  expect_close(dg2, rg, 2e-3, 1e-6, "half gradient");
  expect_close(df2, rg, 2e-3, 1e-6, "half fused gradient");
}
