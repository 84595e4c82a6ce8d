#!/usr/bin/env python3
"""Golden vectors from the peers themselves.

Calls the REAL functions of the installed peer packages (verl core_algos / rollout_corr_helper /
torch_functional, TRL trainers, OpenRLHF models/loss.py) on seeded random float32 inputs and writes
tests/golden/data/<peer>_<family>.json, which the C++ tests tests/golden/<peer>_<family>.cpp read.

Run with the venv made by tests/golden/setup_peers.sh:
    $PEER_VENV/bin/python tests/golden/generate.py [--out tests/golden/data]

JSON layout (every file):
  {"meta": {peer, peer_version, torch, python, numpy, generator, seed, dtype},
   "skipped": [{"name", "reason"}],            # peer functions that could not be called
   "cases": [{"name", "fn", "params": {...}, "inputs": {...}, "outputs": {...}, "grads": {...}}]}
Tensors are {"shape": [...], "data": [flat row-major]} with float32 values written as the exact
double of the float32; scalars are plain numbers; index arrays are lists of ints.
Gradients are torch.autograd gradients of the named scalar (the loss, or sum(out * mask)) w.r.t.
the named float32 input.
"""
import argparse
import importlib
import importlib.metadata as md
import importlib.util
import json
import os
import platform
import re
import sys
import traceback
import types

import numpy as np
import torch

SEED = 20260211
B, T = 6, 9


def tens(x):
    if isinstance(x, torch.Tensor):
        x = x.detach().to(torch.float64).cpu()
        return {"shape": list(x.shape), "data": [float(v) for v in x.reshape(-1).tolist()]}
    if isinstance(x, np.ndarray):
        return tens(torch.from_numpy(np.asarray(x, dtype=np.float64)))
    return float(x)


def version(p):
    try:
        return md.version(p)
    except md.PackageNotFoundError:
        return None


def meta(peer):
    return {
        "peer": peer,
        "peer_version": version(peer),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "generator": "tests/golden/generate.py",
        "seed": SEED,
        "dtype": "float32",
    }


class Collector:
    def __init__(self, peer):
        self.peer = peer
        self.cases = []
        self.skipped = []

    def case(self, name, fn, params, inputs, outputs, grads=None):
        self.cases.append(
            {
                "name": name,
                "fn": fn,
                "params": params,
                "inputs": {k: (v if isinstance(v, list) else tens(v)) for k, v in inputs.items()},
                "outputs": {k: tens(v) for k, v in outputs.items()},
                "grads": {k: tens(v) for k, v in (grads or {}).items()},
            }
        )

    def skip(self, name, reason):
        self.skipped.append({"name": name, "reason": reason})
        print(f"  skipped {name}: {reason}", file=sys.stderr)

    def guard(self, name, f):
        try:
            f()
        except Exception as e:  # record, do not hide
            traceback.print_exc()
            self.skip(name, f"{type(e).__name__}: {e}")

    def write(self, path):
        text = json.dumps({"meta": meta(self.peer), "skipped": self.skipped, "cases": self.cases},
                          separators=(",", ":"))
        # every value is a float32 (or an exact small integer): 9 significant digits round-trip
        # float32 exactly and keep the files small
        text = re.sub(r"(?<![\w.])-?\d+\.\d+(?:e[-+]?\d+)?", lambda m: f"{float(m.group(0)):.9g}", text)
        # strict JSON has no inf/nan: written as the strings "inf", "-inf", "nan"
        text = re.sub(r"(?<![\w\"])(-?Infinity|NaN)(?![\w\"])",
                      lambda m: {"Infinity": '"inf"', "-Infinity": '"-inf"', "NaN": '"nan"'}[m.group(1)], text)
        with open(path, "w") as fh:
            fh.write(text)
        print(f"wrote {path}: {len(self.cases)} cases, {len(self.skipped)} skipped", file=sys.stderr)


# ----------------------------------------------------------------------------------------------
# Shared inputs. Rows have lengths 9, 5, 7, 1, 9 (with a 2-token hole: observation tokens), 3;
# groups (index) 0,0,0 | 1,1 | 2 (a singleton). The "empty" mask additionally zeroes row 3.
# ----------------------------------------------------------------------------------------------
def make_inputs():
    g = torch.Generator().manual_seed(SEED)
    lengths = [9, 5, 7, 1, 9, 3]
    mask = torch.zeros(B, T)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    mask_contig = mask.clone()  # no observation-token hole
    mask[4, 3:5] = 0
    mask_empty = mask.clone()
    mask_empty[3] = 0
    index = [0, 0, 0, 1, 1, 2]
    # outcome rewards at the last valid token: ties within group 0, equal rewards in group 1
    outcome_ties = torch.tensor([1.0, 1.0, 0.0, 0.5, 0.5, 1.0])
    outcome_rand = torch.randn(B, generator=g)
    def place(r):
        out = torch.zeros(B, T)
        for i, n in enumerate(lengths):
            out[i, n - 1] = r[i]
        return out
    old = -3.0 * torch.rand(B, T, generator=g)
    logp = old + 0.3 * torch.randn(B, T, generator=g)
    # ratios far outside the clip range and log-ratios beyond verl's +-20 clamp
    logp[0, 1] = old[0, 1] + 2.0
    logp[0, 2] = old[0, 2] - 2.0
    logp[1, 0] = old[1, 0] + 25.0
    logp[2, 3] = old[2, 3] - 25.0
    logp[4, 6] = old[4, 6] + 0.7
    ref = old + 0.5 * torch.randn(B, T, generator=g)
    ref[1, 1] = old[1, 1] - 30.0  # huge KL, exercises kl clamps
    adv = torch.randn(B, T, generator=g)
    adv[0, 3] = 0.0
    values = torch.randn(B, T, generator=g)
    returns = values + torch.randn(B, T, generator=g)
    vpreds = values + 0.4 * torch.randn(B, T, generator=g)
    dense = 0.3 * torch.randn(B, T, generator=g)
    return dict(lengths=lengths, mask=mask, mask_empty=mask_empty, mask_contig=mask_contig, index=index,
                rewards_ties=place(outcome_ties), rewards_rand=place(outcome_rand), rewards_dense=dense * mask,
                old=old, logp=logp, ref=ref, adv=adv, values=values, returns=returns, vpreds=vpreds, g=g)


