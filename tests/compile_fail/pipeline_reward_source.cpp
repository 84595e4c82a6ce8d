// expect: a reward source needs `score\(const pipeline::reward_query&, std::span<double> rewards\)`
// A reward source that returns its rewards instead of writing them is rejected.
#include <posttrain/pipeline/reward_source.hpp>
#include <span>
#include <vector>

namespace pp = posttrain::pipeline;

struct my_reward {
#ifdef POSTTRAIN_COMPILE_FAIL
  std::vector<double> score(const pp::reward_query&) { return {}; }
#else
  void score(const pp::reward_query&, std::span<double>) {}
#endif
};

static_assert(pp::check_reward_source<my_reward>());
int main() {}
