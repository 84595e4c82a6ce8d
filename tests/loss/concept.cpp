// loss/concept.hpp: every family reached through the one Loss-concept call
// L::compute(exec, inputs, options, outputs, normalizer) gives bit for bit what its positional
// form gives (the uniform form only repackages the arguments), and a generic function written
// against loss_model accepts each family.
// Also the test of loss/preference_types.hpp and loss/policy_gradient_types.hpp (the types every
// family's Loss-concept members name; their backend contracts: the host specialisations run in
// every loss test, the missing CUDA one in tests/compile_fail/policy_gradient_cuda_backend.cpp).
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <vector>

#include <posttrain/algo.hpp>
#include <posttrain/loss/concept.hpp>

namespace pt = posttrain;

namespace {

// What pipeline/ will do: only the concept's names.
template <pt::loss_model L, class T>
typename L::result generic_call(const typename L::template inputs<T>& in,
                                const typename L::options_type& options,
                                const typename L::template outputs<T>& out,
                                const typename L::normalizer_type& norm = {}) {
  return L::compute(pt::exec::host{}, in, options, out, norm);
}

const std::vector<pt::index_t> offsets{0, 3, 5, 9};
const std::vector<float> mask{1, 1, 0, 1, 1, 1, 0.5f, 1, 0};
const std::vector<double> lp{-0.3, -1.2, -0.7, -2.0, -0.1, -0.9, -1.4, -0.05, -3.0};
const std::vector<double> old_lp{-0.35, -1.0, -0.6, -2.2, -0.12, -0.8, -1.5, -0.06, -2.9};
const std::vector<double> ref_lp{-0.4, -1.1, -0.8, -1.9, -0.2, -1.0, -1.3, -0.1, -2.8};
const std::vector<double> adv{0.5, 0.5, 0.5, -1.0, -1.0, 0.25, 0.25, 0.25, 0.25};

pt::policy_gradient_inputs<double> pg_inputs() {
  pt::policy_gradient_inputs<double> in;
  in.logprobs = lp;
  in.old_logprobs = old_lp;
  in.advantages = adv;
  in.ref_logprobs = ref_lp;
  in.mask = mask;
  in.seq_offsets = offsets;
  return in;
}

}  // namespace

TEST(LossConcept, PolicyGradientUniformFormEqualsPositional) {
  using L = pt::algo::grpo;
  const auto in = pg_inputs();
  pt::policy_gradient_loss_options o{pt::pg_presets::trl_grpo(0.04), pt::agg_conventions::trl()};
  pt::agg_normalizer n;
  n.sequences = 5.0;
  std::vector<double> g1(lp.size()), g2(lp.size());
  const auto a = L::compute(pt::exec::host{}, in, o.policy, {g1, {}}, n, o.aggregation);
  const auto b = generic_call<L, double>(in, o, {g2, {}}, n);
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(a.kl_loss, b.kl_loss);
  EXPECT_EQ(g1, g2);
  EXPECT_NE(a.loss, 0.0);
  // The aggregation options are read: TRL's include_empty_sequences changes nothing here (no empty
  // row), a length floor does.
  pt::policy_gradient_loss_options floored = o;
  floored.aggregation.length_floor = 10.0;
  EXPECT_NE((generic_call<L, double>(in, floored, {}, n).loss), b.loss);
}

TEST(LossConcept, KlCovUniformFormEqualsPositional) {
  using L = pt::algo::kl_cov;
  const auto in = pg_inputs();
  pt::loss::kl_cov_loss_options o;
  o.selection.ratio = 0.5;
  std::vector<double> g1(lp.size()), g2(lp.size());
  const auto a = L::compute(pt::exec::host{}, in, o.selection, o.policy, {g1, {}});
  const auto b = generic_call<L, double>(in, o, {g2, {}});
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(a.selected, b.selected);
  EXPECT_EQ(g1, g2);
}