# ----------------------------------------------------------------------------------------------
# verl
# ----------------------------------------------------------------------------------------------
def verl_advantage(X, out):
    import verl.trainer.ppo.core_algos as ca
    from omegaconf import OmegaConf

    C = Collector("verl")
    mask, index = X["mask"], np.array(X["index"])
    for rname in ("rewards_ties", "rewards_rand"):
        r = X[rname]
        for norm in (True, False):
            def grpo(norm=norm, r=r, rname=rname):
                a, ret = ca.compute_grpo_outcome_advantage(r, mask, index, epsilon=1e-6, norm_adv_by_std_in_grpo=norm)
                C.case(f"grpo_{rname}_norm{int(norm)}", "compute_grpo_outcome_advantage",
                       {"epsilon": 1e-6, "norm_adv_by_std_in_grpo": norm},
                       {"token_level_rewards": r, "response_mask": mask, "index": X["index"]},
                       {"advantages": a, "returns": ret})
            C.guard(f"grpo_{rname}_norm{int(norm)}", grpo)

            def grpo_vec(norm=norm, r=r, rname=rname):
                a, ret = ca.compute_grpo_vectorized_outcome_advantage(r, mask, index, epsilon=1e-6,
                                                                       norm_adv_by_std_in_grpo=norm)
                C.case(f"grpo_vectorized_{rname}_norm{int(norm)}", "compute_grpo_vectorized_outcome_advantage",
                       {"epsilon": 1e-6, "norm_adv_by_std_in_grpo": norm},
                       {"token_level_rewards": r, "response_mask": mask, "index": X["index"]},
                       {"advantages": a, "returns": ret})
            C.guard(f"grpo_vectorized_{rname}_norm{int(norm)}", grpo_vec)

            def passk(norm=norm, r=r, rname=rname):
                cfg = OmegaConf.create({"norm_adv_by_std_in_grpo": norm})
                # pass@k raises on a singleton group: rows 4 and 5 share group 1 here
                idx2 = [0, 0, 0, 1, 1, 1]
                a, ret = ca.compute_grpo_passk_outcome_advantage(r, mask, np.array(idx2), epsilon=1e-6, config=cfg)
                C.case(f"passk_{rname}_norm{int(norm)}", "compute_grpo_passk_outcome_advantage",
                       {"epsilon": 1e-6, "norm_adv_by_std_in_grpo": norm},
                       {"token_level_rewards": r, "response_mask": mask, "index": idx2},
                       {"advantages": a, "returns": ret})
            C.guard(f"passk_{rname}_norm{int(norm)}", passk)

        simple = {
            "rloo": ca.compute_rloo_outcome_advantage,
            "rloo_vectorized": ca.compute_rloo_vectorized_outcome_advantage,
            "reinforce_plus_plus_baseline": ca.compute_reinforce_plus_plus_baseline_outcome_advantage,
            "opo": ca.compute_opo_outcome_advantage,
        }
        for name, fn in simple.items():
            def run(name=name, fn=fn, r=r, rname=rname):
                a, ret = fn(r, mask, index, epsilon=1e-6, config=OmegaConf.create({}))
                C.case(f"{name}_{rname}", fn.__name__, {"epsilon": 1e-6},
                       {"token_level_rewards": r, "response_mask": mask, "index": X["index"]},
                       {"advantages": a, "returns": ret})
            C.guard(f"{name}_{rname}", run)

        def gpg(r=r, rname=rname):
            a, ret = ca.compute_gpg_outcome_advantage(r, mask, index, epsilon=1e-6, f_norm=1.0, alpha=1.0)
            C.case(f"gpg_{rname}", "compute_gpg_outcome_advantage", {"epsilon": 1e-6, "f_norm": 1.0, "alpha": 1.0},
                   {"token_level_rewards": r, "response_mask": mask, "index": X["index"]},
                   {"advantages": a, "returns": ret})
        C.guard(f"gpg_{rname}", gpg)

        def remax(r=r, rname=rname):
            baselines = torch.tensor([0.5, 0.0, 1.0, -0.25, 0.5, 2.0])
            a, ret = ca.compute_remax_outcome_advantage(r, baselines, mask, config=OmegaConf.create({}))
            C.case(f"remax_{rname}", "compute_remax_outcome_advantage", {},
                   {"token_level_rewards": r, "reward_baselines": baselines, "response_mask": mask},
                   {"advantages": a, "returns": ret})
        C.guard(f"remax_{rname}", remax)

    for rname in ("rewards_rand", "rewards_dense"):
        r = X[rname]
        for gamma in (1.0, 0.9):
          for mname in ("mask", "mask_contig"):
            def rpp(r=r, rname=rname, gamma=gamma, mname=mname):
                a, ret = ca.compute_reinforce_plus_plus_outcome_advantage(r, X[mname], config=OmegaConf.create({"gamma": gamma}))
                C.case(f"reinforce_plus_plus_{rname}_gamma{gamma}_{mname}", "compute_reinforce_plus_plus_outcome_advantage",
                       {"gamma": gamma, "mask": mname}, {"token_level_rewards": r, "response_mask": X[mname]},
                       {"advantages": a, "returns": ret})
            C.guard(f"reinforce_plus_plus_{rname}_gamma{gamma}_{mname}", rpp)
        for gamma, lam in ((1.0, 1.0), (0.99, 0.95)):
            def gae(r=r, rname=rname, gamma=gamma, lam=lam):
                a, ret = ca.compute_gae_advantage_return(r, X["values"], mask, gamma, lam)
                C.case(f"gae_{rname}_g{gamma}_l{lam}", "compute_gae_advantage_return", {"gamma": gamma, "lam": lam},
                       {"token_level_rewards": r, "values": X["values"], "response_mask": mask},
                       {"advantages": a, "returns": ret})
            C.guard(f"gae_{rname}_g{gamma}_l{lam}", gae)

    # optimal token baseline (and its multi-turn TIR form) if present
    g = torch.Generator().manual_seed(SEED + 7)
    sum_pi_sq = torch.rand(B, T, generator=g) * 0.9 + 0.05
    is_w = torch.rand(B, T, generator=g) * 1.5 + 0.25
    for fname in ("compute_optimal_token_baseline_advantage", "compute_multi_turn_optimal_token_baseline_advantage"):
        fn = getattr(ca, fname, None)
        if fn is None:
            C.skip(fname, f"absent from verl {version('verl')}")
            continue
        for r_name in ("rewards_ties", "rewards_rand"):
            for w_name, w in (("noweights", None), ("weights", is_w)):
                for hzt in (True, False):
                    name = f"{fname}_{r_name}_{w_name}_hzt{int(hzt)}"
                    def otb(fn=fn, r_name=r_name, w=w, hzt=hzt, name=name, w_name=w_name):
                        a, ret = fn(X[r_name], mask, index, X["old"], sum_pi_sq, rollout_is_weights=w,
                                    handle_zero_tail=hzt, epsilon=1e-8)
                        inputs = {"token_level_rewards": X[r_name], "response_mask": mask, "index": X["index"],
                                  "old_log_probs": X["old"], "sum_pi_squared": sum_pi_sq}
                        if w is not None:
                            inputs["rollout_is_weights"] = w
                        C.case(name, fname, {"handle_zero_tail": hzt, "epsilon": 1e-8}, inputs,
                               {"advantages": a, "returns": ret})
                    C.guard(name, otb)

    def gdpo():
        # two reward components, weighted, read from non_tensor_batch by key
        g2 = torch.Generator().manual_seed(SEED + 11)
        r1 = torch.randint(0, 2, (B,), generator=g2).float()
        r2 = torch.randn(B, generator=g2)
        cfg = OmegaConf.create({"gdpo_reward_keys": ["acc", "fmt"], "gdpo_reward_weights": [1.0, 0.5],
                                "norm_adv_by_std_in_grpo": True})
        ntb = {"acc": r1.numpy(), "fmt": r2.numpy()}
        # batch: prompts of length 2, attention_mask = prompt + response mask (reward at last valid token)
        batch = {"prompts": torch.zeros(B, 2, dtype=torch.long),
                 "attention_mask": torch.cat([torch.ones(B, 2), mask], dim=1).long()}
        a, ret = ca.compute_gdpo_outcome_advantage(X["rewards_rand"], mask, index, epsilon=1e-6, config=cfg,
                                                   non_tensor_batch=ntb, batch=batch)
        C.case("gdpo_two_components", "compute_gdpo_outcome_advantage",
               {"epsilon": 1e-6, "gdpo_reward_keys": ["acc", "fmt"], "gdpo_reward_weights": [1.0, 0.5]},
               {"acc": r1, "fmt": r2, "response_mask": mask, "index": X["index"], "token_level_rewards": X["rewards_rand"]},
               {"advantages": a, "returns": ret})
    C.guard("gdpo_two_components", gdpo)
    C.write(os.path.join(out, "verl_advantage.json"))


def verl_ops(X, out):
    import verl.trainer.ppo.core_algos as ca
    import verl.utils.torch_functional as vF

    C = Collector("verl")
    g = torch.Generator().manual_seed(SEED + 3)
    loss_mat = torch.randn(B, T, generator=g)
    for mname in ("mask", "mask_empty"):
        m = X[mname]
        for mode in ("token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-sum-norm", "seq-mean-token-mean"):
            def agg(mode=mode, m=m, mname=mname):
                lm = loss_mat.clone().requires_grad_(True)
                loss = ca.agg_loss(lm, m, mode)
                loss.backward()
                C.case(f"agg_{mode}_{mname}", "agg_loss", {"loss_agg_mode": mode, "dp_size": 1},
                       {"loss_mat": loss_mat, "loss_mask": m}, {"loss": loss}, {"loss_mat": lm.grad})
            C.guard(f"agg_{mode}_{mname}", agg)
    for kind in ("kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3", "k1+", "k3+", "low_var_kl+"):
        def kl(kind=kind):
            lp = X["logp"].clone().requires_grad_(True)
            rp = X["ref"].clone().requires_grad_(True)
            k = ca.kl_penalty(lp, rp, kind)
            (k * X["mask"]).sum().backward()
            C.case(f"kl_{kind}", "kl_penalty", {"kl_penalty": kind},
                   {"logprob": X["logp"], "ref_logprob": X["ref"], "mask": X["mask"]}, {"kl": k},
                   {"logprob": lp.grad, "ref_logprob": rp.grad if rp.grad is not None else torch.zeros(B, T)})
        C.guard(f"kl_{kind}", kl)
    for shift in (True, False):
        def wh(shift=shift):
            w = vF.masked_whiten(X["adv"], X["mask"], shift_mean=shift)
            C.case(f"masked_whiten_shift{int(shift)}", "masked_whiten", {"shift_mean": shift},
                   {"values": X["adv"], "mask": X["mask"]}, {"whitened": w})
        C.guard(f"masked_whiten_shift{int(shift)}", wh)
    for mode in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum"):
        for clip in (0.2, 0.5):
            def vl(mode=mode, clip=clip):
                vp = X["vpreds"].clone().requires_grad_(True)
                loss, frac = ca.compute_value_loss(vp, X["returns"], X["values"], X["mask"], clip, loss_agg_mode=mode)
                loss.backward()
                C.case(f"value_loss_{mode}_clip{clip}", "compute_value_loss", {"cliprange_value": clip, "loss_agg_mode": mode},
                       {"vpreds": X["vpreds"], "returns": X["returns"], "values": X["values"], "response_mask": X["mask"]},
                       {"loss": loss, "clipfrac": frac}, {"vpreds": vp.grad})
            C.guard(f"value_loss_{mode}_clip{clip}", vl)
    C.write(os.path.join(out, "verl_ops.json"))


