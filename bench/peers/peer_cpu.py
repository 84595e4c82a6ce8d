#!/usr/bin/env python3
"""Side-by-side CPU timings: posttrain's benchmarks against the peers' own PyTorch functions.

The peers are imported and called as published; nothing of theirs is copied here:

  verl  (verl.trainer.ppo.core_algos): compute_gae_advantage_return, compute_grpo_outcome_advantage,
        compute_rloo_outcome_advantage, compute_reinforce_plus_plus_outcome_advantage,
        compute_reinforce_plus_plus_baseline_outcome_advantage, compute_remax_outcome_advantage,
        compute_opo_outcome_advantage, compute_grpo_passk_outcome_advantage,
        compute_gpg_outcome_advantage, compute_policy_loss_{vanilla,gspo,cispo,gpg,sapo}
        (+ kl_penalty + agg_loss for verl GRPO), agg_loss, kl_penalty, compute_value_loss.
  TRL   (trl.trainer.dpo_trainer.DPOTrainer._compute_loss): every DPO loss_type, called unbound on a
        stub trainer whose model returns precomputed per-token log-probs (so the timed work is
        TRL's loss, its per-sequence sums and its metric logging, not a language model). TRL's
        GRPO/RLOO losses and advantages are inline in methods that run the model and generation;
        they are not timed.

Each peer case runs forward + backward (autograd of the loss w.r.t. the policy log-probs, or of
the value predictions) where our benchmark computes the gradient, forward only for the advantage
estimators (no gradient). Shapes: the C++ benchmarks' (bench/cpu/advantage.cpp, policy_loss.cpp,
preference_loss.cpp, kl_aggregate.cpp): B = 512, T = 4096 and B = 8, T = 256 for token-level
paths; P = 512 and 8192 pairs of 256-token completions for DPO. torch threads 1 and 2.

Our numbers: the posttrain_bench_cpu binary is run with --benchmark_format=json (or its JSON
output is read with --json); per benchmark the minimum real time over repetitions is kept. The
peer's is the minimum wall time over repetitions (time.perf_counter). Floors: the compulsory bytes
(the benchmark's bytes_per_second x cpu_time) at 15.6 GB/s, the 2-thread read rate of
shared/reference/performance.md (floor_pm), and at the rate of this run's single-thread stream
kernel advantage_floor_gae_traffic (floor_1t). /proc/loadavg is printed before each section.

  python3 bench/peers/peer_cpu.py --bench build-native/bench/posttrain_bench_cpu
  python3 bench/peers/peer_cpu.py --json ours.json --threads 2 --only gae,grpo,rloo,ppo,dpo

Needs torch; verl and trl for their rows (a peer that does not import is reported as such).
"""
import argparse
import json
import os
import subprocess
import sys
import time
import types
from collections import defaultdict

import numpy as np
import torch

PM_READ_BW = 15.6e9  # bytes/s, performance.md §1: 2-core Xeon, 2-thread streaming read


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


def best_time(fn, reps, min_time):
    fn()  # warm-up
    times = []
    start = time.perf_counter()
    while len(times) < reps or (time.perf_counter() - start < min_time and len(times) < 50):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


# ---------------------------------------------------------------------------------------------
# inputs (same distributions as the C++ benchmarks; only the shapes matter for the timing)

def prefix_mask(rows, width, gen, holes=0.0):
    lengths = torch.randint(1, width + 1, (rows,), generator=gen)
    m = (torch.arange(width)[None, :] < lengths[:, None]).float()
    if holes > 0:
        m = m * (torch.rand(rows, width, generator=gen) >= holes).float()
    return m


