// CUB-style two-phase temporary storage of the device reductions and whitening
// (backend/cuda/reductions.cuh, whiten.cuh), the group estimators and sequence rewards
// (group_advantage.cuh), the KTO loss (kto.cuh), the split forward of token_logprobs
// (token_logprobs.cuh), and the caller workspace of their front ends with exec::cuda. Without a
// device: the size query (d_temp = nullptr) makes no CUDA call and returns at least 1 byte, never
// more than the front end's workspace bound; a too-small size throws posttrain::error before
// anything is launched. With a device: the two-phase forms and the front ends' workspace forms give
// the same bits as the allocating forms, and a too-small workspace leaves the output untouched.
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

namespace adv = pt::advantage;

// Every piece of scratch the group estimators can take: raise (3 doubles of the singleton
// check), batch scale (one merged moments), NaN ignored (a different weight, same pieces).
const adv::group_options group_cases[] = {
    adv::group_conventions::verl,
    adv::group_conventions::trl_batch,
    adv::group_conventions::openrlhf,
    adv::group_options{.scale = adv::group_scale::batch,
                       .singleton = adv::singleton_policy::raise,
                       .nan = adv::nan_policy::ignore},
};

const adv::rloo_options rloo_cases[] = {
    adv::rloo_conventions::verl,
    adv::rloo_conventions::trl,
    adv::rloo_conventions::trl_normalized,
    adv::rloo_conventions::openrlhf,
};

// f() throws posttrain::error for the scratch size (not for a failed CUDA call, which would mean
// something was launched or queried first).
template <class F>
void expect_too_small(F&& f, const char* what) {
  try {
    f();
    ADD_FAILURE() << what << ": no error";
  } catch (const pt::error& e) {
    const std::string message = e.what();
    EXPECT_TRUE(message.find("too small") != std::string::npos ||
                message.find("workspace is empty") != std::string::npos)
        << what << ": " << message;
  }
}

// The bytes a list of pieces takes in a workspace: each rounded up to the alignment, plus one
// alignment's slack for an unaligned base (an independent count, not workspace_size).
std::size_t pieces_bytes(std::initializer_list<std::size_t> piece_bytes) {
  std::size_t total = 0;
  for (std::size_t b : piece_bytes)
    if (b > 0)
      total +=
          (b + pt::workspace_alignment - 1) / pt::workspace_alignment * pt::workspace_alignment;
  return total > 0 ? total + pt::workspace_alignment - 1 : 0;
}

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

TEST(CudaWorkspace, GroupEstimatorQueriesCountEveryPieceWithoutADevice) {
  const std::pair<index_t, index_t> sizes[] = {{0, 0},       {1, 0},       {1, 2},         {4, 100},
                                               {1, 1 << 22}, {3, 5000000}, {1000, 1 << 20}};
  constexpr std::size_t ms = sizeof(pt::masked_stats);
  for (const auto& [G, B] : sizes) {
    const std::size_t g = static_cast<std::size_t>(G), b = static_cast<std::size_t>(B);
    const index_t splits = ptc::split_count(B, G);
    const std::size_t partials =
        G > 0 && splits > 1 ? g * static_cast<std::size_t>(splits) * ms : 0;
    for (const adv::group_options& o : group_cases) {
      std::size_t bytes = 0;
      ptc::group_advantages(nullptr, bytes, static_cast<const float*>(nullptr), nullptr, G, B,
                            static_cast<float*>(nullptr), o, nullptr);
      const bool raise = o.singleton == adv::singleton_policy::raise;
      const bool batch = o.scale == adv::group_scale::batch;
      const std::size_t want =
          G > 0 ? pieces_bytes({g * ms, partials, raise ? 3 * sizeof(double) : 0, batch ? ms : 0})
                : 0;
      EXPECT_EQ(bytes, std::max<std::size_t>(1, want)) << G << " " << B;
      EXPECT_EQ(want, adv::group_advantages_workspace_bytes(pt::exec::cuda{}, B, G, o));
    }
    for (const adv::rloo_options& o : rloo_cases) {
      std::size_t bytes = 0;
      ptc::rloo_advantages(nullptr, bytes, static_cast<const double*>(nullptr), nullptr, G, B,
                           static_cast<double*>(nullptr), o, nullptr);
      const bool raise = o.singleton == adv::singleton_policy::raise;
      const bool normalize = o.normalize && B > 0;
      const index_t whole_splits = ptc::split_count(B, 1);
      const std::size_t want =
          G > 0 ? pieces_bytes({g * ms, partials, raise ? 3 * sizeof(double) : 0,
                                normalize ? b * sizeof(double) : 0,
                                normalize ? 2 * sizeof(index_t) : 0, normalize ? ms : 0,
                                normalize && whole_splits > 1
                                    ? static_cast<std::size_t>(whole_splits) * ms
                                    : 0})
                : 0;
      EXPECT_EQ(bytes, std::max<std::size_t>(1, want)) << G << " " << B;
      EXPECT_EQ(want, adv::rloo_advantages_workspace_bytes(pt::exec::cuda{}, B, G, o));
    }
    // sequence_rewards: G sequences over B tokens; the front end's bound covers every B.
    std::size_t seq = 0;
    ptc::sequence_rewards(nullptr, seq, static_cast<const float*>(nullptr), nullptr, nullptr, G, B,
                          static_cast<float*>(nullptr), nullptr);
    EXPECT_EQ(seq, std::max<std::size_t>(1, G > 0 ? pieces_bytes({g * ms, partials}) : 0));
    if (G > 0) EXPECT_LE(seq, adv::sequence_rewards_workspace_bytes(pt::exec::cuda{}, G));
  }
  EXPECT_THROW((void)adv::group_advantages_workspace_bytes(pt::exec::cuda{}, -1, 2), pt::error);
  EXPECT_THROW((void)adv::rloo_advantages_workspace_bytes(pt::exec::cuda{}, 4, -1), pt::error);
  EXPECT_THROW((void)adv::sequence_rewards_workspace_bytes(pt::exec::cuda{}, -1), pt::error);
}

