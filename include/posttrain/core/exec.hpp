#pragma once
// Execution tags: where the memory behind the views lives and who runs the work.
//   exec::host            host memory, run on the calling thread(s) through backend/cpu.
//   exec::cuda{stream}    device memory, enqueued on `stream` through backend/cuda (needs the
//                         posttrain::cuda component and <posttrain/cuda.cuh>). The stream type is
//                         spelled through the driver's opaque struct so this header needs no CUDA
//                         include; a cudaStream_t converts to it implicitly.
#include <type_traits>

#include "posttrain/config.hpp"

struct CUstream_st;  // the CUDA runtime's cudaStream_t is `CUstream_st*`

POSTTRAIN_NAMESPACE_BEGIN

namespace exec {

struct host {};

struct cuda {
  CUstream_st* stream = nullptr;  // nullptr is the legacy default stream
};

}  // namespace exec

template <class Tag>
inline constexpr bool is_execution_tag_v =
    std::is_same_v<Tag, exec::host> || std::is_same_v<Tag, exec::cuda>;

template <class Tag>
concept execution_tag = is_execution_tag_v<std::remove_cvref_t<Tag>>;

POSTTRAIN_NAMESPACE_END
