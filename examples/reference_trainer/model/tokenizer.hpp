#pragma once
// Tokenizers. Both map text ↔ token ids and know their special tokens:
//
//   byte_tokenizer   ids 0..255 are the bytes; the chat special tokens follow (<|endoftext|> 256,
//                    <|im_start|> 257, <|im_end|> 258). For the toy tasks: no training, any text.
//   bpe_tokenizer    a Hugging Face tokenizer.json with a byte-level BPE model (GPT-2, Qwen2,
//                    Llama 3 style): added/special tokens split out first (longest match), then the
//                    pre-tokenizer regex (GPT-2's or Qwen2's, recognised by their pattern), the
//                    byte-to-unicode map, the merges by rank, the vocabulary; decoding inverts the
//                    byte map (invalid UTF-8 → U+FFFD, as tokenizers' lossy decode).
//
// Unicode classes \p{L} and \p{N} come from unicode_tables.hpp (generated); \s is the Unicode
// White_Space property. Normalizers other than NFC are refused; NFC itself is not applied (text
// is expected in NFC already, as nearly all text is), which is documented in
// docs/reference_model.md.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <posttrain/core/validate.hpp>

#include "unicode_tables.hpp"

namespace reference_model {

using posttrain::index_t;

namespace unicode {

inline bool in_ranges(std::span<const code_point_range> r, std::uint32_t cp) {
  auto it = std::upper_bound(r.begin(), r.end(), cp,
                             [](std::uint32_t c, const code_point_range& x) { return c < x.first; });
  return it != r.begin() && cp <= std::prev(it)->last;
}
inline bool is_letter(std::uint32_t cp) { return in_ranges(letter_ranges, cp); }
inline bool is_number(std::uint32_t cp) { return in_ranges(number_ranges, cp); }
inline bool is_space(std::uint32_t cp) {  // the White_Space property
  return (cp >= 0x9 && cp <= 0xD) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

// Decodes valid UTF-8 into code points with their byte offsets (offsets.size() = cps.size() + 1);
// throws on invalid input, naming the byte.
inline void decode_utf8(std::string_view s, std::vector<std::uint32_t>& cps,
                        std::vector<std::size_t>& offsets) {
  cps.clear();
  offsets.clear();
  std::size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    posttrain::expect(n > 0 && i + n <= s.size(), "reference_model::bpe_tokenizer",
                      "text is not valid UTF-8 at byte ", i);
    std::uint32_t cp = n == 1 ? c : c & (0x7f >> n);
    for (int k = 1; k < n; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      posttrain::expect((cc >> 6) == 2, "reference_model::bpe_tokenizer",
                        "text is not valid UTF-8 at byte ", i + k);
      cp = (cp << 6) | (cc & 0x3f);
    }
    offsets.push_back(i);
    cps.push_back(cp);
    i += static_cast<std::size_t>(n);
  }
  offsets.push_back(s.size());
}

inline void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

// Lossy UTF-8 clean-up: each maximal invalid sequence becomes U+FFFD (as Rust's from_utf8_lossy).
inline std::string sanitize_utf8(std::string_view s) {
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >> 4) == 14 ? 3
          : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
    bool ok = n > 0;
    std::size_t good = 1;
    if (ok && n > 1) {
      for (int k = 1; k < n; ++k) {
        if (i + k >= s.size()) { ok = false; break; }
        const unsigned char cc = static_cast<unsigned char>(s[i + k]);
        bool cont = (cc >> 6) == 2;
        if (k == 1) {  // the second byte's allowed range excludes overlongs and surrogates
          if (c == 0xE0) cont = cont && cc >= 0xA0;
          if (c == 0xED) cont = cont && cc <= 0x9F;
          if (c == 0xF0) cont = cont && cc >= 0x90;
          if (c == 0xF4) cont = cont && cc <= 0x8F;
        }
        if (!cont) { ok = false; break; }
        good = static_cast<std::size_t>(k) + 1;
      }
    }
    if (ok) {
      out.append(s.substr(i, static_cast<std::size_t>(n)));
      i += static_cast<std::size_t>(n);
    } else {
      out += "\xEF\xBF\xBD";
      i += good;
    }
  }
  return out;
}

}  // namespace unicode

// ---------------------------------------------------------------------------------- byte level
class byte_tokenizer {
 public:
  static constexpr index_t endoftext = 256, im_start = 257, im_end = 258;
  index_t vocab_size() const { return 259; }
  index_t eos_id() const { return endoftext; }

