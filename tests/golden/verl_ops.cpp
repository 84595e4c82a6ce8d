// Golden test: loss aggregation, KL estimators, whitening and the clipped value loss with the verl
// presets against verl core_algos.agg_loss / kl_penalty / compute_value_loss and
// verl.utils.torch_functional.masked_whiten themselves (tests/golden/data/verl_ops.json).
// Gradients are torch.autograd's: of the loss w.r.t. loss_mat / vpreds, and of Σ kl·mask w.r.t.
// logprob and ref_logprob.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "golden/golden.hpp"
#include "posttrain/conventions.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/loss/value.hpp"
#include "posttrain/ops/aggregate.hpp"
#include "posttrain/ops/kl.hpp"
#include "posttrain/ops/whiten.hpp"

namespace pt = posttrain;
using golden::json;
using golden::vec;
using offs = std::vector<pt::index_t>;

namespace {

const json& file() {
  static const json f = golden::load("verl_ops.json");
  return f;
}

template <class Mode>
pt::agg_result aggregate(const vec& loss, const std::vector<float>& mask, const offs& seqs,
                         std::span<double> grad, const pt::agg_normalizer& n = {}) {
  return pt::aggregate_loss<Mode>(pt::exec::host{}, std::span<const double>(loss), mask, seqs, n,
                                  grad, pt::agg_conventions::verl());
}

// verl agg_loss(loss_mat, loss_mask, mode) with dp_size = 1 and no global counts.
// seq-mean-token-sum-norm: verl 0.9.1 computes Σ_i Σ_t m·L / global_batch_size / T with
// global_batch_size = the non-empty rows, while the reference (verl b178a3c, algorithms.md §1.6
// and ops/aggregate.hpp's peer mapping "constant = loss_scale_factor or T") has Σ Σ m·L / T. With
// documented_mapping = false the constant is rows·T (what 0.9.1 needs); true is the documented
// mapping, exercised by the disabled test below.
pt::agg_result verl_agg(const std::string& mode, const vec& loss, const std::vector<float>& mask,
                        const offs& seqs, std::span<double> grad, double horizon,
                        bool documented_mapping = false) {
  if (mode == "token-mean") return aggregate<pt::agg::token_mean>(loss, mask, seqs, grad);
  if (mode == "token-sum") return aggregate<pt::agg::token_sum>(loss, mask, seqs, grad);
  if (mode == "seq-mean-token-sum")
    return aggregate<pt::agg::seq_mean_token_sum>(loss, mask, seqs, grad);
  if (mode == "seq-mean-token-mean")
    return aggregate<pt::agg::seq_mean_token_mean>(loss, mask, seqs, grad);
  if (mode == "seq-mean-token-sum-norm") {
    pt::agg_normalizer n;
    n.constant = horizon;  // verl: loss_scale_factor defaults to the padded width T
    if (!documented_mapping)
      *n.constant *= pt::aggregation_counts(pt::exec::host{}, mask, seqs, pt::agg_conventions::verl())
                         .sequences;
    return aggregate<pt::agg::seq_mean_token_sum_norm>(loss, mask, seqs, grad, n);
  }
  ADD_FAILURE() << "unknown verl loss_agg_mode " << mode;
  return {};
}

}  // namespace

TEST(GoldenVerlOps, Meta) {
  EXPECT_EQ(file().at("meta").at("peer"), "verl");
  EXPECT_TRUE(file().at("skipped").empty()) << file().at("skipped").dump();
}

