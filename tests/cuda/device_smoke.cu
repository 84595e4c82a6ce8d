// Smoke test of the CUDA component: the runtime, device_buffer, cuda_check, and a kernel that runs
// math::logsigmoid on the device (POSTTRAIN_HOST_DEVICE), compared with the host result. Skips
// with the reason when no CUDA device is available.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "posttrain/cuda.cuh"

namespace pt = posttrain;
namespace ptc = posttrain::backend::cuda;

// Skips the calling test, with the runtime's reason, when no CUDA device can be used.
#define POSTTRAIN_REQUIRE_DEVICE()                                                                 \
  do {                                                                                             \
    std::string reason;                                                                            \
    if (!ptc::cuda_device_available(&reason))                                                      \
      GTEST_SKIP() << "no CUDA device available: " << reason;                                      \
  } while (0)

namespace {

__global__ void logsigmoid_kernel(const double* x, double* y, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = pt::math::logsigmoid(x[i]);
}

}  // namespace

TEST(CudaSmoke, CudaCheckThrowsPosttrainError) {
  EXPECT_NO_THROW(ptc::cuda_check(cudaSuccess, "test"));
  try {
    ptc::cuda_check(cudaErrorInvalidValue, "test_where");
    FAIL() << "cuda_check did not throw";
  } catch (const pt::error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("posttrain::test_where: CUDA error"), std::string::npos) << what;
    EXPECT_NE(what.find(cudaGetErrorString(cudaErrorInvalidValue)), std::string::npos) << what;
  }
}

TEST(CudaSmoke, EmptyBufferNeedsNoDevice) {
  ptc::device_buffer<float> empty;
  EXPECT_TRUE(empty.empty());
  EXPECT_EQ(empty.data(), nullptr);
  EXPECT_EQ(empty.span().size(), 0u);
}

TEST(CudaSmoke, LogsigmoidOnDeviceMatchesHost) {
  POSTTRAIN_REQUIRE_DEVICE();
  const std::vector<double> x{-1e4, -50.0, -37.5, -1.0, 0.0, 1e-8, 1.0, 18.5, 40.0, 1e4};
  const int n = static_cast<int>(x.size());
  cudaStream_t stream = nullptr;
  ptc::cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
  std::vector<double> y(x.size(), -123.0);
  {
    ptc::device_buffer<double> dx(x.size(), stream), dy(x.size(), stream);
    dx.copy_from_host(x);
    logsigmoid_kernel<<<1, 128, 0, stream>>>(dx.data(), dy.data(), n);
    ptc::cuda_check(cudaGetLastError(), "logsigmoid_kernel launch");
    dy.copy_to_host(y);
    EXPECT_THROW(dy.copy_to_host(std::span<double>(y.data(), 3)), pt::error);
  }
  ptc::cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  ptc::cuda_check(cudaStreamDestroy(stream), "cudaStreamDestroy");
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double host = pt::math::logsigmoid(x[i]);
    ASSERT_TRUE(std::isfinite(y[i])) << "x=" << x[i];
    EXPECT_NEAR(y[i], host, 1e-15 * std::max(1.0, std::fabs(host))) << "x=" << x[i];
  }
}

TEST(CudaSmoke, MovedBufferOwnsTheMemory) {
  POSTTRAIN_REQUIRE_DEVICE();
  ptc::device_buffer<int> a(16, nullptr);
  int* p = a.data();
  ptc::device_buffer<int> b(std::move(a));
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(b.size(), 16u);
  EXPECT_TRUE(a.empty());
  b.reset();
  EXPECT_TRUE(b.empty());
  ptc::cuda_check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}