def make_actor_config(d):
    """verl's real ActorConfig (gspo/sapo/cispo/... assert isinstance(config, ActorConfig))."""
    from verl.workers.config.actor import ActorConfig, PolicyLossConfig

    pl = dict(d["policy_loss"])
    return ActorConfig(strategy="fsdp", rollout_n=3, ppo_mini_batch_size=6, ppo_micro_batch_size_per_gpu=6,
                       clip_ratio=d["clip_ratio"], clip_ratio_low=d["clip_ratio_low"],
                       clip_ratio_high=d["clip_ratio_high"], clip_ratio_c=d["clip_ratio_c"], tau_pos=d["tau_pos"],
                       tau_neg=d["tau_neg"], policy_loss=PolicyLossConfig(**pl), global_batch_info={})


def verl_policy_loss(X, out):
    import verl.trainer.ppo.core_algos as ca
    from omegaconf import OmegaConf

    C = Collector("verl")
    base = {"clip_ratio": 0.2, "clip_ratio_low": 0.2, "clip_ratio_high": 0.28, "clip_ratio_c": 3.0,
            "tau_pos": 1.0, "tau_neg": 1.05, "global_batch_info": {},
            "policy_loss": {"loss_mode": "vanilla", "clip_cov_ratio": 0.2, "clip_cov_lb": 1.0, "clip_cov_ub": 5.0,
                            "kl_cov_ratio": 0.2, "ppo_kl_coef": 0.1, "dro_beta": 0.1}}
    modes = {
        "vanilla": ("token-mean", {}),
        "gspo": ("seq-mean-token-mean", {"clip_ratio_low": 3e-4, "clip_ratio_high": 4e-4}),
        "sapo": ("seq-mean-token-mean", {}),
        "gpg": ("token-mean", {}),
        "cispo": ("token-mean", {"clip_ratio_low": 10.0, "clip_ratio_high": 0.28}),
        "geo_mean": ("seq-mean-token-mean", {"clip_ratio_low": 0.4, "clip_ratio_high": 0.4}),
        "clip_cov": ("token-mean", {}),
        "kl_cov": ("token-mean", {}),
        "dppo_tv": ("token-mean", {}),
        "dppo_kl": ("token-mean", {}),
        "dro": ("token-mean", {}),
        "bypass_mode": ("token-mean", {}),
    }
    agg_modes = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]
    g = torch.Generator().manual_seed(SEED + 5)
    is_w = torch.rand(B, T, generator=g) * 1.5 + 0.25
    for loss_mode, (default_agg, over) in modes.items():
        fn = ca.get_policy_loss_fn(loss_mode) if loss_mode in ca.POLICY_LOSS_REGISTRY else None
        if fn is None:
            C.skip(loss_mode, f"not registered in verl {version('verl')}")
            continue
        aggs = agg_modes if loss_mode in ("vanilla",) else [default_agg]
        for agg in aggs:
            for mname in ("mask", "mask_empty"):
                for wname, w in (("now", None), ("isw", is_w)):
                    if (wname == "isw" or mname == "mask_empty") and agg != default_agg:
                        continue
                    if wname == "isw" and mname != "mask":
                        continue
                    name = f"{loss_mode}_{agg}_{mname}_{wname}"
                    def run(fn=fn, agg=agg, mname=mname, w=w, name=name, loss_mode=loss_mode, over=over):
                        cfgd = json.loads(json.dumps(base))
                        cfgd.update(over)
                        cfgd["policy_loss"]["loss_mode"] = loss_mode
                        cfg = make_actor_config(cfgd)
                        torch.manual_seed(SEED)  # clip_cov / kl_cov pick tokens with torch.randperm
                        lp = X["logp"].clone().requires_grad_(True)
                        loss, metrics = fn(X["old"], lp, X["adv"], X[mname], loss_agg_mode=agg, config=cfg,
                                           rollout_is_weights=w)
                        loss.backward()
                        inputs = {"old_log_prob": X["old"], "log_prob": X["logp"], "advantages": X["adv"],
                                  "response_mask": X[mname]}
                        if w is not None:
                            inputs["rollout_is_weights"] = w
                        params = {k: v for k, v in cfgd.items() if k != "global_batch_info"}
                        params["loss_agg_mode"] = agg
                        params["torch_manual_seed"] = SEED
                        outs = {"loss": loss}
                        for k, v in metrics.items():
                            if isinstance(v, (int, float)):
                                outs[k] = v
                        C.case(name, fn.__name__, params, inputs, outs, {"log_prob": lp.grad})
                    C.guard(name, run)
    # bypass_mode with rollout_correction.loss_type="reinforce": REINFORCE with the truncated IS
    # weight min(π/π_rollout, threshold) (token or sequence level, optionally batch-normalised)
    # computed inside the loss from log_prob and old_log_prob (= rollout log-probs in bypass mode).
    # The cases above use the default rollout_correction (loss_type="ppo_clip": vanilla PPO).
    if "bypass_mode" in ca.POLICY_LOSS_REGISTRY:
        fn = ca.get_policy_loss_fn("bypass_mode")
        rc_variants = [("token", 2.0, False), ("sequence", 2.0, False), ("token", 1.5, True), (None, 2.0, False)]
        for level, thr, bn in rc_variants:
            for mname in ("mask", "mask_empty"):
                if bn and mname != "mask":
                    continue
                name = f"bypass_mode_reinforce_is{level}_thr{thr}_bn{int(bn)}_{mname}"
                def run(level=level, thr=thr, bn=bn, mname=mname, name=name):
                    from verl.trainer.config.algorithm import RolloutCorrectionConfig
                    cfgd = json.loads(json.dumps(base))
                    cfgd["policy_loss"]["loss_mode"] = "bypass_mode"
                    rc = dict(rollout_is=level, rollout_is_threshold=thr, rollout_is_batch_normalize=bn,
                              bypass_mode=True, loss_type="reinforce")
                    pl = dict(cfgd["policy_loss"], rollout_correction=RolloutCorrectionConfig(**rc))
                    cfg = make_actor_config(dict(cfgd, policy_loss=pl))
                    lp = X["logp"].clone().requires_grad_(True)
                    loss, metrics = fn(X["old"], lp, X["adv"], X[mname], loss_agg_mode="token-mean", config=cfg,
                                       rollout_is_weights=None)
                    loss.backward()
                    params = {k: v for k, v in cfgd.items() if k != "global_batch_info"}
                    params["policy_loss"] = dict(cfgd["policy_loss"], rollout_correction=rc)
                    params["loss_agg_mode"] = "token-mean"
                    outs = {"loss": loss}
                    for k, v in metrics.items():
                        if isinstance(v, (int, float)):
                            outs[k] = v
                    C.case(name, fn.__name__, params,
                           {"old_log_prob": X["old"], "log_prob": X["logp"], "advantages": X["adv"],
                            "response_mask": X[mname]}, outs, {"log_prob": lp.grad})
                C.guard(name, run)
    C.write(os.path.join(out, "verl_policy_loss.json"))


def verl_rollout_correction(X, out):
    import verl.trainer.ppo.rollout_corr_helper as rc

    C = Collector("verl")
    m = X["mask"]
    log_ratio = X["old"] - X["ref"]  # old(train) - rollout, includes a +30 outlier
    for level in ("token", "sequence"):
        for thr in (2.0, "0.5_2.0"):
            for bn in (False, True):
                name = f"is_weights_{level}_{thr}_bn{int(bn)}"
                def w(level=level, thr=thr, bn=bn, name=name):
                    wts, _ = rc.compute_rollout_correction_weights(log_ratio, m, rollout_is=level,
                                                                   rollout_is_threshold=thr, rollout_is_batch_normalize=bn)
                    C.case(name, "compute_rollout_correction_weights",
                           {"rollout_is": level, "rollout_is_threshold": thr, "rollout_is_batch_normalize": bn},
                           {"log_ratio": log_ratio, "response_mask": m}, {"weights": wts})
                C.guard(name, w)
    for rs in ("token_k1", "token_k2", "token_k3", "seq_sum_k1", "seq_mean_k1", "seq_mean_k3", "seq_max_k2",
               "seq_mean_k2"):
        for thr in (("0.5_2.0", "0.2_1.5") if "k1" in rs else (0.5, 2.0)):
            name = f"rejection_{rs}_{thr}"
            def rj(rs=rs, thr=thr, name=name):
                mk, _ = rc.compute_rollout_rejection_mask(log_ratio, m, rollout_rs=rs, rollout_rs_threshold=thr)
                C.case(name, "compute_rollout_rejection_mask", {"rollout_rs": rs, "rollout_rs_threshold": thr},
                       {"log_ratio": log_ratio, "response_mask": m}, {"mask": mk})
            C.guard(name, rj)
    C.write(os.path.join(out, "verl_rollout_correction.json"))


