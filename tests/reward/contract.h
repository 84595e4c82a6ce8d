#pragma once
// Helpers of the verifier contract tests (tests/reward/contract.cpp, tests/fuzz/replay.cpp): views
// into exact-size heap buffers, and running a check on a thread with a small stack.
#include <pthread.h>

#include <cstddef>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace contract {

// A copy of s in a heap block of exactly s.size() bytes, no terminating NUL: under AddressSanitizer
// a read of view()[size()] is a heap-buffer-overflow (a std::string always has a readable NUL
// there, so tests on std::string never see such a read).
class exact_buffer {
 public:
  explicit exact_buffer(std::string_view s) : size_(s.size()), data_(new char[s.empty() ? 1 : s.size()]) {
    if (!s.empty()) std::memcpy(data_.get(), s.data(), s.size());
  }
  std::string_view view() const { return {data_.get(), size_}; }

 private:
  std::size_t size_;
  std::unique_ptr<char[]> data_;
};

// The stack a verifier must live with: a worker thread of 256 KiB. Under AddressSanitizer, whose
// redzones make frames 5-6x larger, 8x that (the parser's stack guard scales the same way).
// time_scale: sanitized code runs ~10x slower, so the generous time ceilings of the tests grow
// by that much.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr std::size_t worker_stack = 8 * 256 * 1024;
inline constexpr double time_scale = 10.0;
inline constexpr bool sanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr std::size_t worker_stack = 8 * 256 * 1024;
inline constexpr double time_scale = 10.0;
inline constexpr bool sanitized = true;
#else
inline constexpr std::size_t worker_stack = 256 * 1024;
inline constexpr double time_scale = 1.0;
inline constexpr bool sanitized = false;
#endif
#else
inline constexpr std::size_t worker_stack = 256 * 1024;
inline constexpr double time_scale = 1.0;
inline constexpr bool sanitized = false;
#endif

// Runs f on a new thread whose stack is `stack` bytes (a stack overflow is a SIGSEGV that ends the
// test binary, which is the failure this detects).
inline void on_stack(const std::function<void()>& f, std::size_t stack = worker_stack) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  if (pthread_attr_setstacksize(&attr, stack) != 0) throw std::runtime_error("pthread_attr_setstacksize");
  pthread_t thread;
  auto body = [](void* p) -> void* {
    (*static_cast<const std::function<void()>*>(p))();
    return nullptr;
  };
  if (pthread_create(&thread, &attr, body, const_cast<std::function<void()>*>(&f)) != 0)
    throw std::runtime_error("pthread_create");
  pthread_join(thread, nullptr);
  pthread_attr_destroy(&attr);
}

}  // namespace contract
