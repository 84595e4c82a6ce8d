// Golden test: our policy-gradient compositions with the TRL presets and the
// conventions::trl::loss_type normalisers against TRL 1.16's GRPOTrainer._compute_loss itself
// (tests/golden/data/trl_grpo.json): loss value and torch.autograd's d loss / d per-token log-prob.
// generate.py calls the real method on an instance holding only the attributes it reads, with a
// torch module as the model whose forward returns the seeded per-token log-probs and entropies.
//
// Mapping (one per TRL option):
//   loss_type grpo|bnpo|dr_grpo|dapo   surrogate::clip (token level) / surrogate::gspo (sequence)
//   cispo / sapo / vespo / luspo       surrogate::cispo (trl_cispo) / sapo (trl_sapo) / vespo
//                                      (trl_vespo) / algo::luspo (trl_luspo)
//   epsilon, epsilon_high, delta       clip_low, clip_high, dual_clip = δ (pg_presets::trl_grpo)
//   beta > 0                           kl::k3 with kl_conventions::trl(), kl_coef = β
//   use_bias_correction_kl             kl_correction = token / sequence (importance level)
//   top_entropy_quantile ρ < 1         importance_weights ×= high_entropy_mask(ρ)
//   off_policy_mask_threshold δ        importance_weights ×= off_policy_sequence_mask(δ), ℓsamp = ℓold
//   normaliser                         conventions::trl::loss_type::<type>::normalizer(...)
//   vllm_importance_sampling_correction importance_weights ×= rollout_is_weights(ℓold, ℓsampling,
//     (mode, clip_max, clip_min)       conventions::trl::vllm_is(mode, max, min)) (VESPO: into
//                                      its sequence weight, pg_weight_use::log_ratio_sum)
//   entropy_coef c (bonus)             − c·masked_mean(H, m·entropy mask)/GA, beside the loss
//                                      (TRL's bonus is a token mean whatever the loss type):
//                                      conventions::trl::entropy_bonus(o, c, GA) with
//                                      inputs.entropy_mask = the top_entropy_quantile mask;
//                                      use_adaptive_entropy: loss::adaptive_entropy_controller
// Inputs: B = 6 rows of T = 9 tokens with an observation hole and (mask_empty) an all-masked row,
// per-row advantages with a 0, log-ratios of ±2 and ±2.5 (outside every clip range), a reference
// 8 nats away; GA = steps_per_generation = 2, num_items_in_batch = 2·Σm, max_completion_length 12.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "golden/golden.hpp"
#include "posttrain/conventions.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/loss/policy_gradient.hpp"
#include "posttrain/loss/policy_gradient/algorithms.hpp"
#include "posttrain/loss/policy_gradient/entropy_controller.hpp"
#include "posttrain/loss/policy_gradient/rollout_correction.hpp"
#include "posttrain/loss/policy_gradient/token_selection.hpp"
#include "posttrain/ops/reductions.hpp"

namespace pt = posttrain;
namespace lt = pt::conventions::trl::loss_type;
using golden::json;
using golden::vec;
using offs = std::vector<pt::index_t>;

