// IFEval verifier (open-instruct IFEvalVerifier + IFEvalG checkers): hand-derived cases per rule,
// the label grammar, the tokenisers, and every way open-instruct raises or draws at random.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "posttrain/core/error.hpp"
#include "posttrain/reward/concept.hpp"
#include "posttrain/reward/ifeval.hpp"

namespace pt = posttrain;
namespace ie = pt::reward::ifeval;
using strings = std::vector<std::string>;

namespace {

// check_following of one instruction whose kwargs are a Python dict literal.
bool follows(std::string_view id, std::string_view kwargs, std::string_view value,
             const ie::language_detector& detect = {}) {
  return ie::check_following(ie::build_instruction(id, ie::parse_python_literal(kwargs)), value, detect);
}

std::string label(std::string_view ids, std::string_view kwargs) {
  return "[{'instruction_id': " + std::string(ids) + ", 'kwargs': " + std::string(kwargs) + "}]";
}

}  // namespace

static_assert(pt::reward::check_verifier<pt::reward::ifeval_verifier>());

TEST(IfevalVerifier, ScoreIsFractionFollowed) {
  const pt::reward::ifeval_verifier v;
  EXPECT_EQ(pt::reward::ifeval_verifier::name(), "ifeval");
  const std::string l = label("['punctuation:no_comma', 'punctuation:punctuation_dot', "
                              "'keywords:existence']",
                              "[None, {}, {'keywords': ['sea'], 'unused': None}]");
  EXPECT_DOUBLE_EQ(v.score("The sea is calm", l), 1.0);
  EXPECT_DOUBLE_EQ(v.score("The sea, calm.", l), 1.0 / 3.0);   // comma and dot fail
  EXPECT_DOUBLE_EQ(v.score("A lake, calm.", l), 0.0);
  // The think section is removed first: the comma inside it does not count.
  EXPECT_DOUBLE_EQ(v.score("<think>a, b.</think> The sea is calm", l), 1.0);
  EXPECT_EQ(v.score("", l), 0.0);
  EXPECT_EQ(v.score("<think>only thoughts</think>  ", l), 0.0);  // empty answer
  // Empty instruction list: 0 / max(0, 1).
  EXPECT_EQ(v.score("text", label("[]", "[]")), 0.0);
  // zip truncates to the shorter list.
  EXPECT_EQ(v.score("a, b", label("['punctuation:no_comma', 'punctuation:punctuation_dot']", "[{}]")),
            0.0);
  EXPECT_EQ(v.score("a b.", label("['punctuation:no_comma', 'punctuation:punctuation_dot']", "[{}]")),
            1.0);
  // The element may be a JSON string (json.loads'd).
  EXPECT_EQ(v.score("a b", "['{\"instruction_id\": [\"punctuation:no_comma\"], \"kwargs\": [null]}']"),
            1.0);
  // Pre-built instructions give the same scores.
  const std::vector<ie::instruction> built = {
      ie::build_instruction("punctuation:no_comma", ie::literal{}),
      ie::build_instruction("keywords:existence", ie::parse_python_literal("{'keywords': ['sea']}"))};
  EXPECT_DOUBLE_EQ(v.score("The sea, calm", built), 0.5);
}

TEST(IfevalVerifier, RaisesWhereOpenInstructDoes) {
  const pt::reward::ifeval_verifier v;
  // Unknown id (KeyError), unknown kwarg (TypeError), bad relation / missing prompt (ValueError).
  EXPECT_THROW(v.score("x", label("['keywords:nope']", "[{}]")), pt::error);
  EXPECT_THROW(v.score("x", label("['punctuation:no_comma']", "[{'foo': 1}]")), pt::error);
  EXPECT_THROW(v.score("x", label("['keywords:frequency']",
                                  "[{'keyword': 'x', 'frequency': 1, 'relation': 'more than'}]")),
               pt::error);
  EXPECT_THROW(v.score("x", label("['copy:copy']", "[{'prompt_to_repeat': ''}]")), pt::error);
  // Malformed labels.
  EXPECT_THROW(v.score("x", "[]"), pt::error);
  EXPECT_THROW(v.score("x", "{'instruction_id': []}"), pt::error);
  EXPECT_THROW(v.score("x", "[{'kwargs': []}]"), pt::error);
  EXPECT_THROW(v.score("x", "[{'instruction_id': ['a'"), pt::error);
  // An empty prediction returns 0 before any instruction is built (as open-instruct).
  EXPECT_EQ(v.score("", label("['keywords:nope']", "[{}]")), 0.0);
}

