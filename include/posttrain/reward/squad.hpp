#pragma once
// SQuAD-normalised matchers (open-instruct ground_truth_utils.py normalize_answer, f1_score,
// FlanVerifier "flan", StringMatcherVerifier "string_matcher", F1Verifier "string_f1").
//
//   normalize_answer(s) = white_space_fix(remove_articles(remove_punc(s.lower())))
//     remove_punc:      drop every character of string.punctuation
//     remove_articles:  re.sub(r"\b(a|an|the)\b", " ", ·): whole words a / an / the -> " "
//     white_space_fix:  " ".join(·.split())
//   flan:            answer = prediction.split("The answer is: ")[-1].strip();
//                    1 iff normalize_answer(answer) == normalize_answer(label)
//   string_matcher:  0 unless both "<answer>" and "</answer>" occur; answer = the text after the
//                    last "<answer>" up to the next "</answer>"; normalised equality
//   string_f1:       prediction = remove_thinking_section(prediction); tokens = normalised
//                    split(); common = multiset intersection; 0 when empty, else
//                    F1 = 2PR/(P+R) with P = common/|pred|, R = common/|label|; max over labels
//   remove_thinking_section: drop "<|assistant|>", strip, keep the text after the last
//                    "</think>", drop "<answer>" / "</answer>", strip.
//
// ASCII lower-casing and whitespace (see text.hpp). An empty label list is rejected (Python's
// max() of an empty sequence raises).
#include <algorithm>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/reward/text.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace reward {

inline std::string squad_normalize(std::string_view s) {
  std::string no_punct;
  for (char c : text::lower(s))
    if (!text::is_punctuation(c)) no_punct.push_back(c);
  // \b(a|an|the)\b: a maximal run of word bytes equal to an article becomes one space.
  std::string no_articles;
  std::size_t i = 0;
  while (i < no_punct.size()) {
    if (!text::is_word(no_punct[i])) {
      no_articles.push_back(no_punct[i++]);
      continue;
    }
    std::size_t j = i;
    while (j < no_punct.size() && text::is_word(no_punct[j])) ++j;
    const std::string_view word = std::string_view(no_punct).substr(i, j - i);
    if (word == "a" || word == "an" || word == "the")
      no_articles.push_back(' ');
    else
      no_articles.append(word);
    i = j;
  }
  std::string out;
  for (const auto& w : text::split_whitespace(no_articles)) {
    if (!out.empty()) out.push_back(' ');
    out += w;
  }
  return out;
}

inline std::string remove_thinking_section(std::string_view prediction) {
  const std::string p = text::replace_all(prediction, "<|assistant|>", "");
  std::string s(text::after_last(text::strip(p), "</think>"));
  s = text::replace_all(s, "<answer>", "");
  s = text::replace_all(s, "</answer>", "");
  return std::string(text::strip(s));
}

// f1_score(prediction, ground_truth)["f1"].
inline double squad_f1(std::string_view prediction, std::string_view label) {
  const auto p = text::split_whitespace(squad_normalize(prediction));
  const auto g = text::split_whitespace(squad_normalize(label));
  std::map<std::string, long> counts;
  for (const auto& t : g) ++counts[t];
  long same = 0;
  for (const auto& t : p) {
    auto it = counts.find(t);
    if (it != counts.end() && it->second > 0) {
      --it->second;
      ++same;
    }
  }
  if (same == 0) return 0.0;
  const double precision = static_cast<double>(same) / static_cast<double>(p.size());
  const double recall = static_cast<double>(same) / static_cast<double>(g.size());
  return 2.0 * precision * recall / (precision + recall);
}

struct flan_verifier {
  static std::string name() { return "flan"; }
  double weight = 1.0;
  double score(std::string_view prediction, std::string_view label) const {
    const std::string_view answer = text::strip(text::after_last(prediction, "The answer is: "));
    return squad_normalize(answer) == squad_normalize(label) ? 1.0 : 0.0;
  }
};

struct string_matcher_verifier {
  static std::string name() { return "string_matcher"; }
  double weight = 1.0;
  double score(std::string_view prediction, std::string_view label) const {
    if (!text::contains(prediction, "<answer>") || !text::contains(prediction, "</answer>"))
      return 0.0;
    std::string_view answer = text::after_last(prediction, "<answer>");
    answer = answer.substr(0, answer.find("</answer>"));
    return squad_normalize(answer) == squad_normalize(label) ? 1.0 : 0.0;
  }
};

struct f1_verifier {
  static std::string name() { return "string_f1"; }
  double weight = 1.0;
  double score(std::string_view prediction, std::string_view label) const {
    return squad_f1(remove_thinking_section(prediction), label);
  }
  // The label may be a list: the maximum F1 over its entries.
  double score(std::string_view prediction, std::span<const std::string> labels) const {
    expect(!labels.empty(), "reward::f1_verifier", "labels is empty (need at least one label)");
    const std::string p = remove_thinking_section(prediction);
    double best = 0.0;
    for (const auto& l : labels) best = std::max(best, squad_f1(p, l));
    return best;
  }
};

}  // namespace reward

POSTTRAIN_NAMESPACE_END