namespace {

const json& file() {
  static const json f = golden::load("trl_grpo.json");
  return f;
}

struct grpo_case {
  std::string name, loss_type, level;
  json params_, outputs_, grads_;
  const json* params = nullptr;   // -> params_
  const json* outputs = nullptr;  // -> outputs_
  const json* grads = nullptr;    // -> grads_
  vec lp, old, ref, adv, entropy, weights, grad_expected;
  vec entropy_mask;  // [N] TRL's top_entropy_quantile mask (1 without one)
  std::vector<float> mask;
  offs seqs;
  vec sampling, is_ratio;  // vLLM sampling log-probs and our IS ratio (vLLM cases)
  double rows = 0, tokens = 0, loss_expected = 0;
  bool has_weights = false;
};

grpo_case read(const json& c) {
  const json& in = c.at("inputs");
  const json& p = c.at("params");
  grpo_case g;
  g.name = c.at("name");
  g.params_ = p;
  g.outputs_ = c.at("outputs");
  g.grads_ = c.at("grads");
  g.loss_type = p.at("loss_type");
  g.level = p.at("importance_sampling_level");
  g.lp = golden::data(in.at("per_token_logps"));
  g.old = golden::data(in.at("old_per_token_logps"));
  g.ref = golden::data(in.at("ref_per_token_logps"));
  g.entropy = golden::data(in.at("entropies"));
  g.mask = golden::as_float(golden::data(in.at("completion_mask")));
  g.seqs = golden::row_offsets(in.at("completion_mask"));
  const vec rows = golden::data(in.at("advantages"));  // TRL: one advantage per row
  const auto width = static_cast<std::size_t>(golden::shape(in.at("per_token_logps"))[1]);
  for (double a : rows) g.adv.insert(g.adv.end(), width, a);
  g.rows = static_cast<double>(rows.size());
  for (float m : g.mask) g.tokens += m;
  g.loss_expected = golden::scalar(c.at("outputs").at("loss"));
  g.grad_expected = golden::data(c.at("grads").at("per_token_logps"));

  // top_entropy_quantile and off_policy_mask_threshold: detached 0/1 weights on the surrogate
  // (TRL multiplies the per-token policy loss before adding β·KL).
  g.weights.assign(g.lp.size(), 1.0);
  pt::policy_gradient_inputs<double> sel;
  sel.logprobs = g.lp;
  sel.old_logprobs = g.old;  // TRL: sampling log-probs = ℓold without vLLM
  sel.advantages = g.adv;
  sel.mask = g.mask;
  sel.seq_offsets = g.seqs;
  sel.entropy = g.entropy;
  vec w(g.lp.size());
  const double rho = p.at("top_entropy_quantile").get<double>();
  g.entropy_mask.assign(g.lp.size(), 1.0);
  if (rho < 1.0) {
    pt::high_entropy_mask(pt::exec::host{}, sel, pt::high_entropy_mask_options{rho, {}},
                          std::span<double>(w));
    for (std::size_t t = 0; t < w.size(); ++t) g.weights[t] *= w[t];
    g.entropy_mask = w;
    g.has_weights = true;
  }
  // vLLM importance sampling: ρ from ℓold and the sampling log-probs, a detached factor on the
  // per-token policy loss (before β·KL), like the masks above.
  if (!p.at("vllm_importance_sampling_mode").is_null()) {
    g.sampling = golden::data(in.at("sampling_per_token_logps"));
    const std::string mode = p.at("vllm_importance_sampling_mode");
    const pt::trl_is_mode m = mode == "token_truncate"      ? pt::trl_is_mode::token_truncate
                              : mode == "token_mask"        ? pt::trl_is_mode::token_mask
                              : mode == "sequence_truncate" ? pt::trl_is_mode::sequence_truncate
                                                            : pt::trl_is_mode::sequence_mask;
    const json& lo = p.at("vllm_importance_sampling_clip_min");
    const pt::rollout_is_options o = pt::conventions::trl::vllm_is(
        m, p.at("vllm_importance_sampling_clip_max").get<double>(),
        lo.is_null() ? -pt::rollout_presets::inf : lo.get<double>());
    pt::rollout_inputs<double> ri;
    ri.logprobs = g.old;
    ri.rollout_logprobs = g.sampling;
    ri.mask = g.mask;
    ri.seq_offsets = g.seqs;
    g.is_ratio.assign(g.lp.size(), 0.0);
    pt::rollout_is_weights(pt::exec::host{}, ri, o, std::span<double>(g.is_ratio));
    // TRL's ratio itself (masked tokens: ours are 0, TRL's are never read).
    golden::expect_close_masked(g.is_ratio,
                                golden::data(c.at("outputs").at("importance_sampling_ratio")),
                                vec(g.mask.begin(), g.mask.end()), g.name + " importance_sampling_ratio");
    for (std::size_t t = 0; t < g.weights.size(); ++t) g.weights[t] *= g.is_ratio[t];
    g.has_weights = true;
  }
  if (!p.at("off_policy_mask_threshold").is_null()) {
    pt::off_policy_sequence_mask(
        pt::exec::host{}, sel,
        pt::off_policy_mask_options{p.at("off_policy_mask_threshold").get<double>()},
        std::span<double>(w));
    for (std::size_t t = 0; t < w.size(); ++t) g.weights[t] *= w[t];
    g.has_weights = true;
  }
  return g;
}

// TRL's option values on top of a preset.
pt::policy_gradient_options trl_options(pt::policy_gradient_options o, const grpo_case& g) {
  const json& p = *g.params;
  o.kl_coef = p.at("beta").get<double>();
  o.kl = pt::conventions::trl::kl();
  if (p.at("use_bias_correction_kl").get<bool>())
    o.kl_correction =
        g.level == "sequence" ? pt::kl_is_correction::sequence : pt::kl_is_correction::token;
  return o;
}

// The conventions::trl::loss_type normaliser of the case (TRL train mode).
template <class N>
pt::agg_normalizer normalizer(const grpo_case& g) {
  const json& p = *g.params;
  const double ga = p.at("gradient_accumulation_steps").get<double>();
  if constexpr (std::is_same_v<N, lt::grpo> || std::is_same_v<N, lt::luspo>) {
    return N::normalizer(g.rows, ga);
  } else if constexpr (std::is_same_v<N, lt::bnpo>) {
    return N::normalizer(g.tokens, ga);
  } else if constexpr (std::is_same_v<N, lt::dr_grpo>) {
    return N::normalizer(g.rows, p.at("max_completion_length").get<double>(), ga);
  } else {
    // TRL: num_items_in_batch / num_processes · GA / steps_per_generation; GA = spg here.
    EXPECT_EQ(ga, p.at("steps_per_generation").get<double>()) << g.name;
    return N::normalizer(p.at("num_items_in_batch").get<double>(),
                         p.at("num_processes").get<double>());
  }
}

// TRL's entropy bonus: −c·Σ m_eff·H / max(Σ m_eff, 1) / GA with m_eff = mask × entropy mask,
// c = entropy_coef (adaptive: the controller's applied() from last_world_entropy). Checks
// d loss/dH against TRL's and, for use_adaptive_entropy, the coefficient after the step's update.
// 0 when TRL's bonus is off.
double entropy_bonus(const grpo_case& g) {
  const json& p = *g.params;
  const bool adaptive = p.at("use_adaptive_entropy").get<bool>();
  const double coef = p.at("entropy_coef").get<double>();
  if (coef == 0.0 && !adaptive) return 0.0;
  std::vector<float> m_eff(g.mask.size());
  for (std::size_t t = 0; t < m_eff.size(); ++t)
    m_eff[t] = g.mask[t] * static_cast<float>(g.entropy_mask[t]);
  const std::span<const double> h(g.entropy);
  const double count = pt::masked_count(pt::exec::host{}, h, std::span<const float>(m_eff));
  const double mean = pt::masked_mean(pt::exec::host{}, h, std::span<const float>(m_eff));
  const double ga = p.at("gradient_accumulation_steps").get<double>();
  double c = coef;
  if (adaptive) {
    pt::loss::adaptive_entropy_controller ctl = pt::conventions::trl::adaptive_entropy(coef);
    ctl.target = p.at("entropy_target").get<double>();
    ctl.delta = p.at("entropy_coef_delta").get<double>();
    ctl.min = p.at("entropy_coef_min").get<double>();
    ctl.max = p.at("entropy_coef_max").get<double>();
    ctl.last_entropy = p.at("last_world_entropy").get<double>();
    c = ctl.applied();
    ctl.update(pt::loss::adaptive_entropy_controller::world_entropy(mean * count, count));
    golden::expect_close(ctl.value, golden::scalar(g.outputs->at("entropy_coef_after")),
                         g.name + " entropy_coef after the update");
  }
  vec grad(g.entropy.size());
  for (std::size_t t = 0; t < grad.size(); ++t)
    grad[t] = -c * static_cast<double>(m_eff[t]) / std::max(count, 1.0) / ga;
  golden::expect_close(grad, golden::data(g.grads->at("entropies")), g.name + " d/dentropies");
  return -c * mean / ga;
}

template <class Surrogate, class N>
void check(const grpo_case& g, const pt::policy_gradient_options& o,
           const typename Surrogate::options& so = {}) {
  pt::policy_gradient_inputs<double> in;
  in.logprobs = g.lp;
  in.old_logprobs = g.old;
  in.advantages = g.adv;
  in.mask = g.mask;
  in.seq_offsets = g.seqs;
  if (g.has_weights) in.importance_weights = g.weights;
  vec grad(g.lp.size());
  pt::policy_gradient_outputs<double> out;
  out.grad = std::span<double>(grad);
  pt::policy_gradient_result r;
  if (o.kl_coef != 0.0) {
    in.ref_logprobs = g.ref;
    using loss = pt::loss::policy_gradient<Surrogate, pt::kl::k3, typename N::aggregation>;
    r = loss::compute(pt::exec::host{}, in, o, out, normalizer<N>(g), N::options(), so);
  } else {
    using loss = pt::loss::policy_gradient<Surrogate, pt::kl::none, typename N::aggregation>;
    r = loss::compute(pt::exec::host{}, in, o, out, normalizer<N>(g), N::options(), so);
  }
  golden::expect_close(r.loss + entropy_bonus(g), g.loss_expected, g.name + " loss");
  // TRL's gradient at masked tokens is 0 too (the loss multiplies by the mask).
  golden::expect_close(grad, g.grad_expected, g.name + " d/dper_token_logps");
}

// grpo | bnpo | dr_grpo | dapo: PPO clip on the token ratio or (sequence) the GSPO ratio.
template <class N>
void clip_family(const grpo_case& g) {
  const json& p = *g.params;
  const double delta = p.at("delta").is_null() ? pt::pg_presets::inf : p.at("delta").get<double>();
  pt::policy_gradient_options o = trl_options(pt::pg_presets::trl_grpo(0.0, delta), g);
  o.clip_low = p.at("epsilon").get<double>();
  o.clip_high = p.at("epsilon_high").get<double>();
  if (g.level == "sequence")
    check<pt::surrogate::gspo, N>(g, o);
  else
    check<pt::surrogate::clip, N>(g, o);
}

std::vector<grpo_case> of_type(const std::string& type) {
  std::vector<grpo_case> out;
  for (const json& c : golden::cases(file(), "GRPOTrainer._compute_loss"))
    if (c.at("params").at("loss_type") == type) out.push_back(read(c));
  for (grpo_case& g : out) {
    g.params = &g.params_;
    g.outputs = &g.outputs_;
    g.grads = &g.grads_;
  }
  EXPECT_FALSE(out.empty()) << "no golden case for loss_type " << type;
  return out;
}

}  // namespace

