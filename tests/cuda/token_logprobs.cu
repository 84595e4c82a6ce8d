// CUDA token_logprobs (backend/cuda/token_logprobs.cuh) against the CPU op (exec::host) on the
// same random inputs, and against an independent float64 reference (float64_reference.hpp):
// forward outputs, backward (with and without the entropy gradient, in place and out of place,
// into another element type and leading dimension) and the fused forward + backward. float,
// bfloat16, half and double logits; V not a multiple of the vector width, leading dimensions that
// misalign rows, N = 1, ignored rows, out-of-range targets, an all −inf row, extreme logits (the
// argmax at 1e4), split rows with targets at the piece boundaries, grid-stride loops, N·V > 2³¹,
// padding columns left bitwise untouched. The validation and *_Host tests run without a device;
// the rest skip with the reason when no CUDA device is available.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda_testing.cuh"
#include "float64_reference.hpp"
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

// ---------------------------------------------------------------- against float64 (issue 13)
// The cases below compare the device with the independent float64 reference of
// float64_reference.hpp (forward, backward out of place, fused in place) and check that the
// padding columns [V, ld) of every buffer are bitwise what they were before.
namespace {

// A recognisable bit pattern for padding element (r, j): NaN payloads for float / double, any
// 16-bit pattern for bf16 / half (finite and huge for bf16: read by mistake, it would dominate).
template <class G>
G pad_value(index_t r, index_t j) {
  G g;
  if constexpr (sizeof(G) == 2) {
    const std::uint16_t b = static_cast<std::uint16_t>(0x7E00u | ((r * 31 + j) & 0xFF));
    std::memcpy(static_cast<void*>(&g), &b, 2);
  } else if constexpr (sizeof(G) == 4) {
    const std::uint32_t b = 0x7FC00000u | static_cast<std::uint32_t>((r * 131 + j) & 0x3FFFFF);
    std::memcpy(static_cast<void*>(&g), &b, 4);
  } else {
    const std::uint64_t b = 0x7FF8000000000000ull | static_cast<std::uint64_t>(r * 131 + j);
    std::memcpy(static_cast<void*>(&g), &b, 8);
  }
  return g;
}

template <class G>
bool same_bits(const G& a, const G& b) {
  return std::memcmp(static_cast<const void*>(&a), static_cast<const void*>(&b), sizeof(G)) == 0;
}

template <class T>
T from_double(double x) {
  if constexpr (std::is_same_v<T, double>)
    return x;
  else
    return T(static_cast<float>(x));
}

template <class G>
constexpr bool is_16bit_v = sizeof(G) == 2;

struct ref_case {
  index_t n = 0, v = 0, ld = 0, ld_out = 0;
  double tau = 1.0;
  std::vector<index_t> grad_rows;  // rows whose gradients are compared; empty = all
  std::string tag;
};

// Forward, out-of-place backward (G, ld_out, with the entropy gradient) and fused (in place, no
// entropy gradient) of the [n, ld] logits (padding already filled) on the device, against float64.
// Exec = exec::host runs the same checks on the CPU backend (Float64ChecksHoldOnTheHostBackend:
// the reference, its tolerances and the padding checks are exercised without a GPU).
template <class T, class G = T, class Exec = pt::exec::cuda>
void check_against_float64(const ref_case& c, const std::vector<T>& logits,
                           const std::vector<index_t>& targets) {
  using A = pt::accum_t<T>;
  const auto n = static_cast<std::size_t>(c.n);
  ASSERT_EQ(logits.size(), n * static_cast<std::size_t>(c.ld));
  std::vector<A> glp(n), gh(n);
  for (std::size_t i = 0; i < n; ++i) {
    glp[i] = A(f64::uniform(1000 + i, 1.0));
    gh[i] = A(f64::uniform(5000 + i, 1.0));
  }
  std::vector<G> grad(n * static_cast<std::size_t>(c.ld_out));
  for (index_t r = 0; r < c.n; ++r)
    for (index_t j = 0; j < c.ld_out; ++j) grad[r * c.ld_out + j] = pad_value<G>(r, j);
  const std::vector<G> grad_before = grad;
  std::vector<T> fused = logits;
  std::vector<A> lp(n), lse(n), ent(n), sp(n), f_lp(n), f_lse(n), f_ent(n);
  pt::token_logprobs_options opt;
  opt.temperature = c.tau;
  if constexpr (std::is_same_v<Exec, pt::exec::host>) {
    const pt::exec::host ex{};
    const std::span<const index_t> t(targets);
    const pt::matrix_view<const T> lv{logits.data(), c.n, c.v, c.ld};
    pt::token_logprobs(ex, lv, t, pt::token_logprobs_outputs<A>{lp, lse, ent, sp}, opt);
    pt::token_logprobs_backward(ex, lv, t, pt::token_logprobs_grads<A>{lse, ent, glp, gh},
                                pt::matrix_view<G>{grad.data(), c.n, c.v, c.ld_out}, opt);
    pt::token_logprobs_fused(ex, pt::matrix_view<T>{fused.data(), c.n, c.v, c.ld}, t,
                             std::span<const A>(glp),
                             pt::token_logprobs_outputs<A>{f_lp, f_lse, f_ent}, opt);
  } else {
    stream_guard st;
    ptc::device_buffer<T> dl(logits.size(), st.s), df(logits.size(), st.s);
    ptc::device_buffer<G> dg(grad.size(), st.s);
    ptc::device_buffer<index_t> dt(n, st.s);
    ptc::device_buffer<A> a_lp(n, st.s), a_lse(n, st.s), a_ent(n, st.s), a_sp(n, st.s),
        a_glp(n, st.s), a_gh(n, st.s), b_lp(n, st.s), b_lse(n, st.s), b_ent(n, st.s);
    dl.copy_from_host(logits);
    df.copy_from_host(logits);
    dg.copy_from_host(grad);
    dt.copy_from_host(targets);
    a_glp.copy_from_host(glp);
    a_gh.copy_from_host(gh);
    const pt::exec::cuda ex{st.s};
    const pt::matrix_view<const T> lv{dl.data(), c.n, c.v, c.ld};
    pt::token_logprobs(
        ex, lv, dt.span(),
        pt::token_logprobs_outputs<A>{a_lp.span(), a_lse.span(), a_ent.span(), a_sp.span()}, opt);
    pt::token_logprobs_backward(
        ex, lv, dt.span(),
        pt::token_logprobs_grads<A>{a_lse.span(), a_ent.span(), a_glp.span(), a_gh.span()},
        pt::matrix_view<G>{dg.data(), c.n, c.v, c.ld_out}, opt);
    pt::token_logprobs_fused(ex, pt::matrix_view<T>{df.data(), c.n, c.v, c.ld}, dt.span(),
                             std::span<const A>(a_glp.span()),
                             pt::token_logprobs_outputs<A>{b_lp.span(), b_lse.span(), b_ent.span()},
                             opt);
    a_lp.copy_to_host(lp);
    a_lse.copy_to_host(lse);
    a_ent.copy_to_host(ent);
    a_sp.copy_to_host(sp);
    b_lp.copy_to_host(f_lp);
    b_lse.copy_to_host(f_lse);
    b_ent.copy_to_host(f_ent);
    dg.copy_to_host(grad);
    df.copy_to_host(fused);
    st.sync();
  }
  // Tolerances: statistics accumulate in float (double for double logits) from the exact input
  // values; 16-bit gradients carry their own rounding (2⁻⁹ relative).
  const bool dbl = std::is_same_v<A, double>;
  const double rf = dbl ? 1e-11 : 1e-5, af = dbl ? 1e-11 : 1e-5;
  const double rg = is_16bit_v<G> ? 1e-2 : (dbl && std::is_same_v<G, double> ? 1e-9 : 1e-4);
  const double ag = is_16bit_v<G> ? 1e-6 : (dbl && std::is_same_v<G, double> ? 1e-12 : 1e-6);
  const double rgf = is_16bit_v<T> ? 1e-2 : (dbl ? 1e-9 : 1e-4);
  std::vector<double> r_lp(n), r_lse(n), r_ent(n), r_sp(n), row(static_cast<std::size_t>(c.v));
  std::vector<double> g_ref(row.size());
  std::vector<double> got_g, want_g, tol_g, got_f, want_f, tol_f;
  // The backward works from the forward's lse saved in A (as on the CPU): its rounding, up to
  // eps_A·|lse| (4.9e-4 at lse = 1e4 in float), moves every log p by as much. Each gradient
  // element is allowed that on top of the relative tolerance: eps_A·|lse|·p·(|g_lp| +
  // |g_H|(|log p + H| + 1)), about 0 for ordinary rows.
  const double eps_a = std::numeric_limits<A>::epsilon();
  auto allowance = [&](const f64::row_result& rr, double x, double g_lp, double g_h) {
    if (!std::isfinite(rr.lse)) return 0.0;
    const double lp = x / c.tau - rr.lse, p = std::exp(lp);
    return eps_a * std::fabs(rr.lse) * p *
           (std::fabs(g_lp) + std::fabs(g_h) * (std::fabs(lp + rr.entropy) + 1.0));
  };
  std::vector<char> check_grad(n, c.grad_rows.empty() ? 1 : 0);
  for (index_t r : c.grad_rows) check_grad[static_cast<std::size_t>(r)] = 1;
  int pad_bad = 0;
  for (index_t r = 0; r < c.n; ++r) {
    for (index_t j = 0; j < c.v; ++j) row[j] = to_d(logits[r * c.ld + j]);
    const f64::row_result rr = f64::row(row.data(), c.v, targets[r], c.tau);
    r_lp[r] = rr.logprob;
    r_lse[r] = rr.lse;
    r_ent[r] = rr.entropy;
    r_sp[r] = rr.sum_p_squared;
    if (check_grad[r]) {
      f64::row_grad(row.data(), c.v, targets[r], c.tau, glp[r], gh[r], g_ref.data());
      for (index_t j = 0; j < c.v; ++j) {
        got_g.push_back(to_d(grad[r * c.ld_out + j]));
        want_g.push_back(g_ref[j]);
        tol_g.push_back(ag + rg * std::fabs(g_ref[j]) + allowance(rr, row[j], glp[r], gh[r]));
      }
      f64::row_grad(row.data(), c.v, targets[r], c.tau, glp[r], 0.0, g_ref.data());
      for (index_t j = 0; j < c.v; ++j) {
        got_f.push_back(to_d(fused[r * c.ld + j]));
        want_f.push_back(g_ref[j]);
        tol_f.push_back(ag + rgf * std::fabs(g_ref[j]) + allowance(rr, row[j], glp[r], 0.0));
      }
    }
    for (index_t j = c.v; j < c.ld_out; ++j)
      pad_bad += same_bits(grad[r * c.ld_out + j], grad_before[r * c.ld_out + j]) ? 0 : 1;
    for (index_t j = c.v; j < c.ld; ++j)
      pad_bad += same_bits(fused[r * c.ld + j], logits[r * c.ld + j]) ? 0 : 1;
  }
  f64::expect_near(widen(lp), r_lp, rf, af, c.tag + " logprob");
  f64::expect_near(widen(lse), r_lse, rf, af, c.tag + " lse");
  f64::expect_near(widen(ent), r_ent, 10 * rf, 10 * af, c.tag + " entropy");
  f64::expect_near(widen(sp), r_sp, 10 * rf, af, c.tag + " sum_p_squared");
  f64::expect_near(widen(f_lp), r_lp, rf, af, c.tag + " fused logprob");
  f64::expect_near(widen(f_lse), r_lse, rf, af, c.tag + " fused lse");
  f64::expect_near(widen(f_ent), r_ent, 10 * rf, 10 * af, c.tag + " fused entropy");
  f64::expect_within(got_g, want_g, tol_g, c.tag + " d_logits (out of place)");
  f64::expect_within(got_f, want_f, tol_f, c.tag + " fused d_logits");
  EXPECT_EQ(pad_bad, 0) << c.tag << ": padding columns [V, ld) changed";
}

// [n, ld] logits uniform in ±a (padding: the pad pattern), as T.
template <class T>
std::vector<T> uniform_logits(index_t n, index_t v, index_t ld, double a, std::uint64_t seed) {
  std::vector<T> x(static_cast<std::size_t>(n * ld));
  for (index_t r = 0; r < n; ++r)
    for (index_t j = 0; j < ld; ++j)
      x[r * ld + j] = j < v ? from_double<T>(f64::uniform(seed * 0x100000000ull + r * ld + j, a))
                            : pad_value<T>(r, j);
  return x;
}

}  // namespace

