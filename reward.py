"""Verifiable math reward: find the final answer in a response and decide whether it equals the gold one.

    math_reward(response, gold) -> 1.0 if verify(response, gold) else 0.0

The whole path is the first code below: extract_answer (the last \\boxed{}, else the last "answer is",
"#### N", a short bare reply, or the last math or number that stands alone) -> _normalize (strip what
does not change the value) -> _same (equal strings, then structure, then each leaf as an exact fraction,
and only what is left in sympy, in a worker process under a hard time limit). The rest of the file is
the hardening behind those three calls: first the grading policy it implements, then in order
1. extraction, 2. normalisation, 3. comparison of structures, 4. a small LaTeX parser, 5. exact
rationals and the guard on what sympy may see, 6. the sympy worker.

The reward is the only teacher in RL with verifiable rewards, so every rule trades between three failure
modes: a false positive teaches the policy to game the grader, a false negative withholds credit from a
right answer, and a hang stalls training (no call takes more than 2 s).
"""
import ast
import atexit
import hashlib
import json
import math
import os
import re
import select
import subprocess
import sys
import threading
import time
import unicodedata
from fractions import Fraction
from functools import lru_cache

SYMPY_BUDGET_S = 0.8      # sympy wall time one verify() may spend in total; keeps every call under 2 s
WORKER_GRACE_S = 0.3      # the worker stops itself at the budget; the parent kills it after this grace
WORKER_STARTUP_S = 30.0   # importing sympy in a fresh worker is not a hang, so it gets its own limit
MAX_ANSWER_CHARS = 1000   # longer answers are compared as strings only
MAX_CANDIDATES = 20       # more distinct boxed answers than this is spraying, not answering
MAX_FACTORIAL = 5000      # n! and binomials are computed exactly up to this n, and refused beyond it
MAX_EXACT_BITS = 100_000  # exact values (and powers) beyond this size (30,000 digits) are refused, not computed
EXACT_WORK_BITS = 2_000_000   # and so is an answer whose exact values add up to more bits than this


# ----------------------------------------------------------------------------------------------------
# The reward: extract -> normalise -> compare (the policy it follows opens the hardening section below)

def math_reward(output, gold, strict=False):
    """1.0 if verify(output, gold) else 0.0."""
    return 1.0 if verify(output, gold, strict=strict) else 0.0


def verify(output, gold, strict=False):
    """True if the final answer in `output` (a whole response or a bare answer) equals `gold`.

    strict=True grades only \\boxed{}/\\fbox{} answers. Never raises; a timeout is a wrong answer."""
    try:
        found = _candidates(output, strict)
        if not found or len(set(found)) > MAX_CANDIDATES:
            return False                          # spraying answers (and normalising each would take seconds)
        found = list({_key(_normalize(c)): c for c in reversed(found)}.values())  # last box first
        deadline = [time.monotonic() + SYMPY_BUDGET_S]   # a list: a worker start-up extends it
        gold = _gold_answer(str(gold))
        if all(_judge(c, gold, deadline) for c in found):
            return True
        # several boxes can still be one answer when the gold answer has several parts: \boxed{3}, \boxed{5}
        return len(found) > 1 and _judge(", ".join(reversed(found)), gold, deadline)
    except Exception:                             # a reward function must not stop training
        return False


def extract_answer(text, strict=False):
    """The final answer in `text` as written (a string), or None if there is none or the box is empty."""
    found = _candidates(text, strict)
    return found[-1] if found else None


# A choice letter: the letter alone, or first and followed by the option's text: "(D)", "(D) 42", "D) 42",
# "D: 42", "d". Never inside arithmetic (2D, E+1, E*2), and no other answer after it ("(A) and (B)").
_LETTER_ANSWER = re.compile(r"\(([A-Ea-e])\)(?:\s.*)?|([A-Ea-e])(?:[).:]\s.*)?", re.S)


def _letter(s, gold=False):
    """The choice letter an answer gives (upper case), or None. In a response, the option's text after it may
    not offer another answer: no "or", no other choice letter of either case, no one-letter word outside the
    Latin script ("(D) or e", "D) Е"; "C. x = 42" is fine)."""
    m = _LETTER_ANSWER.fullmatch(s)
    rest = s[m.end(1) + 1 if m.group(1) else m.end(2):] if m else ""
    if not m or (not gold and re.search(r"\bor\b|\b[A-E]+\b|(?<![^\W\d_])(?:[a-e]|[^\W\d_a-zA-Z])(?![^\W\d_])", rest)):
        return None
    return (m.group(1) or m.group(2)).upper()


def _judge(answer, gold, deadline):
    """One extracted answer against the gold one: normalise both, then compare."""
    if len(answer) > 2 * MAX_ANSWER_CHARS:
        return answer.strip() == gold.strip()     # not worth normalising: only an exact copy counts
    a, g = _normalize(answer), _normalize(gold)
    if not a or not g:
        return False
    choice = _letter(g, gold=True) if re.fullmatch(r"\(?[A-E]\)?|\(?[A-E][).:]\s.*", g, re.S) else None
    if choice:                                    # multiple choice: the right letter, alone
        return _letter(a) == choice
    if _same(a, g, deadline):
        return True
    # 25% against a gold answer without the sign: the question may have asked for the percent (25)
    # or for the number (0.25); both readings are the same answer.
    if bool(_PERCENT.search(answer)) != bool(_PERCENT.search(gold)):
        a, g = (f"\\frac{{{a}}}{{100}}", g) if _PERCENT.search(answer) else (a, f"\\frac{{{g}}}{{100}}")
        return _same(a, g, deadline)
    return False


# ----------------------------------------------------------------------------------------------------
# The grading policy. RL optimises whatever the reward lets through, so nothing a policy can write
# earns the reward without the right value: every rule below reads one answer, deterministically.
#
# What counts as the answer.
#   strict: \boxed{} / \fbox{} only. Every distinct box must be right, or all of them together must be
#     the gold's list (\boxed{1}, \boxed{2} against {1, 2}). An empty last box, or one never closed, is
#     no answer.
#   lenient (the default) also reads, without a box: the phrase after the last "answer is" / "Answer:" /
#     "####" (a sentence there gives its last math or standing number: "The volume is 120." gives 120,
#     but "not 5", "at least 5", "either 5 or 6", "5 if n is even" and "the square root of 5" give nothing);
#     a short bare reply ("x = 5", "18 dollars"); else the last inline math span ($...$, \(...\)) or the
#     last number that stands as a word of its own, whichever comes later, unless the words just before
#     it deny it or list it ("it is not 5", "5, 6"). A number is never taken out of a word (AZYUK2A, x2) or
#     out of an expression (2^5, 2 + 3, 4π, √5). After boxed intermediate results, a closing "final answer
#     is ..." is the answer.
#   The gold is read the same way when it is a sentence or a whole solution: its last run of adjacent
#     boxes, or what follows its "answer is".
# Equations. A gold `name = value` (y = 2x + 1, f(x) = ..., AB = 4, (p, q) = (3, 2), or a chain
#   z = 1 + 1 = 2) is matched by the value, or by an equation naming the same value; any other gold
#   equation (x + y = 5, 7 = 11a + c) only by an equivalent equation (equal up to a nonzero factor),
#   never by one side. A response equation is read as its last part (x = 5, 2 + 3 = 5); `a \approx b`
#   states a (the exact value), unless a is a name (x \approx 3.14 states 3.14). Names must agree where
#   both sides give one (b = 5 is not a = 5; y = ... may stand for f(x) = ...), and a gold that names
#   each value (x = 2, y = 5) is matched by the same names, or by the bare values in its order.
# Choice letters. A gold A-E (or "(C) text") is matched only by that letter alone, in parentheses,
#   \text{} or \textbf{}, or first and followed by the option's text ("(D) 42", "D: 42"); never by
#   arithmetic on it (2D, E+1, E*2) and never when the text offers another ("(A) and (B)", "(D) or e").
# Relations. \lt \gt \le \leq \leqslant \ge \ne \neq != are read. An inequality that isolates a name is
#   the interval it describes (x > 1 is (1, \infty), 0 < f(x) < 1 is (0, 1), x \ne 1 a union); any other
#   is compared as the set of its real solutions (-x > -1 is x < 1), or with several variables as an
#   inequality up to a positive factor.
# Sets and lists. "a, b", "a or b", "a and b", {a, b}, \{a, b\}, a \pm b and one box per element are
#   unordered; ";" separates groups ("p=5, q=2; p=7, q=2" is two pairs); tuples (a, b) are ordered;
#   intervals keep their brackets and are never lists (2 < x < 5 is not "2, 5"). A list against a single
#   value is a hedge and never matches.
# Numbers are compared exactly: decimals, fractions, powers, factorials and binomials as exact rationals
#   here (up to 30,000 digits); anything else in sympy, by evaluating the difference at the precision its
#   own numbers need (1/300! is not 1/301!, sqrt(25 + 10^{-300}) is not 5), where there are variables at
#   four points drawn from a hash of the two expressions, two small and two large. Pieces (|x|, floor,
#   max) agree at a few points without being equal: there only an exact simplification says equal.
# Refused on purpose: decimal commas (1,5 is the list 1, 5 and 1,000 a thousand), rounded floats at any
#   precision (0.3333333333 is not 1/3, 3.14 is not \pi), two bare numbers side by side read as a product
#   (11 6/6 is not 11; a proper 2 1/2 is a mixed number), degrees <-> radians, British "one hundred and
#   five" (the list 100, 5), identities that need assumptions (sqrt(x^2) = x: points of both signs).
# Accepted on purpose: a percent either way (25% matches a gold 25, the question asked for a percent, or
#   0.25, it asked for the number), units and number words (18 dollars, 12\text{ m}, forty-two; but not
#   words that change the value: 5 squared, 5 dozen, 5\text{ or more}, 5\text{x}), LaTeX escaped twice
#   or eaten by a Python string (\\frac, "\x0crac"), superscripts and subscripts (2⁵ is 2^{5}, x₁ is x_1).
# Every call finishes within 2 s: sympy runs in a worker process under a wall-clock budget, and what
#   could run away (towers, huge powers, factorials and products, long or deep expressions, more than 20
#   distinct boxes) is refused before it; an answer over 2,000 characters is compared as written.

