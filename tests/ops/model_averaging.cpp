// Tests of ops/model_averaging.hpp: uniform and weighted averages, EMA, soft update and TR-DPO
// sync against naive float64 loops, for float, double and bfloat16 (sizes that cross the 4096
// chunk), in-place use, the TRL schedule (1-based global steps), presets, and every validation
// error with outputs untouched.
#include "posttrain/ops/model_averaging.hpp"

#include <gtest/gtest.h>

#include <Eigen/Core>
#include <cmath>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "posttrain/core/error.hpp"

namespace pt = posttrain;
using bf16 = Eigen::bfloat16;

namespace {

template <class T>
std::vector<T> random_params(std::mt19937_64& rng, std::size_t n) {
  std::normal_distribution<double> d(0.0, 1.0);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(d(rng));
  return v;
}

template <class T>
double tol() {
  if constexpr (std::is_same_v<T, double>) return 1e-14;
  if constexpr (std::is_same_v<T, float>) return 1e-6;
  return 1e-2;  // bfloat16: one rounding of a float result (8 bits of mantissa)
}

template <class T>
void expect_close(const std::vector<T>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(static_cast<double>(got[i]), want[i], tol<T>() * (1 + std::fabs(want[i]))) << i;
}

template <class T>
void check_all(std::size_t n) {
  std::mt19937_64 rng(n);
  const int K = 3;
  std::vector<std::vector<T>> m;
  for (int k = 0; k < K; ++k) m.push_back(random_params<T>(rng, n));
  std::vector<std::span<const T>> views(m.begin(), m.end());
  std::vector<T> out(n);

  pt::uniform_average(std::span<const std::span<const T>>(views), std::span<T>(out));
  std::vector<double> want(n);
  for (std::size_t i = 0; i < n; ++i) {
    double s = 0;
    for (int k = 0; k < K; ++k) s += static_cast<double>(m[k][i]);
    want[i] = s / K;
  }
  expect_close(out, want);

  const std::vector<double> w{0.5, 2.0, 1.5};
  pt::weighted_average(std::span<const std::span<const T>>(views), std::span<const double>(w),
                       std::span<T>(out));
  for (std::size_t i = 0; i < n; ++i) {
    double s = 0;
    for (int k = 0; k < K; ++k) s += w[k] * static_cast<double>(m[k][i]);
    want[i] = s / 4.0;
  }
  expect_close(out, want);

  // Not normalised: a plain linear combination, negative weights allowed.
  const std::vector<double> v{1.0, -1.0, 0.5};
  pt::weighted_average(std::span<const std::span<const T>>(views), std::span<const double>(v),
                       std::span<T>(out), {.normalize = false});
  for (std::size_t i = 0; i < n; ++i) {
    double s = 0;
    for (int k = 0; k < K; ++k) s += v[k] * static_cast<double>(m[k][i]);
    want[i] = s;
  }
  expect_close(out, want);

  // EMA: avg ← d·avg + (1 − d)·θ.
  std::vector<T> avg = m[0];
  pt::ema_update(std::span<T>(avg), std::span<const T>(m[1]), 0.9);
  for (std::size_t i = 0; i < n; ++i)
    want[i] = 0.9 * static_cast<double>(m[0][i]) + 0.1 * static_cast<double>(m[1][i]);
  expect_close(avg, want);

  // Soft update: tgt ← α·θ + (1 − α)·tgt.
  std::vector<T> tgt = m[0];
  pt::soft_update(std::span<T>(tgt), std::span<const T>(m[2]), 0.6);
  for (std::size_t i = 0; i < n; ++i)
    want[i] = 0.6 * static_cast<double>(m[2][i]) + 0.4 * static_cast<double>(m[0][i]);
  expect_close(tgt, want);
}

}  // namespace

TEST(ModelAveraging, MatchesNaiveForEveryTypeAndChunking) {
  for (std::size_t n :
       {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{4096}, std::size_t{10001}}) {
    SCOPED_TRACE(n);
    check_all<double>(n);
    check_all<float>(n);
    check_all<bf16>(n);
  }
}