# ----------------------------------------------------------------------------------------------
# OpenRLHF: openrlhf/models/__init__.py imports flash_attn (GPU-only wheel), so models/loss.py and
# models/utils.py are loaded from their files under their real module names without running the
# package __init__ (nothing is stubbed; utils.py needs deepspeed, installed with --no-deps).
# ----------------------------------------------------------------------------------------------
def load_openrlhf():
    spec = importlib.util.find_spec("openrlhf")
    root = os.path.dirname(spec.origin)
    pkg = types.ModuleType("openrlhf.models")
    pkg.__path__ = [os.path.join(root, "models")]
    sys.modules.setdefault("openrlhf", importlib.import_module("openrlhf"))
    sys.modules["openrlhf.models"] = pkg
    mods = {}
    for name in ("utils", "loss"):
        s = importlib.util.spec_from_file_location(f"openrlhf.models.{name}", os.path.join(root, "models", f"{name}.py"))
        mod = importlib.util.module_from_spec(s)
        sys.modules[f"openrlhf.models.{name}"] = mod
        s.loader.exec_module(mod)
        mods[name] = mod
    return mods["loss"], mods["utils"]


def openrlhf_all(X, out):
    C = Collector("openrlhf")
    try:
        L, U = load_openrlhf()
    except Exception as e:
        C.skip("openrlhf.models.loss", f"import failed: {type(e).__name__}: {e}")
        C.write(os.path.join(out, "openrlhf_loss.json"))
        return
    import inspect
    m = X["mask"]
    for kind in ("k1", "k2", "k3"):
        def kl(kind=kind):
            lp = X["logp"].clone().requires_grad_(True)
            k = U.compute_approx_kl(lp, X["ref"], kl_estimator=kind)
            (k * m).sum().backward()
            C.case(f"approx_kl_{kind}", "compute_approx_kl", {"kl_estimator": kind},
                   {"log_probs": X["logp"], "log_probs_base": X["ref"], "mask": m}, {"kl": k}, {"log_probs": lp.grad})
        C.guard(f"approx_kl_{kind}", kl)
    sig = inspect.signature(L.PolicyLoss.__init__)
    params = [p for p in sig.parameters if p != "self"]
    for pname, kw in (("ppo", {}), ("dual_clip", {"dual_clip": 3.0}), ("gspo", {"policy_loss_type": "gspo"}),
                      ("token_level", {"token_level_loss": True}), ("seq_level", {"token_level_loss": False})):
        kw = {k: v for k, v in kw.items() if k in params}
        name = f"policy_loss_{pname}"
        def pl(kw=kw, name=name):
            fn = L.PolicyLoss(clip_eps_low=0.2, clip_eps_high=0.28, **kw) if "clip_eps_low" in params else L.PolicyLoss(**kw)
            lp = X["logp"].clone().requires_grad_(True)
            res = fn(lp, X["old"], X["adv"], action_mask=m)
            loss = res[0] if isinstance(res, tuple) else res
            loss.backward()
            C.case(name, "PolicyLoss", {"init": {**kw, "clip_eps_low": 0.2, "clip_eps_high": 0.28},
                                        "init_signature": str(sig)},
                   {"log_probs": X["logp"], "old_log_probs": X["old"], "advantages": X["adv"], "action_mask": m},
                   {"loss": loss}, {"log_probs": lp.grad})
        C.guard(name, pl)
    def vl():
        fn = L.ValueLoss(clip_eps=0.2)
        vp = X["vpreds"].clone().requires_grad_(True)
        loss = fn(vp, X["values"], X["returns"], action_mask=m)
        loss = loss[0] if isinstance(loss, tuple) else loss
        loss.backward()
        C.case("value_loss_clip0.2", "ValueLoss", {"clip_eps": 0.2},
               {"values": X["vpreds"], "old_values": X["values"], "returns": X["returns"], "action_mask": m},
               {"loss": loss}, {"values": vp.grad})
    C.guard("value_loss_clip0.2", vl)
    g = torch.Generator().manual_seed(SEED + 13)
    pc, pr, rc_, rr = (torch.randn(8, generator=g) * 4 - 20 for _ in range(4))
    pr[0] = pc[0]  # tie
    for beta, ls, ipo in ((0.1, 0.0, False), (0.1, 0.1, False), (0.5, 0.0, True)):
        name = f"dpo_beta{beta}_ls{ls}_ipo{int(ipo)}"
        def dpo(beta=beta, ls=ls, ipo=ipo, name=name):
            fn = L.DPOLoss(beta, ls, ipo)
            a, b = pc.clone().requires_grad_(True), pr.clone().requires_grad_(True)
            loss, cr, rr_ = fn(a, b, rc_, rr)
            loss.backward()
            C.case(name, "DPOLoss", {"beta": beta, "label_smoothing": ls, "ipo": ipo},
                   {"policy_chosen_logps": pc, "policy_rejected_logps": pr, "reference_chosen_logps": rc_,
                    "reference_rejected_logps": rr},
                   {"loss": loss, "chosen_rewards": cr, "rejected_rewards": rr_},
                   {"policy_chosen_logps": a.grad, "policy_rejected_logps": b.grad})
        C.guard(name, dpo)
    def pw():
        ch, rj = torch.randn(8, generator=g) * 3, torch.randn(8, generator=g) * 3
        for cls in ("PairWiseLoss", "LogExpLoss"):
            a, b = ch.clone().requires_grad_(True), rj.clone().requires_grad_(True)
            loss = getattr(L, cls)()(a, b)
            loss.backward()
            C.case(cls, cls, {}, {"chosen_reward": ch, "reject_reward": rj}, {"loss": loss},
                   {"chosen_reward": a.grad, "reject_reward": b.grad})
    C.guard("reward_losses", pw)
    C.write(os.path.join(out, "openrlhf_loss.json"))


