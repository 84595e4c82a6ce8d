// conventions::trl::loss_type normalisers against TRL GRPOTrainer._compute_loss written out
// naively in float64 (algorithms.md §1.7), and a few peer presets reached through conventions::.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "posttrain/conventions.hpp"

namespace pt = posttrain;

namespace {

// A padded batch B x T with ragged completions (and one empty row), GA accumulation steps.
struct trl_batch {
  int rows = 5;
  int width = 7;
  std::vector<pt::index_t> offsets;
  std::vector<float> mask;
  std::vector<double> loss;  // per-token loss L (B x T)

  explicit trl_batch(unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    const int lengths[] = {7, 3, 0, 5, 1};
    for (int i = 0; i <= rows; ++i) offsets.push_back(static_cast<pt::index_t>(i * width));
    for (int i = 0; i < rows; ++i)
      for (int t = 0; t < width; ++t) {
        mask.push_back(t < lengths[i] ? 1.0f : 0.0f);
        loss.push_back(normal(rng));
      }
  }
  double row_sum(int i) const {
    double s = 0;
    for (int t = 0; t < width; ++t) s += mask[i * width + t] * loss[i * width + t];
    return s;
  }
  double row_len(int i) const {
    double s = 0;
    for (int t = 0; t < width; ++t) s += mask[i * width + t];
    return s;
  }
  double tokens() const {
    double s = 0;
    for (float m : mask) s += m;
    return s;
  }
};

template <class Preset>
double run(const trl_batch& b, const pt::agg_normalizer& norm, std::vector<double>& grad) {
  grad.assign(b.loss.size(), 0.0);
  return pt::aggregate_loss<typename Preset::aggregation>(
             pt::exec::host{}, std::span<const double>(b.loss), std::span<const float>(b.mask),
             std::span<const pt::index_t>(b.offsets), norm, std::span<double>(grad),
             Preset::options())
      .loss;
}

// d loss / d L by central differences of a naive float64 formula.
template <class F>
void expect_grad_matches(const trl_batch& b, const std::vector<double>& grad, F naive) {
  for (std::size_t k = 0; k < b.loss.size(); ++k) {
    trl_batch p = b, m = b;
    const double h = 1e-6;
    p.loss[k] += h;
    m.loss[k] -= h;
    EXPECT_NEAR(grad[k], (naive(p) - naive(m)) / (2 * h), 1e-7) << "token " << k;
  }
}

constexpr double ga = 2.0;

}  // namespace

TEST(TrlLossType, GrpoIsMeanOverAllRowsOfClampedTokenMeansOverGa) {
  const trl_batch b(1);
  const auto naive = [](const trl_batch& x) {
    double s = 0;
    for (int i = 0; i < x.rows; ++i) s += x.row_sum(i) / std::max(x.row_len(i), 1.0);
    return s / x.rows / ga;
  };
  std::vector<double> grad;
  using preset = pt::conventions::trl::loss_type::grpo;
  EXPECT_NEAR(run<preset>(b, preset::normalizer(b.rows, ga), grad), naive(b), 1e-12);
  expect_grad_matches(b, grad, naive);
}

TEST(TrlLossType, BnpoIsLocalTokenMeanOverGa) {
  const trl_batch b(2);
  const auto naive = [](const trl_batch& x) {
    double s = 0;
    for (int i = 0; i < x.rows; ++i) s += x.row_sum(i);
    return s / std::max(x.tokens(), 1.0) / ga;
  };
  std::vector<double> grad;
  using preset = pt::conventions::trl::loss_type::bnpo;
  EXPECT_NEAR(run<preset>(b, preset::normalizer(b.tokens(), ga), grad), naive(b), 1e-12);
  expect_grad_matches(b, grad, naive);
}