# ----------------------------------------------------------------------------------------------------
# 1. Extraction: what the response commits to
#
# extract_answer: the last \boxed{...}/\fbox{...} (braces matched); without a box, the last "final
# answer is" / "answer is" / "Answer:" (so Minerva's "Final Answer: The final answer is $X$. I hope it
# is correct." gives X), "#### N", a short bare answer, and as a last resort the last inline math or
# standing number. strict=True keeps only boxes (the paper's protocol).

_BOX = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")


def _box_spans(text):
    """(contents, start, end) of every top-level \\boxed{...} / \\fbox{...} / \\boxed 7, in order. Linear time."""
    found, pos = [], 0
    while True:
        m = _BOX.search(text, pos)
        if not m:
            return found
        i = m.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth = 0
            for j in range(i, len(text)):
                depth += (text[j] == "{") - (text[j] == "}")
                if depth == 0:
                    break
            else:
                return found  # never closed: every later box is inside it
            found.append((text[i + 1:j].strip(), m.start(), j + 1))
            pos = j + 1       # nested boxes stay inside the outer one (and _normalize unwraps them)
        else:
            word = re.match(r"[^\s$]*", text[i:i + 200]).group(0)   # \boxed 7
            found.append((word, m.start(), i + len(word)))
            pos = i + len(word)


def _boxes(text):
    return [span[0] for span in _box_spans(text)]


_ANSWER_IS = re.compile(r"(?:final answer|answer)\s*(?:is|:)\s*:?\s*", re.I)
_FINAL_ANSWER = re.compile(r"final answer\s*(?:is|:)\s*:?\s*", re.I)
_HASHES = re.compile(r"####\s*")
_NUMBER = r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:/\d+)?|-?\.\d+"
# What a sentence can commit to without a box: a fraction or root written in LaTeX, or a number that stands
# as a word of its own, with its sign ("negative 5", "−5") -- not glued to Latin letters or digits ("AZYUK2A",
# "x2", "2A" hold no number) nor part of an expression (2^5, pi/6, sqrt(6), 2 + 3, 4×3, 5³, √5, 4π), though
# a unit may follow it ("5cm", "3rd"), and text in scripts without spaces may touch it ("为13/28").
_OPERATOR = "+×÷·^/√π"   # and a single * (a double one is markdown bold: **25%**)
_STANDING = re.compile(
    r"\\[dt]?frac\{[^{}]{1,50}\}\{[^{}]{1,50}\}|\\sqrt\{[^{}]{1,50}\}|"
    r"(?<![A-Za-z0-9_.\\%s-])(?<![^*]\*)(?<![%s-]\s)(?<![A-Za-z]\()(?:(?:negative|minus)\s+|[−–－﹣])?(?:%s)"
    r"(?=(?:(?:%s)[²³]?)?(?![A-Za-z0-9_²³⁰¹⁴-⁹ⁿ½¼¾%s]|\*[^*]|[.,]\d|\s?[%s-]\s?\d))" % (
        _OPERATOR, _OPERATOR, _NUMBER, "|".join(("cm", "mm", "km", "kg", "mg", "ml", "mL", "ft", "mph", "hrs", "hr",
                                                 "min", "sec", "st", "nd", "rd", "th", "m", "g", "s", "h", "L")),
        _OPERATOR, _OPERATOR))
# Inline math: $...$, $$...$$, \(...\), \[...\] (an escaped \$ is a dollar sign, not a delimiter).
_MATH_SPAN = re.compile(r"(?<!\\)\$\$(.{1,500}?)(?<!\\)\$\$|(?<!\\)\$(.{1,500}?)(?<!\\)\$|\\\((.{1,500}?)\\\)|"
                        r"\\\[(.{1,500}?)\\\]", re.S)
# A word: three Latin letters (not a LaTeX command), or two letters of any other script.
_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}|[^\W\d_a-zA-Z]{2,}")
# Control characters that stand for a LaTeX command whose backslash a Python string ate: "\frac" -> "\x0crac"
_EATEN = {"\x07": "\\a", "\x08": "\\b", "\x0b": "\\v", "\x0c": "\\f"}
_EATEN_ANY = re.compile(r"[\x07\x08\x0b\x0c]|\r[a-z]|\\\\[a-zA-Z()\[\]]")


_COMMANDS = ("frac|dfrac|tfrac|cfrac|sqrt|left|right|boxed|fbox|text|textbf|mathrm|mathbf|cdot|times|div|pm|mp|"
             "infty|pi|le|ge|leq|geq|ne|neq|lt|gt|begin|end|in|cup|cap|sin|cos|tan|cot|sec|csc|log|ln|exp|alpha|"
             "beta|gamma|delta|theta|phi|lambda|mu|sigma|omega|approx|circ|quad|qquad|emptyset|varnothing|lfloor|"
             "rfloor|lceil|rceil|binom|overline|angle|operatorname|displaystyle|dots|cdots|ldots|mid")


def _repair(text):
    """Undo what a Python string does to LaTeX written without r"": \\f, \\b, \\a, \\v become control
    characters, and \\r before letters a carriage return; and LaTeX escaped twice: \\\\frac is \\frac (a
    matrix's \\\\ stays, since no command follows it directly)."""
    if not _EATEN_ANY.search(text):
        return text                               # the common case, one scan
    for a, b in _EATEN.items():
        text = text.replace(a, b)
    text = re.sub(r"\r(?=[a-z]{2})", r"\\r", text)
    return re.sub(r"(?<!\\)\\\\(?=(?:%s)(?![a-zA-Z])|[()\[\]])" % _COMMANDS, r"\\", text)


def _clean_phrase(s):
    s = re.split(r"\.\s", s)[0]                   # cut at the end of the sentence; keeps 3.5
    s = re.sub(r"^[\s*]+|[\s*.]+$", "", s)       # markdown bold and the full stop: **25%**.
    return re.sub(r"^(?:\\?[\"'])+|(?:\\?[\"'])+$", "", s).strip().strip("$").strip()   # quoted: "$12$"


def _is_short(s):
    """A short one-line reply is itself the answer: "\\frac{1}{2}", "x = 5", "18 dollars", "Evelyn";
    a sentence ("It is 5", "The volume is 120") is not, and neither are digits inside a word ("AZYUK2A")."""
    return bool(s) and len(s) <= 200 and "\n" not in s and len(_WORD.findall(s)) <= 2 and \
        not (re.match(r"[^\W\d_]{2,}", s) and re.search(r"\d", s))


def _last_standing(text):
    """What a text commits to: its last inline math span, or a number standing after it. Nothing when the
    words since the sentence's previous number deny it ("it is not 5", "either 5 or 6", "one of 5, 6") or
    only list it ("5, 6"), though an earlier number may be denied ("not 10, it is 12" gives 12)."""
    span = None
    for span in _MATH_SPAN.finditer(text):
        pass
    numbers = [None, None] + list(_STANDING.finditer(text))
    previous, number = numbers[-2:]
    if span and not _WORD.search(re.sub(r"\\[a-zA-Z]+\s*\{[^{}]*\}", "", span.group(0))) and \
            (number is None or number.start() < span.end()):
        return next(g for g in span.groups() if g is not None).strip()   # a matrix or a tuple stays whole
    if number is None:
        return None
    sentence = max(text.rfind(c, 0, number.start()) for c in ".!?\n") + 1
    window = text[max(sentence, previous.end() if previous else 0):number.start()]
    if _DENIES.search(window) or (previous and previous.end() > sentence and
                                  re.fullmatch(r"[\s,;/]*(?:and|or)?[\s,;/]*", window)):
        return None
    return re.sub(r"^(?:(?:negative|minus)\s+|[−–－﹣])", "-", number.group(0))


# Words that make a sentence's last number something other than its answer.
_HEDGE = re.compile(r"\b(?:or|either|neither|nor|not|no|never|none|cannot|can't|isn't|least|most|than|between|less|"
                    r"more|greater|fewer|over|under|above|below|within|except|unless|otherwise|depending|about|"
                    r"around|approximately|roughly|nearly|almost|maybe|perhaps|possibly|probably|different|"
                    r"anything but|all but|one of|any of|if|when|whereas|root|roots|square|squared|cube|cubed|"
                    r"power|times|divided|plus|twice|half|double|triple|log|logarithm)\b|"
                    r"\bin\s*\\?[{\[(]", re.I)
# In a narrative ("5 apples, then 4 more, so 9"), only words that deny or split the answer itself count.
_DENIES = re.compile(r"\b(?:or|either|neither|nor|not|none|cannot|can't|isn't|anything but|all but|one of|any of)\b|"
                     r"\bin\s*\\?[{\[(]", re.I)


