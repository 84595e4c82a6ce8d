#pragma once
// Shared-prompt (prefix) training passes: rows of a packed batch that begin with the same tokens
// run those tokens through the trunk once.
//
// Why it is exact: with causal attention and positions restarting at 0 in every sequence, the
// hidden state of position j depends only on tokens 0..j of its own sequence. Two rows whose first
// L tokens are equal therefore have equal activations at positions 0..L−1, in every layer. GRPO's G
// samples of a prompt share (at least) the whole prompt: 16 prompts × 8 samples × (75 + 16) tokens
// = 11.6 k rows of work, of which 16 × 75 + 128 × 16 = 3.2 k are distinct.
//
// The deduplicated batch ("layout") is a list of groups. A group is
//   a prefix segment      its L shared tokens, positions 0..L−1, ordinary causal self-attention
//   continuation segments one per member row: the row's tokens after L, positions L.., each query
//                         attending to ALL L prefix rows (their K/V) plus causally to its own rows.
// A row that shares nothing is a group of one: its prefix segment is the whole row and it has no
// continuation, i.e. exactly the unshared path. Token-wise layers (embedding, norms, linears, MLP)
// simply run on the M deduplicated rows. The trunk's output is gathered back to one row per packed
// token (row_of), and in the backward the packed rows' gradients are scatter-ADDED onto their
// deduplicated rows: a prefix row's gradient is the sum over the group's members, which is what
// the unshared computation adds into the parameter gradients anyway (only the order of the sum
// differs, so the result agrees up to rounding). Inside attention the prefix's dK / dV likewise
// accumulate over the prefix's own block and every continuation of its group.
//
// Detection is automatic and needs no prompt lengths: rows are sorted by their tokens, so rows with
// long common prefixes become neighbours (equal prompts need not be adjacent in the batch: the RL
// update shuffles its rows), and the sorted order is cut into runs that maximise the tokens saved,
// Σ_runs (rows − 1) · (common prefix of the run), by dynamic programming. Any common prefix is
// exact, so the cut only decides how much work is saved, never the result. E.g. a chat template's
// shared header does not merge two prompts' groups into one with a 10-token prefix, because keeping
// each prompt's 75-token prefix saves more.
#include <algorithm>
#include <limits>
#include <numeric>
#include <span>
#include <vector>

#include "parameters.hpp"

