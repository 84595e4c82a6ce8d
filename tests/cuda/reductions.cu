// CUDA segmented statistics (backend/cuda/reductions.cuh through the ops/reductions.hpp front
// ends with exec::cuda) against the CPU backend and an independent float64 reference on the same
// random ragged batches: empty and all-masked segments, NaN under zero weights, fractional
// weights, one huge segment (split over many CTAs), N = 1, float and double, run-to-run bitwise
// determinism. Size checks of the device front ends run without a device (they never touch the
// memory); the rest skip when no CUDA device is available.
#include "device_test_helpers.cuh"

namespace {

using namespace pt_test;

struct naive_stats {
  double count = 0, sum = 0, mean = 0, var_b = 0, var_u = 0;
};

// Independent reference: plain loops in double.
template <class T>
std::vector<naive_stats> naive(const std::vector<T>& x, const std::vector<float>& m,
                               const std::vector<index_t>& o) {
  std::vector<naive_stats> r(o.size() - 1);
  for (std::size_t s = 0; s + 1 < o.size(); ++s) {
    naive_stats& st = r[s];
    for (index_t i = o[s]; i < o[s + 1]; ++i) {
      const double w = m.empty() ? 1.0 : m[i];
      if (w == 0.0) continue;
      st.count += w;
      st.sum += w * double(x[i]);
    }
    if (st.count <= 0) continue;
    st.mean = st.sum / st.count;
    double m2 = 0;
    for (index_t i = o[s]; i < o[s + 1]; ++i) {
      const double w = m.empty() ? 1.0 : m[i];
      if (w == 0.0) continue;
      m2 += w * (double(x[i]) - st.mean) * (double(x[i]) - st.mean);
    }
    st.var_b = m2 / st.count;
    st.var_u = st.count > 1 ? m2 / (st.count - 1) : 0.0;
  }
  return r;
}

template <class T>
void check_segments(const std::vector<index_t>& lengths, bool with_mask, unsigned seed,
                    double offset = 0.0) {
  std::mt19937_64 rng(seed);
  const std::vector<index_t> o = offsets_of(lengths);
  const auto n = static_cast<std::size_t>(o.back());
  std::vector<T> x = random_values<T>(rng, n, offset, 1.0);
  std::vector<float> m = with_mask ? random_mask(rng, n, &x) : std::vector<float>{};
  if (with_mask && lengths.size() > 2)  // an all-masked segment
    for (index_t i = o[1]; i < o[2]; ++i) m[i] = 0.0f;
  const std::size_t S = lengths.size();

  std::vector<double> hs(S), hc(S), hm(S), hb(S), hu(S);
  std::vector<pt::masked_stats> hmom(S);
  pt::segment_stats(
      pt::exec::host{}, std::span<const T>(x), m, o,
      {.sum = hs, .count = hc, .mean = hm, .var_biased = hb, .var_unbiased = hu, .moments = hmom});

  device_session d;
  auto dx = d.upload(x);
  auto dm = d.upload(m);
  auto dofs = d.upload(o);
  std::vector<double> zeros(S, -7.0);
  auto ds = d.upload(zeros), dc = d.upload(zeros), dmean = d.upload(zeros), db = d.upload(zeros),
       du = d.upload(zeros);
  auto dmom = d.upload(std::vector<pt::masked_stats>(S));
  pt::segment_stats(d.exec(), std::span<const T>(dx), std::span<const float>(dm),
                    std::span<const index_t>(dofs),
                    {.sum = ds,
                     .count = dc,
                     .mean = dmean,
                     .var_biased = db,
                     .var_unbiased = du,
                     .moments = dmom});
  const double tol = 1e-12;
  expect_close(d.download(ds), hs, tol, "sum");
  expect_close(d.download(dc), hc, tol, "count");
  expect_close(d.download(dmean), hm, tol, "mean");
  expect_close(d.download(db), hb, 1e-9, "var_biased");
  expect_close(d.download(du), hu, 1e-9, "var_unbiased");
  const std::vector<pt::masked_stats> gm = d.download(dmom);
  std::vector<double> gm2(S), hm2(S);
  for (std::size_t s = 0; s < S; ++s) {
    gm2[s] = gm[s].m2;
    hm2[s] = hmom[s].m2;
  }
  expect_close(gm2, hm2, 1e-9, "m2");

  // The independent reference.
  const std::vector<naive_stats> ref = naive(x, m, o);
  std::vector<double> rm(S), ru(S);
  for (std::size_t s = 0; s < S; ++s) {
    rm[s] = ref[s].mean;
    ru[s] = ref[s].var_u;
  }
  expect_close(d.download(dmean), rm, 1e-12, "mean vs naive");
  expect_close(d.download(du), ru, 1e-9, "var_unbiased vs naive");

  // Run to run: bitwise the same.
  auto dmean2 = d.upload(zeros);
  pt::segment_stats(d.exec(), std::span<const T>(dx), std::span<const float>(dm),
                    std::span<const index_t>(dofs), {.mean = dmean2, .var_unbiased = ds});
  const auto a = d.download(dmean), b = d.download(dmean2);
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(double)));
}

