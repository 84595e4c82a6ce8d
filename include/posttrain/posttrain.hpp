#pragma once
// posttrain: header-only C++20 library of LLM post-training algorithms. This umbrella is the CPU
// library (no CUDA header); link posttrain::posttrain. The optional backends have their own
// umbrellas: <posttrain/cuda.cuh>, <posttrain/nccl.cuh>, <posttrain/mpi.hpp>.
//
//   config.hpp              version, versioned inline namespace, POSTTRAIN_HOST_DEVICE
//   core/                   scalar types, views, errors and validation, execution tags, packed
//                           ragged layout, batch descriptors
//   math/                   numerically stable scalar functions
//   ops/                    token log-probs / entropy (forward, backward), masked and segmented
//                           reductions, whitening, KL estimators, loss aggregation
//   loss/                   sequence reductions, preference (DPO-family), policy-gradient and
//                           value losses
//   advantage/              advantage estimators (GAE, group, RLOO, REINFORCE++, ReMax, OPO, GPG)
//                           and reward shaping (KL in reward, controllers, overlong, clipping)
//   algo.hpp                named algorithms as compositions
//   dist/                   the communicator concept and the single-process communicator
// The RLVR verifiers are not included: <posttrain/reward.hpp>, target posttrain::reward.
#include "posttrain/config.hpp"
#include "posttrain/core/batch.hpp"
#include "posttrain/core/error.hpp"
#include "posttrain/core/exec.hpp"
#include "posttrain/core/ragged.hpp"
#include "posttrain/core/types.hpp"
#include "posttrain/core/validate.hpp"
#include "posttrain/core/views.hpp"
#include "posttrain/dist/communicator.hpp"
#include "posttrain/math/logsumexp.hpp"
#include "posttrain/math/stable.hpp"
#include "posttrain/ops/aggregate.hpp"
#include "posttrain/ops/fused_linear_logprobs.hpp"
#include "posttrain/ops/kl.hpp"
#include "posttrain/ops/model_averaging.hpp"
#include "posttrain/ops/reductions.hpp"
#include "posttrain/ops/token_logprobs.hpp"
#include "posttrain/ops/whiten.hpp"
#include "posttrain/loss/sequence_reduce.hpp"
#include "posttrain/loss/kto.hpp"
#include "posttrain/loss/policy_gradient.hpp"
#include "posttrain/loss/policy_gradient/entropy_controller.hpp"
#include "posttrain/correction/rollout.hpp"
#include "posttrain/correction/token_selection.hpp"
#include "posttrain/loss/kl_cov.hpp"
#include "posttrain/loss/preference.hpp"
#include "posttrain/loss/preference/wpo.hpp"
#include "posttrain/loss/reward_model.hpp"
#include "posttrain/loss/sft.hpp"
#include "posttrain/loss/value.hpp"
#include "posttrain/advantage/estimator.hpp"
#include "posttrain/advantage/gae.hpp"
#include "posttrain/advantage/gdpo.hpp"
#include "posttrain/advantage/gpg.hpp"
#include "posttrain/advantage/group.hpp"
#include "posttrain/advantage/opo.hpp"
#include "posttrain/advantage/optimal_baseline.hpp"
#include "posttrain/advantage/pf_ppo.hpp"
#include "posttrain/advantage/reinforce.hpp"
#include "posttrain/advantage/rloo.hpp"
#include "posttrain/advantage/shaping.hpp"
#include "posttrain/algo.hpp"
#include "posttrain/conventions.hpp"
#include "posttrain/loss/concept.hpp"
