#!/usr/bin/env python3
"""Golden vectors from open-instruct's REAL code (allenai/open-instruct, not on the package registry).

Writes tests/golden/data/open_instruct_{grpo,offline,advantage}.json, read by
tests/golden/open_instruct_{grpo,offline,advantage}.cpp. Same layout, writer, seeded inputs and
`meta` / `skipped` as generate.py (its helpers are imported, not copied).

Source: a git checkout or mirror of allenai/open-instruct ($OPEN_INSTRUCT_GIT; setup_peers.sh
clones it into $PEER_VENV/open-instruct), read at OI_COMMIT with `git show` (the SFT "sum" reduction,
removed in bb98dbca, at OI_SFT_SUM_COMMIT = bb98dbca~1). Nothing is installed from it.

How the code is loaded. open-instruct's modules import vllm, ray, deepspeed, olmo_core, wandb,
transformers... at import time, none of which the loss/advantage functions use. So no module is
imported: the named top-level definitions are extracted with `ast` from the file at the commit and
exec'd (unmodified; compiled with `from __future__ import annotations` so type annotations that
name unavailable modules, e.g. data_types.CollatedBatchData, stay unevaluated strings) in a
namespace holding only what they use (torch, numpy, enum, dataclasses, torch.nn.functional as F,
torch.distributed as dist). Exactly:
  grpo_utils.py     GRPOLossType, RhoCorrection, _rho_drop_masks, _sequence_level_mean,
                    compute_rho_correction, resolve_old_logprob, compute_grpo_loss, mask_logprobs,
                    calculate_token_counts; the defaults of GRPOExperimentConfig's fields are read
                    from its class body (the class itself inherits olmo_core configs).
  model_utils.py    estimate_kl, TensorCache. compute_grpo_loss calls `model_utils.estimate_kl`:
                    the namespace's `model_utils` is a SimpleNamespace holding that real function
                    (the only stand-in object; model_utils.py imports deepspeed/olmo_core).
  rl_utils.py       masked_mean, calculate_advantages, calculate_advantages_packed
  utils.py          INVALID_LOGPROB
  dpo_utils.py      DPOLossType, DPOConfig (instantiated), dpo_loss, wpo_loss, simpo_loss,
                    compute_loss, _get_batch_logps
  data_loader.py    maybe_mask_truncated_completions; the advantage normalisation is inline in
                    DataPreparationActor (not a function): its statements from
                    `scores = np.array(batch.scores)` to the `advantage_normalization_type` if/elif
                    are extracted with ast and exec'd with `batch`, `self.config` namespaces.
  finetune.py       (OI_SFT_SUM_COMMIT) the inline `if args.reduce_loss == "mean": ... else: ...`
                    block of main(), exec'd with `outputs.loss` = transformers' ForCausalLMLoss
                    (what a HF causal LM returns as outputs.loss; HEAD uses the same model loss).
The GRPO training step (grpo_fast.py PolicyTrainerRayProcess.train, lines ~664-719 at OI_COMMIT)
is a method of a Ray actor holding a DeepSpeed engine; grpo_step() below calls the same real
functions in the same order with the same arguments (mask_logprobs -> resolve_old_logprob ->
ratio = exp(new - old) -> compute_rho_correction -> compute_grpo_loss -> pg + beta*kl ->
masked_mean(..., None, loss_denominator)); the three glue lines are restated. The final
`loss *= world_size // sequence_parallel_size` is 1 here. calculate_token_counts runs its real
dist.all_reduce on a 1-process gloo group.

Run: $PEER_VENV/bin/python tests/golden/generate_open_instruct.py [--out DIR] [--only grpo,offline]
"""
import __future__
import argparse
import ast
import dataclasses
import enum
import os
import subprocess
import sys
import tempfile
import types

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import generate as gen  # noqa: E402  (tens, Collector, make_inputs, SEED, B, T, meta)