TEST(CudaReductions, SegmentStatsMatchCpuFloat) {
  POSTTRAIN_REQUIRE_DEVICE();
  std::mt19937_64 rng(1);
  check_segments<float>(random_lengths(rng, 200, 300), true, 11);
  check_segments<float>(random_lengths(rng, 50, 3000), false, 12);
}

TEST(CudaReductions, SegmentStatsMatchCpuDouble) {
  POSTTRAIN_REQUIRE_DEVICE();
  std::mt19937_64 rng(2);
  check_segments<double>(random_lengths(rng, 300, 200), true, 21);
  check_segments<double>(random_lengths(rng, 7, 9000), true, 22, 1e6);  // |mean| >> std
}

TEST(CudaReductions, EdgeCases) {
  POSTTRAIN_REQUIRE_DEVICE();
  check_segments<float>({1}, true, 31);  // N = 1
  check_segments<float>({1}, false, 32);
  check_segments<double>({0, 0, 5, 0}, true, 33);  // empty segments
  check_segments<float>({0}, true, 34);            // one empty segment, N = 0
  check_segments<double>({400000}, true, 35);      // one huge segment: many parts + fold
  check_segments<float>({3, 250000, 2, 1}, false, 36);
}

TEST(CudaReductions, ScalarFrontEndsMatchCpu) {
  POSTTRAIN_REQUIRE_DEVICE();
  std::mt19937_64 rng(4);
  std::vector<float> x = random_values<float>(rng, 70001, 3.0, 2.0);
  std::vector<float> m = random_mask(rng, x.size(), &x);
  device_session d;
  auto dx = d.upload(x);
  auto dm = d.upload(m);
  const pt::masked_stats h = pt::masked_moments(pt::exec::host{}, x, m);
  const pt::masked_stats g =
      pt::masked_moments(d.exec(), std::span<const float>(dx), std::span<const float>(dm));
  EXPECT_NEAR(g.count, h.count, 1e-12 * h.count);
  EXPECT_NEAR(g.sum, h.sum, 1e-12 * std::fabs(h.sum));
  EXPECT_NEAR(g.m2, h.m2, 1e-10 * h.m2);
  EXPECT_NEAR(pt::masked_mean(d.exec(), std::span<const float>(dx), std::span<const float>(dm)),
              pt::masked_mean(pt::exec::host{}, x, m), 1e-12);
  EXPECT_NEAR(pt::masked_var(d.exec(), std::span<const float>(dx), {}, pt::variance_kind::biased),
              pt::masked_var(pt::exec::host{}, x, {}, pt::variance_kind::biased), 1e-10);
  const std::vector<index_t> o{0, 10, 10, 70001};
  auto dofs = d.upload(o);
  const auto gs = pt::segment_moments(d.exec(), std::span<const float>(dx),
                                      std::span<const float>(dm), std::span<const index_t>(dofs));
  const auto hs = pt::segment_moments(pt::exec::host{}, x, m, o);
  ASSERT_EQ(gs.size(), 3u);
  for (std::size_t s = 0; s < 3; ++s) {
    EXPECT_NEAR(gs[s].mean, hs[s].mean, 1e-12 * (1 + std::fabs(hs[s].mean)));
    EXPECT_NEAR(gs[s].m2, hs[s].m2, 1e-10 * (1 + hs[s].m2));
  }
}

// The device front ends check sizes on the host and never dereference the (here: host) pointers,
// so these run without a device.
TEST(CudaReductions, DeviceFrontEndRejectsBadSizesWithoutTouchingMemory) {
  std::vector<float> x(10), m(9);
  std::vector<index_t> o{0, 10};
  std::vector<double> out(3, -1.0);
  const pt::exec::cuda e{};
  EXPECT_THROW(pt::segment_stats(e, std::span<const float>(x), std::span<const float>(m),
                                 std::span<const index_t>(o), {.mean = out}),
               pt::error);
  EXPECT_THROW(pt::segment_stats(e, std::span<const float>(x), {}, std::span<const index_t>(o),
                                 {.mean = out}),  // out has 3, expected 1
               pt::error);
  EXPECT_THROW(pt::segment_stats(e, std::span<const float>(x), {}, std::span<const index_t>(), {}),
               pt::error);
  EXPECT_THROW((void)pt::masked_moments(e, std::span<const float>(x), std::span<const float>(m)),
               pt::error);
  EXPECT_EQ(out, std::vector<double>(3, -1.0));
}

}  // namespace
