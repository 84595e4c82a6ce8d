#pragma once
// IFEval-style instruction following (verifier "ifeval", reward/ifeval.hpp, docs/reward/ifeval.md):
// "write one sentence about X" plus a verifiable constraint; the ground truth is open-instruct's
// label, a Python literal list with one {"instruction_id": [...], "kwargs": [...]} dict, using the
// IFEvalG instruction ids and argument names:
//
//   change_case:english_capital          {}                                  "THE SUN IS HOT."
//   change_case:english_lowercase        {}                                  "the sun is hot."
//   punctuation:no_comma                 {}
//   startend:end_checker                 {"end_phrase": "Any other questions?"}
//   detectable_format:json_format        {}                                  {"answer": "the sun is hot."}
//   detectable_format:title              {}                                  <<Sun>>\nthe sun is hot.
//   startend:quotation                   {}                                  "the sun is hot."
//   length_constraints:number_words      {"num_words": N, "relation": "less than"}
//
// Half of the prompts add punctuation:no_comma as a second instruction (the verifier scores the
// fraction followed). The reference response follows every instruction; `wrong` breaks the first.
// english_capital / english_lowercase also ask langdetect for "en": `make_ifeval_verifier()`
// answers "en" for ASCII text (undetectable otherwise, which IFEval counts as followed).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>
#include <posttrain/pipeline/generator.hpp>
#include <posttrain/reward/ifeval.hpp>

#include "common.hpp"

namespace reference_trainer::tasks {

inline posttrain::reward::ifeval_verifier make_ifeval_verifier() {
  posttrain::reward::ifeval_verifier v;
  v.detect_language = [](std::string_view text) -> std::optional<std::string> {
    for (unsigned char ch : text)
      if (ch >= 0x80) return std::nullopt;
    return std::string("en");
  };
  return v;
}

// The same, default-constructible (pipeline's reward::verifiers<...> value-initialises its list).
struct ifeval_en_verifier : posttrain::reward::ifeval_verifier {
  ifeval_en_verifier() : posttrain::reward::ifeval_verifier(make_ifeval_verifier()) {}
};

class ifeval_generator {
 public:
  explicit ifeval_generator(std::uint64_t seed) : rng_(seed) {}

  problem next() {
    static const char* topics[][2] = {
        {"sun", "hot"},    {"moon", "pale"},  {"sea", "deep"},   {"snow", "cold"},
        {"cat", "soft"},   {"dog", "loyal"},  {"rain", "wet"},   {"tree", "tall"},
        {"road", "long"},  {"bread", "warm"}, {"lamp", "bright"}, {"rock", "hard"},
        {"bird", "small"}, {"fire", "red"},   {"milk", "white"}, {"wind", "strong"}};
    static const char* phrases[] = {"Any other questions?", "That is all.", "Hope this helps."};
    const auto& t = topics[pick(16)];
    const std::string topic = t[0];
    const std::string base = "the " + topic + " is " + t[1] + ".";
    problem p;
    p.verifier = "ifeval";
    p.question = "Write one short sentence about the " + topic + ".";
    nlohmann::json ids = nlohmann::json::array(), kwargs = nlohmann::json::array();
    const int kind = static_cast<int>(pick(8));
    switch (kind) {
      case 0:
        ids.push_back("change_case:english_capital");
        kwargs.push_back(nlohmann::json::object());
        p.question += " Your entire response should be in English, and in all capital letters.";
        p.solution = upper(base);
        p.wrong = base;
        break;
      case 1:
        ids.push_back("change_case:english_lowercase");
        kwargs.push_back(nlohmann::json::object());
        p.question += " Your entire response should be in English, and in all lowercase letters.";
        p.solution = base;
        p.wrong = upper(base);
        break;
      case 2:
        ids.push_back("punctuation:no_comma");
        kwargs.push_back(nlohmann::json::object());
        p.question += " Do not use any commas.";
        p.solution = base;
        p.wrong = "the " + topic + ", it is " + t[1] + ".";
        break;
      case 3: {
        const std::string phrase = phrases[pick(3)];
        ids.push_back("startend:end_checker");
        kwargs.push_back({{"end_phrase", phrase}});
        p.question += " Finish your response with this exact phrase: " + phrase;
        p.solution = base + " " + phrase;
        p.wrong = base;
        break;
      }
      case 4:
        ids.push_back("detectable_format:json_format");
        kwargs.push_back(nlohmann::json::object());
        p.question += " Wrap your entire output in JSON format.";
        p.solution = nlohmann::json{{"answer", base}}.dump();
        p.wrong = base;
        break;
      case 5:
        ids.push_back("detectable_format:title");
        kwargs.push_back(nlohmann::json::object());
        p.question += " Give it a title wrapped in double angular brackets, such as <<title>>.";
        p.solution = "<<" + upper(topic.substr(0, 1)) + topic.substr(1) + ">>\n" + base;
        p.wrong = base;
        break;
      case 6:
        ids.push_back("startend:quotation");
        kwargs.push_back(nlohmann::json::object());
        p.question += " Wrap your entire response with double quotation marks.";
        p.solution = "\"" + base + "\"";
        p.wrong = base;
        break;
      default: {
        const long n = 5 + pick(3);  // the base has 4 words
        ids.push_back("length_constraints:number_words");
        kwargs.push_back({{"num_words", n}, {"relation", "less than"}});
        p.question += " Answer with less than " + std::to_string(n) + " words.";
        p.solution = base;
        p.wrong = base + " " + base;
        break;
      }
    }
    if (pick(2) == 1 && kind != 2) {
      ids.push_back("punctuation:no_comma");
      kwargs.push_back(nlohmann::json::object());
      p.question += " Do not use any commas.";
    }
    // JSON objects, strings and integers are also Python literals (no true / false / null here).
    p.answer = "[" + nlohmann::json{{"instruction_id", ids}, {"kwargs", kwargs}}.dump() + "]";
    return p;
  }

 private:
  static std::string upper(std::string s) {
    for (char& c : s)
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    return s;
  }
  long pick(std::uint64_t n) { return static_cast<long>(rng_.next() % n); }
  posttrain::pipeline::generate::sample_rng rng_;
};

}  // namespace reference_trainer::tasks
