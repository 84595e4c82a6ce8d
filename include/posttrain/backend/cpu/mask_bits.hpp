#pragma once
// Branch-free mask selects for the CPU loops: y = (m != 0) ? x : +0 as an integer AND of x's bits
// with all-ones or all-zeros.
//
// GCC (with the default -ftrapping-math) refuses to if-convert a floating-point select such as
// `m != 0 ? x : 0` or `m != 0 ? m·x : 0` (the compare or the arithmetic might trap), so such a
// loop stays scalar; the integer form vectorizes. It is also NaN-safe: a NaN or inf at a masked
// position becomes +0 before any arithmetic sees it. Either sign of zero counts as "masked".
#include <bit>
#include <cstdint>
#include <type_traits>

#include "posttrain/config.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cpu::mask_bits {

// The unsigned integer of T's width (float: 32 bits, double: 64 bits).
template <class T>
using uint_of = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;

// True where the weight is not ±0 (an integer test: the sign bit shifted out).
POSTTRAIN_FORCEINLINE bool nonzero(float m) { return (std::bit_cast<std::uint32_t>(m) << 1) != 0; }

// All ones where m != 0, else all zeros, as the bit pattern of a T.
template <class T>
POSTTRAIN_FORCEINLINE uint_of<T> keep(float m) {
  return uint_of<T>(0) - static_cast<uint_of<T>>(nonzero(m));
}

// x where keep is all ones, +0 where it is all zeros.
template <class T>
POSTTRAIN_FORCEINLINE T select(T x, uint_of<T> keep) {
  return std::bit_cast<T>(std::bit_cast<uint_of<T>>(x) & keep);
}

}  // namespace backend::cpu::mask_bits

POSTTRAIN_NAMESPACE_END