TEST(IfevalVerifier, RandomArgumentsAreRejected) {
  // open-instruct draws these at random when missing / None / falsy: not reproducible.
  const auto build = [](std::string_view id, std::string_view kw) {
    return ie::build_instruction(id, ie::parse_python_literal(kw));
  };
  EXPECT_THROW(build("keywords:existence", "{'keywords': []}"), pt::error);
  EXPECT_THROW(build("keywords:frequency", "{'keyword': 'a', 'relation': 'at least'}"), pt::error);
  EXPECT_THROW(build("keywords:frequency", "{'keyword': 'a', 'frequency': -1, 'relation': 'at least'}"),
               pt::error);
  EXPECT_THROW(build("length_constraints:number_words", "{'num_words': 5}"), pt::error);
  EXPECT_THROW(build("keywords:letter_frequency",
                     "{'letter': 'ab', 'let_frequency': 1, 'let_relation': 'at least'}"),
               pt::error);
  EXPECT_THROW(build("new:copy_span_idx", "{'prompt_to_repeat': 'abc', 'n_start': 0, 'n_end': 2}"),
               pt::error);  // n_start = 0 is falsy: open-instruct draws it
  EXPECT_THROW(build("length_constraints:nth_paragraph_first_word",
                     "{'num_paragraphs': 2, 'nth_paragraph': 3, 'first_word': 'a'}"),
               pt::error);
  EXPECT_THROW(build("count:lowercase_counting", "{'N': 0}"), pt::error);
  // 0 is a valid threshold where the rule is `is None or < 0`.
  EXPECT_NO_THROW(build("length_constraints:number_words", "{'num_words': 0, 'relation': 'at least'}"));
  // Keywords are regular expressions in Python: metacharacters other than '.' are refused.
  EXPECT_THROW(build("keywords:existence", "{'keywords': ['a+b']}"), pt::error);
  EXPECT_NO_THROW(build("keywords:existence", "{'keywords': ['e.g']}"));
}

TEST(IfevalVerifier, LanguageThroughCallback) {
  const auto en = [](std::string_view) { return std::optional<std::string>("en"); };
  const auto none = [](std::string_view) { return std::optional<std::string>(); };
  EXPECT_TRUE(follows("language:response_language", "{'language': 'en'}", "hello", en));
  EXPECT_FALSE(follows("language:response_language", "{'language': 'de'}", "hello", en));
  EXPECT_TRUE(follows("language:response_language", "{'language': 'de'}", "123", none));  // undetectable
  EXPECT_THROW(follows("language:response_language", "{'language': 'en'}", "hello"), pt::error);
  // english_capital consults langdetect only when the text is all capitals (Python's `and`).
  EXPECT_FALSE(follows("change_case:english_capital", "{}", "Not Capitals"));
  EXPECT_TRUE(follows("change_case:english_capital", "{}", "ALL CAPS 1", en));
  EXPECT_FALSE(follows("change_case:english_lowercase", "{}", "lower but Not"));
  EXPECT_TRUE(follows("change_case:english_lowercase", "{}", "lower only", en));
  EXPECT_THROW(follows("change_case:english_lowercase", "{}", "lower only"), pt::error);
}

