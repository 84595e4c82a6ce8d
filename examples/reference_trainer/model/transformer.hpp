#pragma once
// The decoder-only transformer (LlamaForCausalLM / Qwen2ForCausalLM) on Eigen with a hand-written
// backward. Layer by layer:
//   h_0 = E[tokens]                                        embedding        [N, H]
//   for each layer l:
//     h' = h + Attention(RMSNorm_1(h))                     attention.hpp, rmsnorm.hpp, rope.hpp
//     h  = h' + MLP(RMSNorm_2(h'))                         mlp.hpp
//   out = RMSNorm_f(h)                                     hidden states handed to the lm_head
//   logits = out W_lmᵀ                                     (W_lm = E when tied)
//
// forward() returns `out` [N, H] and keeps the activations its backward needs; the caller turns
// out + lm_head() into log-probs with posttrain::fused_linear_logprobs (no [N, V] logits in
// training) and hands d(out) back to backward(), plus the lm_head gradient into lm_head_grad().
// logits() is the plain path for tests and generation.
//
// The batch is packed: tokens [N] of B sequences delimited by seq_offsets [B+1] (0 = o_0 <= ... <=
// o_B = N); positions restart at 0 in every sequence. Rows that begin with the same tokens (GRPO's
// samples of one prompt) run those tokens through the trunk once (prefix_sharing.hpp: exact up to
// rounding; set_prefix_sharing(false) turns it off): the trunk works on the M <= N deduplicated
// tokens, forward() gathers its output back to [N, H] and backward() scatter-adds d(out) onto them. Parameters and gradients are flat buffers in
// the Hugging Face order (parameters.hpp). S is float for real use; tests instantiate double.
#include <algorithm>
#include <optional>
#include <random>
#include <span>
#include <vector>

#include <posttrain/core/validate.hpp>
#include <posttrain/core/views.hpp>

#include "attention.hpp"
#include "config.hpp"
#include "mlp.hpp"
#include "parameters.hpp"
#include "prefix_sharing.hpp"
#include "rmsnorm.hpp"
#include "rope.hpp"

namespace reference_model {

template <class S>
struct layer_cache {
  matrix<S> x;          // layer input h [N, H]
  vector<S> r1, r2;     // RMSNorm reciprocal RMS per row
  matrix<S> xn1, xn2;   // normed inputs of attention and MLP
  matrix<S> h1;         // after the attention residual
  attention_cache<S> attn;
  mlp_cache<S> mlp;
};

template <class S>
struct activations {
  std::vector<index_t> tokens, seq_offsets;  // the packed batch as given [N], [B + 1]
  shared_prefix_layout layout;  // the M deduplicated rows the trunk runs on (all [·] below are M)
  std::vector<layer_cache<S>> layers;
  matrix<S> h;     // last layer's output [M, H]
  vector<S> rf;    // final norm's reciprocal RMS
  matrix<S> out;   // final normed hidden states [M, H]
  matrix<S> packed_out;  // ... gathered to the packed rows [N, H] (only when something is shared)
  matrix<S> y;     // scratch: a branch's output before the residual add
  // Every buffer above is resized in place by forward(): kept in the same activations object,
  // a batch of the same shape reuses the previous batch's memory (no allocation, no page faults).
};

// Throws posttrain::error unless seq_offsets delimits `n` tokens (0 = o_0 <= ... <= o_B = n) and
// every token is in [0, vocab).
inline void validate_batch(const char* where, std::span<const index_t> tokens,
                           std::span<const index_t> seq_offsets, index_t vocab) {
  using posttrain::expect;
  const index_t n = static_cast<index_t>(tokens.size());
  expect(seq_offsets.size() >= 1, where, "seq_offsets is empty, expected B + 1 >= 1 offsets");
  expect(seq_offsets.front() == 0, where, "seq_offsets[0] is ", seq_offsets.front(),
         ", expected 0");
  expect(seq_offsets.back() == n, where, "seq_offsets ends at ", seq_offsets.back(),
         ", expected the token count ", n);
  for (std::size_t i = 1; i < seq_offsets.size(); ++i)
    expect(seq_offsets[i] >= seq_offsets[i - 1], where, "seq_offsets is not non-decreasing at ",
           i, " (", seq_offsets[i - 1], " then ", seq_offsets[i], ")");
  for (index_t i = 0; i < n; ++i)
    expect(tokens[i] >= 0 && tokens[i] < vocab, where, "tokens[", i, "] = ", tokens[i],
           " is outside the vocabulary [0, ", vocab, ")");
}

template <class S>
class transformer {
 public:
  explicit transformer(const model_config& config)
      : config_(config),
        layout_(make_layout(config)),
        params_(layout_.size, S(0)),
        grads_(layout_.size, S(0)),
        rope_(config.dim_head(), config.rope_theta) {
    rebind_views();
  }
  transformer(const transformer& other)
      : config_(other.config_), layout_(other.layout_), params_(other.params_),
        grads_(other.grads_), rope_(other.rope_), share_prefixes_(other.share_prefixes_) {
    rebind_views();
  }
  transformer& operator=(const transformer& other) {
    if (this != &other) {
      config_ = other.config_;
      layout_ = other.layout_;
      params_ = other.params_;
      grads_ = other.grads_;
      rope_ = other.rope_;
      share_prefixes_ = other.share_prefixes_;
      rebind_views();
    }
    return *this;
  }

