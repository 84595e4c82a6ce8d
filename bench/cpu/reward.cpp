// Verifier throughput on 1 MiB of degenerate output (the contract of docs/reward/verifiers.md:
// time linear in the prediction). One benchmark per (verifier, repeated piece); bytes_per_second
// gives the time per MiB. The slowest pair is the number the contract documents:
//   posttrain_bench_cpu --benchmark_filter='^reward/'
#include <benchmark/benchmark.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "../../tests/reward/ifeval_labels.h"
#include "posttrain/reward.hpp"

namespace {

namespace rw = posttrain::reward;

std::string repeat(std::string_view piece, std::size_t bytes) {
  std::string s;
  s.reserve(bytes + piece.size());
  while (s.size() < bytes) s += piece;
  return s;
}

const std::vector<std::pair<std::string, std::string>>& pieces() {
  static const std::vector<std::pair<std::string, std::string>> p = {
      {"think_answer", "</think><answer>"}, {"final_answer", "Final Answer: The final answer is "},
      {"lbracket", "["}, {"ltitle", "<<"}, {"bar", "|"}, {"lparen", "("}, {"lbrace", "{"},
      {"boxed", "\\boxed{"}, {"boxed_space", "\\boxed "}, {"frac", "\\frac"}, {"sqrt", "\\sqrt"},
      {"dollar", "$"}, {"plus1", "1+"}, {"minus", "-"}, {"x", "x"}, {"star", "*"}, {"ps", "P.S. "},
      {"newline", "\n"}, {"space", " "}, {"words", "sea wind "}, {"devanagari", "\xe0\xa4\x95\xe0\xa4\xbe"},
      {"quote", "\""}, {"json", "{\"a\": ["}, {"alpha", "alpha "}, {"sentence", "Hi. "},
      {"sections", "Section 1 "}, {"text_cmd", "\\text{"}, {"invalid_utf8", "\xff"}};
  return p;
}

struct text_verifier {
  std::string name;
  std::function<double(std::string_view)> score;
};

std::vector<text_verifier> verifiers() {
  std::vector<text_verifier> v = {
      {"gsm8k", [](std::string_view p) { return rw::gsm8k_verifier{}.score(p, "18"); }},
      {"math", [](std::string_view p) { return rw::math_verifier{}.score(p, "\\frac{1}{2}"); }},
      {"strict_math", [](std::string_view p) { return rw::strict_math_verifier{}.score(p, "\\frac{1}{2}"); }},
      {"flan", [](std::string_view p) { return rw::flan_verifier{}.score(p, "calm"); }},
      {"string_matcher", [](std::string_view p) { return rw::string_matcher_verifier{}.score(p, "calm"); }},
      {"string_f1", [](std::string_view p) { return rw::f1_verifier{}.score(p, "the sea is calm"); }},
      {"r1_format", [](std::string_view p) { return rw::r1_format_reward(p); }},
      {"ifeval_all", [](std::string_view p) {
         rw::ifeval_verifier v;
         v.detect_language = [](std::string_view) { return std::optional<std::string>("en"); };
         return v.score(p, ifeval_labels::all_instructions);
       }}};
  return v;
}

const bool registered = [] {
  for (const auto& v : verifiers())
    for (const auto& [piece_name, piece] : pieces()) {
      benchmark::RegisterBenchmark(("reward/" + v.name + "/" + piece_name).c_str(),
                                   [v, piece = piece](benchmark::State& state) {
                                     const std::string input = repeat(piece, 1 << 20);
                                     for (auto _ : state) benchmark::DoNotOptimize(v.score(input));
                                     state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) *
                                                             static_cast<std::int64_t>(input.size()));
                                   })
          ->Unit(benchmark::kMillisecond)
          ->MinTime(0.05);
    }
  return true;
}();

}  // namespace
