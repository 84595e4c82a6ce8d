#pragma once
// The ReferenceModel concept: token log-probs of a batch under a model that gets no gradient
// (the KL anchor of PPO/GRPO, the ρ of the DPO family).
//
//   R::enabled                     bool: false for reference::none (the steps then skip it)
//   R::scalar_type                 float or double (the policy's)
//   r.logprobs(const token_sequences&, std::span<scalar_type> lp)   token-aligned (types.hpp):
//                                  lp[t] = log p_ref(tokens[t] | earlier tokens), 0 on the first
//                                  token of each sequence
//
// Models:
//   reference::frozen<Policy>      a snapshot (copy) of the policy; sync() re-copies it, mix()
//                                  blends it toward the policy (TR-DPO soft sync α, as
//                                  ops/model_averaging.hpp's tr_dpo_sync: θ_ref ← α·θ + (1−α)·θ_ref)
//   reference::precomputed<S>      log-probs cached per example id (token_sequences::ids), filled
//                                  once from any reference model (precompute) and saved / loaded,
//                                  so a preference run need not keep the reference in memory
//   reference::none<S>             SimPO, ORPO, KL-free GRPO: enabled = false
//
// static_assert(check_reference_model<R>()) names a missing member
// (tests/compile_fail/pipeline_reference.cpp).
#include <concepts>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "posttrain/config.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/pipeline/policy.hpp"
#include "posttrain/pipeline/types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace pipeline {

template <class R>
concept reference_model = model_detail::switchable<R> &&
    requires(R& r, const token_sequences& s, std::span<typename R::scalar_type> lp) {
  r.logprobs(s, lp);
};

template <class R>
constexpr bool check_reference_model() {
  static_assert(requires { { R::enabled } -> std::convertible_to<bool>; },
                "a reference model needs `static constexpr bool enabled` (false only for "
                "reference::none, whose log-probs the steps never read)");
  constexpr bool has_scalar = requires { typename R::scalar_type; };
  static_assert(has_scalar, "a reference model needs `using scalar_type = float;` or `double` (the "
                            "policy's)");
  if constexpr (has_scalar)
    static_assert(
        requires(R& r, const token_sequences& s, std::span<typename R::scalar_type> lp) {
          r.logprobs(s, lp);
        },
        "a reference model needs `logprobs(const pipeline::token_sequences&, "
        "std::span<scalar_type> lp)` writing one token-aligned log-prob per token (0 on first "
        "tokens)");
  return reference_model<R>;
}

namespace reference {

// A frozen copy of the policy. Its forward state is its own, so it never disturbs the policy's.
template <policy P>
class frozen {
 public:
  static constexpr bool enabled = true;
  using scalar_type = typename P::scalar_type;

  explicit frozen(const P& policy) : model_(policy) {}

  void logprobs(const token_sequences& s, std::span<scalar_type> lp) {
    forward_state<scalar_type> st;
    policy_logprobs(model_, s, lp, st, temperature);
  }
  // Hard sync: the reference becomes the policy again.
  void sync(P& policy) {
    auto src = policy.parameters();
    auto dst = model_.parameters();
    expect(src.size() == dst.size(), "reference::frozen::sync", "the policy has ", src.size(),
           " parameters, the reference ", dst.size(), ", expected equal");
    std::copy(src.begin(), src.end(), dst.begin());
  }
  // Soft sync (TR-DPO): θ_ref ← α·θ + (1 − α)·θ_ref, α in [0, 1].
  void mix(P& policy, double alpha) {
    constexpr const char* where = "reference::frozen::mix";
    expect(alpha >= 0 && alpha <= 1, where, "alpha = ", alpha, ", expected in [0, 1]");
    auto src = policy.parameters();
    auto dst = model_.parameters();
    expect(src.size() == dst.size(), where, "the policy has ", src.size(),
           " parameters, the reference ", dst.size(), ", expected equal");
    for (std::size_t i = 0; i < dst.size(); ++i)
      dst[i] = static_cast<scalar_type>(alpha * static_cast<double>(src[i]) +
                                        (1 - alpha) * static_cast<double>(dst[i]));
  }
  P& model() { return model_; }
  double temperature = 1.0;  // divides the reference's logits (match the policy's)

 private:
  P model_;
};

template <class S>
struct none : model_detail::disabled<S> {
  void logprobs(const token_sequences&, std::span<S>) {
    model_detail::disabled<S>::refuse("reference::none::logprobs", "reference::none");
  }
};

// Log-probs cached per example id. precompute() asks another reference model once; logprobs()
// looks each sequence up by id and checks its length. save()/load(): a little-endian binary file
// ("PTREFLP1", count, then per entry id, length, length doubles).
template <class S>
class precomputed {
 public:
  static constexpr bool enabled = true;
  using scalar_type = S;