def _phrase(text, pattern):
    """The answer after the last match of `pattern` ("answer is", "####") in text, or None."""
    last = None
    for last in pattern.finditer(text):
        pass
    if not last:
        return None
    line = text[last.end():].split("\n")[0]
    phrase = _clean_phrase(line)
    if phrase and not _is_short(phrase) and not _HEDGE.search(phrase):   # "either 7 or 8", "not 5", "at least 5"
        phrase = _last_standing(re.split(r"(?<!\d)\.\s|\.$", line.strip())[0])   # "The volume is 120." is 120
    return phrase or None


def _candidates(text, strict=False):
    """Every final answer the response commits to (several only when it boxes several)."""
    text = _repair(str(text))
    spans = _box_spans(text)
    boxes = [span[0] for span in spans]
    if boxes:
        if not strict:    # "...\boxed{255}... Final Answer: The final answer is $10,455$": the last word counts
            closing = _phrase(text[spans[-1][2]:][-3000:], _FINAL_ANSWER)
            if closing and re.search(r"\d|\\", closing):
                return [closing]
        return [] if not boxes[-1] else [b for b in boxes if b]
    if strict or _BOX.search(text):               # a box that never closes: the response was cut off
        return []
    tail = text[-3000:]                           # final answers live at the end; keeps this linear
    for pattern in (_ANSWER_IS, _HASHES):   # the last phrase wins: "Final Answer: The final answer is $X$."
        phrase = _phrase(tail, pattern)
        if phrase:
            return [phrase]
    bare = text.strip().strip("$").strip()
    if _is_short(bare):
        return [bare]
    found = _last_standing(tail)
    return [found] if found else []


@lru_cache(maxsize=4096)
def _gold_answer(gold):
    """The answer a gold string states: its boxed answers when it has boxes (a whole reference solution, or
    "\\boxed{1} and \\boxed{2}"), the answer of a sentence ("the answer is 10000"); else the string itself."""
    gold = _repair(str(gold))
    spans = [span for span in _box_spans(gold) if span[0]]
    if spans:             # the last run of boxes that stand together: "\boxed{1} and \boxed{2}" is both
        run = [spans[-1]]
        while len(run) < len(spans) and len(gold[spans[-len(run) - 1][2]:run[0][1]].split()) <= 3:
            run.insert(0, spans[-len(run) - 1])
        return ", ".join(dict.fromkeys(span[0] for span in run))
    if _ANSWER_IS.search(gold) or (len(gold) > 150 and len(_WORD.findall(gold)) > 12):   # a sentence, a solution
        found = _candidates(gold)
        return found[-1] if found else gold
    return gold


# ----------------------------------------------------------------------------------------------------
# 2. Normalisation
#
# _normalize: strip what does not change the value -- LaTeX spacing and style macros, \text{},
# thousands separators, units and trailing words after a number (`5 m/s` too), degrees, percent and
# dollar signs, unicode look-alikes -- and never anything else: letters are only dropped when they are
# whole words after a number, so `2n-1` stays `2n-1`. Number words become digits ("twenty-one" -> 21)
# and a bare `pi` is \pi.

_UNICODE = {"−": "-", "–": "-", "π": "\\pi ", "∞": "\\infty ", "°": "^\\circ ", "×": "\\times ",
            "·": "\\cdot ", "⋅": "\\cdot ", "√": "\\sqrt", "≤": "\\le ", "≥": "\\ge ", "≠": "\\ne ",
            "∪": "\\cup ", "÷": "\\div ", "±": "\\pm ", "≈": "\\approx ",
            "½": "\\frac{1}{2}", "¼": "\\frac{1}{4}", "¾": "\\frac{3}{4}", "∅": "\\emptyset ",
            "⌊": "\\lfloor ", "⌋": "\\rfloor ", "⌈": "\\lceil ", "⌉": "\\rceil ",
            "\u00a0": " ", "\u2009": " ", "\u202f": " "}
# Superscripts and subscripts: 2⁵ is 2^{5} and x₁ is x_{1}, never 25 or x1 (which NFKC would make them).
_SUPER, _SUB = "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿⁱ", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₙᵢ"
_SCRIPTS = re.compile(f"[{_SUPER}]+|[{_SUB}]+")
_SCRIPT_DIGITS = str.maketrans(_SUPER + _SUB, "0123456789+-=()ni" * 2)
_STYLE = re.compile(r"\\(?:text|textbf|textit|textrm|textsf|texttt|textnormal|mathrm|mathbf|mathit|mathsf|mbox|"
                    r"operatorname|boldsymbol|mathbb|mathcal|emph|hbox)\s*\{([^{}]*)\}")
# Words after a number that change its value, so they are never dropped as a unit: 5 squared, 5 or more.
_MATH_WORDS = {"pi", "or", "and", "sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "infty",
               "inf", "squared", "cubed", "dozen", "dozens", "hundred", "hundreds", "thousand", "thousands",
               "million", "millions", "billion", "billions", "tenth", "tenths", "hundredth", "hundredths",
               "thousandth", "thousandths", "half", "halves", "third", "thirds", "quarter", "quarters", "fourth",
               "fourths", "fifth", "fifths", "negative", "positive", "more", "less", "least", "most", "not",
               "times", "over", "under", "plus", "minus", "percent", "percentage", "pct", "root", "roots",
               "factorial", "power", "powers", "radians", "rad", "sixth", "sixths", "seventh", "sevenths", "eighth",
               "eighths", "ninth", "ninths", "twelfth", "twelfths", "trillion", "trillions", "grand", "score",
               "scores", "doubled", "tripled", "halved", "reciprocal", "inverse", "opposite", "wrong", "incorrect",
               "false", "excluded", "exclusive", "minimum", "maximum", "at", "is", "are", "isn", "only", "except",
               "without", "than", "if", "unless", "thousandth", "millionth", "billionth", "k"}
# One-letter units that a \text{} may hold after a number (12\text{ m}); never i, e, x or n, which are math.
_UNIT_LETTERS = set("mgsLAVWNJCFTh")


# Units that may be glued to the number ("5cm"); any other word needs a space before it ("2 ab" stays).
_UNITS = ("cm", "mm", "km", "kg", "mg", "ml", "mL", "ft", "mph", "hrs", "hr", "min", "sec", "dollars",
          "cents", "degrees", "meters", "inches", "feet", "units", "miles", "pounds", "lbs", "oz", "liters",
          "seconds", "minutes", "hours", "days", "weeks", "months", "years")


# Unit symbols that make up a rate after a number ("5 m/s", "60 km/h", "9.8 m/s^2").
_RATE = r"(?:%s)(?:\^\{?[23]\}?)?" % "|".join(("km", "cm", "mm", "m", "s", "h", "hr", "min", "sec", "kg", "g", "mi",
                                                "ft", "in", "L", "mL", "lb", "gal", "mol", "day", "yr"))


def _unit_text(m):
    """A \\text{} after a number: dropped if it is a unit, kept (unwrapped later) if it changes the value."""
    words = re.findall(r"[a-zA-Z]+", m[1])
    if set(w.lower() for w in words) & _MATH_WORDS or (len(words) == 1 and len(words[0]) == 1 and
                                                        words[0] not in _UNIT_LETTERS):
        return m[0]
    return ""


def _strip_units(s):
    """Drop whole words after a number ('18 dollars', '15 cm^2', '4 square units', '5 m/s'); keep math."""
    m = re.fullmatch(r"(.*?[\d}])((?:\s+[a-zA-Z]{2,}(?:\^\{?[23]\}?)?\.?)+)", s) or \
        re.fullmatch(r"(.*?\d)((?:%s)(?:\^\{?[23]\}?)?\.?)" % "|".join(_UNITS), s) or \
        re.fullmatch(r"(.*?\d)(\s*%s(?:\s*/\s*%s)+\.?)" % (_RATE, _RATE), s)
    if m and not set(w.lower() for w in re.findall(r"[a-zA-Z]+", m.group(2))) & _MATH_WORDS:
        return m.group(1).strip()
    return s