TEST(LossConcept, ValueAndSftUniformFormEqualPositional) {
  using V = pt::loss::value_clipped<pt::agg::seq_mean_token_mean>;
  pt::value_inputs<double> vin{lp, old_lp, ref_lp, mask, offsets};
  pt::value_loss_options vo{pt::value_conventions::trl, pt::agg_conventions::trl()};
  std::vector<double> g1(lp.size()), g2(lp.size());
  const auto va = V::compute(pt::exec::host{}, vin, vo.value, std::span<double>(g1), {},
                             vo.aggregation);
  const auto vb = generic_call<V, double>(vin, vo, {g2});
  EXPECT_EQ(va.loss, vb.loss);
  EXPECT_EQ(g1, g2);

  using S = pt::algo::sft_sample_mean;
  const pt::token_batch batch{offsets, mask};
  std::vector<double> s1(lp.size()), s2(lp.size());
  const auto sa = S::compute(pt::exec::host{}, std::span<const double>(lp), batch,
                             std::span<double>(s1));
  const auto sb = generic_call<S, double>({lp, batch}, {}, {s2});
  EXPECT_EQ(sa.loss, sb.loss);
  EXPECT_EQ(s1, s2);
  EXPECT_GT(sb.loss, 0.0);
}

TEST(LossConcept, PreferenceFamiliesUniformFormEqualPositional) {
  const std::vector<pt::index_t> co{0, 2, 5}, ro{0, 3, 4};
  const std::vector<float> cm{1, 1, 1, 0, 1}, rm{1, 1, 1, 1};
  const std::vector<double> c{-0.5, -0.7, -1.1, -9.0, -0.2}, r{-1.5, -0.9, -0.4, -2.2};
  const std::vector<double> rc{-1.0, -1.9}, rr{-2.5, -2.0};
  pt::loss::preference_inputs<double> in;
  in.batch = {{co, cm}, {ro, rm}};
  in.chosen_logprobs = c;
  in.rejected_logprobs = r;
  in.reference_chosen = rc;
  in.reference_rejected = rr;

  {  // MPO: the weights live in the options under the concept
    using L = pt::algo::mpo;
    std::vector<double> g1(c.size()), g2(c.size());
    const auto a = L::compute(pt::exec::host{}, in, pt::pref::presets::mpo_weights,
                              pt::loss::preference_options{}, {g1, {}});
    const auto b = generic_call<L, double>(in, {pt::pref::presets::mpo_weights, {}}, {g2, {}});
    EXPECT_EQ(a.loss, b.loss);
    EXPECT_EQ(g1, g2);
  }
  {  // BCO with TRL v0.26's running mean: the shift lives in the options
    using L = pt::algo::bco_pair_running_mean;
    const auto a = L::compute(pt::exec::host{}, in, 0.3, pt::loss::preference_options{});
    const auto b = generic_call<L, double>(in, {0.3, {}}, {});
    EXPECT_EQ(a.loss, b.loss);
  }
  {  // OpenRLHF's paired KTO gained the exec-tagged form
    using L = pt::algo::kto_vanilla_paired;
    const auto a = L::compute(in, pt::loss::kto_vanilla_options{});
    const auto b = generic_call<L, double>(in, {}, {});
    EXPECT_EQ(a.loss, b.loss);
    EXPECT_GT(b.loss, 0.0);
  }
  {  // the DPO family needs no repackaging
    using L = pt::algo::dpo;
    const auto a = L::compute(in, pt::loss::preference_options{.beta = 0.2});
    const auto b = generic_call<L, double>(in, {.beta = 0.2}, {});
    EXPECT_EQ(a.loss, b.loss);
  }
}

TEST(LossConcept, KtoAndRewardModelModelTheConcept) {
  static_assert(pt::loss_model<pt::algo::kto>);
  static_assert(pt::loss_model<pt::algo::bradley_terry>);
  const std::vector<double> ch{0.5, 1.0}, rj{0.1, 1.5};
  pt::loss::reward_model_inputs<double> in{ch, rj};
  const auto a = pt::algo::bradley_terry::compute(in);
  const auto b = generic_call<pt::algo::bradley_terry, double>(in, {}, {});
  EXPECT_EQ(a.loss, b.loss);
}
