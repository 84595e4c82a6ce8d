// Tests of backend/cuda/kl.cuh: kl_divergence on exec::cuda against the host backend on the same
// random log-probs, for every estimator, float and double, with and without clamps and gradient,
// in place; skips (GTEST_SKIP with the reason) without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "device_test_helpers.cuh"

namespace {

using namespace pt_test;

template <class E, class T>
void check(const pt::kl_options& o, bool with_grad, std::size_t n, unsigned seed,
           const std::string& what) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> lp(-2.0, 1.0), gap(0.0, 3.0);
  std::vector<T> logprob(n), ref(n);
  for (std::size_t i = 0; i < n; ++i) {
    logprob[i] = static_cast<T>(lp(rng));
    ref[i] = static_cast<T>(static_cast<double>(logprob[i]) - gap(rng));
  }
  std::vector<T> want_v(n), want_g(with_grad ? n : 0);
  pt::kl_divergence<E>(pt::exec::host{}, std::span<const T>(logprob), std::span<const T>(ref), o,
                       std::span<T>(want_v), std::span<T>(want_g));
  device_session s;
  const auto d_lp = s.upload(logprob);
  const auto d_ref = s.upload(ref);
  auto d_v = s.upload(std::vector<T>(n));
  auto d_g = s.upload(std::vector<T>(with_grad ? n : 0));
  pt::kl_divergence<E>(s.exec(), std::span<const T>(d_lp), std::span<const T>(d_ref), o, d_v,
                       d_g);
  const double rtol = std::is_same_v<T, float> ? 2e-6 : 1e-13;
  const auto got_v = s.download(d_v);
  for (std::size_t i = 0; i < n; ++i)
    ASSERT_NEAR(got_v[i], want_v[i], 1e-30 + rtol * std::abs(double(want_v[i])))
        << what << " value " << i;
  if (with_grad) {
    const auto got_g = s.download(d_g);
    for (std::size_t i = 0; i < n; ++i)
      ASSERT_NEAR(got_g[i], want_g[i], 1e-30 + rtol * std::abs(double(want_g[i])))
          << what << " grad " << i;
  }
}

template <class E>
void check_estimator(const std::string& name) {
  unsigned seed = 1;
  for (bool grad : {false, true}) {
    check<E, float>({}, grad, 100003, ++seed, name + " float");
    check<E, double>({}, grad, 100003, ++seed, name + " double");
    check<E, float>(pt::kl_conventions::verl(pt::kl_kind::k3), grad, 5000, ++seed,
                    name + " float clamped");
    check<E, double>(pt::kl_conventions::openrlhf(), grad, 5000, ++seed,
                     name + " double clamped");
  }
}

}  // namespace

TEST(CudaKl, EveryEstimatorMatchesHost) {
  POSTTRAIN_REQUIRE_DEVICE();
  check_estimator<pt::kl::k1>("k1");
  check_estimator<pt::kl::abs>("abs");
  check_estimator<pt::kl::k2>("k2");
  check_estimator<pt::kl::k3>("k3");
  check_estimator<pt::kl::straight_through<pt::kl::k3>>("k3+");
  check_estimator<pt::kl::none>("none");
}

TEST(CudaKl, InPlaceOverTheLogprobs) {
  POSTTRAIN_REQUIRE_DEVICE();
  const std::vector<double> lp = {-1.0, -2.5, -0.1, -7.0}, ref = {-1.5, -2.0, -0.1, -1.0};
  std::vector<double> want(lp.size());
  pt::kl_divergence<pt::kl::k3>(pt::exec::host{}, std::span<const double>(lp),
                                std::span<const double>(ref), {}, std::span<double>(want));
  device_session s;
  auto d_lp = s.upload(lp);
  const auto d_ref = s.upload(ref);
  pt::kl_divergence<pt::kl::k3>(s.exec(), std::span<const double>(d_lp),
                                std::span<const double>(d_ref), {}, d_lp);
  const auto got = s.download(d_lp);
  for (std::size_t i = 0; i < lp.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-15) << i;
}