namespace {

void check_agg(bool documented_mapping, bool only_sum_norm) {
  for (const json& c : golden::cases(file(), "agg_loss")) {
    if (only_sum_norm && c.at("params").at("loss_agg_mode") != "seq-mean-token-sum-norm") continue;
    const json& in = c.at("inputs");
    const vec loss = golden::data(in.at("loss_mat"));
    const auto mask = golden::as_float(golden::data(in.at("loss_mask")));
    const offs seqs = golden::row_offsets(in.at("loss_mask"));
    vec grad(loss.size());
    const std::string mode = c.at("params").at("loss_agg_mode");
    const pt::agg_result r = verl_agg(mode, loss, mask, seqs, std::span<double>(grad),
                                      static_cast<double>(golden::shape(in.at("loss_mat"))[1]),
                                      documented_mapping);
    const std::string name = c.at("name");
    golden::expect_close(r.loss, golden::scalar(c.at("outputs").at("loss")), name + " loss");
    golden::expect_close(grad, golden::data(c.at("grads").at("loss_mat")), name + " grad");
  }
}

}  // namespace

TEST(GoldenVerlOps, AggLossEveryMode) { check_agg(false, false); }
// Finding: verl 0.9.1 also divides seq-mean-token-sum-norm by the number of non-empty rows; the
// mapping documented in ops/aggregate.hpp (constant = T) reproduces verl b178a3c, not 0.9.1.
TEST(GoldenVerlOps, DISABLED_AggSeqMeanTokenSumNormDocumentedMappingConstantT) {
  check_agg(true, true);
}

namespace {

template <class E>
void kl_case(const json& c, const pt::kl_options& o) {
  const json& in = c.at("inputs");
  const vec lp = golden::data(in.at("logprob"));
  const vec ref = golden::data(in.at("ref_logprob"));
  const vec mask = golden::data(in.at("mask"));
  vec value(lp.size()), grad(lp.size());
  pt::kl_divergence<E>(pt::exec::host{}, std::span<const double>(lp), std::span<const double>(ref),
                       o, std::span<double>(value), std::span<double>(grad));
  const std::string name = c.at("name");
  golden::expect_close(value, golden::data(c.at("outputs").at("kl")), name + " value");
  // d Σ kl·m / d logprob = m·grad; every estimator is a function of ℓ − ℓref, so the gradient
  // w.r.t. ref_logprob is its negative.
  vec g_lp(lp.size()), g_ref(lp.size());
  for (std::size_t i = 0; i < lp.size(); ++i) g_lp[i] = mask[i] * grad[i], g_ref[i] = -g_lp[i];
  golden::expect_close(g_lp, golden::data(c.at("grads").at("logprob")), name + " d/dlogprob");
  golden::expect_close(g_ref, golden::data(c.at("grads").at("ref_logprob")),
                       name + " d/dref_logprob");
}

}  // namespace

TEST(GoldenVerlOps, KlPenaltyEveryType) {
  using pt::kl_conventions::verl;
  using pt::kl_kind;
  for (const json& c : golden::cases(file(), "kl_penalty")) {
    const std::string kind = c.at("params").at("kl_penalty");
    if (kind == "kl" || kind == "k1") kl_case<pt::kl::k1>(c, verl(kl_kind::k1));
    else if (kind == "abs") kl_case<pt::kl::abs>(c, verl(kl_kind::abs));
    else if (kind == "mse" || kind == "k2") kl_case<pt::kl::k2>(c, verl(kl_kind::k2));
    else if (kind == "low_var_kl" || kind == "k3") kl_case<pt::kl::k3>(c, verl(kl_kind::k3));
    else if (kind == "k1+") kl_case<pt::kl::straight_through<pt::kl::k1>>(c, verl(kl_kind::k1));
    else if (kind == "k3+" || kind == "low_var_kl+")
      kl_case<pt::kl::straight_through<pt::kl::k3>>(c, verl(kl_kind::k3));
    else ADD_FAILURE() << "unmapped verl kl_penalty " << kind;
  }
}

TEST(GoldenVerlOps, MaskedWhiten) {
  for (const json& c : golden::cases(file(), "masked_whiten")) {
    const json& in = c.at("inputs");
    const vec x = golden::data(in.at("values"));
    const vec m = golden::data(in.at("mask"));
    pt::whiten_options o = pt::whiten_conventions::verl;
    o.shift_mean = c.at("params").at("shift_mean").get<bool>();
    vec out(x.size());
    pt::whiten(pt::exec::host{}, x, golden::as_float(m), std::span<double>(out), o);
    golden::expect_close_masked(out, golden::data(c.at("outputs").at("whitened")), m,
                                c.at("name").get<std::string>());
  }
}