  const model_config& config() const { return config_; }
  const parameter_layout& layout() const { return layout_; }
  std::span<S> parameters() { return params_; }
  std::span<const S> parameters() const { return params_; }
  std::span<S> gradients() { return grads_; }
  std::span<const S> gradients() const { return grads_; }
  const model_view<S>& weights() const { return *w_; }
  model_view<S>& weights() { return *w_; }
  model_view<S>& grad_views() { return *g_; }
  const rope_table<S>& rope() const { return rope_; }
  void zero_grad() { std::fill(grads_.begin(), grads_.end(), S(0)); }

  // Shared-prefix passes (prefix_sharing.hpp), on by default. Off: every row runs alone (the
  // unshared computation; tests compare the two, benches time them).
  void set_prefix_sharing(bool on) { share_prefixes_ = on; }
  bool prefix_sharing() const { return share_prefixes_; }

  // The output projection [V, H] as a library view (for posttrain::fused_linear_logprobs), and
  // its gradient (same region of the gradient buffer: with tie_word_embeddings the embedding's,
  // so pass accumulate_d_weight = true to add to what backward() leaves there).
  posttrain::matrix_view<const S> lm_head() const {
    return {w_->lm_head.data(), w_->lm_head.rows(), w_->lm_head.cols()};
  }
  posttrain::matrix_view<S> lm_head_grad() {
    return {g_->lm_head.data(), g_->lm_head.rows(), g_->lm_head.cols()};
  }

  // HF's initialisation: every Linear and the embedding ~ N(0, initializer_range²), biases 0,
  // norm weights 1. Deterministic in `seed`.
  void init_random(std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal(0.0, config_.initializer_range);
    for (const tensor_info& t : layout_.tensors) {
      S* p = params_.data() + t.offset;
      const bool norm = t.name.find("norm.weight") != std::string::npos;
      const bool bias = t.name.size() > 5 && t.name.compare(t.name.size() - 5, 5, ".bias") == 0;
      for (std::size_t i = 0; i < t.numel(); ++i)
        p[i] = norm ? S(1) : bias ? S(0) : S(normal(rng));
    }
  }

  // Forward over a packed batch; returns the final normed hidden states (act.out, [N, H]).
  const matrix<S>& forward(std::span<const index_t> tokens, std::span<const index_t> seq_offsets,
                           activations<S>& act) const {
    validate_batch("reference_model::transformer::forward", tokens, seq_offsets,
                   config_.vocab_size);
    const index_t hd = config_.hidden_size;
    act.tokens.assign(tokens.begin(), tokens.end());
    act.seq_offsets.assign(seq_offsets.begin(), seq_offsets.end());
    build_shared_prefix_layout(tokens, seq_offsets, share_prefixes_, act.layout);
    const shared_prefix_layout& lay = act.layout;
    const index_t n = lay.rows();  // the trunk's rows: M deduplicated tokens
    const std::size_t layers = w_->layers.size();
    act.layers.resize(layers);
    // Layer l's output is written straight into layer l+1's input buffer (the last one's into
    // act.h): no per-layer temporaries.
    auto layer_input = [&](std::size_t l) -> matrix<S>& {
      return l < layers ? act.layers[l].x : act.h;
    };
    {
      matrix<S>& h = layer_input(0);
      h.resize(n, hd);
      for (index_t i = 0; i < n; ++i) h.row(i) = w_->embed.row(lay.tokens[static_cast<std::size_t>(i)]);
    }
    const attention_shape shape = attn_shape();
    matrix<S>& y = act.y;
    for (std::size_t l = 0; l < layers; ++l) {
      const layer_view<S>& w = w_->layers[l];
      layer_cache<S>& c = act.layers[l];
      rmsnorm_forward<S>(c.x, w.ln1, config_.rms_norm_eps, c.xn1, c.r1);
      attention_forward<S>(w, shape, rope_, c.xn1, std::span<const attention_segment>(lay.segments),
                           lay.positions, c.attn, y);
      c.h1.resize(n, hd);
      c.h1.noalias() = c.x + y;
      rmsnorm_forward<S>(c.h1, w.ln2, config_.rms_norm_eps, c.xn2, c.r2);
      mlp_forward<S>(w, c.xn2, c.mlp, y);
      matrix<S>& h = layer_input(l + 1);
      h.resize(n, hd);
      h.noalias() = c.h1 + y;
    }
    rmsnorm_forward<S>(act.h, w_->norm, config_.rms_norm_eps, act.out, act.rf);
    if (lay.identity) return act.out;
    // One row per packed token again (a shared prefix row is copied to each of its rows).
    const index_t np = lay.packed_rows();
    act.packed_out.resize(np, hd);
    for (index_t t = 0; t < np; ++t)
      act.packed_out.row(t) = act.out.row(lay.row_of[static_cast<std::size_t>(t)]);
    return act.packed_out;
  }

