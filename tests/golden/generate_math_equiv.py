#!/usr/bin/env python3
"""Golden verdicts of open-instruct's MATH equivalence for tests/golden/open_instruct_math.cpp.

open-instruct is not on the package registry, so its files are read from a git snapshot
(default: the allenai/open-instruct mirror at commit e6c3044) and loaded by file path under their
own module names: open_instruct/logger_utils.py and open_instruct/math_utils.py, unmodified.
ground_truth_utils.py imports the whole training stack (litellm, requests, IFEval...), so the
bodies of MathVerifier.__call__ and StrictMathVerifier.__call__ are taken from that file with
`ast` and executed as written, with math_utils' functions and `re` as their globals and a
two-line VerificationResult (the only other name they use).

For each (answer, label) pair of CORPUS the file records
  is_equiv            math_utils.is_equiv(answer, label)           (the sympy half)
  hendrycks           math_utils.hendrycks_is_equiv(answer, label) (the string half)
  math_boxed          MathVerifier score of "The answer is $\\boxed{answer}$."
  strict_math         StrictMathVerifier score of
                      "Final Answer: The final answer is answer. I hope it is correct."

    /work/peer-venv/bin/pip install antlr4-python3-runtime==4.11   # what sympy 1.14 requires
    /work/peer-venv/bin/python tests/golden/generate_math_equiv.py [--git-dir DIR] [--commit C]
"""

import argparse
import ast
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import types

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_GIT_DIR = "/work/.mirror/allenai+open-instruct/repo"
DEFAULT_COMMIT = "e6c3044aa6201c8bfa4573c1b03142af599e730d"

