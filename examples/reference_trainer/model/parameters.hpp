#pragma once
// Every parameter of the model lives in one flat buffer, in the order and under the names of the
// Hugging Face checkpoint (model.embed_tokens.weight, model.layers.{i}.self_attn.q_proj.weight,
// ..., model.norm.weight, lm_head.weight). One buffer means the Policy concept's "parameters and
// gradients as flat views" is a span, an optimizer is a loop, and a checkpoint is a walk over the
// table. The gradient buffer has the same layout, so the same views bind to either.
//
// Shapes follow torch: a Linear weight is [out, in] (row-major), a bias or a norm weight is [n].
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "config.hpp"

namespace reference_model {

template <class S>
using matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class S>
using vector = Eigen::Matrix<S, Eigen::Dynamic, 1>;
template <class S>
using matrix_map = Eigen::Map<matrix<S>>;
template <class S>
using vector_map = Eigen::Map<vector<S>>;

struct tensor_info {
  std::string name;
  std::vector<index_t> shape;  // 1 or 2 extents
  std::size_t offset = 0;      // in elements, into the flat buffer
  std::size_t numel() const {
    std::size_t n = 1;
    for (index_t e : shape) n *= static_cast<std::size_t>(e);
    return n;
  }
};

struct parameter_layout {
  std::vector<tensor_info> tensors;
  std::size_t size = 0;  // total elements

  // Index of the tensor with this name, or nullopt.
  std::optional<std::size_t> find(const std::string& name) const {
    for (std::size_t i = 0; i < tensors.size(); ++i)
      if (tensors[i].name == name) return i;
    return std::nullopt;
  }
  const tensor_info& at(const std::string& name) const {
    auto i = find(name);
    posttrain::expect(i.has_value(), "reference_model::parameter_layout", "no tensor named ", name);
    return tensors[*i];
  }
};

inline std::string layer_prefix(index_t i) { return "model.layers." + std::to_string(i) + "."; }

inline parameter_layout make_layout(const model_config& c) {
  validate(c);
  parameter_layout L;
  auto add = [&](std::string name, std::vector<index_t> shape) {
    tensor_info t{std::move(name), std::move(shape), L.size};
    L.size += t.numel();
    L.tensors.push_back(std::move(t));
  };
  const index_t H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(), K = c.kv_dim();
  add("model.embed_tokens.weight", {c.vocab_size, H});
  for (index_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = layer_prefix(l);
    add(p + "input_layernorm.weight", {H});
    add(p + "self_attn.q_proj.weight", {Q, H});
    if (c.qkv_bias()) add(p + "self_attn.q_proj.bias", {Q});
    add(p + "self_attn.k_proj.weight", {K, H});
    if (c.qkv_bias()) add(p + "self_attn.k_proj.bias", {K});
    add(p + "self_attn.v_proj.weight", {K, H});
    if (c.qkv_bias()) add(p + "self_attn.v_proj.bias", {K});
    add(p + "self_attn.o_proj.weight", {H, Q});
    if (c.o_bias()) add(p + "self_attn.o_proj.bias", {H});
    add(p + "post_attention_layernorm.weight", {H});
    add(p + "mlp.gate_proj.weight", {I, H});
    add(p + "mlp.up_proj.weight", {I, H});
    add(p + "mlp.down_proj.weight", {H, I});
  }
  add("model.norm.weight", {H});
  // Tied: lm_head.weight IS model.embed_tokens.weight (HF does not store it either).
  if (!c.tie_word_embeddings) add("lm_head.weight", {c.vocab_size, H});
  return L;
}

// Views of one decoder layer's tensors inside a flat buffer (parameters or gradients). Absent
// biases are maps of size 0 with a null pointer.
template <class S>
struct layer_view {
  vector_map<S> ln1{nullptr, 0}, ln2{nullptr, 0};
  matrix_map<S> wq{nullptr, 0, 0}, wk{nullptr, 0, 0}, wv{nullptr, 0, 0}, wo{nullptr, 0, 0};
  vector_map<S> bq{nullptr, 0}, bk{nullptr, 0}, bv{nullptr, 0}, bo{nullptr, 0};
  matrix_map<S> w_gate{nullptr, 0, 0}, w_up{nullptr, 0, 0}, w_down{nullptr, 0, 0};
};

template <class S>
struct model_view {
  matrix_map<S> embed{nullptr, 0, 0};
  std::vector<layer_view<S>> layers;
  vector_map<S> norm{nullptr, 0};
  matrix_map<S> lm_head{nullptr, 0, 0};  // aliases embed when tied
};

namespace detail {
template <class S>
void rebind(matrix_map<S>& m, S* base, const tensor_info& t) {
  new (&m) matrix_map<S>(base + t.offset, t.shape[0], t.shape[1]);
}
template <class S>
void rebind(vector_map<S>& m, S* base, const tensor_info& t) {
  new (&m) vector_map<S>(base + t.offset, t.shape[0]);
}
}  // namespace detail

// Binds the views of `layout` into `base` (layout.size elements).
template <class S>
model_view<S> bind(const model_config& c, const parameter_layout& L, S* base) {
  model_view<S> v;
  auto get = [&](const std::string& name) -> const tensor_info& { return L.at(name); };
  detail::rebind(v.embed, base, get("model.embed_tokens.weight"));
  v.layers.resize(static_cast<std::size_t>(c.num_hidden_layers));
  for (index_t l = 0; l < c.num_hidden_layers; ++l) {
    auto& y = v.layers[static_cast<std::size_t>(l)];
    const std::string p = layer_prefix(l);
    detail::rebind(y.ln1, base, get(p + "input_layernorm.weight"));
    detail::rebind(y.ln2, base, get(p + "post_attention_layernorm.weight"));
    detail::rebind(y.wq, base, get(p + "self_attn.q_proj.weight"));
    detail::rebind(y.wk, base, get(p + "self_attn.k_proj.weight"));
    detail::rebind(y.wv, base, get(p + "self_attn.v_proj.weight"));
    detail::rebind(y.wo, base, get(p + "self_attn.o_proj.weight"));
    if (c.qkv_bias()) {
      detail::rebind(y.bq, base, get(p + "self_attn.q_proj.bias"));
      detail::rebind(y.bk, base, get(p + "self_attn.k_proj.bias"));
      detail::rebind(y.bv, base, get(p + "self_attn.v_proj.bias"));
    }
    if (c.o_bias()) detail::rebind(y.bo, base, get(p + "self_attn.o_proj.bias"));
    detail::rebind(y.w_gate, base, get(p + "mlp.gate_proj.weight"));
    detail::rebind(y.w_up, base, get(p + "mlp.up_proj.weight"));
    detail::rebind(y.w_down, base, get(p + "mlp.down_proj.weight"));
  }
  detail::rebind(v.norm, base, get("model.norm.weight"));
  if (c.tie_word_embeddings)
    detail::rebind(v.lm_head, base, get("model.embed_tokens.weight"));
  else
    detail::rebind(v.lm_head, base, get("lm_head.weight"));
  return v;
}

}  // namespace reference_model