  // Special-token strings in the text become their ids when allow_special (never split).
  std::vector<index_t> encode(std::string_view text, bool allow_special = true) const {
    std::vector<index_t> ids;
    std::size_t i = 0;
    while (i < text.size()) {
      bool matched = false;
      if (allow_special && text[i] == '<')
        for (index_t id = endoftext; id <= im_end; ++id) {
          const std::string_view s = special(id);
          if (text.substr(i, s.size()) == s) {
            ids.push_back(id);
            i += s.size();
            matched = true;
            break;
          }
        }
      if (!matched) ids.push_back(static_cast<unsigned char>(text[i++]));
    }
    return ids;
  }
  std::string decode(std::span<const index_t> ids, bool skip_special = false) const {
    std::string out;
    for (index_t id : ids) {
      posttrain::expect(id >= 0 && id < vocab_size(), "reference_model::byte_tokenizer::decode",
                        "token ", id, " is outside the vocabulary [0, ", vocab_size(), ")");
      if (id < 256)
        out += static_cast<char>(id);
      else if (!skip_special)
        out += special(id);
    }
    return out;
  }
  std::optional<index_t> token_id(std::string_view s) const {
    for (index_t id = endoftext; id <= im_end; ++id)
      if (special(id) == s) return id;
    return std::nullopt;
  }

 private:
  static std::string_view special(index_t id) {
    return id == endoftext ? "<|endoftext|>" : id == im_start ? "<|im_start|>" : "<|im_end|>";
  }
};

// ------------------------------------------------------------------------------ byte-level BPE
class bpe_tokenizer {
 public:
  enum class pretokenizer { gpt2, qwen2 };