OI_COMMIT = "e6c3044aa6201c8bfa4573c1b03142af599e730d"
OI_SFT_SUM_COMMIT = "1b695caf94e7223fccbc457f1940398562d342dd"  # bb98dbca~1: last with reduce_loss
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def oi_git():
    venv = os.environ.get("PEER_VENV", os.path.join(REPO, ".venv-peers"))
    for d in (os.environ.get("OPEN_INSTRUCT_GIT"), os.path.join(venv, "open-instruct")):
        if d and os.path.isdir(d):
            return d
    raise SystemExit("open-instruct source not found: set OPEN_INSTRUCT_GIT (see setup_peers.sh)")


def oi_source(path, commit=OI_COMMIT):
    return subprocess.run(["git", "-C", oi_git(), "show", f"{commit}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def exec_nodes(nodes, ns, filename):
    code = compile(ast.Module(body=nodes, type_ignores=[]), filename, "exec",
                   flags=__future__.annotations.compiler_flag, dont_inherit=True)
    exec(code, ns)


def load_defs(path, names, ns, commit=OI_COMMIT):
    """exec the top-level definitions `names` of open-instruct's `path` (unmodified) into ns."""
    tree = ast.parse(oi_source(path, commit))
    picked = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names:
            picked.append(node)
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in names for t in node.targets):
            picked.append(node)
    found = {getattr(n, "name", None) or n.targets[0].id for n in picked}
    missing = set(names) - found
    if missing:
        raise LookupError(f"{path}@{commit[:7]}: {sorted(missing)} not found")
    exec_nodes(picked, ns, f"open_instruct@{commit[:7]}/{path}")
    return tree


def class_defaults(tree, cls, ns):
    """Field defaults (constants, or attributes evaluated in ns) of a dataclass body."""
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    out = {}
    for s in node.body:
        if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name) and s.value is not None:
            try:
                out[s.target.id] = ast.literal_eval(s.value)
            except ValueError:
                try:
                    out[s.target.id] = eval(compile(ast.Expression(s.value), cls, "eval"), ns)
                except Exception:
                    pass
    return out


def base_ns():
    return {"torch": torch, "np": np, "enum": enum, "dataclass": dataclasses.dataclass,
            "field": dataclasses.field, "F": F, "nn": torch.nn, "dist": dist, "math": __import__("math")}


def load_open_instruct():
    ns = base_ns()
    load_defs("open_instruct/utils.py", ["INVALID_LOGPROB"], ns)
    mu = base_ns()
    load_defs("open_instruct/model_utils.py", ["estimate_kl", "TensorCache"], mu)
    ns["model_utils"] = types.SimpleNamespace(estimate_kl=mu["estimate_kl"])
    ns["TensorCache"] = mu["TensorCache"]
    load_defs("open_instruct/rl_utils.py", ["masked_mean", "calculate_advantages", "calculate_advantages_packed"], ns)
    tree = load_defs("open_instruct/grpo_utils.py",
                     ["GRPOLossType", "RhoCorrection", "_rho_drop_masks", "_sequence_level_mean",
                      "compute_rho_correction", "resolve_old_logprob", "compute_grpo_loss", "mask_logprobs",
                      "calculate_token_counts"], ns)
    ns["grpo_defaults"] = class_defaults(tree, "GRPOExperimentConfig", ns)
    load_defs("open_instruct/dpo_utils.py",
              ["DPOLossType", "DPOConfig", "dpo_loss", "wpo_loss", "simpo_loss", "compute_loss", "_get_batch_logps"],
              ns)
    ns["model_utils"].TensorCache = ns["TensorCache"]
    return ns


def oi_meta(peer):
    m = ORIGINAL_META(peer)
    m.update({"peer": "open-instruct", "peer_version": OI_COMMIT, "source": "github:allenai/open-instruct",
              "sft_sum_commit": OI_SFT_SUM_COMMIT, "generator": "tests/golden/generate_open_instruct.py"})
    return m


