#pragma once
// The Generator concept (rollout engine): prompts → completions with the sampler's own per-token
// log-probs (for TIS / rollout correction), stop reasons and truncation flags.
//
//   g.generate(const generation_request&, generation&)
//
// generation_request: prompts[B] (one per sample: a prompt with G samples appears G times),
// seeds[B] (one per sample, so that a sample does not depend on batch composition or rank count),
// sampling_options {temperature (0 = greedy), top_k (0 = off), top_p (1 = off), max_new_tokens,
// stop_tokens}. generation: completions[B] (packed), logprobs (one per completion token, the
// sampler's log-prob under its processed distribution, or empty), stop[B] (stop_token or length),
// truncated[B] (1 when max_new_tokens ended the sample). A completion includes its stop token.
// validate_generation checks a generator's output before the step uses it: B completions, none
// longer than max_new_tokens ("more tokens than asked"), token ids in [0, V), sizes.
//
// Model: generate::from_policy<P> samples autoregressively from a pipeline::policy (re-running the
// forward over each prefix: O(T²) work, meant for tests and toy tasks; a real engine brings its
// own sampler). Each sample draws from its own splitmix64/xoshiro stream seeded by seeds[b].
//
// static_assert(check_generator<G>()) (tests/compile_fail/pipeline_generator.cpp).
#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <numeric>
#include <span>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/pipeline/policy.hpp"
#include "posttrain/pipeline/types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pipeline {

struct sampling_options {
  double temperature = 1.0;  // 0 = greedy (argmax)
  index_t top_k = 0;         // keep the k most likely tokens; 0 = all
  double top_p = 1.0;        // keep the smallest set with mass >= top_p; 1 = all
  index_t max_new_tokens = 16;
  std::vector<index_t> stop_tokens;  // sampling one ends the completion (it is kept)
};

enum class stop_reason : std::uint8_t { stop_token, length };

struct generation_request {
  token_sequences prompts{};
  std::span<const std::uint64_t> seeds{};
  sampling_options sampling{};
};

struct generation {
  owned_sequences completions;
  std::vector<double> logprobs;  // one per completion token, or empty
  std::vector<stop_reason> stop;
  std::vector<std::uint8_t> truncated;
};

template <class G>
concept generator = requires(G& g, const generation_request& r, generation& out) {
  g.generate(r, out);
};

template <class G>
constexpr bool check_generator() {
  static_assert(generator<G>,
                "a generator needs `generate(const pipeline::generation_request&, "
                "pipeline::generation&)` filling completions, logprobs, stop reasons and "
                "truncation flags");
  return generator<G>;
}

inline void validate_request(const generation_request& r, std::string_view where) {
  r.prompts.validate(where, "request.prompts");
  expect_size(r.seeds, r.prompts.num_sequences(), where, "request.seeds", "one seed per sample");
  const auto& s = r.sampling;
  expect(s.max_new_tokens >= 1, where, "sampling.max_new_tokens = ", s.max_new_tokens,
         ", expected >= 1");
  expect(std::isfinite(s.temperature) && s.temperature >= 0, where, "sampling.temperature = ",
         s.temperature, ", expected finite and >= 0");
  expect(s.top_k >= 0, where, "sampling.top_k = ", s.top_k, ", expected >= 0 (0 = off)");
  expect(s.top_p > 0 && s.top_p <= 1, where, "sampling.top_p = ", s.top_p, ", expected in (0, 1]");
}

// A generator's output, checked against its request before anything uses it.
inline void validate_generation(const generation_request& r, const generation& g, index_t vocab,
                                std::string_view where) {
  const index_t b = r.prompts.num_sequences();
  const token_sequences c = g.completions.view();
  expect(c.num_sequences() == b, where, "the generator returned ", c.num_sequences(),
         " completions, expected ", b, " (one per prompt of the request)");
  c.validate(where, "generation.completions", vocab);
  for (index_t i = 0; i < b; ++i) {
    const index_t len = c.seq_offsets[i + 1] - c.seq_offsets[i];
    expect(len <= r.sampling.max_new_tokens, where, "the generator returned ", len,
           " tokens for sample ", i, ", more than the ", r.sampling.max_new_tokens,
           " asked (sampling.max_new_tokens)");
  }
  expect_size_or_empty(std::span<const double>(g.logprobs), c.num_tokens(), where,
                       "generation.logprobs", "one per completion token, or empty");
  for (std::size_t i = 0; i < g.logprobs.size(); ++i)
    expect(!std::isnan(g.logprobs[i]) && g.logprobs[i] <= 0, where, "generation.logprobs[", i,
           "] = ", g.logprobs[i], ", expected a log-probability (<= 0)");
  expect_size(std::span<const stop_reason>(g.stop), b, where, "generation.stop", "one per sample");
  expect_size(std::span<const std::uint8_t>(g.truncated), b, where, "generation.truncated",
              "one per sample");
}

