// CUDA discounted returns and reverse cumulative sums (backend/cuda/reinforce.cuh, scan.cuh,
// through advantage/reinforce.hpp with exec::cuda) against the CPU estimators on the same random
// token rewards: both return conventions, γ in {0, 0.9, 1}, masks with interior holes (NaN under
// them), empty and single-token sequences, sequences longer than one chunk (1024 tokens), float
// and double; REINFORCE++ presets (returns + whitening on the device); an independent float64
// reference. Size checks run without a device; the rest skip without one.
#include "device_test_helpers.cuh"

namespace {

using namespace pt_test;
namespace adv = posttrain::advantage;

template <class T>
void check_returns(const std::vector<index_t>& lengths, adv::discounted_return_options o,
                   bool with_mask, unsigned seed, bool cumsum = false) {
  std::mt19937_64 rng(seed);
  const std::vector<index_t> offs = offsets_of(lengths);
  const auto n = static_cast<std::size_t>(offs.back());
  std::vector<T> r = random_values<T>(rng, n);
  const std::vector<float> m = with_mask ? random_mask(rng, n, &r) : std::vector<float>{};
  std::vector<T> host(n, T(-3));
  if (cumsum)
    adv::reverse_cumsum(pt::exec::host{}, std::span<const T>(r), m, offs, std::span<T>(host));
  else
    adv::discounted_returns(pt::exec::host{}, std::span<const T>(r), m, offs, std::span<T>(host),
                            o);
  device_session d;
  auto dr = d.upload(r);
  auto dm = d.upload(m);
  auto doffs = d.upload(offs);
  auto dout = d.upload(std::vector<T>(n, T(-4)));
  if (cumsum)
    adv::reverse_cumsum(d.exec(), std::span<const T>(dr), std::span<const float>(dm),
                        std::span<const index_t>(doffs), dout);
  else
    adv::discounted_returns(d.exec(), std::span<const T>(dr), std::span<const float>(dm),
                            std::span<const index_t>(doffs), dout, o);
  // The scan composes products: float outputs of sums over ~5000 tokens differ by a few ulps of
  // the partial sums.
  expect_close(d.download(dout), host, std::is_same_v<T, float> ? 1e-5 : 1e-11, "returns");
}

TEST(CudaReinforce, DiscountedReturnsMatchCpu) {
  POSTTRAIN_REQUIRE_DEVICE();
  std::mt19937_64 rng(13);
  unsigned seed = 500;
  for (auto conv : {adv::return_convention::reset_at_masked, adv::return_convention::mask_rewards})
    for (double gamma : {0.0, 0.9, 1.0}) {
      const adv::discounted_return_options o{.gamma = gamma, .convention = conv};
      check_returns<float>(random_lengths(rng, 100, 2500), o, true, ++seed);
      check_returns<double>(random_lengths(rng, 100, 2500), o, true, ++seed);
      check_returns<double>(random_lengths(rng, 30, 5000), o, false, ++seed);
      check_returns<float>({0, 1, 0, 1024, 1025, 2048, 1}, o, true, ++seed);  // chunk edges
    }
}

TEST(CudaReinforce, ReverseCumsumMatchesCpu) {
  POSTTRAIN_REQUIRE_DEVICE();
  std::mt19937_64 rng(14);
  check_returns<float>(random_lengths(rng, 100, 3000), {}, true, 601, true);
  check_returns<double>(random_lengths(rng, 10, 30000), {}, false, 602, true);
  check_returns<double>({1}, {}, false, 603, true);  // N = 1
}

TEST(CudaReinforce, IndependentReferenceResetAtMasked) {
  POSTTRAIN_REQUIRE_DEVICE();
  std::mt19937_64 rng(15);
  const std::vector<index_t> offs = offsets_of({7, 3000, 0, 1});
  const auto n = static_cast<std::size_t>(offs.back());
  std::vector<double> r = random_values<double>(rng, n);
  std::vector<float> m = random_mask(rng, n, &r);
  const double gamma = 0.97;
  std::vector<double> ref(n);
  for (std::size_t b = 0; b + 1 < offs.size(); ++b) {
    double carry = 0;
    for (index_t t = offs[b + 1] - 1; t >= offs[b]; --t) {
      const double g = m[t] != 0 ? r[t] + gamma * carry : 0.0;
      ref[t] = g;
      carry = m[t] != 0 ? g * m[t] : 0.0;  // verl: carry ← G·m
    }
  }
  device_session d;
  auto dr = d.upload(r);
  auto dm = d.upload(m);
  auto doffs = d.upload(offs);
  auto dout = d.upload(std::vector<double>(n));
  adv::discounted_returns(d.exec(), std::span<const double>(dr), std::span<const float>(dm),
                          std::span<const index_t>(doffs), dout,
                          {.gamma = gamma, .convention = adv::return_convention::reset_at_masked});
  expect_close(d.download(dout), ref, 1e-12, "returns vs naive");
}

template <class T>
void check_reinforce_pp(const adv::reinforce_pp_options& o, bool with_returns, unsigned seed) {
  std::mt19937_64 rng(seed);
  const std::vector<index_t> offs = offsets_of(random_lengths(rng, 64, 600));
  const auto n = static_cast<std::size_t>(offs.back());
  std::vector<T> r = random_values<T>(rng, n);
  const std::vector<float> m = random_mask(rng, n, &r);
  std::vector<T> ha(n), hr(with_returns ? n : 0);
  adv::reinforce_plus_plus(pt::exec::host{}, std::span<const T>(r), m, offs, std::span<T>(ha),
                           std::span<T>(hr), o);
  device_session d;
  auto dr = d.upload(r);
  auto dm = d.upload(m);
  auto doffs = d.upload(offs);
  auto da = d.upload(std::vector<T>(n, T(-1)));
  auto dret = d.upload(std::vector<T>(hr.size(), T(-1)));
  adv::reinforce_plus_plus(d.exec(), std::span<const T>(dr), std::span<const float>(dm),
                           std::span<const index_t>(doffs), da, dret, o);
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-11;
  expect_close(d.download(da), ha, tol, "reinforce++ advantages");
  if (with_returns) expect_close(d.download(dret), hr, tol, "reinforce++ returns");
}

TEST(CudaReinforce, ReinforcePlusPlusPresetsMatchCpu) {
  POSTTRAIN_REQUIRE_DEVICE();
  namespace rc = adv::reinforce_pp_conventions;
  unsigned seed = 700;
  for (const auto& o : {rc::verl, rc::openrlhf}) {
    check_reinforce_pp<float>(o, true, ++seed);
    check_reinforce_pp<double>(o, false, ++seed);
    auto unwhitened = o;
    unwhitened.whiten = false;
    check_reinforce_pp<float>(unwhitened, true, ++seed);
  }
}

TEST(CudaReinforce, DeviceFrontEndRejectsBadArgumentsWithoutTouchingMemory) {
  std::vector<float> r(10), m(9), out(10, -1.0f);
  std::vector<index_t> o{0, 4, 10};
  const pt::exec::cuda e{};
  EXPECT_THROW(adv::discounted_returns(e, std::span<const float>(r), std::span<const float>(m),
                                       std::span<const index_t>(o), std::span<float>(out)),
               pt::error);
  EXPECT_THROW(
      adv::discounted_returns(e, std::span<const float>(r), {}, std::span<const index_t>(o),
                              std::span<float>(out), {.gamma = 1.5}),
      pt::error);
  EXPECT_THROW(adv::reverse_cumsum(e, std::span<const float>(r), {}, std::span<const index_t>(),
                                   std::span<float>(out)),
               pt::error);
  EXPECT_THROW(
      adv::reinforce_plus_plus(e, std::span<const float>(r), {}, std::span<const index_t>(o),
                               std::span<float>(out), std::span<float>(out)),
      pt::error);  // returns == advantages
  EXPECT_EQ(out, std::vector<float>(10, -1.0f));
}

}  // namespace
