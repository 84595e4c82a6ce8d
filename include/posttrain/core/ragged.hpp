#pragma once
// The packed ragged layout, canonical for every token-level input.
//
//   N tokens of B sequences are stored back to back; seq_offsets[B + 1] delimits them, so
//   sequence b owns tokens [seq_offsets[b], seq_offsets[b + 1]). Empty sequences are allowed.
//   Padded [B, T] data is the special case seq_offsets[b] = b * T (with a zero mask on padding):
//   see padded_offsets().
//
//   Groups (G prompts with several samples each) are contiguous runs of sequences delimited by
//   group_offsets[G + 1] over sequence indices. group_by_ids() turns arbitrary ids (verl's uid
//   array, which need not be contiguous) into a permutation that makes groups contiguous, the
//   offsets of those groups, and the group of every original position. For any hashable id type
//   it also has a form that writes into caller spans and takes its hash table from a `workspace`
//   (group_by_ids_workspace_bytes): no allocation, the same grouping (host memory, no stream).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>  // also declares std::hash and its arithmetic specialisations
#include <type_traits>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/core/workspace.hpp"

POSTTRAIN_NAMESPACE_BEGIN

// Offsets of `batch` padded rows of `width` tokens: {0, width, 2*width, ..., batch*width}.
inline std::vector<index_t> padded_offsets(index_t batch, index_t width) {
  expect(batch >= 0, "padded_offsets", "batch must be >= 0, got ", batch);
  expect(width >= 0, "padded_offsets", "width must be >= 0, got ", width);
  std::vector<index_t> offsets(static_cast<std::size_t>(batch) + 1);
  for (index_t b = 0; b <= batch; ++b) offsets[static_cast<std::size_t>(b)] = b * width;
  return offsets;
}

// Offsets from segment lengths: {0, l0, l0 + l1, ...}.
inline std::vector<index_t> offsets_from_lengths(std::span<const index_t> lengths) {
  std::vector<index_t> offsets(lengths.size() + 1, 0);
  for (std::size_t i = 0; i < lengths.size(); ++i) {
    expect(lengths[i] >= 0, "offsets_from_lengths", "lengths[", i, "] = ", lengths[i],
           ", expected >= 0");
    offsets[i + 1] = offsets[i] + lengths[i];
  }
  return offsets;
}

// Segment id of every element: out[k] = s such that offsets[s] <= k < offsets[s + 1].
inline std::vector<index_t> segment_ids(std::span<const index_t> offsets) {
  expect(!offsets.empty(), "segment_ids", "offsets is empty, expected at least {0}");
  expect_offsets(offsets, offsets.back(), "segment_ids", "offsets");
  std::vector<index_t> ids(static_cast<std::size_t>(offsets.back()));
  for (std::size_t s = 0; s + 1 < offsets.size(); ++s)
    std::fill(ids.begin() + offsets[s], ids.begin() + offsets[s + 1], static_cast<index_t>(s));
  return ids;
}

// The result of grouping arbitrary ids.
//   order[k]          original position of the k-th element in grouped order (groups in order of
//                     first appearance, members in their original order: a stable grouping)
//   group_offsets     G + 1 offsets over grouped order
//   group_of[i]       group index of original position i
struct grouping {
  std::vector<index_t> order;
  std::vector<index_t> group_offsets;
  std::vector<index_t> group_of;

  index_t num_groups() const { return static_cast<index_t>(group_offsets.size()) - 1; }
  // True when the ids were already contiguous runs (order is the identity).
  bool is_contiguous() const {
    for (std::size_t k = 0; k < order.size(); ++k)
      if (order[k] != static_cast<index_t>(k)) return false;
    return true;
  }
};

// Bytes of the hash table group_by_ids(ids, order, group_offsets, group_of, ws) needs for n ids
// of any type (open addressing, a power of two >= 2n slots, plus the first member of every group).
inline std::size_t group_by_ids_workspace_bytes(index_t n) {
  expect(n >= 0, "group_by_ids_workspace_bytes", "n is ", n, ", expected >= 0");
  if (n == 0) return 0;
  std::size_t slots = 1;
  while (slots < 2 * static_cast<std::size_t>(n)) slots *= 2;
  return workspace_size().add<index_t>(slots).add<index_t>(static_cast<std::size_t>(n));
}