# (answer, label, what the pair exercises)
CORPUS = [
    # fractions
    (r"\frac{1}{2}", r"\frac{1}{2}", "identical"),
    (r"\frac{2}{4}", r"\frac{1}{2}", "unreduced fraction"),
    (r"2/4", r"\frac{1}{2}", "slash fraction"),
    (r"\dfrac{3}{6}", r"\frac12", "dfrac vs shorthand"),
    (r"\tfrac{5}{10}", r"\frac{1}{2}", "tfrac"),
    (r"\frac{1}{3}", r"\frac{1}{2}", "unequal fractions"),
    (r"\frac{-1}{2}", r"-\frac{1}{2}", "sign inside"),
    (r"\frac{1}{-2}", r"-\frac12", "sign in denominator"),
    (r"\frac{6}{8}", r"\frac{3}{4}", "reduces"),
    (r"\frac{7}{8}", r"\frac{8}{7}", "inverted"),
    (r"3\frac{1}{2}", r"\frac{7}{2}", "mixed number is a product in sympy"),
    (r"\frac{3}{2}", r"1.5", "fraction vs decimal"),
    (r"\frac{10}{4}", r"2.5", "fraction vs decimal 2"),
    (r"\frac{1}{3}", r"0.333", "rounded decimal"),
    (r"\frac{1}{3}", r"0.3333333333333333", "16-digit decimal"),
    (r"\frac{1}{8}", r"0.125", "exact binary decimal"),
    (r"\frac{1}{10}", r"0.1", "inexact binary decimal"),
    (r"\frac{123}{1000}", r"0.123", "three decimals"),
    (r"\frac{12}{3}", r"4", "integer fraction"),
    (r"\frac{a}{b}", r"\frac{2a}{2b}", "symbolic fraction"),
    (r"\frac{x^2-1}{x-1}", r"x+1", "cancellation"),
    (r"\frac{1}{x}+\frac{1}{y}", r"\frac{x+y}{xy}", "sum of fractions"),
    (r"\frac{1}{0}", r"\frac{1}{0}", "division by zero"),
    (r"\frac{0}{5}", r"0", "zero numerator"),
    (r"\frac123", r"\frac{3}{2}", "shorthand frac then digit"),
    # roots
    (r"\sqrt{8}", r"2\sqrt{2}", "sqrt simplification"),
    (r"\sqrt{12}", r"2\sqrt{3}", "sqrt 12"),
    (r"\sqrt{12}", r"3\sqrt{2}", "unequal sqrt"),
    (r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}", "rationalised denominator"),
    (r"\frac{\sqrt{3}}{3}", r"\frac{1}{\sqrt3}", "rationalised, shorthand sqrt"),
    (r"\sqrt{4}", r"2", "perfect square"),
    (r"\sqrt{\frac{9}{4}}", r"\frac32", "root of a fraction"),
    (r"\sqrt[3]{8}", r"2", "cube root"),
    (r"\sqrt[3]{27}", r"3", "cube root 27"),
    (r"\sqrt[3]{-8}", r"-2", "principal cube root of a negative"),
    (r"\sqrt{-4}", r"2i", "sqrt of negative vs symbol i"),
    (r"\sqrt{2}", r"1.41421356237310", "decimal of sqrt 2"),
    (r"\sqrt{2}", r"1.414", "rounded sqrt 2"),
    (r"\sqrt{5+2\sqrt{6}}", r"\sqrt{2}+\sqrt{3}", "nested radical"),
    (r"2^{\frac12}", r"\sqrt{2}", "fractional power"),
    (r"\sqrt{2}\sqrt{3}", r"\sqrt{6}", "product of roots"),
    (r"\sqrt{x^2}", r"x", "sqrt of a square (complex symbol)"),
    (r"\sqrt{x}\sqrt{x}", r"x", "square of a sqrt"),
    (r"\sqrt 3", r"\sqrt{3}", "sqrt with space"),
    (r"\sqrt3", r"\sqrt{3}", "sqrt shorthand"),
    (r"4^{0.5}", r"2", "float exponent"),
    # pi, e, i
    (r"\pi", r"\pi", "identical pi"),
    (r"2\pi", r"\pi+\pi", "pi is a symbol"),
    (r"\pi", r"3.14159265358979", "pi vs decimal"),
    (r"\frac{\pi}{2}", r"\frac12\pi", "pi over 2"),
    (r"\pi r^2", r"r^2\pi", "commuted"),
    (r"4\pi", r"4 \pi", "spaces"),
    (r"\frac{4\pi}{3}", r"\frac{4}{3}\pi", "4 pi over 3"),
    (r"\pi^2", r"\pi\cdot\pi", "pi squared"),
    (r"e^{i\pi}", r"-1", "Euler identity (e, i are symbols)"),
    (r"e^2", r"e\cdot e", "e squared"),
    (r"2e", r"e+e", "e symbol"),
    (r"\sin\pi", r"0", "sin of the symbol pi"),
    (r"\cos 0", r"1", "cos 0"),
    (r"\sin^2 x+\cos^2 x", r"1", "Pythagorean identity"),
    (r"\sin^{-1} x", r"\arcsin x", "inverse sine notation"),
    (r"\tan x", r"\frac{\sin x}{\cos x}", "tan"),
    (r"\log_2 8", r"3", "log base 2"),
    (r"\ln(e^2)", r"2", "ln of symbol e"),
    (r"\log 100", r"2", "natural log"),
    (r"\exp(0)", r"1", "exp 0"),
    # decimals and integers
    (r"0.5", r"\frac{1}{2}", "0.5"),
    (r"0.50", r"\frac12", "trailing zero"),
    (r"2.0", r"2", "float integer"),
    (r"18.0", r"18", "GSM-style float"),
    (r"0.1+0.2", r"0.3", "float rounding"),
    (r"1.0000000000000001", r"1", "17 digits"),
    (r"1.000000000000001", r"1", "16 digits"),
    (r"3.14", r"\frac{157}{50}", "decimal vs exact fraction"),
    (r"0.3333333333333333333333", r"\frac{1}{3}", "22 digits"),
    (r"1,000", r"1000", "thousands separator"),
    (r"1,000,000", r"10^6", "millions"),
    (r"1{,}000", r"1000", "braced comma"),
    (r"12 345", r"12345", "digits split by a space"),
    (r"-3", r"-3", "negative integer"),
    (r"--3", r"3", "double negation"),
    (r"+5", r"5", "unary plus"),
    (r"007", r"7", "leading zeros"),
    (r"1.", r"1", "trailing dot"),
    (r".5", r"\frac12", "leading dot"),
    (r"5", r"6", "unequal integers"),
    (r"2x3", r"6", "x as times"),
    (r"2\times3", r"6", "times"),
    (r"2\cdot 3", r"6", "cdot"),
    (r"12\div 4", r"3", "div"),
    (r"6:3", r"2", "colon is division"),
    (r"5!", r"120", "factorial"),
    (r"\binom{5}{2}", r"10", "binomial"),
    (r"\dbinom{6}{3}", r"20", "dbinom"),
    (r"|-3|", r"3", "absolute value"),
    (r"\left|-3\right|", r"3", "left/right bars"),
    (r"\lfloor 2.5\rfloor", r"2", "floor"),
    (r"\lceil 2.1 \rceil", r"3", "ceiling"),
    (r"0^0", r"1", "zero to the zero"),
    # polynomials and symbols
    (r"x+1", r"1+x", "commuted sum"),
    (r"(x+1)^2", r"x^2+2x+1", "expanded square"),
    (r"(x+1)^2", r"x^2+x+1", "wrong expansion"),
    (r"x^2-1", r"(x-1)(x+1)", "difference of squares"),
    (r"2x+3y", r"3y+2x", "two variables"),
    (r"x(x+1)", r"x^2+x", "x( is an undefined function in sympy"),
    (r"x\cdot(x+1)", r"x^2+x", "explicit product"),
    (r"(x)(x+1)", r"x^2+x", "parenthesised product"),
    (r"f(x)+1", r"1+f(x)", "undefined function"),
    (r"f(x)", r"f(y)", "undefined function, other argument"),
    (r"xy", r"yx", "implicit product"),
    (r"ab", r"a\cdot b", "ab"),
    (r"x^2y", r"yx^2", "power then symbol"),
    (r"x_1+x_2", r"x_2+x_1", "subscripts"),
    (r"x_1", r"x_{1}", "subscript braces"),
    (r"a^2+b^2", r"(a+b)^2", "not an identity"),
    (r"\frac{x}{2}", r"0.5x", "float coefficient"),
    (r"0.1x+0.2x", r"0.3x", "float coefficients"),
    (r"x-x", r"0", "symbols cancel"),
    (r"x^{10}", r"x^10", "braced exponent"),
    (r"2^{10}", r"1024", "power of two"),
    (r"x=5", r"5", "equation vs value"),
    (r"x=5", r"x=5", "identical equations"),
    (r"k=3", r"3", "k = prefix"),
    (r"x<3", r"x<3", "inequality"),
    # intervals, tuples, sets
    (r"(1,2)", r"(1,2)", "tuple"),
    (r"(1, 2)", r"(1,2)", "tuple with space"),
    (r"[1,2]", r"[1,2]", "closed interval"),
    (r"(1,2]", r"(1,2]", "half-open interval"),
    (r"\left( 1, 2 \right)", r"(1,2)", "left/right tuple"),
    (r"(-\infty, 3)", r"(-\infty,3)", "infinite interval"),
    (r"\{1,2\}", r"\{1,2\}", "set"),
    (r"1,2", r"1", "list parses as its first element"),
    (r"2(1,2)", r"2", "trailing tuple dropped"),
    (r"[2]", r"2", "brackets are a group"),
    (r"\infty", r"\infty", "infinity"),
    (r"\frac{1}{\infty}", r"0", "one over infinity"),
    # units, text, percent, degrees
    (r"50\%", r"50", "percent"),
    (r"50%", r"50", "bare percent"),
    (r"90^\circ", r"90", "degrees"),
    (r"5\text{ cm}", r"5", "unit text"),
    (r"\text{(A)}", r"\text{(A)}", "multiple choice"),
    (r"\text{(A)}", r"\text{(B)}", "multiple choice, other"),
    (r"\$5", r"5", "dollar"),
    (r"5 dollars", r"5", "word unit"),
    (r"\mathbf{5}", r"5", "bold number"),
    (r"\mathit{abc}", r"abc", "mathit"),
    # malformed LaTeX
    (r"", r"0", "empty"),
    (r"\frac{1}{2", r"\frac12", "unclosed brace"),
    (r"(1+2", r"3", "unclosed paren"),
    (r"1+", r"1", "dangling plus"),
    (r"\sqrt", r"2", "bare sqrt"),
    (r"\frac{1}", r"1", "frac with one argument"),
    (r"2^", r"2", "dangling caret"),
    (r"x \% y", r"x", "escaped percent"),
    (r"\alpha", r"\alpha", "greek symbol"),
    (r"\beta+1", r"1+\beta", "greek sum"),
    (r"\boxed{5}", r"5", "nested box text"),
    (r"a & = 5", r"5", "aligned equals"),
    (r"\int_0^1 x\,dx", r"\frac12", "integral"),
    (r"\sum_{i=1}^{3} i", r"6", "sum"),
    (r"x=(1,2)", r"x", "tuple after a relation"),
    (r"\sin x/2", r"\sin\frac{x}{2}", "unparenthesised function argument takes a product"),
    (r"\log_{10}100", r"2", "log base 10"),
    (r"2)", r"2", "stray closing paren"),
    (r"1\int", r"1", "trailing integral sign"),
    (r"01.5", r"1.5", "leading zero decimal"),
    (r"0,001", r"1", "leading zero with separator"),
    (r"007", r"7", "leading zeros (Python int syntax)"),
    (r"x'", r"x'", "primed symbol"),
    (r"f'(x)+1", r"1+f'(x)", "primed function"),
    (r"\langle x|", r"\langle x|", "bra"),
    (r"\sqrt[3]8", r"2", "cube root without braces"),
    (r"\frac{d}{dx}x^2", r"2x", "derivative"),
    (r"\frac{1}{2}x", r"\frac{x}{2}", "fraction times symbol"),
    (r"\overline{3}", r"3", "conjugate"),
    # huge numbers
    (r"2^{100}", r"1267650600228229401496703205376", "2^100"),
    (r"10^{20}+1", r"10^{20}", "off by one at 1e20"),
    (r"10^{100}", r"10^{100}", "googol"),
    (r"10^{100}+1", r"10^{100}", "googol + 1"),
    (r"123456789012345678901234567890", r"123456789012345678901234567891", "30-digit integers"),
    (r"123456789012345678901234567890", r"123456789012345678901234567890", "identical 30 digits"),
    (r"\frac{10^{30}}{10^{29}}", r"10", "huge fraction"),
    (r"2^{64}", r"18446744073709551616", "2^64"),
    (r"2^{64}", r"18446744073709551617", "2^64 + 1"),
    (r"3^{40}-1", r"12157665459056928800", "3^40 - 1"),
    (r"100!", r"100!", "identical factorial"),
    (r"20!", r"2432902008176640000", "20!"),
    (r"1.5\times10^{3}", r"1500", "scientific notation"),
    (r"1e3", r"1000", "e notation is e times 3"),
]


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclasses.dataclass
class VerificationResult:
    score: float


