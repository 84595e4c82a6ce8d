// Consumer of the installed CUDA component: compiled and linked by the packaging test (not run, so
// no GPU is needed).
#include <cstdio>
#include <posttrain/cuda.cuh>
#include <string>
#include <vector>

namespace pt = posttrain;

__global__ void logsigmoid_kernel(const float* x, float* y, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = pt::math::logsigmoid(x[i]);
}

int main() {
  std::string reason;
  if (!pt::backend::cuda::cuda_device_available(&reason)) {
    std::printf("consumer_cuda: no CUDA device available: %s\n", reason.c_str());
    return 0;
  }
  const std::vector<float> x{-2.0f, 0.0f, 3.0f};
  std::vector<float> y(x.size());
  pt::backend::cuda::device_buffer<float> dx(x.size(), nullptr), dy(x.size(), nullptr);
  dx.copy_from_host(x);
  logsigmoid_kernel<<<1, 32>>>(dx.data(), dy.data(), static_cast<int>(x.size()));
  dy.copy_to_host(y);
  pt::backend::cuda::cuda_check(cudaStreamSynchronize(nullptr), "cudaStreamSynchronize");
  return y[1] < -0.69f && y[1] > -0.70f ? 0 : 1;
}