// Runs without a GPU: the float64 reference and its conventions (ignored row, all −inf row)
// agree with the host op, so a wrong reference cannot pass for a device bug.
TEST(CudaTokenLogprobs, Float64ReferenceMatchesTheHostOp_Host) {
  const index_t n = 5, v = 3001, ld = 3003;
  auto x = uniform_logits<float>(n, v, ld, 6.0, 5);
  for (index_t j = 0; j < v; ++j) x[3 * ld + j] = -std::numeric_limits<float>::infinity();
  const std::vector<index_t> y{0, 3000, -100, 5, 1234};
  const auto un = static_cast<std::size_t>(n);
  std::vector<float> lp(un), lse(un), ent(un), sp(un), g(un), gh(un);
  for (std::size_t i = 0; i < un; ++i) {
    g[i] = static_cast<float>(f64::uniform(1000 + i, 1.0));
    gh[i] = static_cast<float>(f64::uniform(5000 + i, 1.0));
  }
  pt::token_logprobs_options opt;
  opt.temperature = 0.8;
  const pt::matrix_view<const float> m{x.data(), n, v, ld};
  pt::token_logprobs(pt::exec::host{}, m, std::span<const index_t>(y),
                     pt::token_logprobs_outputs<float>{lp, lse, ent, sp}, opt);
  std::vector<float> grad(x.size(), 0.0f);
  pt::token_logprobs_backward(pt::exec::host{}, m, std::span<const index_t>(y),
                              pt::token_logprobs_grads<float>{lse, ent, g, gh},
                              pt::matrix_view<float>{grad.data(), n, v, ld}, opt);
  std::vector<double> rl(un), rs(un), re(un), rq(un), row(static_cast<std::size_t>(v)),
      rg(row.size()), got_g, want_g;
  for (index_t r = 0; r < n; ++r) {
    for (index_t j = 0; j < v; ++j) row[j] = x[r * ld + j];
    const auto rr = f64::row(row.data(), v, y[r], 0.8);
    rl[r] = rr.logprob;
    rs[r] = rr.lse;
    re[r] = rr.entropy;
    rq[r] = rr.sum_p_squared;
    f64::row_grad(row.data(), v, y[r], 0.8, g[r], gh[r], rg.data());
    for (index_t j = 0; j < v; ++j) {
      got_g.push_back(grad[r * ld + j]);
      want_g.push_back(rg[j]);
    }
  }
  f64::expect_near(widen(lp), rl, 1e-5, 1e-5, "host logprob");
  f64::expect_near(widen(lse), rs, 1e-5, 1e-5, "host lse");
  f64::expect_near(widen(ent), re, 1e-4, 1e-4, "host entropy");
  f64::expect_near(widen(sp), rq, 1e-4, 1e-5, "host sum_p_squared");
  f64::expect_near(got_g, want_g, 1e-4, 1e-6, "host d_logits");
}

