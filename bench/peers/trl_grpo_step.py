#!/usr/bin/env python3
"""The peer of bench/reference_trainer/grpo_step.cpp: one GRPO step of TRL's GRPOTrainer on torch CPU.

Same work as our BM_GrpoStep: a random-init Llama of the reference trainer's shape (config "quick" =
recipes/quick.json: d 64, 2 layers, 4 heads / 2 KV, SwiGLU 192, tied embeddings, vocabulary 261 = the
byte tokenizer's; config "large" = d 256, 4 layers, SwiGLU 768), 16 chat-rendered arithmetic prompts
× 8 samples (num_generations 8, per-device batch 128 completions, gradient accumulation 1: one
optimizer step = one generation batch), temperature 0.7, exactly 16 new tokens (max_completion_length
16 and generation_kwargs min_new_tokens 16: EOS is suppressed, as our bench has no stop token),
loss_type "grpo", scale_rewards "group", beta as given (0 = the recipe's TRL preset: TRL then loads no
reference model), AdamW lr 5e-5, max grad norm 1, fp32, 1 torch thread, no vLLM, CPU, logging off.
The reward is an exact-match rule (last number of the completion == the answer), like our gsm8k
verifier.

Timing: `--warmup` steps, then `--steps` timed optimizer steps (Trainer callbacks on_step_begin /
on_step_end: wall and process CPU). The rollout share is measured by wrapping the trainer's
_generate_and_score_completions (generation + decoding + reward + reference log-probs + advantages)
and _generate_single_turn (transformers' generate() only); the rest of the step is the loss forward,
backward and AdamW.

    OMP_NUM_THREADS=1 .venv-trl/bin/python bench/peers/trl_grpo_step.py --config quick --steps 5
"""
import argparse
import os
import random
import re
import statistics
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(1)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:
    pass

import datasets  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, TrainerCallback  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
CONFIGS = {
    "quick": dict(hidden_size=64, intermediate_size=192, num_hidden_layers=2),
    "large": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4),
}


def byte_tokenizer():
    """Ids 0..255 = bytes, 256..260 = the chat specials: pipeline::byte_tokenizer's 261 ids."""
    b2u = tokenizers.pre_tokenizers.ByteLevel.alphabet()  # the 256 byte symbols (unordered)
    # GPT-2's byte → symbol map, so that symbol id == byte value.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_to_sym = {b: chr(c) for b, c in zip(bs, cs)}
    assert set(byte_to_sym.values()) == set(b2u)
    vocab = {byte_to_sym[b]: b for b in range(256)}
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=SPECIALS[0], eos_token=SPECIALS[4],
                                   pad_token=SPECIALS[1])
    assert len(fast) == 261 and fast.convert_tokens_to_ids(SPECIALS) == [256, 257, 258, 259, 260]
    return fast


def prompts(n, seed=1):
    """Arithmetic problems in the reference trainer's templates (task.hpp), rendered as its chat prompt
    (pipeline::render_chat with add_generation_prompt: bos, user header, question, eot, assistant header)."""
    rng = random.Random(seed)
    names = ["Ann", "Bob", "Cy", "Dee", "Eli", "Fay", "Gus", "Ivy"]
    things = ["pens", "cups", "apples", "books", "coins", "hats"]
    rows = []
    for _ in range(n):
        name, obj = rng.choice(names), rng.choice(things)
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        if rng.random() < 0.5:
            q, c = f"{name} has {a} {obj} and gets {b} more. How many {obj} now?", a + b
        else:
            a, b = max(a, b), min(a, b)
            q, c = f"{name} has {a} {obj} and gives away {b}. How many {obj} left?", a - b
        text = (f"{SPECIALS[0]}{SPECIALS[2]}user{SPECIALS[3]}\n\n{q}{SPECIALS[4]}"
                f"{SPECIALS[2]}assistant{SPECIALS[3]}\n\n")
        rows.append({"prompt": text, "ground_truth": str(c)})
    return rows


NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def exact_answer(completions, ground_truth, **kwargs):
    """gsm8k-style rule: the last number of the completion (digit commas removed) equals the answer."""
    out = []
    for c, gt in zip(completions, ground_truth):
        nums = NUMBER.findall(re.sub(r"(\d),(\d)", r"\1\2", c))
        out.append(1.0 if (nums[-1] if nums else c).lower() == gt.lower() else 0.0)
    return out


