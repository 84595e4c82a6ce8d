// Tokenizers. The BPE tokenizer reads tokenizer.json files trained by the `tokenizers` package
// (golden/generate_tokenizers.py: Qwen2-style and GPT-2-style pre-tokenizers) and encodes the
// committed texts to exactly tokenizers' ids, and decodes them to tokenizers' strings. The byte
// tokenizer round-trips any bytes and keeps the chat special tokens whole.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "golden.hpp"
#include "tokenizer.hpp"

namespace rm = reference_model;
using rm::index_t;

class BpeGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(BpeGolden, EncodesAndDecodesLikeTokenizers) {
  const std::string kind = GetParam();
  const auto g = rm::testing::read_golden("tokenize");
  ASSERT_FALSE(g.is_null());
  const auto tok =
      rm::bpe_tokenizer::from_file(rm::testing::golden_dir() + "/tokenizer_" + kind + ".json");
  EXPECT_EQ(tok.kind(), kind == "qwen2" ? rm::bpe_tokenizer::pretokenizer::qwen2
                                        : rm::bpe_tokenizer::pretokenizer::gpt2);
  const auto& c = g["cases"][kind];
  EXPECT_EQ(tok.vocab_size(), c["vocab_size"].get<index_t>());
  const auto texts = g["texts"].get<std::vector<std::string>>();
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const auto ids = tok.encode(texts[i]);
    EXPECT_EQ(ids, c["ids"][i].get<std::vector<index_t>>()) << kind << " text " << i << ": "
                                                            << texts[i];
    EXPECT_EQ(tok.decode(ids), c["decoded"][i].get<std::string>()) << kind << " text " << i;
    EXPECT_EQ(tok.decode(ids, true), c["decoded_skip_special"][i].get<std::string>()) << i;
  }
  EXPECT_EQ(tok.token_id("<|im_end|>"), 2);
}

INSTANTIATE_TEST_SUITE_P(Kinds, BpeGolden, ::testing::Values("qwen2", "gpt2"));

TEST(BpeTokenizer, DecodeOfPartialUtf8IsLossy) {
  const auto tok =
      rm::bpe_tokenizer::from_file(rm::testing::golden_dir() + "/tokenizer_gpt2.json");
  // "é" is two bytes; the byte-level vocabulary has a token per byte: decoding only the first
  // gives U+FFFD, as tokenizers' decode does.
  const auto ids = tok.encode("é");
  ASSERT_FALSE(ids.empty());
  const std::string lead = tok.decode(std::vector<index_t>{tok.token_id("Ã").value()});
  EXPECT_EQ(lead, "\xEF\xBF\xBD");
  EXPECT_THROW(tok.encode("bad \xC3 utf8"), posttrain::error);
  EXPECT_THROW(tok.decode(std::vector<index_t>{100000}), posttrain::error);
}

TEST(BpeTokenizer, RefusesUnsupportedFiles) {
  nlohmann::json j = nlohmann::json::parse(
      R"({"model":{"type":"WordPiece","vocab":{}},"pre_tokenizer":{"type":"ByteLevel"}})");
  EXPECT_THROW(rm::bpe_tokenizer(j, "test"), posttrain::error);
  j = nlohmann::json::parse(R"({"model":{"type":"BPE","vocab":{"a":0},"merges":[]},
      "pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\w+"}},
      {"type":"ByteLevel","use_regex":false}]}})");
  EXPECT_THROW(rm::bpe_tokenizer(j, "test"), posttrain::error);
  j = nlohmann::json::parse(R"({"model":{"type":"BPE","vocab":{"a":0},"merges":[]},
      "normalizer":{"type":"Lowercase"},"pre_tokenizer":{"type":"ByteLevel"}})");
  EXPECT_THROW(rm::bpe_tokenizer(j, "test"), posttrain::error);
}

TEST(ByteTokenizer, RoundTripsBytesAndKeepsSpecialTokensWhole) {
  rm::byte_tokenizer tok;
  const std::string text = "<|im_start|>user\nnaïve\x01\xff<|im_end|><|endoftext|><|im_x|>";
  const auto ids = tok.encode(text);
  EXPECT_EQ(ids.front(), rm::byte_tokenizer::im_start);
  EXPECT_EQ(ids[ids.size() - 9], rm::byte_tokenizer::endoftext);  // "<|im_x|>": 8 plain bytes
  EXPECT_EQ(tok.decode(ids), text);
  EXPECT_EQ(tok.decode(ids, true), "user\nnaïve\x01\xff<|im_x|>");
  const auto raw = tok.encode(text, false);
  EXPECT_EQ(raw.size(), text.size());
  EXPECT_EQ(tok.token_id("<|im_end|>"), rm::byte_tokenizer::im_end);
  EXPECT_THROW(tok.decode(std::vector<index_t>{259}), posttrain::error);
}