// The output may be one of the inputs (the very same span): every element is read before written.
TEST(ModelAveraging, InPlaceOnTheSameSpan) {
  std::mt19937_64 rng(1);
  auto a = random_params<double>(rng, 9000), b = random_params<double>(rng, 9000);
  const auto a0 = a;
  std::vector<std::span<const double>> views{a, b};
  pt::uniform_average(std::span<const std::span<const double>>(views), std::span<double>(a));
  for (std::size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], 0.5 * (a0[i] + b[i]), 1e-15);
  // EMA with decay 1 keeps the average; decay 0 copies; soft_update α = 1 copies exactly.
  auto c = b;
  pt::ema_update(std::span<double>(c), std::span<const double>(a0), 1.0);
  EXPECT_EQ(c, b);
  pt::ema_update(std::span<double>(c), std::span<const double>(a0), 0.0);
  EXPECT_EQ(c, a0);
  std::vector<bf16> x(5, bf16(1.5f)), y(5, bf16(-3.25f));
  pt::soft_update(std::span<bf16>(x), std::span<const bf16>(y), 1.0);
  for (auto v : x) EXPECT_EQ(static_cast<float>(v), -3.25f);
  // A single model averages to itself.
  std::vector<std::span<const double>> one{b};
  std::vector<double> out(b.size());
  pt::uniform_average(std::span<const std::span<const double>>(one), std::span<double>(out));
  EXPECT_EQ(out, b);
}

// bfloat16 results are rounded once from the float result (not after every addend).
TEST(ModelAveraging, Bfloat16RoundsOnce) {
  // 1 + 2^-8 + 2^-8: each half-ulp addend alone rounds away in bfloat16 (ulp(1) = 2^-7, ties to
  // even), their sum (one ulp) does not.
  const float e = std::ldexp(1.0f, -7);
  std::vector<bf16> a{bf16(1.0f)}, b{bf16(e)}, c{bf16(e)};
  std::vector<std::span<const bf16>> views{a, b, c};
  const std::vector<double> w{1.0, 0.5, 0.5};
  std::vector<bf16> out(1);
  pt::weighted_average(std::span<const std::span<const bf16>>(views), std::span<const double>(w),
                       std::span<bf16>(out), {.normalize = false});
  EXPECT_EQ(static_cast<float>(out[0]), 1.0f + e);
}

