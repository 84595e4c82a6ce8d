// Tests of ops/fused_linear_logprobs.hpp (host backend) against an independent float64 reference
// that materialises the [N, V] logits with naive loops, with finite differences for d_hidden and
// d_weight, chunk sizes (1, not dividing N, N, > N, automatic), temperature, ignore_index, leading
// dimensions, optional gradients, accumulation, the workspace contract and bad input.
// Also covers ops/fused_linear_logprobs_types.hpp and backend/cpu/fused_linear_logprobs.hpp (the
// device backend: tests/cuda/fused_linear_logprobs.cu).
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "ops/logprobs_testing.hpp"
#include "posttrain/ops/fused_linear_logprobs.hpp"

namespace {

using namespace logprobs_testing;
using pt::fused_linear_logprobs_options;
using pt::fused_linear_pass;
using pt::token_logprobs_grads;
using pt::token_logprobs_outputs;

// A row-major [rows, cols] matrix with leading dimension ld; padding holds NaN (never read).
template <class T>
struct mat {
  index_t rows = 0, cols = 0, ld = 0;
  std::vector<T> data;
  mat(index_t r, index_t c, index_t l, double fill = std::nan(""))
      : rows(r), cols(c), ld(l), data(static_cast<std::size_t>(r * l), from_d<T>(fill)) {
    EXPECT_GE(l, c) << "test bug: leading dimension below the column count";
    for (index_t i = 0; i < r; ++i)
      for (index_t j = 0; j < c; ++j) at(i, j) = from_d<T>(0.0);
  }
  T& at(index_t i, index_t j) { return data[static_cast<std::size_t>(i * ld + j)]; }
  double get(index_t i, index_t j) const { return to_d(data[static_cast<std::size_t>(i * ld + j)]); }
  matrix_view<const T> view() const { return {data.data(), rows, cols, ld}; }
  matrix_view<T> mview() { return {data.data(), rows, cols, ld}; }
};

template <class T>
mat<T> random_mat(index_t r, index_t c, index_t ld, double scale, unsigned seed) {
  mat<T> m(r, c, ld);
  std::mt19937 gen(seed);
  std::normal_distribution<double> d(0.0, scale);
  for (index_t i = 0; i < r; ++i)
    for (index_t j = 0; j < c; ++j) m.at(i, j) = from_d<T>(d(gen));
  return m;
}

std::vector<index_t> random_targets(index_t n, index_t v, unsigned seed,
                                    const std::vector<index_t>& ignored = {}) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<index_t> d(0, v - 1);
  std::vector<index_t> t(static_cast<std::size_t>(n));
  for (auto& y : t) y = d(gen);
  if (n > 0) t[0] = v - 1;
  for (index_t i : ignored) t[static_cast<std::size_t>(i)] = ignore;
  return t;
}

// ------------------------------------------------------------------ float64 reference
struct reference {
  std::vector<double> logprob, lse, entropy, sum_p2;
  std::vector<double> d_hidden, d_weight;  // [N, H], [V, H] (contiguous)
};