TEST(GoldenVerlOps, ValueLoss) {
  for (const json& c : golden::cases(file(), "compute_value_loss")) {
    const json& in = c.at("inputs");
    const vec v = golden::data(in.at("vpreds"));
    const vec old = golden::data(in.at("values"));
    const vec ret = golden::data(in.at("returns"));
    const auto mask = golden::as_float(golden::data(in.at("response_mask")));
    const offs seqs = golden::row_offsets(in.at("response_mask"));
    pt::value_options o = pt::value_conventions::verl;
    o.clip = c.at("params").at("cliprange_value").get<double>();
    const pt::value_inputs<double> vi{v, old, ret, mask, seqs};
    vec grad(v.size());
    const std::string mode = c.at("params").at("loss_agg_mode");
    pt::value_result r;
    if (mode == "token-mean")
      r = pt::loss::value_clipped<pt::agg::token_mean>::compute(
          pt::exec::host{}, vi, o, std::span<double>(grad), {}, pt::agg_conventions::verl());
    else if (mode == "seq-mean-token-mean")
      r = pt::loss::value_clipped<pt::agg::seq_mean_token_mean>::compute(
          pt::exec::host{}, vi, o, std::span<double>(grad), {}, pt::agg_conventions::verl());
    else if (mode == "seq-mean-token-sum")
      r = pt::loss::value_clipped<pt::agg::seq_mean_token_sum>::compute(
          pt::exec::host{}, vi, o, std::span<double>(grad), {}, pt::agg_conventions::verl());
    else
      ADD_FAILURE() << "unmapped mode " << mode;
    const std::string name = c.at("name");
    golden::expect_close(r.loss, golden::scalar(c.at("outputs").at("loss")), name + " loss");
    golden::expect_close(r.clip_fraction, golden::scalar(c.at("outputs").at("clipfrac")),
                         name + " clipfrac");
    golden::expect_close(grad, golden::data(c.at("grads").at("vpreds")), name + " grad");
  }
}

// The preset of item 8 (issue 9): conventions::verl::seq_mean_token_sum_norm reproduces verl
// 0.9.1's seq-mean-token-sum-norm from the counts a caller all-reduces (rows) and the padded width
// T, with no hand-made constant.
TEST(GoldenVerlOps, SeqMeanTokenSumNormPreset) {
  using preset = pt::conventions::verl::seq_mean_token_sum_norm;
  int seen = 0;
  for (const json& c : golden::cases(file(), "agg_loss")) {
    if (c.at("params").at("loss_agg_mode") != "seq-mean-token-sum-norm") continue;
    const json& in = c.at("inputs");
    const vec loss = golden::data(in.at("loss_mat"));
    const auto mask = golden::as_float(golden::data(in.at("loss_mask")));
    const offs seqs = golden::row_offsets(in.at("loss_mask"));
    const double rows =
        pt::aggregation_counts(pt::exec::host{}, mask, seqs, preset::options()).sequences;
    const double width = static_cast<double>(golden::shape(in.at("loss_mat"))[1]);
    vec grad(loss.size());
    const pt::agg_result r = pt::aggregate_loss<preset::aggregation>(
        pt::exec::host{}, std::span<const double>(loss), mask, seqs,
        preset::normalizer(rows, width), std::span<double>(grad), preset::options());
    const std::string name = c.at("name");
    golden::expect_close(r.loss, golden::scalar(c.at("outputs").at("loss")), name + " loss");
    golden::expect_close(grad, golden::data(c.at("grads").at("loss_mat")), name + " grad");
    ++seen;
  }
  EXPECT_GT(seen, 0);
}
