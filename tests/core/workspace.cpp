// Tests for core/workspace.hpp: sizes, the bump allocator, alignment, the too-small error and the
// growing buffer that stops allocating once it is large enough.
#include "posttrain/core/workspace.hpp"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pt = posttrain;

namespace {

bool aligned(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % pt::workspace_alignment == 0;
}

}  // namespace

TEST(Workspace, SizeCountsEachPieceRoundedUpPlusOneSlack) {
  EXPECT_EQ(pt::workspace_size().bytes(), 0u);
  EXPECT_EQ(pt::workspace_size().add<double>(0).bytes(), 0u);
  // 3 doubles = 24 bytes -> one 64-byte piece, plus 63 bytes of slack for the base.
  EXPECT_EQ(pt::workspace_size().add<double>(3).bytes(), 63u + 64u);
  // 17 floats = 68 bytes -> two lines; then 1 char -> one line.
  EXPECT_EQ(pt::workspace_size().add<float>(17).add<char>(1).bytes(), 63u + 128u + 64u);
}

TEST(Workspace, TakesAlignedDisjointPiecesInOrderFromAnyBase) {
  std::vector<std::byte> storage(1024);
  for (std::size_t offset : {0u, 1u, 7u, 33u}) {
    const std::size_t need = pt::workspace_size().add<double>(5).add<float>(9).add<int>(1);
    ASSERT_LE(offset + need, storage.size());
    pt::workspace ws(storage.data() + offset, need);
    const auto a = ws.take<double>(5, "test");
    const auto b = ws.take<float>(9, "test");
    const auto c = ws.take<int>(1, "test");
    ASSERT_EQ(a.size(), 5u);
    ASSERT_EQ(b.size(), 9u);
    ASSERT_EQ(c.size(), 1u);
    EXPECT_TRUE(aligned(a.data()) && aligned(b.data()) && aligned(c.data())) << offset;
    // Disjoint, in order, inside the view: a sized workspace always suffices, whatever the base.
    const auto* lo = storage.data() + offset;
    EXPECT_GE(reinterpret_cast<const std::byte*>(a.data()), lo);
    EXPECT_GE(reinterpret_cast<const std::byte*>(b.data()),
              reinterpret_cast<const std::byte*>(a.data() + a.size()));
    EXPECT_GE(reinterpret_cast<const std::byte*>(c.data()),
              reinterpret_cast<const std::byte*>(b.data() + b.size()));
    EXPECT_LE(reinterpret_cast<const std::byte*>(c.data() + c.size()), lo + need);
    EXPECT_LE(ws.used(), ws.size());
  }
}

TEST(Workspace, EmptyRequestsNeedNoMemory) {
  pt::workspace none;
  EXPECT_TRUE(none.take<double>(0, "test").empty());
  EXPECT_EQ(none.used(), 0u);
}

TEST(Workspace, TooSmallThrowsNamingTheCall) {
  std::vector<std::byte> storage(100);
  pt::workspace ws(storage.data(), storage.size());
  EXPECT_NO_THROW(ws.take<char>(1, "first"));
  try {
    ws.take<double>(64, "whiten");
    FAIL() << "no throw";
  } catch (const pt::error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("posttrain::whiten: workspace of 100 bytes is too small"),
              std::string::npos)
        << what;
  }
  pt::workspace null_view;
  EXPECT_THROW(null_view.take<float>(1, "x"), pt::error);
}

TEST(Workspace, BufferGrowsOnlyWhenARequestIsLarger) {
  pt::workspace_buffer buffer;
  EXPECT_EQ(buffer.capacity(), 0u);
  pt::workspace a = buffer.view(1000);
  EXPECT_EQ(buffer.capacity(), 1000u);
  const std::byte* first = a.data();
  // Smaller and equal requests reuse the same memory: no allocation in a loop of such calls.
  for (std::size_t bytes : {10u, 999u, 1000u}) {
    pt::workspace w = buffer.view(bytes);
    EXPECT_EQ(w.data(), first);
    EXPECT_EQ(w.size(), 1000u);
  }
  buffer.view(4000);
  EXPECT_EQ(buffer.capacity(), 4000u);
  buffer.release();
  EXPECT_EQ(buffer.capacity(), 0u);
}