class StepTimer(TrainerCallback):
    def __init__(self):
        self.wall, self.cpu = [], []

    def on_step_begin(self, args, state, control, **kw):
        self._w, self._c = time.perf_counter(), time.process_time()

    def on_step_end(self, args, state, control, **kw):
        self.wall.append(time.perf_counter() - self._w)
        self.cpu.append(time.process_time() - self._c)


def timed(obj, name, sink):
    f = getattr(obj, name)

    def wrapper(*a, **kw):
        w, c = time.perf_counter(), time.process_time()
        r = f(*a, **kw)
        sink.append((time.perf_counter() - w, time.process_time() - c))
        return r

    setattr(obj, name, wrapper)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", choices=sorted(CONFIGS), default="quick")
    ap.add_argument("--beta", type=float, default=0.0)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=16)
    args = ap.parse_args()

    torch.manual_seed(1)
    tok = byte_tokenizer()
    cfg = LlamaConfig(vocab_size=261, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                      max_position_embeddings=512, rms_norm_eps=1e-6, rope_theta=10000.0,
                      bos_token_id=256, eos_token_id=260, pad_token_id=257, **CONFIGS[args.config])
    model = LlamaForCausalLM(cfg).float()
    params = sum(p.numel() for p in model.parameters())
    # TRL loads the reference model (beta > 0) from the policy's name_or_path: give it one.
    ckpt = tempfile.TemporaryDirectory()
    model.save_pretrained(ckpt.name)
    model = LlamaForCausalLM.from_pretrained(ckpt.name, dtype=torch.float32)
    rows = prompts(args.prompts)
    ds = datasets.Dataset.from_list(rows)
    prompt_tokens = statistics.mean(len(tok(r["prompt"])["input_ids"]) for r in rows)

    b = args.prompts * args.samples
    with tempfile.TemporaryDirectory() as out:
        gc = GRPOConfig(
            output_dir=out, use_cpu=True, report_to="none", logging_strategy="no", save_strategy="no",
            disable_tqdm=True, seed=1, bf16=False, fp16=False, dataloader_num_workers=0,
            per_device_train_batch_size=b, gradient_accumulation_steps=1, num_generations=args.samples,
            max_completion_length=args.new_tokens, generation_kwargs={"min_new_tokens": args.new_tokens},
            temperature=0.7, top_p=1.0, top_k=0, beta=args.beta, loss_type="grpo", scale_rewards="group",
            epsilon=0.2, num_iterations=1, learning_rate=5e-5, lr_scheduler_type="constant", warmup_steps=0,
            weight_decay=0.0, max_grad_norm=1.0, max_steps=args.warmup + args.steps, shuffle_dataset=False,
            use_vllm=False, log_completions=False,
        )
        trainer = GRPOTrainer(model=model, reward_funcs=[exact_answer], args=gc, train_dataset=ds,
                              processing_class=tok)
        assert (trainer.ref_model is not None) == (args.beta > 0)
        steps, rollouts, gens = StepTimer(), [], []
        trainer.add_callback(steps)
        timed(trainer, "_generate_and_score_completions", rollouts)
        timed(trainer, "_generate_single_turn", gens)
        trainer.train()

    w = args.warmup
    wall, cpu = steps.wall[w:], steps.cpu[w:]
    ro = rollouts[w:]
    ge = gens[w:]
    assert len(wall) == args.steps and len(ro) == args.steps, (len(wall), len(ro))
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, "
          f"threads {torch.get_num_threads()}, attn {model.config._attn_implementation}")
    print(f"config {args.config}: {params} parameters, {args.prompts} prompts x {args.samples} samples x "
          f"{args.new_tokens} new tokens, mean prompt {prompt_tokens:.1f} tokens, beta {args.beta}")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for i, (a, c) in enumerate(zip(wall, cpu)):
        print(f"step {i}: wall {a * 1e3:8.1f} ms  cpu {c * 1e3:8.1f} ms  rollout wall {ro[i][0] * 1e3:8.1f} ms "
              f"(generate() {ge[i][0] * 1e3:8.1f} ms)  update wall {(a - ro[i][0]) * 1e3:8.1f} ms")
    med = statistics.median
    print(f"TRL_GRPO_STEP config={args.config} beta={args.beta} wall_ms_median={med(wall) * 1e3:.1f} "
          f"wall_ms_min={min(wall) * 1e3:.1f} wall_ms_max={max(wall) * 1e3:.1f} cpu_ms_median={med(cpu) * 1e3:.1f} "
          f"rollout_ms_median={med(r[0] for r in ro) * 1e3:.1f} generate_ms_median={med(g[0] for g in ge) * 1e3:.1f} "
          f"generate_cpu_ms_median={med(g[1] for g in ge) * 1e3:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