_WORD_VALUES = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())} | {w: 10 * i for i, w in enumerate(
    "twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)} | \
    {"hundred": 100, "thousand": 1000, "million": 10 ** 6, "billion": 10 ** 9}
_NUMBER_WORDS = re.compile(r"(?<![\\a-zA-Z\d])(?:(?:minus|negative)\s+)?(?:{0})(?:[\s-]+(?:{0}))*(?![a-zA-Z\d])".format(
    "|".join(sorted(_WORD_VALUES, key=len, reverse=True))), re.I)


def _from_words(m):
    """'twenty-one' -> '21', 'one hundred five' -> '105', 'minus three' -> '-3'; a run that is not one
    number ('two three') stays as written."""
    words = re.split(r"[\s-]+", m[0].lower())
    sign = "-" if words[0] in ("minus", "negative") else ""
    total = current = 0
    previous = None
    for w in words[1:] if sign else words:
        v = _WORD_VALUES[w]
        if v < 100:                               # a unit, teen or tens word
            if previous is not None and previous < 100 and not (previous >= 20 and previous % 10 == 0 and v < 10):
                return m[0]                       # "two three", "twenty thirty": not one number
            current += v
        elif v == 100:
            current = (current if previous is not None else 1) * 100   # "hundred" is 100, "zero hundred" 0
        else:                                     # thousand, million, billion
            total, current = total + (current or 1) * v, 0
        previous = v
    return f"{sign}{total + current}"


def _repeating(m):
    """0.1\\overline{6} -> the exact fraction 1/6."""
    whole, fixed, rep = m.group(1) or "0", m.group(2), m.group(3)
    num = int(whole + fixed + rep) - int(whole + fixed)
    return f"\\frac{{{num}}}{{{10 ** len(fixed) * (10 ** len(rep) - 1)}}}"


_PERCENT = re.compile(r"\\?%|(?<=[\d}\s])(?:percentage|percent|pct)(?![a-zA-Z])")


def _approx(s):
    """x \\approx 3.14 states 3.14; \\frac{\\sqrt3}{3} \\approx 0.577 states the exact value before the sign."""
    parts = re.split(r"\\approx(?![a-zA-Z])", s)
    kept = parts[0]
    for part in parts[1:]:
        if not _is_name(re.split(r"[=,;]", kept)[-1]):
            return kept.strip()
        kept += "=" + part
    return kept


def _membership(s):
    """x \\in (a, b] is the interval a < x <= b (not the pair (a, b)); x \\in any other set is that set."""
    m = re.fullmatch(r"([a-zA-Z])\s*\\in\s*(.*)", s)
    if not m:
        return s
    var, rest = m.groups()
    if rest[:1] in "([" and rest[-1:] in ")]" and _encloses(rest):
        ends, _ = _split_top(rest[1:-1], re.compile(","))
        if len(ends) == 2 and all(ends):
            lo, hi = ("" if ends[0] == "-\\infty" else f"{ends[0]} {'<' if rest[0] == '(' else '<='} ",
                      "" if ends[1] == "\\infty" else f" {'<' if rest[-1] == ')' else '<='} {ends[1]}")
            return f"{lo}{var}{hi}" if lo or hi else rest
    return rest


@lru_cache(maxsize=4096)
def _normalize(s):
    s = str(s)
    if len(s) > 2 * MAX_ANSWER_CHARS:
        return s.strip()                          # far too long to be an answer: compared as written
    for a, b in _UNICODE.items():
        s = s.replace(a, b)
    s = _SCRIPTS.sub(lambda m: ("^{%s}" if m[0][0] in _SUPER else "_{%s}") % m[0].translate(_SCRIPT_DIGITS), s)
    s = unicodedata.normalize("NFKC", s).strip()   # full-width and compatibility forms: Ｅ is E, １２ is 12
    if len(s) > 2 * MAX_ANSWER_CHARS:
        return s                                  # grew past the cap (a ligature can stand for 18 letters)
    while True:                                   # \boxed{\boxed{5}}, or a gold answer given boxed
        spans = _box_spans(s)                     # (but \boxed{5}^{2} is not 5)
        if len(spans) == 1 and spans[0][1] == 0 and spans[0][2] == len(s):
            s = spans[0][0]
        else:
            break
    s = re.sub(r"^\\\[|\\\]$|^\\\(|\\\)$", "", s).replace("\\$", "").replace("$", "")
    s = re.sub(r"\\(?:left|right|[bB]igg?[lr]?)(?![a-zA-Z])|\\(?:displaystyle|textstyle)", "", s)
    s = re.sub(r"\\lbrace", r"\\{", s)
    s = re.sub(r"\\rbrace", r"\\}", s)
    s = re.sub(r"\\langle(?![a-zA-Z])", "(", s)       # vectors <1, 2> are tuples
    s = re.sub(r"\\rangle(?![a-zA-Z])", ")", s)
    s = re.sub(r"\\[lr]?vert(?![a-zA-Z])|\\mid(?![a-zA-Z])", "|", s)
    s = re.sub(r"\\varnothing(?![a-zA-Z])|^\\\{\s*\\\}$", r"\\emptyset", s)
    s = _approx(s)
    s = re.sub(r"(?<![\\a-zA-Z])(?:infinity|infty|inf)(?![a-zA-Z])", r"\\infty", s)
    s = re.sub(r"\\(?:leqslant|leqq|leq)(?![a-zA-Z])", r"\\le ", s)
    s = re.sub(r"\\(?:geqslant|geqq|geq)(?![a-zA-Z])", r"\\ge ", s)
    s = re.sub(r"\\neq(?![a-zA-Z])|\\not\s*=|!=", r"\\ne ", s)
    s = re.sub(r"\\lt(?![a-zA-Z])", "<", s)
    s = re.sub(r"\\gt(?![a-zA-Z])", ">", s)
    s = re.sub(r"\\[dtc]frac(?![a-zA-Z])", r"\\frac", s)
    # Thousands written with LaTeX spacing (1{,}000, 10,\!080, 1\,000) before the spacing macros vanish.
    s = re.sub(r"(\d)(?:\{,\}|,\\!|\\,|\\!|,\\ )\s*(?=\d{3}(?!\d))", r"\1", s)
    s = re.sub(r"(?<!\\)\\[,;:! ]|\\q?quad|~", " ", s)   # but not the \\ of a matrix (and \quadx is \quad x)
    # A \text{} after a number is a unit, even a one-letter one: 12\text{ m}, 15\mbox{ cm}^2 (not 5\text{ or more}).
    s = re.sub(r"(?<=[\d}])\s*\\(?:text|textrm|textnormal|mathrm|mbox)\s*\{[\s~]*([a-zA-Z][a-zA-Z ./]*)(?:\^\{?[23]\}?)?\}"
               r"(?:\^\{?[23]\}?)?\s*\.?$", _unit_text, s)
    s = re.sub(r"\\mathbb\s*\{?R\}?", r"(-\\infty,\\infty)", s)     # all reals
    for _ in range(5):                            # \text{\textbf{(C)}} unwraps from the inside out
        s, n = _STYLE.subn(r"\1", s)
        if not n:
            break
    s = _NUMBER_WORDS.sub(_from_words, s)          # "twenty-one" -> 21
    s = re.sub(r"(?<![\\a-zA-Z])pi(?![a-zA-Z])", r"\\pi ", s)   # a bare pi
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree", "", s)
    s = _PERCENT.sub("", s)
    # Mixed numbers: 2\frac{1}{2} and "2 1/2" mean 2 + 1/2 (only for proper fractions).
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"(?<![\d.^_}])(\d+)\s*\\frac\{(\d+)\}\{(\d+)\}",
               lambda m: f"({m[1]}+\\frac{{{m[2]}}}{{{m[3]}}})" if int(m[2]) < int(m[3]) else m[0], s)
    s = re.sub(r"^(\d+)\s+(\d+)/(\d+)\s*$",
               lambda m: f"({m[1]}+{m[2]}/{m[3]})" if int(m[2]) < int(m[3]) else m[0], s)
    s = re.sub(r"(?<![\d.])(\d{0,50})\.(\d{0,50})\\overline\{(\d{1,50})\}", _repeating, s)
    s = re.sub(r"(?<!\\)\{\s*(?<!\\)\}", "", s)        # an empty group is nothing: \frac{1}{23}{} is \frac{1}{23}
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"(?<!\\)\\{1,2}$", "", s).strip()   # a stray backslash or line break at the end: 185\
    s = re.sub(r"^(\d{1,2}:\d{2}):00$", r"\1", s)   # 20:34:00 is 20:34
    s = _membership(s)                            # x \in [2, 5) is 2 <= x < 5, x \in \{1, 2\} is \{1, 2\}
    if re.fullmatch(r"-?\d{1,3}(?: \d{3})+(?:\.\d+)?", s):    # 1 000 000
        s = s.replace(" ", "")
    s = _strip_units(s).rstrip(".").strip()
    if not s.startswith(("(", "[", "\\{", "\\begin")):   # 1,000 -- but (1,000) may be a pair
        s = re.sub(r"(?<![\d.,])[1-9]\d{0,2}(?:,\d{3})+(?![\d,])", lambda m: m[0].replace(",", ""), s)
    return s


_DIGIT_SPACE = re.compile(r"(?<=\d)\s+(?=\d)")


def _key(s):
    return _DIGIT_SPACE.sub("\u2423", s).replace(" ", "")   # spaces go, but 5 6 is not 56


# ----------------------------------------------------------------------------------------------------
# 3. Comparison of structures and leaves
#
# _same: equal strings; then structure (tuples in order, sets and "a, b" lists in any order, intervals
# with their brackets, unions (a union of finite sets is one set), matrices in any environment and
# brackets, equations, inequalities); then each leaf: our own small LaTeX parser turns it into
# Python/sympy code, numbers are compared as exact Fractions in this process (no float tolerance: 0.333
# is not 1/3; no overflow: 1e309 is not infinity), and only what is left goes to sympy, which compares
# values at 40 digits *relatively* (1/50! is not 1/51!) and falls back on exact simplification near 0
# and for floor/ceiling, which agree at a few points without being equal.

_LIST_SEP = re.compile(r",\s*(?:and|or)\s+|,|;|\s+or\s+|\s+and\s+|(?<=[)\]])\s*(?:or|and)\s*(?=[(\[])|"
                       r"\\lor(?![a-zA-Z])")
_GROUP_SEP = re.compile(";")
_PM = re.compile(r"\\(?:pm|mp)(?![a-zA-Z])")
_CUP = re.compile(r"\\cup(?![a-zA-Z])")
_REL = re.compile(r"\\(?:le|ge|ne)(?![a-zA-Z])|<=|>=|=|<|>")
_MATRIX = re.compile(r"\\begin\{([pbB]?matrix|array)\}(?:\{[^}]*\})?(.*)\\end\{\1\}", re.S)   # not vmatrix: a determinant