// Runs without a GPU: the float64 checks of the device cases below hold on the CPU backend
// (argmax rows, an all −inf row, odd leading dimensions, 16-bit and double logits, gradients into
// another type and leading dimension, padding untouched), so on a GPU a failure of the same check
// points at the device. (The CPU rejects out-of-range targets and half logits: not run here.)
TEST(CudaTokenLogprobs, Float64ChecksHoldOnTheHostBackend_Host) {
  using host = pt::exec::host;
  {
    const index_t n = 4, v = 3001;
    auto x = uniform_logits<float>(n, v, v, 3.0, 3);
    std::vector<index_t> y(static_cast<std::size_t>(n));
    for (index_t r = 0; r < n; ++r) {
      x[r * v + (r * 7 + 17) % v] = 1e4f;
      x[r * v + v - 1 - r] = 9990.0f;
      y[r] = r % 2 == 0 ? (r * 7 + 17) % v : v - 1 - r;
    }
    check_against_float64<float, float, host>(
        {.n = n, .v = v, .ld = v, .ld_out = v, .tau = 1.0, .grad_rows = {}, .tag = "host argmax"},
        x, y);
  }
  {
    const index_t n = 4, v = 2001, ld = 2002;
    auto x = uniform_logits<Eigen::bfloat16>(n, v, ld, 4.0, 21);
    for (index_t j = 0; j < v; ++j) x[2 * ld + j] = from_double<Eigen::bfloat16>(-f64::inf);
    check_against_float64<Eigen::bfloat16, Eigen::bfloat16, host>(
        {.n = n, .v = v, .ld = ld, .ld_out = ld, .tau = 0.9, .grad_rows = {}, .tag = "host bf16"},
        x, std::vector<index_t>{0, v - 1, 3, 1000});
    check_against_float64<Eigen::bfloat16, float, host>({.n = n,
                                                         .v = v,
                                                         .ld = ld,
                                                         .ld_out = ld + 3,
                                                         .tau = 1.0,
                                                         .grad_rows = {},
                                                         .tag = "host bf16 -> float"},
                                                        x, std::vector<index_t>{0, v - 1, 3, -100});
  }
  {
    const index_t n = 3, v = 2001, ld = 2003;
    auto x = uniform_logits<double>(n, v, ld, 4.0, 22);
    check_against_float64<double, double, host>(
        {.n = n, .v = v, .ld = ld, .ld_out = ld, .tau = 1.0, .grad_rows = {}, .tag = "host double"},
        x, std::vector<index_t>{1, 1000, 2000});
    check_against_float64<double, float, host>({.n = n,
                                                .v = v,
                                                .ld = ld,
                                                .ld_out = ld + 1,
                                                .tau = 1.0,
                                                .grad_rows = {},
                                                .tag = "host double -> float"},
                                               x, std::vector<index_t>{1, 1000, 2000});
  }
  {
    const index_t n = 5, v = 1001;
    auto x = uniform_logits<float>(n, v, v, 4.0, 32);
    check_against_float64<float, Eigen::bfloat16, host>(
        {.n = n,
         .v = v,
         .ld = v,
         .ld_out = v + 8,
         .tau = 1.0,
         .grad_rows = {1, 3},
         .tag = "host float -> bf16"},
        x, std::vector<index_t>{0, 1000, -100, 17, 500});
  }
}

