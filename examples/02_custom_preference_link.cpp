// examples/02_custom_preference_link.cpp — composing a new DPO-family variant at compile time.
//
// A user writes one policy, a preference link (the per-pair formula), and composes it with the
// library's sequence reduction (seq::mean: length-normalised scores) and reference handling. The
// library supplies everything else: validation, the packed ragged layout, masks, the pair
// normaliser, statistics, and the gradient back to every token log-prob.
//
// The link here is a squared hinge ("L2-SLiC"): loss = max(0, 1 − β·z)², z = Δc − Δr.
#include <cmath>
#include <cstdio>
#include <vector>

#include <posttrain/posttrain.hpp>

namespace pt = posttrain;

// The user-written policy: a name and a host/device evaluate that returns the pair loss and its
// derivatives w.r.t. the two log-ratios. pref::link_defaults supplies the rest (the β > 0 check, no
// options of its own; loss/preference/link.hpp lists every hook and its default).
struct squared_hinge : pt::pref::link_defaults {
  static constexpr const char* name = "squared_hinge";

  template <class T>
  POSTTRAIN_HOST_DEVICE static pt::pref::pair_value<T> evaluate(
      T delta_chosen, T delta_rejected, const pt::loss::preference_options& o) {
    const T beta = T(o.beta);
    const T gap = T(1) - beta * (delta_chosen - delta_rejected);
    if (gap <= T(0)) return {T(0), T(0), T(0)};
    return {gap * gap, T(-2) * beta * gap, T(2) * beta * gap};
  }
};
// The library's concept check: a malformed link fails here with a sentence naming what is missing.
static_assert(pt::pref::diagnose_preference_link<squared_hinge>());

// The composition: the user's link, length-normalised scores, a cached reference.
using l2_slic_norm = pt::loss::preference<squared_hinge, pt::seq::mean>;

int main() {
  // Two pairs; chosen lengths 3 and 2, rejected lengths 2 and 4; one masked prompt token.
  const std::vector<pt::index_t> chosen_offsets{0, 3, 5}, rejected_offsets{0, 2, 6};
  const std::vector<float> chosen_mask{0, 1, 1, 1, 1}, rejected_mask{1, 1, 1, 1, 1, 1};
  std::vector<double> chosen{-9.0, -1.2, -0.8, -2.0, -1.5};
  const std::vector<double> rejected{-1.0, -1.4, -2.5, -0.7, -1.1, -3.0};
  const std::vector<double> ref_chosen{-1.1, -1.9}, ref_rejected{-1.3, -1.6};

  auto run = [&](std::vector<double>* grad_c, std::vector<double>* grad_r) {
    pt::loss::preference_inputs<double> in{
        .batch = {.chosen = {chosen_offsets, chosen_mask},
                  .rejected = {rejected_offsets, rejected_mask}},
        .chosen_logprobs = chosen,
        .rejected_logprobs = rejected,
        .reference_chosen = ref_chosen,
        .reference_rejected = ref_rejected};
    pt::loss::preference_outputs<double> out{};
    if (grad_c) out.chosen_grad = *grad_c;
    if (grad_r) out.rejected_grad = *grad_r;
    return l2_slic_norm::compute(in, {.beta = 2.0}, out);
  };

  std::vector<double> grad_c(chosen.size()), grad_r(rejected.size());
  const auto result = run(&grad_c, &grad_r);
  std::printf("%s over %zu pairs: loss %.6f, reward margin %.4f, accuracy %.2f\n",
              l2_slic_norm::name().c_str(), ref_chosen.size(), result.loss,
              result.reward_margin, result.reward_accuracy);

  // The gradient the library wrote, against central differences of the loss.
  std::printf("%-8s %14s %14s\n", "token", "d loss/d lp", "finite diff");
  double worst = 0;
  for (std::size_t t = 0; t < chosen.size(); ++t) {
    const double h = 1e-6, saved = chosen[t];
    chosen[t] = saved + h;
    const double up = run(nullptr, nullptr).loss;
    chosen[t] = saved - h;
    const double down = run(nullptr, nullptr).loss;
    chosen[t] = saved;
    const double fd = (up - down) / (2 * h);
    worst = std::fmax(worst, std::fabs(fd - grad_c[t]));
    std::printf("c%-7zu %14.8f %14.8f\n", t, grad_c[t], fd);
  }
  std::printf("largest difference %.2e (the masked prompt token c0 gets exactly 0)\n", worst);
  return worst < 1e-6 ? 0 : 1;
}
