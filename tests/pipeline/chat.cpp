// pipeline/chat.hpp: the rendered ids of a Llama 3-style chat with the byte tokenizer, written out
// by hand; prompt / format / loss masks; SFT and preference packing (format-token masking: the
// shared headers and end-of-turn tokens carry no weight in either response).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <posttrain/pipeline/chat.hpp>

namespace pt = posttrain;
namespace pp = posttrain::pipeline;
using tok = pp::byte_tokenizer;

namespace {
std::vector<pt::index_t> bytes(const std::string& s) { return tok{}.encode(s); }
void append(std::vector<pt::index_t>& a, const std::vector<pt::index_t>& b) { a.insert(a.end(), b.begin(), b.end()); }
}  // namespace

TEST(Chat, RendersHeadersContentAndEndOfTurn) {
  const std::vector<pp::message> msgs{{"user", "hi"}, {"assistant", "yo"}};
  const auto r = pp::render_chat(tok{}, std::span<const pp::message>(msgs));
  std::vector<pt::index_t> want{tok::bos, tok::start_header};
  append(want, bytes("user"));
  want.push_back(tok::end_header);
  append(want, bytes("\n\nhi"));
  want.insert(want.end(), {tok::end_of_turn, tok::start_header});
  append(want, bytes("assistant"));
  want.push_back(tok::end_header);
  append(want, bytes("\n\nyo"));
  want.push_back(tok::end_of_turn);
  EXPECT_EQ(r.tokens, want);
  // Only "yo" and its end-of-turn are the response; only "hi" and "yo" are not format tokens.
  const std::size_t n = want.size();
  for (std::size_t t = 0; t < n; ++t) {
    const bool response = t >= n - 3;
    EXPECT_EQ(r.prompt_mask[t], response ? 0.0f : 1.0f) << t;
    const bool content = t == n - 3 || t == n - 2 || t == 9 || t == 10;  // "yo", "hi"
    EXPECT_EQ(r.format_mask[t], content ? 0.0f : 1.0f) << t;
  }
  const auto with_eot = r.loss_mask(true), content_only = r.loss_mask(false);
  EXPECT_EQ(with_eot[n - 1], 1.0f);
  EXPECT_EQ(content_only[n - 1], 0.0f);
  EXPECT_EQ(content_only[n - 2], 1.0f);
  EXPECT_EQ(with_eot[0], 0.0f);
  EXPECT_EQ(tok{}.decode(r.tokens),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nyo<|eot_id|>");
}

TEST(Chat, GenerationPromptEndsWithAssistantHeader) {
  const std::vector<pp::message> msgs{{"system", "s"}, {"user", "q"}};
  const auto r = pp::render_chat(tok{}, std::span<const pp::message>(msgs), {}, true);
  EXPECT_EQ(tok{}.decode(std::span<const pt::index_t>(r.tokens).last(13)),
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  for (float m : r.prompt_mask) EXPECT_EQ(m, 1.0f);
}

TEST(Chat, BadRoleThrows) {
  const std::vector<pp::message> msgs{{"tool", "x"}};
  EXPECT_THROW(pp::render_chat(tok{}, std::span<const pp::message>(msgs)), pt::error);
}

TEST(Chat, PreferencePackingMasksFormatTokens) {
  std::vector<pp::preference_example> ex(1);
  ex[0].prompt = {{"user", "q"}};
  ex[0].chosen = {{"assistant", "good"}};
  ex[0].rejected = {{"assistant", "no"}};
  const auto p = pp::pack_preference(tok{}, std::span<const pp::preference_example>(ex));
  double wc = 0, wr = 0;
  for (float m : p.chosen_mask) wc += m;
  for (float m : p.rejected_mask) wr += m;
  EXPECT_EQ(wc, 4.0);  // "good", no end-of-turn
  EXPECT_EQ(wr, 2.0);
  const auto q = pp::pack_preference(tok{}, std::span<const pp::preference_example>(ex), {}, false);
  double wq = 0;
  for (float m : q.chosen_mask) wq += m;
  EXPECT_EQ(wq, 5.0);  // with the end-of-turn
  std::vector<pp::sft_example> s{{{{"user", "a"}, {"assistant", "bc"}}}};
  const auto sp = pp::pack_sft(tok{}, std::span<const pp::sft_example>(s));
  EXPECT_EQ(sp.sequences.num_sequences(), 1);
  double ws = 0;
  for (float m : sp.loss_mask) ws += m;
  EXPECT_EQ(ws, 3.0);
}