ORIGINAL_META = gen.meta
gen.meta = oi_meta  # Collector.write looks meta up in generate's globals


# ----------------------------------------------------------------------------------------------
# GRPO loss path (grpo_fast.py train step)
# ----------------------------------------------------------------------------------------------
def init_dist():
    if not dist.is_initialized():
        f = tempfile.NamedTemporaryFile(delete=False)
        f.close()
        os.unlink(f.name)
        dist.init_process_group("gloo", init_method=f"file://{f.name}", rank=0, world_size=1)


def grpo_inputs(X):
    g = torch.Generator().manual_seed(gen.SEED + 101)
    old = X["old"]
    vllm = old - 0.6 * torch.randn(gen.B, gen.T, generator=g)
    vllm[2, 1] = old[2, 1] - 12.0  # ℓold − ℓvllm = +12: beyond the ±10 clamp, ρ = e^10
    vllm[4, 0] = old[4, 0] + 11.0  # −11: ρ = e^−10
    vllm[0, 5] = old[0, 5] - 1.5   # ρ ≈ 4.5 (above every clamp / mask bound used)
    # open-instruct has no log-ratio clamp: generate.py's ±25 log-ratios would make e^25 dominate
    # every loss value, so they are ±2.5 here (still outside every clip range)
    lp = X["logp"].clone()
    lp[1, 0] = old[1, 0] + 2.5
    lp[2, 3] = old[2, 3] - 2.5
    ref = X["ref"]  # ref[1, 1] is ℓold − 30: d ≈ +30 (k3 ≈ 29)
    ref_far = ref.clone()
    ref_far[5, 0] = lp[5, 0] - 50.0  # d = +50: clamped to +40 (k3 = 39)
    ref_far_neg = ref_far.clone()
    ref_far_neg[2, 2] = lp[2, 2] + 47.0  # d = −47: clamped to −40 (k1, k2, r·d; k3 would be e^40)
    return lp, vllm, ref_far, ref_far_neg


def grpo_step(oi, cfg, lp0, old0, vllm0, ref0, adv, mask_f, denominator, epoch_idx=0):
    """One micro-batch of grpo_fast's training loop (see the module docstring)."""
    mask = mask_f.bool()
    lp = lp0.clone().requires_grad_(True)
    local = oi["mask_logprobs"](lp, mask)
    vllm = oi["mask_logprobs"](vllm0, mask)
    cache = [None]
    if cfg.num_mini_batches > 1:
        cache[0] = oi["mask_logprobs"](old0, mask)  # pre-computed old log-probs of the mini-batch
    new = local
    old = oi["resolve_old_logprob"](cache, 0, epoch_idx, cfg.num_mini_batches, cfg.use_vllm_logprobs, vllm, local)
    ratio = torch.exp(new - old)
    rho = oi["compute_rho_correction"](old, vllm, mask, adv, cfg)
    pg, clipfrac, kl = oi["compute_grpo_loss"](new_logprobs=new, ratio=ratio, advantages=adv,
                                               ref_logprobs=ref0 if cfg.load_ref_policy else None, config=cfg,
                                               rho_weights=rho.weights)
    per_token = pg + cfg.beta * kl
    loss = oi["masked_mean"](per_token, mask, None, denominator)
    loss.backward()
    return dict(loss=loss, old=old.detach(), rho=rho.weights.detach(), pg=pg.detach(), kl=kl.detach(),
                grad=lp.grad)