TEST(GoldenTrlGrpo, Meta) {
  EXPECT_EQ(file().at("meta").at("peer"), "trl");
  EXPECT_EQ(file().at("meta").at("peer_version"), "1.16.0");
  EXPECT_TRUE(file().at("skipped").empty()) << file().at("skipped").dump();
}

TEST(GoldenTrlGrpo, Grpo) {
  for (const grpo_case& g : of_type("grpo")) clip_family<lt::grpo>(g);
}

TEST(GoldenTrlGrpo, Bnpo) {
  for (const grpo_case& g : of_type("bnpo")) clip_family<lt::bnpo>(g);
}

TEST(GoldenTrlGrpo, DrGrpo) {
  for (const grpo_case& g : of_type("dr_grpo")) clip_family<lt::dr_grpo>(g);
}

TEST(GoldenTrlGrpo, DapoWithEntropyAndOffPolicyMasks) {
  for (const grpo_case& g : of_type("dapo")) clip_family<lt::dapo>(g);
}

TEST(GoldenTrlGrpo, Cispo) {
  for (const grpo_case& g : of_type("cispo")) {
    ASSERT_EQ(g.level, "token");
    check<pt::surrogate::cispo, lt::dapo>(
        g, trl_options(pt::pg_presets::trl_cispo(g.params->at("epsilon_high").get<double>()), g),
        pt::pg_presets::trl_cispo_surrogate());
  }
}

