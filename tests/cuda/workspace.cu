// CUB-style two-phase temporary storage of the device reductions and whitening
// (backend/cuda/reductions.cuh, whiten.cuh) and the caller workspace of their front ends with
// exec::cuda. Without a device: the size query (d_temp = nullptr) makes no CUDA call and returns
// at least 1 byte, never more than the front end's workspace bound; a too-small size throws
// posttrain::error before anything is launched. With a device: the two-phase forms and the
// front ends' workspace forms give the same bits as the allocating forms, and a too-small
// workspace leaves the output untouched.
#include <cstdint>
#include <utility>

#include "device_test_helpers.cuh"

namespace {

using namespace pt_test;

// A device pointer that is never dereferenced (the calls below throw before any launch).
void* const fake_device = reinterpret_cast<void*>(std::uintptr_t{4096});

const pt::whiten_options whiten_cases[] = {
    pt::whiten_conventions::verl,
    pt::whiten_options{.scope = pt::whiten_scope::per_segment},
    pt::whiten_options{.on_degenerate = pt::degenerate_policy::raise},
    pt::whiten_options{.scope = pt::whiten_scope::per_segment,
                       .on_degenerate = pt::degenerate_policy::raise},
};

}  // namespace

TEST(CudaWorkspace, QueryNeedsNoDeviceAndStaysUnderTheFrontEndBound) {
  const std::pair<index_t, index_t> sizes[] = {{0, 0},   {1, 0},       {1, 10},     {4, 100},
                                               {1, 1 << 22}, {3, 5000000}, {1000, 1 << 20},
                                               {5000, 1 << 24}};
  for (const auto& [S, N] : sizes) {
    std::size_t moments = 0, stats = 0, stats_m = 0;
    ptc::segment_moments(nullptr, moments, static_cast<const float*>(nullptr), nullptr, nullptr,
                         S, N, nullptr, nullptr);
    ptc::segment_stats(nullptr, stats, static_cast<const double*>(nullptr), nullptr, nullptr, S,
                       N, pt::segment_stats_out{}, nullptr);
    pt::masked_stats one{};
    ptc::segment_stats(nullptr, stats_m, static_cast<const double*>(nullptr), nullptr, nullptr, S,
                       N, pt::segment_stats_out{.moments = std::span(&one, 1)}, nullptr);
    EXPECT_GE(moments, 1u);
    EXPECT_EQ(moments, std::max<std::size_t>(1, ptc::segment_moments_scratch(S, N)));
    EXPECT_GE(stats, moments) << S << " " << N;
    EXPECT_LE(stats_m, stats) << S << " " << N;
    const std::size_t bound = pt::segment_stats_workspace_bytes(pt::exec::cuda{}, S);
    EXPECT_EQ(bound, ptc::segment_stats_scratch_bound(S).bytes());
    if (S > 0) EXPECT_LE(stats, bound) << S << " " << N;
    // Split segments need partials; one CTA per segment needs none.
    if (ptc::split_count(N, S) > 1 && S > 0)
      EXPECT_GT(moments, 1u) << S << " " << N;
    else
      EXPECT_EQ(moments, 1u) << S << " " << N;

    for (const pt::whiten_options& o : whiten_cases) {
      const bool raise = o.on_degenerate == pt::degenerate_policy::raise;
      std::size_t w = 0, wm = 0;
      ptc::whiten(nullptr, w, static_cast<const float*>(nullptr), nullptr, nullptr, S, N,
                  static_cast<float*>(nullptr), o, nullptr, nullptr, raise);
      ptc::whiten_with_moments(nullptr, wm, static_cast<const float*>(nullptr), nullptr, nullptr,
                               S, N, nullptr, static_cast<float*>(nullptr), o, nullptr, nullptr,
                               raise);
      EXPECT_GE(w, 1u);
      EXPECT_GE(wm, 1u);
      EXPECT_GE(w, wm);
      const index_t scopes = o.scope == pt::whiten_scope::batch ? 1 : S;
      if (scopes > 0) {
        EXPECT_LE(w, pt::whiten_workspace_bytes(pt::exec::cuda{}, scopes)) << S << " " << N;
        EXPECT_LE(wm, pt::whiten_workspace_bytes(pt::exec::cuda{}, scopes, true)) << S << " " << N;
      }
    }
  }
}