def verifier_call(source, class_name, namespace):
    """The unmodified __call__ of `class_name` in ground_truth_utils.py, bound to namespace."""
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__call__":
                    code = ast.get_source_segment(source, item)
                    scope = dict(namespace)
                    exec(compile(ast.Module([ast.parse(code).body[0]], []), "ground_truth_utils.py", "exec"), scope)
                    return scope["__call__"]
    raise RuntimeError(f"{class_name}.__call__ not found")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--git-dir", default=DEFAULT_GIT_DIR)
    parser.add_argument("--commit", default=DEFAULT_COMMIT)
    parser.add_argument("--out", default=os.path.join(HERE, "data", "open_instruct_math.json"))
    args = parser.parse_args()

    def show(path):
        return subprocess.run(["git", "--git-dir", args.git_dir, "show", f"{args.commit}:{path}"],
                              check=True, capture_output=True, text=True).stdout

    tmp = tempfile.mkdtemp()
    for name in ("logger_utils.py", "math_utils.py"):
        with open(os.path.join(tmp, name), "w") as f:
            f.write(show(f"open_instruct/{name}"))
    package = types.ModuleType("open_instruct")
    package.__path__ = [tmp]
    sys.modules["open_instruct"] = package
    load("open_instruct.logger_utils", os.path.join(tmp, "logger_utils.py"))
    mu = load("open_instruct.math_utils", os.path.join(tmp, "math_utils.py"))

    gt_source = show("open_instruct/ground_truth_utils.py")
    namespace = {name: getattr(mu, name) for name in dir(mu) if not name.startswith("__")}
    namespace.update(re=re, VerificationResult=VerificationResult)
    math_call = verifier_call(gt_source, "MathVerifier", namespace)
    strict_call = verifier_call(gt_source, "StrictMathVerifier", namespace)

    cases = []
    for answer, label, what in CORPUS:
        boxed = f"The answer is $\\boxed{{{answer}}}$."
        minerva = f"Final Answer: The final answer is {answer}. I hope it is correct."
        cases.append({
            "answer": answer,
            "label": label,
            "what": what,
            "is_equiv": bool(mu.is_equiv(answer, label)),
            "hendrycks": bool(mu.hendrycks_is_equiv(answer, label)),
            "math_prediction": boxed,
            "math_boxed": math_call(None, [], boxed, label).score,
            "strict_prediction": minerva,
            "strict_math": strict_call(None, [], minerva, label).score,
        })

    import sympy
    meta = {
        "open_instruct_commit": args.commit,
        "open_instruct_files": ["open_instruct/math_utils.py", "open_instruct/logger_utils.py",
                                "open_instruct/ground_truth_utils.py (MathVerifier/StrictMathVerifier.__call__)"],
        "sympy": sympy.__version__,
        "antlr4-python3-runtime": importlib.metadata.version("antlr4-python3-runtime"),
        "python": platform.python_version(),
    }
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "cases": cases}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"{len(cases)} cases -> {args.out}")


if __name__ == "__main__":
    main()
