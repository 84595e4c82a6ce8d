#pragma once
// loss::reward_model<Link> — pairwise reward-model losses (Bradley-Terry and LogExp) with optional
// per-pair margins, TRL's reward centring and Llama 3's three-response ranking.
//
//   For prompts p = 1..P with scalar rewards r_c,p (chosen), r_r,p (rejected) and, optionally,
//   r_e,p (an edited response ranked above the chosen one: edited > chosen > rejected):
//     d_cr = r_c − r_r − m_p            (m_p = margin[p], 0 when margin is empty)
//     loss_p = L(d_cr)                                       (pair)
//            + L(r_e − r_c) + L(r_e − r_r)                   (if prompt p has an edited response)
//            + c·(r_c + r_r)²                                 (reward centring, c = center_coef)
//     loss   = Σ_p loss_p / normalizer.pairs    (default: local P)
//   and ∂loss/∂r_c, ∂loss/∂r_r, ∂loss/∂r_e per prompt.
//
//   Links L(d) (d = preferred − dispreferred reward):
//     rm::bradley_terry  −logσ(d)         TRL RewardTrainer, OpenRLHF PairWiseLoss (margin
//                                          optional), open-instruct; Llama 2/3
//     rm::log_exp        log(1 + e^{−d})  OpenRLHF LogExpLoss; the same function as −logσ(d),
//                                          computed stably (OpenRLHF's naive form overflows for
//                                          r_r − r_c > 88 in fp32). It does not take margins
//                                          (OpenRLHF ignores them): a non-empty margin is an error.
//     Both declare `logistic`: the CPU backend evaluates them on blocks of pairs as
//     max(−d, 0) + log1p(e^{−|d|}) with vectorized exp/log (backend/cpu/reward_model.hpp), within a
//     few ulp of Link::evaluate (not bit-identical to it), the same for a pair wherever it sits.
//   Ranking form (Llama 3 "edited > chosen > rejected"): the sum of the link over all three ordered
//   pairs, i.e. the pairwise decomposition of the full ranking as in InstructGPT's K-choose-2
//   comparisons, unscaled (each comparison is one Bradley-Terry likelihood term; InstructGPT's
//   1/C(K,2) weighting is the caller's choice via normalizer.pairs). The margin applies to the
//   chosen/rejected comparison only (it is the annotated preference strength of that pair).
//   Centring (TRL center_rewards_coefficient, default off = 0) uses (r_c + r_r)² only.
//
//   Inputs  reward_model_inputs<T> (T = float or double): chosen[P], rejected[P], margin[P] or
//           empty, edited[P] or empty, edited_mask[P] or empty (with edited: weight > 0 marks the
//           prompts that have an edited response, empty = all; r_e of the others is never read).
//   Outputs reward_model_outputs<T>: chosen_grad[P], rejected_grad[P], edited_grad[P] (0 where no
//           edited response), pair_losses[P] (loss_p before the division); any may be empty.
//   Every argument is validated before anything is written (posttrain::error naming it).
#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "posttrain/backend/cpu/mask_bits.hpp"
#include "posttrain/backend/cpu/reward_model.hpp"
#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/loss/concept.hpp"
#include "posttrain/loss/reward_model_types.hpp"
#include "posttrain/math/stable.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace rm {

// L(d) and dL/dd.
template <class T>
struct link_value {
  T loss;
  T slope;
};

struct bradley_terry {
  static constexpr const char* name = "bradley_terry";
  static constexpr bool takes_margin = true;
  static constexpr bool logistic = true;  // L(d) = log(1 + e^{−d}): the CPU backend's block path
  template <class T>
  POSTTRAIN_HOST_DEVICE static link_value<T> evaluate(T d) {
    return {-math::logsigmoid(d), -math::sigmoid(-d)};
  }
};

struct log_exp {
  static constexpr const char* name = "log_exp";
  static constexpr bool takes_margin = false;
  static constexpr bool logistic = true;  // L(d) = log(1 + e^{−d}): the CPU backend's block path
  template <class T>
  POSTTRAIN_HOST_DEVICE static link_value<T> evaluate(T d) {
    return {math::log1pexp(-d), -math::sigmoid(-d)};
  }
};

}  // namespace rm

