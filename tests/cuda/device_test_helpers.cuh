#pragma once
// Helpers of the CUDA tests (tests/cuda/*.cu): device skip, a stream + upload/download helper,
// random ragged batches, and relative comparison. Not a test file (the glob takes *.cu only).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "posttrain/cuda.cuh"

namespace pt_test {

namespace pt = posttrain;
namespace ptc = posttrain::backend::cuda;
using pt::index_t;

#define POSTTRAIN_REQUIRE_DEVICE()                                                                 \
  do {                                                                                             \
    std::string reason_;                                                                           \
    if (!::posttrain::backend::cuda::cuda_device_available(&reason_))                              \
      GTEST_SKIP() << "no CUDA device available: " << reason_;                                     \
  } while (0)

// A stream and the device copies made through it; everything is freed with the object.
class device_session {
 public:
  device_session() { ptc::cuda_check(cudaStreamCreate(&stream_), "cudaStreamCreate"); }
  ~device_session() {
    buffers_.clear();
    (void)cudaStreamSynchronize(stream_);
    (void)cudaStreamDestroy(stream_);
  }
  device_session(const device_session&) = delete;
  device_session& operator=(const device_session&) = delete;

  pt::exec::cuda exec() const { return pt::exec::cuda{stream_}; }
  cudaStream_t stream() const { return stream_; }

  // Device copy of host data (an empty vector gives an empty span).
  template <class T>
  std::span<T> upload(const std::vector<T>& host) {
    auto holder = std::make_shared<ptc::device_buffer<T>>(host.size(), stream_);
    holder->copy_from_host(std::span<const T>(host));
    buffers_.push_back(holder);
    return holder->span();
  }
  // Device copy to host (synchronises).
  template <class T>
  std::vector<T> download(std::span<const T> device) {
    std::vector<T> host(device.size());
    if (!host.empty())
      ptc::cuda_check(cudaMemcpyAsync(host.data(), device.data(), device.size_bytes(),
                                      cudaMemcpyDeviceToHost, stream_),
                      "download");
    sync();
    return host;
  }
  template <class T>
  std::vector<T> download(std::span<T> device) {
    return download(std::span<const T>(device));
  }
  void sync() { ptc::cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

 private:
  cudaStream_t stream_ = nullptr;
  std::vector<std::shared_ptr<void>> buffers_;
};

inline std::vector<index_t> offsets_of(const std::vector<index_t>& lengths) {
  std::vector<index_t> o{0};
  for (index_t l : lengths) o.push_back(o.back() + l);
  return o;
}

// Random lengths in [0, max_len], with some empty ones.
inline std::vector<index_t> random_lengths(std::mt19937_64& rng, int count, index_t max_len) {
  std::uniform_int_distribution<index_t> len(0, max_len);
  std::vector<index_t> l(static_cast<std::size_t>(count));
  for (auto& x : l) x = len(rng);
  return l;
}

template <class T>
std::vector<T> random_values(std::mt19937_64& rng, std::size_t n, double mean = 0.0,
                             double sd = 1.0) {
  std::normal_distribution<double> nd(mean, sd);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(nd(rng));
  return v;
}

// Weights 0 (20%), 0.5 (16%), 1; NaN written under the zeros of `values` when given.
template <class T>
std::vector<float> random_mask(std::mt19937_64& rng, std::size_t n, std::vector<T>* values) {
  std::bernoulli_distribution drop(0.2), half(0.2);
  std::vector<float> m(n);
  for (std::size_t i = 0; i < n; ++i) {
    m[i] = drop(rng) ? 0.0f : (half(rng) ? 0.5f : 1.0f);
    if (m[i] == 0.0f && values != nullptr) (*values)[i] = static_cast<T>(std::nan(""));
  }
  return m;
}

// |a − b| <= tol·(1 + |b|) elementwise, both NaN counts as equal; reports up to 5 mismatches.
template <class A, class B>
void expect_close(const std::vector<A>& a, const std::vector<B>& b, double tol,
                  const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  int bad = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double x = static_cast<double>(a[i]), y = static_cast<double>(b[i]);
    if (std::isnan(x) && std::isnan(y)) continue;
    if (!(std::fabs(x - y) <= tol * (1.0 + std::fabs(y))) && bad++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: device " << x << " vs reference " << y;
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " mismatches";
}

}  // namespace pt_test