TEST(CudaWorkspace, TooSmallThrowsBeforeAnyLaunch) {
  // No device is touched: the size check comes first.
  const index_t S = 2, N = 1 << 22;  // split segments: partials needed
  std::size_t need = 0;
  ptc::segment_moments(nullptr, need, static_cast<const float*>(nullptr), nullptr, nullptr, S, N,
                       nullptr, nullptr);
  ASSERT_GT(need, 1u);
  std::size_t small = need - 1;
  EXPECT_THROW(ptc::segment_moments(fake_device, small, static_cast<const float*>(nullptr),
                                    nullptr, nullptr, S, N, nullptr, nullptr),
               pt::error);
  std::size_t stats_need = 0;
  ptc::segment_stats(nullptr, stats_need, static_cast<const float*>(nullptr), nullptr, nullptr, S,
                     N, pt::segment_stats_out{}, nullptr);
  std::size_t stats_small = stats_need - 1;
  EXPECT_THROW(ptc::segment_stats(fake_device, stats_small, static_cast<const float*>(nullptr),
                                  nullptr, nullptr, S, N, pt::segment_stats_out{}, nullptr),
               pt::error);
  for (const pt::whiten_options& o : whiten_cases) {
    std::size_t w = 0;
    ptc::whiten(nullptr, w, static_cast<const float*>(nullptr), nullptr, nullptr, S, N,
                static_cast<float*>(nullptr), o, nullptr);
    std::size_t w_small = w - 1;
    EXPECT_THROW(ptc::whiten(fake_device, w_small, static_cast<const float*>(nullptr), nullptr,
                             nullptr, S, N, static_cast<float*>(nullptr), o, nullptr),
                 pt::error);
    std::size_t wm = 0;
    ptc::whiten_with_moments(nullptr, wm, static_cast<const float*>(nullptr), nullptr, nullptr, S,
                             N, nullptr, static_cast<float*>(nullptr), o, nullptr);
    std::size_t wm_small = wm - 1;
    EXPECT_THROW(ptc::whiten_with_moments(fake_device, wm_small,
                                          static_cast<const float*>(nullptr), nullptr, nullptr, S,
                                          N, nullptr, static_cast<float*>(nullptr), o, nullptr),
                 pt::error);
  }
}

namespace {

template <class T>
std::vector<T> bits_of(device_session& d, std::span<T> device) {
  return d.download(device);
}

// Equal bit for bit (NaN-free data: == on the values).
template <class T>
void expect_same(const std::vector<T>& a, const std::vector<T>& b, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(T))) << what;
}

}  // namespace