namespace loss {

namespace detail {

// "loss::reward_model<" + Link::name + ">" built at compile time: the name every message of a
// call carries, without the heap allocation of name()'s std::string in every call.
template <class Link>
struct reward_model_where {
  static constexpr std::string_view prefix = "loss::reward_model<";
  static constexpr std::string_view link = Link::name;
  static constexpr std::size_t size = prefix.size() + link.size() + 1;
  struct text_type {
    char data[size];
  };
  static constexpr text_type text = [] {
    text_type t{};
    std::size_t k = 0;
    for (const char ch : prefix) t.data[k++] = ch;
    for (const char ch : link) t.data[k++] = ch;
    t.data[k] = '>';
    return t;
  }();
  static constexpr std::string_view value{text.data, size};
};

}  // namespace detail

// Host calls allocate nothing and need no scratch (the CPU backend works on fixed-size blocks on
// the stack), so there is no workspace form; they do not synchronise (no stream).
template <class Link>
struct reward_model
    : loss_interface<reward_model_options, reward_model_inputs, reward_model_outputs,
                     reward_model_normalizer, reward_model_result> {
  static std::string name() { return std::string("loss::reward_model<") + Link::name + ">"; }

  template <class T>
  static void validate(const reward_model_inputs<T>& in, const reward_model_options& options,
                       const reward_model_outputs<T>& out, const reward_model_normalizer& norm) {
    constexpr std::string_view where = detail::reward_model_where<Link>::value;
    const index_t pairs = ssize(in.chosen);
    expect_size(in.rejected, pairs, where, "rejected", "one reward per pair (size of chosen)");
    if constexpr (!Link::takes_margin)
      expect(in.margin.empty(), where,
             "margin must be empty: the log_exp loss takes no margin (OpenRLHF LogExpLoss "
             "ignores it); use rm::bradley_terry for margins");
    expect_size_or_empty(in.margin, pairs, where, "margin", "one margin per pair");
    expect_size_or_empty(in.edited, pairs, where, "edited", "one reward per pair");
    if (in.edited.empty())
      expect(in.edited_mask.empty(), where, "edited_mask must be empty when edited is empty");
    expect_size_or_empty(in.edited_mask, pairs, where, "edited_mask", "one weight per pair");
    expect_mask(in.edited_mask, where, "edited_mask");
    expect_all_finite(in.chosen, {}, where, "chosen");
    expect_all_finite(in.rejected, {}, where, "rejected");
    expect_all_finite(in.margin, {}, where, "margin");
    expect_all_finite(in.edited, in.edited_mask, where, "edited");
    expect_non_negative(options.center_coef, where, "options.center_coef");
    expect_non_negative(norm.pairs, where, "normalizer.pairs");
    expect_size_or_empty(out.chosen_grad, pairs, where, "chosen_grad", "one per pair");
    expect_size_or_empty(out.rejected_grad, pairs, where, "rejected_grad", "one per pair");
    expect_size_or_empty(out.edited_grad, pairs, where, "edited_grad", "one per pair");
    expect_size_or_empty(out.pair_losses, pairs, where, "pair_losses", "one per pair");
  }

  template <class T>
  static reward_model_result compute(exec::host, const reward_model_inputs<T>& in,
                                     const reward_model_options& options = {},
                                     const reward_model_outputs<T>& out = {},
                                     const reward_model_normalizer& norm = {}) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "loss::reward_model::compute accepts float or double rewards");
    validate(in, options, out, norm);
    const double divisor = norm.pairs > 0 ? norm.pairs : static_cast<double>(ssize(in.chosen));
    return reward_model_backend<exec::host>::run<Link>(exec::host{}, in, options, out, divisor);
  }

  template <class T>
  static reward_model_result compute(const reward_model_inputs<T>& in,
                                     const reward_model_options& options = {},
                                     const reward_model_outputs<T>& out = {},
                                     const reward_model_normalizer& norm = {}) {
    return compute(exec::host{}, in, options, out, norm);
  }

  template <class T>
  static reward_model_result compute(exec::cuda, const reward_model_inputs<T>&,
                                     const reward_model_options& = {},
                                     const reward_model_outputs<T>& = {},
                                     const reward_model_normalizer& = {}) {
    static_assert(reward_model_backend<exec::cuda>::available && sizeof(T) > 0,
                  "loss::reward_model has no CUDA backend yet (no "
                  "loss::reward_model_backend<exec::cuda> specialisation, "
                  "loss/reward_model_types.hpp): call compute(exec::host{}, ...) with host memory");
    return {};
  }

 private:
  // A branch-free scan first (integer ops on the bits, so it vectorizes: the per-element check
  // with its message was a sixth of the loss's time); the element is searched for only on failure.
  // |x| as bits is below the bits of +inf exactly when x is finite; masked rewards count as 0.
  template <class T>
  static void expect_all_finite(std::span<const T> values, std::span<const float> mask,
                                std::string_view where, std::string_view argument) {
    namespace bits = backend::cpu::mask_bits;
    using U = bits::uint_of<T>;
    constexpr U magnitude = ~U(0) >> 1;
    constexpr U inf = std::bit_cast<U>(std::numeric_limits<T>::infinity());
    U largest = 0;
    if (mask.empty()) {
      for (const T x : values) largest = std::max(largest, U(std::bit_cast<U>(x) & magnitude));
    } else {
      for (std::size_t i = 0; i < values.size(); ++i)
        largest =
            std::max(largest, U(std::bit_cast<U>(values[i]) & magnitude & bits::keep<T>(mask[i])));
    }
    if (largest < inf) return;
    for (std::size_t i = 0; i < values.size(); ++i) {
      if (!mask.empty() && mask[i] == 0.0f) continue;
      expect(std::isfinite(static_cast<double>(values[i])), where, argument, "[", i,
             "] = ", static_cast<double>(values[i]), ", expected a finite value");
    }
  }
};

}  // namespace loss

POSTTRAIN_NAMESPACE_END