TEST(IfevalCheckers, CountsAndRelations) {
  // findall is case-insensitive and counts substrings: apple x3 + pineapple = 4.
  EXPECT_TRUE(follows("keywords:frequency", "{'keyword': 'apple', 'frequency': 4, 'relation': 'at least'}",
                      "apple Apple APPLE pineapple"));
  EXPECT_FALSE(follows("keywords:frequency", "{'keyword': 'apple', 'frequency': 4, 'relation': 'less than'}",
                       "apple Apple APPLE pineapple"));
  // \b word \b: "cats" does not contain the word "cat".
  EXPECT_TRUE(follows("keywords:forbidden_words", "{'forbidden_words': ['cat']}", "cats here"));
  EXPECT_FALSE(follows("keywords:forbidden_words", "{'forbidden_words': ['cat']}", "a CAT."));
  // letter b in "Bob's blob": B,b,b,b = 4.
  EXPECT_TRUE(follows("keywords:letter_frequency", "{'letter': 'B', 'let_frequency': 4, 'let_relation': 'at least'}",
                      "Bob's blob"));
  EXPECT_FALSE(follows("keywords:letter_frequency", "{'letter': 'b', 'let_frequency': 5, 'let_relation': 'at least'}",
                       "Bob's blob"));
  // \w+ words: "it's" is 2, "snake_case" is 1, "3.5" is 2.
  EXPECT_EQ(ie::count_words("it's snake_case 3.5"), 5u);
  EXPECT_EQ(ie::count_words("\xe2\x80\x94 caf\xc3\xa9 \xe2\x80\x94"), 1u);  // em dashes are not words
  // [.*?] placeholders do not cross a newline.
  EXPECT_TRUE(follows("detectable_content:number_placeholders", "{'num_placeholders': 2}", "[a] [b]"));
  EXPECT_FALSE(follows("detectable_content:number_placeholders", "{'num_placeholders': 2}", "[a\n] [b]"));
  // letter_counting: ASCII letters; an unknown relation scores False (Python returns None).
  EXPECT_TRUE(follows("letters:letter_counting", "{'N': 6, 'relation': 'at least'}", "abc DEF 12"));
  EXPECT_FALSE(follows("letters:letter_counting", "{'N': 7, 'relation': 'at least'}", "abc DEF 12"));
  EXPECT_FALSE(follows("letters:letter_counting", "{'N': 1, 'relation': 'exactly'}", "abc"));
  // lowercase_counting: maximal word runs of [a-z] only: "and", "the" (not "2nd", "Sea").
  EXPECT_TRUE(follows("count:lowercase_counting", "{'N': 2}", "Hello and the 2nd Sea"));
  EXPECT_FALSE(follows("count:lowercase_counting", "{'N': 1}", "Hello and the 2nd Sea"));
  EXPECT_TRUE(follows("keywords:word_once", "{'keyword': 'moon'}", "the Moon"));
  EXPECT_FALSE(follows("keywords:word_once", "{'keyword': 'moon'}", "moon, honeymoon"));
  EXPECT_TRUE(follows("count:count_increment_word", "{'keyword1': 'a b', 'keyword2': 'c'}", "A B c C"));
}

