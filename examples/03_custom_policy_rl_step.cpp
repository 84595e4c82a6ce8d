// 03: plug your own model into pipeline::rl_step (GRPO). The "model" is a bigram table whose
// logits for token t are row W[t]; its backward adds d_logits into the rows it read. The task: after
// prompt token p, answer (p + 2) mod V. Ten GRPO steps must raise the expected reward.
#include <cmath>
#include <cstdio>
#include <span>
#include <vector>

#include <posttrain/algo.hpp>
#include <posttrain/pipeline.hpp>

namespace pt = posttrain;
namespace pp = posttrain::pipeline;

constexpr pt::index_t V = 8;

// Everything the Policy concept asks for: forward (logits [N, V]), backward (adds gradients), and
// flat parameter / gradient views.
struct my_policy {
  using scalar_type = float;
  std::vector<float> w = std::vector<float>(V * V, 0.0f), g = std::vector<float>(V * V, 0.0f);
  std::vector<float> logits;
  std::vector<pt::index_t> seen;

  pt::index_t vocab_size() const { return V; }
  pt::matrix_view<const float> forward(const pp::token_sequences& s) {
    seen.assign(s.tokens.begin(), s.tokens.end());
    logits.resize(seen.size() * V);
    for (std::size_t t = 0; t < seen.size(); ++t)
      for (pt::index_t j = 0; j < V; ++j) logits[t * V + j] = w[seen[t] * V + j];
    return {logits.data(), static_cast<pt::index_t>(seen.size()), V};
  }
  void backward(pt::matrix_view<const float> d) {
    for (std::size_t t = 0; t < seen.size(); ++t)
      for (pt::index_t j = 0; j < V; ++j) g[seen[t] * V + j] += d(t, j);
  }
  std::span<float> parameters() { return w; }
  std::span<float> gradients() { return g; }
  void zero_grad() { std::fill(g.begin(), g.end(), 0.0f); }
};
static_assert(pp::check_policy<my_policy>());

double expected_reward(const my_policy& p, std::span<const pt::index_t> prompts) {
  double r = 0;
  for (pt::index_t q : prompts) {
    double z = 0;
    for (pt::index_t j = 0; j < V; ++j) z += std::exp(p.w[q * V + j]);
    r += std::exp(p.w[q * V + (q + 2) % V]) / z;
  }
  return r / static_cast<double>(prompts.size());
}

int main() {
  my_policy policy;
  pp::reference::frozen<my_policy> reference(policy);      // KL anchor: the starting policy
  pp::generate::from_policy<my_policy> generator(policy);  // samples from the policy itself
  pp::reward::callable reward{[](std::span<const pt::index_t> prompt,
                                 std::span<const pt::index_t> completion, const pp::example_info&) {
    return completion[0] == (prompt[0] + 2) % V ? 1.0 : 0.0;
  }};
  pt::optim::adamw optimizer({.lr = 0.1, .weight_decay = 0.0});

  const std::vector<pt::index_t> prompts{0, 1, 2, 3, 4, 5}, offsets{0, 1, 2, 3, 4, 5, 6};
  pp::rl_step_options<pt::algo::grpo, pt::estimator::grpo> options;
  options.samples_per_prompt = 8;       // G
  options.sampling.max_new_tokens = 1;  // one-token answers
  options.loss.policy.kl_coef = 0.01;   // β of the k3 KL in the loss
  options.epochs = 2;
  options.mini_batch = 24;

  const double before = expected_reward(policy, prompts);
  for (int step = 0; step < 10; ++step) {
    options.seed = static_cast<std::uint64_t>(step);
    const auto m = pp::rl_step<pt::algo::grpo, pt::estimator::grpo>(
        policy, generator, reference, reward, optimizer, pp::rl_batch{{prompts, offsets}, {}}, options);
    std::printf("step %d  reward %.3f  loss %+.4f  kl %.4f  updates %lld\n", step, m.reward_mean,
                m.loss, m.kl_loss, static_cast<long long>(m.updates));
  }
  const double after = expected_reward(policy, prompts);
  std::printf("expected reward %.3f -> %.3f\n", before, after);
  return after > before + 0.3 ? 0 : 1;
}