// Runs without a GPU: the finish order itself. A float row whose target is the argmax at 1e4 next
// to a 9990: log p_y = −log(1 + e^−10) = −4.54e-5. (z_y − m) − log s keeps it; z_y − (m + log s)
// rounds m + log s to 1e4 (log s is below half an ulp of 1e4) and gives 0.
TEST(CudaTokenLogprobs, FinishOrderKeepsTheArgmaxDigits_Host) {
  std::vector<float> row(1001);
  for (std::size_t j = 0; j < row.size(); ++j) row[j] = static_cast<float>(f64::uniform(j, 3.0));
  row[17] = 1e4f;
  row[500] = 9990.0f;
  pt::math::softmax_stats<float> st;
  for (float x : row) st.push(x);
  const std::vector<double> rd(row.begin(), row.end());
  const double want = f64::row(rd.data(), 1001, 17, 1.0).logprob;
  EXPECT_NEAR(want, -4.539889e-5, 1e-10);
  const float got = ptc::token_logprobs_detail::logprob_from_stats(1e4f, st);
  EXPECT_NEAR(got, want, 3e-7);
  EXPECT_EQ(1e4f - st.lse(), 0.0f) << "the other order would have kept the digits too";
  // The row whose target is the 9990 (log p = −10.0000454) keeps its digits in both orders.
  EXPECT_NEAR(ptc::token_logprobs_detail::logprob_from_stats(9990.0f, st),
              f64::row(rd.data(), 1001, 500, 1.0).logprob, 2e-6);
}

