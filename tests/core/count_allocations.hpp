#pragma once
// Allocation counting for the tests that check a call allocates nothing: this header replaces
// the global operator new / delete of the test binary that includes it (include it in exactly
// one translation unit of that binary), so every allocation goes through here, and
// count_allocations(f) returns how many allocations f made. The tests read the counter around
// the calls under test only.
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>

namespace count_allocations_detail {
inline std::atomic<long> allocations{0};
// Out of line, so that GCC does not pair an inlined free() with a new-expression and warn.
[[gnu::noinline]] inline void release(void* p) noexcept { std::free(p); }
}  // namespace count_allocations_detail

void* operator new(std::size_t size) {
  count_allocations_detail::allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return ::operator new(size); }
void operator delete(void* p) noexcept { count_allocations_detail::release(p); }
void operator delete(void* p, std::size_t) noexcept { count_allocations_detail::release(p); }
void operator delete[](void* p) noexcept { count_allocations_detail::release(p); }
void operator delete[](void* p, std::size_t) noexcept { count_allocations_detail::release(p); }

// Runs f and returns how many allocations it made.
template <class F>
long count_allocations(F&& f) {
  const long before = count_allocations_detail::allocations.load();
  f();
  return count_allocations_detail::allocations.load() - before;
}
