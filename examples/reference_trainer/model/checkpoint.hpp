#pragma once
// Hugging Face checkpoint directories: config.json (LlamaForCausalLM / Qwen2ForCausalLM fields)
// and model.safetensors (or a sharded model.safetensors.index.json) with the HF parameter names.
//
//   auto m = load_checkpoint<float>("path/to/Qwen2.5-0.5B");   // any f32/bf16/f16 checkpoint
//   save_checkpoint(m, "out/");                                // loads in transformers as is
//
// Loading reads config.json, builds the layout, then fills a fresh parameter buffer tensor by
// tensor; a missing, mis-shaped, truncated or wrong-dtype tensor throws posttrain::error naming it
// before the model is returned, so nothing half-loaded is ever used. Tensors the architecture does
// not have are rejected too (a checkpoint with MLP biases must not load as one without), except
// the rotary inv_freq buffers older checkpoints carry and lm_head.weight of a tied model.
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config.hpp"
#include "parameters.hpp"
#include "safetensors.hpp"
#include "transformer.hpp"

namespace reference_model {

namespace fs = std::filesystem;

namespace detail {
inline model_config config_from_json_unchecked(const nlohmann::json& j, const std::string& origin);
}

// config.json → model_config; a missing, mistyped or unsupported field throws posttrain::error.
inline model_config config_from_json(const nlohmann::json& j, const std::string& origin) {
  try {
    return detail::config_from_json_unchecked(j, origin);
  } catch (const nlohmann::json::exception& e) {
    posttrain::detail::fail("reference_model::config_from_json", origin,
                            ": a field has the wrong JSON type (", e.what(), ")");
  }
}

inline model_config detail::config_from_json_unchecked(const nlohmann::json& j,
                                                       const std::string& origin) {
  constexpr const char* where = "reference_model::config_from_json";
  using posttrain::expect;
  model_config c;
  const std::string type = j.value("model_type", std::string());
  if (type == "llama")
    c.arch = architecture::llama;
  else if (type == "qwen2")
    c.arch = architecture::qwen2;
  else
    posttrain::detail::fail(where, origin, ": model_type \"", type,
                            "\" is not supported (expected \"llama\" or \"qwen2\")");
  auto need = [&](const char* key) -> const nlohmann::json& {
    expect(j.contains(key) && j[key].is_number(), where, origin, ": ", key,
           " is missing or not a number");
    return j[key];
  };
  c.vocab_size = need("vocab_size").get<index_t>();
  c.hidden_size = need("hidden_size").get<index_t>();
  c.intermediate_size = need("intermediate_size").get<index_t>();
  c.num_hidden_layers = need("num_hidden_layers").get<index_t>();
  c.num_attention_heads = need("num_attention_heads").get<index_t>();
  c.num_key_value_heads = j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null()
                              ? j["num_key_value_heads"].get<index_t>()
                              : c.num_attention_heads;
  if (j.contains("head_dim") && j["head_dim"].is_number()) c.head_dim = j["head_dim"].get<index_t>();
  c.rms_norm_eps = j.value("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = j.value("tie_word_embeddings", false);
  c.max_position_embeddings = j.value("max_position_embeddings", index_t(2048));
  c.initializer_range = j.value("initializer_range", 0.02);
  if (c.arch == architecture::llama) c.attention_bias = j.value("attention_bias", false);
  expect(j.value("hidden_act", std::string("silu")) == "silu", where, origin, ": hidden_act \"",
         j.value("hidden_act", std::string()), "\" is not supported (expected \"silu\")");
  expect(!j.value("mlp_bias", false), where, origin, ": mlp_bias = true is not supported");
  expect(!j.value("use_sliding_window", false), where, origin,
         ": use_sliding_window = true is not supported (full attention only)");
  // rope_theta: transformers >= 5 writes rope_parameters {rope_theta, rope_type}; older versions
  // a top-level rope_theta and an optional rope_scaling. Only the default (unscaled) rope exists
  // here, so any scaling is refused rather than silently ignored.
  c.rope_theta = j.value("rope_theta", 10000.0);
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    if (!j.contains(key) || j[key].is_null()) continue;
    const auto& r = j[key];
    const std::string kind = r.value("rope_type", r.value("type", std::string("default")));
    expect(kind == "default", where, origin, ": ", key, ".rope_type \"", kind,
           "\" is not supported (only the default rotary embedding)");
    if (r.contains("rope_theta")) c.rope_theta = r["rope_theta"].get<double>();
  }
  auto token_id = [&](const char* key) -> index_t {
    if (!j.contains(key) || j[key].is_null()) return -1;
    if (j[key].is_array()) return j[key].empty() ? -1 : j[key][0].get<index_t>();
    return j[key].get<index_t>();
  };
  c.bos_token_id = token_id("bos_token_id");
  c.eos_token_id = token_id("eos_token_id");
  validate(c);
  return c;
}

inline nlohmann::ordered_json config_to_json(const model_config& c) {
  nlohmann::ordered_json j;
  j["architectures"] = {architectures_name(c.arch)};
  j["model_type"] = model_type_name(c.arch);
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  if (c.arch == architecture::llama) {
    j["head_dim"] = c.dim_head();
    j["attention_bias"] = c.attention_bias;
    j["mlp_bias"] = false;
  } else {
    j["use_sliding_window"] = false;
  }
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  // Both spellings: transformers >= 5 reads rope_parameters, older releases rope_theta.
  j["rope_theta"] = c.rope_theta;
  j["rope_parameters"] = {{"rope_theta", c.rope_theta}, {"rope_type", "default"}};
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["initializer_range"] = c.initializer_range;
  j["bos_token_id"] = c.bos_token_id >= 0 ? nlohmann::ordered_json(c.bos_token_id) : nullptr;
  j["eos_token_id"] = c.eos_token_id >= 0 ? nlohmann::ordered_json(c.eos_token_id) : nullptr;
  j["torch_dtype"] = "float32";
  return j;
}

inline model_config read_config(const fs::path& dir) {
  const fs::path p = dir / "config.json";
  std::ifstream in(p);
  posttrain::expect(in.good(), "reference_model::read_config", "cannot open ", p.string());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    posttrain::detail::fail("reference_model::read_config", p.string(), " is not valid JSON (",
                            e.what(), ")");
  }
  return config_from_json(j, p.string());
}

