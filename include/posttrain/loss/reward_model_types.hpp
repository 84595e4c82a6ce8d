#pragma once
// The input/output bundles, options, normaliser and result of loss::reward_model
// (loss/reward_model.hpp documents the formula and every field's meaning).
#include <span>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace loss {

struct reward_model_options {
  double center_coef = 0.0;  // c of c·(r_c + r_r)² (TRL center_rewards_coefficient; 0 = off)
};

template <class T>
struct reward_model_inputs {
  std::span<const T> chosen{};           // [P]
  std::span<const T> rejected{};         // [P]
  std::span<const T> margin{};           // [P] or empty
  std::span<const T> edited{};           // [P] or empty
  std::span<const float> edited_mask{};  // [P] or empty (only with edited)
};

template <class T>
struct reward_model_outputs {
  std::span<T> chosen_grad{};       // [P] ∂loss/∂r_c
  std::span<T> rejected_grad{};     // [P] ∂loss/∂r_r
  std::span<T> edited_grad{};       // [P] ∂loss/∂r_e
  std::span<double> pair_losses{};  // [P] loss_p
};

struct reward_model_normalizer {
  double pairs = 0;  // divisor of Σ_p loss_p; 0 = local P. Pass the global count to every call.
};

struct reward_model_result {
  double loss = 0;             // ranking_loss + center_coef·centering
  double ranking_loss = 0;     // Σ_p (link terms) / pairs
  double centering = 0;        // Σ_p (r_c + r_r)² / pairs
  double accuracy = 0;         // local fraction with r_c > r_r (ties wrong); 0 when P = 0
  double chosen_reward = 0;    // local mean r_c
  double rejected_reward = 0;  // local mean r_r
  double margin = 0;           // local mean r_c − r_r
};

// The backend contract of loss::reward_model (issue 9 item 1): one specialisation per execution
// tag with `available = true` and template <class Link, class T> static reward_model_result
// run(Exec, inputs, options, outputs, divisor); exec::host in backend/cpu/reward_model.hpp.
template <class Exec>
struct reward_model_backend {
  static constexpr bool available = false;
};

}  // namespace loss

POSTTRAIN_NAMESPACE_END
