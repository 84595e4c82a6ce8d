#pragma once
// Caller-supplied scratch memory, so that a hot call allocates nothing.
//
//   workspace_size       how many bytes a call needs: add<T>(n) per piece, in the order the call
//                        takes them (each piece is rounded up to workspace_alignment bytes; one
//                        alignment's slack is counted once for a base pointer that is not aligned)
//   workspace            a non-owning view of caller memory (host or device: it only hands out
//                        pointers, never reads them) with a bump allocator: take<T>(n) returns the
//                        next n elements, aligned, or throws posttrain::error naming the call when
//                        the view is too small. A call takes everything it needs before it writes
//                        any output, so a too-small workspace leaves the outputs untouched.
//   workspace_buffer     owning host memory that grows to the largest request and keeps it: one
//                        buffer reused across calls allocates only when a call needs more than
//                        any call before it (the pattern of a training loop).
//
// Every entry point with scratch needs has a `*_workspace_bytes(...)` function (CUB's two-phase
// contract where the op already follows it, e.g. fused_linear_logprobs), an overload taking a
// `workspace`, and a convenience overload that allocates. Estimators and losses that need scratch
// use the same types (the host and device forms differ only in where the bytes live).
//
//   posttrain::workspace_buffer buffer;                      // once, outside the loop
//   auto ws = buffer.view(posttrain::whiten_workspace_bytes(exec::host{}, scopes));
//   posttrain::whiten(exec::host{}, values, mask, offsets, out, options, ws);
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "posttrain/config.hpp"
#include "posttrain/core/error.hpp"

// std::unique_ptr and std::make_unique_for_overwrite only: libstdc++ 12 and later declare them in
// <bits/unique_ptr.h>, without the shared_ptr / allocator machinery of <memory> (docs/
// architecture.md, "Include cost"). Other standard libraries get <memory>.
#if defined(__GLIBCXX__) && defined(_GLIBCXX_RELEASE) && _GLIBCXX_RELEASE >= 12 && \
    __has_include(<bits/unique_ptr.h>)
#include <bits/unique_ptr.h>
#else
#include <memory>
#endif

POSTTRAIN_NAMESPACE_BEGIN

// Every piece starts on a cache line (also a multiple of every scalar and vector alignment used).
inline constexpr std::size_t workspace_alignment = 64;

namespace detail {

constexpr std::size_t workspace_round_up(std::size_t bytes) {
  return (bytes + workspace_alignment - 1) / workspace_alignment * workspace_alignment;
}

}  // namespace detail

// The size of a workspace, piece by piece. An empty request is 0 bytes (no slack needed).
class workspace_size {
 public:
  template <class T>
  constexpr workspace_size& add(std::size_t count) {
    if (count == 0) return *this;
    if (bytes_ == 0) bytes_ = workspace_alignment - 1;  // slack for an unaligned base, once
    bytes_ += detail::workspace_round_up(count * sizeof(T));
    return *this;
  }
  constexpr std::size_t bytes() const { return bytes_; }
  constexpr operator std::size_t() const { return bytes_; }

 private:
  std::size_t bytes_ = 0;
};

// A non-owning view of scratch memory with a bump allocator. Copies share the memory but not the
// position: pass by value to a call, which takes its pieces from the start.
class workspace {
 public:
  constexpr workspace() = default;
  workspace(void* data, std::size_t bytes) : data_(static_cast<std::byte*>(data)), size_(bytes) {}
  explicit workspace(std::span<std::byte> bytes) : workspace(bytes.data(), bytes.size()) {}

  std::size_t size() const { return size_; }
  std::size_t used() const { return used_; }
  std::byte* data() const { return data_; }

  // The next `count` elements of T, aligned to workspace_alignment, uninitialised: nothing is
  // constructed or destroyed, so T must be trivially copyable and destructible (an implicit-
  // lifetime type such as a scalar or an aggregate of scalars), and the caller writes before it
  // reads.
  template <class T>
  std::span<T> take(std::size_t count, std::string_view where) {
    static_assert(std::is_trivially_copyable_v<T> && std::is_trivially_destructible_v<T>,
                  "posttrain::workspace::take hands out raw memory: T must be trivially copyable "
                  "and trivially destructible");
    if (count == 0) return {};
    const auto base = reinterpret_cast<std::uintptr_t>(data_);
    const std::size_t aligned =
        static_cast<std::size_t>(detail::workspace_round_up(base + used_) - base);
    const std::size_t need = detail::workspace_round_up(count * sizeof(T));
    if (data_ == nullptr || aligned > size_ || need > size_ - aligned)
      throw error("posttrain::" + std::string(where) + ": workspace of " + std::to_string(size_) +
                  " bytes is too small (" + std::to_string(used_) + " used, " +
                  std::to_string(count * sizeof(T)) +
                  " more needed): size it with the call's *_workspace_bytes");
    used_ = aligned + need;
    return std::span<T>(reinterpret_cast<T*>(data_ + aligned), count);
  }

 private:
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t used_ = 0;
};

// Owning host scratch that grows to the largest request and never shrinks (until release()).
class workspace_buffer {
 public:
  workspace_buffer() = default;
  explicit workspace_buffer(std::size_t bytes) { reserve(bytes); }

  // At least `bytes` bytes; allocates only when the buffer is smaller. The contents are not kept.
  void reserve(std::size_t bytes) {
    if (bytes <= size_) return;
    data_ = std::make_unique_for_overwrite<std::byte[]>(bytes);
    size_ = bytes;
  }
  // A workspace over at least `bytes` bytes (the whole buffer).
  workspace view(std::size_t bytes) {
    reserve(bytes);
    return workspace(data_.get(), size_);
  }
  std::size_t capacity() const { return size_; }
  void release() {
    data_.reset();
    size_ = 0;
  }

 private:
  std::unique_ptr<std::byte[]> data_;
  std::size_t size_ = 0;
};

POSTTRAIN_NAMESPACE_END
