// pipeline/reward_source.hpp models: precomputed (by id), callable, text (decoded), weighted sums,
// and verifiers dispatched by name with the reward/ gsm8k verifier; unknown ids / names throw
// before any reward is written.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <posttrain/pipeline/reward_source.hpp>
#include <posttrain/pipeline/tokenizer.hpp>
#include <posttrain/reward/gsm8k.hpp>

namespace pt = posttrain;
namespace pp = posttrain::pipeline;

namespace {
struct length_verifier {  // 1 when the completion is at most as long as the label says
  static std::string name() { return "short"; }
  double score(std::string_view prediction, std::string_view label) const {
    return prediction.size() <= std::stoul(std::string(label)) ? 1.0 : 0.0;
  }
};

struct fixture {
  pp::byte_tokenizer tok;
  std::vector<pt::index_t> p, po{0}, c, co{0};
  std::vector<pp::example_info> ex;
  void add(const std::string& prompt, const std::string& completion, pp::example_info e) {
    for (auto id : tok.encode(prompt)) p.push_back(id);
    po.push_back(static_cast<pt::index_t>(p.size()));
    for (auto id : tok.encode(completion)) c.push_back(id);
    co.push_back(static_cast<pt::index_t>(c.size()));
    ex.push_back(std::move(e));
  }
  pp::reward_query query() const { return {{p, po}, {c, co}, ex}; }
};
}  // namespace

TEST(RewardSource, VerifiersDispatchByName) {
  fixture f;
  f.add("2+2?", "so the answer is 4", {1, "4", "gsm8k"});
  f.add("2+3?", "it is 6", {2, "5", "gsm8k"});
  f.add("say hi", "hi", {3, "3", "short"});
  f.add("say hi", "hello there", {4, "3", "short"});
  pp::reward::verifiers<pp::byte_tokenizer, pt::reward::gsm8k_verifier, length_verifier> source{};
  std::get<0>(source.list).weight = 2.0;
  std::vector<double> out(4, -1);
  source.score(f.query(), out);
  EXPECT_EQ(out, (std::vector<double>{2.0, 0.0, 1.0, 0.0}));

  fixture g;
  g.add("q", "a", {5, "1", "math"});
  std::vector<double> one(1, -1);
  EXPECT_THROW(source.score(g.query(), one), pt::error);
  EXPECT_EQ(one[0], -1);
}

TEST(RewardSource, PrecomputedCallableTextWeighted) {
  fixture f;
  f.add("a", "xy", {10, "", ""});
  f.add("b", "z", {11, "", ""});
  pp::reward::precomputed pre;
  pre.set(10, 0.5);
  pre.set(11, -1.0);
  std::vector<double> out(2);
  pre.score(f.query(), out);
  EXPECT_EQ(out, (std::vector<double>{0.5, -1.0}));

  pp::reward::callable len{[](std::span<const pt::index_t>, std::span<const pt::index_t> c,
                              const pp::example_info&) { return static_cast<double>(c.size()); }};
  pp::reward::text starts_x{pp::byte_tokenizer{}, [](std::string_view, std::string_view c,
                                                    const pp::example_info&) { return c.starts_with("x") ? 1.0 : 0.0; }};
  pp::reward::weighted<decltype(len), decltype(starts_x)> sum{{len, starts_x}, {0.5, 3.0}};
  sum.score(f.query(), out);
  EXPECT_EQ(out, (std::vector<double>{0.5 * 2 + 3.0, 0.5 * 1}));

  pp::reward::gated gate{starts_x, len, 1.0, -1.0};  // length reward only for completions starting with x
  gate.score(f.query(), out);
  EXPECT_EQ(out, (std::vector<double>{2.0, -1.0}));

  fixture g;
  g.add("a", "b", {99, "", ""});
  std::vector<double> one(1, 7.0);
  EXPECT_THROW(pre.score(g.query(), one), pt::error);
  EXPECT_EQ(one[0], 7.0);
}
