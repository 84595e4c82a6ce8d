// CUDA GAE (backend/cuda/gae.cuh) against the CPU advantage::gae (exec::host, no whitening) on
// the same random packed batches: both recurrences, masks with zeros (NaN under them), empty and
// single-token sequences, sequences longer than one chunk (1024 tokens), float and double.
// The advantage::gae front end with exec::cuda (scan + whitening on the device) is compared with
// the host front end for every gae_conventions preset, with and without returns; its size checks
// run without a device. Host-side argument checks run without a device; the rest skip when no
// CUDA device is available.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "cuda_testing.cuh"
#include "posttrain/backend/cuda/gae.cuh"
#include "posttrain/cuda.cuh"

namespace pt = posttrain;
namespace ptc = posttrain::backend::cuda;
namespace adv = posttrain::advantage;
using pt::index_t;

namespace {

using namespace cuda_testing;

// A random packed batch: rewards and values ~ N(0, 1); mask weights 0 (NaN under them) with
// probability 0.2, else 1, or 0.5 / 1 when `fractional`; no mask at all unless `with_mask`.
template <class T>
struct gae_batch {
  std::vector<index_t> offsets{0};
  std::vector<T> r, v;
  std::vector<float> m;
  std::size_t n = 0;

  gae_batch(const std::vector<index_t>& lengths, bool with_mask, bool fractional, unsigned seed) {
    for (index_t l : lengths) offsets.push_back(offsets.back() + l);
    n = static_cast<std::size_t>(offsets.back());
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> nd(0.0, 1.0);
    std::bernoulli_distribution drop(0.2);
    r.resize(n);
    v.resize(n);
    m.resize(with_mask ? n : 0);
    for (std::size_t i = 0; i < n; ++i) {
      r[i] = T(nd(rng));
      v[i] = T(nd(rng));
      if (with_mask) {
        m[i] = drop(rng) ? 0.0f : (fractional && drop(rng) ? 0.5f : 1.0f);
        if (m[i] == 0.0f) r[i] = v[i] = T(std::nan(""));
      }
    }
  }
};

// |cuda − host| <= tol·(1 + |host|) for the advantages and, when requested, the returns.
template <class T>
void expect_matches_host(const std::vector<T>& da, const std::vector<T>& ha,
                         const std::vector<T>& dr, const std::vector<T>& hr, bool with_returns,
                         double tol) {
  expect_close(widen(da), widen(ha), tol, tol, "advantages");
  if (with_returns) expect_close(widen(dr), widen(hr), tol, tol, "returns");
}

template <class T>
void check_gae(const std::vector<index_t>& lengths, adv::gae_options o, bool with_mask,
               bool with_returns, double tol, unsigned seed) {
  o.whiten = false;
  const gae_batch<T> b(lengths, with_mask, true, seed);
  const auto& [offsets, r, v, m, n] = b;
  std::vector<T> ha(n, T(-1)), hr(with_returns ? n : 0, T(-1));
  adv::gae(pt::exec::host{}, std::span<const T>(r), std::span<const T>(v),
           std::span<const float>(m), std::span<const index_t>(offsets), std::span<T>(ha),
           std::span<T>(hr), o);

  std::vector<T> da(n, T(-2)), dr(with_returns ? n : 0, T(-2));
  stream_guard st;
  const cudaStream_t s = st.s;
  {
    ptc::device_buffer<T> br(n, s), bv(n, s), ba(n, s), bret(dr.size(), s);
    ptc::device_buffer<float> bm(m.size(), s);
    ptc::device_buffer<index_t> bo(offsets.size(), s);
    br.copy_from_host(r);
    bv.copy_from_host(v);
    bm.copy_from_host(m);
    bo.copy_from_host(offsets);
    ptc::gae<T>(br.data(), bv.data(), with_mask ? bm.data() : nullptr, bo.data(),
                static_cast<index_t>(lengths.size()), ba.data(),
                with_returns ? bret.data() : nullptr, o, s);
    ba.copy_to_host(da);
    bret.copy_to_host(dr);
    st.sync();
  }
  expect_matches_host(da, ha, dr, hr, with_returns, tol);
}

}  // namespace