// Materialises Z = X·Wᵀ/τ in double and differentiates  Σ_i a_i·logprob_i + b_i·entropy_i.
template <class T>
reference naive(const mat<T>& x, const mat<T>& w, const std::vector<index_t>& y, double tau,
                const std::vector<double>& a, const std::vector<double>& b) {
  const index_t n = x.rows, h = x.cols, v = w.rows;
  reference r;
  r.logprob.assign(n, 0.0);
  r.lse.assign(n, 0.0);
  r.entropy.assign(n, 0.0);
  r.sum_p2.assign(n, 0.0);
  r.d_hidden.assign(static_cast<std::size_t>(n * h), 0.0);
  r.d_weight.assign(static_cast<std::size_t>(v * h), 0.0);
  std::vector<double> z(v), dz(v);
  for (index_t i = 0; i < n; ++i) {
    if (y[i] == ignore) continue;
    for (index_t k = 0; k < v; ++k) {
      double s = 0;
      for (index_t j = 0; j < h; ++j) s += x.get(i, j) * w.get(k, j);
      z[k] = s / tau;
    }
    double m = -INFINITY;
    for (double zk : z) m = std::max(m, zk);
    double s = 0;
    for (double zk : z) s += std::exp(zk - m);
    const double lse = m + std::log(s);
    double ent = 0, sp2 = 0;
    for (double zk : z) {
      const double p = std::exp(zk - lse);
      ent -= p * (zk - lse);
      sp2 += p * p;
    }
    r.lse[i] = lse;
    r.logprob[i] = z[y[i]] - lse;
    r.entropy[i] = ent;
    r.sum_p2[i] = sp2;
    for (index_t k = 0; k < v; ++k) {
      const double lp = z[k] - lse, p = std::exp(lp);
      dz[k] = (a[i] * ((k == y[i] ? 1.0 : 0.0) - p) - b[i] * p * (lp + ent)) / tau;
    }
    for (index_t k = 0; k < v; ++k)
      for (index_t j = 0; j < h; ++j) {
        r.d_hidden[i * h + j] += dz[k] * w.get(k, j);
        r.d_weight[k * h + j] += dz[k] * x.get(i, j);
      }
  }
  return r;
}

template <class A>
struct outs {
  std::vector<A> logprob, lse, entropy, sum_p2;
  explicit outs(index_t n, A fill = A(777))
      : logprob(n, fill), lse(n, fill), entropy(n, fill), sum_p2(n, fill) {}
  token_logprobs_outputs<A> all() { return {logprob, lse, entropy, sum_p2}; }
};