# ----------------------------------------------------------------------------------------------
# TRL DPO: in TRL 1.x the loss lives only inside DPOTrainer._compute_loss (there is no standalone
# dpo_loss). We call the REAL method on a DPOTrainer instance built with object.__new__ and only the
# attributes _compute_loss reads, and a tiny torch module as "model" whose forward returns the
# seeded per-token log-probs (a leaf tensor, so autograd gives d loss / d per-token log-prob).
# ----------------------------------------------------------------------------------------------
def trl_dpo(X, out):
    C = Collector("trl")
    try:
        from trl import DPOConfig, DPOTrainer
    except Exception as e:
        C.skip("DPOTrainer", f"import failed: {type(e).__name__}: {e}")
        C.write(os.path.join(out, "trl_dpo.json"))
        return
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(SEED + 17)
    P, L = 4, 7  # pairs, completion length (after the shift)
    lengths_c = [7, 3, 5, 1]
    lengths_r = [2, 7, 5, 4]
    cm = torch.zeros(2 * P, L + 1, dtype=torch.long)
    for i, n in enumerate(lengths_c + lengths_r):
        cm[i, 1 : 1 + n] = 1
    tok = -2.5 * torch.rand(2 * P, L, generator=g) * cm[:, 1:]
    ref = (tok + 0.4 * torch.randn(2 * P, L, generator=g)) * cm[:, 1:]
    ref_c, ref_r = ref.sum(1).chunk(2)
    ref_r[1] = ref_r[1] - 12.0  # a large margin

    class LogpModel(torch.nn.Module):
        def __init__(self, logps):
            super().__init__()
            self.logps = logps
            self.training = True

        def forward(self, **kw):
            z = torch.zeros_like(self.logps)
            return SimpleNamespace(log_probs=self.logps, aux_loss=None, log_sum_sq_probs=None, entropy=z,
                                   mean_logits=z, is_top1=torch.zeros_like(self.logps, dtype=torch.bool))

    loss_types = ["sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm"]
    variants = [(lt, "reverse_kl", None, 0.1, 0.0) for lt in loss_types]
    variants += [("robust", "reverse_kl", None, 0.1, 0.1), ("exo_pair", "reverse_kl", None, 0.1, 1e-3)]
    variants += [("sigmoid", f, None, 0.1, 0.0) for f in ("forward_kl", "js_divergence")]
    variants += [("sigmoid", "alpha_divergence", None, 0.1, 0.0)]
    variants += [("sigmoid", "reverse_kl", 0.5, 0.1, 0.0)]  # LD-DPO
    # Length-normalised losses with f-scores: TRL 1.16 divides the score of the SUMMED log-ratio by
    # the completion length (ipo, sigmoid_norm); links that read raw log-ratios whatever the
    # f_divergence_type (nca_pair, bco_pair, sppo_hard, apo_down in TRL 1.16).
    variants += [(lt, f, None, 0.1, 0.0) for lt in ("ipo", "sigmoid_norm")
                 for f in ("forward_kl", "js_divergence", "alpha_divergence")]
    variants += [(lt, "forward_kl", None, 0.1, 0.0) for lt in ("nca_pair", "bco_pair", "sppo_hard", "apo_down")]
    # loss_type lists with loss_weights: MPO, and terms of different sequence reductions (ipo is
    # length-normalised, sigmoid is not), also with f-scores. lt is then a tuple of (types, weights).
    variants += [((("sigmoid", "bco_pair", "sft"), (0.8, 0.2, 1.0)), "reverse_kl", None, 0.1, 0.0),
                 ((("sigmoid", "ipo"), (1.0, 0.5)), "reverse_kl", None, 0.1, 0.0),
                 ((("sigmoid", "ipo"), (0.7, 1.3)), "js_divergence", None, 0.25, 0.0)]
    for lt, fdiv, ld, beta, ls in variants:
        types, weights = (lt if isinstance(lt, tuple) else ((lt,), (1.0,)))
        lt = ",".join(types)
        tag = lt if len(types) == 1 else "multi_" + "-".join(types) + "_w" + "-".join(map(str, weights))
        name = f"{tag}_{fdiv}_ld{ld}_beta{beta}_ls{ls}"
        def run(lt=lt, types=types, weights=weights, fdiv=fdiv, ld=ld, beta=beta, ls=ls, name=name):
            tr = object.__new__(DPOTrainer)
            leaf = tok.clone().requires_grad_(True)
            model = LogpModel(leaf)
            tr.__dict__.update(
                model=model, beta=beta, loss_types=list(types), loss_weights=list(weights), f_divergence_type=fdiv,
                f_alpha_divergence_coef=0.5, ld_alpha=ld, precompute_ref_logps=True, use_weighting=False,
                aux_loss_enabled=False, label_smoothing=ls, _total_train_tokens=0, _tp_size=1,
                args=SimpleNamespace(discopop_tau=0.05, gradient_checkpointing_kwargs=None),
                _metrics={"train": __import__("collections").defaultdict(list),
                          "eval": __import__("collections").defaultdict(list)},
            )
            tr.__dict__["accelerator"] = SimpleNamespace(
                device=torch.device("cpu"), gather=lambda t: t, gather_for_metrics=lambda t: t,
                unwrap_model=lambda m: m)
            inputs = {"input_ids": torch.zeros(2 * P, L + 1, dtype=torch.long), "completion_mask": cm,
                      "attention_mask": torch.ones(2 * P, L + 1, dtype=torch.long),
                      "ref_chosen_logps": ref_c, "ref_rejected_logps": ref_r}
            loss = tr._compute_loss(model, inputs, return_outputs=False)
            loss = loss[0] if isinstance(loss, tuple) else loss
            loss.backward()
            C.case(name, "DPOTrainer._compute_loss",
                   {"loss_type": lt, "loss_types": list(types), "loss_weights": list(weights),
                    "f_divergence_type": fdiv, "f_alpha_divergence_coef": 0.5, "ld_alpha": ld,
                    "beta": beta, "label_smoothing": ls, "discopop_tau": 0.05},
                   {"per_token_logps": tok, "completion_mask": cm[:, 1:].float(), "ref_chosen_logps": ref_c,
                    "ref_rejected_logps": ref_r}, {"loss": loss}, {"per_token_logps": leaf.grad})
        C.guard(name, run)
    C.write(os.path.join(out, "trl_dpo.json"))

# ----------------------------------------------------------------------------------------------
# TRL GRPO: GRPOTrainer._compute_loss is the only home of the loss types. The REAL method is called
# on an instance built with object.__new__ holding only the attributes it reads; the model is a
# tiny torch module whose forward returns the seeded per-token log-probs (a leaf: autograd gives
# d loss / d per-token log-prob) and seeded entropies (for top_entropy_quantile).
# ----------------------------------------------------------------------------------------------
class _FakeAccelerator:
    num_processes = 1
    sync_gradients = True
    is_main_process = True
    device = torch.device("cpu")

    def autocast(self):
        import contextlib
        return contextlib.nullcontext()

    def gather(self, t):
        return t

    def gather_for_metrics(self, t):
        return t

    def reduce(self, t, reduction="sum"):
        return t

    def pad_across_processes(self, t, dim=0, pad_index=0):
        return t

    def unwrap_model(self, m):
        return m


def _vllm_is_ratio_source():
    """The vLLM importance-sampling block of TRL's own GRPOTrainer._generate_and_score_completions
    (from `if self.use_vllm and self.vllm_importance_sampling_correction:` to the reference-model
    comment), cut from the installed source: that method needs a generation backend, so its ratio
    block is executed on its own, unmodified, with the locals it reads."""
    import inspect
    import textwrap
    from trl import GRPOTrainer
    src = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    a = src.index("if self.use_vllm and self.vllm_importance_sampling_correction:\n")
    b = src.index("# Compute the per-token log probabilities for the reference model", a)
    a = src.rindex("\n", 0, a) + 1
    return textwrap.dedent(src[a:b])


def _vllm_is_ratio(block, tr, old, sampling, completion_mask):
    import math
    scope = {"self": tr, "old_per_token_logps": old, "sampling_per_token_logps": sampling,
             "completion_mask": completion_mask, "tool_mask": None, "torch": torch, "math": math}
    exec(compile(block, "<trl GRPOTrainer vLLM IS block>", "exec"), scope)
    return scope["vllm_importance_sampling_ratio"]


