#pragma once
// Model configs and helpers shared by the model tests: the tiny 2-layer GQA config of the gradient
// and prefix-sharing tests, the 2-layer config of the generation / training tests, random
// parameters, and a packed batch of rows built prompt by prompt.
#include <cstdint>
#include <random>
#include <vector>

#include "config.hpp"
#include "transformer.hpp"

namespace reference_model::testing {

// 2 layers, 4 query heads over 2 KV heads (GQA), tied embeddings; the rest at their defaults.
inline model_config two_layers(architecture arch, index_t vocab, index_t hidden, index_t intermediate) {
  model_config c;
  c.arch = arch;
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = intermediate;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.tie_word_embeddings = true;
  return c;
}

// Small enough for finite differences over every parameter; a small θ so that the few positions
// turn the rotary pairs by visible angles.
inline model_config tiny(architecture arch, bool tied, bool bias) {
  model_config c = two_layers(arch, 13, 8, 12);
  c.rope_theta = 50.0;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = tied;
  c.attention_bias = bias;
  return c;
}

// Every parameter (norms and biases included) drawn from N(0, sd²), so no gradient hides behind a
// 0 or a 1.
template <class S>
void randomize(transformer<S>& m, std::uint64_t seed, double sd) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n(0.0, sd);
  for (S& p : m.parameters()) p = S(n(rng));
}

// Rows packed one after another: tokens and offsets as the model takes them.
struct packed_rows {
  std::vector<index_t> tokens, offsets{0};
  void add(const std::vector<index_t>& row) { add(row, {}); }
  void add(const std::vector<index_t>& prompt, const std::vector<index_t>& completion) {
    tokens.insert(tokens.end(), prompt.begin(), prompt.end());
    tokens.insert(tokens.end(), completion.begin(), completion.end());
    offsets.push_back(static_cast<index_t>(tokens.size()));
  }
};

}  // namespace reference_model::testing