def _split_top(s, sep):
    """Split at separators outside brackets; returns (parts, separators)."""
    parts, seps, depth, start, i = [], [], 0, 0, 0
    while i < len(s):
        c = s[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            m = sep.match(s, i)
            if m and m.end() > i:
                parts.append(s[start:i].strip())
                seps.append(m.group(0).strip())
                start = i = m.end()
                continue
        i += 1
    parts.append(s[start:].strip())
    return parts, seps


def _encloses(s):
    """True if the bracket opening s closes at its very end: (1,2) yes, (1)(2) no."""
    depth = 0
    for i, c in enumerate(s):
        depth += (c in "([{") - (c in ")]}")
        if depth == 0 and i < len(s) - 1 and c in ")]}":
            return False
    return depth == 0


def _expand_pm(items):
    out = []
    for item in items:
        if item.count("\\pm") == 1 or item.count("\\mp") == 1:
            out += [re.sub(r"\\(?:pm|mp)", "+", item), re.sub(r"\\(?:pm|mp)", "-", item)]
        else:
            out.append(item)
    return out


def _interval(lo, lo_closed, hi, hi_closed):
    return ("interval", "[" if lo_closed else "(", "]" if hi_closed else ")", [lo, hi])


_FLIP = {">": "<", "\\ge": "\\le", ">=": "\\le", "<": ">", "\\le": "\\ge", "<=": "\\ge", "\\ne": "\\ne"}
_UP = ("<", "\\le", "<=")


def _relation(parts, ops):
    """An equation ("eq", parts) or a relation. A relation that isolates one name (x < 3, 0 < f(x) <= 1,
    x \\ne 2) is the interval or union it describes; any other (-x > -1, a < b) stays ("rel", parts, ops)
    and is compared by the set it describes, or, with several variables, as an inequality."""
    if all(op == "=" for op in ops):
        if len(parts) == 2 and parts[0][:1] == "(" and _is_name(parts[0]) and _shape(parts[1])[0] == "tuple":
            names, values = _split_top(parts[0][1:-1], re.compile(","))[0], _shape(parts[1])[3]
            if len(names) == len(values):         # (p, q) = (3, 2) names each value: p = 3, q = 2
                return ("list", [f"{n} = {v}" for n, v in zip(names, values)])
        return ("eq", parts)
    if "=" in ops or len(ops) > 2:
        return None
    if ops[0] not in _UP and ops[0] != "\\ne":    # write every inequality with < or <=
        parts, ops = parts[::-1], [_FLIP[op] for op in ops[::-1]]
    if len(ops) == 1:
        (l, r), op = parts, ops[0]
        if _is_name(r) and not _is_name(l):
            l, r, op = r, l, _FLIP[op]
        if _is_name(l) and not _is_name(r):   # x < 3, x >= 3, x \ne 3
            if op == "\\ne":
                return ("union", [f"(-\\infty, {r})", f"({r}, \\infty)"])
            if op in _UP:
                return _interval("-\\infty", False, r, op != "<")
            return _interval(r, op != ">", "\\infty", False)
    elif _is_name(parts[1]) and all(op in _UP for op in ops):    # a < x <= b
        return _interval(parts[0], ops[0] != "<", parts[2], ops[1] != "<")
    return ("rel", parts, ops)


@lru_cache(maxsize=1 << 14)
def _shape(s):
    """The structure of a normalised answer, as a tuple whose first item names it (callers never modify it)."""
    m = _MATRIX.fullmatch(s)
    if m:
        rows = [r for r in re.split(r"\\\\", m.group(2)) if r.strip()]
        return ("matrix", [[c.strip() for c in r.split("&")] for r in rows])
    parts, _ = _split_top(s, _CUP)
    if len(parts) > 1:
        if all(p.startswith("\\{") and p.endswith("\\}") and _encloses(p[1:]) for p in parts):
            items = [x for p in parts for x in _split_top(p[2:-2], _LIST_SEP)[0] if x]
            return ("set", _expand_pm(items))      # \{1\} \cup \{2, 3\} is the set \{1, 2, 3\}
        return ("union", parts)
    groups, _ = _split_top(s, _GROUP_SEP)
    if len(groups) > 1:                           # p=5, q=2; p=7, q=2 is two pairs
        return ("list", groups)
    items, _ = _split_top(s, _LIST_SEP)
    if len(items) > 1 or len(_split_top(s, _PM)[0]) == 2:     # 1 \pm \sqrt{2} is two answers
        return ("list", _expand_pm(items))
    parts, ops = _split_top(s, _REL)
    if ops and all(parts):
        rel = _relation(parts, ops)
        if rel:
            return rel
    if s.startswith("\\{") and s.endswith("\\}") and _encloses(s[1:]):
        return ("set", _expand_pm(_split_top(s[2:-2], _LIST_SEP)[0]))
    if s[:1] == "{" and s[-1:] == "}" and _encloses(s):
        return _shape(s[1:-1].strip())            # a LaTeX group is transparent: {2, 3, 5} is the list
    if s[:1] in "([" and s[-1:] in ")]" and _encloses(s):
        inner, _ = _split_top(s[1:-1], re.compile(","))
        if len(inner) > 1:
            return ("tuple", s[0], s[-1], inner)
        if (s[0] == "(" and s[-1] == ")") or _MATRIX.fullmatch(s[1:-1].strip()):
            return _shape(s[1:-1].strip())        # (5) is 5; [\begin{array}...\end{array}] is the matrix
    return ("leaf", s)


def _unordered(xs, ys, deadline):
    xs, ys = ({_key(x): x for x in xs}, {_key(y): y for y in ys})   # dedupe spellings
    xs, ys = list(xs.values()), list(ys.values())
    if len(xs) != len(ys) or len(xs) > 30:
        return False
    for x in xs:
        for j, y in enumerate(ys):
            if _same(x, y, deadline):
                del ys[j]
                break
        else:
            return False
    return True


def _same(a, b, deadline):
    """Do two normalised answers mean the same mathematical object?"""
    if _key(a) == _key(b):
        return True
    if not a or not b or len(a) > MAX_ANSWER_CHARS or len(b) > MAX_ANSWER_CHARS:
        return False
    A, B = _shape(a), _shape(b)
    if A[0] == "eq" or B[0] == "eq":
        return _same_equation(A, a, B, b, deadline)
    if A[0] == "rel" or B[0] == "rel":
        return _same_relation(A, B, deadline)
    bags = ("list", "set", "leaf")
    if A[0] in bags and B[0] in bags and (A[0] != "leaf" or B[0] != "leaf"):
        # a gold single value against a list of several different values is hedging: lengths differ
        return _same_bag(A[1] if A[0] != "leaf" else [a], B[1] if B[0] != "leaf" else [b], deadline)
    if {A[0], B[0]} == {"union", "list"}:     # x < 2 or x > 3
        return _unordered(A[1], B[1], deadline)
    if {A[0], B[0]} == {"tuple", "list"}:     # (3, 4) written as 3, 4; never [3, 4], an interval
        named = _named(A[1]) if A[0] == "list" else None
        if named is not None and list(named) != sorted(named):
            return False                          # y = 2, x = 5 is not the pair (2, 5), which lists x first
        return _ordered(_vector(A), _vector(B), deadline)
    if {A[0], B[0]} == {"matrix", "tuple"}:   # a vector written as a tuple, in round or square brackets
        return _ordered(_vector(A, matrix=True), _vector(B, matrix=True), deadline)
    if {A[0], B[0]} <= {"interval", "tuple"}:  # 2 < x <= 5 against (2, 5]: brackets and ends
        return len(A[3]) == len(B[3]) == 2 and A[1:3] == B[1:3] and _ordered(A[3], B[3], deadline)
    if A[0] != B[0]:
        return False
    kind = A[0]
    if kind == "tuple":
        return A[1:3] == B[1:3] and _ordered(A[3], B[3], deadline)
    if kind == "union":
        return _unordered(A[1], B[1], deadline)
    if kind == "matrix":
        return [len(r) for r in A[1]] == [len(r) for r in B[1]] and \
            _ordered([c for r in A[1] for c in r], [c for r in B[1] for c in r], deadline)
    return _same_leaf(a, b, deadline)


def _vector(S, matrix=False):
    """The entries of a tuple in round brackets (square ones too against a matrix), a list, or a matrix of
    one row or column; else None (an interval is not a vector)."""
    if S[0] == "tuple":
        return S[3] if S[1:3] == ("(", ")") or (matrix and S[1:3] == ("[", "]")) else None
    if S[0] == "list":
        return S[1]
    if S[0] == "matrix" and (len(S[1]) == 1 or all(len(row) == 1 for row in S[1])):
        return [c for row in S[1] for c in row]
    return None


def _named(items):
    """{name: value} when every item is `name = value` with a different name (x = 2, y = 5), else None."""
    named = {}
    for item in items:
        S = _shape(item)
        if S[0] != "eq" or len(S[1]) != 2 or not _is_name(S[1][0]):
            return None
        named[_name_key(S[1][0])] = S[1][1]
    return named if len(named) == len(items) else None


def _name_key(name):
    return re.sub(r"[\s{}]", "", name)           # x_{1} is x_1


def _same_bag(xs, ys, deadline):
    """A response's list against a gold's. Unordered, unless the gold names each value (x = 2, y = 5): then
    the response names the same variables with the same values, or lists the bare values in the gold's order
    (a mix, a repeated name or an unknown one is neither)."""
    gold = _named(ys) if len(ys) > 1 else None
    if gold is None:
        return _unordered(xs, ys, deadline)
    mine = _named(xs)
    if mine is not None:
        return mine.keys() == gold.keys() and all(_same(mine[k], gold[k], deadline) for k in gold)
    return not any(_shape(x)[0] == "eq" for x in xs) and _ordered(xs, list(gold.values()), deadline)


def _ordered(xs, ys, deadline):
    return xs is not None and ys is not None and len(xs) == len(ys) and \
        all(_same(x, y, deadline) for x, y in zip(xs, ys))


def _value(parts, is_gold):
    """The value an equation names, or None when the equation itself is the answer.

    A gold answer names a value as `name = value` (y = 2x + 1, f(x) = x^2, AB = 4, (p, q) = (3, 2)) or as the
    end of a chain (z = 1 + 1 = 2); gold x + y = 5 or 7 = 11a + c is an equation, and only an equation
    matches it. A response names the last part of its chain (x = 5, 2 + 3 = 5, \lim ... = 1): what is read is
    one value, so writing more parts cannot hedge."""
    if not is_gold or len(parts) > 2 or _is_name(parts[0]):
        return parts[-1]
    return None


def _same_equation(A, a, B, b, deadline):
    """A response (A, its text a) against a gold answer (B, b), one of them an equation."""
    gold = _value(B[1], True) if B[0] == "eq" else b
    if A[0] != "eq":                              # 5 against y = 5
        return gold is not None and _same(a, gold, deadline)
    names = sorted((A[1][0], B[1][0]), key=lambda n: n != "y") if B[0] == "eq" else ()
    if names and all(map(_is_name, names)) and _name_key(names[0]) != _name_key(names[1]) and \
            not (names[0] == "y" and re.fullmatch(_SYMBOL + r"\(.*\)", names[1])):
        return False                              # b = 5 against a = 5: another name (but y = ... is f(x) = ...)
    if gold is not None and (B[0] != "eq" or len(A[1]) > 2 or _is_name(A[1][0])) and \
            _same(A[1][-1], gold, deadline):
        return True                               # x = 5 against 5; y = 3 + 2x against y = 2x + 3
    if B[0] != "eq" or len(A[1]) != 2 or len(B[1]) != 2:
        return False
    (al, ar), (bl, br) = A[1], B[1]               # two equations: the same up to a nonzero factor
    codes = [_code(side) for side in (al, ar, bl, br)]
    if None in codes:
        return (_same(al, bl, deadline) and _same(ar, br, deadline)) or \
            (_same(al, br, deadline) and _same(ar, bl, deadline))
    x, y = f"({codes[0]})-({codes[1]})", f"({codes[2]})-({codes[3]})"
    return not (_risky(x) or _risky(y)) and _sympy_says("eq", x, y, deadline)


_SYMPY_REL = {"<": "Lt", "\\le": "Le", "<=": "Le", ">": "Gt", "\\ge": "Ge", ">=": "Ge", "\\ne": "Ne"}


def _set_code(S):
    """sympy code for a relation, an interval, a union or a finite set (shapes), or None."""
    if S[0] == "rel":
        codes = [_code(p) for p in S[1]]
        if None in codes:
            return None
        rels = [f"{_SYMPY_REL[op]}({codes[k]},{codes[k + 1]})" for k, op in enumerate(S[2])]
        return rels[0] if len(rels) == 1 else f"And({','.join(rels)})"
    if S[0] in ("tuple", "interval") and len(S[3]) == 2:
        lo, hi = _code(S[3][0]), _code(S[3][1])
        return None if None in (lo, hi) else f"Interval({lo},{hi},{S[1] == '('},{S[2] == ')'})"
    if S[0] in ("union", "set", "list"):
        parts = [_set_code(_shape(p)) for p in S[1]] if S[0] == "union" else \
            [_code(p) for p in S[1]]
        if None in parts:
            return None
        return f"Union({','.join(parts)})" if S[0] == "union" else f"FiniteSet({','.join(parts)})"
    if S[0] == "leaf" and S[1] == "\\emptyset":
        return "EmptySet"
    return None


def _same_relation(A, B, deadline):
    """A relation that does not isolate one name (-x > -1, 2x + 1 <= 5, a < b) against a relation or a set:
    the same set of solutions (one variable), or the same inequality up to a positive factor (several)."""
    if A[0] == B[0] == "rel" and len(A[2]) == len(B[2]):
        pa, oa = A[1], [{"<=": "\\le", ">=": "\\ge"}.get(op, op) for op in A[2]]
        pb, ob = B[1], [{"<=": "\\le", ">=": "\\ge"}.get(op, op) for op in B[2]]
        if oa == ob and all(_same(x, y, deadline) for x, y in zip(pa, pb)):
            return True                           # written the same way
    x, y = _set_code(A), _set_code(B)
    return x is not None and y is not None and not (_risky(x) or _risky(y)) and _sympy_says("rel", x, y, deadline)


def _text_key(s):
    """Text compared as text: case and spaces aside, and a one-word subscript or power unbraced (4210_{5})."""
    return re.sub(r"([_^])\{(\w+)\}", r"\1\2", re.sub(r"\s", "", _key(s))).lower()


def _same_leaf(a, b, deadline):
    ca, cb = _code(a), _code(b)
    if (ca is None) != (cb is None):
        return False                              # math against text: only an exact copy (done) counts
    if ca is None:
        ta, tb = _text_key(a), _text_key(b)
        if ta == tb:
            return True
        # 204_5 against 204: the base subscript is the question's, the digits are the answer
        base = re.compile(r"(\w+)_\{?\d+\}?")
        ma, mb = base.fullmatch(ta), base.fullmatch(tb)
        return bool((ma and ma[1] == tb) or (mb and mb[1] == ta))
    ra, rb = _rational(ca), _rational(cb)
    if ra is not None and rb is not None:
        return ra == rb                           # the common path: exact, no subprocess
    if _risky(ca) or _risky(cb):
        return False
    return _sympy_says("same", ca, cb, deadline)


# ----------------------------------------------------------------------------------------------------
# 4. A small LaTeX -> Python/sympy code parser. Code uses ints, + - * / **, names from the tables
# below and v_<name> symbols only, so it is safe to hand to sympy's parser and to walk with ast.

_TOKEN = re.compile(r"\s*(\d+(?:\.\d*)?(?:[eE][-+]?\d+(?![\d.]))?|\.\d+|\\[a-zA-Z]+|\\.|[a-zA-Z]|\S)")
_FUNCS = {"\\sin": "sin", "\\cos": "cos", "\\tan": "tan", "\\cot": "cot", "\\sec": "sec", "\\csc": "csc",
          "\\arcsin": "asin", "\\arccos": "acos", "\\arctan": "atan", "\\sinh": "sinh", "\\cosh": "cosh",
          "\\tanh": "tanh", "\\ln": "log", "\\log": "log", "\\exp": "exp"}
_CONSTS = {"\\pi": "pi", "\\infty": "oo", "\\inf": "oo", "e": "E", "i": "I"}
_GREEK = {"\\alpha", "\\beta", "\\gamma", "\\delta", "\\theta", "\\phi", "\\varphi", "\\lambda", "\\mu",
          "\\sigma", "\\omega", "\\rho", "\\tau", "\\epsilon", "\\varepsilon"}
# A name (for 3.): a variable (x, x_1, a_{10}, \theta) or a function's value (f(x), W(n)); points, segments
# and angles (AB, |AB|, \angle ABC); and ratios or tuples of names (A:B, \frac{NO}{BO}, (p, q)).
_SYMBOL = r"(?:[a-zA-Z]|\\(?:%s))(?:_\{?\w+\}?)?" % "|".join(g[1:] for g in _GREEK)
_ONE_NAME = r"(?:%s(?:\([^()]*\))?|[A-Z]{2,4}|\|[A-Z]{1,4}\||\\angle\s*[A-Z]{1,3}|\\overline\{[A-Z]{2}\})" % _SYMBOL
_NAME = re.compile(r"{0}|{0}\s*[:/]\s*{0}|\\frac\{{{0}\}}\{{{0}\}}|\(\s*{0}(?:\s*,\s*{0})+\s*\)".format(_ONE_NAME))


def _is_name(s):
    return bool(_NAME.fullmatch(s.strip()))
_OPENERS = {"(": ")", "{": "}", "[": "]"}
_ROUNDING = {"\\lfloor": ("\\rfloor", "floor"), "\\lceil": ("\\rceil", "ceiling")}


class _NoParse(Exception):
    pass


def _number_code(t):
    m = re.fullmatch(r"(\d*)\.?(\d*)(?:[eE]([-+]?\d+))?", t)
    whole, frac, exp = m.group(1), m.group(2), m.group(3)
    try:
        code = str(int(whole + frac or "0"))      # int() also refuses absurdly long digit strings
    except ValueError:
        raise _NoParse
    if frac:
        code = f"({code}/{10 ** len(frac)})"      # decimals stay exact: 1.5 -> 15/10
    return f"({code}*10**({int(exp)}))" if exp else code


def _starts_atom(t):
    return t is not None and (t[0].isdigit() or t[0] == "." or (len(t) == 1 and t.isalpha()) or
                              t in ("(", "{", "\\frac", "\\sqrt", "\\binom") or t in _ROUNDING or
                              t in _FUNCS or t in _CONSTS or t in _GREEK)


@lru_cache(maxsize=1 << 14)
def _code(s):
    """Python code for a LaTeX expression, or None for text and anything this parser does not know."""
    if len(s) > MAX_ANSWER_CHARS or re.search(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}", s):
        return None                               # words are text, not a product of letters
    toks = _TOKEN.findall(s)
    pos = 0

    def peek():
        return toks[pos] if pos < len(toks) else None

    def take(expected=None):
        nonlocal pos
        t = peek()
        if t is None or (expected is not None and t != expected):
            raise _NoParse
        pos += 1
        return t

    def expr():
        out = term()
        while peek() in ("+", "-"):
            out = f"{out}{take()}{term()}"
        return f"({out})"

    def term():
        start = pos
        out = factor()
        while True:
            bare = pos - start == 1 and toks[start][:1] in "0123456789."   # the factor just read is one number
            t = peek()
            if t in ("*", "\\cdot", "\\times"):
                take()
                start = pos
                out = f"{out}*{factor()}"
            elif t in ("/", "\\div"):
                take()
                start = pos
                out = f"{out}/{factor()}"
            elif _starts_atom(t):                 # implicit multiplication: 2x, 3\sqrt{2}, (a+b)(a-b), 2^6 3^5
                if bare and t[0] in "0123456789.":
                    raise _NoParse                # but two bare numbers side by side are no product: 11 6/6
                start = pos
                out = f"{out}*{factor()}"
            else:
                return out

    def factor():
        if peek() in ("-", "+"):
            sign = take()
            return f"(-{factor()})" if sign == "-" else factor()
        base = postfix()
        if peek() == "^":
            take()
            if peek() is not None and peek()[0].isdigit():   # z^17 means z^{17}, as its writer meant
                return f"({base})**({_number_code(take())})"
            return f"({base})**({argument()})"
        return base

    def postfix():
        out = atom()
        while peek() == "!":
            take()
            out = f"factorial({out})"
        return out

    def argument():                               # a macro argument: {group} or a single token
        nonlocal pos
        t = peek()
        if t == "{":
            take()
            out = expr()
            take("}")
            return out
        if t is not None and t.isdigit() and len(t) > 1:   # \frac12: one digit is the argument
            toks[pos] = t[1:]
            return t[0]
        return atom()

    def atom():
        t = take()
        if t[0].isdigit() or t[0] == ".":
            return _number_code(t)
        if t in _OPENERS:
            out = expr()
            take(_OPENERS[t])
            return out
        if t == "|":
            out = expr()
            take("|")
            return f"Abs({out})"
        if t in _ROUNDING:                        # \lfloor x \rfloor, \lceil x \rceil
            closer, name = _ROUNDING[t]
            out = expr()
            take(closer)
            return f"{name}({out})"
        if t == "\\frac":
            return f"(({argument()})/({argument()}))"
        if t == "\\binom":
            return f"binomial({argument()},{argument()})"
        if t == "\\sqrt":
            if peek() == "[":
                take()
                n = expr()
                take("]")
                return f"root({argument()},{n})"
            return f"sqrt({argument()})"
        if t in _FUNCS:
            base = power = None
            if t == "\\log" and peek() == "_":
                take()
                base = argument()
            if peek() == "^":                     # \sin^2 x is (sin x)^2
                take()
                power = argument()
            if peek() in _OPENERS:
                arg = atom()
            else:                                 # \cot x, \sin 2x: the run of factors up to an operator
                arg = factor()
                while _starts_atom(peek()) and peek() not in _FUNCS:
                    arg = f"{arg}*{factor()}"
            call = f"{_FUNCS[t]}({arg}" + (f",{base})" if base else ")")
            return f"({call})**({power})" if power else call
        if t in _CONSTS and peek() != "_":
            return _CONSTS[t]
        if t in _GREEK:
            return "v_" + t[1:]
        if len(t) == 1 and t.isalpha():
            if peek() == "_":                     # x_1, a_{10}: one symbol
                take()
                sub = take()
                if sub == "{":
                    sub = take()
                    take("}")
                if not sub.isalnum():
                    raise _NoParse
                return f"v_{t}_{sub}"
            return "v_" + t
        raise _NoParse

    try:
        out = expr()
        return out if pos == len(toks) else None
    except (_NoParse, RecursionError):
        return None


# ----------------------------------------------------------------------------------------------------
# 5. Exact rationals in this process, and the guard that decides what sympy may see

class _NotRational(Exception):
    pass


class _TooBig(_NotRational):
    pass


def _exact(node, budget=None):
    """Value of an ast node as a Fraction, if it is built from integers with + - * /, small powers, factorials
    and binomials. _TooBig as soon as a value passes MAX_EXACT_BITS (5000! * 5000! * ... is refused, not
    built), or the bits of all the values computed pass EXACT_WORK_BITS (many large terms)."""
    budget = [EXACT_WORK_BITS] if budget is None else budget
    v = _exact_value(node, budget)
    bits = max(v.numerator.bit_length(), v.denominator.bit_length())
    budget[0] -= bits
    if bits > MAX_EXACT_BITS or budget[0] < 0:
        raise _TooBig
    return v


def _exact_value(node, budget):
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return Fraction(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _exact(node.operand, budget)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("floor", "ceiling") and len(node.args) == 1:
        v = _exact(node.args[0], budget)
        return Fraction(math.floor(v) if node.func.id == "floor" else math.ceil(v))
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("factorial", "binomial"):
        args = [_exact(arg, budget) for arg in node.args]  # 1/300! is exact: no evaluation can make it 1/301!
        if all(v.denominator == 1 and 0 <= v <= MAX_FACTORIAL for v in args):
            if node.func.id == "factorial" and len(args) == 1:
                return Fraction(math.factorial(int(args[0])))
            if node.func.id == "binomial" and len(args) == 2:
                return Fraction(math.comb(int(args[0]), int(args[1])))
    if isinstance(node, ast.BinOp):
        a, b = _exact(node.left, budget), _exact(node.right, budget)
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            return a * b
        if isinstance(node.op, ast.Div) and b != 0:
            return a / b
        if isinstance(node.op, ast.Pow) and b.denominator == 1 and abs(b) <= 10_000 and (a != 0 or b >= 0):
            if max(a.numerator.bit_length(), a.denominator.bit_length()) * abs(b) > MAX_EXACT_BITS:
                raise _TooBig
            return a ** int(b)
    raise _NotRational


@lru_cache(maxsize=1 << 14)
def _rational(code):
    try:
        return _exact(ast.parse(code, mode="eval").body)
    except (_NotRational, SyntaxError, RecursionError, ValueError, MemoryError):
        return None


@lru_cache(maxsize=1 << 14)
def _risky(code):
    """True for what could run away in sympy: long code, towers, huge powers, factorials or products."""
    if len(code) > 2000:
        return True
    try:
        tree = ast.parse(code, mode="eval")
        nodes = list(ast.walk(tree))
        _exact(tree.body)
    except _TooBig:
        return True                               # an exact value too large to build here is too large there
    except _NotRational:
        pass
    except (SyntaxError, RecursionError, ValueError, MemoryError):
        return True
    if len(nodes) > 600:
        return True
    for node in nodes:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            if any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow) for n in ast.walk(node.right)):
                return True                       # 2^{3^{4}}: a tower
            try:
                e = _exact(node.right)
            except _NotRational:
                continue                          # symbolic exponent such as 2^n
            try:
                b = _exact(node.left)
                bits = max(b.numerator.bit_length(), b.denominator.bit_length())
            except _NotRational:
                bits = 64                         # x^e: keep polynomial degrees modest
            if abs(e) > 10_000 or bits * abs(e) > MAX_EXACT_BITS:
                return True
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("factorial", "binomial"):
            for arg in node.args:
                if any(isinstance(n, ast.Call) for n in ast.walk(arg)):
                    return True                   # (n!)!
                try:
                    if abs(_exact(arg)) > MAX_FACTORIAL:
                        return True
                except _NotRational:
                    pass
    return False


