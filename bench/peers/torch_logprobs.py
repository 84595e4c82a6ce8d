#!/usr/bin/env python3
"""PyTorch CPU peer of bench/cpu/token_logprobs.cpp.

Times what verl / TRL / OpenRLHF do on the CPU for per-token log-probs and entropy from
materialised logits, on the same shapes as the C++ benchmark (N x V = 256 x 32000, 64 x 128256,
and forward-only 2048 x 128256), fp32 and bf16, with torch threads = 2 (override with --threads):

  logprob          log_softmax(logits / tau).gather(-1, targets)
  logprob+entropy  the above plus entropy = -(softmax(z) * log_softmax(z)).sum(-1)
  backward         autograd of sum(logprob) + sum(entropy) w.r.t. the logits

Prints time per call, tokens/s, Gelem/s (N*V per second) and GB/s (logits bytes read; for the
backward, read + written) as a table. Install: pip install torch (CPU is enough).
"""
import argparse
import time

import torch


def best_time(fn, min_time=0.5, min_reps=3):
    fn()  # warm-up
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--min-time", type=float, default=0.5)
    ap.add_argument("--skip-large", action="store_true", help="skip N = 2048, V = 128256")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tau = args.temperature
    # (N, V, with autograd): the two cache-resident shapes, and the DRAM-scale shape of
    # performance.md a10 (forward only: autograd would hold several GB of fp32 temporaries).
    shapes = [(256, 32000, True), (64, 128256, True)]
    if not args.skip_large:
        shapes.append((2048, 128256, False))
    dtypes = [("f32", torch.float32), ("bf16", torch.bfloat16)]

    rows = []
    for dname, dtype in dtypes:
        for n, v, with_bwd in shapes:
            g = torch.Generator().manual_seed(0)
            logits = (3.0 * torch.randn(n, v, generator=g)).to(dtype)
            targets = torch.randint(0, v, (n,), generator=g)

            def logprob():
                z = logits / tau
                return torch.log_softmax(z, dim=-1).gather(-1, targets[:, None]).squeeze(-1)

            def logprob_entropy():
                z = logits / tau
                logp = torch.log_softmax(z, dim=-1)
                lp = logp.gather(-1, targets[:, None]).squeeze(-1)
                ent = -(torch.softmax(z, dim=-1) * logp).sum(-1)
                return lp, ent

            def backward():
                x = logits.detach().requires_grad_(True)
                z = x / tau
                logp = torch.log_softmax(z, dim=-1)
                lp = logp.gather(-1, targets[:, None]).squeeze(-1)
                ent = -(torch.softmax(z, dim=-1) * logp).sum(-1)
                (lp.sum() + ent.sum()).backward()
                return x.grad

            elem = n * v
            esize = logits.element_size()
            with torch.no_grad():
                t_lp = best_time(logprob, args.min_time)
                t_lpe = best_time(logprob_entropy, args.min_time)
            timed = [("logprob", t_lp, esize), ("logprob+entropy", t_lpe, esize)]
            if with_bwd:  # includes its own forward
                timed.append(("fwd+bwd (autograd)", best_time(backward, args.min_time), 2 * esize))
            for what, t, bytes_per_elem in timed:
                rows.append((dname, n, v, what, t * 1e3, n / t, elem / t / 1e9,
                             elem * bytes_per_elem / t / 1e9))

    print(f"torch {torch.__version__}, threads = {torch.get_num_threads()}, temperature = {tau}")
    header = f"{'dtype':5} {'N':>4} {'V':>7} {'what':20} {'ms':>9} {'tokens/s':>10} {'Gelem/s':>8} {'GB/s':>7}"
    print(header)
    print("-" * len(header))
    for d, n, v, what, ms, tok, gel, gbs in rows:
        print(f"{d:5} {n:4d} {v:7d} {what:20} {ms:9.2f} {tok:10.0f} {gel:8.3f} {gbs:7.2f}")


if __name__ == "__main__":
    main()