def trl_grpo(X, out):
    import collections
    from types import SimpleNamespace

    C = Collector("trl")
    try:
        from trl import GRPOTrainer
    except Exception as e:
        C.skip("GRPOTrainer", f"import failed: {type(e).__name__}: {e}")
        C.write(os.path.join(out, "trl_grpo.json"))
        return

    g = torch.Generator().manual_seed(SEED + 19)
    logp = X["logp"].clone()
    logp[1, 0] = X["old"][1, 0] + 2.5  # TRL has no log-ratio clamp: moderate outliers keep every token visible
    logp[2, 3] = X["old"][2, 3] - 2.5
    old, ref = X["old"], X["ref"].clone()
    ref[1, 1] = X["old"][1, 1] - 8.0  # a large KL (k3 = e^{-8+..} + 8 - 1)
    adv_rows = torch.randn(B, generator=g)
    adv_rows[5] = 0.0  # the singleton group: advantage 0
    entropy = 2.0 * torch.rand(B, T, generator=g)

    class LogpModel(torch.nn.Module):
        def __init__(self, logps, ent):
            super().__init__()
            self.logps, self.ent = logps, ent
            self.training = True

        def forward(self, **kw):
            return SimpleNamespace(log_probs=self.logps, entropy=self.ent, aux_loss=None)

    # vLLM sampling log-probs: ℓold plus noise, with token outliers beyond every clip bound (the
    # sequence sums then straddle the bounds too).
    sampling = old + 0.3 * torch.randn(B, T, generator=g)
    sampling[0, 2] = old[0, 2] - 1.5  # ratio e^{1.5} > 3
    sampling[3, 0] = old[3, 0] + 1.0  # ratio e^{-1} < 0.5
    sampling[4, 6] = old[4, 6] - 2.0
    ratio_src = _vllm_is_ratio_source()

    base = dict(beta=0.0, delta=None, bias=False, level="token", eps=0.2, eps_high=0.28, rho=1.0, opsm=None,
                mask="mask", mcl=12, ga=2, spg=2, sapo=(1.0, 1.05), vespo=(2.0, 3.0, 3.0, 2.0),
                is_mode=None, is_max=3.0, is_min=None, ent=0.0, adaptive=None)
    variants = [
        ("grpo", {}), ("grpo", {"beta": 0.04}), ("grpo", {"beta": 0.04, "bias": True}),
        ("grpo", {"delta": 1.5}), ("grpo", {"level": "sequence"}),
        ("grpo", {"level": "sequence", "beta": 0.04, "bias": True}), ("grpo", {"mask": "mask_empty", "beta": 0.04}),
        ("bnpo", {}), ("bnpo", {"beta": 0.04, "bias": True}), ("bnpo", {"mask": "mask_empty"}),
        ("dr_grpo", {}), ("dr_grpo", {"beta": 0.04}),
        ("dapo", {}), ("dapo", {"beta": 0.04, "bias": True}), ("dapo", {"delta": 1.5}),
        ("dapo", {"rho": 0.3}), ("dapo", {"opsm": 0.02}), ("dapo", {"rho": 0.5, "opsm": 0.02, "beta": 0.04}),
        ("dapo", {"mask": "mask_empty", "rho": 0.3}), ("dapo", {"level": "sequence"}),
        ("cispo", {"eps_high": 1.5}), ("cispo", {"eps_high": 5.0, "beta": 0.04, "bias": True}),
        ("sapo", {}), ("sapo", {"beta": 0.04, "bias": True}), ("sapo", {"sapo": (0.5, 2.0)}),
        ("luspo", {"level": "sequence"}), ("luspo", {"level": "sequence", "delta": 1.5}),
        ("luspo", {"level": "sequence", "beta": 0.04, "bias": True}),
        ("vespo", {}), ("vespo", {"vespo": (1.0, 0.5, 4.0, 1.5), "mask": "mask_empty"}),
        # vLLM importance-sampling correction (the ratio from TRL's own block, multiplied in the loss)
        ("grpo", {"is_mode": "token_truncate"}), ("grpo", {"is_mode": "token_mask", "is_min": 0.5}),
        ("grpo", {"is_mode": "sequence_truncate", "is_min": 0.5}), ("grpo", {"is_mode": "sequence_mask"}),
        ("dapo", {"is_mode": "token_mask", "beta": 0.04, "bias": True}),
        ("bnpo", {"is_mode": "sequence_mask", "is_min": 0.2, "rho": 0.5}),
        ("grpo", {"is_mode": "token_truncate", "level": "sequence"}),
        ("vespo", {"is_mode": "token_truncate"}), ("vespo", {"is_mode": "token_mask", "is_min": 0.5}),
        # entropy bonus: loss -= coef * token mean of H over mask (x entropy mask) / GA, whatever the loss type
        ("bnpo", {"ent": 0.05}), ("grpo", {"ent": 0.05}), ("dapo", {"ent": 0.05, "rho": 0.5}),
        ("grpo", {"ent": 0.05, "mask": "mask_empty", "is_mode": "token_truncate"}),
        ("bnpo", {"ent": 0.05, "adaptive": 0.1}), ("bnpo", {"ent": 0.05, "adaptive": 0.5}),
    ]
    for lt, over in variants:
        p = dict(base)
        p.update(over)
        name = f"{lt}_" + "_".join(f"{k}{v}" for k, v in sorted(over.items())) if over else lt
        name = re.sub(r"[^A-Za-z0-9_.]", "", name.replace(", ", "-"))

        def run(lt=lt, p=p, name=name):
            mask = X[p["mask"]]
            tr = object.__new__(GRPOTrainer)
            leaf = logp.clone().requires_grad_(True)
            ent_leaf = entropy.clone().requires_grad_(True)
            model = LogpModel(leaf, ent_leaf)
            args = SimpleNamespace(use_bias_correction_kl=p["bias"], delta=p["delta"],
                                   sapo_temperature_pos=p["sapo"][0], sapo_temperature_neg=p["sapo"][1],
                                   vespo_k_pos=p["vespo"][0], vespo_lambda_pos=p["vespo"][1],
                                   vespo_k_neg=p["vespo"][2], vespo_lambda_neg=p["vespo"][3],
                                   steps_per_generation=p["spg"], entropy_target=0.2, entropy_coef_delta=0.005,
                                   entropy_coef_min=0.0, entropy_coef_max=1.0)
            use_is = p["is_mode"] is not None
            tr.__dict__.update(
                model=model, args=args, loss_type=lt, beta=p["beta"], epsilon_low=p["eps"],
                epsilon_high=p["eps_high"], importance_sampling_level=p["level"],
                top_entropy_quantile=p["rho"], off_policy_mask_threshold=p["opsm"], aux_loss_enabled=False,
                use_vllm=use_is, vllm_importance_sampling_correction=use_is,
                vllm_importance_sampling_mode=p["is_mode"], vllm_importance_sampling_clip_max=p["is_max"],
                vllm_importance_sampling_clip_min=p["is_min"], max_completion_length=p["mcl"],
                current_gradient_accumulation_steps=p["ga"], entropy_coef=p["ent"],
                use_adaptive_entropy=p["adaptive"] is not None,
                _entropy_bonus_enabled=p["ent"] != 0.0 or p["adaptive"] is not None,
                _last_world_entropy=float("inf") if p["adaptive"] is None else p["adaptive"],
                _entropy_window_stats=None, accelerator=_FakeAccelerator(),
                _metrics={"train": collections.defaultdict(list), "eval": collections.defaultdict(list)},
            )
            num_items = 2.0 * mask.sum()  # the generation batch holds spg = 2 such micro-batches
            inputs = {"prompt_ids": torch.zeros(B, 2, dtype=torch.long), "prompt_mask": torch.ones(B, 2, dtype=torch.long),
                      "completion_ids": torch.zeros(B, T, dtype=torch.long), "completion_mask": mask.long(),
                      "advantages": adv_rows, "old_per_token_logps": old, "ref_per_token_logps": ref,
                      "num_items_in_batch": num_items}
            is_ratio = None
            if use_is:
                is_ratio = _vllm_is_ratio(ratio_src, tr, old, sampling, mask.long())
                inputs["importance_sampling_ratio"] = is_ratio
            loss = tr._compute_loss(model, inputs)
            loss.backward()
            params = {"loss_type": lt, "beta": p["beta"], "delta": p["delta"], "use_bias_correction_kl": p["bias"],
                      "importance_sampling_level": p["level"], "epsilon": p["eps"], "epsilon_high": p["eps_high"],
                      "top_entropy_quantile": p["rho"], "off_policy_mask_threshold": p["opsm"],
                      "max_completion_length": p["mcl"], "gradient_accumulation_steps": p["ga"],
                      "steps_per_generation": p["spg"], "num_processes": 1, "num_items_in_batch": float(num_items),
                      "sapo_temperature_pos": p["sapo"][0], "sapo_temperature_neg": p["sapo"][1],
                      "vespo_k_pos": p["vespo"][0], "vespo_lambda_pos": p["vespo"][1],
                      "vespo_k_neg": p["vespo"][2], "vespo_lambda_neg": p["vespo"][3], "mask": p["mask"],
                      "vllm_importance_sampling_mode": p["is_mode"], "vllm_importance_sampling_clip_max": p["is_max"],
                      "vllm_importance_sampling_clip_min": p["is_min"], "entropy_coef": p["ent"],
                      "use_adaptive_entropy": p["adaptive"] is not None, "last_world_entropy": p["adaptive"],
                      "entropy_target": 0.2, "entropy_coef_delta": 0.005, "entropy_coef_min": 0.0,
                      "entropy_coef_max": 1.0}
            ins = {"per_token_logps": logp, "old_per_token_logps": old, "ref_per_token_logps": ref,
                   "advantages": adv_rows, "completion_mask": mask, "entropies": entropy}
            outs = {"loss": loss}
            grads = {"per_token_logps": leaf.grad}
            if use_is:
                ins["sampling_per_token_logps"] = sampling
                outs["importance_sampling_ratio"] = is_ratio.expand(B, T) if is_ratio.shape[1] == 1 else is_ratio
            if tr._entropy_bonus_enabled:
                grads["entropies"] = ent_leaf.grad
                outs["entropy_coef_after"] = tr.entropy_coef  # adaptive: after this step's update
            C.case(name, "GRPOTrainer._compute_loss", params, ins, outs, grads)
        C.guard(name, run)
    C.write(os.path.join(out, "trl_grpo.json"))

# ----------------------------------------------------------------------------------------------
# verl clip_cov / kl_cov with the tokens they chose. clip_cov draws torch.randperm and kl_cov takes
# torch.topk, and neither returns its choice: sys.settrace reads the locals of verl's own frame
# (the candidate list top_k_idx after torch.nonzero, perm, corr, large_cov_idxs) while the
# unmodified function runs. Nothing is patched; the trace only copies tensors.
# ----------------------------------------------------------------------------------------------
def _trace_locals(fn, names):
    code = getattr(fn, "__wrapped__", fn).__code__
    seen = {"lines": [], "ret": {}}

    def local(frame, event, arg):
        if event in ("line", "return"):
            snap = {k: frame.f_locals[k].clone() if isinstance(frame.f_locals.get(k), torch.Tensor) else frame.f_locals.get(k)
                    for k in names if k in frame.f_locals}
            (seen["lines"].append(snap) if event == "line" else seen["ret"].update(snap))
        return local

    def glob(frame, event, arg):
        return local if frame.f_code is code else None

    return glob, seen