TEST(CudaGae, RejectsWhiteningAndBadHyperparametersOnTheHost) {
  adv::gae_options o;
  o.whiten = true;
  EXPECT_THROW(ptc::gae<float>(nullptr, nullptr, nullptr, nullptr, 1, nullptr, nullptr, o,
                               nullptr),
               pt::error);
  o.whiten = false;
  o.gamma = 1.5;
  EXPECT_THROW(ptc::gae<float>(nullptr, nullptr, nullptr, nullptr, 1, nullptr, nullptr, o,
                               nullptr),
               pt::error);
  o.gamma = 1.0;
  EXPECT_NO_THROW(ptc::gae<float>(nullptr, nullptr, nullptr, nullptr, 0, nullptr, nullptr, o,
                                  nullptr));  // nothing to do: no launch
}

TEST(CudaGae, MaskedCarryDoubleMatchesHost) {
  POSTTRAIN_REQUIRE_DEVICE();
  const adv::gae_options o{
      .gamma = 0.99, .lambda = 0.95, .recurrence = adv::gae_recurrence::masked_carry};
  check_gae<double>({5, 0, 1, 3000, 1024, 1025, 77}, o, true, true, 1e-10, 1);
  check_gae<double>({4096, 2}, o, false, false, 1e-10, 2);
}

TEST(CudaGae, PlainFloatMatchesHost) {
  POSTTRAIN_REQUIRE_DEVICE();
  adv::gae_options o{.gamma = 1.0, .lambda = 0.95, .recurrence = adv::gae_recurrence::plain};
  check_gae<float>({5, 0, 1, 3000, 1024, 1025, 77}, o, true, true, 1e-5, 3);
  o.lambda = 1.0;
  check_gae<float>({2048, 3}, o, true, false, 1e-5, 4);
}

namespace {

// advantage::gae(exec::cuda) vs advantage::gae(exec::host): the same front end on both backends.
template <class T>
void check_front_end(const std::vector<index_t>& lengths, const adv::gae_options& o,
                     bool with_returns, double tol, unsigned seed) {
  const gae_batch<T> b(lengths, true, false, seed);
  const auto& [offsets, r, v, m, n] = b;
  std::vector<T> ha(n, T(-1)), hr(with_returns ? n : 0, T(-1));
  adv::gae(pt::exec::host{}, std::span<const T>(r), std::span<const T>(v),
           std::span<const float>(m), std::span<const index_t>(offsets), std::span<T>(ha),
           std::span<T>(hr), o);
  std::vector<T> da(n), dr(hr.size());
  stream_guard st;
  const cudaStream_t s = st.s;
  {
    ptc::device_buffer<T> br(n, s), bv(n, s), ba(n, s), bret(dr.size(), s);
    ptc::device_buffer<float> bm(n, s);
    ptc::device_buffer<index_t> bo(offsets.size(), s);
    br.copy_from_host(r);
    bv.copy_from_host(v);
    bm.copy_from_host(m);
    bo.copy_from_host(offsets);
    adv::gae(pt::exec::cuda{s}, std::span<const T>(br.span()), std::span<const T>(bv.span()),
             std::span<const float>(bm.span()), std::span<const index_t>(bo.span()), ba.span(),
             bret.span(), o);
    ba.copy_to_host(da);
    bret.copy_to_host(dr);
    st.sync();
  }
  expect_matches_host(da, ha, dr, hr, with_returns, tol);
}

}  // namespace

TEST(CudaGae, FrontEndEveryPresetMatchesHost) {
  POSTTRAIN_REQUIRE_DEVICE();
  namespace gc = adv::gae_conventions;
  unsigned seed = 40;
  for (const adv::gae_options& o : {gc::verl, gc::trl_ppo, gc::openrlhf, gc::open_instruct}) {
    check_front_end<float>({5, 0, 1, 3000, 1024, 1025, 77}, o, true, 1e-5, ++seed);
    check_front_end<double>({4096, 4096, 3}, o, false, 1e-10, ++seed);
  }
}

TEST(CudaGae, FrontEndRejectsBadSizesWithoutTouchingMemory) {
  std::vector<float> r(10), v(9), a(10, -1.0f), ret(10, -1.0f);
  std::vector<index_t> o{0, 10};
  EXPECT_THROW(adv::gae(pt::exec::cuda{}, std::span<const float>(r), std::span<const float>(v),
                        std::span<const float>(), std::span<const index_t>(o),
                        std::span<float>(a), std::span<float>(ret)),
               pt::error);
  EXPECT_THROW(adv::gae(pt::exec::cuda{}, std::span<const float>(r), std::span<const float>(r),
                        std::span<const float>(), std::span<const index_t>(o),
                        std::span<float>(a), std::span<float>(a)),
               pt::error);  // advantages == returns
  EXPECT_EQ(a, std::vector<float>(10, -1.0f));
}