def token_inputs(B, T):
    g = torch.Generator().manual_seed(7)
    d = types.SimpleNamespace()
    d.B, d.T = B, T
    d.mask = prefix_mask(B, T, g, holes=0.02)
    d.r = 0.01 * torch.randn(B, T, generator=g)
    d.v = torch.randn(B, T, generator=g)
    d.old = -6.0 * torch.rand(B, T, generator=g)
    d.logp = d.old + 0.1 * torch.randn(B, T, generator=g)
    d.ref = d.old + 0.05 * torch.randn(B, T, generator=g)
    d.adv = torch.randn(B, T, generator=g)
    d.values = torch.randn(B, T, generator=g)
    d.old_values = d.values + 0.3 * torch.randn(B, T, generator=g)
    d.returns = torch.randn(B, T, generator=g)
    # outcome rewards placed at the last response token (verl's token_level_rewards layout)
    seq_r = (torch.rand(B, generator=g) < 0.4).float()
    last = (d.mask.cumsum(-1) == d.mask.sum(-1, keepdim=True)) & (d.mask > 0)
    d.outcome = torch.zeros(B, T)
    d.outcome[last] = seq_r.repeat_interleave(last.sum(-1))
    d.index = np.repeat(np.arange(max(B // 8, 1)), 8)[:B]
    d.baselines = torch.rand(B, generator=g)
    return d


# ---------------------------------------------------------------------------------------------
# peer cases: (section, our benchmark name(s), description, builder(shape) -> callable or str)

def verl_cases():
    try:
        import verl.trainer.ppo.core_algos as ca
        from verl.trainer.config.algorithm import AlgoConfig
        from verl.workers.config.actor import ActorConfig
    except Exception as e:  # noqa: BLE001
        return [], f"verl not importable: {type(e).__name__}: {e}"

    def actor(**kw):
        return ActorConfig(strategy="fsdp", ppo_micro_batch_size_per_gpu=1, rollout_n=1, **kw)

    cases = []
    shapes = [(512, 4096), (8, 256)]

    def add(section, ours, what, make, shape_list=shapes):
        for B, T in shape_list:
            cases.append((section, f"{ours}/{B}/{T}" if "{" not in ours else ours.format(B=B, T=T),
                          what, (B, T), make))

    def gae(d):
        return lambda: ca.compute_gae_advantage_return(d.r, d.v, d.mask, 1.0, 1.0)

    add("gae", "advantage_gae_whiten",
        "verl compute_gae_advantage_return (γ = λ = 1; returns, whitened advantages)", gae)

    add("grpo", "advantage_grpo_broadcast", "verl compute_grpo_outcome_advantage",
        lambda d: lambda: ca.compute_grpo_outcome_advantage(d.outcome, d.mask, d.index))
    add("grpo", "advantage_dr_grpo_broadcast", "verl compute_grpo_outcome_advantage (no std)",
        lambda d: lambda: ca.compute_grpo_outcome_advantage(d.outcome, d.mask, d.index,
                                                            norm_adv_by_std_in_grpo=False))
    add("grpo", "advantage_passk_broadcast", "verl compute_grpo_passk_outcome_advantage",
        lambda d: lambda: ca.compute_grpo_passk_outcome_advantage(
            d.outcome, d.mask, d.index, config=AlgoConfig()))
    add("rloo", "advantage_rloo_broadcast", "verl compute_rloo_outcome_advantage",
        lambda d: lambda: ca.compute_rloo_outcome_advantage(d.outcome, d.mask, d.index,
                                                            config=AlgoConfig()))
    add("reinforce", "advantage_reinforce_pp",
        "verl compute_reinforce_plus_plus_outcome_advantage",
        lambda d: lambda: ca.compute_reinforce_plus_plus_outcome_advantage(
            d.outcome, d.mask, config=AlgoConfig(gamma=1.0)))
    add("reinforce", "advantage_reinforce_pp_baseline",
        "verl compute_reinforce_plus_plus_baseline_outcome_advantage",
        lambda d: lambda: ca.compute_reinforce_plus_plus_baseline_outcome_advantage(
            d.outcome, d.mask, d.index, config=AlgoConfig()))
    add("reinforce", "advantage_remax", "verl compute_remax_outcome_advantage",
        lambda d: lambda: ca.compute_remax_outcome_advantage(d.outcome, d.baselines, d.mask,
                                                             config=AlgoConfig()))
    add("grpo", "advantage_opo_broadcast", "verl compute_opo_outcome_advantage",
        lambda d: lambda: ca.compute_opo_outcome_advantage(d.outcome, d.mask, d.index,
                                                           config=AlgoConfig()))
    add("grpo", "advantage_gpg_broadcast", "verl compute_gpg_outcome_advantage",
        lambda d: lambda: ca.compute_gpg_outcome_advantage(d.outcome, d.mask, d.index))

    def pg(fn, mode, cfg, extra_kl=False):
        def make(d):
            def run():
                lp = d.logp.clone().requires_grad_(True)
                loss, _ = fn(d.old, lp, d.adv, d.mask, mode, cfg)
                if extra_kl:  # verl actor with use_kl_loss: + β·agg(kl_penalty(k3))
                    kl = ca.kl_penalty(lp, d.ref, "low_var_kl")
                    loss = loss + 0.001 * ca.agg_loss(kl, d.mask, mode)
                loss.backward()
            return run
        return make

    add("ppo", "pg_ppo", "verl compute_policy_loss_vanilla + backward",
        pg(ca.compute_policy_loss_vanilla, "token-mean", actor()))
    add("ppo", "pg_grpo_verl", "verl vanilla + kl_penalty(low_var_kl) + agg_loss + backward",
        pg(ca.compute_policy_loss_vanilla, "token-mean", actor(), extra_kl=True))
    add("ppo", "pg_gspo_token", "verl compute_policy_loss_gspo + backward",
        pg(ca.compute_policy_loss_gspo, "seq-mean-token-mean",
           actor(clip_ratio_low=3e-4, clip_ratio_high=4e-4)))
    add("ppo", "pg_cispo", "verl compute_policy_loss_cispo + backward",
        pg(ca.compute_policy_loss_cispo, "token-mean", actor()))
    add("ppo", "pg_gpg", "verl compute_policy_loss_gpg + backward",
        pg(ca.compute_policy_loss_gpg, "token-mean", actor()))
    add("ppo", "pg_sapo", "verl compute_policy_loss_sapo + backward",
        pg(ca.compute_policy_loss_sapo, "seq-mean-token-mean",
           actor(tau_pos=1.0, tau_neg=1.05)))

    def value(d):
        def run():
            vp = d.values.clone().requires_grad_(True)
            out = ca.compute_value_loss(vp, d.returns, d.old_values, d.mask, 0.5, "token-mean")
            out[0].backward()
        return run

    add("ppo", "value_clipped", "verl compute_value_loss + backward", value)

    def kl(d):
        def run():
            lp = d.logp.clone().requires_grad_(True)
            ca.kl_penalty(lp, d.ref, "low_var_kl").sum().backward()
        return run

    cases.append(("ops", "kl/k3_value_grad/float/N=2097152",
                  "verl kl_penalty(low_var_kl) + backward", (512, 4096), kl))

    def agg(mode):
        def make(d):
            def run():
                x = d.adv.clone().requires_grad_(True)
                ca.agg_loss(x, d.mask, mode).backward()
            return run
        return make

    cases.append(("ops", "aggregate/token_mean_grad/float/N=2097152",
                  "verl agg_loss token-mean + backward", (512, 4096), agg("token-mean")))
    cases.append(("ops", "aggregate/seq_mean_token_mean_grad/float/N=2097152",
                  "verl agg_loss seq-mean-token-mean + backward", (512, 4096),
                  agg("seq-mean-token-mean")))
    return cases, None


TRL_DPO_TYPES = {  # TRL loss_type -> (our benchmark, preset beta, label_smoothing)
    "sigmoid": ("pref/dpo", 0.1, 0.0),
    "robust": ("pref/robust_dpo", 0.1, 0.1),
    "ipo": ("pref/ipo", 0.1, 0.0),
    "sigmoid_norm": ("pref/dpo_length_normalized", 5.0, 0.0),
    "hinge": ("pref/hinge", 0.1, 0.0),
    "exo_pair": ("pref/exo_pair", 0.1, 1e-3),
    "nca_pair": ("pref/nca_pair", 0.1, 0.0),
    "bco_pair": ("pref/bco_pair", 0.1, 0.0),
    "sppo_hard": ("pref/sppo_hard", 0.1, 0.0),
    "apo_zero": ("pref/apo_zero", 0.1, 0.0),
    "apo_down": ("pref/apo_down", 0.1, 0.0),
    "discopop": ("pref/discopop", 0.1, 0.0),
}


def trl_cases():
    try:
        from trl.trainer.dpo_trainer import DPOTrainer
    except Exception as e:  # noqa: BLE001
        return [], f"trl not importable: {type(e).__name__}: {e}"
    import inspect
    if not hasattr(DPOTrainer, "_compute_loss") or "return_outputs" not in str(
            inspect.signature(DPOTrainer._compute_loss)):
        return [], "trl: DPOTrainer._compute_loss(model, inputs, return_outputs) not found"

    class Accel:
        device = torch.device("cpu")

        @staticmethod
        def gather_for_metrics(x):
            return x

        @staticmethod
        def gather(x):
            return x

    def stub_trainer(loss_type, beta, eps):
        s = types.SimpleNamespace()
        s.model = types.SimpleNamespace(training=True)
        s.accelerator = Accel()
        s.aux_loss_enabled = False
        s.ld_alpha = None
        s.precompute_ref_logps = True
        s.ref_model = None
        s.f_divergence_type = "reverse_kl"
        s.f_alpha_divergence_coef = 1.0
        s.loss_types = [loss_type]
        s.loss_weights = [1.0]
        s.beta = beta
        s.label_smoothing = eps
        s.use_weighting = False
        s.args = types.SimpleNamespace(discopop_tau=0.05, gradient_checkpointing_kwargs=None)
        s._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
        s._total_train_tokens = 0
        s._tp_size = 1
        return s

    def make(loss_type, beta, eps):
        def build(shape):
            P, L = shape
            g = torch.Generator().manual_seed(5)
            mask = prefix_mask(2 * P, L, g)
            logp = (-4.0 * torch.rand(2 * P, L, generator=g)) * mask
            ref = logp.sum(-1) + 0.05 * torch.randn(2 * P, generator=g)
            ref_c, ref_r = ref.chunk(2)
            completion_mask = torch.cat([torch.ones(2 * P, 1), mask], dim=1)  # shifted by one
            inputs = {"input_ids": torch.zeros(2 * P, L + 1, dtype=torch.long),
                      "attention_mask": torch.ones(2 * P, L + 1, dtype=torch.long),
                      "completion_mask": completion_mask,
                      "ref_chosen_logps": ref_c, "ref_rejected_logps": ref_r}
            trainer = stub_trainer(loss_type, beta, eps)
            zeros = torch.zeros(2 * P, L)
            top1 = torch.zeros(2 * P, L, dtype=torch.bool)

            def run():
                lp = logp.clone().requires_grad_(True)

                def model(**kw):  # the language model, replaced by precomputed log-probs
                    return types.SimpleNamespace(log_probs=lp, entropy=zeros, mean_logits=zeros,
                                                 is_top1=top1)

                loss = DPOTrainer._compute_loss(trainer, model, inputs, False)
                loss.backward()
            return run
        return build

    cases = []
    for lt, (ours, beta, eps) in TRL_DPO_TYPES.items():
        for P in (512, 8192):
            cases.append(("dpo", f"{ours}/{P}/256", f"TRL DPOTrainer._compute_loss "
                          f"loss_type={lt} + backward", (P, 256), make(lt, beta, eps)))
    return cases, None


# ---------------------------------------------------------------------------------------------

def run_ours(bench, names, reps, min_time):
    # One regex of the exact benchmark names (Google Benchmark --benchmark_filter).
    pattern = "^(" + "|".join(n.replace(".", "\\.") for n in sorted(names)) + ")$"
    cmd = [bench, f"--benchmark_filter={pattern}", "--benchmark_format=json",
           f"--benchmark_repetitions={reps}", f"--benchmark_min_time={min_time}"]
    print(f"# running {bench} ({len(names)} benchmarks, {reps} repetitions), load {loadavg()}",
          file=sys.stderr)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def index_ours(doc):
    best = {}
    for b in doc.get("benchmarks", []):
        if b.get("run_type") == "aggregate":
            continue
        name = b.get("run_name", b["name"])
        scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b.get("time_unit", "ns")]
        real = b["real_time"] * scale
        cpu = b["cpu_time"] * scale
        bytes_iter = b.get("bytes_per_second", 0.0) * cpu
        items_iter = b.get("items_per_second", 0.0) * cpu
        if name not in best or real < best[name]["real"]:
            best[name] = {"real": real, "bytes": bytes_iter, "items": items_iter}
    return best


def fmt_t(s):
    if s is None:
        return "n/a"
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", default="build-native/bench/posttrain_bench_cpu")
    ap.add_argument("--json", help="read our results from this Google Benchmark JSON file")
    ap.add_argument("--save-json", help="write our benchmark JSON here")
    ap.add_argument("--threads", default="1,2", help="torch thread counts, e.g. 1,2")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.3, help="seconds per peer case")
    ap.add_argument("--bench-min-time", type=float, default=0.2)
    ap.add_argument("--only", help="comma-separated sections: gae,grpo,rloo,reinforce,ppo,ops,dpo")
    ap.add_argument("--small-only", action="store_true", help="skip the large shapes")
    args = ap.parse_args()

    cases, notes = [], []
    for getter in (verl_cases, trl_cases):
        c, note = getter()
        cases += c
        if note:
            notes.append(note)
    if args.only:
        keep = set(args.only.split(","))
        cases = [c for c in cases if c[0] in keep]
    if args.small_only:
        cases = [c for c in cases if c[3][0] * c[3][1] <= 8192 * 256 and c[3][0] != 8192
                 and c[3] != (512, 4096)]

    names = {c[1] for c in cases} | {"advantage_floor_gae_traffic/512/4096"}
    if args.json:
        with open(args.json) as f:
            doc = json.load(f)
    else:
        doc = run_ours(args.bench, names, args.reps, args.bench_min_time)
        if args.save_json:
            with open(args.save_json, "w") as f:
                json.dump(doc, f, indent=1)
    ours = index_ours(doc)
    stream = ours.get("advantage_floor_gae_traffic/512/4096")
    stream_bw = stream["bytes"] / stream["real"] if stream else None

    print(f"# date {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, torch {torch.__version__}, "
          f"host {os.uname().nodename}, nproc {os.cpu_count()}")
    ctx = doc.get("context", {})
    print(f"# ours: {ctx.get('executable', args.json)}, {ctx.get('num_cpus')} CPUs @ "
          f"{ctx.get('mhz_per_cpu')} MHz, library build {ctx.get('library_build_type')}")
    if stream_bw:
        print(f"# single-thread stream kernel (advantage_floor_gae_traffic): "
              f"{stream_bw / 1e9:.1f} GB/s (floor_1t); performance.md 2-thread read "
              f"{PM_READ_BW / 1e9:.1f} GB/s (floor_pm)")
    for n in notes:
        print(f"# {n}")

    threads = [int(t) for t in args.threads.split(",")]
    rows = []
    section = None
    data_cache = {}
    for sec, our_name, what, shape, build in cases:
        if sec != section:
            section = sec
            print(f"# section {sec}: load {loadavg()}", file=sys.stderr)
        if sec == "dpo":
            fn = build(shape)
        else:
            if shape not in data_cache:
                data_cache = {shape: token_inputs(*shape)}
            fn = build(data_cache[shape])
        peer = {}
        for t in threads:
            torch.set_num_threads(t)
            try:
                peer[t] = best_time(fn, args.reps, args.min_time)
            except Exception as e:  # noqa: BLE001
                peer[t] = f"error: {type(e).__name__}: {str(e)[:80]}"
        o = ours.get(our_name)
        rows.append((sec, our_name, what, o, peer, loadavg()))
        print(f"# {our_name}: done, load {loadavg()}", file=sys.stderr)

    hdr = ["ours (benchmark)", "peer", "ours"]
    hdr += [f"peer {t} thr" for t in threads]
    hdr += [f"peer{t}/ours" for t in threads]
    hdr += ["floor_pm", "ours/floor_pm", "ours/floor_1t", "load"]
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for sec, name, what, o, peer, load in rows:
        cells = [name, what, fmt_t(o["real"]) if o else "not run"]
        for t in threads:
            cells.append(fmt_t(peer[t]) if isinstance(peer[t], float) else peer[t])
        for t in threads:
            cells.append(f"{peer[t] / o['real']:.1f}x" if o and isinstance(peer[t], float)
                         else "n/a")
        if o and o["bytes"] > 0:
            f_pm = o["bytes"] / PM_READ_BW
            cells += [fmt_t(f_pm), f"{o['real'] / f_pm:.2f}"]
            cells.append(f"{o['real'] / (o['bytes'] / stream_bw):.2f}" if stream_bw else "n/a")
        else:
            cells += ["n/a", "n/a", "n/a"]
        cells.append(load)
        print("| " + " | ".join(cells) + " |")
    for n in notes:
        print(f"\n{n}")


if __name__ == "__main__":
    main()
