#pragma once
// The KTO family's types and its backend contract (loss/kto.hpp documents the formulas and every
// field's meaning).
//
//   types     kto_options, kto_inputs / kto_outputs / kto_normalizer / kto_result (loss::kto);
//             kto_vanilla_options / kto_vanilla_result (loss::kto_vanilla_paired, whose inputs and
//             outputs are the preference family's); the unpaired links are policies
//             (loss/kto_links.hpp).
//   backend   loss::kto_backend<Exec>: one specialisation per execution tag, with
//               static constexpr bool available = true;
//               template <class Link, class SeqReduce, class T>
//               static kto_result run(Exec, const kto_inputs<T>&, const kto_options&,
//                                     const kto_outputs<T>&, double examples_divisor);
//               template <class T>
//               static kto_vanilla_result run_vanilla_paired(Exec, const preference_inputs<T>&,
//                                     const kto_vanilla_options&, const preference_outputs<T>&,
//                                     double pairs_divisor);
//             Arguments are validated by the front end; the divisors are resolved (> 0, or 0 for
//             an empty batch). exec::host: backend/cpu/kto.hpp. The primary template is
//             `available = false`, which the front end's compute(exec::cuda, ...) turns into a
//             static_assert sentence.
// Backends include this header (and the links), never the front end loss/kto.hpp.
#include <cstdint>
#include <optional>
#include <span>

#include "posttrain/config.hpp"
#include "posttrain/core/batch.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/loss/preference_types.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace loss {

struct kto_options {
  double beta = 0.1;
  double desirable_weight = 1.0;
  double undesirable_weight = 1.0;
};

template <class T>
struct kto_inputs {
  token_batch batch{};                        // B completions
  std::span<const T> logprobs{};              // [N] policy token log-probs
  std::span<const T> reference{};             // [B] reference scores ρ (same reduction as π)
  std::span<const std::uint8_t> desirable{};  // [B] 1 desirable, 0 undesirable
  double kl_reference = 0.0;                  // z0 (detached); ignored by apo_zero_unpaired
};

template <class T>
struct kto_outputs {
  std::span<T> grad{};                 // [N] ∂loss/∂ℓ (0 where m = 0)
  std::span<double> example_losses{};  // [B] λ·L_b
  std::span<double> rewards{};         // [B] β·Δ_b
};

struct kto_normalizer {
  double examples = 0;  // divisor of Σ_b λ·L_b; 0 = local B
};

struct kto_result {
  double loss = 0;
  double desirable_reward = 0;    // local mean β·Δ over desirable examples (0 if none)
  double undesirable_reward = 0;  // local mean β·Δ over undesirable examples (0 if none)
  double desirable_count = 0;
  double undesirable_count = 0;
  double kl_reference = 0;  // the z0 used
};

// OpenRLHF VanillaKTOLoss options: β, and optional global means of Δc / Δr (all-reduced by the
// caller for multi-rank use; unset = this call's means). Both are clamped at 0 and detached.
struct kto_vanilla_options {
  double beta = 0.1;
  std::optional<double> mean_delta_chosen = std::nullopt;
  std::optional<double> mean_delta_rejected = std::nullopt;
};

struct kto_vanilla_result {
  double loss = 0;
  double kl_chosen = 0;        // KL_c used
  double kl_rejected = 0;      // KL_r used
  double chosen_reward = 0;    // local mean β·Δc
  double rejected_reward = 0;  // local mean β·Δr
};

template <class Exec>
struct kto_backend {
  static constexpr bool available = false;
};

}  // namespace loss

POSTTRAIN_NAMESPACE_END
