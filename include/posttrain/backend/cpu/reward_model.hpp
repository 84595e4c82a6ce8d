#pragma once
// CPU loop of loss::reward_model (front end: loss/reward_model.hpp, which validates every argument
// before calling here). Sequential over pairs, sums in double: deterministic.
#include <span>

#include "posttrain/config.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/loss/reward_model_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace backend::cpu {

// divisor: the resolved pair normaliser (0 when there are no pairs: every term is then 0).
template <class Link, class T>
loss::reward_model_result reward_model(const loss::reward_model_inputs<T>& in,
                                       const loss::reward_model_options& options,
                                       const loss::reward_model_outputs<T>& out, double divisor) {
  const index_t pairs = static_cast<index_t>(in.chosen.size());
  const double inv = divisor > 0 ? 1.0 / divisor : 0.0;
  const double c = options.center_coef;
  double ranking = 0, centering = 0, correct = 0, sum_c = 0, sum_r = 0;
  for (index_t p = 0; p < pairs; ++p) {
    const double rc = static_cast<double>(in.chosen[p]);
    const double rr = static_cast<double>(in.rejected[p]);
    const double m = in.margin.empty() ? 0.0 : static_cast<double>(in.margin[p]);
    const auto cr = Link::evaluate(rc - rr - m);
    double lp = cr.loss, gc = cr.slope, gr = -cr.slope, ge = 0;
    const bool has_edited =
        !in.edited.empty() && (in.edited_mask.empty() || in.edited_mask[p] != 0.0f);
    if (has_edited) {
      const double re = static_cast<double>(in.edited[p]);
      const auto ec = Link::evaluate(re - rc);
      const auto er = Link::evaluate(re - rr);
      lp += ec.loss + er.loss;
      ge = ec.slope + er.slope;
      gc -= ec.slope;
      gr -= er.slope;
    }
    ranking += lp;
    const double s = rc + rr;
    centering += s * s;
    if (c != 0.0) {
      lp += c * s * s;
      gc += 2.0 * c * s;
      gr += 2.0 * c * s;
    }
    correct += rc > rr ? 1.0 : 0.0;
    sum_c += rc;
    sum_r += rr;
    if (!out.pair_losses.empty()) out.pair_losses[p] = lp;
    if (!out.chosen_grad.empty()) out.chosen_grad[p] = static_cast<T>(gc * inv);
    if (!out.rejected_grad.empty()) out.rejected_grad[p] = static_cast<T>(gr * inv);
    if (!out.edited_grad.empty()) out.edited_grad[p] = static_cast<T>(ge * inv);
  }
  loss::reward_model_result r;
  r.ranking_loss = ranking * inv;
  r.centering = centering * inv;
  r.loss = r.ranking_loss + c * r.centering;
  if (pairs > 0) {
    const double n = static_cast<double>(pairs);
    r.accuracy = correct / n;
    r.chosen_reward = sum_c / n;
    r.rejected_reward = sum_r / n;
    r.margin = (sum_c - sum_r) / n;
  }
  return r;
}

}  // namespace backend::cpu

POSTTRAIN_NAMESPACE_END
