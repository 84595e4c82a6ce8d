// Tests for core/ragged.hpp and core/batch.hpp: offsets helpers, id grouping, batch validation.
#include "posttrain/core/ragged.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "posttrain/core/batch.hpp"

namespace pt = posttrain;

TEST(Ragged, PaddedOffsetsAreMultiplesOfWidth) {
  EXPECT_EQ(pt::padded_offsets(3, 4), (std::vector<pt::index_t>{0, 4, 8, 12}));
  EXPECT_EQ(pt::padded_offsets(0, 4), (std::vector<pt::index_t>{0}));
  EXPECT_THROW(pt::padded_offsets(-1, 4), pt::error);
}

TEST(Ragged, OffsetsFromLengthsAllowsEmptySegments) {
  const std::vector<pt::index_t> lengths{2, 0, 3};
  EXPECT_EQ(pt::offsets_from_lengths(lengths), (std::vector<pt::index_t>{0, 2, 2, 5}));
  const std::vector<pt::index_t> negative{2, -1};
  EXPECT_THROW(pt::offsets_from_lengths(negative), pt::error);
}

TEST(Ragged, SegmentIds) {
  const std::vector<pt::index_t> offsets{0, 2, 2, 5};
  EXPECT_EQ(pt::segment_ids(offsets), (std::vector<pt::index_t>{0, 0, 2, 2, 2}));
}

TEST(Ragged, GroupByIdsIsStableInOrderOfFirstAppearance) {
  const std::vector<std::string> ids{"b", "a", "b", "c", "a", "b"};
  const auto g = pt::group_by_ids(ids);
  EXPECT_EQ(g.num_groups(), 3);
  EXPECT_EQ(g.group_offsets, (std::vector<pt::index_t>{0, 3, 5, 6}));
  EXPECT_EQ(g.order, (std::vector<pt::index_t>{0, 2, 5, 1, 4, 3}));
  EXPECT_EQ(g.group_of, (std::vector<pt::index_t>{0, 1, 0, 2, 1, 0}));
  EXPECT_FALSE(g.is_contiguous());
  // Every member of a group carries the same id, and every position appears once.
  std::vector<int> seen(ids.size(), 0);
  for (pt::index_t grp = 0; grp < g.num_groups(); ++grp)
    for (auto k = g.group_offsets[grp]; k < g.group_offsets[grp + 1]; ++k) {
      EXPECT_EQ(ids[g.order[k]], ids[g.order[g.group_offsets[grp]]]);
      EXPECT_EQ(g.group_of[g.order[k]], grp);
      ++seen[g.order[k]];
    }
  for (int s : seen) EXPECT_EQ(s, 1);
}

TEST(Ragged, GroupByContiguousIdsIsIdentity) {
  const std::vector<int> ids{7, 7, 3, 3, 3, 9};
  const auto g = pt::group_by_ids(ids);
  EXPECT_TRUE(g.is_contiguous());
  EXPECT_EQ(g.group_offsets, (std::vector<pt::index_t>{0, 2, 5, 6}));
}

TEST(Ragged, GroupByEmptyIds) {
  const std::vector<int> ids;
  const auto g = pt::group_by_ids(ids);
  EXPECT_EQ(g.num_groups(), 0);
  EXPECT_EQ(g.group_offsets, (std::vector<pt::index_t>{0}));
}

TEST(Batch, TokenBatchValidation) {
  const std::vector<pt::index_t> offsets{0, 2, 5};
  const std::vector<float> mask{1, 1, 0, 1, 1};
  pt::token_batch ok{offsets, mask};
  EXPECT_NO_THROW(ok.validate());
  EXPECT_EQ(ok.num_sequences(), 2);
  EXPECT_EQ(ok.num_tokens(), 5);

  const std::vector<float> short_mask{1, 1};
  pt::token_batch bad_mask{offsets, short_mask};
  EXPECT_THROW(bad_mask.validate(), pt::error);

  const std::vector<pt::index_t> decreasing{0, 3, 2};
  pt::token_batch bad_offsets{decreasing, {}};
  try {
    bad_offsets.validate();
    FAIL() << "expected posttrain::error";
  } catch (const pt::error& e) {
    EXPECT_NE(std::string(e.what()).find("non-decreasing"), std::string::npos) << e.what();
  }

  const std::vector<float> negative_mask{1, 1, -1, 1, 1};
  EXPECT_THROW((pt::token_batch{offsets, negative_mask}.validate()), pt::error);
}

TEST(Batch, PreferenceBatchNeedsOneRejectedPerChosen) {
  const std::vector<pt::index_t> two{0, 2, 4};
  const std::vector<pt::index_t> one{0, 3};
  pt::preference_batch p{{two, {}}, {one, {}}};
  EXPECT_THROW(p.validate(), pt::error);
  pt::preference_batch q{{two, {}}, {two, {}}};
  EXPECT_NO_THROW(q.validate());
  EXPECT_EQ(q.num_pairs(), 2);
}

TEST(Batch, RolloutGroupsMustCoverSequences) {
  const std::vector<pt::index_t> seqs{0, 1, 2, 3, 4};
  const std::vector<pt::index_t> groups{0, 2, 3};
  pt::rollout_batch r{{seqs, {}}, groups};
  EXPECT_THROW(r.validate(), pt::error);
  const std::vector<pt::index_t> full{0, 2, 4};
  pt::rollout_batch s{{seqs, {}}, full};
  EXPECT_NO_THROW(s.validate());
  EXPECT_EQ(s.num_groups(), 2);
}
