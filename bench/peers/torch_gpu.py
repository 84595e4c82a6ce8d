#!/usr/bin/env python3
"""PyTorch / Liger-Kernel GPU peers of bench/cuda/*.cu, with a ratio table against posttrain.

Times, on the current CUDA device, what verl / TRL / OpenRLHF / Liger do for the hot paths of
shared/reference/performance.md, at the shapes of the C++ CUDA benchmarks:

  token log-probs from bf16 logits [N, V] = [16384, 128256]            (bench/cuda/token_logprobs.cu)
    torch logprob           log_softmax(logits.float()).gather(targets)    (verl/TRL/OpenRLHF)
    torch logprob+entropy   + entropy = logsumexp(z) - sum(softmax(z) * z)  (verl entropy_from_logits)
    torch fwd+bwd           autograd of sum(logprob) w.r.t. the bf16 logits
    liger CE fwd / fwd+bwd  LigerCrossEntropyLoss (reduction sum) on the bf16 logits
  fused linear + log-prob, hidden [16384, 4096] x lm_head [128256, 4096], bf16 (bench/cuda/fused_linear_logprobs.cu)
    torch linear+CE fwd+bwd  logits = hidden @ W.T materialised, then cross_entropy, autograd
    liger FLCE fwd / fwd+bwd LigerFusedLinearCrossEntropyLoss (grads computed in the forward)
  GAE, B = 512, T = 4096, fp32 (bench/cuda/advantage.cu)
    verl GAE python loop     verl core_algos.compute_gae_advantage_return's reverse-time loop,
                             then masked whitening, on CUDA tensors

Liger rows need the liger-kernel wheel importable (run_on_gpu.sh installs .whl/*.whl when present;
pip download liger-kernel==0.8.5 into .whl to carry it). Timing: CUDA events, warm-up, the median
of --reps runs. With --ours bench_cuda.json (Google Benchmark JSON of posttrain_bench_cuda) a
ratio table (peer time / posttrain time) follows. --markdown prints tables in Markdown.
"""
import argparse
import json
import math
import statistics
import sys

import torch


def cuda_time_ms(fn, reps=10, warmup=2):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        e0 = torch.cuda.Event(enable_timing=True)
        e1 = torch.cuda.Event(enable_timing=True)
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1))
    return statistics.median(times)


def free(*names, scope):
    for n in names:
        scope.pop(n, None)
    torch.cuda.empty_cache()


def token_logprob_peers(rows, reps, n, v):
    g = torch.Generator(device="cuda").manual_seed(0)
    logits = (4.0 * torch.randn(n, v, device="cuda", generator=g)).to(torch.bfloat16)
    targets = torch.randint(0, v, (n,), device="cuda", generator=g)
    gb = n * v * 2 / 1e9

    def logprob():
        z = logits.float()
        return torch.log_softmax(z, dim=-1).gather(-1, targets[:, None]).squeeze(-1)

    def logprob_entropy():
        z = logits.float()
        lp = torch.log_softmax(z, dim=-1).gather(-1, targets[:, None]).squeeze(-1)
        pd = torch.softmax(z, dim=-1)
        ent = torch.logsumexp(z, dim=-1) - (pd * z).sum(-1)
        return lp, ent

    def fwd_bwd():
        x = logits.detach().requires_grad_(True)
        lp = torch.log_softmax(x.float(), dim=-1).gather(-1, targets[:, None]).squeeze(-1)
        (-lp.sum() / n).backward()
        return x.grad

    with torch.no_grad():
        rows.append(("torch logprob (fwd)", cuda_time_ms(logprob, reps), gb, "forward_bf16/16384/128256"))
        rows.append(("torch logprob+entropy (fwd)", cuda_time_ms(logprob_entropy, reps), gb,
                     "forward_bf16/16384/128256"))
    rows.append(("torch logprob fwd+bwd (autograd)", cuda_time_ms(fwd_bwd, reps), 2 * gb,
                 "fused_bf16/16384/128256"))
    try:
        from liger_kernel.transformers import LigerCrossEntropyLoss
    except Exception as e:  # noqa: BLE001
        print(f"# liger-kernel not importable ({e}); Liger CE rows skipped", file=sys.stderr)
        return
    ce = LigerCrossEntropyLoss(reduction="sum")

    def liger_fwd():
        with torch.no_grad():
            return ce(logits, targets)

    def liger_fwd_bwd():
        x = logits.detach().requires_grad_(True)
        ce(x, targets).backward()
        return x.grad

    rows.append(("liger CE (fwd)", cuda_time_ms(liger_fwd, reps), gb, "forward_bf16/16384/128256"))
    rows.append(("liger CE fwd+bwd", cuda_time_ms(liger_fwd_bwd, reps), 2 * gb,
                 "fused_bf16/16384/128256"))


