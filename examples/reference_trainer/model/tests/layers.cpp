// Finite-difference checks (double) of every layer's hand-written backward, one layer at a time:
// RMSNorm, RoPE, linear, attention (with q/k/v/o biases, GQA, a packed batch holding an empty
// sequence), SwiGLU MLP. The loss is Σ R ⊙ y for a fixed random R, so dL/dy = R.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "fd.hpp"
#include "test_models.hpp"
#include "transformer.hpp"

namespace rm = reference_model;
using rm::index_t;
using rm::testing::fd_max_error;
using rm::testing::fill_normal;
using md = rm::matrix<double>;
using vd = rm::vector<double>;

namespace {

constexpr double kTol = 1e-7;

// The shared tiny config (untied) with 11 tokens; small θ: positions 0..6 turn the pairs by
// visible angles.
rm::model_config tiny(rm::architecture arch, bool bias) {
  rm::model_config c = rm::testing::tiny(arch, false, bias);
  c.vocab_size = 11;
  c.initializer_range = 0.5;
  return c;
}

using rm::testing::randomize;

std::span<double> span_of(md& m) { return {m.data(), static_cast<std::size_t>(m.size())}; }
std::span<double> span_of(vd& m) { return {m.data(), static_cast<std::size_t>(m.size())}; }
template <class M>
std::span<double> span_of(Eigen::Map<M>& m) {
  return {m.data(), static_cast<std::size_t>(m.size())};
}

}  // namespace

TEST(ReferenceModelLayers, RmsNormGradient) {
  std::mt19937_64 rng(1);
  md x(5, 7), r(5, 7);
  vd w(7);
  fill_normal(x, rng);
  fill_normal(r, rng);
  fill_normal(w, rng);
  const double eps = 1e-3;
  auto loss = [&] {
    md y;
    vd rs;
    rm::rmsnorm_forward<double>(x, w, eps, y, rs);
    return y.cwiseProduct(r).sum();
  };
  md y;
  vd rs;
  rm::rmsnorm_forward<double>(x, w, eps, y, rs);
  md dx = md::Zero(5, 7);
  vd dw = vd::Zero(7);
  rm::rmsnorm_backward<double>(x, w, rs, r, dx, dw);
  EXPECT_LT(fd_max_error(span_of(x), span_of(dx), loss), kTol);
  EXPECT_LT(fd_max_error(span_of(w), span_of(dw), loss), kTol);
}

TEST(ReferenceModelLayers, RopeGradientAndInverse) {
  std::mt19937_64 rng(2);
  const index_t heads = 3, d = 6;
  rm::rope_table<double> rope(d, 100.0);
  md x(4, heads * d), r(4, heads * d);
  fill_normal(x, rng);
  fill_normal(r, rng);
  const std::vector<index_t> pos = {0, 1, 5, 2};
  auto loss = [&] {
    md y = x;
    rope.apply(y, pos, heads, +1);
    return y.cwiseProduct(r).sum();
  };
  md dx = r;
  rope.apply(dx, pos, heads, -1);
  EXPECT_LT(fd_max_error(span_of(x), span_of(dx), loss), kTol);
  // Position 0 is the identity; forward then inverse is the identity.
  md y = x;
  rope.apply(y, pos, heads, +1);
  EXPECT_LT((y.row(0) - x.row(0)).cwiseAbs().maxCoeff(), 1e-15);
  EXPECT_GT((y.row(2) - x.row(2)).cwiseAbs().maxCoeff(), 1e-2);
  rope.apply(y, pos, heads, -1);
  EXPECT_LT((y - x).cwiseAbs().maxCoeff(), 1e-14);
}

TEST(ReferenceModelLayers, LinearGradient) {
  std::mt19937_64 rng(3);
  md x(5, 4), w(3, 4), r(5, 3);
  vd b(3);
  fill_normal(x, rng);
  fill_normal(w, rng);
  fill_normal(b, rng);
  fill_normal(r, rng);
  auto loss = [&] {
    md y(5, 3);
    rm::linear_forward<double>(x, w, b, y);
    return y.cwiseProduct(r).sum();
  };
  md dx(5, 4), dw = md::Zero(3, 4);
  vd db = vd::Zero(3);
  rm::linear_backward<double>(x, w, r, dx, rm::grad_mode::overwrite, dw, db);
  EXPECT_LT(fd_max_error(span_of(x), span_of(dx), loss), kTol);
  EXPECT_LT(fd_max_error(span_of(w), span_of(dw), loss), kTol);
  EXPECT_LT(fd_max_error(span_of(b), span_of(db), loss), kTol);
}

class AttentionGradient : public ::testing::TestWithParam<std::pair<rm::architecture, bool>> {};