namespace generate {

// xoshiro256** seeded through splitmix64: a small, fully specified stream (std:: distributions
// are implementation-defined, which would make samples differ between standard libraries).
class sample_rng {
 public:
  explicit sample_rng(std::uint64_t seed) {
    for (auto& s : s_) {
      seed += 0x9e3779b97f4a7c15ull;
      std::uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      s = z ^ (z >> 31);
    }
  }
  std::uint64_t next() {
    const std::uint64_t r = rotl(s_[1] * 5, 7) * 9, t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return r;
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
};

// Picks a token from raw logits z[V] under the sampling options; returns the token and its
// log-prob under the processed (tempered, top-k / top-p filtered) distribution (greedy: 0).
inline std::pair<index_t, double> sample_token(std::span<const double> z,
                                               const sampling_options& o, sample_rng& rng) {
  const index_t v = ssize(z);
  if (o.temperature == 0) {
    const index_t best = std::max_element(z.begin(), z.end()) - z.begin();
    return {best, 0.0};
  }
  std::vector<index_t> order(static_cast<std::size_t>(v));
  std::iota(order.begin(), order.end(), index_t(0));
  // Sorted by logit, ties by id: the kept set is the same on every platform.
  std::stable_sort(order.begin(), order.end(), [&](index_t a, index_t b) { return z[a] > z[b]; });
  index_t keep = o.top_k > 0 ? std::min(o.top_k, v) : v;
  const double zmax = z[order[0]] / o.temperature;
  std::vector<double> p(static_cast<std::size_t>(keep));
  double total = 0;
  for (index_t i = 0; i < keep; ++i) total += p[i] = std::exp(z[order[i]] / o.temperature - zmax);
  if (o.top_p < 1) {
    double mass = 0;
    index_t k = 0;
    while (k < keep) {
      mass += p[k] / total;
      ++k;
      if (mass >= o.top_p) break;
    }
    keep = k;
    total = 0;
    for (index_t i = 0; i < keep; ++i) total += p[i];
  }
  double u = rng.uniform() * total;
  index_t pick = keep - 1;
  for (index_t i = 0; i < keep; ++i) {
    if (u < p[i]) {
      pick = i;
      break;
    }
    u -= p[i];
  }
  return {order[pick], std::log(p[pick] / total)};
}

template <policy P>
class from_policy {
 public:
  explicit from_policy(P& p) : policy_(&p) {}

  void generate(const generation_request& r, generation& out) {
    constexpr const char* where = "generate::from_policy";
    validate_request(r, where);
    const index_t b = r.prompts.num_sequences(), v = policy_->vocab_size();
    r.prompts.validate(where, "request.prompts", v);
    std::vector<sample_rng> rngs;
    for (index_t i = 0; i < b; ++i) rngs.emplace_back(r.seeds[i]);
    std::vector<std::vector<index_t>> done(static_cast<std::size_t>(b));
    std::vector<std::vector<double>> lps(static_cast<std::size_t>(b));
    std::vector<std::uint8_t> active(static_cast<std::size_t>(b), 1);
    std::vector<stop_reason> stop(static_cast<std::size_t>(b), stop_reason::length);
    std::vector<double> z(static_cast<std::size_t>(v));
    for (index_t step = 0; step < r.sampling.max_new_tokens; ++step) {
      owned_sequences batch;
      std::vector<index_t> rows;  // sample of each sequence in the batch
      for (index_t i = 0; i < b; ++i) {
        if (!active[i]) continue;
        std::vector<index_t> seq(r.prompts.tokens.begin() + r.prompts.seq_offsets[i],
                                 r.prompts.tokens.begin() + r.prompts.seq_offsets[i + 1]);
        expect(!seq.empty(), where, "request.prompts sequence ", i,
               " is empty, expected at least one token to condition on");
        seq.insert(seq.end(), done[i].begin(), done[i].end());
        batch.append(seq);
        rows.push_back(i);
      }
      if (rows.empty()) break;
      const token_sequences view = batch.view();
      const auto fwd = policy_->forward(view);
      for (std::size_t k = 0; k < rows.size(); ++k) {
        const index_t i = rows[k], last = batch.seq_offsets[k + 1] - 1;
        if constexpr (policy_detail::logits_forward<P>) {
          for (index_t j = 0; j < v; ++j) z[j] = static_cast<double>(fwd(last, j));
        } else {
          for (index_t j = 0; j < v; ++j) {
            double acc = 0;
            for (index_t h = 0; h < fwd.hidden.cols; ++h)
              acc += static_cast<double>(fwd.hidden(last, h)) * static_cast<double>(fwd.lm_head(j, h));
            z[j] = acc;
          }
        }
        const auto [tok, lp] = sample_token(z, r.sampling, rngs[i]);
        done[i].push_back(tok);
        lps[i].push_back(lp);
        if (std::find(r.sampling.stop_tokens.begin(), r.sampling.stop_tokens.end(), tok) !=
            r.sampling.stop_tokens.end()) {
          active[i] = 0;
          stop[i] = stop_reason::stop_token;
        }
      }
    }
    generation g;
    for (index_t i = 0; i < b; ++i) {
      g.completions.append(done[i]);
      g.logprobs.insert(g.logprobs.end(), lps[i].begin(), lps[i].end());
      g.stop.push_back(stop[i]);
      g.truncated.push_back(stop[i] == stop_reason::length ? 1 : 0);
    }
    out = std::move(g);
  }

 private:
  P* policy_;
};

}  // namespace generate

}  // namespace pipeline

POSTTRAIN_NAMESPACE_END