def verl_cov(X, out):
    import verl.trainer.ppo.core_algos as ca

    C = Collector("verl")
    g = torch.Generator().manual_seed(SEED + 5)
    is_w = torch.rand(B, T, generator=g) * 1.5 + 0.25  # as verl_policy_loss
    moderate = X["logp"].clone()
    moderate[1, 0] = X["old"][1, 0] + 2.5
    moderate[2, 3] = X["old"][2, 3] - 2.5
    logps = {"logp": X["logp"], "moderate": moderate}
    base = {"clip_ratio": 0.2, "clip_ratio_low": 0.2, "clip_ratio_high": 0.28, "clip_ratio_c": 3.0,
            "tau_pos": 1.0, "tau_neg": 1.05, "global_batch_info": {},
            "policy_loss": {"loss_mode": "clip_cov", "clip_cov_ratio": 0.2, "clip_cov_lb": 1.0, "clip_cov_ub": 5.0,
                            "kl_cov_ratio": 0.2, "ppo_kl_coef": 0.1, "dro_beta": 0.1}}
    runs = []
    for lname in logps:
        for mname in ("mask", "mask_empty"):
            runs.append(("clip_cov", lname, mname, None, "token-mean", {}))
            runs.append(("kl_cov", lname, mname, None, "token-mean", {}))
        runs.append(("clip_cov", lname, "mask", "isw", "token-mean", {}))
        runs.append(("kl_cov", lname, "mask", "isw", "token-mean", {}))
        runs.append(("clip_cov", lname, "mask", None, "seq-mean-token-mean",
                     {"clip_cov_ratio": 0.1, "clip_cov_lb": 0.2, "clip_cov_ub": 3.0}))
        runs.append(("clip_cov", lname, "mask", None, "token-mean",
                     {"clip_cov_ratio": 0.1, "clip_cov_lb": 0.2, "clip_cov_ub": 3.0}))
        runs.append(("kl_cov", lname, "mask", None, "seq-mean-token-mean", {"kl_cov_ratio": 0.05, "ppo_kl_coef": 1.0}))
    for mode, lname, mname, wname, agg, over in runs:
        name = f"{mode}_{lname}_{mname}_{wname or 'now'}_{agg}" + "".join(f"_{k}{v}" for k, v in over.items())

        def run(mode=mode, lname=lname, mname=mname, wname=wname, agg=agg, over=over, name=name):
            cfgd = json.loads(json.dumps(base))
            cfgd["policy_loss"].update(over)
            cfgd["policy_loss"]["loss_mode"] = mode
            cfg = make_actor_config(cfgd)
            fn = ca.get_policy_loss_fn(mode)
            names = ["top_k_idx", "perm", "corr"] if mode == "clip_cov" else ["large_cov_idxs", "all_valid_idx"]
            tracer, seen = _trace_locals(fn, names)
            w = is_w if wname else None
            torch.manual_seed(SEED)
            lp = logps[lname].clone().requires_grad_(True)
            sys.settrace(tracer)
            try:
                loss, metrics = fn(X["old"], lp, X["adv"], X[mname], loss_agg_mode=agg, config=cfg,
                                   rollout_is_weights=w)
            finally:
                sys.settrace(None)
            loss.backward()
            rec = {}
            if mode == "clip_cov":
                # the candidates: top_k_idx as torch.nonzero returned it, before the permutation
                cands = None
                for snap in seen["lines"]:
                    if "top_k_idx" in snap and "perm" not in snap and snap["top_k_idx"].dtype == torch.long:
                        cands = snap["top_k_idx"]
                cands = cands if cands is not None else torch.empty((0, 2), dtype=torch.long)
                rec["candidates"] = [int(i) * T + int(j) for i, j in cands.tolist()]
                rec["perm"] = [int(v) for v in seen["ret"]["perm"].tolist()] if "perm" in seen["ret"] else []
                rec["selected"] = [int(i) * T + int(j) for i, j in seen["ret"]["top_k_idx"].tolist()]
                corr = seen["ret"]["corr"]
            else:
                idx = seen["ret"].get("large_cov_idxs")
                rec["selected"] = sorted(int(v) for v in idx.tolist()) if idx is not None else []
                corr = None
            inputs = {"old_log_prob": X["old"], "log_prob": logps[lname], "advantages": X["adv"],
                      "response_mask": X[mname], **rec}
            if w is not None:
                inputs["rollout_is_weights"] = w
            params = {k: v for k, v in cfgd.items() if k != "global_batch_info"}
            params["loss_agg_mode"] = agg
            params["torch_manual_seed"] = SEED
            outs = {"loss": loss}
            if corr is not None:
                outs["corr"] = corr
            for k, v in metrics.items():
                if isinstance(v, (int, float)):
                    outs[k] = v
            C.case(name, fn.__name__, params, inputs, outs, {"log_prob": lp.grad})
        C.guard(name, run)
    C.write(os.path.join(out, "verl_cov.json"))