// Runs without a GPU: the fused kernel's grid from L2 and occupancy (H100: 132 SMs, 50 MiB L2).
TEST(CudaTokenLogprobs, FusedGridFromL2AndOccupancy_Host) {
  namespace d = ptc::token_logprobs_detail;
  const d::device_info h100{132, 50 << 20};
  // bf16 V = 128256: 256.5 KB rows, 2 per CTA in half of L2 -> 51 CTAs, below the SM count (no
  // floor at the SM count any more), whatever the occupancy.
  EXPECT_EQ(d::fused_grid(16384, 128256, 2, h100, 1), 51u);
  EXPECT_EQ(d::fused_grid(16384, 128256, 2, h100, 2), 51u);
  // float V = 4096 (16 KB rows): occupancy-bound, 132 × 4 = 528 < 800 rows of L2.
  EXPECT_EQ(d::fused_grid(5000, 4096, 4, h100, 4), 528u);
  EXPECT_EQ(d::fused_grid(5000, 4096, 4, h100, 8), 800u);
  // Fewer rows than CTAs.
  EXPECT_EQ(d::fused_grid(10, 4096, 4, h100, 4), 10u);
  // float V = 128256: only 25 CTAs would fit (< SMs / 4): every resident CTA, 2 reads + 1 write.
  EXPECT_EQ(d::fused_grid(16384, 128256, 4, h100, 1), 132u);
  // A row larger than L2: the same.
  EXPECT_EQ(d::fused_grid(300, 40'000'000, 2, h100, 1), 132u);
}

// The argmax-at-1e4 row on the device: one CTA per row (V = 3001), split rows (N = 2, V = 40000)
// and the fused kernel; log p to 3e-7 absolute (the old order was 4.5e-5 off).
TEST(CudaTokenLogprobs, ArgmaxAt1e4KeepsItsDigits) {
  POSTTRAIN_REQUIRE_DEVICE();
  for (const index_t v : {index_t(3001), index_t(40000)}) {
    const index_t n = v == 3001 ? 4 : 2;
    std::vector<float> x = uniform_logits<float>(n, v, v, 3.0, 3);
    std::vector<index_t> y(static_cast<std::size_t>(n));
    for (index_t r = 0; r < n; ++r) {
      x[r * v + (r * 7 + 17) % v] = 1e4f;
      x[r * v + v - 1 - r] = 9990.0f;
      y[r] = r % 2 == 0 ? (r * 7 + 17) % v : v - 1 - r;
    }
    check_against_float64<float>({.n = n,
                                  .v = v,
                                  .ld = v,
                                  .ld_out = v,
                                  .tau = 1.0,
                                  .grad_rows = {},
                                  .tag = "argmax V=" + std::to_string(v)},
                                 x, y);
    // The strict check of log p for the argmax rows.
    std::vector<float> lp(static_cast<std::size_t>(n)), flp(lp.size());
    stream_guard st;
    {
      ptc::device_buffer<float> dl(x.size(), st.s), o(lp.size(), st.s), fo(lp.size(), st.s),
          g(lp.size(), st.s);
      ptc::device_buffer<index_t> dt(y.size(), st.s);
      dl.copy_from_host(x);
      dt.copy_from_host(y);
      g.copy_from_host(std::vector<float>(lp.size(), 1.0f));
      const pt::exec::cuda ex{st.s};
      pt::token_logprobs(ex, pt::matrix_view<const float>{dl.data(), n, v, v}, dt.span(),
                         pt::token_logprobs_outputs<float>{o.span()});
      pt::token_logprobs_fused(ex, pt::matrix_view<float>{dl.data(), n, v, v}, dt.span(),
                               std::span<const float>(g.span()),
                               pt::token_logprobs_outputs<float>{fo.span()});
      o.copy_to_host(lp);
      fo.copy_to_host(flp);
      st.sync();
    }
    const std::vector<double> xd(x.begin(), x.end());
    for (index_t r = 0; r < n; r += 2) {
      const double want = f64::row(xd.data() + r * v, v, y[r], 1.0).logprob;
      EXPECT_NEAR(lp[r], want, 3e-7) << "V=" << v << " row " << r;
      EXPECT_NEAR(flp[r], want, 3e-7) << "fused, V=" << v << " row " << r;
    }
  }
}

