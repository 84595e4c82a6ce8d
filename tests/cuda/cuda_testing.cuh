#pragma once
// Harness of the CUDA tests that compare a device op with its host backend element by element
// (tests/cuda/token_logprobs.cu, fused_linear_logprobs.cu, gae.cu): an owned stream, widening
// of float / bfloat16 / half / double host copies to double (to_d of the host tests,
// ops/logprobs_testing.hpp), and an atol + rtol·|host| comparison. POSTTRAIN_REQUIRE_DEVICE()
// comes from device_test_helpers.cuh. Not a test file (the glob takes *.cu only).
#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "device_test_helpers.cuh"
#include "ops/logprobs_testing.hpp"
#include "posttrain/cuda.cuh"

namespace cuda_testing {

// A stream created for one test and destroyed with it.
struct stream_guard {
  cudaStream_t s = nullptr;
  stream_guard() {
    posttrain::backend::cuda::cuda_check(cudaStreamCreate(&s), "cudaStreamCreate");
  }
  ~stream_guard() { (void)cudaStreamDestroy(s); }
  stream_guard(const stream_guard&) = delete;
  stream_guard& operator=(const stream_guard&) = delete;
  void sync() const {
    posttrain::backend::cuda::cuda_check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  }
};

// A host element as double (bfloat16 / half through float).
using logprobs_testing::to_d;

template <class V>
std::vector<double> widen(const V& v) {
  std::vector<double> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = to_d(v[i]);
  return r;
}

// |cuda − host| <= atol + rtol·|host| elementwise; reports the first 5 mismatches.
inline void expect_close(const std::vector<double>& got, const std::vector<double>& want,
                         double rtol, double atol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int reported = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double tol = atol + rtol * std::fabs(want[i]);
    if (!(std::fabs(got[i] - want[i]) <= tol) && reported++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: cuda " << got[i] << " vs host " << want[i]
                    << " (tol " << tol << ")";
  }
}

}  // namespace cuda_testing