def open_instruct_grpo(X, out, oi):
    C = gen.Collector("open-instruct")
    init_dist()
    d = oi["grpo_defaults"]
    L = oi["GRPOLossType"]
    lp0, vllm0, ref_far, ref_far_neg = grpo_inputs(X)
    old0, ref0, adv = X["old"], X["ref"], X["adv"]
    # accumulation group of two micro-batches: this one and one with the contiguous mask
    accum = oi["calculate_token_counts"](2, types.SimpleNamespace(
        response_masks=[torch.cat([torch.zeros(gen.B, 1), X["mask"]], 1).bool(),
                        torch.cat([torch.zeros(gen.B, 1), X["mask_contig"]], 1).bool()]), torch.device("cpu"))
    token_denominator = accum[0]

    def cfg_of(**kw):
        c = dict(d)
        c.setdefault("load_ref_policy", True)
        c["num_mini_batches"] = 2  # ℓold from the pre-computed cache (so the ratio is not 1)
        c.update(kw)
        if c["loss_denominator"] == "token":
            c["denominator"] = token_denominator
        else:
            c["denominator"] = float(c["loss_denominator"])
        return types.SimpleNamespace(**c)

    cases = {
        "dapo_default": ("dapo", {}),
        "dapo_kl0": ("kl", {"kl_estimator": 0}),
        "dapo_kl1": ("kl", {"kl_estimator": 1}),
        "dapo_kl2": ("kl", {"kl_estimator": 2}),
        "dapo_kl3_is_corrected": ("kl", {"kl_estimator": 3}),
        "dapo_kl2_clamp40": ("kl_clamp", {"kl_estimator": 2}),
        "dapo_kl1_clamp40": ("kl_clamp", {"kl_estimator": 1}),
        "dapo_kl3_clamp40": ("kl_clamp", {"kl_estimator": 3}),
        "dapo_no_ref": ("dapo", {"beta": 0.0, "load_ref_policy": False}),
        "dapo_no_rho": ("dapo", {"use_rho_correction": False}),
        "dapo_constant_denominator": ("dapo", {"loss_denominator": "7.5"}),
        "dapo_single_minibatch": ("dapo", {"num_mini_batches": 1}),
        "dapo_vllm_old": ("dapo", {"num_mini_batches": 1, "use_vllm_logprobs": True, "use_rho_correction": False}),
        "dapo_empty_row": ("dapo", {}),
        "rho_clamp_both": ("rho", {"rho_clamp_lower_bound": 0.8, "rho_clamp_upper_bound": 1.5}),
        "rho_mask_token": ("rho", {"rho_mask_lower_bound": 0.5, "rho_mask_upper_bound": 2.0}),
        "rho_mask_sequence": ("rho", {"rho_mask_sequence_level": True, "rho_mask_lower_bound": 0.5,
                                      "rho_mask_upper_bound": 3.0}),
        "rho_tv_divergence": ("rho", {"rho_mask_tv_divergence": True, "rho_mask_lower_bound": 0.3,
                                      "rho_mask_upper_bound": 1.2}),
        "rho_tv_divergence_sequence": ("rho", {"rho_mask_tv_divergence": True, "rho_mask_sequence_level": True,
                                               "rho_mask_upper_bound": 1.2}),
        "cispo_no_ref": ("cispo", {"loss_fn": L.cispo, "beta": 0.0, "load_ref_policy": False}),
        "cispo_kl2": ("cispo", {"loss_fn": L.cispo}),
        "cispo_no_rho": ("cispo", {"loss_fn": L.cispo, "use_rho_correction": False, "clip_higher": 0.5}),
    }
    for name, (family, kw) in cases.items():
        def run(name=name, family=family, kw=kw):
            cfg = cfg_of(**kw)
            mask = X["mask_empty"] if name == "dapo_empty_row" else X["mask"]
            ref = ref0 if family != "kl_clamp" else ref_far if cfg.kl_estimator == 2 else ref_far_neg
            r = grpo_step(oi, cfg, lp0, old0, vllm0, ref, adv, mask, cfg.denominator)
            params = {k: (str(v) if isinstance(v, enum.Enum) else v) for k, v in vars(cfg).items()
                      if k in ("beta", "clip_lower", "clip_higher", "use_rho_correction", "rho_clamp_lower_bound",
                               "rho_clamp_upper_bound", "rho_mask_lower_bound", "rho_mask_upper_bound",
                               "rho_mask_sequence_level", "rho_mask_tv_divergence", "kl_estimator",
                               "loss_denominator", "loss_fn", "use_vllm_logprobs", "num_mini_batches",
                               "load_ref_policy", "denominator")}
            params["family"] = family
            C.case(name, "grpo_fast.train_step", params,
                   {"new_logprobs": lp0, "old_logprobs": torch.where(mask.bool(), r["old"], old0),
                    "vllm_logprobs": vllm0, "ref_logprobs": ref, "advantages": adv, "response_mask": mask},
                   {"loss": r["loss"], "rho_weights": r["rho"], "pg_loss": r["pg"] * mask, "kl": r["kl"] * mask},
                   {"new_logprobs": r["grad"]})
        C.guard(name, run)

    def kl_all():
        for nm, ref in (("estimate_kl", ref0), ("estimate_kl_clamp40", ref_far_neg)):
            ratio = torch.exp(lp0 - old0)
            diff = (lp0 - ref).clamp(-40.0, 40.0)  # compute_grpo_loss's own clamp
            k = oi["model_utils"].estimate_kl(diff, ratio)
            C.case(nm, "model_utils.estimate_kl", {},
                   {"new_logprobs": lp0, "old_logprobs": old0, "ref_logprobs": ref, "response_mask": X["mask"]},
                   {f"kl{j}": k[j] for j in range(4)})
    C.guard("estimate_kl", kl_all)
    C.skip("non_stop_penalty", "ground_truth_utils.py applies it inline in the reward_fn closure of the reward pipeline "
                "(scores[i] = non_stop_penalty_value if finish_reason != 'stop'): not a function; reward "
                "combination is covered with the verifiers")
    C.write(os.path.join(out, "open_instruct_grpo.json"))
    dist.destroy_process_group()