TEST(IfevalCheckers, Structure) {
  // *** paragraphs: empty edge parts are dropped, an empty inner part fails.
  EXPECT_TRUE(follows("length_constraints:number_paragraphs", "{'num_paragraphs': 2}", "***\nA\n***\nB\n***"));
  EXPECT_FALSE(follows("length_constraints:number_paragraphs", "{'num_paragraphs': 2}", "A\n***\n***\nB"));
  EXPECT_TRUE(follows("paragraphs:paragraphs2", "{}", "A\n\nB\n\n"));
  EXPECT_FALSE(follows("paragraphs:paragraphs2", "{}", "A\n\n\n\nB"));
  // nth paragraph: leading quotes dropped, the word cut at the first . , ? ! ' ".
  EXPECT_TRUE(follows("length_constraints:nth_paragraph_first_word",
                      "{'num_paragraphs': 2, 'nth_paragraph': 2, 'first_word': 'Summer'}",
                      "Intro.\n\n\"summer's here"));
  // Bullets: "* x" and "- x" lines; "**bold**" is not a bullet.
  EXPECT_TRUE(follows("detectable_format:number_bullet_lists", "{'num_bullets': 2}", "* a\n**b**\n  - c"));
  // Highlights: *x* and **x** count, blank insides do not; "**two**" counts once.
  EXPECT_TRUE(follows("detectable_format:number_highlighted_sections", "{'num_highlights': 2}", "*one* **two** * *"));
  EXPECT_FALSE(follows("detectable_format:number_highlighted_sections", "{'num_highlights': 3}", "*one* **two** * *"));
  // Sections: \s?SECTION\s?\d+\s? matches, case-sensitive.
  EXPECT_TRUE(follows("detectable_format:multiple_sections", "{'section_spliter': ' SECTION ', 'num_sections': 2}",
                      "SECTION 1 a SECTION2 b"));
  EXPECT_FALSE(follows("detectable_format:multiple_sections", "{'section_spliter': 'SECTION', 'num_sections': 1}",
                       "Section 1 a"));
  EXPECT_TRUE(follows("detectable_format:title", "{}", "<<Title>>"));
  EXPECT_FALSE(follows("detectable_format:title", "{}", "<<<>>>"));  // nothing left after stripping
  EXPECT_FALSE(follows("detectable_format:title", "{}", "<<a\nb>>"));
  EXPECT_TRUE(follows("combination:two_responses", "{}", "A\n******\nB\n******\n"));
  EXPECT_FALSE(follows("combination:two_responses", "{}", " A \n******\nA"));
  EXPECT_TRUE(follows("detectable_content:postscript", "{'postscript_marker': 'P.P.S'}", "x\np. p.s later"));
  EXPECT_FALSE(follows("detectable_content:postscript", "{'postscript_marker': 'P.S.'}", "x\nPS later"));
  EXPECT_TRUE(follows("startend:end_checker", "{'end_phrase': ' Bye now '}", "ok \"BYE NOW\" "));
  EXPECT_TRUE(follows("startend:quotation", "{}", " \"x\" "));
  EXPECT_FALSE(follows("startend:quotation", "{}", "\""));
  EXPECT_TRUE(follows("detectable_format:bigram_wrapping", "{}", "<<a b>> <<c d>> e"));  // odd tail ignored
  EXPECT_FALSE(follows("detectable_format:bigram_wrapping", "{}", "<<a b>> c d"));
  EXPECT_TRUE(follows("detectable_format:square_brackets", "{}", "[a] [b]"));
  EXPECT_TRUE(follows("keywords:palindrome", "{}", "we saw I"));  // a one-letter word is a palindrome
  EXPECT_FALSE(follows("keywords:no_adjacent_consecutive", "{}", "Apple banana"));  // a then b
  EXPECT_TRUE(follows("keywords:no_adjacent_consecutive", "{}", "banana apple"));
  EXPECT_TRUE(follows("keywords:exclude_word_harder", "{'keyword': 'cat'}", "cat sat"));  // no spaces around
  EXPECT_FALSE(follows("keywords:exclude_word_harder", "{'keyword': 'cat'}", "a cat sat"));
}

TEST(IfevalCheckers, CopyAndJson) {
  EXPECT_TRUE(follows("combination:repeat_prompt", "{'prompt_to_repeat': 'Say hi.'}", " SAY HI. hi"));
  EXPECT_TRUE(follows("copy:copy", "{'prompt_to_repeat': ' Say hi. '}", "say hi."));
  // prompt[n_start:n_end] with Python slicing (negative bounds count from the end).
  EXPECT_TRUE(follows("new:copy_span_idx", "{'prompt_to_repeat': 'Hello world', 'n_start': 6, 'n_end': 11}",
                      "WORLD"));
  EXPECT_TRUE(follows("new:copy_span_idx", "{'prompt_to_repeat': 'Hello world', 'n_start': -5, 'n_end': 99}",
                      "world"));
  EXPECT_TRUE(follows("copy:copying_multiple", "{'prompt_to_repeat': 'Hi', 'N': 2}", "hi ****** HI"));
  EXPECT_FALSE(follows("copy:copying_multiple", "{'prompt_to_repeat': 'Hi', 'N': 3}", "hi ****** HI"));
  // Exactly small_n phrases, each differing from the reference in exactly one word.
  const std::string_view rp = "{'phrase': 'The early bird catches the worm', 'small_n': 2}";
  EXPECT_TRUE(follows("copy:repeat_phrase", rp, "The early cat catches the worm. The early dog catches the worm"));
  EXPECT_FALSE(follows("copy:repeat_phrase", rp, "The early bird catches the worm. The early dog catches the worm"));
  // json.loads: NaN accepted, trailing commas / single quotes / leading zeros rejected.
  EXPECT_TRUE(follows("detectable_format:json_format", "{}", "```json\n{\"a\": [1, -2.5e3, NaN, null]}\n```"));
  EXPECT_TRUE(follows("detectable_format:json_format", "{}", " \"just a string\" "));
  EXPECT_FALSE(follows("detectable_format:json_format", "{}", "{\"a\": 1,}"));
  EXPECT_FALSE(follows("detectable_format:json_format", "{}", "{'a': 1}"));
  EXPECT_FALSE(follows("detectable_format:json_format", "{}", "[01]"));
  EXPECT_FALSE(follows("detectable_format:json_format", "{}", "{\"a\": \"tab\there\"}"));  // raw control char
  EXPECT_FALSE(ie::is_valid_json("\xef\xbb\xbf{}"));  // BOM
  EXPECT_TRUE(ie::is_valid_json("{\"k\": \"\\ud83d\\ude00\", \"n\": 123456789012345678901234567890}"));
}