  // Backward from d(out) [N, H]; every parameter gradient is ADDED to gradients() (zero_grad()
  // between optimizer steps; micro-batches accumulate). The lm_head's own gradient is the
  // caller's (lm_head_grad()), since the caller owns the projection to log-probs.
  void backward(const activations<S>& act, const matrix<S>& d_out) {
    const shared_prefix_layout& lay = act.layout;
    const index_t np = static_cast<index_t>(act.tokens.size());
    posttrain::expect(d_out.rows() == np && d_out.cols() == config_.hidden_size,
                      "reference_model::transformer::backward", "d_out is [", d_out.rows(), ", ",
                      d_out.cols(), "], expected [", np, ", ", config_.hidden_size,
                      "] (the forward's hidden states)");
    const index_t n = lay.rows();
    matrix<S>& dh = scratch_.dh;
    matrix<S>& dxn = scratch_.dxn;
    dh.setZero(n, config_.hidden_size);
    if (lay.identity) {
      rmsnorm_backward<S>(act.h, w_->norm, act.rf, d_out, dh, g_->norm);
    } else {
      // The forward copied each trunk row to its packed rows: their gradients add up.
      matrix<S>& d_shared = scratch_.d_shared;
      d_shared.setZero(n, config_.hidden_size);
      for (index_t t = 0; t < np; ++t)
        d_shared.row(lay.row_of[static_cast<std::size_t>(t)]) += d_out.row(t);
      rmsnorm_backward<S>(act.h, w_->norm, act.rf, d_shared, dh, g_->norm);
    }
    const attention_shape shape = attn_shape();
    for (std::size_t l = w_->layers.size(); l-- > 0;) {
      const layer_view<S>& w = w_->layers[l];
      layer_view<S>& gw = g_->layers[l];
      const layer_cache<S>& c = act.layers[l];
      // h = h1 + MLP(norm2(h1)): dh1 = dh + norm2ᵀ(MLPᵀ(dh)).
      dxn.setZero(n, config_.hidden_size);
      mlp_backward<S>(w, gw, c.xn2, c.mlp, dh, dxn, scratch_.mlp);
      rmsnorm_backward<S>(c.h1, w.ln2, c.r2, dxn, dh, gw.ln2);
      // h1 = x + Attn(norm1(x)): dx = dh1 + norm1ᵀ(Attnᵀ(dh1)).
      dxn.setZero();
      attention_backward<S>(w, gw, shape, rope_, c.xn1,
                            std::span<const attention_segment>(lay.segments), lay.positions,
                            c.attn, dh, dxn, scratch_.attn);
      rmsnorm_backward<S>(c.x, w.ln1, c.r1, dxn, dh, gw.ln1);
    }
    for (index_t i = 0; i < n; ++i) g_->embed.row(lay.tokens[static_cast<std::size_t>(i)]) += dh.row(i);
  }

  // Plain logits [N, V] of hidden states (tests, generation).
  matrix<S> logits(const matrix<S>& hidden) const { return hidden * w_->lm_head.transpose(); }

  attention_shape attn_shape() const {
    return {config_.num_attention_heads, config_.num_key_value_heads, config_.dim_head()};
  }

 private:
  void rebind_views() {
    // Eigen::Map assignment copies coefficients, not pointers: the views are re-constructed.
    w_.emplace(bind<S>(config_, layout_, params_.data()));
    g_.emplace(bind<S>(config_, layout_, grads_.data()));
  }

  model_config config_;
  parameter_layout layout_;
  std::vector<S> params_, grads_;
  rope_table<S> rope_;
  std::optional<model_view<S>> w_, g_;
  bool share_prefixes_ = true;
  // backward()'s gradient buffers, kept between steps (never copied: a copy starts empty).
  struct backward_scratch {
    matrix<S> dh, dxn, d_shared;
    attention_scratch<S> attn;
    mlp_scratch<S> mlp;
  } scratch_;
};

}  // namespace reference_model