TEST(GoldenTrlGrpo, Sapo) {
  for (const grpo_case& g : of_type("sapo")) {
    ASSERT_EQ(g.level, "token");
    const pt::policy_gradient_options o = trl_options(pt::pg_presets::trl_sapo(), g);
    const auto tau = pt::pg_presets::sapo_surrogate(
        g.params->at("sapo_temperature_pos").get<double>(),
        g.params->at("sapo_temperature_neg").get<double>());
    check<pt::surrogate::sapo, lt::grpo>(g, o, tau);
  }
}

TEST(GoldenTrlGrpo, LuspoSequenceLevel) {
  for (const grpo_case& g : of_type("luspo")) {
    ASSERT_EQ(g.level, "sequence");
    const json& p = *g.params;
    const double delta =
        p.at("delta").is_null() ? pt::pg_presets::inf : p.at("delta").get<double>();
    check<pt::surrogate::gspo, lt::luspo>(
        g, trl_options(pt::pg_presets::trl_luspo(p.at("epsilon").get<double>(),
                                                 p.at("epsilon_high").get<double>(), delta),
                       g));
  }
}

TEST(GoldenTrlGrpo, Vespo) {
  for (const grpo_case& g : of_type("vespo")) {
    const json& p = *g.params;
    check<pt::surrogate::vespo, lt::dapo>(
        g, trl_options(pt::pg_presets::trl_vespo(), g),
        pt::pg_presets::trl_vespo_surrogate(
            p.at("vespo_k_pos").get<double>(), p.at("vespo_lambda_pos").get<double>(),
            p.at("vespo_k_neg").get<double>(), p.at("vespo_lambda_neg").get<double>()));
  }
}