# ----------------------------------------------------------------------------------------------------
# 6. The sympy worker: a separate process, started lazily, reused, killed and replaced on a hang.
#
# sympy runs in a separate worker process with a hard wall-clock limit: `signal.alarm` only works in
# the main thread and cannot interrupt a bignum computation, so the parent waits with a timeout and
# kills the worker if it does not answer. Before that, _risky refuses towers of exponents, huge
# powers and factorials and very long expressions outright. A timeout counts as "not equal".
# A plain subprocess rather than multiprocessing: spawn/forkserver re-import the parent's __main__ in
# the child (a trainer script would import torch there too), and fork is unsafe once torch threads run.

_worker = None
_worker_pid = None      # the process that owns the worker; a forked child starts its own
_worker_ready = False
_worker_lock = threading.Lock()
_results = {}           # (op, code_a, code_b) -> bool, for answers that repeat across a batch


def _start_worker():
    global _worker, _worker_pid, _worker_ready
    _worker = subprocess.Popen([sys.executable, "-u", os.path.abspath(__file__), "--sympy-worker"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    _worker_pid, _worker_ready = os.getpid(), False


def _stop_worker():
    global _worker
    if _worker is not None and _worker_pid == os.getpid():
        for pipe in (_worker.stdin, _worker.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        _worker.kill()
        _worker.wait()
    _worker = None


atexit.register(_stop_worker)


def _read_line(timeout):
    fd, buf, end = _worker.stdout.fileno(), b"", time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = end - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            return None                           # the worker died
        buf += chunk
    return buf.strip()


def _ask_sympy(op, a, b, deadline):
    """True/False from the worker; None when there was no time (then the answer is not cached)."""
    global _worker_ready
    with _worker_lock:
        if _worker is None or _worker_pid != os.getpid() or _worker.poll() is not None:
            _start_worker()
        if not _worker_ready:
            started = time.monotonic()
            if _read_line(WORKER_STARTUP_S) != b"ready":
                _stop_worker()
                return None
            _worker_ready = True
            deadline[0] += time.monotonic() - started   # waiting for the import is not sympy time
        budget = deadline[0] - time.monotonic()
        if budget < 0.02:
            return None
        try:
            _worker.stdin.write((json.dumps([op, a, b, budget]) + "\n").encode())
            _worker.stdin.flush()
            reply = _read_line(budget + WORKER_GRACE_S)
        except OSError:
            reply = None
        if reply is None:                         # hung in C code, or died: replace it now, so the
            _stop_worker()                        # new one imports sympy while we get on with training
            _start_worker()
            return None
        return {b"1": True, b"0": False}.get(reply)   # b"t": it stopped itself at the budget


def _sympy_says(op, a, b, deadline):
    if (op, a, b) not in _results:
        verdict = _ask_sympy(op, a, b, deadline)
        if verdict is None:
            return False
        if len(_results) > 100_000:
            _results.clear()
        _results[(op, a, b)] = verdict
    return _results[(op, a, b)]


EXACT_DIGITS = 200      # a difference that is 0 to this many digits is 0 (sqrt(3)+sqrt(2) = sqrt(5+2sqrt(6)))
POINTS = 4              # points an expression with variables is checked at


def _worker_main():
    """Loop of the worker process: read [op, code_a, code_b, seconds], write 1, 0 or t."""
    import signal
    import sympy
    from sympy.parsing.sympy_parser import parse_expr, standard_transformations

    def point(x, y, trial):
        """Exact values for the variables of x and y at one of POINTS points. Each value is drawn from a hash
        of the two expressions, so no answer can be built to vanish at the points it will be checked at; each
        variable is negative at one point of each pair and positive at the other (sqrt(x^2) is not x), small
        at the first pair and large at the second (|x - 5| is not 5 - x)."""
        syms = sorted(x.free_symbols | y.free_symbols, key=str)
        seed = hashlib.sha256(f"{sympy.srepr(x)}|{sympy.srepr(y)}|{trial}".encode()).digest()
        out = {}
        for k, s in enumerate(syms):
            r = int.from_bytes(seed[2 * (k % 16):2 * (k % 16) + 2], "big") / 65536
            sign = -1 if (trial + k) % 2 == 0 else 1
            size = 0.3 + 3 * r if trial < 2 else 3 * 10 ** (2.5 * r)     # |v| in [0.3, 3.3), then [3, 950)
            out[s] = sign * sympy.Rational(round(size * 1000), 1000) + sympy.Rational(k, 7919)
        return out

    def values(x, y, trial):
        """x and y at one point, 40 digits; None where either is not a finite number."""
        at = point(x, y, trial)
        vx, vy = x.xreplace(at).evalf(40), y.xreplace(at).evalf(40)
        for v in (vx, vy):
            if not all(part.is_Number and part.is_finite for part in v.as_real_imag()):
                return None
        return vx, vy

    def digits(e):
        """Decimal digits of the largest or smallest number written in e (10^{-300}, 1/300!, e^{-1000})."""
        need = 0
        for a in sympy.preorder_traversal(e):
            if a.is_Rational:
                need = max(need, len(str(abs(a.p))), len(str(a.q)))
            elif isinstance(a, sympy.exp) and a.args[0].is_number:
                need = max(need, int(abs(complex(a.args[0].evalf(15))) / 2.3) + 1)
            elif a.is_Pow and a.base.is_number and a.exp.is_number:
                base = abs(complex(a.base.evalf(15))) or 1.0
                need = max(need, int(abs(complex(a.exp.evalf(15))) * abs(math.log10(base))) + 1)
        return need

    def differ(x, y, trial):
        """Do x and y differ at one point? The difference is evaluated, not the two values: sympy raises the
        working precision until the digits it returns are right, so 1/300! - 1/301! and 5 + pi/10^100 - 5
        are nonzero. A difference that stays 0 to EXACT_DIGITS digits, and to twice the digits of the
        numbers written in x and y (sqrt(25 + 10^{-300}) is not 5), counts as 0. None: no number."""
        at = point(x, y, trial)
        maxn = max(EXACT_DIGITS, 2 * max(digits(x), digits(y)) + 50)
        try:
            vx, vy = (e.xreplace(at).evalf(30, strict=True, maxn=maxn) for e in (x, y))
        except sympy.core.evalf.PrecisionExhausted:
            return None                           # no digits to compare
        if not all(part.is_Number and part.is_finite for v in (vx, vy) for part in v.as_real_imag()):
            return None
        try:
            return bool((x - y).xreplace(at).evalf(30, strict=True, maxn=maxn) != 0)
        except sympy.core.evalf.PrecisionExhausted:   # the difference is 0 to maxn digits, or sympy could not
            return bool(abs(vx - vy) > sympy.Float("1e-25") * max(abs(vx), abs(vy)))   # subtract: sin(10^4000) - 5

    def same(x, y):
        if x == y:
            return True
        verdicts = [differ(x, y, t) for t in range(POINTS if (x.free_symbols | y.free_symbols) else 1)]
        if any(verdicts):
            return False                          # the quick, common "no"
        kinks = (sympy.floor, sympy.ceiling, sympy.Abs, sympy.sign, sympy.Max, sympy.Min, sympy.Piecewise)
        steps = (x.free_symbols | y.free_symbols) and (x.has(*kinks) or y.has(*kinks))
        if verdicts and all(v is False for v in verdicts) and not steps:
            return True                           # the same value at every point
        # No number to compare; or pieces, which agree at a few points without being equal (floor(n/2) and
        # floor((n+1)/2); |n - 100| + n and 100 below n = 100): only an exact simplification says equal.
        return sympy.simplify(x - y) == 0

    def proportional(x, y, positive):
        """x = c*y for a constant c != 0 (c > 0 when positive), checked at the POINTS points."""
        ratios = []
        for t in range(POINTS):
            v = values(x, y, t)
            if v is None or abs(v[1]) < 1e-12:
                continue
            ratios.append((v[0] / v[1]).evalf(40))
        if len(ratios) < 2 or abs(ratios[0]) <= 1e-12 or (positive and not (ratios[0].is_real and ratios[0] > 0)):
            return False
        return all(abs(r - ratios[0]) <= 1e-20 * abs(ratios[0]) for r in ratios)

    def same_equation(x, y):                      # x, y are lhs - rhs: equal up to a nonzero factor
        return same(x, y) or same(x, -y) or proportional(x, y, positive=False)

    def as_set(e):
        """The real solutions of a relation in one variable (an And of them: the intersection), or a set."""
        if isinstance(e, sympy.Set):
            return e
        if isinstance(e, sympy.And):
            out = sympy.S.Reals
            for arg in e.args:
                out = out.intersect(as_set(arg))
            return out
        if not isinstance(e, sympy.core.relational.Relational) or len(e.free_symbols) != 1:
            raise ValueError("not a relation in one variable")
        solved = sympy.solveset(e, next(iter(e.free_symbols)), domain=sympy.S.Reals)
        if isinstance(solved, sympy.ConditionSet):
            raise ValueError("unsolved")
        return solved

    def same_relation(x, y):
        """Relations and sets: one variable, the same solutions; several, the same inequality."""
        Rel = sympy.core.relational.Relational
        if isinstance(x, Rel) and isinstance(y, Rel) and len(x.free_symbols | y.free_symbols) > 1:
            x, y = [r.reversed if isinstance(r, (sympy.Gt, sympy.Ge)) else r for r in (x, y)]
            return type(x) is type(y) and proportional(x.lhs - x.rhs, y.lhs - y.rhs,
                                                       positive=not isinstance(x, sympy.Ne))
        a, b = as_set(x), as_set(y)
        return a == b or a.symmetric_difference(b) == sympy.S.EmptySet

    def on_alarm(*_):
        raise TimeoutError

    signal.signal(signal.SIGALRM, on_alarm)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for n, line in enumerate(sys.stdin):
        op, a, b, seconds = json.loads(line)
        reply = "0"
        try:
            signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
            x = parse_expr(a, transformations=standard_transformations)
            y = parse_expr(b, transformations=standard_transformations)
            reply = "1" if {"eq": same_equation, "rel": same_relation, "same": same}[op](x, y) else "0"
        except TimeoutError:
            reply = "t"
        except Exception:
            reply = "0"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if reply == "t" or n % 1000 == 999:
            sympy.core.cache.clear_cache()       # an interrupted computation may leave odd cache entries
        sys.stdout.write(reply + "\n")
        sys.stdout.flush()


# ----------------------------------------------------------------------------------------------------
# Command line (and the worker's entry point)

if __name__ == "__main__":
    if sys.argv[1:] == ["--sympy-worker"]:
        _worker_main()
    else:
        import argparse
        p = argparse.ArgumentParser(description="Grade one response against a gold answer.",
                                    epilog="python reward.py --file response.txt 42   (or --file - to read stdin)")
        p.add_argument("output", nargs="?", help="a model response or a bare answer (or give --file)")
        p.add_argument("gold", help="the gold answer (LaTeX, a number or text)")
        p.add_argument("--file", help="read the response from this file, or from stdin with -")
        p.add_argument("--strict", action="store_true", help="grade \\boxed{} answers only")
        args = p.parse_args()
        if (args.output is None) == (args.file is None):
            sys.exit("error: give the response as the first argument or with --file (one of the two)")
        try:
            output = args.output if args.file is None else \
                sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
        except (OSError, UnicodeDecodeError) as e:
            sys.exit(f"error: --file {args.file}: {getattr(e, 'strerror', None) or e}")
        found = extract_answer(output, strict=args.strict)
        if found is not None and len(found) > 300:   # a 100,000-digit answer is not for the terminal
            found = f"{found[:150]} ... {found[-50:]} ({len(found)} characters)"
        print(f"extracted: {found!r}")
        print(f"reward: {math_reward(output, args.gold, strict=args.strict)}")
