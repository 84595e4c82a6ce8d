#!/usr/bin/env python3
"""PyTorch peer of bench/reference_model/reference_model.cpp: transformers' LlamaForCausalLM
(eager attention, float32, torch CPU) with the same shapes, side by side with our binary.

  train step   B x 256 tokens: model(input_ids, labels) (token-mean cross entropy) -> backward ->
               torch.optim.AdamW.step -> zero_grad            tiny: B = 4, small: B = 2
  generation   32 prompts of 16 tokens, 32 new tokens each (min_new_tokens = max_new_tokens: no
               early stop), do_sample, temperature 1, top_k 0, KV cache (model.generate)

Both run at the same thread count (torch.set_num_threads / Eigen's OpenMP). Our numbers come from
running the C++ benchmark binary (--ours PATH, default build-native/bench/...) with JSON output in
the same script, so the two sides see the same machine state. Prints tokens/s of each, the ratio,
peak RSS (ru_maxrss; torch's includes the library's own baseline, measured in a fresh process per
case) and the MFU of our train step against the Eigen GEMM peak measured in the same run.

  VENV/bin/python bench/peers/reference_model_torch.py [--threads 1 2] [--configs 0 1]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

CONFIGS = {
    0: dict(name="tiny", hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, intermediate_size=704, batch=4),
    1: dict(name="small", hidden_size=512, num_hidden_layers=8, num_attention_heads=8,
            num_key_value_heads=4, intermediate_size=1408, batch=2),
}


def torch_case(kind, cfg_id, threads, reps):
    """Runs in a child process: returns (tokens/s, max RSS MB)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    c = CONFIGS[cfg_id]
    config = LlamaConfig(vocab_size=512, hidden_size=c["hidden_size"],
                         intermediate_size=c["intermediate_size"],
                         num_hidden_layers=c["num_hidden_layers"],
                         num_attention_heads=c["num_attention_heads"],
                         num_key_value_heads=c["num_key_value_heads"], rope_theta=10000.0,
                         rms_norm_eps=1e-6, tie_word_embeddings=False, max_position_embeddings=512)
    config._attn_implementation = "eager"
    model = LlamaForCausalLM(config).float()
    best = float("inf")
    if kind == "train":
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
        ids = torch.randint(0, 512, (c["batch"], 256))
        for r in range(reps + 1):
            t0 = time.perf_counter()
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=False)
            if r > 0:  # the first step allocates the optimizer state
                best = min(best, time.perf_counter() - t0)
        tokens = c["batch"] * 256
    else:
        model.eval()
        ids = torch.randint(0, 512, (32, 16))
        with torch.no_grad():
            for r in range(reps + 1):
                t0 = time.perf_counter()
                out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                     temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=32,
                                     min_new_tokens=32, pad_token_id=0, use_cache=True)
                if r > 0:
                    best = min(best, time.perf_counter() - t0)
        tokens = (out.shape[1] - 16) * 32
    return tokens / best, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ours(binary, cfg_id, threads, min_time):
    out = subprocess.run(
        [binary, f"--benchmark_filter=(TrainStep|Generate)/{cfg_id}/{threads}/|GemmPeak/{threads}/",
         "--benchmark_format=json", f"--benchmark_min_time={min_time}"],
        check=True, capture_output=True, text=True).stdout
    res = {}
    for b in json.loads(out)["benchmarks"]:
        if "TrainStep" in b["name"]:
            res["train"] = b
        elif "Generate" in b["name"]:
            res["gen"] = b
        else:
            res["gemm"] = b
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                   "build-native", "bench",
                                                   "posttrain_bench_reference_model"))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--configs", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--child", nargs=3)
    a = ap.parse_args()
    if a.child:
        kind, cfg_id, threads = a.child[0], int(a.child[1]), int(a.child[2])
        print(json.dumps(torch_case(kind, cfg_id, threads, a.reps)))
        return
    print("loadavg", open("/proc/loadavg").read().strip())
    for cfg_id in a.configs:
        for threads in a.threads:
            o = ours(a.ours, cfg_id, threads, a.min_time)
            peer = {}
            for kind in ("train", "gen"):
                r = subprocess.run([sys.executable, __file__, "--child", kind, str(cfg_id),
                                    str(threads), "--reps", str(a.reps)],
                                   check=True, capture_output=True, text=True)
                peer[kind] = json.loads(r.stdout.strip().splitlines()[-1])
            name = CONFIGS[cfg_id]["name"]
            tr, ge = o["train"], o["gen"]
            peak = o["gemm"]["flops_per_s"]
            mfu = tr["model_flops_per_s"] / peak
            print(f"{name} threads={threads}: train ours {tr['items_per_second']:.0f} tok/s "
                  f"(RSS {tr['max_rss_mb']:.0f} MB, MFU {100 * mfu:.0f}% of the Eigen GEMM peak "
                  f"{peak / 1e9:.1f} GFLOP/s) vs torch {peer['train'][0]:.0f} tok/s "
                  f"(RSS {peer['train'][1]:.0f} MB): ratio {tr['items_per_second'] / peer['train'][0]:.2f}x")
            print(f"{name} threads={threads}: generate ours {ge['items_per_second']:.0f} tok/s vs "
                  f"transformers.generate {peer['gen'][0]:.0f} tok/s (RSS {peer['gen'][1]:.0f} MB): "
                  f"ratio {ge['items_per_second'] / peer['gen'][0]:.2f}x")
            print("loadavg", open("/proc/loadavg").read().strip(), flush=True)


if __name__ == "__main__":
    main()