TEST(CudaWorkspace, GroupEstimatorsTooSmallThrowBeforeAnyLaunch) {
  const index_t G = 2, B = 1 << 22;  // split groups: partials needed
  for (const adv::group_options& o : group_cases) {
    std::size_t need = 0;
    ptc::group_advantages(nullptr, need, static_cast<const float*>(nullptr), nullptr, G, B,
                          static_cast<float*>(nullptr), o, nullptr);
    std::size_t small = need - 1;
    expect_too_small(
        [&] {
          ptc::group_advantages(fake_device, small, static_cast<const float*>(nullptr), nullptr, G,
                                B, static_cast<float*>(nullptr), o, nullptr);
        },
        "ptc::group_advantages");
  }
  for (const adv::rloo_options& o : rloo_cases) {
    std::size_t need = 0;
    ptc::rloo_advantages(nullptr, need, static_cast<const float*>(nullptr), nullptr, G, B,
                         static_cast<float*>(nullptr), o, nullptr);
    std::size_t small = need - 1;
    expect_too_small(
        [&] {
          ptc::rloo_advantages(fake_device, small, static_cast<const float*>(nullptr), nullptr, G,
                               B, static_cast<float*>(nullptr), o, nullptr);
        },
        "ptc::rloo_advantages");
  }
  std::size_t need = 0;
  ptc::sequence_rewards(nullptr, need, static_cast<const float*>(nullptr), nullptr, nullptr, G, B,
                        static_cast<float*>(nullptr), nullptr);
  std::size_t small = need - 1;
  expect_too_small(
      [&] {
        ptc::sequence_rewards(fake_device, small, static_cast<const float*>(nullptr), nullptr,
                              nullptr, G, B, static_cast<float*>(nullptr), nullptr);
      },
      "ptc::sequence_rewards");

  // The front ends: spans over device addresses that are never read; an empty workspace and a
  // too-small one both throw before any launch.
  const auto* rewards = static_cast<const float*>(fake_device);
  auto* out = static_cast<float*>(fake_device);
  const auto* offsets = static_cast<const index_t*>(fake_device);
  const std::span<const float> r(rewards, static_cast<std::size_t>(B));
  const std::span<float> o(out, static_cast<std::size_t>(B));
  const std::span<const index_t> g(offsets, static_cast<std::size_t>(G + 1));
  const std::size_t group_need =
      adv::group_advantages_workspace_bytes(pt::exec::cuda{}, B, G, adv::group_options{});
  expect_too_small([&] { adv::group_advantages(pt::exec::cuda{}, r, g, o, {}, pt::workspace()); },
                   "adv::group_advantages");
  expect_too_small(
      [&] {
        adv::group_advantages(pt::exec::cuda{}, r, g, o, {},
                              pt::workspace(fake_device, group_need - 1));
      },
      "adv::group_advantages");
  const std::size_t rloo_need = adv::rloo_advantages_workspace_bytes(
      pt::exec::cuda{}, B, G, adv::rloo_conventions::trl_normalized);
  expect_too_small(
      [&] {
        adv::rloo_advantages(pt::exec::cuda{}, r, g, o, adv::rloo_conventions::trl_normalized,
                             pt::workspace(fake_device, rloo_need - 1));
      },
      "adv::rloo_advantages");
  const std::span<float> seq_out(out, static_cast<std::size_t>(G));
  expect_too_small(
      [&] { adv::sequence_rewards(pt::exec::cuda{}, r, {}, g, seq_out, pt::workspace()); },
      "adv::sequence_rewards");
  expect_too_small(
      [&] {
        adv::sequence_rewards(pt::exec::cuda{}, r, {}, g, seq_out,
                              pt::workspace(fake_device, need - 1));
      },
      "adv::sequence_rewards");
}

