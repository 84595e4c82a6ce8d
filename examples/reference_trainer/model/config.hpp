#pragma once
// The architecture hyperparameters of a Llama / Qwen2 decoder, with the Hugging Face field names
// (config.json of LlamaForCausalLM / Qwen2ForCausalLM). Reading and writing config.json lives in
// checkpoint.hpp; this header only holds and validates the numbers.
//
//   Llama: q/k/v/o projections carry a bias iff attention_bias (all four, as in LlamaAttention).
//   Qwen2: q/k/v carry a bias always, o_proj never (Qwen2Attention); attention_bias is not a field.
#include <cmath>
#include <cstdint>
#include <string>

#include <posttrain/core/validate.hpp>

namespace reference_model {

using posttrain::index_t;

enum class architecture { llama, qwen2 };

inline const char* model_type_name(architecture a) { return a == architecture::llama ? "llama" : "qwen2"; }
inline const char* architectures_name(architecture a) {
  return a == architecture::llama ? "LlamaForCausalLM" : "Qwen2ForCausalLM";
}

struct model_config {
  architecture arch = architecture::llama;
  index_t vocab_size = 256;
  index_t hidden_size = 64;
  index_t intermediate_size = 128;
  index_t num_hidden_layers = 2;
  index_t num_attention_heads = 4;
  index_t num_key_value_heads = 2;
  index_t head_dim = 0;  // 0 = hidden_size / num_attention_heads (HF's default)
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // Llama only (Qwen2 has q/k/v biases and no o bias, fixed)
  index_t max_position_embeddings = 2048;
  double initializer_range = 0.02;
  index_t bos_token_id = -1;  // -1 = none
  index_t eos_token_id = -1;

  index_t dim_head() const { return head_dim > 0 ? head_dim : hidden_size / num_attention_heads; }
  index_t q_dim() const { return num_attention_heads * dim_head(); }
  index_t kv_dim() const { return num_key_value_heads * dim_head(); }
  bool qkv_bias() const { return arch == architecture::qwen2 || attention_bias; }
  bool o_bias() const { return arch == architecture::llama && attention_bias; }
};

// Throws posttrain::error naming the first field that cannot describe a model.
inline void validate(const model_config& c) {
  constexpr const char* where = "reference_model::model_config";
  using posttrain::expect;
  expect(c.vocab_size >= 1, where, "vocab_size is ", c.vocab_size, ", expected >= 1");
  expect(c.hidden_size >= 1, where, "hidden_size is ", c.hidden_size, ", expected >= 1");
  expect(c.intermediate_size >= 1, where, "intermediate_size is ", c.intermediate_size,
         ", expected >= 1");
  expect(c.num_hidden_layers >= 0, where, "num_hidden_layers is ", c.num_hidden_layers,
         ", expected >= 0");
  expect(c.num_attention_heads >= 1, where, "num_attention_heads is ", c.num_attention_heads,
         ", expected >= 1");
  expect(c.num_key_value_heads >= 1 && c.num_attention_heads % c.num_key_value_heads == 0, where,
         "num_key_value_heads is ", c.num_key_value_heads,
         ", expected a divisor of num_attention_heads = ", c.num_attention_heads);
  expect(c.head_dim >= 0, where, "head_dim is ", c.head_dim, ", expected >= 0 (0 = default)");
  expect(c.head_dim > 0 || c.hidden_size % c.num_attention_heads == 0, where, "hidden_size ",
         c.hidden_size, " is not a multiple of num_attention_heads ", c.num_attention_heads,
         " and head_dim is not given");
  expect(c.dim_head() % 2 == 0, where, "head dimension is ", c.dim_head(),
         ", expected an even number (rotary embedding rotates pairs)");
  expect(std::isfinite(c.rope_theta) && c.rope_theta > 0, where, "rope_theta is ", c.rope_theta,
         ", expected finite and > 0");
  expect(std::isfinite(c.rms_norm_eps) && c.rms_norm_eps >= 0, where, "rms_norm_eps is ",
         c.rms_norm_eps, ", expected finite and >= 0");
  expect(c.max_position_embeddings >= 1, where, "max_position_embeddings is ",
         c.max_position_embeddings, ", expected >= 1");
}

}  // namespace reference_model