def fused_linear_peers(rows, reps, n, h, v):
    g = torch.Generator(device="cuda").manual_seed(1)
    hidden = (torch.rand(n, h, device="cuda", generator=g) * 4 - 2).to(torch.bfloat16)
    weight = (torch.rand(v, h, device="cuda", generator=g) * 0.1 - 0.05).to(torch.bfloat16)
    targets = torch.randint(0, v, (n,), device="cuda", generator=g)
    nhv = n * h * v

    def torch_fwd():
        with torch.no_grad():
            return torch.nn.functional.cross_entropy((hidden @ weight.T).float(), targets)

    def torch_fwd_bwd():
        x = hidden.detach().requires_grad_(True)
        w = weight.detach().requires_grad_(True)
        torch.nn.functional.cross_entropy((x @ w.T).float(), targets).backward()
        return x.grad, w.grad

    rows.append(("torch linear+CE (fwd)", cuda_time_ms(torch_fwd, reps), 2 * nhv / 1e12,
                 "fll_forward/512"))
    rows.append(("torch linear+CE fwd+bwd", cuda_time_ms(torch_fwd_bwd, max(3, reps // 2)),
                 6 * nhv / 1e12, "fll_forward_backward/512"))
    torch.cuda.empty_cache()
    try:
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    except Exception as e:  # noqa: BLE001
        print(f"# liger-kernel not importable ({e}); Liger FLCE rows skipped", file=sys.stderr)
        return
    flce = LigerFusedLinearCrossEntropyLoss()

    def liger_fwd():
        with torch.no_grad():
            return flce(weight, hidden, targets)

    def liger_fwd_bwd():
        x = hidden.detach().requires_grad_(True)
        w = weight.detach().requires_grad_(True)
        flce(w, x, targets).backward()
        return x.grad, w.grad

    rows.append(("liger FLCE (fwd)", cuda_time_ms(liger_fwd, reps), 2 * nhv / 1e12, "fll_forward/512"))
    rows.append(("liger FLCE fwd+bwd", cuda_time_ms(liger_fwd_bwd, max(3, reps // 2)),
                 6 * nhv / 1e12, "fll_forward_backward/512"))


def gae_peer(rows, reps, b, t, gamma=1.0, lam=0.95):
    g = torch.Generator(device="cuda").manual_seed(2)
    rewards = torch.randn(b, t, device="cuda", generator=g)
    values = torch.randn(b, t, device="cuda", generator=g)
    lengths = torch.randint(t // 2, t + 1, (b,), device="cuda", generator=g)
    mask = (torch.arange(t, device="cuda")[None, :] < lengths[:, None]).float()

    def verl_gae():
        with torch.no_grad():
            lastgaelam = 0
            advantages_reversed = []
            for k in reversed(range(t)):
                nextvalues = values[:, k + 1] if k < t - 1 else 0.0
                delta = rewards[:, k] + gamma * nextvalues - values[:, k]
                lastgaelam = delta + gamma * lam * lastgaelam
                advantages_reversed.append(lastgaelam)
            advantages = torch.stack(advantages_reversed[::-1], dim=1)
            returns = advantages + values
            mean = (advantages * mask).sum() / mask.sum()
            var = (((advantages - mean) ** 2) * mask).sum() / mask.sum()
            var = var * mask.sum() / (mask.sum() - 1)  # verl masked_whiten: unbiased
            advantages = (advantages - mean) * torch.rsqrt(var + 1e-8) * mask
            return advantages, returns

    rows.append(("verl GAE python loop (+whiten)", cuda_time_ms(verl_gae, max(3, reps // 3)),
                 b * t * 4 * 5 / 1e9, "gae"))


def load_ours(path):
    with open(path) as f:
        data = json.load(f)
    ours = {}
    for bm in data.get("benchmarks", []):
        if bm.get("run_type") == "aggregate" and bm.get("aggregate_name") != "median":
            continue
        name = bm["name"].split("/manual_time")[0]
        name = name.replace("_median", "")
        unit = bm.get("time_unit", "ns")
        scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
        t = bm.get("real_time", float("nan")) * scale
        if name not in ours or t < ours[name]:
            ours[name] = t
    return ours


def find_ours(ours, key):
    if key in ours:
        return key, ours[key]
    # A prefix (e.g. "gae" or "fll_forward_backward"): the fastest matching entry.
    prefix = key.split("/")[0]
    cands = [(t, k) for k, t in ours.items() if k.split("/")[0].startswith(prefix)]
    if not cands:
        return None, None
    t, k = min(cands)
    return k, t


def table(headers, body, markdown):
    if markdown:
        out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        out += ["| " + " | ".join(str(c) for c in r) + " |" for r in body]
        return "\n".join(out)
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *body)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    return "\n".join([fmt.format(*headers)] + [fmt.format(*[str(c) for c in r]) for r in body])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--ours", help="Google Benchmark JSON of posttrain_bench_cuda (ratio table)")
    ap.add_argument("--extra-ours", action="append", default=[],
                    help="more Google Benchmark JSON files (e.g. the advantage run)")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--skip", default="", help="comma list of: logprobs,fused_linear,gae")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to time", file=sys.stderr)
        return 1
    skip = set(filter(None, args.skip.split(",")))
    print(f"# device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    rows = []
    if "logprobs" not in skip:
        token_logprob_peers(rows, args.reps, 16384, 128256)
        torch.cuda.empty_cache()
    if "fused_linear" not in skip:
        fused_linear_peers(rows, args.reps, 16384, 4096, 128256)
        torch.cuda.empty_cache()
    if "gae" not in skip:
        gae_peer(rows, args.reps, 512, 4096)

    body = []
    for name, ms, work, _ in rows:
        if "linear" in name or "FLCE" in name:
            rate = f"{work / (ms * 1e-3):.0f} TFLOP/s"
        else:
            rate = f"{work / (ms * 1e-3):.0f} GB/s"
        body.append((name, f"{ms:.3f}", rate))
    print(table(("peer", "ms (median)", "rate"), body, args.markdown))

    if args.ours:
        ours = load_ours(args.ours)
        for extra in args.extra_ours:
            try:
                ours.update(load_ours(extra))
            except OSError:
                pass
        ratio_rows = []
        for name, ms, _, key in rows:
            k, t = find_ours(ours, key)
            if k is None or not t or math.isnan(t):
                ratio_rows.append((name, f"{ms:.3f}", "-", "-", "-"))
            else:
                ratio_rows.append((name, f"{ms:.3f}", k, f"{t:.3f}", f"{ms / t:.2f}x"))
        print()
        print(table(("peer", "peer ms", "posttrain benchmark", "posttrain ms", "peer / posttrain"),
                    ratio_rows, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