TEST(CudaWorkspace, KtoQueryAndTooSmallNeedNoDevice) {
  using Link = pt::unpaired::kto;
  using Reduce = pt::seq::sum;
  const auto* offsets = static_cast<const index_t*>(fake_device);
  auto* doubles = static_cast<double*>(fake_device);
  for (const index_t B : {0, 1, 7, 100000}) {
    const auto b = static_cast<std::size_t>(B);
    const pt::loss::kto_inputs<float> in{
        pt::token_batch{std::span<const index_t>(offsets, b + 1), {}}};
    const pt::loss::kto_outputs<float> bare{};
    const pt::loss::kto_outputs<float> kept{
        {}, std::span<double>(doubles, b), std::span<double>(doubles, b)};
    const pt::loss::kto_outputs<float> losses_only{{}, std::span<double>(doubles, b), {}};
    const pt::loss::kto_options o{};
    std::size_t with_bare = 0, with_kept = 0, with_losses = 0;
    ptc::kto<Link, Reduce>(nullptr, with_bare, pt::exec::cuda{}, in, o, bare, 1.0);
    ptc::kto<Link, Reduce>(nullptr, with_kept, pt::exec::cuda{}, in, o, kept, 1.0);
    ptc::kto<Link, Reduce>(nullptr, with_losses, pt::exec::cuda{}, in, o, losses_only, 1.0);
    const std::size_t d = sizeof(double);
    EXPECT_EQ(with_bare, std::max<std::size_t>(1, B > 0 ? pieces_bytes({b * d, b * d, 5 * d}) : 0));
    EXPECT_EQ(with_kept, std::max<std::size_t>(1, B > 0 ? pieces_bytes({5 * d}) : 0));
    EXPECT_EQ(with_losses, std::max<std::size_t>(1, B > 0 ? pieces_bytes({b * d, 5 * d}) : 0));
    if (B == 0) continue;
    std::size_t small = with_bare - 1;
    expect_too_small(
        [&] { ptc::kto<Link, Reduce>(fake_device, small, pt::exec::cuda{}, in, o, bare, 1.0); },
        "kto");
  }
}