TEST(IfevalLiteral, PythonGrammar) {
  const ie::literal v = ie::parse_python_literal(
      "[{'a': \"it's\", 'b': None, 'c': [1, -2, 3.5, True], 'd': 'x\\ny\\x41\\u00e9', 'e': ('t',)}]");
  ASSERT_EQ(v.type, ie::literal::kind::list);
  const ie::literal& d = v.items[0];
  EXPECT_EQ(d.find("a")->s, "it's");
  EXPECT_TRUE(d.find("b")->is_none());
  EXPECT_EQ(d.find("c")->items[1].i, -2);
  EXPECT_EQ(d.find("c")->items[2].d, 3.5);
  EXPECT_TRUE(d.find("c")->items[3].b);
  EXPECT_EQ(d.find("d")->s, "x\nyA\xc3\xa9");
  EXPECT_EQ(d.find("e")->items.size(), 1u);
  EXPECT_THROW(ie::parse_python_literal("[1, 2"), pt::error);
  EXPECT_THROW(ie::parse_python_literal("{'a': 1} x"), pt::error);
  EXPECT_THROW(ie::parse_python_literal("[null]"), pt::error);  // JSON words are not Python
  EXPECT_THROW(ie::parse_json("[None]"), pt::error);
}

TEST(IfevalText, SplitIntoSentences) {
  // The regex splitter: Mr. / digits / acronyms protected; quotes moved before the stop.
  EXPECT_EQ(ie::split_into_sentences("Mr. Smith paid 3.50 dollars. He left!"),
            (strings{"Mr. Smith paid 3.50 dollars.", "He left!"}));
  EXPECT_EQ(ie::split_into_sentences("She said \"hi.\" Then"), (strings{"She said \"hi\".", "Then"}));
  EXPECT_EQ(ie::split_into_sentences("Wait... ok"), (strings{"Wait...", "ok"}));
  EXPECT_EQ(ie::split_into_sentences("The U.S. He"), (strings{"The U.S.", "He"}));
  EXPECT_EQ(ie::split_into_sentences(""), strings{});
  EXPECT_EQ(ie::split_into_sentences("no stop"), strings{"no stop"});
}

TEST(IfevalText, PunktSentences) {
  // Abbreviation list: "Mr." and "p.m." do not end sentences ...
  EXPECT_EQ(ie::punkt_sentences("I met Mr. Smith at 5 p.m. on Monday. Bye."),
            (strings{"I met Mr. Smith at 5 p.m. on Monday.", "Bye."}));
  // ... unless the next word is a frequent sentence starter.
  EXPECT_EQ(ie::punkt_sentences("It was 5 p.m. The end."), (strings{"It was 5 p.m.", "The end."}));
  // A number followed by a lower-case word is not a break; ?! always are (after whitespace).
  EXPECT_EQ(ie::punkt_sentences("In 1990. the war ended?Yes! ok"),
            (strings{"In 1990. the war ended?Yes!", "ok"}));
  // Closing quotes and brackets after the stop stay with the sentence.
  EXPECT_EQ(ie::punkt_sentences("He said \"stop.\" Then (it ended.) Fine"),
            (strings{"He said \"stop.\"", "Then (it ended.)", "Fine"}));
  EXPECT_EQ(ie::count_sentences("  "), 0u);
  EXPECT_EQ(ie::count_sentences("one"), 1u);
}

