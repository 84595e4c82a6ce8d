// CUDA whitening (backend/cuda/whiten.cuh through ops/whiten.hpp with exec::cuda) against the CPU
// whiten on the same random inputs, for every whiten_conventions preset and the option fields
// they do not cover (shift_mean = false, zero / pass_through policies, per-segment scope with
// empty and all-masked segments), in place, with caller moments (device and host), and an
// independent float64 reference of the verl formula. The degenerate raise throws before
// anything is written. Size checks run without a device; the rest skip without one.
#include "device_test_helpers.cuh"

namespace {

using namespace pt_test;

template <class T>
void check_whiten(const std::vector<index_t>& lengths, const pt::whiten_options& o, bool with_mask,
                  unsigned seed, bool in_place = false) {
  std::mt19937_64 rng(seed);
  const std::vector<index_t> offs = offsets_of(lengths);
  const auto n = static_cast<std::size_t>(offs.back());
  std::vector<T> x = random_values<T>(rng, n, 0.5, 2.0);
  std::vector<float> m = with_mask ? random_mask(rng, n, &x) : std::vector<float>{};
  if (with_mask && lengths.size() > 2)
    for (index_t i = offs[1]; i < offs[2]; ++i) m[i] = 0.0f;
  std::vector<T> host(n, T(-3));
  const index_t hd =
      pt::whiten(pt::exec::host{}, std::span<const T>(x), m, offs, std::span<T>(host), o);
  device_session d;
  auto dx = d.upload(x);
  auto dm = d.upload(m);
  auto doffs = d.upload(offs);
  auto dout = in_place ? dx : d.upload(std::vector<T>(n, T(-4)));
  const index_t dd = pt::whiten(d.exec(), std::span<const T>(dx), std::span<const float>(dm),
                                std::span<const index_t>(doffs), dout, o);
  EXPECT_EQ(dd, o.on_degenerate == pt::degenerate_policy::raise ? hd : index_t(-1));
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  expect_close(d.download(dout), host, tol, "whiten");
}

const pt::whiten_options presets[] = {pt::whiten_conventions::verl, pt::whiten_conventions::trl_ppo,
                                      pt::whiten_conventions::openrlhf_global,
                                      pt::whiten_conventions::openrlhf_masked_normalize};

TEST(CudaWhiten, EveryPresetMatchesCpu) {
  POSTTRAIN_REQUIRE_DEVICE();
  std::mt19937_64 rng(5);
  unsigned seed = 100;
  for (const pt::whiten_options& o : presets) {
    auto p = o;
    if (p.scope == pt::whiten_scope::per_segment) p.on_degenerate = pt::degenerate_policy::zero;
    check_whiten<float>(random_lengths(rng, 64, 500), p, true, ++seed);
    check_whiten<double>(random_lengths(rng, 64, 500), p, true, ++seed);
    check_whiten<float>(random_lengths(rng, 8, 40000), p, false, ++seed);
    check_whiten<double>({300000}, p, true, ++seed, true);  // one huge scope, in place
  }
}

TEST(CudaWhiten, OptionFieldsMatchCpu) {
  POSTTRAIN_REQUIRE_DEVICE();
  unsigned seed = 200;
  for (auto policy : {pt::degenerate_policy::zero, pt::degenerate_policy::pass_through}) {
    pt::whiten_options o = pt::whiten_conventions::verl;
    o.shift_mean = false;
    o.on_degenerate = policy;
    o.scope = pt::whiten_scope::per_segment;
    check_whiten<float>({5, 0, 1, 7, 1000, 2}, o, true, ++seed);  // empty, singleton, masked
    o.multiply_by_mask = true;
    o.eps_mode = pt::whiten_eps_mode::clamp_min;
    check_whiten<double>({5, 0, 1, 7, 1000, 2}, o, true, ++seed);
    o.scope = pt::whiten_scope::batch;
    check_whiten<float>({1}, o, true, ++seed);   // N = 1: degenerate unbiased batch
    check_whiten<float>({0}, o, false, ++seed);  // N = 0
  }
}

TEST(CudaWhiten, IndependentReferenceVerl) {
  POSTTRAIN_REQUIRE_DEVICE();
  std::mt19937_64 rng(7);
  std::vector<double> x = random_values<double>(rng, 5000, 1.0, 3.0);
  std::vector<float> m = random_mask(rng, x.size(), &x);
  double cnt = 0, sum = 0;
  for (std::size_t i = 0; i < x.size(); ++i)
    if (m[i] != 0) cnt += m[i], sum += m[i] * x[i];
  const double mu = sum / (cnt + 1e-8);
  double ss = 0;
  for (std::size_t i = 0; i < x.size(); ++i)
    if (m[i] != 0) ss += m[i] * (x[i] - mu) * (x[i] - mu);
  const double var = ss / (cnt + 1e-8) * cnt / (cnt - 1);
  std::vector<double> ref(x.size());
  for (std::size_t i = 0; i < x.size(); ++i)
    ref[i] = m[i] != 0 ? (x[i] - mu) / std::sqrt(var + 1e-8) : 0.0;
  device_session d;
  auto dx = d.upload(x);
  auto dm = d.upload(m);
  auto dout = d.upload(std::vector<double>(x.size()));
  pt::whiten(d.exec(), std::span<const double>(dx), std::span<const float>(dm), dout,
             pt::whiten_conventions::verl);
  expect_close(d.download(dout), ref, 1e-12, "verl whiten vs naive");
}

TEST(CudaWhiten, WithMomentsMatchesCpu) {
  POSTTRAIN_REQUIRE_DEVICE();
  std::mt19937_64 rng(8);
  std::vector<float> x = random_values<float>(rng, 20000, -1.0, 0.5);
  std::vector<float> m = random_mask(rng, x.size(), &x);
  // Moments of a different set (e.g. the merge of every rank's moments).
  std::vector<float> other = random_values<float>(rng, 3000, 0.0, 1.0);
  const pt::masked_stats global = pt::merge(pt::masked_moments(pt::exec::host{}, x, m),
                                            pt::masked_moments(pt::exec::host{}, other, {}));
  std::vector<float> host(x.size());
  pt::whiten_with_moments(pt::exec::host{}, x, m, global, std::span<float>(host),
                          pt::whiten_conventions::openrlhf_global);
  device_session d;
  auto dx = d.upload(x);
  auto dm = d.upload(m);
  auto dout = d.upload(std::vector<float>(x.size()));
  pt::whiten_with_moments(d.exec(), std::span<const float>(dx), std::span<const float>(dm), global,
                          dout, pt::whiten_conventions::openrlhf_global);
  expect_close(d.download(dout), host, 1e-5, "host moments");
  // Device moments, per segment.
  const std::vector<index_t> offs{0, 100, 100, 20000};
  const auto seg = pt::segment_moments(pt::exec::host{}, x, m, offs);
  auto dseg = d.upload(seg);
  auto doffs = d.upload(offs);
  pt::whiten_options o = pt::whiten_conventions::openrlhf_masked_normalize;
  pt::whiten_with_moments(pt::exec::host{}, x, m, offs, seg, std::span<float>(host), o);
  pt::whiten_with_moments(d.exec(), std::span<const float>(dx), std::span<const float>(dm),
                          std::span<const index_t>(doffs), std::span<const pt::masked_stats>(dseg),
                          dout, o);
  expect_close(d.download(dout), host, 1e-5, "device moments");
}

TEST(CudaWhiten, RaiseThrowsBeforeWriting) {
  POSTTRAIN_REQUIRE_DEVICE();
  const std::vector<float> x{1.0f, 2.0f, 3.0f};
  const std::vector<float> m{0.0f, 1.0f, 0.0f};  // Σw = 1: the unbiased variance is undefined
  device_session d;
  auto dx = d.upload(x);
  auto dm = d.upload(m);
  auto dout = d.upload(std::vector<float>(3, -9.0f));
  EXPECT_THROW(pt::whiten(d.exec(), std::span<const float>(dx), std::span<const float>(dm), dout,
                          pt::whiten_conventions::verl),
               pt::error);
  EXPECT_EQ(d.download(dout), std::vector<float>(3, -9.0f));
  pt::whiten_options o = pt::whiten_conventions::trl_ppo;
  o.scope = pt::whiten_scope::per_segment;
  const std::vector<index_t> offs{0, 2, 3};  // the second segment has Σw = 0
  auto doffs = d.upload(offs);
  const std::vector<float> m2{1.0f, 1.0f, 0.0f};
  auto dm2 = d.upload(m2);
  EXPECT_THROW(pt::whiten(d.exec(), std::span<const float>(dx), std::span<const float>(dm2),
                          std::span<const index_t>(doffs), dout, o),
               pt::error);
  EXPECT_EQ(d.download(dout), std::vector<float>(3, -9.0f));
}

TEST(CudaWhiten, DeviceFrontEndRejectsBadArgumentsWithoutTouchingMemory) {
  std::vector<float> x(10), m(9), out(10, -1.0f), short_out(9);
  const pt::exec::cuda e{};
  const auto verl = pt::whiten_conventions::verl;
  EXPECT_THROW(pt::whiten(e, std::span<const float>(x), std::span<const float>(m),
                          std::span<float>(out), verl),
               pt::error);
  EXPECT_THROW(pt::whiten(e, std::span<const float>(x), {}, std::span<float>(short_out), verl),
               pt::error);
  auto bad = verl;
  bad.eps = -1.0;
  EXPECT_THROW(pt::whiten(e, std::span<const float>(x), {}, std::span<float>(out), bad), pt::error);
  auto seg = pt::whiten_conventions::openrlhf_masked_normalize;
  EXPECT_THROW(pt::whiten(e, std::span<const float>(x), {}, std::span<float>(out), seg),
               pt::error);  // per_segment without offsets
  EXPECT_THROW(
      pt::whiten(e, std::span<const float>(x), {}, std::span<float>(x.data() + 1, 9 + 0), verl),
      pt::error);
  EXPECT_EQ(out, std::vector<float>(10, -1.0f));
}

}  // namespace