# ----------------------------------------------------------------------------------------------
# TRL CPO / ORPO (trl.experimental), KTO and RewardTrainer: their REAL loss paths on instances made
# with object.__new__ holding only the attributes read. CPO/ORPO go through get_batch_loss_metrics
# -> concatenated_forward (padding, label masks, the cross-entropy NLL, get_batch_logps) with a
# model whose logits over a 2-token vocabulary are [ℓ, log(1 − e^ℓ)] at every position, so the
# log-softmax of label 0 is the seeded per-token log-prob ℓ (a leaf: autograd gives d loss / dℓ).
# ----------------------------------------------------------------------------------------------
def trl_offline(X, out):
    import collections
    import warnings
    from types import SimpleNamespace

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    C = Collector("trl")
    g = torch.Generator().manual_seed(SEED + 23)
    P, L = 4, 7
    lengths_c, lengths_r = [7, 3, 5, 1], [2, 7, 5, 4]

    def pair_batch(prompt_len):
        W = prompt_len + L
        ids = torch.zeros(2 * P, W, dtype=torch.long)
        att = torch.zeros(2 * P, W, dtype=torch.long)
        lab = torch.full((2 * P, W), -100, dtype=torch.long)
        for i, n in enumerate(lengths_c + lengths_r):
            att[i, : prompt_len + n] = 1
            lab[i, prompt_len : prompt_len + n] = 0
        batch = {"chosen_input_ids": ids[:P], "chosen_attention_mask": att[:P], "chosen_labels": lab[:P],
                 "rejected_input_ids": ids[P:], "rejected_attention_mask": att[P:], "rejected_labels": lab[P:]}
        return batch, W, (lab[:, 1:] != -100).float(), att

    tok_all = -0.05 - 2.95 * torch.rand(2 * P, L + 1, generator=g)  # ℓ in (-3, -0.05): log(1 − e^ℓ) finite
    tok_all[1] = tok_all[1] * 0.2  # a high-probability chosen completion (ORPO's log1mexp near 0)

    class LogitModel(torch.nn.Module):
        def __init__(self, leaf):
            super().__init__()
            self.leaf = leaf
            self.training = True

        def forward(self, input_ids, **kw):
            lead = self.leaf  # [2P, W−1]: position j predicts token j+1
            lead = torch.cat([lead, torch.full_like(lead[:, :1], -1.0)], dim=1)
            logits = torch.stack([lead, torch.log1p(-torch.exp(lead))], dim=-1)
            return SimpleNamespace(logits=logits)

    def common(tr):
        tr.__dict__.update(is_encoder_decoder=False, aux_loss_enabled=False, pad_token_id=0, padding_value=0,
                           accelerator=_FakeAccelerator())

    # ---- CPO
    try:
        from trl.experimental.cpo import CPOTrainer
    except Exception as e:
        C.skip("CPOTrainer", f"import failed: {type(e).__name__}: {e}")
        CPOTrainer = None
    cpo_variants = [("sigmoid", 0.1, 0.0, 1.0, 0.5, 0.0), ("sigmoid", 0.1, 0.1, 1.0, 0.5, 0.0),
                    ("sigmoid", 0.5, 0.0, 0.0, 0.5, 0.0), ("hinge", 0.1, 0.0, 1.0, 0.5, 0.0),
                    ("hinge", 2.0, 0.0, 0.5, 0.5, 0.0), ("ipo", 0.1, 0.0, 1.0, 0.5, 0.0),
                    ("ipo", 0.5, 0.0, 0.0, 0.5, 0.0), ("simpo", 0.1, 0.0, 0.0, 0.5, 0.0),
                    ("simpo", 2.0, 0.1, 1.0, 1.2, 0.0), ("sigmoid", 0.1, 0.0, 1.0, 0.5, 0.25),
                    ("sigmoid", 0.5, 0.0, 0.0, 0.5, -0.5), ("simpo", 2.0, 0.0, 1.0, 0.5, 0.5)]
    for lt, beta, ls, cpo_alpha, gamma, alpha in cpo_variants if CPOTrainer else []:
        name = f"cpo_{lt}_beta{beta}_ls{ls}_cpoalpha{cpo_alpha}_gamma{gamma}_alpha{alpha}"

        def run(lt=lt, beta=beta, ls=ls, cpo_alpha=cpo_alpha, gamma=gamma, alpha=alpha, name=name):
            batch, W, cmask, _ = pair_batch(1)
            tok = tok_all[:, : W - 1].clone()
            leaf = tok.clone().requires_grad_(True)
            tr = object.__new__(CPOTrainer)
            common(tr)
            tr.__dict__.update(loss_type=lt, beta=beta, label_smoothing=ls, cpo_alpha=cpo_alpha, simpo_gamma=gamma,
                               alpha=alpha)
            loss, metrics = tr.get_batch_loss_metrics(LogitModel(leaf), batch, train_eval="train")
            loss.backward()
            C.case(name, "CPOTrainer.get_batch_loss_metrics",
                   {"loss_type": lt, "beta": beta, "label_smoothing": ls, "cpo_alpha": cpo_alpha, "simpo_gamma": gamma,
                    "alpha": alpha, "prompt_len": 1},
                   {"per_token_logps": tok, "completion_mask": cmask},
                   {"loss": loss, "nll_loss": metrics["nll_loss"], "rewards_chosen": metrics["rewards/chosen"],
                    "rewards_rejected": metrics["rewards/rejected"]},
                   {"per_token_logps": leaf.grad})
        C.guard(name, run)

    # ---- ORPO
    try:
        from trl.experimental.orpo import ORPOTrainer
    except Exception as e:
        C.skip("ORPOTrainer", f"import failed: {type(e).__name__}: {e}")
        ORPOTrainer = None
    for beta, prompt_len in ((0.1, 1), (1.0, 1), (0.1, 2)) if ORPOTrainer else []:
        name = f"orpo_beta{beta}_prompt{prompt_len}"

        def run(beta=beta, prompt_len=prompt_len, name=name):
            batch, W, cmask, att = pair_batch(prompt_len)
            tok = tok_all[:, : W - 1].clone()
            leaf = tok.clone().requires_grad_(True)
            tr = object.__new__(ORPOTrainer)
            common(tr)
            tr.__dict__.update(beta=beta)
            loss, metrics = tr.get_batch_loss_metrics(LogitModel(leaf), batch, train_eval="train")
            loss.backward()
            C.case(name, "ORPOTrainer.get_batch_loss_metrics", {"beta": beta, "prompt_len": prompt_len},
                   {"per_token_logps": tok, "completion_mask": cmask, "attention_mask_shifted": att[:, 1:].float()},
                   {"loss": loss, "nll_loss": metrics["nll_loss"], "log_odds_ratio": metrics["log_odds_ratio"]},
                   {"per_token_logps": leaf.grad})
        C.guard(name, run)

    # ---- KTO (KTOTrainer._compute_loss; precomputed reference log-probs; the KL pass under no_grad)
    try:
        from trl import KTOTrainer
    except Exception as e:
        C.skip("KTOTrainer", f"import failed: {type(e).__name__}: {e}")
        KTOTrainer = None
    NB, W = 6, 1 + L
    lengths_k = [7, 3, 5, 1, 6, 4]
    labels_k = [True, False, True, True, False, False]
    cm_k = torch.zeros(NB, W, dtype=torch.long)
    for i, n in enumerate(lengths_k):
        cm_k[i, 1 : 1 + n] = 1
    kl_cm = torch.roll(cm_k, 1, dims=0)  # TRL: completions rotated by one within the batch
    tok_k = -2.5 * torch.rand(NB, W - 1, generator=g) * cm_k[:, 1:]
    ref_k = (tok_k + 0.6 * torch.randn(NB, W - 1, generator=g) * cm_k[:, 1:]).sum(1)
    ref_k[3] -= 6.0
    kl_tok = -2.5 * torch.rand(NB, W - 1, generator=g) * kl_cm[:, 1:]
    for lt, beta, wd, wu, kl_shift in (("kto", 0.1, 1.0, 1.0, -1.0), ("kto", 0.5, 1.0, 1.33, -1.0),
                                       ("kto", 0.1, 1.0, 1.0, 1.0), ("apo_zero_unpaired", 0.1, 1.0, 1.0, -1.0),
                                       ("apo_zero_unpaired", 0.5, 0.8, 1.2, -1.0)) if KTOTrainer else []:
        name = f"kto_{lt}_beta{beta}_wd{wd}_wu{wu}_klshift{kl_shift}"

        def run(lt=lt, beta=beta, wd=wd, wu=wu, kl_shift=kl_shift, name=name):
            leaf = tok_k.clone().requires_grad_(True)
            KL_ids = torch.zeros(NB, W, dtype=torch.long)
            ref_KL = kl_tok.sum(1) - kl_shift  # policy − reference KL sums: mean ≈ kl_shift

            class KtoModel(torch.nn.Module):
                training = True

                def forward(self, input_ids, **kw):
                    lp = kl_tok if input_ids is KL_ids else leaf
                    z = torch.zeros_like(lp)
                    return SimpleNamespace(log_probs=lp, entropy=z, mean_logits=z, aux_loss=None)

            model = KtoModel()
            tr = object.__new__(KTOTrainer)
            tr.__dict__.update(model=model, loss_type=lt, beta=beta, desirable_weight=wd, undesirable_weight=wu,
                               calculate_KL=(lt == "kto"), precompute_ref_logps=True, aux_loss_enabled=False,
                               _total_train_tokens=0, _tp_size=1, accelerator=_FakeAccelerator(),
                               args=SimpleNamespace(gradient_checkpointing_kwargs=None),
                               _metrics={"train": collections.defaultdict(list), "eval": collections.defaultdict(list)})
            batch = {"input_ids": torch.zeros(NB, W, dtype=torch.long), "attention_mask": torch.ones(NB, W, dtype=torch.long),
                     "completion_mask": cm_k, "KL_input_ids": KL_ids, "KL_attention_mask": torch.ones(NB, W, dtype=torch.long),
                     "KL_completion_mask": kl_cm, "label": torch.tensor(labels_k), "ref_logps": ref_k,
                     "ref_KL_logps": ref_KL}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loss = tr._compute_loss(model, batch, return_outputs=False)
            loss = loss[0] if isinstance(loss, tuple) else loss
            loss.backward()
            C.case(name, "KTOTrainer._compute_loss",
                   {"loss_type": lt, "beta": beta, "desirable_weight": wd, "undesirable_weight": wu},
                   {"per_token_logps": tok_k, "completion_mask": cm_k[:, 1:].float(), "label": [int(v) for v in labels_k],
                    "ref_logps": ref_k, "KL_logps": kl_tok.sum(1), "ref_KL_logps": ref_KL},
                   {"loss": loss, "kl": tr._metrics["train"]["kl"][-1]}, {"per_token_logps": leaf.grad})
        C.guard(name, run)

    # ---- RewardTrainer.compute_loss
    try:
        from trl import RewardTrainer
    except Exception as e:
        C.skip("RewardTrainer", f"import failed: {type(e).__name__}: {e}")
        RewardTrainer = None
    rc, rr = torch.randn(8, generator=g) * 2, torch.randn(8, generator=g) * 2
    rr[0] = rc[0]
    rc[1], rr[1] = 15.0, -15.0
    margin = torch.rand(8, generator=g) * 2
    for use_margin, center in ((False, None), (True, None), (False, 0.01), (True, 0.1)) if RewardTrainer else []:
        name = f"reward_margin{int(use_margin)}_center{center}"

        def run(use_margin=use_margin, center=center, name=name):
            leaf = torch.cat([rc, rr]).unsqueeze(-1).clone().requires_grad_(True)

            class RM(torch.nn.Module):
                training = True

                def forward(self, **kw):
                    return SimpleNamespace(logits=leaf)

            model = RM()
            tr = object.__new__(RewardTrainer)
            tr.__dict__.update(model=model, args=SimpleNamespace(center_rewards_coefficient=center),
                               _total_train_tokens=0, _tp_size=1, accelerator=_FakeAccelerator(),
                               _metrics={"train": collections.defaultdict(list), "eval": collections.defaultdict(list)})
            inputs = {"input_ids": torch.zeros(16, 3, dtype=torch.long), "attention_mask": torch.ones(16, 3, dtype=torch.long)}
            if use_margin:
                inputs["margin"] = margin
            loss = tr.compute_loss(model, inputs)
            loss.backward()
            ins = {"rewards_chosen": rc, "rewards_rejected": rr}
            if use_margin:
                ins["margin"] = margin
            C.case(name, "RewardTrainer.compute_loss", {"center_rewards_coefficient": center}, ins, {"loss": loss},
                   {"rewards_chosen": leaf.grad[:8, 0], "rewards_rejected": leaf.grad[8:, 0]})
        C.guard(name, run)
    C.write(os.path.join(out, "trl_offline.json"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(SEED)
    X = make_inputs()
    jobs = {"verl_advantage": verl_advantage, "verl_ops": verl_ops, "verl_policy_loss": verl_policy_loss,
            "verl_rollout_correction": verl_rollout_correction, "openrlhf": openrlhf_all, "trl_dpo": trl_dpo,
            "trl_grpo": trl_grpo, "verl_cov": verl_cov,
            "trl_offline": trl_offline}
    for k, f in jobs.items():
        if a.only and k not in a.only.split(","):
            continue
        print(f"== {k}", file=sys.stderr)
        f(X, a.out)


if __name__ == "__main__":
    main()