TEST(CudaWorkspace, TokenLogprobsForwardQueryAndTooSmallNeedNoDevice) {
  // With the SM count given, neither call touches a device. Rows are split over CTAs only when
  // N < 2 × SMs and V >= 2 × 8192: splits = min(ceil(2·SMs / N), V / 8192, 256).
  constexpr int sms = 132;
  const std::size_t state = sizeof(pt::math::softmax_stats<float>);
  struct shape {
    index_t n, v;
    std::size_t splits;
  };
  for (const shape& c : {shape{0, 128256, 0}, shape{1000, 128256, 1}, shape{8, 128256, 15},
                         shape{200, 32768, 2}, shape{263, 1 << 20, 2}, shape{264, 1 << 20, 1},
                         shape{1, 1 << 24, 256}, shape{4, 16383, 1}}) {
    std::size_t bytes = 0;
    ptc::token_logprobs_forward<float, float>(nullptr, bytes, nullptr, c.n, c.v, c.v, nullptr, 1.0,
                                              -100, nullptr, nullptr, nullptr, nullptr, nullptr,
                                              sms);
    const std::size_t want =
        c.splits > 1 ? pieces_bytes({static_cast<std::size_t>(c.n) * c.splits * state}) : 0;
    EXPECT_EQ(bytes, std::max<std::size_t>(1, want)) << c.n << " " << c.v;
    if (want == 0) continue;
    std::size_t small = bytes - 1;
    expect_too_small(
        [&] {
          ptc::token_logprobs_forward<float, float>(fake_device, small, nullptr, c.n, c.v, c.v,
                                                    nullptr, 1.0, -100, nullptr, nullptr, nullptr,
                                                    nullptr, nullptr, sms);
        },
        "token_logprobs_forward");
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

namespace {

// Group sizes >= 3 (singleton_policy::raise accepts them, with one NaN reward ignored too) and one
// group split over many CTAs.
std::vector<index_t> estimator_groups(std::mt19937_64& rng) {
  std::vector<index_t> sizes = random_lengths(rng, 40, 16);
  for (index_t& s : sizes) s += 3;
  sizes.push_back(1 << 20);
  return sizes;
}

}  // namespace

TEST(CudaWorkspace, GroupEstimatorFormsGiveTheAllocatingBits) {
  POSTTRAIN_REQUIRE_DEVICE();
  std::mt19937_64 rng(11);
  const std::vector<index_t> offs = offsets_of(estimator_groups(rng));
  const auto n = static_cast<std::size_t>(offs.back());
  const auto G = static_cast<index_t>(offs.size() - 1);
  const auto B = static_cast<index_t>(n);
  std::vector<double> r = random_values<double>(rng, n, 0.5, 2.0);
  r[3] = std::nan("");  // unscorable under nan_policy::ignore
  std::vector<double> clean = r;
  clean[3] = 0.25;
  device_session d;
  auto dr = d.upload(r), dclean = d.upload(clean);
  auto doffs = d.upload(offs);
  const cudaStream_t stream = d.stream();
  for (const adv::group_options& o : group_cases) {
    auto& in = o.nan == adv::nan_policy::ignore ? dr : dclean;
    auto a = d.upload(std::vector<double>(n, -2.0));
    auto b = d.upload(std::vector<double>(n, -3.0));
    auto c = d.upload(std::vector<double>(n, -4.0));
    adv::group_advantages(d.exec(), std::span<const double>(in), std::span<const index_t>(doffs), a,
                          o);
    std::size_t bytes = 0;
    ptc::group_advantages(nullptr, bytes, in.data(), doffs.data(), G, B, b.data(), o, stream);
    auto temp = d.upload(std::vector<std::byte>(bytes + 64));
    ptc::group_advantages(temp.data() + 8, bytes, in.data(), doffs.data(), G, B, b.data(), o,
                          stream);
    const std::size_t wb = adv::group_advantages_workspace_bytes(d.exec(), B, G, o);
    auto wmem = d.upload(std::vector<std::byte>(wb + 64));
    adv::group_advantages(d.exec(), std::span<const double>(in), std::span<const index_t>(doffs), c,
                          o, pt::workspace(wmem.data() + 5, wb));
    const std::vector<double> want = bits_of(d, a);
    expect_same(want, bits_of(d, b), "group_advantages two-phase");
    expect_same(want, bits_of(d, c), "group_advantages workspace");
  }
  for (const adv::rloo_options& o : rloo_cases) {
    auto& in = o.nan == adv::nan_policy::ignore ? dr : dclean;
    auto a = d.upload(std::vector<double>(n, -2.0));
    auto b = d.upload(std::vector<double>(n, -3.0));
    auto c = d.upload(std::vector<double>(n, -4.0));
    adv::rloo_advantages(d.exec(), std::span<const double>(in), std::span<const index_t>(doffs), a,
                         o);
    std::size_t bytes = 0;
    ptc::rloo_advantages(nullptr, bytes, in.data(), doffs.data(), G, B, b.data(), o, stream);
    auto temp = d.upload(std::vector<std::byte>(bytes));
    ptc::rloo_advantages(temp.data(), bytes, in.data(), doffs.data(), G, B, b.data(), o, stream);
    const std::size_t wb = adv::rloo_advantages_workspace_bytes(d.exec(), B, G, o);
    auto wmem = d.upload(std::vector<std::byte>(wb));
    adv::rloo_advantages(d.exec(), std::span<const double>(in), std::span<const index_t>(doffs), c,
                         o, pt::workspace(wmem.data(), wb));
    const std::vector<double> want = bits_of(d, a);
    expect_same(want, bits_of(d, b), "rloo_advantages two-phase");
    expect_same(want, bits_of(d, c), "rloo_advantages workspace");
  }

  // sequence_rewards over the same offsets as sequences, with a mask (NaN rewards under its zeros:
  // never read).
  std::vector<double> tok = clean;
  const std::vector<float> m = random_mask(rng, n, &tok);
  auto dm = d.upload(m);
  auto dtok = d.upload(tok);
  std::vector<double> init(static_cast<std::size_t>(G), -1.0);
  auto a = d.upload(init), b = d.upload(init), c = d.upload(init);
  adv::sequence_rewards(d.exec(), std::span<const double>(dtok), std::span<const float>(dm),
                        std::span<const index_t>(doffs), a);
  std::size_t bytes = 0;
  ptc::sequence_rewards(nullptr, bytes, dtok.data(), dm.data(), doffs.data(), G, B, b.data(),
                        stream);
  auto temp = d.upload(std::vector<std::byte>(bytes));
  ptc::sequence_rewards(temp.data(), bytes, dtok.data(), dm.data(), doffs.data(), G, B, b.data(),
                        stream);
  const std::size_t wb = adv::sequence_rewards_workspace_bytes(d.exec(), G);
  auto wmem = d.upload(std::vector<std::byte>(wb + 64));
  adv::sequence_rewards(d.exec(), std::span<const double>(dtok), std::span<const float>(dm),
                        std::span<const index_t>(doffs), c, pt::workspace(wmem.data() + 1, wb));
  const std::vector<double> want = bits_of(d, a);
  expect_same(want, bits_of(d, b), "sequence_rewards two-phase");
  expect_same(want, bits_of(d, c), "sequence_rewards workspace");
  // Against R_b = Σ m_t·r_t in float64 over the unmasked tokens (to rounding: the device sums
  // in a tree).
  std::vector<double> reference(static_cast<std::size_t>(G), 0.0);
  for (std::size_t s = 0; s + 1 < offs.size(); ++s)
    for (index_t t = offs[s]; t < offs[s + 1]; ++t)
      if (m[t] != 0.0f) reference[s] += static_cast<double>(m[t]) * tok[t];
  expect_close(want, reference, 1e-9, "sequence_rewards vs float64 reference");
}

TEST(CudaWorkspace, GroupEstimatorTooSmallWorkspaceLeavesTheOutputUntouched) {
  POSTTRAIN_REQUIRE_DEVICE();
  std::mt19937_64 rng(12);
  const std::vector<index_t> offs = offsets_of({1 << 20, 17});
  const auto n = static_cast<std::size_t>(offs.back());
  std::vector<float> r = random_values<float>(rng, n, 0.5, 2.0);
  device_session d;
  auto dr = d.upload(r);
  auto doffs = d.upload(offs);
  auto out = d.upload(std::vector<float>(n, -7.0f));
  const std::size_t wb =
      adv::group_advantages_workspace_bytes(d.exec(), static_cast<index_t>(n), 2);
  auto wmem = d.upload(std::vector<std::byte>(wb));
  EXPECT_THROW(
      adv::group_advantages(d.exec(), std::span<const float>(dr), std::span<const index_t>(doffs),
                            out, {}, pt::workspace(wmem.data(), 100)),
      pt::error);
  EXPECT_THROW(adv::rloo_advantages(
                   d.exec(), std::span<const float>(dr), std::span<const index_t>(doffs), out,
                   adv::rloo_conventions::trl_normalized, pt::workspace(wmem.data(), wb)),
               pt::error);
  for (float v : d.download(out)) ASSERT_EQ(v, -7.0f);
}

TEST(CudaWorkspace, KtoTwoPhaseGivesTheAllocatingBits) {
  POSTTRAIN_REQUIRE_DEVICE();
  using L = pt::loss::kto<pt::unpaired::kto, pt::seq::mean>;
  std::mt19937_64 rng(13);
  const std::vector<index_t> off = offsets_of(random_lengths(rng, 300, 200));
  const auto n = static_cast<std::size_t>(off.back());
  const auto b = off.size() - 1;
  std::vector<float> lp = random_values<float>(rng, n, -1.5, 0.7);
  const std::vector<float> m = random_mask(rng, n, &lp);
  const std::vector<float> ref = random_values<float>(rng, b, -3.0, 4.0);
  std::vector<std::uint8_t> des(b);
  for (std::size_t i = 0; i < b; ++i) des[i] = (i * 7 + 3) % 5 < 3 ? 1 : 0;
  device_session d;
  const auto d_lp = d.upload(lp), d_m = d.upload(m), d_ref = d.upload(ref);
  const auto d_off = d.upload(off);
  const auto d_des = d.upload(des);
  const pt::loss::kto_inputs<float> in{
      pt::token_batch{std::span<const index_t>(d_off), std::span<const float>(d_m)},
      std::span<const float>(d_lp), std::span<const float>(d_ref),
      std::span<const std::uint8_t>(d_des), 0.25};
  const pt::loss::kto_options o{.beta = 0.3, .undesirable_weight = 1.33};
  auto grad_a = d.upload(std::vector<float>(n, -9.0f));
  auto grad_b = d.upload(std::vector<float>(n, -8.0f));
  // The allocating path through the front end; the two-phase backend call on the same divisor
  // (the local B: the front end's default normaliser).
  const pt::loss::kto_result want = L::compute(d.exec(), in, o, {grad_a});
  std::size_t bytes = 0;
  const pt::loss::kto_outputs<float> out_b{grad_b};
  ptc::kto<pt::unpaired::kto, pt::seq::mean>(nullptr, bytes, d.exec(), in, o, out_b,
                                             static_cast<double>(b));
  auto temp = d.upload(std::vector<std::byte>(bytes + 64));
  const pt::loss::kto_result got = ptc::kto<pt::unpaired::kto, pt::seq::mean>(
      temp.data() + 24, bytes, d.exec(), in, o, out_b, static_cast<double>(b));
  EXPECT_EQ(got.loss, want.loss);
  EXPECT_EQ(got.desirable_reward, want.desirable_reward);
  EXPECT_EQ(got.undesirable_reward, want.undesirable_reward);
  EXPECT_EQ(got.desirable_count, want.desirable_count);
  EXPECT_EQ(got.undesirable_count, want.undesirable_count);
  EXPECT_EQ(got.kl_reference, want.kl_reference);
  expect_same(bits_of(d, grad_a), bits_of(d, grad_b), "kto grad");
}

TEST(CudaWorkspace, TokenLogprobsForwardTwoPhaseGivesTheAllocatingBits) {
  POSTTRAIN_REQUIRE_DEVICE();
  std::mt19937_64 rng(14);
  const index_t n = 6, v = 100000;  // few rows: split over CTAs on any current GPU
  std::vector<float> logits = random_values<float>(rng, static_cast<std::size_t>(n * v), 0.0, 3.0);
  std::vector<index_t> targets = {0, 17, v - 1, -100, 4242, 99};
  device_session d;
  auto dl = d.upload(logits);
  auto dt = d.upload(targets);
  const auto rows = static_cast<std::size_t>(n);
  auto lp_a = d.upload(std::vector<float>(rows, -1.0f)),
       lp_b = d.upload(std::vector<float>(rows, -2.0f));
  auto lse_a = d.upload(std::vector<float>(rows, -1.0f)),
       lse_b = d.upload(std::vector<float>(rows, -2.0f));
  auto h_a = d.upload(std::vector<float>(rows, -1.0f)),
       h_b = d.upload(std::vector<float>(rows, -2.0f));
  ptc::token_logprobs_forward<float, float>(dl.data(), n, v, v, dt.data(), 0.7, -100, lp_a.data(),
                                            lse_a.data(), h_a.data(), nullptr, d.stream());
  std::size_t bytes = 0;
  ptc::token_logprobs_forward<float, float>(nullptr, bytes, dl.data(), n, v, v, dt.data(), 0.7,
                                            -100, lp_b.data(), lse_b.data(), h_b.data(), nullptr,
                                            d.stream());
  EXPECT_GT(bytes, 1u) << "expected split rows";
  auto temp = d.upload(std::vector<std::byte>(bytes + 64));
  ptc::token_logprobs_forward<float, float>(temp.data() + 32, bytes, dl.data(), n, v, v, dt.data(),
                                            0.7, -100, lp_b.data(), lse_b.data(), h_b.data(),
                                            nullptr, d.stream());
  expect_same(bits_of(d, lp_a), bits_of(d, lp_b), "token_logprobs logprob");
  expect_same(bits_of(d, lse_a), bits_of(d, lse_b), "token_logprobs lse");
  expect_same(bits_of(d, h_a), bits_of(d, h_b), "token_logprobs entropy");
}