// Grid-stride loops: more rows than the fused kernel's grid (bf16 [300, 128256]: 51 CTAs on an
// H100; float [5000, 4096]: at most 800) and large forward / backward grids.
TEST(CudaTokenLogprobs, Big_GridStride_Bf16_300x128256) {
  POSTTRAIN_REQUIRE_DEVICE();
  const index_t n = 300, v = 128256;
  auto x = uniform_logits<Eigen::bfloat16>(n, v, v, 8.0, 11);
  std::vector<index_t> y(static_cast<std::size_t>(n));
  for (index_t r = 0; r < n; ++r) y[r] = r % 13 == 5 ? -100 : static_cast<index_t>(f64::mix(r) % v);
  std::vector<index_t> rows{0, 1, 50, 51, 52, 101, 102, 153, 204, 255, 298, 299};
  check_against_float64<Eigen::bfloat16>({.n = n,
                                          .v = v,
                                          .ld = v,
                                          .ld_out = v,
                                          .tau = 1.0,
                                          .grad_rows = rows,
                                          .tag = "bf16 [300, 128256]"},
                                         x, y);
}

TEST(CudaTokenLogprobs, Big_GridStride_Float_5000x4096) {
  POSTTRAIN_REQUIRE_DEVICE();
  const index_t n = 5000, v = 4096;
  auto x = uniform_logits<float>(n, v, v, 5.0, 12);
  std::vector<index_t> y(static_cast<std::size_t>(n));
  for (index_t r = 0; r < n; ++r)
    y[r] = r % 17 == 3 ? -100 : static_cast<index_t>(f64::mix(r + 7) % v);
  std::vector<index_t> rows;
  for (index_t r = 0; r < n; r += 97) rows.push_back(r);
  for (index_t r : {527, 528, 529, 799, 800, 801, 4999}) rows.push_back(r);
  check_against_float64<float>({.n = n,
                                .v = v,
                                .ld = v,
                                .ld_out = v,
                                .tau = 1.0,
                                .grad_rows = rows,
                                .tag = "float [5000, 4096]"},
                               x, y);
}

// Split rows (N < 2 × SMs, V >= 16384): 16-bit logits with ld = V + 1 (every row at another
// 2-byte offset), double [4, 20001] with an odd ld, an all −inf row, targets on both sides of
// every piece boundary and in the last (short) piece.
namespace {
template <class T>
void split_rows_case(index_t v, index_t ld, const std::string& tag) {
  namespace d = ptc::token_logprobs_detail;
  using D = d::device_t<T>;
  const index_t n = 6;
  const int splits = d::forward_splits<D>(n, v, d::query_device().sms);
  ASSERT_GT(splits, 1) << tag << ": expected the split-row forward";
  constexpr index_t w = d::vec_width<D>;
  const index_t chunk = ((v + splits - 1) / splits + w - 1) / w * w;
  auto x = uniform_logits<T>(n, v, ld, 4.0, 21);
  for (index_t j = 0; j < v; ++j) x[2 * ld + j] = from_double<T>(-f64::inf);
  const index_t last = (splits - 1) * chunk;  // first column of the last piece
  const std::vector<index_t> y{chunk - 1, chunk, 3, v - 1, last - 1, last};
  check_against_float64<T>(
      {.n = n, .v = v, .ld = ld, .ld_out = ld, .tau = 1.0, .grad_rows = {}, .tag = tag}, x, y);
}
}  // namespace

TEST(CudaTokenLogprobs, SplitRows_16bit_LdVPlus1_Boundaries_AllNegInfRow) {
  POSTTRAIN_REQUIRE_DEVICE();
  split_rows_case<Eigen::bfloat16>(65537, 65538, "split bf16 [6, 65537] ld 65538");
  split_rows_case<Eigen::half>(65537, 65538, "split half [6, 65537] ld 65538");
}

TEST(CudaTokenLogprobs, SplitRows_Double_OddLd_Boundaries_AllNegInfRow) {
  POSTTRAIN_REQUIRE_DEVICE();
  split_rows_case<double>(20001, 20003, "split double [6, 20001] ld 20003");
}

