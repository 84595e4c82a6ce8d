// CUDA group-relative advantages (backend/cuda/group_advantage.cuh through advantage/group.hpp,
// rloo.hpp and common.hpp with exec::cuda) against the CPU estimators on the same random
// rewards: every group_conventions and rloo_conventions preset, NaN (unscorable) rewards under
// nan_policy::ignore, singleton and empty groups, equal rewards, one huge group, N = 1; an
// independent float64 GRPO reference; singleton raise throws before writing; broadcast to tokens,
// sequence rewards and lengths. Size checks run without a device; the rest skip without one.
#include "device_test_helpers.cuh"

namespace {

using namespace pt_test;
namespace adv = posttrain::advantage;

template <class T>
std::vector<T> rewards_for(std::mt19937_64& rng, std::size_t n, bool with_nan) {
  std::vector<T> r = random_values<T>(rng, n, 0.3, 1.0);
  std::bernoulli_distribution binary(0.3), nan(0.1);
  for (auto& x : r) {
    if (binary(rng)) x = T(x > 0 ? 1 : 0);  // ties
    if (with_nan && nan(rng)) x = T(std::nan(""));
  }
  return r;
}

template <class T>
void check_group(const std::vector<index_t>& sizes, const adv::group_options& o, unsigned seed) {
  std::mt19937_64 rng(seed);
  const std::vector<index_t> g = offsets_of(sizes);
  const auto n = static_cast<std::size_t>(g.back());
  const std::vector<T> r = rewards_for<T>(rng, n, o.nan == adv::nan_policy::ignore);
  std::vector<T> host(n, T(-3));
  adv::group_advantages(pt::exec::host{}, std::span<const T>(r), g, std::span<T>(host), o);
  device_session d;
  auto dr = d.upload(r);
  auto dg = d.upload(g);
  auto dout = d.upload(std::vector<T>(n, T(-4)));
  adv::group_advantages(d.exec(), std::span<const T>(dr), std::span<const index_t>(dg), dout, o);
  expect_close(d.download(dout), host, std::is_same_v<T, float> ? 1e-5 : 1e-12, "group");
}

template <class T>
void check_rloo(const std::vector<index_t>& sizes, const adv::rloo_options& o, unsigned seed) {
  std::mt19937_64 rng(seed);
  const std::vector<index_t> g = offsets_of(sizes);
  const auto n = static_cast<std::size_t>(g.back());
  const std::vector<T> r = rewards_for<T>(rng, n, o.nan == adv::nan_policy::ignore);
  std::vector<T> host(n, T(-3));
  adv::rloo_advantages(pt::exec::host{}, std::span<const T>(r), g, std::span<T>(host), o);
  device_session d;
  auto dr = d.upload(r);
  auto dg = d.upload(g);
  // In place on the device.
  adv::rloo_advantages(d.exec(), std::span<const T>(dr), std::span<const index_t>(dg), dr, o);
  expect_close(d.download(dr), host, std::is_same_v<T, float> ? 1e-5 : 1e-12, "rloo");
}

std::vector<index_t> mixed_groups(std::mt19937_64& rng) {
  std::vector<index_t> s = random_lengths(rng, 97, 16);  // includes empty and singleton groups
  s.push_back(1);
  s.push_back(0);
  return s;
}

TEST(CudaGroupAdvantage, EveryGroupPresetMatchesCpu) {
  POSTTRAIN_REQUIRE_DEVICE();
  namespace gc = adv::group_conventions;
  const adv::group_options presets[] = {gc::verl,
                                        gc::verl_vectorized,
                                        gc::trl,
                                        gc::trl_batch,
                                        gc::trl_none,
                                        gc::open_instruct_standard,
                                        gc::open_instruct_centered,
                                        gc::dr_grpo};
  std::mt19937_64 rng(9);
  unsigned seed = 300;
  for (const auto& o : presets) {
    check_group<float>(mixed_groups(rng), o, ++seed);
    check_group<double>(mixed_groups(rng), o, ++seed);
    check_group<float>({200000}, o, ++seed);  // one huge group
    check_group<double>({1}, o, ++seed);      // N = 1
  }
  auto inside = gc::verl;
  inside.epsilon_mode = adv::std_epsilon::add_inside_sqrt;
  inside.std_kind = pt::variance_kind::biased;
  check_group<float>(mixed_groups(rng), inside, ++seed);
  check_group<double>(std::vector<index_t>(64, 8), gc::openrlhf, ++seed);  // no singletons
}

TEST(CudaGroupAdvantage, IndependentGrpoReference) {
  POSTTRAIN_REQUIRE_DEVICE();
  std::mt19937_64 rng(10);
  const std::vector<index_t> sizes(50, 6);
  const std::vector<index_t> g = offsets_of(sizes);
  const std::vector<double> r = random_values<double>(rng, 300);
  std::vector<double> ref(300);
  for (std::size_t k = 0; k + 1 < g.size(); ++k) {
    double mu = 0, ss = 0;
    for (index_t i = g[k]; i < g[k + 1]; ++i) mu += r[i];
    mu /= 6;
    for (index_t i = g[k]; i < g[k + 1]; ++i) ss += (r[i] - mu) * (r[i] - mu);
    const double sd = std::sqrt(ss / 5);
    for (index_t i = g[k]; i < g[k + 1]; ++i) ref[i] = (r[i] - mu) / (sd + 1e-6);
  }
  device_session d;
  auto dr = d.upload(r);
  auto dg = d.upload(g);
  auto dout = d.upload(std::vector<double>(300));
  adv::group_advantages(d.exec(), std::span<const double>(dr), std::span<const index_t>(dg), dout,
                        adv::group_conventions::verl);
  const std::vector<double> a = d.download(dout);
  expect_close(a, ref, 1e-12, "grpo vs naive");
  for (std::size_t k = 0; k + 1 < g.size(); ++k) {  // invariant: each group sums to 0
    double s = 0;
    for (index_t i = g[k]; i < g[k + 1]; ++i) s += a[i];
    EXPECT_NEAR(s, 0.0, 1e-12);
  }
}

TEST(CudaGroupAdvantage, EveryRlooPresetMatchesCpu) {
  POSTTRAIN_REQUIRE_DEVICE();
  namespace rc = adv::rloo_conventions;
  const adv::rloo_options presets[] = {rc::verl, rc::verl_vectorized, rc::trl, rc::trl_normalized};
  std::mt19937_64 rng(11);
  unsigned seed = 400;
  for (const auto& o : presets) {
    check_rloo<float>(mixed_groups(rng), o, ++seed);
    check_rloo<double>(mixed_groups(rng), o, ++seed);
    check_rloo<double>({150000}, o, ++seed);
    check_rloo<float>({1}, o, ++seed);
  }
  check_rloo<float>(std::vector<index_t>(32, 4), rc::openrlhf, ++seed);
}

TEST(CudaGroupAdvantage, SingletonRaiseThrowsBeforeWriting) {
  POSTTRAIN_REQUIRE_DEVICE();
  const std::vector<float> r{1.0f, 2.0f, 3.0f};
  const std::vector<index_t> g{0, 2, 3};
  device_session d;
  auto dr = d.upload(r);
  auto dg = d.upload(g);
  auto dout = d.upload(std::vector<float>(3, -9.0f));
  EXPECT_THROW(
      adv::group_advantages(d.exec(), std::span<const float>(dr), std::span<const index_t>(dg),
                            dout, adv::group_conventions::openrlhf),
      pt::error);
  EXPECT_THROW(
      adv::rloo_advantages(d.exec(), std::span<const float>(dr), std::span<const index_t>(dg), dout,
                           adv::rloo_conventions::openrlhf),
      pt::error);
  EXPECT_EQ(d.download(dout), std::vector<float>(3, -9.0f));
}

TEST(CudaGroupAdvantage, TokenHelpersMatchCpu) {
  POSTTRAIN_REQUIRE_DEVICE();
  std::mt19937_64 rng(12);
  const std::vector<index_t> lengths = random_lengths(rng, 300, 700);
  const std::vector<index_t> o = offsets_of(lengths);
  const auto n = static_cast<std::size_t>(o.back());
  const std::vector<float> a = random_values<float>(rng, lengths.size());
  std::vector<float> tokens = random_values<float>(rng, n);
  const std::vector<float> m = random_mask(rng, n, &tokens);
  device_session d;
  auto da = d.upload(a);
  auto doffs = d.upload(o);
  auto dm = d.upload(m);
  auto dt = d.upload(tokens);
  for (bool masked : {true, false}) {
    const std::span<const float> hm = masked ? std::span<const float>(m) : std::span<const float>();
    const std::span<const float> gm =
        masked ? std::span<const float>(dm) : std::span<const float>();
    std::vector<float> host(n);
    adv::broadcast_to_tokens(pt::exec::host{}, a, o, hm, std::span<float>(host));
    auto dout = d.upload(std::vector<float>(n, -1.0f));
    adv::broadcast_to_tokens(d.exec(), std::span<const float>(da), std::span<const index_t>(doffs),
                             gm, dout);
    expect_close(d.download(dout), host, 0.0, "broadcast");
    std::vector<double> hl(lengths.size());
    adv::sequence_lengths(pt::exec::host{}, hm, o, std::span<double>(hl));
    auto dl = d.upload(std::vector<double>(lengths.size(), -1.0));
    adv::sequence_lengths(d.exec(), gm, std::span<const index_t>(doffs), dl);
    expect_close(d.download(dl), hl, 1e-12, "lengths");
  }
  std::vector<float> hs(lengths.size());
  adv::sequence_rewards(pt::exec::host{}, tokens, m, o, std::span<float>(hs));
  auto ds = d.upload(std::vector<float>(lengths.size(), -1.0f));
  adv::sequence_rewards(d.exec(), std::span<const float>(dt), std::span<const float>(dm),
                        std::span<const index_t>(doffs), ds);
  expect_close(d.download(ds), hs, 1e-6, "sequence rewards");
}

TEST(CudaGroupAdvantage, DeviceFrontEndRejectsBadArgumentsWithoutTouchingMemory) {
  std::vector<float> r(6), out(6, -1.0f), short_out(5);
  std::vector<index_t> g{0, 3, 6};
  const pt::exec::cuda e{};
  EXPECT_THROW(adv::group_advantages(e, std::span<const float>(r), std::span<const index_t>(g),
                                     std::span<float>(short_out)),
               pt::error);
  EXPECT_THROW(adv::group_advantages(e, std::span<const float>(r), std::span<const index_t>(),
                                     std::span<float>(out)),
               pt::error);
  auto bad = adv::group_conventions::verl;
  bad.epsilon = -1.0;
  EXPECT_THROW(adv::group_advantages(e, std::span<const float>(r), std::span<const index_t>(g),
                                     std::span<float>(out), bad),
               pt::error);
  EXPECT_THROW(adv::rloo_advantages(e, std::span<const float>(r), std::span<const index_t>(g),
                                    std::span<float>(r.data() + 1, 5)),
               pt::error);
  EXPECT_THROW(adv::broadcast_to_tokens(e, std::span<const float>(r), std::span<const index_t>(g),
                                        std::span<const float>(short_out), std::span<float>(out)),
               pt::error);  // advantages has 6, expected 2
  EXPECT_EQ(out, std::vector<float>(6, -1.0f));
}

}  // namespace