// TRL SyncRefModelCallback: after optimizer step global_step (1-based), sync when
// global_step % ref_model_sync_steps == 0: θ_ref ← α·θ + (1 − α)·θ_ref.
TEST(ModelAveraging, TrDpoScheduleAndUpdate) {
  EXPECT_EQ(pt::presets::tr_dpo_soft.alpha, 0.6);
  EXPECT_EQ(pt::presets::tr_dpo_soft.every, 512);
  EXPECT_EQ(pt::presets::tr_dpo_hard.alpha, 1.0);
  EXPECT_FALSE(pt::tr_dpo_should_sync(0));
  EXPECT_FALSE(pt::tr_dpo_should_sync(1));
  EXPECT_FALSE(pt::tr_dpo_should_sync(511));
  EXPECT_TRUE(pt::tr_dpo_should_sync(512));
  EXPECT_TRUE(pt::tr_dpo_should_sync(1024));
  EXPECT_TRUE(pt::tr_dpo_should_sync(3, {.alpha = 0.5, .every = 1}));

  std::vector<double> ref{1.0, -2.0, 0.5}, pol{3.0, 0.0, -0.5};
  const pt::tr_dpo_sync_options o{.alpha = 0.6, .every = 2};
  int syncs = 0;
  std::vector<double> want = ref;
  for (pt::index_t step = 1; step <= 6; ++step) {
    const bool s = pt::tr_dpo_sync(std::span<double>(ref), std::span<const double>(pol), step, o);
    EXPECT_EQ(s, step % 2 == 0) << step;
    if (step % 2 == 0) {
      ++syncs;
      for (std::size_t i = 0; i < want.size(); ++i) want[i] = 0.6 * pol[i] + 0.4 * want[i];
    }
    for (std::size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(ref[i], want[i], 1e-15);
  }
  EXPECT_EQ(syncs, 3);
  // Hard update: a copy.
  std::vector<float> r{1, 2}, p{5, 6};
  EXPECT_TRUE(pt::tr_dpo_sync(std::span<float>(r), std::span<const float>(p), 512,
                              pt::presets::tr_dpo_hard));
  EXPECT_EQ(r, p);
}

TEST(ModelAveraging, ValidationErrorsLeaveOutputsUntouched) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> a{1, 2, 3}, b{4, 5, 6}, short_v{1, 2};
  const std::vector<double> sentinel{9, 9, 9};
  std::vector<double> out = sentinel;
  std::vector<std::span<const double>> views{a, b}, bad{a, short_v}, none;
  using models_t = std::span<const std::span<const double>>;
  auto expect_error = [&](auto call, const char* needle) {
    try {
      call();
      ADD_FAILURE() << "no error, expected " << needle;
    } catch (const pt::error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_EQ(out, sentinel);
  };
  expect_error([&] { pt::uniform_average(models_t(none), std::span<double>(out)); }, "models");
  expect_error([&] { pt::uniform_average(models_t(bad), std::span<double>(out)); }, "models[k]");
  const std::vector<double> w1{1.0}, wneg{1.0, -1.0}, wzero{0.0, 0.0}, wnan{1.0, nan};
  expect_error(
      [&] {
        pt::weighted_average(models_t(views), std::span<const double>(w1), std::span<double>(out));
      },
      "weights");
  expect_error(
      [&] {
        pt::weighted_average(models_t(views), std::span<const double>(wneg),
                             std::span<double>(out));
      },
      "weights[1]");
  expect_error(
      [&] {
        pt::weighted_average(models_t(views), std::span<const double>(wzero),
                             std::span<double>(out));
      },
      "sum to 0");
  expect_error(
      [&] {
        pt::weighted_average(models_t(views), std::span<const double>(wnan), std::span<double>(out),
                             {.normalize = false});
      },
      "weights[1]");
  expect_error([&] { pt::ema_update(std::span<double>(out), std::span<const double>(a), 1.5); },
               "decay");
  expect_error([&] { pt::ema_update(std::span<double>(out), std::span<const double>(a), nan); },
               "decay");
  expect_error(
      [&] { pt::ema_update(std::span<double>(out), std::span<const double>(short_v), 0.5); },
      "params");
  expect_error([&] { pt::soft_update(std::span<double>(out), std::span<const double>(a), -0.1); },
               "alpha");
  expect_error(
      [&] {
        pt::tr_dpo_sync(std::span<double>(out), std::span<const double>(a), 512, {.alpha = 2.0});
      },
      "options.alpha");
  expect_error(
      [&] {
        pt::tr_dpo_sync(std::span<double>(out), std::span<const double>(a), 5,
                        {.alpha = 0.5, .every = 0});
      },
      "options.every");
  expect_error(
      [&] { pt::tr_dpo_sync(std::span<double>(out), std::span<const double>(short_v), 1); },
      "policy");
  expect_error([&] { pt::tr_dpo_should_sync(-1); }, "step");
  // Shifted overlap between the output and an input is rejected; the identical span is allowed.
  std::vector<double> buf{1, 2, 3, 4};
  const std::vector<double> buf0 = buf;
  EXPECT_THROW(pt::ema_update(std::span<double>(buf.data(), 3),
                              std::span<const double>(buf.data() + 1, 3), 0.5),
               pt::error);
  EXPECT_EQ(buf, buf0);
  EXPECT_NO_THROW(pt::ema_update(std::span<double>(buf), std::span<const double>(buf), 0.5));
  EXPECT_EQ(buf, buf0);
}
