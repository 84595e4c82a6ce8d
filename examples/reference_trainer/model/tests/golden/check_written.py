"""Checks that checkpoints written by the C++ model load in transformers with the golden logits.

  REFERENCE_MODEL_EXPORT_DIR=/tmp/rm_export \
      build-cpu-only/examples/reference_trainer/model/test_reference_model_golden \
      --gtest_filter='*WrittenCheckpoints*'
  VENV/bin/python check_written.py /tmp/rm_export

For each of llama and qwen2: AutoModelForCausalLM.from_pretrained(<dir>/<name>) runs every golden
sequence alone; the logits must equal the golden record's (data/<name>.json) to 1e-5 relative.
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))


def main(root):
    worst = 0.0
    for name in ("llama", "qwen2"):
        with open(os.path.join(HERE, "data", f"{name}.json")) as f:
            g = json.load(f)
        model = AutoModelForCausalLM.from_pretrained(os.path.join(root, name),
                                                     attn_implementation="eager").float().eval()
        tokens, offsets = g["tokens"], g["seq_offsets"]
        with torch.no_grad():
            logits = torch.cat([model(input_ids=torch.tensor([tokens[a:b]])).logits[0]
                                for a, b in zip(offsets[:-1], offsets[1:]) if b > a])
        ref = torch.tensor(g["logits"]).reshape(logits.shape)
        err = float((logits - ref).abs().max() / ref.abs().max())
        print(f"{name}: transformers on our checkpoint vs golden logits: {err:.2e} relative")
        worst = max(worst, err)
    if worst > 1e-5:
        sys.exit(f"FAIL: {worst:.2e} > 1e-5")
    print("OK")


if __name__ == "__main__":
    main(sys.argv[1])
