"""Golden data for the BPE tokenizer: two small byte-level BPE tokenizers trained with the
`tokenizers` package on a generated corpus (Qwen2 style: NFC + Split(Qwen2 regex) + ByteLevel;
GPT-2 style: ByteLevel with its built-in regex), saved as tokenizer.json, and the ids / decodes
of a fixed set of texts (ASCII, Unicode, digits, whitespace runs, special tokens).

  VENV/bin/python generate_tokenizers.py      # rewrites data/tokenizer_*.json, data/tokenize.json
"""
import json
import os
import random

import tokenizers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "  multiple   spaces\n\n\tand tabs\t\there ",
    "naïve café — résumé, Ångström",
    "日本語のテキストと漢字",
    "emoji 🤖🚀 and ZWJ 👩‍💻!",
    "numbers 1234567 and 3.14159, 2024-06-01",
    "don't I'LL we've They'RE it's",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|><|endoftext|>",
    "trailing spaces   ",
    "line\r\nwindows\r\n\r\nend",
    "Ελληνικά και Русский текст",
    "mixed123abc_def-ghi",
    "a'b 'x' \"quoted\"",
    "١٢٣ ٤٥ x²+y³=z¼",
    "",
    "   ",
    "\n",
    "def f(x):\n    return x ** 2  # comment\n",
    "<|im_end|>  <|im_start|>",
]


def corpus():
    rng = random.Random(0)
    words = ("the model learns from data and every token counts while we train small networks "
             "on simple tasks with rewards gradients policies values advantages").split()
    lines = []
    for i in range(3000):
        n = rng.randint(3, 12)
        s = " ".join(rng.choice(words) for _ in range(n))
        if i % 5 == 0:
            s += f" {rng.randint(0, 99999)}"
        if i % 7 == 0:
            s = s.capitalize() + "."
        lines.append(s)
    lines += TEXTS[:15] * 20  # some multi-byte merges too
    return lines


def train(kind):
    tok = Tokenizer(models.BPE())
    if kind == "qwen2":
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    return tok


def main():
    record = {"generator": f"tokenizers {tokenizers.__version__}", "texts": TEXTS, "cases": {}}
    for kind in ("qwen2", "gpt2"):
        tok = train(kind)
        tok.save(os.path.join(DATA, f"tokenizer_{kind}.json"))
        ids = [tok.encode(t).ids for t in TEXTS]
        record["cases"][kind] = {
            "ids": ids,
            "decoded": [tok.decode(i, skip_special_tokens=False) for i in ids],
            "decoded_skip_special": [tok.decode(i, skip_special_tokens=True) for i in ids],
            "vocab_size": tok.get_vocab_size(),
        }
    with open(os.path.join(DATA, "tokenize.json"), "w") as f:
        json.dump(record, f, ensure_ascii=False, indent=0)


if __name__ == "__main__":
    main()