// The named algorithms are the compositions compared above (a compile-time check).
TEST(GoldenTrlGrpo, AlgoAliasesAreTheCompositionsUsed) {
  static_assert(std::is_same_v<pt::algo::luspo::loss,
                               pt::loss::policy_gradient<pt::surrogate::gspo, pt::kl::none,
                                                         lt::luspo::aggregation>>);
  static_assert(std::is_same_v<pt::algo::grpo::loss,
                               pt::loss::policy_gradient<pt::surrogate::clip, pt::kl::k3,
                                                         lt::grpo::aggregation>>);
  static_assert(std::is_same_v<pt::algo::vespo::loss,
                               pt::loss::policy_gradient<pt::surrogate::vespo, pt::kl::none,
                                                         lt::dapo::aggregation>>);
  SUCCEED();
}

// Finding (a default, not a formula): TRL 1.16's GRPOConfig defaults use_bias_correction_kl to
// True (reference §4.1, at an older commit: False). conventions::trl::grpo(β) =
// pg_presets::trl_grpo(β) has no KL correction, so with β > 0 it reproduces TRL 1.16 only with
// use_bias_correction_kl=False; the 1.16 default is conventions::trl::grpo_bias_corrected_kl(β)
// (compared above). This runs the plain preset on the cases that use TRL 1.16's default.
TEST(GoldenTrlGrpo, DISABLED_ConventionsTrlGrpoIsTrl116DefaultBiasCorrectedKl) {
  for (const grpo_case& g : of_type("grpo")) {
    if (g.level != "token" || !g.params->at("use_bias_correction_kl").get<bool>()) continue;
    pt::policy_gradient_options o =
        pt::conventions::trl::grpo(g.params->at("beta").get<double>());
    o.clip_high = g.params->at("epsilon_high").get<double>();
    check<pt::surrogate::clip, lt::grpo>(g, o);
  }
}

