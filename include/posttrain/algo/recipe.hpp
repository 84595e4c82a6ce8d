#pragma once
// algo::recipe<Loss, Estimator> — what every name in posttrain::algo is: a type that IS its loss
// (it derives from it, so algo::dpo::compute(...) is the DPO loss and algo::dapo models the Loss
// concept) and carries
//
//   R::loss          the loss type (a loss_model, loss/concept.hpp)
//   R::advantage     the advantage estimator (an advantage_estimator, advantage/estimator.hpp),
//   R::estimator     or algo::no_estimator for offline recipes (same type under both names)
//   R::online        whether it has an estimator
//   R::preset_type   algo::preset<advantage options, loss options>: one peer's whole setting
//   R::<peer>(...)   static functions returning a preset_type: verl(), trl(), openrlhf(),
//                    open_instruct(), paper() — only the peers that have the algorithm (asking
//                    another does not compile); R::defaults() is the default peer's preset.
//
// Algorithms that differ only by preset are distinct recipe types over the same loss type:
// algo::dapo and algo::ppo are different types whose ::loss is the same composition, each with
// its own presets (so algo::dapo::trl() is DAPO's clip-higher, algo::ppo::trl() is not).
//
// What a preset cannot hold: global normalisers (they depend on the batch) — take them from
// conventions::trl::loss_type::* / conventions::verl::* and aggregation_counts.
#include <type_traits>

#include "posttrain/config.hpp"
#include "posttrain/loss/concept.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace algo {

// The estimator of an offline recipe: there is none.
struct no_estimator {
  struct options_type {};
};

// One peer's setting of a recipe: the estimator's options and the loss's options (for the
// policy-gradient losses these include the aggregation conventions).
template <class AdvantageOptions, class LossOptions>
struct preset {
  AdvantageOptions advantage{};
  LossOptions loss{};
};

template <class Loss, class Estimator = no_estimator>
struct recipe : Loss {
  static_assert(check_loss_model<Loss>(),
                "algo::recipe<Loss, ...>: Loss is not a loss (see above)");
  using loss = Loss;
  using advantage = Estimator;
  using estimator = Estimator;
  using preset_type = algo::preset<typename Estimator::options_type, typename Loss::options_type>;
  static constexpr bool online = !std::is_same_v<Estimator, no_estimator>;
};

// R is a recipe (derives from algo::recipe<R::loss, R::advantage>).
template <class R>
concept recipe_type = requires {
  typename R::loss;
  typename R::advantage;
  typename R::preset_type;
}
&&std::is_base_of_v<recipe<typename R::loss, typename R::advantage>, R>;

}  // namespace algo

POSTTRAIN_NAMESPACE_END
