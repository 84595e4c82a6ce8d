#!/usr/bin/env python3
"""Seeds tests/fuzz/corpus/<target>/seed-* from the tests' own inputs: the golden MATH pairs
(answer, label and both predictions), the golden IFEval cases (label, prediction), the adversarial
pieces of tests/reward/contract.cpp. Run from the repository root; rewrites only seed-* files
(committed reproducers, crash-*/timeout-*, are kept)."""
import hashlib
import json
import pathlib

root = pathlib.Path("tests/fuzz/corpus")
math = json.load(open("tests/golden/data/open_instruct_math.json"))["cases"]
ifeval = json.load(open("tests/golden/data/open_instruct_ifeval.json"))["cases"]
pieces = ["</think><answer>", "Final Answer: The final answer is 1. I hope it is correct.", "[", "<<a>>",
          "||-3||", "(1+1)", "\\boxed{\\frac{1}{2}}", "\\boxed 5$", "\\frac12", "\\sqrt2", "$1$", "1+1+1",
          "---1", "\\left|x\\right|", "x^{2}", "1,234", "**a**", "*a*", "P.S. b", "The answer is: calm",
          "<answer>calm</answer>", "\\binom{\\frac{1}{3}}{40}", "\\log_2 32", "7^{0.5}", "1.1^2",
          "\\frac{2.1}{0.7}", "#### 18", "\xe0\xa4\x95\xe0\xa4\xbe caf\u0065\u0301", "\\sin^{-1} x", "f(x)"]


def write(target, data: bytes):
    d = root / target
    d.mkdir(parents=True, exist_ok=True)
    (d / ("seed-" + hashlib.sha1(data).hexdigest()[:16])).write_bytes(data)


for d in root.glob("*/seed-*"):
    d.unlink()
for c in math:
    for pred in (c["answer"], c.get("math_prediction", ""), c.get("strict_prediction", "")):
        write("math", pred.encode() + b"\0" + c["label"].encode())
        write("text", pred.encode() + b"\0" + c["label"].encode())
for c in ifeval:
    write("ifeval_label", c["label"].encode() + b"\0" + c["prediction"].encode())
    write("ifeval_response", c["prediction"].encode())
for p in pieces:
    b = p.encode()
    write("math", b + b"\0" + b"1")
    write("text", b + b"\0" + b"calm")
    write("ifeval_response", b)
    write("ifeval_label", b"[{'instruction_id': ['detectable_format:title'], 'kwargs': [None]}]\0" + b)