TEST_P(AttentionGradient, MatchesFiniteDifferences) {
  const auto [arch, bias] = GetParam();
  rm::transformer<double> m(tiny(arch, bias));
  randomize(m, 4, 0.5);
  std::mt19937_64 rng(5);
  const std::vector<index_t> offsets = {0, 3, 3, 7};  // sequences of 3, 0 and 4 tokens
  const std::vector<index_t> pos = {0, 1, 2, 0, 1, 2, 3};
  md x(7, 8), r(7, 8);
  fill_normal(x, rng);
  fill_normal(r, rng);
  const auto shape = m.attn_shape();
  auto& w = m.weights().layers[0];
  auto loss = [&] {
    rm::attention_cache<double> c;
    md y;
    rm::attention_forward<double>(w, shape, m.rope(), x, offsets, pos, c, y);
    return y.cwiseProduct(r).sum();
  };
  rm::attention_cache<double> c;
  md y;
  rm::attention_forward<double>(w, shape, m.rope(), x, offsets, pos, c, y);
  md dx = md::Zero(7, 8);
  m.zero_grad();
  auto& g = m.grad_views().layers[0];
  rm::attention_backward<double>(w, g, shape, m.rope(), x, offsets, pos, c, r, dx);
  EXPECT_LT(fd_max_error(span_of(x), span_of(dx), loss), kTol);
  EXPECT_LT(fd_max_error(span_of(w.wq), span_of(g.wq), loss), kTol);
  EXPECT_LT(fd_max_error(span_of(w.wk), span_of(g.wk), loss), kTol);
  EXPECT_LT(fd_max_error(span_of(w.wv), span_of(g.wv), loss), kTol);
  EXPECT_LT(fd_max_error(span_of(w.wo), span_of(g.wo), loss), kTol);
  if (m.config().qkv_bias()) {
    EXPECT_LT(fd_max_error(span_of(w.bq), span_of(g.bq), loss), kTol);
    EXPECT_LT(fd_max_error(span_of(w.bk), span_of(g.bk), loss), kTol);
    EXPECT_LT(fd_max_error(span_of(w.bv), span_of(g.bv), loss), kTol);
  }
  if (m.config().o_bias()) {
    EXPECT_LT(fd_max_error(span_of(w.bo), span_of(g.bo), loss), kTol);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Archs, AttentionGradient,
    ::testing::Values(std::pair{rm::architecture::llama, false},
                      std::pair{rm::architecture::llama, true},
                      std::pair{rm::architecture::qwen2, false}));

TEST(ReferenceModelLayers, AttentionNeverCrossesSequences) {
  // Changing a token of sequence 0 leaves sequence 1's outputs bit-identical, and a token's output
  // does not depend on later tokens of its own sequence (causality).
  rm::transformer<double> m(tiny(rm::architecture::qwen2, false));
  randomize(m, 6, 0.5);
  std::mt19937_64 rng(7);
  const std::vector<index_t> offsets = {0, 3, 7};
  const std::vector<index_t> pos = {0, 1, 2, 0, 1, 2, 3};
  md x(7, 8);
  fill_normal(x, rng);
  auto run = [&](const md& in) {
    rm::attention_cache<double> c;
    md y;
    rm::attention_forward<double>(m.weights().layers[0], m.attn_shape(), m.rope(), in, offsets,
                                  pos, c, y);
    return y;
  };
  const md y0 = run(x);
  md x1 = x;
  x1.row(1).array() += 1.0;  // sequence 0, position 1
  x1.row(6).array() += 1.0;  // sequence 1, last position
  const md y1 = run(x1);
  EXPECT_EQ(y0.row(0), y1.row(0));              // before the change, same sequence
  EXPECT_NE(y0.row(2), y1.row(2));              // after it
  EXPECT_EQ(y0.block(3, 0, 3, 8), y1.block(3, 0, 3, 8));  // other sequence, earlier positions
}

TEST(ReferenceModelLayers, MlpGradient) {
  rm::transformer<double> m(tiny(rm::architecture::llama, false));
  randomize(m, 8, 0.5);
  std::mt19937_64 rng(9);
  md x(5, 8), r(5, 8);
  fill_normal(x, rng);
  fill_normal(r, rng);
  auto& w = m.weights().layers[1];
  auto loss = [&] {
    rm::mlp_cache<double> c;
    md y;
    rm::mlp_forward<double>(w, x, c, y);
    return y.cwiseProduct(r).sum();
  };
  rm::mlp_cache<double> c;
  md y;
  rm::mlp_forward<double>(w, x, c, y);
  md dx = md::Zero(5, 8);
  m.zero_grad();
  auto& g = m.grad_views().layers[1];
  rm::mlp_backward<double>(w, g, x, c, r, dx);
  EXPECT_LT(fd_max_error(span_of(x), span_of(dx), loss), kTol);
  EXPECT_LT(fd_max_error(span_of(w.w_gate), span_of(g.w_gate), loss), kTol);
  EXPECT_LT(fd_max_error(span_of(w.w_up), span_of(g.w_up), loss), kTol);
  EXPECT_LT(fd_max_error(span_of(w.w_down), span_of(g.w_down), loss), kTol);
}
