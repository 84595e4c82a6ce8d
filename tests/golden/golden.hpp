#pragma once
// Reader and comparator for the golden vectors of tests/golden/data/*.json, which
// tests/golden/generate.py writes by calling the peers' REAL functions (float32, torch CPU).
//
// A tensor is {"shape": [...], "data": [flat row-major]}; every number is a float32 value written
// with 9 significant digits (exact round trip). The comparison is
//   |ours − peer| <= atol + rtol·|peer|
// with rtol = atol = 1e-6 by default: the peers compute in float32, so a disagreement above that
// is a formula or convention difference, not rounding.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstddef>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "posttrain/core/types.hpp"

#ifndef POSTTRAIN_GOLDEN_DIR
#error "POSTTRAIN_GOLDEN_DIR must name tests/golden/data (set by tests/CMakeLists.txt)"
#endif

namespace golden {

using json = nlohmann::json;
using vec = std::vector<double>;

inline json load(const std::string& file) {
  const std::string path = std::string(POSTTRAIN_GOLDEN_DIR) + "/" + file;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("golden: cannot open " + path);
  return json::parse(in);
}

// A number, or "inf" / "-inf" / "nan" (strict JSON has no non-finite numbers).
inline double number(const json& v) {
  if (v.is_number()) return v.get<double>();
  const std::string s = v.get<std::string>();
  if (s == "inf") return std::numeric_limits<double>::infinity();
  if (s == "-inf") return -std::numeric_limits<double>::infinity();
  if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
  throw std::runtime_error("golden: not a number: " + s);
}
inline vec data(const json& t) {
  vec out;
  for (const json& v : t.at("data")) out.push_back(number(v));
  return out;
}
inline std::vector<long> shape(const json& t) { return t.at("shape").get<std::vector<long>>(); }
inline double scalar(const json& t) {
  if (t.is_number() || t.is_string()) return number(t);
  const vec d = data(t);
  if (d.size() != 1) throw std::runtime_error("golden: tensor is not a scalar");
  return d[0];
}
inline std::vector<float> as_float(const vec& v) { return {v.begin(), v.end()}; }

// Row-major [B, T] tensor: seq_offsets {0, T, 2T, ...}.
inline std::vector<posttrain::index_t> row_offsets(const json& t) {
  const auto s = shape(t);
  std::vector<posttrain::index_t> o(static_cast<std::size_t>(s.at(0)) + 1);
  for (std::size_t b = 0; b < o.size(); ++b) o[b] = static_cast<posttrain::index_t>(b * s.at(1));
  return o;
}

// Sorted, contiguous group ids -> group offsets.
inline std::vector<posttrain::index_t> group_offsets(const json& index) {
  const auto ids = index.get<std::vector<long>>();
  std::vector<posttrain::index_t> o{0};
  for (std::size_t i = 1; i < ids.size(); ++i) {
    if (ids[i] < ids[i - 1]) throw std::runtime_error("golden: index is not sorted");
    if (ids[i] != ids[i - 1]) o.push_back(static_cast<posttrain::index_t>(i));
  }
  o.push_back(static_cast<posttrain::index_t>(ids.size()));
  return o;
}

// Per-row sum of a [B, T] tensor (verl: scores = token_level_rewards.sum(-1)).
inline vec row_sums(const json& t) {
  const auto s = shape(t);
  const vec d = data(t);
  vec r(static_cast<std::size_t>(s.at(0)), 0.0);
  for (long b = 0; b < s.at(0); ++b)
    for (long j = 0; j < s.at(1); ++j) r[b] += d[b * s.at(1) + j];
  return r;
}

inline void expect_close(const vec& ours, const vec& peer, const std::string& what,
                         double rtol = 1e-6, double atol = 1e-6) {
  ASSERT_EQ(ours.size(), peer.size()) << what;
  for (std::size_t i = 0; i < ours.size(); ++i) {
    if (std::isnan(peer[i]) && std::isnan(ours[i])) continue;
    EXPECT_LE(std::abs(ours[i] - peer[i]), atol + rtol * std::abs(peer[i]))
        << what << " [" << i << "]: ours " << ours[i] << " peer " << peer[i];
  }
}
inline void expect_close(double ours, double peer, const std::string& what, double rtol = 1e-6,
                         double atol = 1e-6) {
  expect_close(vec{ours}, vec{peer}, what, rtol, atol);
}

// Compare only where mask != 0: at masked (padding / observation) tokens verl leaves whatever
// its arithmetic produced (whitened padding, reverse cumsums through holes), which no loss reads;
// our library writes 0 there.
inline void expect_close_masked(const vec& ours, const vec& peer, const vec& mask,
                                const std::string& what, double rtol = 1e-6, double atol = 1e-6) {
  ASSERT_EQ(ours.size(), peer.size()) << what;
  ASSERT_EQ(mask.size(), peer.size()) << what;
  vec o, p;
  for (std::size_t i = 0; i < mask.size(); ++i)
    if (mask[i] != 0.0) o.push_back(ours[i]), p.push_back(peer[i]);
  expect_close(o, p, what + " (unmasked tokens)", rtol, atol);
}

// The cases of a file whose "fn" is fn (at least one must exist: a test that finds none fails).
inline std::vector<json> cases(const json& file, const std::string& fn) {
  std::vector<json> out;
  for (const json& c : file.at("cases"))
    if (c.at("fn") == fn) out.push_back(c);
  EXPECT_FALSE(out.empty()) << "no golden case for " << fn;
  return out;
}

// The case called `name` in a file's "cases" list (a renamed or missing case throws, so its test fails loudly).
inline const json& named_case(const json& file, const std::string& name) {
  for (const json& c : file.at("cases"))
    if (c.at("name") == name) return c;
  throw std::runtime_error("golden: no case " + name);
}

}  // namespace golden
