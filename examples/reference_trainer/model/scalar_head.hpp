#pragma once
// A scalar head on the trunk's hidden states: the value head of a PPO critic or the score head of
// a reward model (HF's *ForSequenceClassification "score.weight", [1, H], no bias; value heads
// often carry a bias, so it is optional here).
//   values_i = h_i · w + b                     h = transformer::forward's output [N, H]
// Backward (dv = dL/dvalues [N]):  d_hidden_i += dv_i w,  dw += Σ_i dv_i h_i,  db += Σ_i dv_i.
#include <span>
#include <vector>

#include "parameters.hpp"

namespace reference_model {

template <class S>
struct scalar_head {
  vector<S> weight, d_weight;  // [H]
  S bias = 0, d_bias = 0;
  bool has_bias = false;

  scalar_head(index_t hidden, bool with_bias)
      : weight(vector<S>::Zero(hidden)), d_weight(vector<S>::Zero(hidden)), has_bias(with_bias) {}

  vector<S> forward(const matrix<S>& hidden) const {
    posttrain::expect(hidden.cols() == weight.size(), "reference_model::scalar_head::forward",
                      "hidden has ", hidden.cols(), " columns, expected ", weight.size());
    vector<S> v = hidden * weight;
    if (has_bias) v.array() += bias;
    return v;
  }
  // d_hidden is ADDED to (it usually already holds the lm_head's gradient, or zeros).
  void backward(const matrix<S>& hidden, std::span<const S> d_values, matrix<S>& d_hidden) {
    posttrain::expect(static_cast<index_t>(d_values.size()) == hidden.rows() &&
                          d_hidden.rows() == hidden.rows() && d_hidden.cols() == hidden.cols(),
                      "reference_model::scalar_head::backward", "d_values has ", d_values.size(),
                      " entries and d_hidden is [", d_hidden.rows(), ", ", d_hidden.cols(),
                      "], expected ", hidden.rows(), " and the shape of hidden");
    const Eigen::Map<const vector<S>> dv(d_values.data(), hidden.rows());
    d_hidden.noalias() += dv * weight.transpose();
    d_weight.noalias() += hidden.transpose() * dv;
    if (has_bias) d_bias += dv.sum();
  }
};

}  // namespace reference_model
