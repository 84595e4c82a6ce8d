#pragma once
// Threads of the model's GEMMs. Eigen parallelises its matrix products with OpenMP when the build
// links it (the posttrain_reference_model target does when CMake finds OpenMP); the other loops
// of the model are O(N·H) and stay serial, except attention's (sequence, head) blocks, one OpenMP
// region per layer. One process-wide setting, as Eigen's: attention sets Eigen to one thread
// inside its region and restores it after, so two models must not run forward/backward
// concurrently from different host threads.
#include <thread>

#include <Eigen/Core>
#include <posttrain/core/validate.hpp>

namespace reference_model {

// n >= 1 threads, or 0 = the hardware concurrency.
inline void set_num_threads(int n) {
  posttrain::expect(n >= 0, "reference_model::set_num_threads", "n is ", n,
                    ", expected >= 0 (0 = hardware concurrency)");
  Eigen::setNbThreads(n == 0 ? static_cast<int>(std::thread::hardware_concurrency()) : n);
}
inline int num_threads() { return Eigen::nbThreads(); }

}  // namespace reference_model