template <class V>
void expect_near_all(const V& got, const std::vector<double>& want, double rtol, double atol,
                     const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int reported = 0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double g = to_d(got[i]);
    const double tol = atol + rtol * std::fabs(want[i]);
    if (!(std::fabs(g - want[i]) <= tol) && reported++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: got " << g << ", want " << want[i] << " (tol "
                    << tol << ")";
  }
}

template <class T>
std::vector<double> dense(const mat<T>& m) {
  std::vector<double> r;
  for (index_t i = 0; i < m.rows; ++i)
    for (index_t j = 0; j < m.cols; ++j) r.push_back(m.get(i, j));
  return r;
}

struct case_spec {
  index_t n = 7, h = 9, v = 37;
  index_t ld_x = 9, ld_w = 9;
  double tau = 1.0, scale = 0.7;
  index_t chunk = 3;
  std::vector<index_t> ignored;
  bool entropy_grad = true;
  unsigned seed = 1;
};

// Runs forward, backward and forward_backward and compares all with the reference.
template <class T, class G = T>
void check_case(const case_spec& s, double rtol, double atol) {
  using A = pt::accum_t<T>;
  const auto x = random_mat<T>(s.n, s.h, s.ld_x, s.scale, s.seed);
  const auto w = random_mat<T>(s.v, s.h, s.ld_w, s.scale, s.seed + 100);
  const auto y = random_targets(s.n, s.v, s.seed + 200, s.ignored);
  std::mt19937 gen(s.seed + 300);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<A> a(s.n), b(s.n, A(0));
  std::vector<double> ad(s.n), bd(s.n, 0.0);
  for (index_t i = 0; i < s.n; ++i) {
    a[i] = from_d<A>(u(gen));
    ad[i] = to_d(a[i]);
    if (s.entropy_grad) {
      b[i] = from_d<A>(u(gen));
      bd[i] = to_d(b[i]);
    }
  }
  const reference ref = naive(x, w, y, s.tau, ad, bd);
  const std::string tag = "N=" + std::to_string(s.n) + " H=" + std::to_string(s.h) +
                          " V=" + std::to_string(s.v) + " chunk=" + std::to_string(s.chunk) +
                          " tau=" + std::to_string(s.tau);
  fused_linear_logprobs_options opt;
  opt.temperature = s.tau;
  opt.chunk_size = s.chunk;

  outs<A> o(s.n);
  pt::fused_linear_logprobs(host, x.view(), w.view(), y, o.all(), opt);
  expect_near_all(o.logprob, ref.logprob, rtol, atol, tag + " logprob");
  expect_near_all(o.lse, ref.lse, rtol, atol, tag + " lse");
  expect_near_all(o.entropy, ref.entropy, rtol, atol, tag + " entropy");
  expect_near_all(o.sum_p2, ref.sum_p2, rtol, atol, tag + " sum_p_squared");

  mat<G> dh(s.n, s.h, s.ld_x + 1, 5.0);
  mat<A> dw(s.v, s.h, s.ld_w, 5.0);
  token_logprobs_grads<A> in{o.lse, o.entropy, a, {}};
  if (s.entropy_grad) in.d_entropy = b;
  pt::fused_linear_logprobs_backward(host, x.view(), w.view(), y, in, dh.mview(), dw.mview(), opt);
  const double grad_atol = atol * std::max<double>(1.0, static_cast<double>(s.h));
  expect_near_all(dense(dh), ref.d_hidden, rtol, grad_atol, tag + " d_hidden");
  expect_near_all(dense(dw), ref.d_weight, rtol, grad_atol, tag + " d_weight");
  // Padding of d_hidden (ld_x + 1 > H) is never written.
  for (index_t i = 0; i < s.n; ++i) EXPECT_EQ(dh.get(i, s.h), 5.0) << tag;

  // The fused sweep gives the same bits as forward + backward (same chunks, same GEMMs).
  outs<A> o2(s.n);
  mat<G> dh2(s.n, s.h, s.ld_x + 1, 5.0);
  mat<A> dw2(s.v, s.h, s.ld_w, 5.0);
  pt::fused_linear_logprobs_forward_backward(
      host, x.view(), w.view(), y, std::span<const A>(a),
      s.entropy_grad ? std::span<const A>(b) : std::span<const A>(), o2.all(), dh2.mview(),
      dw2.mview(), opt);
  EXPECT_EQ(o2.logprob, o.logprob) << tag;
  EXPECT_EQ(o2.lse, o.lse) << tag;
  EXPECT_EQ(o2.entropy, o.entropy) << tag;
  EXPECT_EQ(o2.sum_p2, o.sum_p2) << tag;
  EXPECT_EQ(dense(dh2), dense(dh)) << tag;
  EXPECT_EQ(dense(dw2), dense(dw)) << tag;

  // forward_backward without lse / entropy outputs (kept in the workspace) gives the same grads.
  std::vector<A> lp3(s.n, A(777));
  mat<G> dh3(s.n, s.h, s.ld_x + 1, 5.0);
  mat<A> dw3(s.v, s.h, s.ld_w, 5.0);
  pt::fused_linear_logprobs_forward_backward(
      host, x.view(), w.view(), y, std::span<const A>(a),
      s.entropy_grad ? std::span<const A>(b) : std::span<const A>(),
      token_logprobs_outputs<A>{lp3}, dh3.mview(), dw3.mview(), opt);
  EXPECT_EQ(lp3, o.logprob) << tag;
  EXPECT_EQ(dense(dh3), dense(dh)) << tag;
  EXPECT_EQ(dense(dw3), dense(dw)) << tag;
}

// ------------------------------------------------------------------ against the reference

TEST(FusedLinearLogprobs, DoubleMatchesReferenceForEveryChunking) {
  for (index_t chunk : {1, 2, 3, 7, 8, 100, 0}) {
    case_spec s;
    s.chunk = chunk;
    s.ignored = {2};
    check_case<double>(s, 1e-11, 1e-12);
  }
}

TEST(FusedLinearLogprobs, FloatMatchesReference) {
  for (index_t chunk : {1, 4, 13, 64, 0}) {
    case_spec s;
    s.n = 13;
    s.h = 33;
    s.v = 300;
    s.ld_x = 35;
    s.ld_w = 40;
    s.chunk = chunk;
    s.ignored = {0, 12};
    check_case<float>(s, 2e-5, 2e-6);
  }
}

TEST(FusedLinearLogprobs, Bfloat16OperandsAccumulateInFloat) {
  // The reference is built from the bf16 values themselves, so only float rounding differs.
  for (index_t chunk : {1, 5, 0}) {
    case_spec s;
    s.n = 9;
    s.h = 20;
    s.v = 600;  // > weight_tile_rows: several widened tiles
    s.ld_x = 21;
    s.ld_w = 20;
    s.chunk = chunk;
    s.ignored = {4};
    check_case<bf16, float>(s, 2e-5, 2e-6);
  }
  case_spec s;  // d_hidden in bfloat16
  s.chunk = 4;
  check_case<bf16, bf16>(s, 1e-2, 1e-3);
}

TEST(FusedLinearLogprobs, TemperatureAndNoEntropyGradient) {
  for (double tau : {0.3, 1.0, 2.5}) {
    case_spec s;
    s.tau = tau;
    s.chunk = 4;
    s.entropy_grad = false;
    s.scale = 1.5;
    check_case<double>(s, 1e-11, 1e-12);
    s.entropy_grad = true;
    check_case<float>(s, 3e-5, 3e-6);
  }
}

TEST(FusedLinearLogprobs, AllRowsIgnored) {
  case_spec s;
  s.n = 4;
  s.ignored = {0, 1, 2, 3};
  check_case<double>(s, 0.0, 0.0);  // all outputs and gradients exactly 0
}

TEST(FusedLinearLogprobs, LargeLogitsStayFinite) {
  // |logits| up to ~1e3 (hidden and weight ~ N(0, 10), H = 9): stable log-softmax.
  case_spec s;
  s.scale = 10.0;
  s.chunk = 3;
  check_case<double>(s, 1e-9, 1e-9);
  check_case<float>(s, 1e-4, 1e-3);
}

TEST(FusedLinearLogprobs, ZeroHiddenSizeGivesUniform) {
  const index_t n = 3, v = 5;
  mat<float> x(n, 0, 0), w(v, 0, 0);
  std::vector<index_t> y{0, 4, ignore};
  outs<float> o(n);
  pt::fused_linear_logprobs(host, x.view(), w.view(), y, o.all());
  EXPECT_NEAR(o.logprob[0], -std::log(5.0f), 1e-6);
  EXPECT_NEAR(o.entropy[1], std::log(5.0f), 1e-6);
  EXPECT_EQ(o.logprob[2], 0.0f);
}

TEST(FusedLinearLogprobs, EmptyBatchZeroesTheWeightGradient) {
  const index_t h = 4, v = 6;
  mat<float> x(0, h, h);
  const auto w = random_mat<float>(v, h, h, 1.0, 3);
  mat<float> dw(v, h, h, 9.0);
  for (auto& e : dw.data) e = 9.0f;
  std::vector<index_t> y;
  std::vector<float> none;
  mat<float> dh(0, h, h);
  pt::fused_linear_logprobs_backward(host, x.view(), w.view(), y,
                                     token_logprobs_grads<float>{none, {}, none, {}}, dh.mview(),
                                     dw.mview());
  for (float e : dw.data) EXPECT_EQ(e, 0.0f);
  // accumulate leaves it alone
  for (auto& e : dw.data) e = 9.0f;
  fused_linear_logprobs_options acc;
  acc.accumulate_d_weight = true;
  pt::fused_linear_logprobs_backward(host, x.view(), w.view(), y,
                                     token_logprobs_grads<float>{none, {}, none, {}}, dh.mview(),
                                     dw.mview(), acc);
  for (float e : dw.data) EXPECT_EQ(e, 9.0f);
  outs<float> o(0);
  pt::fused_linear_logprobs(host, x.view(), w.view(), y, o.all());
}

// ------------------------------------------------------------------ finite differences

// L(X, W) = Σ_i a_i·logprob_i + b_i·entropy_i through the op's forward (double).
double loss(const mat<double>& x, const mat<double>& w, const std::vector<index_t>& y,
            const std::vector<double>& a, const std::vector<double>& b,
            const fused_linear_logprobs_options& opt) {
  outs<double> o(x.rows);
  pt::fused_linear_logprobs(host, x.view(), w.view(), y, o.all(), opt);
  double l = 0;
  for (index_t i = 0; i < x.rows; ++i) l += a[i] * o.logprob[i] + b[i] * o.entropy[i];
  return l;
}

TEST(FusedLinearLogprobs, FiniteDifferencesOfHiddenAndWeight) {
  const index_t n = 5, h = 4, v = 11;
  for (double tau : {1.0, 0.6}) {
    auto x = random_mat<double>(n, h, h + 2, 1.0, 11);
    auto w = random_mat<double>(v, h, h, 1.0, 12);
    const auto y = random_targets(n, v, 13, {3});
    std::vector<double> a{0.3, -1.2, 0.8, 2.0, -0.5}, b{0.7, 0.1, -0.9, 1.0, 0.4};
    fused_linear_logprobs_options opt;
    opt.temperature = tau;
    opt.chunk_size = 2;
    outs<double> o(n);
    pt::fused_linear_logprobs(host, x.view(), w.view(), y, o.all(), opt);
    mat<double> dh(n, h, h), dw(v, h, h);
    pt::fused_linear_logprobs_backward(host, x.view(), w.view(), y,
                                       token_logprobs_grads<double>{o.lse, o.entropy, a, b},
                                       dh.mview(), dw.mview(), opt);
    const double eps = 1e-6;
    for (index_t i = 0; i < n; ++i)
      for (index_t j = 0; j < h; ++j) {
        const double x0 = x.get(i, j);
        x.at(i, j) = x0 + eps;
        const double lp = loss(x, w, y, a, b, opt);
        x.at(i, j) = x0 - eps;
        const double lm = loss(x, w, y, a, b, opt);
        x.at(i, j) = x0;
        EXPECT_NEAR(dh.get(i, j), (lp - lm) / (2 * eps), 1e-7) << "d_hidden " << i << "," << j;
      }
    for (index_t k = 0; k < v; ++k)
      for (index_t j = 0; j < h; ++j) {
        const double w0 = w.get(k, j);
        w.at(k, j) = w0 + eps;
        const double lp = loss(x, w, y, a, b, opt);
        w.at(k, j) = w0 - eps;
        const double lm = loss(x, w, y, a, b, opt);
        w.at(k, j) = w0;
        EXPECT_NEAR(dw.get(k, j), (lp - lm) / (2 * eps), 1e-7) << "d_weight " << k << "," << j;
      }
  }
}

// ------------------------------------------------------------------ invariants

TEST(FusedLinearLogprobs, EqualsTheUnfusedPath) {
  // GEMM into materialised logits + ops/token_logprobs gives the same numbers.
  const index_t n = 10, h = 16, v = 257;
  const auto x = random_mat<float>(n, h, h, 1.0, 21);
  const auto w = random_mat<float>(v, h, h, 1.0, 22);
  const auto y = random_targets(n, v, 23, {5});
  std::vector<float> logits(static_cast<std::size_t>(n * v));
  for (index_t i = 0; i < n; ++i)
    for (index_t k = 0; k < v; ++k) {
      double s = 0;
      for (index_t j = 0; j < h; ++j) s += x.get(i, j) * w.get(k, j);
      logits[i * v + k] = static_cast<float>(s);
    }
  outs<float> u(n), f(n);
  pt::token_logprobs(host, matrix_view<const float>(logits.data(), n, v), y, u.all());
  fused_linear_logprobs_options opt;
  opt.chunk_size = 4;
  pt::fused_linear_logprobs(host, x.view(), w.view(), y, f.all(), opt);
  for (index_t i = 0; i < n; ++i) {
    EXPECT_NEAR(f.logprob[i], u.logprob[i], 1e-5);
    EXPECT_NEAR(f.entropy[i], u.entropy[i], 1e-5);
  }
}

TEST(FusedLinearLogprobs, AccumulateAddsToTheWeightGradientAndThreadsAgree) {
  case_spec s;
  const auto x = random_mat<double>(s.n, s.h, s.h, 1.0, 31);
  const auto w = random_mat<double>(s.v, s.h, s.h, 1.0, 32);
  const auto y = random_targets(s.n, s.v, 33);
  std::vector<double> a(s.n, -1.0 / s.n);
  outs<double> o(s.n);
  pt::fused_linear_logprobs(host, x.view(), w.view(), y, o.all());
  mat<double> dw(s.v, s.h, s.h), dw2(s.v, s.h, s.h);
  mat<double> none(0, 0, 0);
  pt::fused_linear_logprobs_backward(host, x.view(), w.view(), y,
                                     token_logprobs_grads<double>{o.lse, {}, a, {}},
                                     matrix_view<double>{}, dw.mview());
  for (auto& e : dw2.data) e = 1.5;
  fused_linear_logprobs_options acc;
  acc.accumulate_d_weight = true;
  acc.num_threads = 2;
  pt::fused_linear_logprobs_backward(host, x.view(), w.view(), y,
                                     token_logprobs_grads<double>{o.lse, {}, a, {}},
                                     matrix_view<double>{}, dw2.mview(), acc);
  for (std::size_t k = 0; k < dw.data.size(); ++k) EXPECT_NEAR(dw2.data[k], dw.data[k] + 1.5, 1e-14);
  // d_weight alone equals d_weight computed together with d_hidden.
  mat<double> dh(s.n, s.h, s.h), dw3(s.v, s.h, s.h);
  pt::fused_linear_logprobs_backward(host, x.view(), w.view(), y,
                                     token_logprobs_grads<double>{o.lse, {}, a, {}}, dh.mview(),
                                     dw3.mview());
  EXPECT_EQ(dw3.data, dw.data);
}

// ------------------------------------------------------------------ workspace

TEST(FusedLinearLogprobsWorkspace, BoundedByTheChunkNotByN) {
  fused_linear_logprobs_options opt;
  opt.chunk_size = 16;
  const index_t h = 64, v = 1000;
  for (auto pass : {fused_linear_pass::forward, fused_linear_pass::backward,
                    fused_linear_pass::forward_backward}) {
    const auto small = pt::fused_linear_logprobs_workspace_bytes<float>(host, 100, h, v, pass, opt);
    const auto big =
        pt::fused_linear_logprobs_workspace_bytes<float>(host, 1000000, h, v, pass, opt);
    EXPECT_EQ(small, big);
    // float: the chunk's logits (+ the chunk's d_hidden in the backward, + lse/entropy) + slack.
    std::size_t want = 16 * v * 4;
    if (pass != fused_linear_pass::forward) want += 16 * h * 4;
    if (pass == fused_linear_pass::forward_backward) want += 2 * 16 * 4;  // a multiple of 64
    EXPECT_EQ(big, want + 64);
    EXPECT_LT(big, std::size_t(1000000) * v * 4 / 1000);  // ≪ N × V logits
    // bfloat16 adds the widened chunk of hidden and one weight tile.
    const auto b = pt::fused_linear_logprobs_workspace_bytes<bf16>(host, 1000000, h, v, pass, opt);
    EXPECT_EQ(b, big + 16 * h * 4 + 256 * h * 4);
  }
  // chunk >= N is clamped to N; automatic chunk follows Liger's rule next_pow2(N / ceil(V / H)).
  opt.chunk_size = 1000;
  EXPECT_EQ(pt::fused_linear_logprobs_workspace_bytes<float>(host, 5, h, v,
                                                             fused_linear_pass::forward, opt),
            5 * v * 4 + 64 + 64 - (5 * v * 4) % 64);
  opt.chunk_size = 0;
  // ceil(1000 / 64) = 16, N / 16 = 62.5 -> 64 rows, raised to the floor of 256.
  EXPECT_EQ(pt::fused_linear_logprobs_workspace_bytes<float>(host, 1000, h, v,
                                                             fused_linear_pass::forward, opt),
            std::size_t(256) * v * 4 + 64);
  // 100000 tokens: ceil(1000 / 64) = 16, 100000 / 16 = 6250 -> 8192 rows (Liger's rule).
  EXPECT_EQ(pt::fused_linear_logprobs_workspace_bytes<float>(host, 100000, h, v,
                                                             fused_linear_pass::forward, opt),
            std::size_t(8192) * v * 4 + 64);
  // The floor never exceeds N.
  EXPECT_EQ(pt::fused_linear_logprobs_workspace_bytes<float>(host, 10, h, v,
                                                             fused_linear_pass::forward, opt),
            std::size_t(10) * v * 4 + 64);
}

TEST(FusedLinearLogprobsWorkspace, TwoPhaseContract) {
  case_spec s;
  const auto x = random_mat<float>(s.n, s.h, s.h, 1.0, 41);
  const auto w = random_mat<float>(s.v, s.h, s.h, 1.0, 42);
  const auto y = random_targets(s.n, s.v, 43);
  fused_linear_logprobs_options opt;
  opt.chunk_size = 2;
  outs<float> o(s.n);
  std::size_t bytes = 0;
  pt::fused_linear_logprobs(host, nullptr, bytes, x.view(), w.view(), y, o.all(), opt);
  EXPECT_EQ(bytes, pt::fused_linear_logprobs_workspace_bytes<float>(
                       host, s.n, s.h, s.v, fused_linear_pass::forward, opt));
  EXPECT_EQ(o.logprob, std::vector<float>(s.n, 777.0f));  // the query computes nothing
  std::vector<std::byte> ws(bytes + 3);
  // A misaligned workspace of exactly the reported size works.
  pt::fused_linear_logprobs(host, ws.data() + 3, bytes, x.view(), w.view(), y, o.all(), opt);
  outs<float> ref(s.n);
  pt::fused_linear_logprobs(host, x.view(), w.view(), y, ref.all(), opt);
  EXPECT_EQ(o.logprob, ref.logprob);
  // Too small: an error, outputs untouched.
  outs<float> o2(s.n);
  std::size_t small = bytes - 1;
  EXPECT_THROW(pt::fused_linear_logprobs(host, ws.data(), small, x.view(), w.view(), y, o2.all(),
                                         opt),
               pt::error);
  EXPECT_EQ(o2.logprob, std::vector<float>(s.n, 777.0f));
}

// ------------------------------------------------------------------ bad input

template <class F>
void expect_error_untouched(F&& f, const std::vector<std::vector<float>*>& outputs,
                            const char* what) {
  std::vector<std::vector<float>> before;
  for (auto* o : outputs) before.push_back(*o);
  EXPECT_THROW(f(), pt::error) << what;
  for (std::size_t k = 0; k < outputs.size(); ++k) EXPECT_EQ(*outputs[k], before[k]) << what;
}

TEST(FusedLinearLogprobsValidation, ErrorsLeaveOutputsUntouched) {
  const index_t n = 4, h = 3, v = 6;
  auto x = random_mat<float>(n, h, h, 1.0, 51);
  auto w = random_mat<float>(v, h, h, 1.0, 52);
  std::vector<index_t> y{0, 5, ignore, 2};
  outs<float> o(n);
  mat<float> dh(n, h, h, 3.0), dw(v, h, h, 3.0);
  for (auto& e : dh.data) e = 3.0f;
  for (auto& e : dw.data) e = 3.0f;
  std::vector<float> g(n, 0.5f), shrt(n - 1, 0.5f);
  std::vector<std::vector<float>*> all{&o.logprob, &o.lse, &o.entropy, &o.sum_p2, &dh.data,
                                       &dw.data, &x.data, &w.data};
  auto fwd = [&](matrix_view<const float> xv, matrix_view<const float> wv, std::vector<index_t> t,
                 token_logprobs_outputs<float> out, fused_linear_logprobs_options opt = {}) {
    return [=] { pt::fused_linear_logprobs(host, xv, wv, t, out, opt); };
  };
  auto bwd = [&](matrix_view<float> dhv, matrix_view<float> dwv, token_logprobs_grads<float> in,
                 fused_linear_logprobs_options opt = {}) {
    const auto xv = x.view(), wv = w.view();  // views of x and w themselves, not of copies
    return [=] { pt::fused_linear_logprobs_backward(host, xv, wv, y, in, dhv, dwv, opt); };
  };
  expect_error_untouched(fwd(x.view(), w.view(), {0, 1, 2}, o.all()), all, "targets size");
  expect_error_untouched(fwd(x.view(), w.view(), {0, 6, 1, 1}, o.all()), all, "target == V");
  expect_error_untouched(fwd(x.view(), w.view(), {0, -1, 1, 1}, o.all()), all, "target < 0");
  expect_error_untouched(fwd(x.view(), matrix_view<const float>(w.data.data(), v, h - 1, h), y,
                             o.all()),
                         all, "weight columns != H");
  expect_error_untouched(fwd(x.view(), matrix_view<const float>(w.data.data(), 0, h, h),
                             {ignore, ignore, ignore, ignore}, o.all()),
                         all, "empty vocabulary");
  expect_error_untouched(fwd(matrix_view<const float>(nullptr, n, h), w.view(), y, o.all()), all,
                         "null hidden");
  expect_error_untouched(fwd(matrix_view<const float>(x.data.data(), n, h, h - 1), w.view(), y,
                             o.all()),
                         all, "ld < cols");
  expect_error_untouched(fwd(x.view(), w.view(), y, {shrt}), all, "logprob size");
  expect_error_untouched(fwd(x.view(), w.view(), y, {o.logprob, shrt}), all, "lse size");
  for (double tau : {0.0, -1.0, std::nan(""), double(INFINITY)}) {
    fused_linear_logprobs_options opt;
    opt.temperature = tau;
    expect_error_untouched(fwd(x.view(), w.view(), y, o.all(), opt), all, "temperature");
  }
  fused_linear_logprobs_options neg;
  neg.chunk_size = -1;
  expect_error_untouched(fwd(x.view(), w.view(), y, o.all(), neg), all, "chunk_size");
  fused_linear_logprobs_options thr;
  thr.num_threads = -2;
  expect_error_untouched(fwd(x.view(), w.view(), y, o.all(), thr), all, "num_threads");

  const token_logprobs_grads<float> good{o.lse, o.entropy, g, g};
  expect_error_untouched(bwd(dh.mview(), dw.mview(), {shrt, o.entropy, g, g}), all, "lse size");
  expect_error_untouched(bwd(dh.mview(), dw.mview(), {o.lse, o.entropy, shrt, g}), all,
                         "d_logprob size");
  expect_error_untouched(bwd(dh.mview(), dw.mview(), {o.lse, {}, g, g}), all,
                         "entropy missing with d_entropy");
  expect_error_untouched(bwd(matrix_view<float>(dh.data.data(), n - 1, h), dw.mview(), good), all,
                         "d_hidden shape");
  expect_error_untouched(bwd(dh.mview(), matrix_view<float>(dw.data.data(), v, h + 1, h + 1),
                             good),
                         all, "d_weight shape");
  expect_error_untouched(bwd(matrix_view<float>(nullptr, n, h), dw.mview(), good), all,
                         "d_hidden null data");
  // d_weight on top of the weight (aliasing).
  expect_error_untouched(bwd(dh.mview(), w.mview(), good), all, "d_weight aliases weight");
  expect_error_untouched(bwd(x.mview(), dw.mview(), good), all, "d_hidden aliases hidden");
  expect_error_untouched(
      bwd(matrix_view<float>(dw.data.data(), n, h), dw.mview(), good), all,
      "d_hidden overlaps d_weight");
  expect_error_untouched(
      [&] {
        pt::fused_linear_logprobs_forward_backward(host, x.view(), w.view(), y,
                                                   std::span<const float>(shrt),
                                                   std::span<const float>(), o.all(), dh.mview(),
                                                   dw.mview());
      },
      all, "forward_backward d_logprob size");
  // The message names the row of a bad target.
  try {
    pt::fused_linear_logprobs(host, x.view(), w.view(), std::vector<index_t>{0, 1, 2, 17},
                              o.all());
    FAIL();
  } catch (const pt::error& e) {
    EXPECT_NE(std::string(e.what()).find("row 3"), std::string::npos) << e.what();
  }
}

}  // namespace
