#pragma once
// Batched generation with a KV cache:
//   prefill   one packed forward over the distinct prompts (transformer::forward; see
//             "Shared-prompt prefill" below), whose post-RoPE keys and values become the cache;
//             each prompt's last hidden state gives its rows' first tokens;
//   decode    one token per step for every live sequence at once: [B_live, H] through the layers,
//             each query attending to its own sequence's cached keys (positions 0..p).
// A sequence stops at a stop token (kept, reason stop) or after max_new_tokens (reason length).
// Sample b draws from its own std::mt19937_64(seeds[b]), one uniform per step, so its completion
// does not depend on which other prompts share the batch (up to float rounding of the batched
// GEMMs).
//
// Shared-prompt prefill (options.share_prompt_prefill, on by default): rows whose prompt tokens
// are equal (GRPO's G samples of one prompt; found by comparing the tokens, wherever the rows
// sit in the batch) are prefilled once: the packed forward runs over the distinct prompts only,
// every row of a group gets a copy of that prompt's keys / values in its own cache rows and
// samples its first token from the prompt's last logits row with its own generator. The decode
// is then the same code on the same cache contents, and the draws are untouched (one uniform per
// row and step from the row's own stream), so the tokens equal the unshared path's; the logits
// differ at most by the rounding of the prefill GEMMs over fewer rows (in practice not at all:
// each output element is the same dot product in the same order).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <unordered_map>
#include <vector>

#include "sampling.hpp"
#include "transformer.hpp"

namespace reference_model {

// Rows of a packed prompt batch grouped by equal prompt tokens.
struct prompt_groups {
  std::vector<index_t> first;  // [U] the first row of each distinct prompt, in row order
  std::vector<index_t> of;     // [B] the distinct prompt (index into `first`) of each row
};

// share = false: every row is its own group (U = B).
inline prompt_groups group_prompts(std::span<const index_t> tokens,
                                   std::span<const index_t> offsets, bool share) {
  const index_t b = static_cast<index_t>(offsets.size()) - 1;
  prompt_groups g;
  g.of.resize(static_cast<std::size_t>(b));
  auto row = [&](index_t s) {
    return tokens.subspan(static_cast<std::size_t>(offsets[s]),
                          static_cast<std::size_t>(offsets[s + 1] - offsets[s]));
  };
  std::unordered_map<std::uint64_t, std::vector<index_t>> by_hash;  // hash → distinct prompts
  for (index_t s = 0; s < b; ++s) {
    const auto p = row(s);
    if (share) {
      std::uint64_t h = 1469598103934665603ull ^ p.size();  // FNV-1a over the ids
      for (index_t t : p) h = (h ^ static_cast<std::uint64_t>(t)) * 1099511628211ull;
      std::vector<index_t>& cands = by_hash[h];
      bool found = false;
      for (index_t u : cands) {
        const auto q = row(g.first[u]);
        if (q.size() == p.size() && std::equal(q.begin(), q.end(), p.begin())) {
          g.of[s] = u;
          found = true;
          break;
        }
      }
      if (found) continue;
      cands.push_back(static_cast<index_t>(g.first.size()));
    }
    g.of[s] = static_cast<index_t>(g.first.size());
    g.first.push_back(s);
  }
  return g;
}

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
  for (completion& c : out) {
    c.tokens.reserve(static_cast<std::size_t>(options.max_new_tokens));
    c.sampling_logprobs.reserve(static_cast<std::size_t>(options.max_new_tokens));
    c.model_logprobs.reserve(static_cast<std::size_t>(options.max_new_tokens));
  }

  // Prefill, once per distinct prompt (all rows when sharing is off or every prompt differs).
  const prompt_groups groups = group_prompts(prompt_tokens, prompt_offsets,
                                             options.share_prompt_prefill);
  const index_t u_count = static_cast<index_t>(groups.first.size());
  std::vector<index_t> u_tokens, u_offsets;
  std::span<const index_t> pre_tokens = prompt_tokens, pre_offsets = prompt_offsets;
  if (u_count < b) {
    u_offsets.push_back(0);
    for (index_t s : groups.first) {
      u_tokens.insert(u_tokens.end(), prompt_tokens.begin() + prompt_offsets[s],
                      prompt_tokens.begin() + prompt_offsets[s + 1]);
      u_offsets.push_back(static_cast<index_t>(u_tokens.size()));
    }
    pre_tokens = u_tokens;
    pre_offsets = u_offsets;
  }
  std::vector<std::mt19937_64> rng;
  rng.reserve(static_cast<std::size_t>(b));
  for (index_t s = 0; s < b; ++s) rng.emplace_back(seeds[s]);
  std::vector<index_t> next(static_cast<std::size_t>(b));
  {
    activations<S> act;
    const matrix<S>& h = model.forward(pre_tokens, pre_offsets, act);
    for (index_t l = 0; l < layers; ++l) {
      kc[l].resize(base[b], kvd);
      vc[l].resize(base[b], kvd);
      // The forward's K/V rows are the deduplicated ones (prefix_sharing.hpp: distinct prompts
      // may still share a leading run of tokens): row_of maps a packed prompt token to its row.
      const std::vector<index_t>& row_of = act.layout.row_of;
      for (index_t s = 0; s < b; ++s) {
        const index_t src = pre_offsets[groups.of[s]];
        for (index_t j = 0; j < len[s]; ++j) {
          const index_t r = row_of[static_cast<std::size_t>(src + j)];
          kc[l].row(base[s] + j) = act.layers[l].attn.k.row(r);
          vc[l].row(base[s] + j) = act.layers[l].attn.v.row(r);
        }
      }
    }
    matrix<S> last(u_count, hd);
    for (index_t u = 0; u < u_count; ++u) last.row(u) = h.row(pre_offsets[u + 1] - 1);
    const matrix<S> logits = model.logits(last);
    for (index_t s = 0; s < b; ++s) {
      const sampled_token t = sample_token<S>(
          std::span<const S>(logits.row(groups.of[s]).data(),
                             static_cast<std::size_t>(cfg.vocab_size)),
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

  // Decode: every live sequence advances by one token per step. The buffers below keep their
  // memory across steps (they are reallocated only when the live count changes); the attention
  // scores live in one buffer sized for the longest sequence.
  const S scale = S(1) / std::sqrt(S(d));
  matrix<S> x, xn, q, k, v, o, y, logits;
  index_t max_t = 0;
  for (index_t s = 0; s < b; ++s) max_t = std::max(max_t, len[s] + options.max_new_tokens);
  std::vector<S> score_buf(static_cast<std::size_t>(group * max_t));
  std::vector<index_t> still;
  still.reserve(live.size());
  vector<S> r;
  mlp_cache<S> mc;
  std::vector<index_t> pos;
  pos.reserve(live.size());
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
          Eigen::Map<matrix<S>> scores(score_buf.data(), group, t);
          // Coefficient-based products: [group, D] × [D, t] and [group, t] × [t, D] are too small
          // for a GEMM call (packing, blocking) to pay off; one dot product / axpy per entry.
          scores.noalias() = qg.lazyProduct(kc[l].block(base[s], g * d, t, d).transpose()) * scale;
          for (index_t r = 0; r < group; ++r) {
            auto sr = scores.row(r).array();
            const S m = sr.maxCoeff();
            sr = (sr - m).exp();
            sr /= sr.sum();
          }
          og.noalias() = scores.lazyProduct(vc[l].block(base[s], g * d, t, d));
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
