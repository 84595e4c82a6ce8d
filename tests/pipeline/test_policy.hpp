#pragma once
// Tiny differentiable policies for the pipeline tests (not a transformer):
//   bigram_policy<S>   logits path: logits[t, :] = W[tokens[t], :]       W [V, V]
//   hidden_bigram<S>   hidden path: hidden[t, :] = E[tokens[t], :], lm_head U [V, H]
// Both have an exact backward (the table rows the batch touched), flat parameter/gradient views,
// and are copyable (reference::frozen copies them).
#include <cmath>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include <posttrain/pipeline/policy.hpp>

namespace pt_test {

namespace pt = posttrain;
namespace pp = posttrain::pipeline;

template <class S>
struct bigram_policy {
  using scalar_type = S;
  pt::index_t v = 0;
  std::vector<S> w, g, logits;
  std::vector<pt::index_t> last_tokens;

  explicit bigram_policy(pt::index_t vocab, std::uint64_t seed = 1, double scale = 0.5)
      : v(vocab), w(static_cast<std::size_t>(vocab * vocab)), g(w.size(), S(0)) {
    std::uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (auto& e : w) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      e = static_cast<S>(scale * (static_cast<double>(x >> 11) * 0x1.0p-53 * 2 - 1));
    }
  }
  pt::index_t vocab_size() const { return v; }
  pt::matrix_view<const S> forward(const pp::token_sequences& s) {
    last_tokens.assign(s.tokens.begin(), s.tokens.end());
    logits.resize(s.tokens.size() * static_cast<std::size_t>(v));
    for (std::size_t t = 0; t < s.tokens.size(); ++t)
      for (pt::index_t j = 0; j < v; ++j) logits[t * v + j] = w[s.tokens[t] * v + j];
    return {logits.data(), static_cast<pt::index_t>(s.tokens.size()), v};
  }
  void backward(pt::matrix_view<const S> d) {
    for (std::size_t t = 0; t < last_tokens.size(); ++t)
      for (pt::index_t j = 0; j < v; ++j) g[last_tokens[t] * v + j] += d(t, j);
  }
  std::span<S> parameters() { return w; }
  std::span<S> gradients() { return g; }
  void zero_grad() { std::fill(g.begin(), g.end(), S(0)); }
};

template <class S>
struct hidden_bigram {
  using scalar_type = S;
  pt::index_t v = 0, h = 0;
  std::vector<S> params, grads, hidden;  // params = [E (V×H); U (V×H)]
  std::vector<pt::index_t> last_tokens;

  hidden_bigram(pt::index_t vocab, pt::index_t dim, std::uint64_t seed = 2)
      : v(vocab), h(dim), params(static_cast<std::size_t>(2 * vocab * dim)), grads(params.size()) {
    std::uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
    for (auto& e : params) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      e = static_cast<S>(static_cast<double>(x >> 11) * 0x1.0p-53 * 2 - 1);
    }
  }
  S* e() { return params.data(); }
  S* u() { return params.data() + v * h; }
  pt::index_t vocab_size() const { return v; }
  pp::policy_hidden<S> forward(const pp::token_sequences& s) {
    last_tokens.assign(s.tokens.begin(), s.tokens.end());
    hidden.resize(s.tokens.size() * static_cast<std::size_t>(h));
    for (std::size_t t = 0; t < s.tokens.size(); ++t)
      for (pt::index_t k = 0; k < h; ++k) hidden[t * h + k] = e()[s.tokens[t] * h + k];
    return {{hidden.data(), static_cast<pt::index_t>(s.tokens.size()), h}, {u(), v, h}};
  }
  void backward(pt::matrix_view<const S> dh, pt::matrix_view<const S> du) {
    for (std::size_t t = 0; t < last_tokens.size(); ++t)
      for (pt::index_t k = 0; k < h; ++k) grads[last_tokens[t] * h + k] += dh(t, k);
    for (pt::index_t i = 0; i < v * h; ++i) grads[v * h + i] += du.data[i];
  }
  std::span<S> parameters() { return params; }
  std::span<S> gradients() { return grads; }
  void zero_grad() { std::fill(grads.begin(), grads.end(), S(0)); }
};

// An optimizer that records the step's gradient and leaves the parameters alone.
struct capture_optimizer {
  std::vector<double> grads;
  int steps = 0;
  template <class S>
  void step(std::span<S>, std::span<const S> g) {
    grads.assign(g.begin(), g.end());
    ++steps;
  }
};