  static bpe_tokenizer from_file(const std::filesystem::path& path) {
    std::ifstream in(path);
    posttrain::expect(in.good(), "reference_model::bpe_tokenizer", "cannot open ", path.string());
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const std::exception& e) {
      posttrain::detail::fail("reference_model::bpe_tokenizer", path.string(),
                              " is not valid JSON (", e.what(), ")");
    }
    return bpe_tokenizer(j, path.string());
  }

  bpe_tokenizer(const nlohmann::json& j, const std::string& origin) {
    constexpr const char* where = "reference_model::bpe_tokenizer";
    using posttrain::expect;
    const auto& model = j.at("model");
    expect(model.value("type", std::string()) == "BPE", where, origin,
           ": model.type is not BPE (only byte-level BPE tokenizers are supported)");
    for (auto it = model.at("vocab").begin(); it != model.at("vocab").end(); ++it) {
      const index_t id = it->get<index_t>();
      vocab_[it.key()] = id;
      grow(id)[static_cast<std::size_t>(id)] = it.key();
    }
    index_t rank = 0;
    for (const auto& m : model.at("merges")) {
      std::string a, b;
      if (m.is_string()) {  // "a b" (tokenizers < 0.20)
        const std::string s = m.get<std::string>();
        const auto sp = s.find(' ');
        expect(sp != std::string::npos, where, origin, ": merge \"", s, "\" has no space");
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else {  // ["a", "b"]
        a = m.at(0).get<std::string>();
        b = m.at(1).get<std::string>();
      }
      merges_[a + '\x01' + b] = rank++;  // \x01 never occurs in byte-mapped symbols
    }
    ignore_merges_ = model.value("ignore_merges", false);
    if (j.contains("added_tokens"))
      for (const auto& t : j["added_tokens"]) {
        const index_t id = t.at("id").get<index_t>();
        const std::string content = t.at("content").get<std::string>();
        added_.push_back({content, id, t.value("special", false)});
        grow(id)[static_cast<std::size_t>(id)] = content;
        added_ids_[id] = content;
      }
    std::sort(added_.begin(), added_.end(),
              [](const added& a, const added& b) { return a.content.size() > b.content.size(); });
    if (j.contains("normalizer") && !j["normalizer"].is_null()) {
      const std::string type = j["normalizer"].value("type", std::string());
      expect(type == "NFC", where, origin, ": normalizer ", type,
             " is not supported (none or NFC)");
    }
    parse_pretokenizer(j.at("pre_tokenizer"), origin);
    // GPT-2's byte ↔ unicode map: printable bytes stand for themselves, the rest shift to 256+.
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const std::uint32_t cp = printable ? std::uint32_t(b) : std::uint32_t(256 + extra++);
      byte_to_cp_[b] = cp;
      cp_to_byte_[cp] = b;
    }
  }

  index_t vocab_size() const { return static_cast<index_t>(id_to_token_.size()); }
  pretokenizer kind() const { return kind_; }
  std::optional<index_t> token_id(const std::string& token) const {
    for (const auto& a : added_)
      if (a.content == token) return a.id;
    auto it = vocab_.find(token);
    if (it == vocab_.end()) return std::nullopt;
    return it->second;
  }

  std::vector<index_t> encode(std::string_view text) const {
    std::vector<index_t> ids;
    std::size_t i = 0, seg = 0;
    while (i <= text.size()) {
      const added* hit = nullptr;
      if (i < text.size())
        for (const auto& a : added_)  // longest first
          if (!a.content.empty() && text.substr(i, a.content.size()) == a.content) {
            hit = &a;
            break;
          }
      if (hit == nullptr && i < text.size()) {
        ++i;
        continue;
      }
      encode_segment(text.substr(seg, i - seg), ids);
      if (hit == nullptr) break;
      ids.push_back(hit->id);
      i += hit->content.size();
      seg = i;
    }
    return ids;
  }

  std::string decode(std::span<const index_t> ids, bool skip_special = false) const {
    std::string bytes;
    for (index_t id : ids) {
      posttrain::expect(id >= 0 && id < vocab_size() && has_token_[static_cast<std::size_t>(id)],
                        "reference_model::bpe_tokenizer::decode", "token ", id,
                        " is not in the vocabulary");
      if (auto a = added_ids_.find(id); a != added_ids_.end()) {
        bool special = false;
        for (const auto& x : added_)
          if (x.id == id) special = x.special;
        if (!(skip_special && special)) bytes += a->second;
        continue;
      }
      std::vector<std::uint32_t> cps;
      std::vector<std::size_t> off;
      unicode::decode_utf8(id_to_token_[static_cast<std::size_t>(id)], cps, off);
      for (std::uint32_t cp : cps) {
        auto b = cp_to_byte_.find(cp);
        if (b != cp_to_byte_.end())
          bytes += static_cast<char>(b->second);
        else
          unicode::append_utf8(bytes, cp);
      }
    }
    return unicode::sanitize_utf8(bytes);
  }

 private:
  struct added {
    std::string content;
    index_t id;
    bool special;
  };

  std::vector<std::string>& grow(index_t id) {
    posttrain::expect(id >= 0, "reference_model::bpe_tokenizer", "negative token id ", id);
    if (static_cast<std::size_t>(id) >= id_to_token_.size()) {
      id_to_token_.resize(static_cast<std::size_t>(id) + 1);
      has_token_.resize(static_cast<std::size_t>(id) + 1, false);
    }
    has_token_[static_cast<std::size_t>(id)] = true;
    return id_to_token_;
  }

  // The two pre-tokenizer regexes in use, recognised by their text; anything else is refused
  // rather than approximated.
  static constexpr std::string_view gpt2_pattern =
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
  static constexpr std::string_view qwen2_pattern =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

  void parse_pretokenizer(const nlohmann::json& p, const std::string& origin) {
    constexpr const char* where = "reference_model::bpe_tokenizer";
    const std::string type = p.value("type", std::string());
    auto byte_level = [&](const nlohmann::json& b, bool regex_expected) {
      add_prefix_space_ = b.value("add_prefix_space", false);
      if (regex_expected) {
        posttrain::expect(b.value("use_regex", true), where, origin,
                          ": ByteLevel without a regex and without a Split is not supported");
        kind_ = pretokenizer::gpt2;
      }
    };
    if (type == "ByteLevel") {
      byte_level(p, true);
      return;
    }
    posttrain::expect(type == "Sequence", where, origin, ": pre_tokenizer ", type,
                      " is not supported (ByteLevel, or Sequence[Split, ByteLevel])");
    bool have_split = false;
    for (const auto& s : p.at("pretokenizers")) {
      const std::string t = s.value("type", std::string());
      if (t == "Split") {
        const std::string pat = s.at("pattern").value("Regex", std::string());
        if (pat == qwen2_pattern)
          kind_ = pretokenizer::qwen2;
        else if (pat == gpt2_pattern)
          kind_ = pretokenizer::gpt2;
        else
          posttrain::detail::fail(where, origin, ": pre-tokenizer regex ", pat,
                                  " is not one of the supported GPT-2 / Qwen2 patterns");
        have_split = true;
      } else if (t == "ByteLevel") {
        byte_level(s, !have_split);
      } else {
        posttrain::detail::fail(where, origin, ": pre-tokenizer ", t, " is not supported");
      }
    }
  }

  // Length in code points of the regex match at cps[i] (>= 1).
  std::size_t match_at(const std::vector<std::uint32_t>& c, std::size_t i) const {
    using namespace unicode;
    const std::size_t n = c.size();
    auto L = [&](std::size_t k) { return k < n && is_letter(c[k]); };
    auto N = [&](std::size_t k) { return k < n && is_number(c[k]); };
    auto W = [&](std::size_t k) { return k < n && is_space(c[k]); };
    auto other = [&](std::size_t k) { return k < n && !is_space(c[k]) && !is_letter(c[k]) && !is_number(c[k]); };
    auto run = [&](std::size_t k, auto pred) {
      while (pred(k)) ++k;
      return k;
    };
    const bool ci = kind_ == pretokenizer::qwen2;
    // Contractions: 's 't 're 've 'm 'll 'd (case-insensitive for Qwen2).
    if (c[i] == '\'' && i + 1 < n) {
      auto lo = [&](std::size_t k) -> std::uint32_t {
        if (k >= n) return 0;
        return ci && c[k] >= 'A' && c[k] <= 'Z' ? c[k] + 32 : c[k];
      };
      const std::uint32_t a = lo(i + 1), b = lo(i + 2);
      if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
      if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    }
    if (kind_ == pretokenizer::gpt2) {
      const std::size_t j = c[i] == ' ' ? i + 1 : i;  // " ?"
      if (L(j)) return run(j, L) - i;
      if (N(j)) return run(j, N) - i;
      if (other(j)) return run(j, other) - i;
    } else {
      // [^\r\n\p{L}\p{N}]?\p{L}+
      if (c[i] != '\r' && c[i] != '\n' && !L(i) && !N(i) && L(i + 1)) return run(i + 1, L) - i;
      if (L(i)) return run(i, L) - i;
      if (N(i)) return 1;  // \p{N}: one digit at a time
      // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
      const std::size_t j = c[i] == ' ' ? i + 1 : i;
      if (other(j)) {
        std::size_t k = run(j, other);
        while (k < n && (c[k] == '\r' || c[k] == '\n')) ++k;
        return k - i;
      }
      // \s*[\r\n]+ : up to the last CR/LF inside the whitespace run.
      const std::size_t e = run(i, W);
      for (std::size_t k = e; k > i; --k)
        if (c[k - 1] == '\r' || c[k - 1] == '\n') return k - i;
    }
    // \s+(?!\S) then \s+
    const std::size_t e = run(i, W);
    if (e > i) {
      if (e == n || e - i == 1) return e - i;
      return e - i - 1;
    }
    return 1;  // unreachable for well-formed input: every code point is in one class
  }

  void encode_segment(std::string_view text, std::vector<index_t>& ids) const {
    if (text.empty()) return;
    std::string prefixed;
    if (add_prefix_space_ && text.front() != ' ') {
      prefixed = " " + std::string(text);
      text = prefixed;
    }
    std::vector<std::uint32_t> cps;
    std::vector<std::size_t> off;
    unicode::decode_utf8(text, cps, off);
    std::size_t i = 0;
    while (i < cps.size()) {
      const std::size_t len = match_at(cps, i);
      bpe_word(text.substr(off[i], off[i + len] - off[i]), ids);
      i += len;
    }
  }

  // One pre-token: its bytes as byte-mapped symbols, merged by rank, looked up in the vocabulary.
  void bpe_word(std::string_view bytes, std::vector<index_t>& ids) const {
    std::vector<std::string> sym;
    std::string whole;
    for (unsigned char b : bytes) {
      std::string s;
      unicode::append_utf8(s, byte_to_cp_[b]);
      whole += s;
      sym.push_back(std::move(s));
    }
    if (ignore_merges_)
      if (auto it = vocab_.find(whole); it != vocab_.end()) {
        ids.push_back(it->second);
        return;
      }
    // Repeatedly merge the adjacent pair of lowest rank (leftmost on ties), as tokenizers does.
    while (sym.size() > 1) {
      index_t best = -1;
      std::size_t at = 0;
      for (std::size_t k = 0; k + 1 < sym.size(); ++k) {
        auto it = merges_.find(sym[k] + '\x01' + sym[k + 1]);
        if (it != merges_.end() && (best < 0 || it->second < best)) {
          best = it->second;
          at = k;
        }
      }
      if (best < 0) break;
      sym[at] += sym[at + 1];
      sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(at) + 1);
    }
    for (const auto& s : sym) {
      auto it = vocab_.find(s);
      posttrain::expect(it != vocab_.end(), "reference_model::bpe_tokenizer::encode", "symbol \"",
                        s, "\" is not in the vocabulary (incomplete byte-level vocabulary?)");
      ids.push_back(it->second);
    }
  }

  std::unordered_map<std::string, index_t> vocab_;
  std::unordered_map<std::string, index_t> merges_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_token_;
  std::vector<added> added_;
  std::map<index_t, std::string> added_ids_;
  std::uint32_t byte_to_cp_[256] = {};
  std::unordered_map<std::uint32_t, int> cp_to_byte_;
  pretokenizer kind_ = pretokenizer::gpt2;
  bool add_prefix_space_ = false;
  bool ignore_merges_ = false;
};

}  // namespace reference_model