# ----------------------------------------------------------------------------------------------
# DPO family (dpo_utils.compute_loss) and SFT NLL (finetune.py)
# ----------------------------------------------------------------------------------------------
def dpo_batch(P, W, g):
    """P pairs of W+1 columns: per-token log-probs where column t predicts labels[t+1]."""
    def side(lengths, prompt):
        labels = torch.full((P, W + 1), -100, dtype=torch.long)
        for i, n in enumerate(lengths):
            labels[i, prompt[i]:prompt[i] + n] = 7
        return labels
    lc = [min(W - 1, 2 + (3 * i) % W) for i in range(P)]
    lr = [1 + (5 * i + 1) % (W - 1) for i in range(P)]
    prompt = [1 + i % 2 for i in range(P)]
    lr[0] = 1
    labels_c, labels_r = side(lc, prompt), side(lr, prompt)
    pc = -2.5 * torch.rand(P, W + 1, generator=g) - 0.05
    pr = -2.5 * torch.rand(P, W + 1, generator=g) - 0.05
    rc = pc + 0.4 * torch.randn(P, W + 1, generator=g)
    rr = pr + 0.4 * torch.randn(P, W + 1, generator=g)
    return labels_c, labels_r, pc, pr, rc, rr


def open_instruct_offline(X, out, oi):
    C = gen.Collector("open-instruct")
    g = torch.Generator().manual_seed(gen.SEED + 202)
    LT, Cfg, getlp = oi["DPOLossType"], oi["DPOConfig"], oi["_get_batch_logps"]
    defaults = Cfg()

    def record(name, fn, params, labels_c, labels_r, pc, pr, ref_c, ref_r, losses, cr, rr, loss, gc, gr):
        # the gradient of column W (it predicts nothing) must be 0: only columns 0..W-1 are stored
        assert float(gc[:, -1].abs().max()) == 0.0 and float(gr[:, -1].abs().max()) == 0.0
        C.case(name, fn, params,
               {"chosen_logps": pc[:, :-1], "rejected_logps": pr[:, :-1],
                "chosen_mask": (labels_c[:, 1:] != -100).float(), "rejected_mask": (labels_r[:, 1:] != -100).float(),
                "reference_chosen_logps": ref_c, "reference_rejected_logps": ref_r},
               {"loss": loss, "losses": losses, "chosen_rewards": cr, "rejected_rewards": rr},
               {"chosen_logps": gc[:, :-1], "rejected_logps": gr[:, :-1]})

    def run_compute_loss(name, P, W, **kw):
        args = Cfg(**kw)
        labels_c, labels_r, pc0, pr0, rc0, rr0 = dpo_batch(P, W, g)
        avg = args.loss_type.is_average_loss
        ref_c, ref_r = getlp(rc0, labels_c, average_log_prob=avg), getlp(rr0, labels_r, average_log_prob=avg)
        cache = oi["TensorCache"](tensors={"chosen_logps": ref_c, "rejected_logps": ref_r})
        pc, pr = pc0.clone().requires_grad_(True), pr0.clone().requires_grad_(True)
        batch = {"index": torch.arange(P), "chosen_labels": labels_c, "rejected_labels": labels_r}
        losses, cr, rr = oi["compute_loss"](args, batch, getlp(pc, labels_c, average_log_prob=avg),
                                            getlp(pr, labels_r, average_log_prob=avg), cache)
        loss = losses.mean()  # dpo_tune_cache.py / olmo_core_train_modules.py: loss = losses.mean()
        loss.backward()
        params = {"loss_type": str(args.loss_type), "beta": args.beta, "label_smoothing": args.label_smoothing,
                  "gamma_beta_ratio": args.gamma_beta_ratio, "average_log_prob": avg}
        record(name, "dpo_utils.compute_loss", params, labels_c, labels_r, pc0, pr0, ref_c, ref_r,
               losses, cr, rr, loss, pc.grad, pr.grad)

    P, W = 5, 8
    cases = {
        "dpo_beta0.1": dict(loss_type=LT.dpo, beta=0.1),
        "dpo_default_beta": dict(loss_type=LT.dpo),
        "cdpo_eps0.1": dict(loss_type=LT.dpo, beta=0.5, label_smoothing=0.1),
        "dpo_norm_default": dict(),  # DPOConfig defaults: dpo_norm, β = 5
        "dpo_norm_eps0.2": dict(loss_type=LT.dpo_norm, label_smoothing=0.2),
        "simpo_default": dict(loss_type=LT.simpo),
        "simpo_beta2_ratio0.5_eps0.1": dict(loss_type=LT.simpo, beta=2.0, gamma_beta_ratio=0.5, label_smoothing=0.1),
    }
    for name, kw in cases.items():
        C.guard(name, lambda name=name, kw=kw: run_compute_loss(name, P, W, **kw))
    # wpo: the weight broadcasts the summed (P,) log-probs against the (P, W+1) label mask, which
    # runs only when P == W + 1 (or P == 1); both shapes recorded.
    C.guard("wpo_square", lambda: run_compute_loss("wpo_square", 5, 4, loss_type=LT.wpo, beta=0.1))
    C.guard("wpo_single_pair", lambda: run_compute_loss("wpo_single_pair", 1, 8, loss_type=LT.wpo, beta=0.1))

    def reference_free():
        labels_c, labels_r, pc0, pr0, _, _ = dpo_batch(P, W, g)
        pc, pr = pc0.clone().requires_grad_(True), pr0.clone().requires_grad_(True)
        z = torch.zeros(P)
        losses, cr, rr = oi["dpo_loss"](getlp(pc, labels_c), getlp(pr, labels_r), z, z, beta=0.1,
                                        reference_free=True, label_smoothing=0.05)
        loss = losses.mean()
        loss.backward()
        record("dpo_reference_free", "dpo_utils.dpo_loss", {"beta": 0.1, "label_smoothing": 0.05,
                                                            "reference_free": True, "average_log_prob": False},
               labels_c, labels_r, pc0, pr0, z, z, losses, cr, rr, loss, pc.grad, pr.grad)
    C.guard("dpo_reference_free", reference_free)
    C.skip("dpo_nll", f"absent: dpo_utils at {OI_COMMIT[:7]} has no NLL term (loss types {[str(t) for t in LT]})")

    # SFT: the legacy finetune.py reduce_loss block, exec'd as is.
    def sft():
        from transformers.loss.loss_utils import ForCausalLMLoss
        tree = ast.parse(oi_source("open_instruct/finetune.py", OI_SFT_SUM_COMMIT))
        block = next(n for n in ast.walk(tree) if isinstance(n, ast.If) and isinstance(n.test, ast.Compare)
                     and ast.unparse(n.test) == "args.reduce_loss == 'mean'" and isinstance(n.body[0], ast.Assign))
        Bs, Ts = 4, 7
        lengths, prompt = [5, 2, 6, 1], [1, 2, 0, 3]
        labels = torch.full((Bs, Ts), -100, dtype=torch.long)
        for i, n in enumerate(lengths):
            labels[i, prompt[i] + 1:prompt[i] + 1 + n] = 0
        ell0 = -2.9 * torch.rand(Bs, Ts, generator=g) - 0.05
        for mode in ("sum", "mean"):
            ell = ell0.clone().requires_grad_(True)
            # vocabulary {0, 1}: log-softmax of label 0 is exactly ℓ (TRL offline pattern in generate.py)
            logits = torch.stack([ell, torch.log(-torch.expm1(ell))], -1)
            outputs = types.SimpleNamespace(logits=logits, loss=ForCausalLMLoss(logits, labels, vocab_size=2))
            ns = {"torch": torch, "args": types.SimpleNamespace(reduce_loss=mode, load_balancing_loss=False),
                  "outputs": outputs, "batch": {"labels": labels}, "embedding_size": 2}
            exec_nodes([block], ns, f"open_instruct@{OI_SFT_SUM_COMMIT[:7]}/open_instruct/finetune.py")
            ns["loss"].backward()
            assert float(ell.grad[:, -1].abs().max()) == 0.0
            C.case(f"sft_{mode}", "finetune.reduce_loss", {"reduce_loss": mode},
                   {"token_logprobs": ell0[:, :-1], "mask": (labels[:, 1:] != -100).float()},
                   {"loss": ns["loss"]}, {"token_logprobs": ell.grad[:, :-1]})
    C.guard("sft", sft)
    C.write(os.path.join(out, "open_instruct_offline.json"))