TEST(CudaWorkspace, TwoPhaseAndWorkspaceFormsGiveTheAllocatingBits) {
  POSTTRAIN_REQUIRE_DEVICE();
  std::mt19937_64 rng(7);
  // Short segments (one CTA each) and one long one (split over many CTAs).
  std::vector<index_t> lengths = random_lengths(rng, 9, 300);
  lengths.push_back(1 << 20);
  const std::vector<index_t> offs = offsets_of(lengths);
  const auto n = static_cast<std::size_t>(offs.back());
  const auto S = static_cast<index_t>(lengths.size());
  std::vector<float> x = random_values<float>(rng, n, 0.5, 2.0);
  std::vector<float> m = random_mask(rng, n, &x);
  device_session d;
  auto dx = d.upload(x);
  auto dm = d.upload(m);
  auto doffs = d.upload(offs);
  const cudaStream_t stream = d.stream();

  // segment_moments / segment_stats: two-phase vs convenience.
  auto want = d.upload(std::vector<pt::masked_stats>(static_cast<std::size_t>(S)));
  auto got = d.upload(std::vector<pt::masked_stats>(static_cast<std::size_t>(S)));
  ptc::segment_moments(dx.data(), dm.data(), doffs.data(), S, static_cast<index_t>(n), want.data(),
                       stream);
  std::size_t bytes = 0;
  ptc::segment_moments(nullptr, bytes, dx.data(), dm.data(), doffs.data(), S,
                       static_cast<index_t>(n), got.data(), stream);
  auto temp = d.upload(std::vector<std::byte>(bytes + 64));
  ptc::segment_moments(temp.data() + 8, bytes, dx.data(), dm.data(), doffs.data(), S,
                       static_cast<index_t>(n), got.data(), stream);
  expect_same(bits_of(d, want), bits_of(d, got), "segment_moments");

  // The front end with a device workspace vs the allocating front end.
  std::vector<double> zeros(static_cast<std::size_t>(S), -1.0);
  auto mean_a = d.upload(zeros), var_a = d.upload(zeros), mean_b = d.upload(zeros),
       var_b = d.upload(zeros);
  pt::segment_stats(d.exec(), std::span<const float>(dx), std::span<const float>(dm),
                    std::span<const index_t>(doffs), {.mean = mean_a, .var_unbiased = var_a});
  const std::size_t ws_bytes = pt::segment_stats_workspace_bytes(d.exec(), S);
  auto ws_mem = d.upload(std::vector<std::byte>(ws_bytes + 64));
  pt::segment_stats(d.exec(), std::span<const float>(dx), std::span<const float>(dm),
                    std::span<const index_t>(doffs), {.mean = mean_b, .var_unbiased = var_b},
                    pt::workspace(ws_mem.data() + 3, ws_bytes));
  expect_same(bits_of(d, mean_a), bits_of(d, mean_b), "segment_stats mean");
  expect_same(bits_of(d, var_a), bits_of(d, var_b), "segment_stats var");

  // whiten: every case, front end with and without a workspace.
  for (const pt::whiten_options& o : {pt::whiten_conventions::verl,
                                      pt::whiten_options{.scope = pt::whiten_scope::per_segment}}) {
    auto a = d.upload(std::vector<float>(n, -2.0f));
    auto b = d.upload(std::vector<float>(n, -3.0f));
    pt::whiten(d.exec(), std::span<const float>(dx), std::span<const float>(dm),
               std::span<const index_t>(doffs), a, o);
    const index_t scopes = o.scope == pt::whiten_scope::batch ? 1 : S;
    const std::size_t wb = pt::whiten_workspace_bytes(d.exec(), scopes);
    auto wmem = d.upload(std::vector<std::byte>(wb + 64));
    pt::whiten(d.exec(), std::span<const float>(dx), std::span<const float>(dm),
               std::span<const index_t>(doffs), b, o, pt::workspace(wmem.data() + 5, wb));
    expect_same(bits_of(d, a), bits_of(d, b), "whiten");

    // The two-phase backend call directly.
    auto c = d.upload(std::vector<float>(n, -4.0f));
    std::size_t tb = 0;
    ptc::whiten(nullptr, tb, dx.data(), dm.data(), doffs.data(), S, static_cast<index_t>(n),
                c.data(), o, stream);
    auto tmem = d.upload(std::vector<std::byte>(tb));
    ptc::whiten(tmem.data(), tb, dx.data(), dm.data(), doffs.data(), S, static_cast<index_t>(n),
                c.data(), o, stream);
    expect_same(bits_of(d, a), bits_of(d, c), "whiten two-phase");
  }

  // Host moments copied through the workspace.
  const pt::masked_stats global = pt::masked_moments(pt::exec::host{}, x, m);
  auto a = d.upload(std::vector<float>(n, -2.0f));
  auto b = d.upload(std::vector<float>(n, -3.0f));
  pt::whiten_with_moments(d.exec(), std::span<const float>(dx), std::span<const float>(dm), global,
                          a, pt::whiten_conventions::verl);
  const std::size_t hb = pt::whiten_workspace_bytes(d.exec(), 1, true);
  auto hmem = d.upload(std::vector<std::byte>(hb));
  pt::whiten_with_moments(d.exec(), std::span<const float>(dx), std::span<const float>(dm), global,
                          b, pt::whiten_conventions::verl, pt::workspace(hmem.data(), hb));
  expect_same(bits_of(d, a), bits_of(d, b), "whiten_with_moments (host moments)");
}

TEST(CudaWorkspace, TooSmallWorkspaceLeavesTheOutputUntouched) {
  POSTTRAIN_REQUIRE_DEVICE();
  std::mt19937_64 rng(8);
  const std::vector<index_t> offs = offsets_of({1 << 20, 17});
  const auto n = static_cast<std::size_t>(offs.back());
  std::vector<float> x = random_values<float>(rng, n, 0.5, 2.0);
  device_session d;
  auto dx = d.upload(x);
  auto doffs = d.upload(offs);
  auto out = d.upload(std::vector<float>(n, -7.0f));
  const std::size_t wb = pt::whiten_workspace_bytes(d.exec(), 2);
  auto wmem = d.upload(std::vector<std::byte>(wb));
  const pt::whiten_options o{.scope = pt::whiten_scope::per_segment};
  EXPECT_THROW(pt::whiten(d.exec(), std::span<const float>(dx), std::span<const float>(),
                          std::span<const index_t>(doffs), out, o,
                          pt::workspace(wmem.data(), 100)),
               pt::error);
  for (float v : d.download(out)) ASSERT_EQ(v, -7.0f);
  std::vector<double> init(2, -5.0);
  auto mean = d.upload(init);
  EXPECT_THROW(pt::segment_stats(d.exec(), std::span<const float>(dx), std::span<const float>(),
                                 std::span<const index_t>(doffs), {.mean = mean},
                                 pt::workspace(wmem.data(), 10)),
               pt::error);
  for (double v : d.download(mean)) ASSERT_EQ(v, -5.0);
}
