#pragma once
// The Tokenizer concept (what text-based reward sources and the chat format need) and the
// byte-level tokenizer that ships with the library.
//
//   t.encode(std::string_view) -> std::vector<index_t>
//   t.decode(std::span<const index_t>) -> std::string
//   t.vocab_size() -> index_t
//
// byte_tokenizer: ids 0..255 are the bytes; 256.. are specials (bos, eos, and the chat format's
// role headers and end-of-turn, pipeline/chat.hpp), decoded as "<|name|>". encode never produces a
// special (special tokens are not reachable from text: no prompt injection of headers).
// static_assert(check_tokenizer<T>()) (tests/compile_fail/pipeline_tokenizer.cpp).
#include <concepts>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pipeline {

template <class T>
concept tokenizer = requires(const T& t, std::string_view s, std::span<const index_t> ids) {
  { t.encode(s) } -> std::same_as<std::vector<index_t>>;
  { t.decode(ids) } -> std::same_as<std::string>;
  { t.vocab_size() } -> std::convertible_to<index_t>;
};

template <class T>
constexpr bool check_tokenizer() {
  static_assert(requires(const T& t, std::string_view s) {
    { t.encode(s) } -> std::same_as<std::vector<index_t>>;
  }, "a tokenizer needs `std::vector<index_t> encode(std::string_view) const`");
  static_assert(requires(const T& t, std::span<const index_t> ids) {
    { t.decode(ids) } -> std::same_as<std::string>;
  }, "a tokenizer needs `std::string decode(std::span<const index_t>) const`");
  static_assert(requires(const T& t) {
    { t.vocab_size() } -> std::convertible_to<index_t>;
  }, "a tokenizer needs `index_t vocab_size() const`");
  return tokenizer<T>;
}

struct byte_tokenizer {
  enum special : index_t {
    bos = 256,
    eos = 257,
    start_header = 258,  // <|start_header_id|> role <|end_header_id|>, Llama 3 style
    end_header = 259,
    end_of_turn = 260,   // <|eot_id|>
    num_special = 5,
  };
  static constexpr index_t size = 256 + num_special;

  index_t vocab_size() const { return size; }

  std::vector<index_t> encode(std::string_view s) const {
    std::vector<index_t> ids;
    ids.reserve(s.size());
    for (unsigned char c : s) ids.push_back(static_cast<index_t>(c));
    return ids;
  }

  std::string decode(std::span<const index_t> ids) const {
    std::string s;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const index_t id = ids[i];
      expect(id >= 0 && id < size, "byte_tokenizer::decode", "ids[", i, "] = ", id,
             ", expected an id in [0, ", size, ")");
      if (id < 256)
        s.push_back(static_cast<char>(static_cast<unsigned char>(id)));
      else
        s += special_name(id);
    }
    return s;
  }

  static std::string special_name(index_t id) {
    switch (id) {
      case bos: return "<|begin_of_text|>";
      case eos: return "<|end_of_text|>";
      case start_header: return "<|start_header_id|>";
      case end_header: return "<|end_header_id|>";
      case end_of_turn: return "<|eot_id|>";
      default: return "<|unknown|>";
    }
  }
};

static_assert(check_tokenizer<byte_tokenizer>());

}  // namespace pipeline

POSTTRAIN_NAMESPACE_END