// vLLM importance-sampling correction (token / sequence × truncate / mask) on the clip family,
// with β·KL, an entropy mask, GSPO, and VESPO (whose sequence weight takes the token ratios).
TEST(GoldenTrlGrpo, VllmImportanceSamplingCorrection) {
  int seen = 0;
  for (const char* type : {"grpo", "bnpo", "dapo", "vespo"}) {
    for (const grpo_case& g : of_type(type)) {
      if (g.is_ratio.empty()) continue;
      ++seen;
      SCOPED_TRACE(g.name);
      if (g.loss_type == "grpo") clip_family<lt::grpo>(g);
      if (g.loss_type == "bnpo") clip_family<lt::bnpo>(g);
      if (g.loss_type == "dapo") clip_family<lt::dapo>(g);
      if (g.loss_type == "vespo") {
        const json& p = *g.params;
        check<pt::surrogate::vespo, lt::dapo>(
            g, trl_options(pt::pg_presets::trl_vespo(), g),
            pt::pg_presets::trl_vespo_surrogate(
                p.at("vespo_k_pos").get<double>(), p.at("vespo_lambda_pos").get<double>(),
                p.at("vespo_k_neg").get<double>(), p.at("vespo_lambda_neg").get<double>()));
      }
    }
  }
  EXPECT_EQ(seen, 10);
}

// TRL 1.16's entropy bonus (entropy_coef, use_adaptive_entropy): a token mean over the mask (and
// the entropy mask) divided by GA, beside the policy loss, whatever the loss type.
TEST(GoldenTrlGrpo, EntropyBonusTokenMeanBesideTheLoss) {
  int seen = 0;
  for (const char* type : {"grpo", "bnpo", "dapo"})
    for (const grpo_case& g : of_type(type)) {
      if (g.params->at("entropy_coef").get<double>() == 0.0) continue;
      ++seen;
      if (g.loss_type == "grpo") clip_family<lt::grpo>(g);
      if (g.loss_type == "bnpo") clip_family<lt::bnpo>(g);
      if (g.loss_type == "dapo") clip_family<lt::dapo>(g);
    }
  EXPECT_EQ(seen, 6);
}

// For bnpo without an entropy mask TRL's bonus is agg(H) of the loss type, so the built-in
// policy_gradient_options::entropy_coef reproduces it (loss, d/dℓ, d/dH in one call).
TEST(GoldenTrlGrpo, EntropyBonusBuiltInForBnpo) {
  for (const grpo_case& g : of_type("bnpo")) {
    const json& p = *g.params;
    if (p.at("entropy_coef").get<double>() == 0.0 || p.at("use_adaptive_entropy").get<bool>())
      continue;
    pt::policy_gradient_options o = trl_options(pt::pg_presets::trl_grpo(0.0), g);
    o.clip_high = p.at("epsilon_high").get<double>();
    o.entropy_coef = p.at("entropy_coef").get<double>();
    pt::policy_gradient_inputs<double> in;
    in.logprobs = g.lp;
    in.old_logprobs = g.old;
    in.advantages = g.adv;
    in.mask = g.mask;
    in.seq_offsets = g.seqs;
    in.entropy = g.entropy;
    vec grad(g.lp.size()), hgrad(g.lp.size());
    using loss = pt::loss::policy_gradient<pt::surrogate::clip, pt::kl::none,
                                           lt::bnpo::aggregation>;
    const auto r = loss::compute(pt::exec::host{}, in, o, {grad, hgrad}, normalizer<lt::bnpo>(g),
                                 lt::bnpo::options());
    golden::expect_close(r.loss, g.loss_expected, g.name + " loss");
    golden::expect_close(grad, g.grad_expected, g.name + " d/dper_token_logps");
    golden::expect_close(hgrad, golden::data(g.grads->at("entropies")), g.name + " d/dentropies");
  }
}

