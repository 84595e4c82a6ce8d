#pragma once
// posttrain::uniform_random_bit_generator: the C++20 std::uniform_random_bit_generator concept,
// word for word, without <random> (whose distributions and engines cost ~8% of the umbrella's
// parse time; see docs/architecture.md, "Include cost"). Any std engine (std::mt19937_64, ...)
// models it; include <random> yourself to make one.
#include <concepts>
#include <type_traits>

#include "posttrain/config.hpp"

POSTTRAIN_NAMESPACE_BEGIN

template <class G>
concept uniform_random_bit_generator =
    std::invocable<G&> && std::unsigned_integral<std::invoke_result_t<G&>> && requires {
      { G::min() } -> std::same_as<std::invoke_result_t<G&>>;
      { G::max() } -> std::same_as<std::invoke_result_t<G&>>;
      requires std::bool_constant<(G::min() < G::max())>::value;
    };

POSTTRAIN_NAMESPACE_END