namespace detail {

// The table slot of an id before probing: integers as they are, any other id through std::hash,
// then splitmix64's finaliser (it spreads consecutive ids, and weak std::hash values, over the
// table). The grouping itself never depends on the hash, only its speed does.
template <class Id>
std::uint64_t group_id_hash(const Id& id) {
  std::uint64_t h;
  if constexpr (std::is_integral_v<Id> || std::is_enum_v<Id>)
    h = static_cast<std::uint64_t>(id);
  else
    h = static_cast<std::uint64_t>(std::hash<Id>{}(id));
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
  return h ^ (h >> 31);
}

}  // namespace detail

// group_by_ids into caller memory, for any id type with std::hash and == (integers, strings,
// ...): order[n], group_offsets[>= n + 1] (the first G + 1 are written), group_of[n]; the hash
// table comes from ws (group_by_ids_workspace_bytes(n)). Returns G. Groups in order of first
// appearance, members in their original order (a stable grouping); no allocation (hashing a
// std::string does not allocate). Sizes are checked and the workspace taken before anything is
// written. O(n) expected.
template <class Id>
index_t group_by_ids(std::span<const Id> ids, std::span<index_t> order,
                     std::span<index_t> group_offsets, std::span<index_t> group_of,
                     workspace ws) {
  constexpr std::string_view where = "group_by_ids";
  const std::size_t n = ids.size();
  expect(order.size() == n, where, "order has ", order.size(), " elements, expected ", n,
         " (one per id)");
  expect(group_of.size() == n, where, "group_of has ", group_of.size(), " elements, expected ",
         n, " (one per id)");
  expect(group_offsets.size() >= n + 1, where, "group_offsets has ", group_offsets.size(),
         " elements, expected at least ", n + 1, " (ids + 1)");
  std::size_t slots = n == 0 ? 0 : 1;
  while (slots < 2 * n) slots *= 2;
  const std::span<index_t> table = ws.take<index_t>(slots, where);
  const std::span<index_t> first = ws.take<index_t>(n, where);
  std::fill(table.begin(), table.end(), index_t(-1));
  const std::size_t mask = slots - 1;
  index_t groups = 0;
  group_offsets[0] = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::size_t slot = static_cast<std::size_t>(detail::group_id_hash(ids[i])) & mask;
    while (table[slot] >= 0 && !(ids[static_cast<std::size_t>(first[static_cast<std::size_t>(
                                     table[slot])])] == ids[i]))
      slot = (slot + 1) & mask;
    if (table[slot] < 0) {
      table[slot] = groups;
      first[static_cast<std::size_t>(groups)] = static_cast<index_t>(i);
      group_offsets[static_cast<std::size_t>(groups) + 1] = 0;
      ++groups;
    }
    const index_t g = table[slot];
    group_of[i] = g;
    ++group_offsets[static_cast<std::size_t>(g) + 1];
  }
  for (std::size_t g = 1; g <= static_cast<std::size_t>(groups); ++g)
    group_offsets[g] += group_offsets[g - 1];
  // The cursor of every group (its next slot in grouped order), in `first`'s memory.
  for (std::size_t g = 0; g < static_cast<std::size_t>(groups); ++g) first[g] = group_offsets[g];
  for (std::size_t i = 0; i < n; ++i)
    order[static_cast<std::size_t>(first[static_cast<std::size_t>(group_of[i])]++)] =
        static_cast<index_t>(i);
  return groups;
}

// Integer ids from anything that converts to a span of them (a std::vector, ...).
inline index_t group_by_ids(std::span<const index_t> ids, std::span<index_t> order,
                            std::span<index_t> group_offsets, std::span<index_t> group_of,
                            workspace ws) {
  return group_by_ids<index_t>(ids, order, group_offsets, group_of, ws);
}

// Groups arbitrary hashable ids (ints, strings, ...) into a new grouping: the workspace form
// above over vectors it allocates and a workspace_buffer. O(n) expected.
template <class Id>
grouping group_by_ids(std::span<const Id> ids) {
  const std::size_t n = ids.size();
  grouping g;
  g.order.resize(n);
  g.group_of.resize(n);
  g.group_offsets.resize(n + 1);
  workspace_buffer buffer;
  const index_t groups =
      group_by_ids(ids, std::span<index_t>(g.order), std::span<index_t>(g.group_offsets),
                   std::span<index_t>(g.group_of),
                   buffer.view(group_by_ids_workspace_bytes(static_cast<index_t>(n))));
  g.group_offsets.resize(static_cast<std::size_t>(groups) + 1);
  return g;
}

template <class Id>
grouping group_by_ids(const std::vector<Id>& ids) {
  return group_by_ids(std::span<const Id>(ids));
}

POSTTRAIN_NAMESPACE_END