namespace reference_model {

// A contiguous run of deduplicated rows [begin, begin + length) whose queries attend to the
// ctx_len context rows [ctx_begin, ctx_begin + ctx_len) (all of them: a shared prefix) and
// causally to their own rows. Row j of the segment has position ctx_len + j. ctx_len = 0: an
// ordinary causal sequence (a prefix, or a row that shares nothing).
struct attention_segment {
  index_t begin = 0, length = 0;
  index_t ctx_begin = 0, ctx_len = 0;
};

struct shared_prefix_layout {
  std::vector<index_t> tokens;      // [M] the deduplicated tokens
  std::vector<index_t> positions;   // [M] each one's position in its sequence
  std::vector<index_t> row_of;      // [N] packed row -> deduplicated row
  // Groups in order: a segment with ctx_len = 0 (the prefix) followed by its continuations
  // (ctx_begin = the prefix's begin). Every deduplicated row is in exactly one segment.
  std::vector<attention_segment> segments;
  bool identity = true;             // row_of[t] = t (nothing shared, M = N)
  index_t rows() const { return static_cast<index_t>(tokens.size()); }
  index_t packed_rows() const { return static_cast<index_t>(row_of.size()); }
};

namespace detail {
inline index_t common_prefix(std::span<const index_t> a, std::span<const index_t> b) {
  const std::size_t n = std::min(a.size(), b.size());
  std::size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return static_cast<index_t>(i);
}
}  // namespace detail

// Builds the layout of a packed batch (validated by the caller). share = false: every row is a
// group of one (the unshared computation, for tests and A/B timing). `window` bounds the run length
// the cut considers (O(B · window)).
inline void build_shared_prefix_layout(std::span<const index_t> tokens,
                                       std::span<const index_t> seq_offsets, bool share,
                                       shared_prefix_layout& l, index_t window = 1024) {
  const index_t b = static_cast<index_t>(seq_offsets.size()) - 1;
  const index_t n = static_cast<index_t>(tokens.size());
  auto row = [&](index_t r) {
    return tokens.subspan(static_cast<std::size_t>(seq_offsets[r]),
                          static_cast<std::size_t>(seq_offsets[r + 1] - seq_offsets[r]));
  };
  // Runs of rows (sorted order) and their shared prefix length; a run of one shares nothing.
  std::vector<index_t> order(static_cast<std::size_t>(b));
  std::iota(order.begin(), order.end(), index_t(0));
  std::vector<std::vector<index_t>> runs;
  std::vector<index_t> run_prefix;
  if (share && b >= 2) {
    std::stable_sort(order.begin(), order.end(), [&](index_t x, index_t y) {
      const auto rx = row(x), ry = row(y);
      return std::lexicographical_compare(rx.begin(), rx.end(), ry.begin(), ry.end());
    });
    // lcp[k]: common prefix of sorted rows k − 1 and k.
    std::vector<index_t> lcp(static_cast<std::size_t>(b), 0);
    for (index_t k = 1; k < b; ++k) lcp[k] = detail::common_prefix(row(order[k - 1]), row(order[k]));
    // best[j]: most tokens saved by cutting the first j sorted rows into runs; from[j]: where the
    // last run starts. A run [i, j) saves (j − i − 1) · min(lcp[i+1 .. j−1]).
    std::vector<long long> best(static_cast<std::size_t>(b) + 1, 0);
    std::vector<index_t> from(static_cast<std::size_t>(b) + 1, 0);
    for (index_t j = 1; j <= b; ++j) {
      best[j] = best[j - 1];
      from[j] = j - 1;
      index_t m = std::numeric_limits<index_t>::max();
      for (index_t i = j - 2; i >= 0 && j - i <= window; --i) {
        m = std::min(m, lcp[i + 1]);
        if (m == 0) break;
        const long long cand = best[i] + static_cast<long long>(j - 1 - i) * m;
        if (cand > best[j]) best[j] = cand, from[j] = i;  // ties: fewer, longer-prefix runs
      }
    }
    for (index_t j = b; j > 0; j = from[j]) {
      std::vector<index_t> members(order.begin() + from[j], order.begin() + j);
      std::sort(members.begin(), members.end());
      index_t p = std::numeric_limits<index_t>::max();
      for (index_t k = from[j] + 1; k < j; ++k) p = std::min(p, lcp[k]);
      runs.push_back(std::move(members));
      run_prefix.push_back(j - from[j] >= 2 ? p : 0);
    }
    // Groups in the order of their first row (locality; deterministic).
    std::vector<std::size_t> idx(runs.size());
    std::iota(idx.begin(), idx.end(), std::size_t(0));
    std::sort(idx.begin(), idx.end(), [&](std::size_t x, std::size_t y) { return runs[x][0] < runs[y][0]; });
    std::vector<std::vector<index_t>> r2;
    std::vector<index_t> p2;
    for (std::size_t i : idx) r2.push_back(std::move(runs[i])), p2.push_back(run_prefix[i]);
    runs = std::move(r2);
    run_prefix = std::move(p2);
  } else {
    for (index_t r = 0; r < b; ++r) runs.push_back({r}), run_prefix.push_back(0);
  }

  l.tokens.clear();
  l.positions.clear();
  l.segments.clear();
  l.row_of.assign(static_cast<std::size_t>(n), 0);
  auto append = [&](index_t src_row, index_t from_pos, index_t to_pos) {
    for (index_t j = from_pos; j < to_pos; ++j) {
      const index_t t = seq_offsets[src_row] + j;
      l.row_of[static_cast<std::size_t>(t)] = static_cast<index_t>(l.tokens.size());
      l.tokens.push_back(tokens[static_cast<std::size_t>(t)]);
      l.positions.push_back(j);
    }
  };
  for (std::size_t g = 0; g < runs.size(); ++g) {
    const std::vector<index_t>& members = runs[g];
    if (members.size() == 1) {  // the ordinary path: the whole row, causal
      const index_t r = members[0], len = seq_offsets[r + 1] - seq_offsets[r];
      l.segments.push_back({static_cast<index_t>(l.tokens.size()), len, 0, 0});
      append(r, 0, len);
      continue;
    }
    const index_t pl = run_prefix[g];
    const index_t p0 = static_cast<index_t>(l.tokens.size());
    l.segments.push_back({p0, pl, 0, 0});
    append(members[0], 0, pl);
    for (index_t r : members) {
      for (index_t j = 0; j < pl; ++j)
        l.row_of[static_cast<std::size_t>(seq_offsets[r] + j)] = p0 + j;
      const index_t len = seq_offsets[r + 1] - seq_offsets[r];
      l.segments.push_back({static_cast<index_t>(l.tokens.size()), len - pl, p0, pl});
      append(r, pl, len);
    }
  }
  l.identity = l.rows() == n;
  for (index_t t = 0; l.identity && t < n; ++t) l.identity = l.row_of[static_cast<std::size_t>(t)] == t;
}

}  // namespace reference_model