namespace detail {
inline bool ignorable_tensor(const std::string& name, const model_config& c) {
  const std::string inv = "rotary_emb.inv_freq";
  if (name.size() >= inv.size() && name.compare(name.size() - inv.size(), inv.size(), inv) == 0)
    return true;
  return c.tie_word_embeddings && name == "lm_head.weight";
}
}  // namespace detail

template <class S>
transformer<S> load_checkpoint(const fs::path& dir) {
  constexpr const char* where = "reference_model::load_checkpoint";
  using posttrain::expect;
  const model_config config = read_config(dir);
  transformer<S> model(config);
  // Which file holds which tensor: one model.safetensors, or shards listed by the index.
  std::vector<safetensors_file> files;
  std::map<std::string, std::size_t> owner;
  const fs::path single = dir / "model.safetensors", index = dir / "model.safetensors.index.json";
  if (fs::exists(single)) {
    files.emplace_back(single);
  } else {
    expect(fs::exists(index), where, dir.string(), " has neither model.safetensors nor ",
           "model.safetensors.index.json");
    std::ifstream in(index);
    std::set<std::string> shards;
    try {
      const nlohmann::json j = nlohmann::json::parse(in);
      for (auto it = j.at("weight_map").begin(); it != j.at("weight_map").end(); ++it)
        shards.insert(it->get<std::string>());
    } catch (const nlohmann::json::exception& e) {
      posttrain::detail::fail(where, index.string(), " is not a valid shard index (", e.what(),
                              ")");
    }
    for (const auto& s : shards) files.emplace_back(dir / s);
  }
  for (std::size_t f = 0; f < files.size(); ++f)
    for (const auto& [name, t] : files[f].tensors()) {
      expect(!owner.contains(name), where, "tensor ", name, " appears in two shards");
      owner[name] = f;
    }
  const parameter_layout& L = model.layout();
  for (const auto& [name, f] : owner)
    expect(L.find(name).has_value() || detail::ignorable_tensor(name, config), where,
           files[f].path(), ": tensor ", name, " is not a parameter of this ",
           model_type_name(config.arch), " configuration");
  // Fill a fresh buffer: the model is returned only after every tensor loaded.
  std::span<S> params = model.parameters();
  for (const tensor_info& t : L.tensors) {
    auto it = owner.find(t.name);
    expect(it != owner.end(), where, dir.string(), ": tensor ", t.name, " is missing");
    const st_tensor& st = files[it->second].tensors().at(t.name);
    expect(st.shape == t.shape, where, files[it->second].path(), ": tensor ", t.name,
           " has shape ", nlohmann::json(st.shape).dump(), ", expected ",
           nlohmann::json(t.shape).dump(), " from config.json");
    files[it->second].read<S>(t.name, params.subspan(t.offset, t.numel()));
  }
  return model;
}

// Writes config.json and model.safetensors (F32, HF names; lm_head.weight omitted when tied, as
// transformers does) into `dir`, each file atomically.
template <class S>
void save_checkpoint(const transformer<S>& model, const fs::path& dir) {
  fs::create_directories(dir);
  std::vector<st_write_entry<S>> entries;
  std::span<const S> p = model.parameters();
  for (const tensor_info& t : model.layout().tensors)
    entries.push_back({t.name, t.shape, p.subspan(t.offset, t.numel())});
  write_safetensors<S>(dir / "model.safetensors", entries);
  const std::string text = config_to_json(model.config()).dump(2) + "\n";
  const fs::path tmp = dir / ("config.json.tmp." + std::to_string(static_cast<long>(::getpid())));
  {
    std::ofstream out(tmp);
    out << text;
    out.flush();
    posttrain::expect(out.good(), "reference_model::save_checkpoint", "writing ", tmp.string(),
                      " failed");
  }
  fs::rename(tmp, dir / "config.json");
}

}  // namespace reference_model
