"""Golden data for the reference model: tiny random-init LlamaForCausalLM and Qwen2ForCausalLM
checkpoints saved by transformers' own save_pretrained, with their logits, per-token log-probs and
the gradient of a fixed loss w.r.t. several parameters, computed by transformers (eager, float32,
CPU). The C++ tests (tests/golden.cpp) load the same directories and must match.

  VENV/bin/python generate.py            # rewrites data/ (see requirements.txt for the pins)

Every sequence is run alone (batch 1, no padding): the C++ side runs them packed, so a match also
shows that packing never leaks across sequence boundaries. The loss is
L = sum_t c_t * log p(y_t | x_<=t) with fixed random weights c_t, y_t = the next token.
"""
import copy
import json
import os
import shutil

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")

COMMON = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
              num_attention_heads=4, rms_norm_eps=1e-5, max_position_embeddings=64)

MODELS = {
    # Llama: untied lm_head, no biases, 4 query heads over 2 KV heads.
    "llama": (LlamaForCausalLM, LlamaConfig(**COMMON, num_key_value_heads=2, rope_theta=1000.0,
                                            tie_word_embeddings=False, attention_bias=False)),
    # Qwen2: tied embeddings, q/k/v biases, 4 query heads over 1 KV head.
    "qwen2": (Qwen2ForCausalLM, Qwen2Config(**COMMON, num_key_value_heads=1, rope_theta=10000.0,
                                            tie_word_embeddings=True)),
}

GRAD_PARAMS = [
    "model.embed_tokens.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.layers.0.self_attn.k_proj.bias",
    "model.layers.0.input_layernorm.weight",
    "model.layers.1.self_attn.o_proj.weight",
    "model.layers.1.mlp.down_proj.weight",
    "model.norm.weight",
    "lm_head.weight",
]


def f32(x):
    return [float(f"{v:.9g}") for v in x.detach().reshape(-1).tolist()]


def build(name, cls, config, seed):
    torch.manual_seed(seed)
    config._attn_implementation = "eager"
    model = cls(config).float().eval()
    with torch.no_grad():
        # Random everything (biases and norm weights included) so that no term hides behind a
        # zero or a one.
        for pname, p in model.named_parameters():
            if pname.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    out = os.path.join(DATA, name)
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out)
    for extra in ("generation_config.json",):
        if os.path.exists(os.path.join(out, extra)):
            os.remove(os.path.join(out, extra))
    return model


def main():
    os.makedirs(DATA, exist_ok=True)
    gen = torch.Generator().manual_seed(1234)
    lengths = [7, 1, 12]  # a one-token sequence has no target at all
    seqs = [torch.randint(0, 96, (t,), generator=gen) for t in lengths]
    weights = [torch.randn(t, generator=gen) for t in lengths]
    for i, (name, (cls, config)) in enumerate(MODELS.items()):
        model = build(name, cls, config, seed=100 + i)
        model.zero_grad()
        logits_all, logprobs_all, targets_all, weights_all = [], [], [], []
        loss = torch.zeros(())
        for s, w in zip(seqs, weights):
            logits = model(input_ids=s[None]).logits[0]  # [T, V]
            logp = torch.log_softmax(logits.double(), dim=-1).float()
            tgt = torch.cat([s[1:], torch.tensor([-100])])
            lp = torch.zeros(len(s))
            valid = tgt >= 0
            lp[valid] = logp[valid].gather(1, tgt[valid][:, None])[:, 0]
            w = w.clone()
            w[~valid] = 0.0
            loss = loss + (w * lp).sum()
            logits_all.append(logits)
            logprobs_all.append(lp)
            targets_all += tgt.tolist()
            weights_all += w.tolist()
        loss.backward()
        params = dict(model.named_parameters())
        grads = {}
        for p in GRAD_PARAMS:
            if p in params and not (p == "lm_head.weight" and config.tie_word_embeddings):
                grads[p] = f32(params[p].grad)
        offsets = [0]
        for t in lengths:
            offsets.append(offsets[-1] + t)
        record = {
            "generator": f"transformers {transformers.__version__}, torch {torch.__version__}, "
                         f"eager attention, float32, CPU",
            "checkpoint": name,
            "tokens": torch.cat(seqs).tolist(),
            "seq_offsets": offsets,
            "targets": targets_all,
            "loss_weights": [float(f"{v:.9g}") for v in weights_all],
            "vocab_size": config.vocab_size,
            "logits": f32(torch.cat(logits_all)),
            "logprobs": f32(torch.cat(logprobs_all)),
            "loss": float(loss.detach()),
            "grads": grads,
        }
        with open(os.path.join(DATA, f"{name}.json"), "w") as f:
            json.dump(record, f, separators=(",", ":"))
        # Half-precision copies of the Llama checkpoint: the loader converts BF16 / F16.
        if name == "llama":
            for dtype, tag in ((torch.bfloat16, "bf16"), (torch.float16, "f16")):
                d = os.path.join(DATA, f"llama_{tag}")
                shutil.rmtree(d, ignore_errors=True)
                copy.deepcopy(model).to(dtype).save_pretrained(d)  # the f32 model stays f32
                os.remove(os.path.join(d, "generation_config.json"))
        print(name, "loss", float(loss))


if __name__ == "__main__":
    main()