// policy_gradient_options::entropy_coef alone subtracts c·agg(H) with the loss type's aggregation
// (verl / OpenRLHF); TRL 1.16 subtracts c·(token mean of H over mask × entropy mask)/GA for every
// loss type (different for grpo, dapo and with an entropy mask). conventions::trl::entropy_bonus
// (entropy_agg = token_mean, entropy_divisor = GA) with the top_entropy_quantile mask as
// inputs.entropy_mask reproduces it built in: loss, d/dℓ and d/dH in one call, every case with a
// bonus (static and adaptive; the surrogate keeps its IS / entropy-mask weights).
TEST(GoldenTrlGrpo, EntropyBonusBuiltInWithTrlPreset) {
  int seen = 0;
  for (const char* type : {"grpo", "bnpo", "dapo"})
    for (const grpo_case& g : of_type(type)) {
      const json& p = *g.params;
      const bool adaptive = p.at("use_adaptive_entropy").get<bool>();
      if (p.at("entropy_coef").get<double>() == 0.0 && !adaptive) continue;
      ++seen;
      SCOPED_TRACE(g.name);
      double c = p.at("entropy_coef").get<double>();
      if (adaptive) {
        pt::loss::adaptive_entropy_controller ctl = pt::conventions::trl::adaptive_entropy(c);
        ctl.target = p.at("entropy_target").get<double>();
        ctl.last_entropy = p.at("last_world_entropy").get<double>();
        c = ctl.applied();
      }
      const double delta =
          p.at("delta").is_null() ? pt::pg_presets::inf : p.at("delta").get<double>();
      pt::policy_gradient_options o = trl_options(pt::pg_presets::trl_grpo(0.0, delta), g);
      o.clip_low = p.at("epsilon").get<double>();
      o.clip_high = p.at("epsilon_high").get<double>();
      o = pt::conventions::trl::entropy_bonus(o, c,
                                              p.at("gradient_accumulation_steps").get<double>());
      ASSERT_EQ(g.level, "token");
      pt::policy_gradient_inputs<double> in;
      in.logprobs = g.lp;
      in.old_logprobs = g.old;
      in.advantages = g.adv;
      in.mask = g.mask;
      in.seq_offsets = g.seqs;
      in.entropy = g.entropy;
      if (p.at("top_entropy_quantile").get<double>() < 1.0) in.entropy_mask = g.entropy_mask;
      if (g.has_weights) in.importance_weights = g.weights;
      if (o.kl_coef != 0.0) in.ref_logprobs = g.ref;
      vec grad(g.lp.size()), hgrad(g.lp.size());
      double loss_value = 0;
      const auto run = [&]<class N>(N) {
        if (o.kl_coef != 0.0) {
          using loss = pt::loss::policy_gradient<pt::surrogate::clip, pt::kl::k3,
                                                 typename N::aggregation>;
          return loss::compute(pt::exec::host{}, in, o, {grad, hgrad}, normalizer<N>(g),
                               N::options());
        }
        using loss = pt::loss::policy_gradient<pt::surrogate::clip, pt::kl::none,
                                               typename N::aggregation>;
        return loss::compute(pt::exec::host{}, in, o, {grad, hgrad}, normalizer<N>(g),
                             N::options());
      };
      if (g.loss_type == "grpo") loss_value = run(lt::grpo{}).loss;
      if (g.loss_type == "bnpo") loss_value = run(lt::bnpo{}).loss;
      if (g.loss_type == "dapo") loss_value = run(lt::dapo{}).loss;
      golden::expect_close(loss_value, g.loss_expected, g.name + " loss");
      golden::expect_close(grad, g.grad_expected, g.name + " d/dper_token_logps");
      golden::expect_close(hgrad, golden::data(g.grads->at("entropies")), g.name + " d/dentropies");
    }
  // grpo_ent0.05, grpo with vLLM IS, dapo with ρ = 0.5, bnpo static and adaptive (×2)
  EXPECT_EQ(seen, 6);
}