TEST(TrlLossType, DrGrpoDividesByRowsTimesMaxCompletionLength) {
  const trl_batch b(3);
  const double max_completion_length = 512;
  const auto naive = [&](const trl_batch& x) {
    double s = 0;
    for (int i = 0; i < x.rows; ++i) s += x.row_sum(i);
    return s / (x.rows * max_completion_length) / ga;
  };
  std::vector<double> grad;
  using preset = pt::conventions::trl::loss_type::dr_grpo;
  EXPECT_NEAR(run<preset>(b, preset::normalizer(b.rows, max_completion_length, ga), grad),
              naive(b), 1e-12);
  expect_grad_matches(b, grad, naive);
}

TEST(TrlLossType, DapoDividesByGlobalItemsPerProcess) {
  const trl_batch b(4);
  const double num_items_in_batch = 61, processes = 4;
  const auto naive = [&](const trl_batch& x) {
    double s = 0;
    for (int i = 0; i < x.rows; ++i) s += x.row_sum(i);
    return s / (num_items_in_batch / processes);
  };
  std::vector<double> grad;
  using preset = pt::conventions::trl::loss_type::dapo;
  EXPECT_NEAR(run<preset>(b, preset::normalizer(num_items_in_batch, processes), grad), naive(b),
              1e-12);
  expect_grad_matches(b, grad, naive);
}

TEST(TrlLossType, LuspoWeighsTheSequenceLossByItsLength) {
  // LUSPO's per-token loss is the sequence loss L_i repeated on every token of row i.
  trl_batch b(5);
  for (int i = 0; i < b.rows; ++i)
    for (int t = 1; t < b.width; ++t) b.loss[i * b.width + t] = b.loss[i * b.width];
  std::vector<double> grad;
  using preset = pt::conventions::trl::loss_type::luspo;
  double expected = 0;
  for (int i = 0; i < b.rows; ++i) expected += b.loss[i * b.width] * b.row_len(i);
  expected /= b.rows * ga;
  EXPECT_NEAR(run<preset>(b, preset::normalizer(b.rows, ga), grad), expected, 1e-12);
}

TEST(TrlLossType, AllMaskedBatchGivesZeroNotNan) {
  trl_batch b(6);
  std::fill(b.mask.begin(), b.mask.end(), 0.0f);
  std::vector<double> grad;
  using bnpo = pt::conventions::trl::loss_type::bnpo;
  EXPECT_EQ(run<bnpo>(b, bnpo::normalizer(b.tokens(), ga), grad), 0.0);
  for (double g : grad) EXPECT_EQ(g, 0.0);
}

TEST(Conventions, PeerPresetsDifferWhereThePeersDiffer) {
  namespace c = pt::conventions;
  EXPECT_EQ(c::verl::ppo().dual_clip, 3.0);                     // verl: dual clip always on
  EXPECT_TRUE(std::isinf(c::openrlhf::ppo().dual_clip));        // OpenRLHF: off by default
  EXPECT_EQ(c::verl::ppo().log_ratio_max, 20.0);                // verl clamps ±20
  EXPECT_TRUE(std::isinf(c::trl::grpo().log_ratio_max));        // TRL: no clamp
  EXPECT_EQ(c::open_instruct::dapo().clip_high, 0.272);         // open-instruct clip-higher
  EXPECT_EQ(c::trl::cispo_surrogate().cap, pt::cispo_cap::absolute_upper);
  EXPECT_EQ(c::verl::cispo_surrogate().cap, pt::cispo_cap::two_sided);
  EXPECT_EQ(c::open_instruct::cispo_surrogate().cap, pt::cispo_cap::relative_upper);
  EXPECT_EQ(c::verl::value.clip, 0.5);
  EXPECT_EQ(c::trl::value.clip, 0.2);
  EXPECT_EQ(c::trl::value.coef, 0.1);
  EXPECT_EQ(c::trl::group.epsilon, 1e-4);
  EXPECT_EQ(c::openrlhf::group.epsilon, 1e-9);
  EXPECT_EQ(c::open_instruct::dpo.beta, 5.0);
  EXPECT_TRUE(c::trl::aggregation().include_empty_sequences);
  EXPECT_FALSE(c::verl::aggregation().include_empty_sequences);
}