  template <class R>
  void precompute(R& ref, const token_sequences& s) {
    constexpr const char* where = "reference::precomputed::precompute";
    s.validate(where, "sequences");
    expect(ssize(s.ids) == s.num_sequences(), where,
           "sequences.ids is empty, expected one example id per sequence (the cache key)");
    std::vector<S> lp(s.tokens.size());
    ref.logprobs(s, std::span<S>(lp));
    for (index_t b = 0; b < s.num_sequences(); ++b)
      table_[s.ids[b]] = std::vector<double>(lp.begin() + s.seq_offsets[b],
                                             lp.begin() + s.seq_offsets[b + 1]);
  }

  void logprobs(const token_sequences& s, std::span<S> lp) {
    constexpr const char* where = "reference::precomputed::logprobs";
    expect_size(lp, s.num_tokens(), where, "logprobs", "one per token");
    expect(ssize(s.ids) == s.num_sequences(), where,
           "sequences.ids has ", s.ids.size(), " ids, expected one per sequence (",
           s.num_sequences(), ") to look the cached log-probs up");
    // Check every lookup before writing anything.
    for (index_t b = 0; b < s.num_sequences(); ++b) {
      auto it = table_.find(s.ids[b]);
      expect(it != table_.end(), where, "no cached log-probs for example id ", s.ids[b],
             " (sequence ", b, ")");
      const index_t len = s.seq_offsets[b + 1] - s.seq_offsets[b];
      expect(static_cast<index_t>(it->second.size()) == len, where, "example id ", s.ids[b],
             " has ", it->second.size(), " cached log-probs, but sequence ", b, " has ", len,
             " tokens");
    }
    for (index_t b = 0; b < s.num_sequences(); ++b) {
      const auto& v = table_.find(s.ids[b])->second;
      for (std::size_t i = 0; i < v.size(); ++i) lp[s.seq_offsets[b] + i] = static_cast<S>(v[i]);
    }
  }

  std::size_t size() const { return table_.size(); }

  void save(const std::string& path) const {
    std::ofstream f(path, std::ios::binary);
    expect(static_cast<bool>(f), "reference::precomputed::save", "cannot open ", path);
    f.write("PTREFLP1", 8);
    write_u64(f, table_.size());
    for (const auto& [id, v] : table_) {
      write_u64(f, id);
      write_u64(f, v.size());
      f.write(reinterpret_cast<const char*>(v.data()),
              static_cast<std::streamsize>(v.size() * sizeof(double)));
    }
    expect(static_cast<bool>(f), "reference::precomputed::save", "writing ", path, " failed");
  }

  // Replaces the table only when the whole file was read.
  void load(const std::string& path) {
    constexpr const char* where = "reference::precomputed::load";
    std::ifstream f(path, std::ios::binary);
    expect(static_cast<bool>(f), where, "cannot open ", path);
    char magic[8] = {};
    f.read(magic, 8);
    expect(f && std::memcmp(magic, "PTREFLP1", 8) == 0, where, path,
           " is not a reference::precomputed file (bad magic)");
    std::unordered_map<std::uint64_t, std::vector<double>> t;
    const std::uint64_t n = read_u64(f, path);
    for (std::uint64_t i = 0; i < n; ++i) {
      const std::uint64_t id = read_u64(f, path), len = read_u64(f, path);
      expect(len < (std::uint64_t(1) << 40), where, path, ": entry ", i, " has length ", len);
      std::vector<double> v(len);
      f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(len * sizeof(double)));
      expect(static_cast<bool>(f), where, path, " is truncated in entry ", i, " of ", n);
      t.emplace(id, std::move(v));
    }
    table_ = std::move(t);
  }

 private:
  static void write_u64(std::ofstream& f, std::uint64_t x) {
    unsigned char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(x >> (8 * i));
    f.write(reinterpret_cast<const char*>(b), 8);
  }
  static std::uint64_t read_u64(std::ifstream& f, const std::string& path) {
    unsigned char b[8];
    f.read(reinterpret_cast<char*>(b), 8);
    expect(static_cast<bool>(f), "reference::precomputed::load", path, " is truncated");
    std::uint64_t x = 0;
    for (int i = 0; i < 8; ++i) x |= static_cast<std::uint64_t>(b[i]) << (8 * i);
    return x;
  }
  std::unordered_map<std::uint64_t, std::vector<double>> table_;
};

}  // namespace reference

static_assert(check_reference_model<reference::none<float>>());
static_assert(check_reference_model<reference::precomputed<double>>());

}  // namespace pipeline

POSTTRAIN_NAMESPACE_END