// Out-of-place backward into another element type with another leading dimension; padding
// columns of both buffers bitwise untouched (check_against_float64 checks them in every case).
TEST(CudaTokenLogprobs, OutOfPlace_OtherGradType_OtherLd_PaddingUntouched) {
  POSTTRAIN_REQUIRE_DEVICE();
  const index_t n = 7, v = 1001;
  std::vector<index_t> y{0, 1000, -100, 17, 500, 999, 3};
  {
    auto x = uniform_logits<Eigen::bfloat16>(n, v, v + 3, 4.0, 31);
    check_against_float64<Eigen::bfloat16, float>({.n = n,
                                                   .v = v,
                                                   .ld = v + 3,
                                                   .ld_out = v + 5,
                                                   .tau = 1.0,
                                                   .grad_rows = {},
                                                   .tag = "bf16 -> float"},
                                                  x, y);
  }
  {
    auto x = uniform_logits<float>(n, v, v, 4.0, 32);
    check_against_float64<float, Eigen::bfloat16>({.n = n,
                                                   .v = v,
                                                   .ld = v,
                                                   .ld_out = v + 8,
                                                   .tau = 1.0,
                                                   .grad_rows = {},
                                                   .tag = "float -> bf16"},
                                                  x, y);
  }
  {
    auto x = uniform_logits<Eigen::half>(n, v, v + 1, 4.0, 33);
    check_against_float64<Eigen::half, float>({.n = n,
                                               .v = v,
                                               .ld = v + 1,
                                               .ld_out = v + 2,
                                               .tau = 1.0,
                                               .grad_rows = {},
                                               .tag = "half -> float"},
                                              x, y);
  }
  {
    auto x = uniform_logits<double>(n, v, v + 1, 4.0, 34);
    check_against_float64<double, float>({.n = n,
                                          .v = v,
                                          .ld = v + 1,
                                          .ld_out = v + 3,
                                          .tau = 1.0,
                                          .grad_rows = {},
                                          .tag = "double -> float"},
                                         x, y);
  }
}

// Targets outside [0, V) that are not ignore_index: NaN outputs and a NaN gradient row in that row
// only (the device cannot report them without a host round trip). One CTA per row and split rows.
TEST(CudaTokenLogprobs, OutOfRangeTargets_NaNInThatRowOnly) {
  POSTTRAIN_REQUIRE_DEVICE();
  {
    const index_t n = 6, v = 5000;
    auto x = uniform_logits<float>(n, v, v + 2, 4.0, 41);
    check_against_float64<float>({.n = n,
                                  .v = v,
                                  .ld = v + 2,
                                  .ld_out = v + 2,
                                  .tau = 1.0,
                                  .grad_rows = {},
                                  .tag = "bad targets"},
                                 x, std::vector<index_t>{3, v, -5, -100, v - 1, -100000});
  }
  {
    const index_t n = 3, v = 40000;
    auto x = uniform_logits<float>(n, v, v, 4.0, 42);
    check_against_float64<float>({.n = n,
                                  .v = v,
                                  .ld = v,
                                  .ld_out = v,
                                  .tau = 1.0,
                                  .grad_rows = {},
                                  .tag = "bad targets, split"},
                                 x, std::vector<index_t>{v + 7, 0, -2});
  }
}

// bf16 [17000, 128256]: N·V = 2.18e9 > 2³¹ elements (rows past 16743 start beyond 2³¹), so any
// 32-bit index arithmetic would wrap. The logits are generated on the device from a hash of the
// element index (k / 16, k in [−128, 128): exact in bf16), the same function the host evaluates
// for the sampled rows' float64 reference. 4.4 GB of device memory.
namespace {
__host__ __device__ inline float big_value(std::uint64_t i) {
  std::uint64_t z = i + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return static_cast<float>(static_cast<int>(z >> 56) - 128) / 16.0f;
}
__global__ void fill_big(__nv_bfloat16* x, std::uint64_t count) {
  for (std::uint64_t i = blockIdx.x * std::uint64_t(blockDim.x) + threadIdx.x; i < count;
       i += std::uint64_t(gridDim.x) * blockDim.x)
    x[i] = __float2bfloat16_rn(big_value(i));
}
}  // namespace