# ----------------------------------------------------------------------------------------------
# Advantages: group normalisation (data_loader inline), GAE (rl_utils), truncated completions
# ----------------------------------------------------------------------------------------------
def open_instruct_advantage(X, out, oi):
    C = gen.Collector("open-instruct")
    tree = ast.parse(oi_source("open_instruct/data_loader.py"))
    block = None
    for node in ast.walk(tree):
        for field in ("body", "orelse"):
            stmts = getattr(node, field, None)
            if not isinstance(stmts, list):
                continue
            for j, s in enumerate(stmts):
                if isinstance(s, ast.If) and ast.unparse(s.test) == \
                        "self.config.advantage_normalization_type == 'standard'":
                    start = max(i for i in range(j) if isinstance(stmts[i], ast.Assign)
                                and ast.unparse(stmts[i]) == "scores = np.array(batch.scores)")
                    block = stmts[start:j + 1]
    assert block is not None
    g = torch.Generator().manual_seed(gen.SEED + 303)
    rand = [round(float(v), 6) for v in torch.randn(3, generator=g)]
    score_sets = {"n3": ([1.0, 1.0, 0.0, 0.5, 0.5, 0.5] + rand + [0.0, 1.0, 0.25], 3),
                  "n4": ([1.0, 0.0, 0.0, 0.0, 2.0, -1.0, 0.5, 3.5], 4),
                  "n1": ([1.0, -0.5, 2.0], 1)}
    for sname, (scores, n) in score_sets.items():
        for mode in ("standard", "centered"):
            def run(sname=sname, scores=scores, n=n, mode=mode):
                ns = {"np": np, "batch": types.SimpleNamespace(scores=scores),
                      "self": types.SimpleNamespace(config=types.SimpleNamespace(
                          num_samples_per_prompt_rollout=n, advantage_normalization_type=mode))}
                exec_nodes(block, ns, f"open_instruct@{OI_COMMIT[:7]}/open_instruct/data_loader.py")
                C.case(f"{mode}_{sname}", "data_loader.advantage_normalization", {"type": mode, "n": n},
                       {"scores": torch.tensor(scores, dtype=torch.float64), "index": [i // n for i in range(len(scores))]},
                       {"advantages": ns["advantages"]})
            C.guard(f"{mode}_{sname}", run)

    lengths = X["lengths"]
    mask = X["mask_contig"]
    values = (X["values"] * mask).numpy()
    rewards = (X["rewards_dense"] + X["rewards_rand"]).mul(mask).numpy()
    for gamma, lam in ((1.0, 1.0), (0.99, 0.95)):
        def gae(gamma=gamma, lam=lam):
            a, ret = oi["calculate_advantages"](values, rewards, gamma, lam)
            C.case(f"gae_g{gamma}_l{lam}", "rl_utils.calculate_advantages", {"gamma": gamma, "lam": lam},
                   {"values": values, "rewards": rewards, "response_mask": mask, "lengths": list(lengths)},
                   {"advantages": a, "returns": ret})
        C.guard(f"gae_g{gamma}_l{lam}", gae)

    def truncated():
        fn = oi_source("open_instruct/data_loader.py")
        ns = {"logger": types.SimpleNamespace(info=lambda *a, **k: None)}  # logging only
        t2 = ast.parse(fn)
        exec_nodes([n for n in t2.body if isinstance(n, ast.FunctionDef) and n.name == "maybe_mask_truncated_completions"],
                   ns, f"open_instruct@{OI_COMMIT[:7]}/open_instruct/data_loader.py")
        reasons = ["stop", "length", "stop", "stop", "length", "stop"]
        res = types.SimpleNamespace(finish_reasons=list(reasons), responses=list(range(6)), masks=list(range(6)),
                                    logprobs=list(range(6)))

        class Rows:  # model_utils.Batch's row selection: batch[list of indices]
            def __getitem__(self, idx):
                return list(idx)
        kept = ns["maybe_mask_truncated_completions"](res, Rows(), True)
        C.case("mask_truncated_completions", "data_loader.maybe_mask_truncated_completions", {"enabled": True},
               {"finish_reasons": reasons, "response_mask": X["mask"]}, {"kept": torch.tensor(kept, dtype=torch.float64)})
    C.guard("mask_truncated_completions", truncated)
    C.skip("calculate_advantages_packed", "not compared: our gae works on packed sequences directly "
           "(seq_offsets), the padded form above covers the recurrence")
    C.write(os.path.join(out, "open_instruct_advantage.json"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "data"))
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(gen.SEED)
    X = gen.make_inputs()
    oi = load_open_instruct()
    jobs = {"grpo": open_instruct_grpo, "offline": open_instruct_offline, "advantage": open_instruct_advantage}
    for k, f in jobs.items():
        if a.only and k not in a.only.split(","):
            continue
        print(f"== open_instruct_{k}", file=sys.stderr)
        f(X, a.out, oi)


if __name__ == "__main__":
    main()
