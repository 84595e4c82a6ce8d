#pragma once
// device_buffer<T>: an owning, move-only array of `size` T in device memory, allocated with
// cudaMallocAsync and released with cudaFreeAsync on the stream it was created with (stream-ordered
// allocation: no hidden device synchronisation anywhere).
//
//   backend::cuda::device_buffer<float> buf(n, stream);
//   buf.copy_from_host(host_values);   // cudaMemcpyAsync on buf.stream()
//   kernel<<<grid, block, 0, buf.stream()>>>(buf.data(), n);
//   buf.copy_to_host(host_result);     // enqueued: synchronise the stream before reading it
//
// The memory is uninitialised. The destructor enqueues the free and ignores errors (destructors
// must not throw); every other failure throws posttrain::error through cuda_check. Copies from or
// to pageable host memory may return before or after the transfer completes (CUDA's rules); the
// caller must synchronise the stream before reading host results either way.
//
// Also here, the scratch plumbing of every device entry point with temporary storage: CUB's
// two-phase contract (two_phase_query / two_phase), its allocating convenience form
// (with_stream_scratch) and the rest of a caller workspace as two-phase storage (workspace_rest).
#include <cuda_runtime.h>

#include <cstddef>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

#include "posttrain/backend/cuda/error.cuh"
#include "posttrain/config.hpp"
#include "posttrain/core/error.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/workspace.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cuda {

template <class T>
class device_buffer {
  static_assert(std::is_trivially_copyable_v<T>,
                "device_buffer holds trivially copyable element types only (they are moved to the "
                "device with memcpy)");

 public:
  using value_type = T;

  device_buffer() = default;

  device_buffer(std::size_t size, cudaStream_t stream) : size_(size), stream_(stream) {
    if (size_ > 0)
      cuda_check(cudaMallocAsync(reinterpret_cast<void**>(&data_), size_ * sizeof(T), stream_),
                 "device_buffer");
  }

  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;

  device_buffer(device_buffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)),
        stream_(other.stream_) {}

  device_buffer& operator=(device_buffer&& other) noexcept {
    if (this != &other) {
      reset();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
      stream_ = other.stream_;
    }
    return *this;
  }

  ~device_buffer() { reset(); }

  // Enqueues the release of the memory on stream(); the buffer becomes empty.
  void reset() noexcept {
    if (data_ != nullptr) (void)cudaFreeAsync(data_, stream_);
    data_ = nullptr;
    size_ = 0;
  }

  T* data() noexcept { return data_; }
  const T* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  index_t ssize() const noexcept { return static_cast<index_t>(size_); }
  bool empty() const noexcept { return size_ == 0; }
  cudaStream_t stream() const noexcept { return stream_; }
  std::span<T> span() noexcept { return {data_, size_}; }
  std::span<const T> span() const noexcept { return {data_, size_}; }

  // Enqueues host -> device of exactly size() elements on stream().
  void copy_from_host(std::span<const T> host) {
    expect_same_size(host.size(), "device_buffer::copy_from_host");
    if (size_ > 0)
      cuda_check(
          cudaMemcpyAsync(data_, host.data(), size_ * sizeof(T), cudaMemcpyHostToDevice, stream_),
          "device_buffer::copy_from_host");
  }

  // Enqueues device -> host of exactly size() elements on stream().
  void copy_to_host(std::span<T> host) const {
    expect_same_size(host.size(), "device_buffer::copy_to_host");
    if (size_ > 0)
      cuda_check(
          cudaMemcpyAsync(host.data(), data_, size_ * sizeof(T), cudaMemcpyDeviceToHost, stream_),
          "device_buffer::copy_to_host");
  }

 private:
  void expect_same_size(std::size_t host_size, const char* where) const {
    if (host_size != size_)
      throw error(std::string("posttrain::") + where + ": host has " + std::to_string(host_size) +
                  " elements, expected " + std::to_string(size_) + " (the buffer's size)");
  }

  T* data_ = nullptr;
  std::size_t size_ = 0;
  cudaStream_t stream_ = nullptr;
};

// CUB's two-phase contract, shared by the device ops with scratch: with d_temp == nullptr store
// the size (at least 1 byte, so that the second call's pointer is never null) and return true (a
// query: the caller returns); otherwise check that temp_bytes covers `needed` (posttrain::error
// naming the call before anything is launched) and return false (run).
inline bool two_phase_query(void* d_temp, std::size_t& temp_bytes, std::size_t needed,
                            const char* where) {
  if (d_temp == nullptr) {
    temp_bytes = needed > 0 ? needed : 1;
    return true;
  }
  if (temp_bytes < needed)
    throw error(std::string("posttrain::backend::cuda::") + where + ": temporary storage of " +
                std::to_string(temp_bytes) + " bytes is too small (" + std::to_string(needed) +
                " needed): ask with d_temp = nullptr first");
  return false;
}

// A two-phase entry point: the size query, or fn(ws) over the caller's d_temp.
template <class Fn>
void two_phase(void* d_temp, std::size_t& temp_bytes, std::size_t needed, const char* where,
               Fn&& fn) {
  if (two_phase_query(d_temp, temp_bytes, needed, where)) return;
  workspace ws(d_temp, temp_bytes);
  fn(ws);
}

// The unused rest of a caller workspace (device memory) as a two-phase call's d_temp and
// temp_bytes. An empty view throws here: passed on as d_temp == nullptr it would read as a size
// query and the call would silently do nothing.
inline void* workspace_rest(const workspace& ws, std::size_t& bytes, const char* where) {
  if (ws.data() == nullptr)
    throw error(std::string("posttrain::") + where +
                ": the workspace is empty: size it with the call's *_workspace_bytes(exec::cuda, "
                "...) and pass device memory");
  bytes = ws.size() - ws.used();
  return ws.data() + ws.used();
}

// Its convenience form: fn(ws) over `bytes` of scratch allocated stream-ordered for the call
// (nothing is allocated for 0 bytes).
template <class Fn>
void with_stream_scratch(std::size_t bytes, cudaStream_t stream, Fn&& fn) {
  device_buffer<std::byte> temp(bytes, stream);
  workspace ws(temp.data(), temp.size());
  fn(ws);
}

}  // namespace backend::cuda

POSTTRAIN_NAMESPACE_END