TEST(CudaTokenLogprobs, Big_Bf16_17000x128256_Above2p31) {
  POSTTRAIN_REQUIRE_DEVICE();
  using bf16 = Eigen::bfloat16;
  const index_t n = 17000, v = 128256;
  const auto count = static_cast<std::uint64_t>(n) * static_cast<std::uint64_t>(v);
  ASSERT_GT(count, std::uint64_t(1) << 31);
  std::vector<index_t> y(static_cast<std::size_t>(n));
  for (index_t r = 0; r < n; ++r)
    y[r] = r % 101 == 7 ? -100 : static_cast<index_t>(f64::mix(r) % v);
  std::vector<float> glp(y.size()), gh(y.size());
  for (std::size_t i = 0; i < y.size(); ++i) {
    glp[i] = static_cast<float>(f64::uniform(1000 + i, 1.0));
    gh[i] = static_cast<float>(f64::uniform(5000 + i, 1.0));
  }
  const std::vector<index_t> rows{0, 1, 7, 8191, 16743, 16744, 16745, 16998, 16999, 3333, 12345};
  const auto un = static_cast<std::size_t>(n);
  std::vector<float> lp(un), lse(un), ent(un), sp(un), flp(un);
  std::vector<std::vector<bf16>> grad_rows(rows.size()), fused_rows(rows.size());
  stream_guard st;
  {
    ptc::device_buffer<bf16> dl(count, st.s);
    ptc::device_buffer<index_t> dt(un, st.s);
    ptc::device_buffer<float> a_lp(un, st.s), a_lse(un, st.s), a_ent(un, st.s), a_sp(un, st.s),
        a_glp(un, st.s), a_gh(un, st.s), b_lp(un, st.s);
    dt.copy_from_host(y);
    a_glp.copy_from_host(glp);
    a_gh.copy_from_host(gh);
    auto fill = [&] {
      fill_big<<<4096, 256, 0, st.s>>>(reinterpret_cast<__nv_bfloat16*>(dl.data()), count);
      ptc::cuda_check(cudaGetLastError(), "fill_big");
    };
    auto rows_to_host = [&](std::vector<std::vector<bf16>>& out) {
      for (std::size_t k = 0; k < rows.size(); ++k) {
        out[k].resize(static_cast<std::size_t>(v));
        ptc::cuda_check(cudaMemcpyAsync(out[k].data(), dl.data() + rows[k] * v, v * sizeof(bf16),
                                        cudaMemcpyDeviceToHost, st.s),
                        "row to host");
      }
      st.sync();
    };
    const pt::exec::cuda ex{st.s};
    const pt::matrix_view<bf16> m{dl.data(), n, v, v};
    fill();
    pt::token_logprobs(
        ex, pt::matrix_view<const bf16>(m), dt.span(),
        pt::token_logprobs_outputs<float>{a_lp.span(), a_lse.span(), a_ent.span(), a_sp.span()});
    // In place, with the entropy gradient.
    pt::token_logprobs_backward(
        ex, pt::matrix_view<const bf16>(m), dt.span(),
        pt::token_logprobs_grads<float>{a_lse.span(), a_ent.span(), a_glp.span(), a_gh.span()}, m);
    rows_to_host(grad_rows);
    fill();
    pt::token_logprobs_fused(ex, m, dt.span(), std::span<const float>(a_glp.span()),
                             pt::token_logprobs_outputs<float>{b_lp.span()});
    rows_to_host(fused_rows);
    a_lp.copy_to_host(lp);
    a_lse.copy_to_host(lse);
    a_ent.copy_to_host(ent);
    a_sp.copy_to_host(sp);
    b_lp.copy_to_host(flp);
    st.sync();
  }
  int nonfinite = 0;
  for (std::size_t i = 0; i < un; ++i)
    nonfinite += std::isfinite(lp[i]) && std::isfinite(lse[i]) && std::isfinite(flp[i]) ? 0 : 1;
  EXPECT_EQ(nonfinite, 0) << "every row has an in-range or ignored target";
  std::vector<double> row(static_cast<std::size_t>(v)), g(row.size());
  for (std::size_t k = 0; k < rows.size(); ++k) {
    const index_t r = rows[k];
    for (index_t j = 0; j < v; ++j)
      row[j] = static_cast<double>(big_value(static_cast<std::uint64_t>(r) * v + j));
    const f64::row_result rr = f64::row(row.data(), v, y[r], 1.0);
    const std::string tag = "row " + std::to_string(r);
    EXPECT_TRUE(f64::near(lp[r], rr.logprob, 1e-5, 1e-5))
        << tag << " logprob " << lp[r] << " vs " << rr.logprob;
    EXPECT_TRUE(f64::near(lse[r], rr.lse, 1e-5, 1e-5))
        << tag << " lse " << lse[r] << " vs " << rr.lse;
    EXPECT_TRUE(f64::near(ent[r], rr.entropy, 1e-4, 1e-4))
        << tag << " entropy " << ent[r] << " vs " << rr.entropy;
    EXPECT_TRUE(f64::near(sp[r], rr.sum_p_squared, 1e-4, 1e-5)) << tag << " sum_p_squared";
    EXPECT_TRUE(f64::near(flp[r], rr.logprob, 1e-5, 1e-5)) << tag << " fused logprob";
    f64::row_grad(row.data(), v, y[r], 1.0, glp[r], gh[r], g.data());
    f64::expect_near(widen(grad_rows[k]), g, 1e-2, 1e-6, tag + " d_logits");
    f64::row_grad(row.data(), v, y[r], 1.0, glp[r], 0.0, g.data());
    f64::expect_near(widen(fused_rows[k]), g, 1e-2, 1e-6, tag + " fused d_logits");
  }
}
