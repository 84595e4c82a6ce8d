// Tests of backend/cuda/kto.cuh: loss::kto<Link, SeqReduce>::compute(exec::cuda, ...) against an
// independent float64 reference written here from the formulas of loss/kto.hpp (and against the
// host backend on the same inputs): loss, statistics, per-example losses and rewards, the token
// gradients (exactly 0 where the mask is 0, NaN log-probs there never read), float and double,
// both links, seq::sum and seq::mean, empty completions, the global normaliser; skips (GTEST_SKIP
// with the reason) without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "device_test_helpers.cuh"

namespace {

using namespace pt_test;

struct f64_result {
  double loss = 0, desirable_reward = 0, undesirable_reward = 0, nd = 0, nu = 0;
  std::vector<double> grad, example_losses, rewards;
};

double sig(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// Unpaired KTO from the formulas: Δ = reduce(ℓ, m) − ρ; kto: desirable 1 − σ(β(Δ − z0)),
// undesirable 1 − σ(β(z0 − Δ)); apo_zero: desirable 1 − σ(βΔ), undesirable σ(βΔ);
// loss = Σ λ·L / D; ∂loss/∂ℓ_t = λ·dL/dΔ·m_t·(1 or 1/W)/D.
f64_result reference(bool apo, bool mean, const std::vector<double>& lp,
                     const std::vector<float>& m, const std::vector<index_t>& off,
                     const std::vector<double>& ref, const std::vector<std::uint8_t>& des,
                     double z0, const pt::loss::kto_options& o, double divisor) {
  const std::size_t b = off.size() - 1;
  f64_result r;
  r.grad.assign(lp.size(), 0.0);
  r.example_losses.resize(b);
  r.rewards.resize(b);
  double total = 0, rd = 0, ru = 0;
  for (std::size_t i = 0; i < b; ++i) {
    double s = 0, w = 0;
    for (index_t t = off[i]; t < off[i + 1]; ++t)
      if (m[t] != 0.0f) {
        s += double(m[t]) * lp[t];
        w += m[t];
      }
    const double div = std::max(w, 1.0);  // seq::mean: an (almost) empty row divides by 1
    const double pi = mean ? s / div : s;
    const double d = pi - ref[i];
    const bool want = des[i] != 0;
    const double lambda = want ? o.desirable_weight : o.undesirable_weight;
    double loss, slope;
    if (!apo) {
      const double x = want ? o.beta * (d - z0) : o.beta * (z0 - d);
      loss = 1.0 - sig(x);
      slope = (want ? -o.beta : o.beta) * sig(x) * (1.0 - sig(x));
    } else {
      const double x = o.beta * d;
      loss = want ? 1.0 - sig(x) : sig(x);
      slope = (want ? -o.beta : o.beta) * sig(x) * (1.0 - sig(x));
    }
    r.example_losses[i] = lambda * loss;
    r.rewards[i] = o.beta * d;
    total += lambda * loss;
    (want ? rd : ru) += o.beta * d;
    (want ? r.nd : r.nu) += 1;
    const double scale = mean ? 1.0 / div : 1.0;
    for (index_t t = off[i]; t < off[i + 1]; ++t)
      r.grad[t] = double(m[t]) * lambda * slope * scale / divisor;
  }
  r.loss = total / divisor;
  r.desirable_reward = r.nd > 0 ? rd / r.nd : 0;
  r.undesirable_reward = r.nu > 0 ? ru / r.nu : 0;
  return r;
}

template <class Link, class SeqReduce, class T>
void check(int examples, index_t max_len, double global, unsigned seed, const std::string& what) {
  using L = pt::loss::kto<Link, SeqReduce>;
  constexpr bool apo = std::is_same_v<Link, pt::unpaired::apo_zero>;
  constexpr bool mean = std::is_same_v<SeqReduce, pt::seq::mean>;
  std::mt19937_64 rng(seed);
  const std::vector<index_t> off = offsets_of(random_lengths(rng, examples, max_len));
  const std::size_t n = static_cast<std::size_t>(off.back());
  std::vector<T> lp = random_values<T>(rng, n, -1.5, 0.7);
  const std::vector<float> m = random_mask(rng, n, &lp);  // NaN under the zeros
  const std::vector<T> ref = random_values<T>(rng, static_cast<std::size_t>(examples), -3.0, 4.0);
  std::vector<std::uint8_t> des(static_cast<std::size_t>(examples));
  std::bernoulli_distribution coin(0.6);
  for (auto& d : des) d = coin(rng) ? 1 : 0;
  const pt::loss::kto_options o{.beta = 0.3, .desirable_weight = 1.0, .undesirable_weight = 1.33};
  const double z0 = 0.25;
  const pt::loss::kto_normalizer norm{.examples = global};
  const double divisor = global > 0 ? global : double(examples);

  std::vector<double> lpd(n), refd(ref.size());
  for (std::size_t i = 0; i < n; ++i) lpd[i] = static_cast<double>(lp[i]);
  for (std::size_t i = 0; i < ref.size(); ++i) refd[i] = static_cast<double>(ref[i]);
  const f64_result want = reference(apo, mean, lpd, m, off, refd, des, z0, o, divisor);

  device_session s;
  const auto d_lp = s.upload(lp);
  const auto d_m = s.upload(m);
  const auto d_off = s.upload(off);
  const auto d_ref = s.upload(ref);
  const auto d_des = s.upload(des);
  auto d_grad = s.upload(std::vector<T>(n, T(-9)));
  auto d_losses = s.upload(std::vector<double>(ref.size(), -9.0));
  auto d_rewards = s.upload(std::vector<double>(ref.size(), -9.0));
  const pt::loss::kto_inputs<T> in{pt::token_batch{std::span<const index_t>(d_off),
                                                   std::span<const float>(d_m)},
                                   std::span<const T>(d_lp), std::span<const T>(d_ref),
                                   std::span<const std::uint8_t>(d_des), z0};
  const pt::loss::kto_result got =
      L::compute(s.exec(), in, o, {d_grad, d_losses, d_rewards}, norm);
  const double tol = std::is_same_v<T, float> ? 2e-5 : 1e-11;
  EXPECT_NEAR(got.loss, want.loss, tol * (1 + std::fabs(want.loss))) << what;
  EXPECT_NEAR(got.desirable_reward, want.desirable_reward, tol * (1 + std::fabs(want.desirable_reward))) << what;
  EXPECT_NEAR(got.undesirable_reward, want.undesirable_reward,
              tol * (1 + std::fabs(want.undesirable_reward)))
      << what;
  EXPECT_EQ(got.desirable_count, want.nd) << what;
  EXPECT_EQ(got.undesirable_count, want.nu) << what;
  EXPECT_EQ(got.kl_reference, z0) << what;
  expect_close(s.download(d_losses), want.example_losses, tol, what + " example_losses");
  expect_close(s.download(d_rewards), want.rewards, tol, what + " rewards");
  const std::vector<T> grad = s.download(d_grad);
  expect_close(grad, want.grad, tol, what + " grad");
  for (std::size_t t = 0; t < n; ++t)
    if (m[t] == 0.0f) ASSERT_EQ(grad[t], T(0)) << what << " masked grad " << t;

  // The host backend on the same inputs agrees to rounding (its 8-lane sums differ in order).
  std::vector<T> host_grad(n);
  const pt::loss::kto_inputs<T> host_in{pt::token_batch{off, m}, lp, ref, des, z0};
  const pt::loss::kto_result host =
      L::compute(pt::exec::host{}, host_in, o, {std::span<T>(host_grad)}, norm);
  EXPECT_NEAR(got.loss, host.loss, tol * (1 + std::fabs(host.loss))) << what << " vs host";
  expect_close(grad, host_grad, tol, what + " grad vs host");

  // Without the optional outputs (scratch on the device) the loss is the same.
  const pt::loss::kto_result bare = L::compute(s.exec(), in, o, {}, norm);
  EXPECT_EQ(bare.loss, got.loss) << what;
}

}  // namespace

TEST(CudaKto, MatchesFloat64Reference) {
  POSTTRAIN_REQUIRE_DEVICE();
  unsigned seed = 7;
  check<pt::unpaired::kto, pt::seq::sum, double>(300, 90, 0.0, ++seed, "kto sum double");
  check<pt::unpaired::kto, pt::seq::sum, float>(300, 90, 0.0, ++seed, "kto sum float");
  check<pt::unpaired::kto, pt::seq::mean, double>(257, 700, 0.0, ++seed, "kto mean double");
  check<pt::unpaired::apo_zero, pt::seq::sum, double>(64, 40, 512.0, ++seed, "apo_zero global");
  check<pt::unpaired::apo_zero, pt::seq::mean, float>(33, 3000, 0.0, ++seed, "apo_zero mean");
  check<pt::unpaired::kto, pt::seq::sum, double>(1, 0, 0.0, ++seed, "one empty completion");
}

TEST(CudaKto, EmptyBatchAndBadSizesBeforeAnyWork) {
  POSTTRAIN_REQUIRE_DEVICE();
  using L = pt::loss::kto<pt::unpaired::kto>;
  device_session s;
  const auto d_off = s.upload(std::vector<index_t>{0});
  const pt::loss::kto_inputs<double> empty{pt::token_batch{std::span<const index_t>(d_off), {}}};
  EXPECT_EQ(L::compute(s.exec(), empty).loss, 0.0);
  const auto d_off2 = s.upload(std::vector<index_t>{0, 2});
  const auto d_lp = s.upload(std::vector<double>{-1.0, -2.0});
  const pt::loss::kto_inputs<double> missing{
      pt::token_batch{std::span<const index_t>(d_off2), {}}, std::span<const double>(d_lp)};
  EXPECT_THROW(L::compute(s.exec(), missing), pt::error);  // reference / desirable missing
}
