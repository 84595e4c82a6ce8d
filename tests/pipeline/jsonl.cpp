// pipeline/jsonl.hpp: the three readers on well-formed rows, and a bad row's error naming the
// file, the line and the field.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include <posttrain/pipeline/jsonl.hpp>

namespace pt = posttrain;
namespace pp = posttrain::pipeline;

namespace {
std::string write(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}
std::string error_of(auto&& f) {
  try {
    f();
  } catch (const pt::error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(Jsonl, ReadsSftPreferenceAndRlvrRows) {
  const auto sft = pp::read_sft_jsonl(write("sft.jsonl",
      R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})"
      "\n\n"
      R"({"messages": [{"role": "system", "content": "s"}]})" "\n"));
  ASSERT_EQ(sft.size(), 2u);
  EXPECT_EQ(sft[0].messages[1].content, "a");
  EXPECT_EQ(sft[1].messages[0].role, "system");

  const auto pref = pp::read_preference_jsonl(write("pref.jsonl",
      R"({"prompt": "q", "chosen": "good", "rejected": "bad", "margin": 2.5})" "\n"
      R"({"prompt": [{"role": "user", "content": "q2"}], "chosen": [{"role": "assistant", "content": "c"}], "rejected": "r", "edited": "e"})"));
  ASSERT_EQ(pref.size(), 2u);
  EXPECT_EQ(pref[0].prompt[0].role, "user");
  EXPECT_EQ(pref[0].chosen[0].role, "assistant");
  EXPECT_EQ(*pref[0].margin, 2.5);
  EXPECT_FALSE(pref[0].edited.has_value());
  EXPECT_EQ((*pref[1].edited)[0].content, "e");

  const auto rl = pp::read_rlvr_jsonl(write("rlvr.jsonl",
      R"({"messages": [{"role": "user", "content": "2+2?"}], "ground_truth": "4", "dataset": "gsm8k"})" "\n"
      R"({"messages": [{"role": "user", "content": "x"}], "ground_truth": ["7"], "dataset": ["math"]})"));
  ASSERT_EQ(rl.size(), 2u);
  EXPECT_EQ(rl[0].ground_truth, "4");
  EXPECT_EQ(rl[1].verifier, "math");

  const auto kto = pp::read_kto_jsonl(write("kto.jsonl",
      R"({"prompt": "q", "completion": "good", "label": true})" "\n"
      R"({"prompt": [{"role": "user", "content": "q2"}], "completion": "bad", "label": false})"));
  ASSERT_EQ(kto.size(), 2u);
  EXPECT_EQ(kto[0].prompt[0].role, "user");
  EXPECT_EQ(kto[0].completion[0].role, "assistant");
  EXPECT_EQ(kto[0].completion[0].content, "good");
  EXPECT_TRUE(kto[0].desirable);
  EXPECT_FALSE(kto[1].desirable);
  EXPECT_EQ(kto[1].prompt[0].content, "q2");
}

TEST(Jsonl, BadRowsNameFileLineAndField) {
  const auto p1 = write("bad1.jsonl",
      R"({"messages": [{"role": "user", "content": "q"}]})" "\n"
      R"({"messages": [{"role": "user", "content": 3}]})");
  const std::string e1 = error_of([&] { pp::read_sft_jsonl(p1); });
  EXPECT_NE(e1.find(p1 + ":2"), std::string::npos) << e1;
  EXPECT_NE(e1.find("messages[0].content"), std::string::npos) << e1;

  const auto p2 = write("bad2.jsonl", R"({"prompt": "q", "chosen": "c"})");
  const std::string e2 = error_of([&] { pp::read_preference_jsonl(p2); });
  EXPECT_NE(e2.find(":1"), std::string::npos) << e2;
  EXPECT_NE(e2.find("\"rejected\" is missing"), std::string::npos) << e2;

  const auto p3 = write("bad3.jsonl", "{\"messages\": [}\n");
  EXPECT_NE(error_of([&] { pp::read_rlvr_jsonl(p3); }).find("not valid JSON"), std::string::npos);
  const auto p4 = write("bad4.jsonl", R"({"messages": [], "ground_truth": "1"})");
  EXPECT_NE(error_of([&] { pp::read_rlvr_jsonl(p4); }).find("\"dataset\" is missing"), std::string::npos);
  const auto p5 = write("bad5.jsonl", R"({"messages": [{"role": "robot", "content": "x"}]})");
  EXPECT_NE(error_of([&] { pp::read_sft_jsonl(p5); }).find("robot"), std::string::npos);
  EXPECT_THROW(pp::read_sft_jsonl("/nonexistent/x.jsonl"), pt::error);
  const auto p6 = write("bad6.jsonl", R"({"prompt": "q", "completion": "c", "label": 1})");
  EXPECT_NE(error_of([&] { pp::read_kto_jsonl(p6); }).find("\"label\" is not a boolean"), std::string::npos);
  const auto p7 = write("bad7.jsonl", "\n" R"({"prompt": "q", "completion": "c"})");
  const std::string e7 = error_of([&] { pp::read_kto_jsonl(p7); });
  EXPECT_NE(e7.find(":2"), std::string::npos) << e7;
  EXPECT_NE(e7.find("\"label\" is missing"), std::string::npos) << e7;
  for (auto p : {p1, p2, p3, p4, p5, p6, p7}) std::remove(p.c_str());
}