static_assert(pp::check_policy<bigram_policy<double>>());
static_assert(pp::check_policy<bigram_policy<float>>());
static_assert(pp::check_policy<hidden_bigram<double>>());

// A reward model for the tests: score = Σ_t w[tokens[t]] (a bag of token weights).
struct bag_scorer {
  using scalar_type = double;
  std::vector<double> w, g;
  std::vector<double> scores;
  std::vector<pt::index_t> toks, offs;
  explicit bag_scorer(std::vector<double> weights) : w(std::move(weights)), g(w.size(), 0.0) {}
  std::span<const double> forward(const pp::token_sequences& s) {
    toks.assign(s.tokens.begin(), s.tokens.end());
    offs.assign(s.seq_offsets.begin(), s.seq_offsets.end());
    scores.assign(static_cast<std::size_t>(s.num_sequences()), 0.0);
    for (pt::index_t b = 0; b < s.num_sequences(); ++b)
      for (auto t = offs[b]; t < offs[b + 1]; ++t) scores[b] += w[toks[t]];
    return scores;
  }
  void backward(std::span<const double> d) {
    for (std::size_t b = 0; b + 1 < offs.size(); ++b)
      for (auto t = offs[b]; t < offs[b + 1]; ++t) g[toks[t]] += d[b];
  }
  std::span<double> parameters() { return w; }
  std::span<double> gradients() { return g; }
  void zero_grad() { std::fill(g.begin(), g.end(), 0.0); }
};

// A table critic: v[t] = c[tokens[t − 1]] (the value of the state that emits tokens[t]).
struct table_critic {
  static constexpr bool enabled = true;
  using scalar_type = double;
  std::vector<double> c, g;
  std::vector<pt::index_t> toks, offs;
  explicit table_critic(std::vector<double> init) : c(std::move(init)), g(c.size(), 0.0) {}
  void values(const pp::token_sequences& s, std::span<double> v) {
    toks.assign(s.tokens.begin(), s.tokens.end());
    offs.assign(s.seq_offsets.begin(), s.seq_offsets.end());
    for (std::size_t b = 0; b + 1 < offs.size(); ++b) {
      if (offs[b] < offs[b + 1]) v[offs[b]] = 0;
      for (auto t = offs[b] + 1; t < offs[b + 1]; ++t) v[t] = c[toks[t - 1]];
    }
  }
  void backward(std::span<const double> d) {
    for (std::size_t b = 0; b + 1 < offs.size(); ++b)
      for (auto t = offs[b] + 1; t < offs[b + 1]; ++t) g[toks[t - 1]] += d[t];
  }
  std::span<double> parameters() { return c; }
  std::span<double> gradients() { return g; }
  void zero_grad() { std::fill(g.begin(), g.end(), 0.0); }
};

// log softmax(W[a])[y] of a bigram table in double (the independent reference).
template <class S>
double ref_logprob(const std::vector<S>& w, pt::index_t v, pt::index_t a, pt::index_t y) {
  double mx = -INFINITY;
  for (pt::index_t j = 0; j < v; ++j) mx = std::max(mx, static_cast<double>(w[a * v + j]));
  double z = 0;
  for (pt::index_t j = 0; j < v; ++j) z += std::exp(static_cast<double>(w[a * v + j]) - mx);
  return static_cast<double>(w[a * v + y]) - mx - std::log(z);
}

// Σ_t m_t·log p(tokens[t] | tokens[t−1]) of packed sequence b under a bigram table w [V, V] in
// double, and (grad non-null) its gradient dW scaled by `coef` added into *grad: the test's own
// bigram backward, d log p(y | a) / dW[a, j] = δ_{jy} − p_j.
template <class S>
double bigram_seq_logprob(const std::vector<S>& w, pt::index_t v, const std::vector<pt::index_t>& tok,
                          const std::vector<pt::index_t>& off, const std::vector<float>& mask,
                          std::size_t b, double coef = 0.0, std::vector<double>* grad = nullptr) {
  double s = 0;
  for (auto t = off[b] + 1; t < off[b + 1]; ++t) {
    if (mask[t] == 0) continue;
    const auto a = tok[t - 1], y = tok[t];
    s += mask[t] * ref_logprob(w, v, a, y);
    if (grad)
      for (pt::index_t j = 0; j < v; ++j)
        (*grad)[a * v + j] += coef * mask[t] * ((j == y) - std::exp(ref_logprob(w, v, a, j)));
  }
  return s;
}

}  // namespace pt_test
