#pragma once
// Batched generation with a KV cache:
//   prefill   one packed forward over all prompts (transformer::forward), whose post-RoPE keys
//             and values become the cache; each prompt's last hidden state gives its first token;
//   decode    one token per step for every live sequence at once: [B_live, H] through the layers,
//             each query attending to its own sequence's cached keys (positions 0..p).
// A sequence stops at a stop token (kept, reason stop) or after max_new_tokens (reason length).
// Sample b draws from its own std::mt19937_64(seeds[b]), one uniform per step, so its completion
// does not depend on which other prompts share the batch (up to float rounding of the batched
// GEMMs).
#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "sampling.hpp"
#include "transformer.hpp"

namespace reference_model {

enum class stop_reason { stop_token, length };

struct completion {
  std::vector<index_t> tokens;
  std::vector<double> sampling_logprobs;  // see sampling.hpp
  std::vector<double> model_logprobs;
  stop_reason reason = stop_reason::length;
};

template <class S>
std::vector<completion> generate(const transformer<S>& model, std::span<const index_t> prompt_tokens,
                                 std::span<const index_t> prompt_offsets,
                                 std::span<const std::uint64_t> seeds,
                                 const sampling_options& options) {
  constexpr const char* where = "reference_model::generate";
  using posttrain::expect;
  const model_config& cfg = model.config();
  validate_batch(where, prompt_tokens, prompt_offsets, cfg.vocab_size);
  validate(options, cfg.vocab_size);
  const index_t b = static_cast<index_t>(prompt_offsets.size()) - 1;
  expect(static_cast<index_t>(seeds.size()) == b, where, "seeds has ", seeds.size(),
         " entries, expected one per prompt (", b, ")");
  for (index_t s = 0; s < b; ++s)
    expect(prompt_offsets[s + 1] > prompt_offsets[s], where, "prompt ", s,
           " is empty, expected at least one token");

  std::vector<completion> out(static_cast<std::size_t>(b));
  if (b == 0 || options.max_new_tokens == 0) return out;
  const model_view<S>& w = model.weights();
  const index_t hd = cfg.hidden_size, kvd = cfg.kv_dim(), d = cfg.dim_head();
  const index_t nh = cfg.num_attention_heads, group = nh / cfg.num_key_value_heads;
  const index_t layers = cfg.num_hidden_layers;

  // Cache rows of sequence s: [base_s, base_s + prompt_len_s + max_new_tokens).
  std::vector<index_t> base(static_cast<std::size_t>(b) + 1, 0), len(static_cast<std::size_t>(b));
  for (index_t s = 0; s < b; ++s) {
    len[s] = prompt_offsets[s + 1] - prompt_offsets[s];
    base[s + 1] = base[s] + len[s] + options.max_new_tokens;
  }
  std::vector<matrix<S>> kc(static_cast<std::size_t>(layers)), vc(static_cast<std::size_t>(layers));

  // Prefill.
  std::vector<std::mt19937_64> rng;
  for (index_t s = 0; s < b; ++s) rng.emplace_back(seeds[s]);
  std::vector<index_t> next(static_cast<std::size_t>(b));
  {
    activations<S> act;
    const matrix<S>& h = model.forward(prompt_tokens, prompt_offsets, act);
    for (index_t l = 0; l < layers; ++l) {
      kc[l].resize(base[b], kvd);
      vc[l].resize(base[b], kvd);
      // The forward's K/V rows are the deduplicated ones (prefix_sharing.hpp): row_of maps.
      const std::vector<index_t>& row_of = act.layout.row_of;
      for (index_t s = 0; s < b; ++s)
        for (index_t j = 0; j < len[s]; ++j) {
          const index_t r = row_of[static_cast<std::size_t>(prompt_offsets[s] + j)];
          kc[l].row(base[s] + j) = act.layers[l].attn.k.row(r);
          vc[l].row(base[s] + j) = act.layers[l].attn.v.row(r);
        }
    }
    matrix<S> last(b, hd);
    for (index_t s = 0; s < b; ++s) last.row(s) = h.row(prompt_offsets[s + 1] - 1);
    const matrix<S> logits = model.logits(last);
    for (index_t s = 0; s < b; ++s) {
      const sampled_token t = sample_token<S>(
          std::span<const S>(logits.row(s).data(), static_cast<std::size_t>(cfg.vocab_size)),
          options, rng[s]);
      completion& c = out[s];
      c.tokens.push_back(t.token);
      c.sampling_logprobs.push_back(t.sampling_logprob);
      c.model_logprobs.push_back(t.model_logprob);
      next[s] = t.token;
    }
  }
  auto finished = [&](index_t s) {
    const completion& c = out[s];
    for (index_t st : options.stop_tokens)
      if (c.tokens.back() == st) {
        out[s].reason = stop_reason::stop_token;
        return true;
      }
    return static_cast<index_t>(c.tokens.size()) >= options.max_new_tokens;
  };
  std::vector<index_t> live;
  for (index_t s = 0; s < b; ++s)
    if (!finished(s)) live.push_back(s);

  // Decode: every live sequence advances by one token per step.
  const S scale = S(1) / std::sqrt(S(d));
  matrix<S> x, xn, q, k, v, o, y, scores, logits;
  std::vector<index_t> still;
  vector<S> r;
  mlp_cache<S> mc;
  std::vector<index_t> pos;
  while (!live.empty()) {
    const index_t n = static_cast<index_t>(live.size());
    pos.resize(static_cast<std::size_t>(n));
    x.resize(n, hd);
    for (index_t i = 0; i < n; ++i) {
      const index_t s = live[i];
      x.row(i) = w.embed.row(next[s]);
      pos[i] = len[s] + static_cast<index_t>(out[s].tokens.size()) - 1;  // of the token fed now
    }
    for (index_t l = 0; l < layers; ++l) {
      const layer_view<S>& lw = w.layers[l];
      rmsnorm_forward<S>(x, lw.ln1, cfg.rms_norm_eps, xn, r);
      q.resize(n, nh * d);
      k.resize(n, kvd);
      v.resize(n, kvd);
      linear_forward<S>(xn, lw.wq, lw.bq, q);
      linear_forward<S>(xn, lw.wk, lw.bk, k);
      linear_forward<S>(xn, lw.wv, lw.bv, v);
      model.rope().apply(q, pos, nh, +1);
      model.rope().apply(k, pos, cfg.num_key_value_heads, +1);
      o.resize(n, nh * d);
      for (index_t i = 0; i < n; ++i) {
        const index_t s = live[i], row = base[s] + pos[i], t = pos[i] + 1;
        kc[l].row(row) = k.row(i);
        vc[l].row(row) = v.row(i);
        // The `group` query heads of KV head g are contiguous in q's row: one [group, D] block
        // against the cached keys / values (one pass over them per KV head, not per query head).
        for (index_t g = 0; g < cfg.num_key_value_heads; ++g) {
          const Eigen::Map<const matrix<S>> qg(q.row(i).data() + g * group * d, group, d);
          Eigen::Map<matrix<S>> og(o.row(i).data() + g * group * d, group, d);
          scores.noalias() = (qg * kc[l].block(base[s], g * d, t, d).transpose()) * scale;
          for (index_t r = 0; r < group; ++r) {
            auto sr = scores.row(r).array();
            const S m = sr.maxCoeff();
            sr = (sr - m).exp();
            sr /= sr.sum();
          }
          og.noalias() = scores * vc[l].block(base[s], g * d, t, d);
        }
      }
      linear_forward<S>(o, lw.wo, lw.bo, y);
      x += y;
      rmsnorm_forward<S>(x, lw.ln2, cfg.rms_norm_eps, xn, r);
      mlp_forward<S>(lw, xn, mc, y);
      x += y;
    }
    rmsnorm_forward<S>(x, w.norm, cfg.rms_norm_eps, xn, r);
    logits.resize(n, cfg.vocab_size);
    logits.noalias() = xn * w.lm_head.transpose();
    still.clear();
    for (index_t i = 0; i < n; ++i) {
      const index_t s = live[i];
      const sampled_token t = sample_token<S>(
          std::span<const S>(logits.row(i).data(), static_cast<std::size_t>(cfg.vocab_size)),
          options, rng[s]);
      completion& c = out[s];
      c.tokens.push_back(t.token);
      c.sampling_logprobs.push_back(t.sampling_logprob);
      c.model_logprobs.push_back(t.model_logprob);
      next[s] = t.token;
      if (!finished(s)) still.push_back(s);
    }
    live.swap(still);
  }
  return out;
}

}  // namespace reference_model
