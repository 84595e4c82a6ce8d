#pragma once
// Rotary position embedding in Hugging Face's rotate_half convention: the head vector of size D is
// split in halves (a = x[0:D/2], b = x[D/2:D]) and pair (a_j, b_j) is rotated by the angle
// p · θ^(−2j/D), p the token's position in its sequence:
//   a'_j = a_j cos − b_j sin,    b'_j = b_j cos + a_j sin
// The backward is the rotation by the opposite angle (a rotation's transpose is its inverse).
// Angles are formed in the model's scalar type (inv_freq · p), as transformers does in float32, so
// a float model sees the same rounding as the peer.
#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "parameters.hpp"

namespace reference_model {

template <class S>
class rope_table {
 public:
  rope_table() = default;
  rope_table(index_t head_dim, double theta) : half_(head_dim / 2) {
    inv_freq_.resize(static_cast<std::size_t>(half_));
    for (index_t j = 0; j < half_; ++j)
      inv_freq_[j] = S(1.0 / std::pow(theta, double(2 * j) / double(head_dim)));
  }
  index_t half() const { return half_; }
  // cos/sin of position p for pair j.
  void angles(index_t p, std::vector<S>& c, std::vector<S>& s) const {
    c.resize(static_cast<std::size_t>(half_));
    s.resize(static_cast<std::size_t>(half_));
    for (index_t j = 0; j < half_; ++j) {
      const S a = S(p) * inv_freq_[j];
      c[j] = std::cos(a);
      s[j] = std::sin(a);
    }
  }

  // Rotates every head of every row of x [N, heads·D] in place; sign = −1 applies the inverse
  // (the backward). cos/sin are tabulated once per call for positions 0..max(positions): packed
  // batches repeat the same few hundred positions across sequences, heads and rows.
  template <class X>
  void apply(X& x, std::span<const index_t> positions, index_t heads, int sign) const {
    if (x.rows() == 0) return;
    const index_t d = 2 * half_;
    const index_t max_pos = *std::max_element(positions.begin(), positions.begin() + x.rows());
    // Per-thread scratch: no allocation per call once grown (generation calls this twice per
    // layer and decode step).
    thread_local std::vector<S> cs, sn, c, s;
    cs.resize(static_cast<std::size_t>((max_pos + 1) * half_));
    sn.resize(cs.size());
    for (index_t p = 0; p <= max_pos; ++p) {
      angles(p, c, s);
      std::copy(c.begin(), c.end(), cs.begin() + p * half_);
      std::copy(s.begin(), s.end(), sn.begin() + p * half_);
    }
    const S sg = sign > 0 ? S(1) : S(-1);
    for (index_t i = 0; i < x.rows(); ++i) {
      const S* ci = cs.data() + positions[i] * half_;
      const S* si = sn.data() + positions[i] * half_;
      for (index_t h = 0; h < heads; ++h) {
        S* row = &x(i, h * d);
        for (index_t j = 0; j < half_; ++j) {
          const S a = row[j], b = row[j + half_], sj = sg * si[j];
          row[j] = a * ci[j] - b * sj;
          row[j + half_] = b * ci[j] + a * sj;
        }
      }
    }
  }

 private:
  index_t half_ = 0;
  std::vector<S> inv_freq_;
};

}  // namespace reference_model