TEST(IfevalText, WordTokenize) {
  EXPECT_EQ(ie::word_tokenize("I can't go. They'll cannot."),
            (strings{"I", "ca", "n't", "go", ".", "They", "'ll", "can", "not", "."}));
  EXPECT_EQ(ie::word_tokenize("\"Hi,\" she said (quietly) -- ok..."),
            (strings{"``", "Hi", ",", "''", "she", "said", "(", "quietly", ")", "--", "ok", "..."}));
  EXPECT_EQ(ie::word_tokenize("Price: $5, 20% #1"), (strings{"Price", ":", "$", "5", ",", "20", "%", "#", "1"}));
  EXPECT_EQ(ie::word_tokenize("Tom's dogs' toys"), (strings{"Tom", "'s", "dogs", "'", "toys"}));
  // capital words by word_tokenize + isupper: THE, SEA, NASA (not "A1b").
  EXPECT_TRUE(follows("change_case:capital_word_frequency",
                      "{'capital_frequency': 3, 'capital_relation': 'at least'}", "THE SEA and NASA, A1b."));
  EXPECT_TRUE(follows("keywords:start_end", "{}", "Hello there, hello"));
  EXPECT_FALSE(follows("keywords:start_end", "{}", "Hello there, hello."));  // last token is "."
  EXPECT_FALSE(follows("count:count_unique", "{}", "the cat and the dog"));
  // The 2nd sentence's 2nd token.
  EXPECT_TRUE(follows("keywords:keyword_specific_position", "{'keyword': 'wind', 'n': 2, 'm': 2}",
                      "I love it. The wind blows."));
}

// Class 9 of issue 14: \w is Python 3's (str.isalnum() or '_', Unicode 14 tables): combining marks
// end a word, circled digits and superscripts are word characters. Expected counts are
// len(re.findall(r"\w+", s)) under Python 3.11.
TEST(IfevalText, WordCharactersArePythons) {
  const std::pair<const char*, std::size_t> cases[] = {
      {"caf\xc3\xa9 au lait", 3},                                       // precomposed é
      {"cafe\xcc\x81 au lait", 3},                                      // e + U+0301
      {"nai\xcc\x88ve", 2},                                             // i + U+0308 splits
      {"\xe0\xa4\xb9\xe0\xa4\xbf\xe0\xa4\xa8\xe0\xa5\x8d\xe0\xa4\xa6\xe0\xa5\x80 "
       "\xe0\xa4\xad\xe0\xa4\xbe\xe0\xa4\xb7\xe0\xa4\xbe", 5},          // Hindi: vowel signs split
      {"\xe2\x91\xa0 \xe2\x91\xa1 three", 3},                           // circled digits
      {"x\xc2\xb2+y\xc2\xb2", 2},                                       // superscript two
      {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88", 2},
      {"a\xe2\x80\x94" "b", 2},                                          // em dash
      {"\xe2\x85\xab chapter", 2},                                      // Roman numeral twelve (Nl)
  };
  for (const auto& [text, words] : cases) EXPECT_EQ(ie::count_words(text), words) << text;
  // The table: letters and numbers yes, marks, symbols and punctuation no.
  EXPECT_TRUE(pt::reward::unicode::is_alnum_non_ascii(U'\u00e9'));
  EXPECT_TRUE(pt::reward::unicode::is_alnum_non_ascii(U'\u2460'));   // ①
  EXPECT_TRUE(pt::reward::unicode::is_alnum_non_ascii(U'\U00020000'));  // CJK Ext. B
  EXPECT_FALSE(pt::reward::unicode::is_alnum_non_ascii(U'\u0301'));  // combining acute
  EXPECT_FALSE(pt::reward::unicode::is_alnum_non_ascii(U'\u093f'));  // Devanagari vowel sign I
  EXPECT_FALSE(pt::reward::unicode::is_alnum_non_ascii(U'\u00d7'));  // ×
  EXPECT_FALSE(pt::reward::unicode::is_alnum_non_ascii(U'\U0001f600'));  // emoji
}
