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
//   offsets of those groups, and the group of every original position.
#include <algorithm>
#include <span>
#include <unordered_map>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"

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

// Groups arbitrary hashable ids (ints, strings, ...). O(n) expected.
template <class Id>
grouping group_by_ids(std::span<const Id> ids) {
  grouping g;
  const std::size_t n = ids.size();
  g.group_of.resize(n);
  std::unordered_map<Id, index_t> first_seen;
  first_seen.reserve(n);
  std::vector<index_t> counts;
  for (std::size_t i = 0; i < n; ++i) {
    auto [it, inserted] = first_seen.try_emplace(ids[i], static_cast<index_t>(counts.size()));
    if (inserted) counts.push_back(0);
    g.group_of[i] = it->second;
    ++counts[static_cast<std::size_t>(it->second)];
  }
  g.group_offsets = offsets_from_lengths(counts);
  std::vector<index_t> cursor(g.group_offsets.begin(), g.group_offsets.end() - 1);
  g.order.resize(n);
  for (std::size_t i = 0; i < n; ++i)
    g.order[static_cast<std::size_t>(cursor[static_cast<std::size_t>(g.group_of[i])]++)] =
        static_cast<index_t>(i);
  return g;
}

template <class Id>
grouping group_by_ids(const std::vector<Id>& ids) {
  return group_by_ids(std::span<const Id>(ids));
}

POSTTRAIN_NAMESPACE_END
