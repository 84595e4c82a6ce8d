#pragma once
// JSONL readers for the four kinds of post-training data (needs nlohmann_json: link
// nlohmann_json::nlohmann_json; not included by <posttrain/pipeline.hpp>).
//
//   read_sft_jsonl          {"messages": [{"role": ..., "content": ...}, ...]}     (TRL, Tülu 3)
//   read_preference_jsonl   {"prompt": str | messages, "chosen": str | messages,
//                            "rejected": str | messages, "edited"?: str | messages,
//                            "margin"?: number}                         (TRL, Llama 3 editing)
//                           A string prompt is one user message; a string response one
//                           assistant message.
//   read_kto_jsonl          {"prompt": str | messages, "completion": str | messages,
//                            "label": bool}                    (TRL unpaired preference / KTO;
//                            label true = desirable)
//   read_rlvr_jsonl         {"messages": [...], "ground_truth": str | [str], "dataset": str |
//                            [str]}                                      (open-instruct RLVR;
//                            "dataset" is the verifier name)
//
// A bad row throws posttrain::error naming the file, the 1-based line and the field (invalid JSON,
// a missing or mistyped field); nothing is returned until the whole file has been read, so a
// caller never uses half a file. Blank lines are skipped.
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "posttrain/config.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/pipeline/chat.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pipeline {

// sft_example, preference_example, rlvr_example: pipeline/chat.hpp.

namespace jsonl_detail {

struct line_context {
  const std::string& file;
  std::size_t line;
  [[noreturn]] void fail(const std::string& field, const std::string& what) const {
    posttrain::detail::fail("pipeline::read_jsonl", file, ":", line, ": field \"", field, "\" ",
                            what);
  }
};

inline std::vector<message> messages_of(const nlohmann::json& j, const std::string& field,
                                        const line_context& c) {
  if (!j.is_array()) c.fail(field, "is not an array of messages");
  std::vector<message> out;
  for (std::size_t i = 0; i < j.size(); ++i) {
    const auto& m = j[i];
    const std::string f = field + "[" + std::to_string(i) + "]";
    if (!m.is_object()) c.fail(f, "is not a message object");
    if (!m.contains("role") || !m["role"].is_string()) c.fail(f + ".role", "is missing or not a string");
    if (!m.contains("content") || !m["content"].is_string())
      c.fail(f + ".content", "is missing or not a string");
    const std::string role = m["role"].get<std::string>();
    if (role != "system" && role != "user" && role != "assistant")
      c.fail(f + ".role", "is \"" + role + "\", expected system, user or assistant");
    out.push_back({role, m["content"].get<std::string>()});
  }
  return out;
}

// str → one message of `role`; array → messages.
inline std::vector<message> text_or_messages(const nlohmann::json& row, const std::string& field,
                                             const std::string& role, const line_context& c) {
  if (!row.contains(field)) c.fail(field, "is missing");
  const auto& j = row[field];
  if (j.is_string()) return {{role, j.get<std::string>()}};
  return messages_of(j, field, c);
}

inline std::string string_or_first(const nlohmann::json& row, const std::string& field,
                                   const line_context& c) {
  if (!row.contains(field)) c.fail(field, "is missing");
  const auto& j = row[field];
  if (j.is_string()) return j.get<std::string>();
  if (j.is_array() && !j.empty() && j[0].is_string()) return j[0].get<std::string>();
  c.fail(field, "is not a string (or a non-empty array of strings)");
}

template <class F>
auto read_rows(const std::string& path, F&& parse) {
  std::ifstream in(path);
  expect(static_cast<bool>(in), "pipeline::read_jsonl", "cannot open ", path);
  using T = decltype(parse(nlohmann::json{}, std::declval<const line_context&>()));
  std::vector<T> rows;
  std::string text;
  std::size_t line = 0;
  while (std::getline(in, text)) {
    ++line;
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    const line_context c{path, line};
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
      c.fail("<row>", std::string("is not valid JSON: ") + e.what());
    }
    if (!j.is_object()) c.fail("<row>", "is not a JSON object");
    rows.push_back(parse(j, c));
  }
  return rows;
}

}  // namespace jsonl_detail

inline std::vector<sft_example> read_sft_jsonl(const std::string& path) {
  return jsonl_detail::read_rows(path, [](const nlohmann::json& j, const jsonl_detail::line_context& c) {
    if (!j.contains("messages")) c.fail("messages", "is missing");
    return sft_example{jsonl_detail::messages_of(j["messages"], "messages", c)};
  });
}

inline std::vector<preference_example> read_preference_jsonl(const std::string& path) {
  return jsonl_detail::read_rows(path, [](const nlohmann::json& j, const jsonl_detail::line_context& c) {
    preference_example e;
    e.prompt = jsonl_detail::text_or_messages(j, "prompt", "user", c);
    e.chosen = jsonl_detail::text_or_messages(j, "chosen", "assistant", c);
    e.rejected = jsonl_detail::text_or_messages(j, "rejected", "assistant", c);
    if (j.contains("edited") && !j["edited"].is_null())
      e.edited = jsonl_detail::text_or_messages(j, "edited", "assistant", c);
    if (j.contains("margin") && !j["margin"].is_null()) {
      if (!j["margin"].is_number()) c.fail("margin", "is not a number");
      e.margin = j["margin"].get<double>();
    }
    return e;
  });
}

inline std::vector<kto_example> read_kto_jsonl(const std::string& path) {
  return jsonl_detail::read_rows(path, [](const nlohmann::json& j, const jsonl_detail::line_context& c) {
    kto_example e;
    e.prompt = jsonl_detail::text_or_messages(j, "prompt", "user", c);
    e.completion = jsonl_detail::text_or_messages(j, "completion", "assistant", c);
    if (!j.contains("label")) c.fail("label", "is missing");
    if (!j["label"].is_boolean()) c.fail("label", "is not a boolean (true = desirable)");
    e.desirable = j["label"].get<bool>();
    return e;
  });
}

inline std::vector<rlvr_example> read_rlvr_jsonl(const std::string& path) {
  return jsonl_detail::read_rows(path, [](const nlohmann::json& j, const jsonl_detail::line_context& c) {
    if (!j.contains("messages")) c.fail("messages", "is missing");
    rlvr_example e;
    e.messages = jsonl_detail::messages_of(j["messages"], "messages", c);
    e.ground_truth = jsonl_detail::string_or_first(j, "ground_truth", c);
    e.verifier = jsonl_detail::string_or_first(j, "dataset", c);
    return e;
  });
}

}  // namespace pipeline

POSTTRAIN_NAMESPACE_END
