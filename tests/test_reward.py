"""Labelled cases for reward.py. Each label is a human grader's verdict, written before running the code."""
import os
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import reward  # noqa: E402
from reward import extract_answer, math_reward, verify  # noqa: E402

# ---------------------------------------------------------------------------------------------------
# 1. Extraction

EXTRACT = [
    ("The sum is $\\boxed{42}$.", "42"),
    ("so \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("nested \\boxed{\\frac{\\sqrt{3}}{2}} done", "\\frac{\\sqrt{3}}{2}"),
    ("first \\boxed{1} then \\boxed{2}", "2"),
    ("\\fbox{7}", "7"),
    ("so the answer is \\boxed 7 and", "7"),
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
    ("\\boxed{}", None),
    ("\\boxed{ }", None),
    ("", None),
    ("I could not solve it.", None),
    ("The final answer is 12.", "12"),
    ("The final answer is $\\frac{3}{4}$. I hope it is correct.", "\\frac{3}{4}"),
    ("so the answer is 3.5.", "3.5"),
    ("Answer: 17", "17"),
    ("**Answer:** 9", "9"),
    ("She pays 5 + 3 = 8 dollars.\n#### 8", "8"),
    ("#### 1,000", "1,000"),
    ("First 3 apples, then 4 more, so 7 apples in total after all of that happened to her.", "7"),
    ("The price went from 10 to 12.5 over the year, so in the end she paid more than before", "12.5"),
    ("\\frac{1}{2}", "\\frac{1}{2}"),
    ("18 dollars", "18 dollars"),
    ("\\boxed{\\boxed{5}}", "\\boxed{5}"),
    ("unclosed \\boxed{5", None),
]


@pytest.mark.parametrize("text,expected", EXTRACT)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_strict_extraction_keeps_only_boxes():
    assert extract_answer("The answer is 5.", strict=True) is None
    assert extract_answer("#### 5", strict=True) is None
    assert extract_answer("5", strict=True) is None
    assert extract_answer("so \\boxed{5}.", strict=True) == "5"
    assert verify("The answer is 5.", "5") and not verify("The answer is 5.", "5", strict=True)
    assert verify("\\boxed{5}", "5", strict=True)
    assert math_reward("7", "7", strict=True) == 0.0


# ---------------------------------------------------------------------------------------------------
# 2-5. Equivalence: (model output, gold answer, a careful grader's verdict)

NORMALISATION = [
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "(3, \\frac{\\pi}{2})", True),
    ("\\boxed{\\displaystyle \\frac{1}{2}}", "\\frac12", True),
    ("\\boxed{\\dfrac{3}{4}}", "\\frac{3}{4}", True),
    ("\\boxed{\\tfrac{3}{4}}", "0.75", True),
    ("\\boxed{\\cfrac{1}{3}}", "\\frac13", True),
    ("\\boxed{\\frac 59}", "\\frac{5}{9}", True),
    ("\\boxed{\\frac9{19}}", "\\frac{9}{19}", True),
    ("\\boxed{\\sqrt3}", "\\sqrt{3}", True),
    ("\\boxed{11\\sqrt2}", "11\\sqrt{2}", True),
    ("\\boxed{\\sqrt{2}\\!\\cdot\\!3}", "3\\sqrt2", True),
    ("\\boxed{1,000}", "1000", True),
    ("\\boxed{1{,}000}", "1000", True),
    ("\\boxed{1\\,000}", "1000", True),
    ("\\boxed{10080}", "10,\\!080", True),
    ("\\boxed{11111111100}", "11,\\! 111,\\! 111,\\! 100", True),
    ("\\boxed{32348}", "\\$32,\\!348", True),
    ("\\boxed{\\$18.90}", "18.9", True),
    ("\\boxed{18.90}", "\\$18.90", True),
    ("\\boxed{15 \\text{ cm}^2}", "15", True),
    ("\\boxed{15}", "15\\mbox{ cm}^2", True),
    ("\\boxed{864}", "864 \\mbox{ inches}^2", True),
    ("\\boxed{5.4}", "5.4 \\text{ cents}", True),
    ("The answer is 18 dollars.", "18", True),
    ("\\boxed{4 \\text{ square units}}", "4", True),
    ("\\boxed{106^\\circ}", "106", True),
    ("\\boxed{106}", "106^\\circ", True),
    ("\\boxed{30^{\\circ}}", "30", True),
    ("\\boxed{45°}", "45^\\circ", True),
    ("\\boxed{\\frac{270}{7}}", "\\frac{270}7\\text{ degrees}", True),
    ("\\boxed{25\\%}", "25", True),
    ("\\boxed{25}", "25\\%", True),
    ("\\boxed{x = 5}", "5", True),
    ("\\boxed{5}", "x=5", True),
    ("\\boxed{−3}", "-3", True),
    ("\\boxed{2π}", "2\\pi", True),
    ("\\boxed{∞}", "\\infty", True),
    ("\\boxed{1.5e3}", "1500", True),
    ("\\boxed{1.5\\times10^{3}}", "1500", True),
    ("\\boxed{6.72 \\times 10^{-5}}", ".0000672", True),
    ("\\boxed{2\\frac{1}{2}}", "\\frac{5}{2}", True),
    ("\\boxed{137.5}", "137 \\frac{1}{2}", True),
    ("\\boxed{1\\frac45}", "1.8", True),
    ("\\boxed{-2\\frac{1}{2}}", "-2.5", True),
    ("\\boxed{2n-1}", "2n-1", True),
    ("\\boxed{2n-2}", "2n-1", False),
    ("\\boxed{2k+2}", "2k+2", True),
    ("\\boxed{2k}", "2k+2", False),
    ("\\boxed{3R^2}", "3R^2", True),
    ("\\boxed{\\text{Evelyn}}", "\\text{Evelyn}", True),
    ("\\boxed{Evelyn}", "\\text{Evelyn}", True),
    ("\\boxed{\\text{Navin}}", "\\text{Evelyn}", False),
    ("\\boxed{\\text{east}}", "\\text{east}", True),
    ("\\boxed{even}", "\\text{even}", True),
    ("\\boxed{odd}", "\\text{even}", False),
    ("\\boxed{x \\in [-2,7]}", "[-2,7]", True),
    ("\\boxed{204_5}", "204_5", True),
    ("\\boxed{4210_5}", "4210_{5}", True),
    ("\\boxed{204_5}", "203_5", False),
    ("\\boxed{.5}", "0.5", True),
    ("\\boxed{18.}", "18", True),
    ("\\boxed{5\\%}", "0.05", True),
]

NUMBERS = [
    ("\\boxed{0.5}", "\\frac{1}{2}", True),
    ("\\boxed{0.333}", "\\frac{1}{3}", False),
    ("\\boxed{0.3333333333}", "\\frac{1}{3}", False),
    ("\\boxed{\\frac{2}{4}}", "\\frac12", True),
    ("\\boxed{-\\frac{24}{25}}", "-\\frac{24}{25}", True),
    ("\\boxed{\\frac{-24}{25}}", "-\\frac{24}{25}", True),
    ("\\boxed{-0.96}", "-\\frac{24}{25}", True),
    ("\\boxed{0.96}", "-\\frac{24}{25}", False),
    ("\\boxed{3/4}", "\\frac{3}{4}", True),
    ("\\boxed{1e309}", "\\infty", False),
    ("\\boxed{10^{309}}", "1e309", True),
    ("\\boxed{2^{10}}", "1024", True),
    ("\\boxed{2^{100}}", "1267650600228229401496703205376", True),
    ("\\boxed{2^{100}}", "1267650600228229401496703205377", False),
    ("\\boxed{5!}", "120", True),
    ("\\boxed{\\binom{5}{2}}", "10", True),
    ("\\boxed{18}", "18.0", True),
    ("\\boxed{18.01}", "18", False),
    ("\\boxed{17}", "18", False),
    ("\\boxed{-5}", "5", False),
    ("\\boxed{007}", "7", True),
    ("#### 42", "42", True),
    ("#### 41", "42", False),
    ("\\boxed{3.21}", "3.21", True),
    ("\\boxed{3.2}", "3.21", False),
    ("\\boxed{326.5}", "\\frac{653}{2}", True),
    ("\\boxed{12\\pi}", "12\\pi", True),
    ("\\boxed{37.7}", "12\\pi", False),
    ("\\boxed{\\frac{20000}{\\pi}}", "\\frac{20000}{\\pi}", True),
    ("\\boxed{20000/\\pi}", "\\frac{20000}{\\pi}", True),
]

SYMBOLIC = [
    ("\\boxed{\\sqrt{8}}", "2\\sqrt{2}", True),
    ("\\boxed{\\sqrt{12}}", "2\\sqrt{2}", False),
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{1}{2}\\sqrt{3}", True),
    ("\\boxed{\\frac{1}{\\sqrt{3}}}", "\\frac{\\sqrt{3}}{3}", True),
    ("\\boxed{\\frac{\\sqrt{2}}{3}}", "\\frac{\\sqrt{3}}{3}", False),
    ("\\boxed{11 + 11\\sqrt{5}}", "11 \\sqrt{5} + 11", True),
    ("\\boxed{1+2\\sqrt3}", "1+2\\sqrt{3}", True),
    ("\\boxed{(x+1)^2}", "x^2+2x+1", True),
    ("\\boxed{(x+1)^2}", "x^2+x+1", False),
    ("\\boxed{ab+2a+5b+10}", "(a+5)(b+2)", True),
    ("\\boxed{-13x+3}", "3-13x", True),
    ("\\boxed{-13x+3}", "13x+3", False),
    ("\\boxed{8n^2+4n+1}", "8n^2 + 4n + 1", True),
    ("\\boxed{x^3+3x-6}", "x^3+3x-6", True),
    ("\\boxed{x^3-3x+6}", "x^3+3x-6", False),
    ("\\boxed{p-q}", "p - q", True),
    ("\\boxed{q-p}", "p - q", False),
    ("\\boxed{\\cot x}", "\\frac{\\cos x}{\\sin x}", True),
    ("\\boxed{\\tan x}", "\\cot x", False),
    ("\\boxed{\\sin^2 x + \\cos^2 x}", "1", True),
    ("\\boxed{e^{i\\pi}}", "-1", True),
    ("\\boxed{\\ln(e^2)}", "2", True),
    ("\\boxed{\\log_2 8}", "3", True),
    ("\\boxed{-2+7i}", "-2 + 7i", True),
    ("\\boxed{7i-2}", "-2 + 7i", True),
    ("\\boxed{-2-7i}", "-2 + 7i", False),
    ("\\boxed{\\frac{11+9a}{20}}", "\\frac{11}{20}+\\frac{9a}{20}", True),
    ("\\boxed{\\frac{\\pi^2}{8}}", "\\frac{\\pi^{2}}{8}", True),
    ("\\boxed{|-3|}", "3", True),
    ("\\boxed{\\sqrt{x^2}}", "x", False),
    ("\\boxed{\\sqrt[3]{27}}", "3", True),
    ("\\boxed{2\\sqrt{113}}", "\\sqrt{452}", True),
    ("\\boxed{x_1 + x_2}", "x_2 + x_1", True),
    ("\\boxed{\\alpha + \\beta}", "\\beta+\\alpha", True),
    ("\\boxed{\\pi}", "3.14", False),
    ("\\boxed{\\pi}", "3.14159265358979323846", False),
    ("\\boxed{x}", "5", False),
    ("\\boxed{5}", "5x", False),
]

STRUCTURES = [
    # tuples are ordered
    ("\\boxed{(15,-29)}", "(15,-29)", True),
    ("\\boxed{(-29,15)}", "(15,-29)", False),
    ("\\boxed{(1,-16,-4,43)}", "(1,-16,-4,43)", True),
    ("\\boxed{(1,-16,-4)}", "(1,-16,-4,43)", False),
    ("\\boxed{\\left(\\frac{3}{2}, -13\\right)}", "\\left( \\frac{3}{2}, -13 \\right)", True),
    ("\\boxed{(1.5, -13)}", "\\left( \\frac{3}{2}, -13 \\right)", True),
    ("\\boxed{3, \\frac{\\pi}{2}}", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    # sets and lists are unordered
    ("\\boxed{\\{1, 2, 3\\}}", "\\{3, 2, 1\\}", True),
    ("\\boxed{-2, 1}", "1,-2", True),
    ("\\boxed{1, -2}", "1,-2", True),
    ("\\boxed{1, 2}", "1,-2", False),
    ("\\boxed{3, 5, 7}", "3, 5, 7", True),
    ("\\boxed{7, 3, 5}", "3, 5, 7", True),
    ("\\boxed{3, 5}", "3, 5, 7", False),
    ("\\boxed{x = 2 \\text{ or } x = -1}", "2, -1", True),
    ("\\boxed{1 + \\sqrt{19}, 1 - \\sqrt{19}}", "1 \\pm \\sqrt{19}", True),
    ("\\boxed{1 \\pm \\sqrt{19}}", "1 - \\sqrt{19}, 1 + \\sqrt{19}", True),
    ("\\boxed{3 + 2\\sqrt{2}}", "3 \\pm 2 \\sqrt{2}", False),
    ("\\boxed{\\{1+\\sqrt5, 1-\\sqrt5, -2\\}}", "\\{1\\pm\\sqrt{5},-2\\}", True),
    ("\\boxed{\\{1+\\sqrt5, -2\\}}", "\\{1\\pm\\sqrt{5},-2\\}", False),
    # intervals keep their bracket types
    ("\\boxed{(-\\infty, 0]}", "(-\\infty, 0]", True),
    ("\\boxed{(-\\infty, 0)}", "(-\\infty, 0]", False),
    ("\\boxed{[-\\infty, 0]}", "(-\\infty, 0]", False),
    ("\\boxed{(3,4]}", "(3,4]", True),
    ("\\boxed{[3,4]}", "(3,4]", False),
    ("\\boxed{\\left(\\frac35,\\frac83\\right]}", "\\left(\\frac{3}{5},\\frac{8}{3}\\right]", True),
    ("\\boxed{(0.6, 8/3]}", "\\left(\\frac{3}{5},\\frac{8}{3}\\right]", True),
    ("\\boxed{(-\\infty, 2) \\cup (3, \\infty)}", "(-\\infty, 2) \\cup (3, \\infty)", True),
    ("\\boxed{(3, \\infty) \\cup (-\\infty, 2)}", "(-\\infty, 2) \\cup (3, \\infty)", True),
    ("\\boxed{(-\\infty, 2] \\cup (3, \\infty)}", "(-\\infty, 2) \\cup (3, \\infty)", False),
    ("\\boxed{(0,9) \\cup (9,36)}", "(0,9) \\cup (9,36)", True),
    ("\\boxed{(0,36)}", "(0,9) \\cup (9,36)", False),
    ("\\boxed{x > 5}", "(5,\\infty)", True),
    ("\\boxed{x \\ge 5}", "(5,\\infty)", False),
    ("\\boxed{x \\geq 5}", "[5,\\infty)", True),
    ("\\boxed{-2 \\le x \\le 7}", "[-2,7]", True),
    ("\\boxed{-2 < x \\le 7}", "[-2,7]", False),
    ("\\boxed{(-\\sqrt{3}, \\sqrt{3})}", "(-\\sqrt{3}, \\sqrt{3})", True),
    # matrices by shape and entries
    ("\\boxed{\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}}",
     "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}", True),
    ("\\boxed{\\begin{bmatrix} -1 & 0 \\\\ 0 & -1 \\end{bmatrix}}",
     "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}", True),
    ("\\boxed{\\begin{pmatrix} -1 & 0 \\\\ 0 & 1 \\end{pmatrix}}",
     "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}", False),
    ("\\boxed{\\begin{pmatrix} -1 & 0 & 0 & -1 \\end{pmatrix}}",
     "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}", False),
    ("\\boxed{\\begin{pmatrix} 0.2 \\\\ -3.6 \\end{pmatrix}}", "\\begin{pmatrix} 1/5 \\\\ -18/5 \\end{pmatrix}", True),
    ("\\boxed{\\begin{pmatrix} -18/5 \\\\ 1/5 \\end{pmatrix}}", "\\begin{pmatrix} 1/5 \\\\ -18/5 \\end{pmatrix}", False),
    ("\\boxed{(-7, 16, 5)}", "\\begin{pmatrix} -7 \\\\ 16 \\\\ 5 \\end{pmatrix}", True),
    ("\\boxed{(-7, 16, 6)}", "\\begin{pmatrix} -7 \\\\ 16 \\\\ 5 \\end{pmatrix}", False),
    # equations and inequalities
    ("\\boxed{y = 2x + 3}", "y = 2x + 3", True),
    ("\\boxed{y=3+2x}", "y = 2x + 3", True),
    ("\\boxed{2x+3}", "y = 2x + 3", True),
    ("\\boxed{2x - y + 3 = 0}", "y = 2x + 3", True),
    ("\\boxed{y = 2x - 3}", "y = 2x + 3", False),
    ("\\boxed{y = -2x}", "y = -2x", True),
    ("\\boxed{2x + y = 0}", "y = -2x", True),
    ("\\boxed{5x - 7y + 11z = -4}", "5x - 7y + 11z + 4 = 0", True),
    ("\\boxed{-5x + 7y - 11z - 4 = 0}", "5x - 7y + 11z + 4 = 0", True),
    ("\\boxed{10x - 14y + 22z + 8 = 0}", "5x - 7y + 11z + 4 = 0", True),
    ("\\boxed{5x - 7y + 11z - 4 = 0}", "5x - 7y + 11z + 4 = 0", False),
    ("\\boxed{a < b}", "b > a", True),
    ("\\boxed{a \\le b}", "b > a", False),
    ("\\boxed{2 + 3 = 5}", "5", True),
]

HEDGING = [
    ("\\boxed{3} or maybe \\boxed{5}", "3", False),
    ("\\boxed{5} ... on reflection \\boxed{3}", "3", False),
    ("first \\boxed{\\frac12}, i.e. \\boxed{0.5}", "\\frac{1}{2}", True),
    ("\\boxed{3} and again \\boxed{3}", "3", True),
    ("\\boxed{3}, \\boxed{5}", "3, 5", True),
    ("\\boxed{3, 5}", "3", False),
    ("\\boxed{3 \\text{ or } 5}", "3", False),
    ("\\boxed{2, 3, 4, 5, 6}", "4", False),
    ("the answer is 3 or 4", "4", False),
    ("\\boxed{A \\text{ or } C}", "C", False),
    ("\\boxed{x = 3 \\text{ or } x = 3}", "3", True),
]

CHOICE = [
    ("\\boxed{C}", "C", True),
    ("\\boxed{(C)}", "C", True),
    ("\\boxed{\\text{(C)}}", "C", True),
    ("\\boxed{\\textbf{(C)}}", "C", True),
    ("\\boxed{\\textbf{(C) }12}", "C", True),
    ("\\boxed{C}", "\\text{(C)}", True),
    ("\\boxed{\\text{(B)}}", "\\text{(C)}", False),
    ("\\boxed{AC}", "C", False),
    ("\\boxed{A, C}", "C", False),
    ("The answer is (E).", "\\text{(E)}", True),
    ("\\boxed{D}", "E", False),
]

MORE = [  # mixed forms: spacing, units, repeating decimals, percent, trig, logs, intervals, vectors
 ("The answer is $\\frac{1}{2}$", "0.5", True),
 ("\\boxed{\\frac{1}{2}} hours", "\\frac12", True),
 ("\\boxed{5cm}", "5", True),
 ("\\boxed{1 000 000}", "1000000", True),
 ("\\boxed{0.\\overline{3}}", "\\frac13", True),
 ("\\boxed{0.1\\overline{6}}", "\\frac16", True),
 ("\\boxed{\\langle 1, 2 \\rangle}", "(1,2)", True),
 ("\\boxed{\\emptyset}", "\\varnothing", True),
 ("\\boxed{\\{\\}}", "\\emptyset", True),
 ("\\boxed{x \\approx 3.14}", "3.14", True),
 ("\\boxed{(-\\infty, \\infty)}", "(-\\infty,\\infty)", True),
 ("\\boxed{\\mathbb{R}}", "(-\\infty,\\infty)", True),
 ("\\boxed{20\\%}", "0.2", True),
 ("\\boxed{0.2}", "20\\%", True),
 ("\\boxed{\\frac{1}{4}}", "25\\%", True),
 ("\\boxed{2^{1/2}}", "\\sqrt2", True),
 ("\\boxed{\\sqrt{-1}}", "i", True),
 ("\\boxed{3+4i}", "4i+3", True),
 ("\\boxed{x^2+y^2=25}", "y^2+x^2=25", True),
 ("\\boxed{x^2+y^2=25}", "x^2+y^2=5", False),
 ("\\boxed{\\pm 2}", "2, -2", True),
 ("\\boxed{2}", "\\pm 2", False),
 ("\\boxed{\\frac{a}{b}}", "a/b", True),
 ("\\boxed{\\frac{a}{b}}", "b/a", False),
 ("\\boxed{\\text{No solution}}", "\\text{no solution}", True),
 ("\\boxed{\\text{Yes}}", "yes", True),
 ("\\boxed{\\text{No}}", "yes", False),
 ("\\boxed{3:00}", "3:00", True),
 ("\\boxed{\\$1.50}", "1.5", True),
 ("\\boxed{1\\text{ and }2}", "1, 2", True),
 ("\\boxed{x=1, y=2}", "(1,2)", True),
 ("\\boxed{x=2, y=1}", "(1,2)", False),
 ("\\boxed{(1,2)}", "(2,1)", False),
 ("\\boxed{\\{1,2\\}}", "\\{2,1\\}", True),
 ("\\boxed{\\frac{3\\sqrt{3}}{4}}", "\\frac{3}{4}\\sqrt{3}", True),
 ("\\boxed{\\sqrt{2}/2}", "\\frac{\\sqrt2}{2}", True),
 ("\\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{1}{\\sqrt2}", True),
 ("\\boxed{\\frac{\\sqrt{2}}{2}}", "0.707", False),
 ("\\boxed{1/3}", "0.33", False),
 ("\\boxed{\\frac{1}{3}}", "0.\\overline{3}", True),
 ("\\boxed{50}", "50\\%", True),
 ("\\boxed{0.5\\%}", "0.005", True),
 ("\\boxed{x^2}", "x^{2}", True),
 ("\\boxed{x^2}", "x^3", False),
 ("\\boxed{\\frac{x+1}{x-1}}", "\\frac{x-1}{x+1}", False),
 ("\\boxed{\\frac{x^2-1}{x-1}}", "x+1", True),
 ("\\boxed{e^{x}}", "\\exp(x)", True),
 ("\\boxed{\\ln 8}", "3\\ln 2", True),
 ("\\boxed{\\log_{2} 8}", "3", True),
 ("\\boxed{\\sin(\\pi/6)}", "\\frac12", True),
 ("\\boxed{\\cos 0}", "1", True),
 ("\\boxed{\\tan\\frac{\\pi}{4}}", "1", True),
 ("\\boxed{\\arctan 1}", "\\frac{\\pi}{4}", True),
 ("\\boxed{\\frac{\\pi}{3}}", "60^\\circ", False),
 ("\\boxed{2 \\cdot 3}", "6", True),
 ("\\boxed{2 \\times 3}", "6", True),
 ("\\boxed{6.0}", "6", True),
 ("\\boxed{6.00001}", "6", False),
 ("\\boxed{-0}", "0", True),
 ("\\boxed{\\infty}", "\\infty", True),
 ("\\boxed{-\\infty}", "\\infty", False),
 ("\\boxed{\\text{(A)}}", "A", True),
 ("\\boxed{A}", "\\textbf{(A)}", True),
 ("\\boxed{(A) and (B)}", "A", False),
 ("So the answer is B.", "B", True),
 ("\\boxed{[1,2]}", "[1,2]", True),
 ("\\boxed{[1,2)}", "[1,2]", False),
 ("\\boxed{(1,2)}", "[1,2]", False),
 ("\\boxed{\\left[1,2\\right]}", "[1,2]", True),
 ("\\boxed{[0, 1] \\cup [2, 3]}", "[2,3] \\cup [0,1]", True),
 ("\\boxed{x<2 \\text{ or } x>3}", "(-\\infty,2)\\cup(3,\\infty)", True),
 ("\\boxed{x > 2}", "x>2", True),
 ("\\boxed{2 < x}", "x>2", True),
 ("\\boxed{x > 3}", "x>2", False),
 ("\\boxed{\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", True),
 ("\\boxed{\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", False),
 ("\\boxed{\\begin{pmatrix}1&3\\\\2&4\\end{pmatrix}}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", False),
 ("\\boxed{\\left(\\begin{matrix}1\\\\2\\end{matrix}\\right)}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True),
 ("\\boxed{12}\\boxed{12}", "12", True),
 ("\\boxed{12}\\boxed{13}", "12", False),
 ("\\boxed{12}\\boxed{13}", "13", False),
 ("The answer is \\boxed{7}. Actually, wait, it is \\boxed{8}.", "8", False),
 ("\\boxed{1,2,3}", "\\{1,2,3\\}", True),
 ("\\boxed{1}", "1,2", False),
 ("\\boxed{6\\sqrt{2}}", "\\sqrt{72}", True),
 ("\\boxed{6\\sqrt{2}}", "8.485", False),
 ("\\boxed{2.5}", "\\frac{5}{2}", True),
 ("\\boxed{5/2}", "2\\frac12", True),
 ("\\boxed{2 1/2}", "2.5", True),
 ("\\boxed{3\\frac{1}{2}}", "3.5", True),
 ("\\boxed{\\frac{7}{2}}", "3\\frac12", True),
 ("\\boxed{12\\text{ m}}", "12", True),
 ("\\boxed{12 \\mathrm{~m}}", "12", True),
 ("\\boxed{9 \\text{ ft}^2}", "9", True),
 ("\\boxed{\\$ 5}", "5", True),
 ("\\boxed{5 \\text{ dollars}}", "\\$5", True),
 ("\\boxed{5.00}", "\\$5", True),
 ("Thus she has 17 left. #### 17", "17", True),
 ("\\boxed{\\frac{-1}{2}}", "-0.5", True),
 ("\\boxed{-\\frac{1}{2}}", "\\frac{1}{-2}", True),
 ("\\boxed{\\frac{2}{\\sqrt{3}}}", "\\frac{2\\sqrt3}{3}", True),
 ("\\boxed{a^2 - b^2}", "(a-b)(a+b)", True),
 ("\\boxed{\\frac{1}{x}}", "x^{-1}", True),
 ("\\boxed{y=2x+3}", "2x+3", True),
 ("\\boxed{f(x) = 2x+3}", "2x+3", True),
 ("\\boxed{k=5}", "x=5", False),      # another variable (issue 22: x = 5, y = 2 is not y = 5, x = 2)
 ("\\boxed{10^{-3}}", "0.001", True),
 ("\\boxed{1\\times 10^{-3}}", "0.001", True),
 ("\\boxed{1E-3}", "0.001", True),
 ("\\boxed{\\sqrt{3}+\\sqrt{2}}", "\\sqrt{5+2\\sqrt{6}}", True),
 ("\\boxed{\\sqrt{3}-\\sqrt{2}}", "\\sqrt{5-2\\sqrt{6}}", True),
 ("\\boxed{\\sqrt{3}-\\sqrt{2}}", "\\sqrt{5+2\\sqrt{6}}", False),
 ("\\boxed{4\\pi}", "12.566", False),
 ("\\boxed{3 \\text{ hours and } 20 \\text{ minutes}}", "200", False),
 ("\\boxed{\\frac{10}{3}}", "3.\\overline{3}", True),
 ("\\boxed{\\dfrac{\\sqrt{5}-1}{2}}", "\\frac{-1+\\sqrt{5}}{2}", True),
 ("\\boxed{x=-3}", "-3", True),
 ("\\boxed{x=3}", "-3", False),
 ("\\boxed{n=4}", "4", True),
 ("\\boxed{\\text{Monday}}", "Monday", True),
 ("\\boxed{Tuesday}", "Monday", False),
 ("\\boxed{1 \\text{ or } 2}", "1, 2", True),
 ("\\boxed{2, 1}", "1 \\text{ and } 2", True),
 ("\\boxed{-1, 1}", "\\pm 1", True),
 ("\\boxed{(2,3)}", "x=2, y=3", True),
 ("\\boxed{x\\in(1,2)}", "(1,2)", True),
 ("\\boxed{1 < x < 2}", "(1,2)", True),
 ("\\boxed{1 \\le x < 2}", "[1,2)", True),
 ("\\boxed{\\frac{3}{8}}", "0.375", True),
 ("\\boxed{37.5\\%}", "\\frac38", True),
 ("\\boxed{0.375}", "37.5\\%", True),
]

SHAPES = [  # common shapes of right answers that an earlier version missed, each with wrong look-alikes
 # Minerva's closing line
 ("Final Answer: The final answer is $5$. I hope it is correct.", "5", True),
 ("Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.", "0.75", True),
 ("Final Answer: The final answer is $6$. I hope it is correct.", "5", False),
 ("The answer is 4.\nFinal Answer: The final answer is $7$. I hope it is correct.", "7", True),
 ("The answer is 7.\nFinal Answer: The final answer is $4$. I hope it is correct.", "7", False),
 # numbers written as words
 ("The answer is five.", "5", True),
 ("The answer is six.", "5", False),
 ("\\boxed{twenty-one}", "21", True),
 ("\\boxed{twenty one}", "21", True),
 ("\\boxed{twenty}", "21", False),
 ("\\boxed{one hundred five}", "105", True),
 ("\\boxed{three thousand two hundred}", "3200", True),
 ("\\boxed{minus three}", "-3", True),
 ("\\boxed{\\text{seven}}", "7", True),
 ("\\boxed{two three}", "5", False),
 ("\\boxed{two three}", "23", False),
 ("\\boxed{twelve dollars}", "12", True),
 ("\\boxed{one or two}", "1, 2", True),
 # a bare pi
 ("\\boxed{pi}", "\\pi", True),
 ("\\boxed{2pi}", "2\\pi", True),
 ("\\boxed{pi/2}", "\\frac{\\pi}{2}", True),
 ("\\boxed{pi/3}", "\\frac{\\pi}{2}", False),
 ("\\boxed{pie}", "\\pi", False),
 # units in \textnormal, and compound units
 ("\\boxed{5\\textnormal{ cm}}", "5", True),
 ("\\boxed{6\\textnormal{ cm}}", "5", False),
 ("\\boxed{5 m/s}", "5", True),
 ("\\boxed{5\\text{ m/s}}", "5", True),
 ("\\boxed{9.8 \\text{ m/s}^2}", "9.8", True),
 ("\\boxed{9.8 m/s^2}", "\\frac{49}{5}", True),
 ("\\boxed{60 km/h}", "60", True),
 ("\\boxed{50 km/h}", "60", False),
 ("\\boxed{2 a/b}", "2", False),
 # one matrix, written as array and as pmatrix, in any brackets
 ("\\boxed{\\begin{array}{cc} 1 & 2 \\\\ 3 & 4 \\end{array}}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", True),
 ("\\boxed{\\left(\\begin{array}{cc} 1 & 2 \\\\ 3 & 4 \\end{array}\\right)}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", True),
 ("\\boxed{\\left[\\begin{array}{rr} 1 & 2 \\\\ 3 & 4 \\end{array}\\right]}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", True),
 ("\\boxed{\\left[\\begin{array}{rr} 1 & 2 \\\\ 4 & 3 \\end{array}\\right]}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", False),
 ("\\boxed{\\begin{pmatrix}1\\\\2\\end{pmatrix}}", "\\left(\\begin{array}{c} 1 \\\\ 2 \\end{array}\\right)", True),
 # a union of sets equal to the gold set
 ("\\boxed{\\{1\\} \\cup \\{2, 3\\}}", "\\{1, 2, 3\\}", True),
 ("\\boxed{\\{1, 2\\} \\cup \\{2, 3\\}}", "\\{3, 2, 1\\}", True),
 ("\\boxed{\\{1\\} \\cup \\{2\\}}", "\\{1, 2, 3\\}", False),
 ("\\boxed{\\{1\\} \\cup \\{2, 4\\}}", "\\{1, 2, 3\\}", False),
 # floor and ceiling
 ("\\boxed{\\lfloor 3.5 \\rfloor}", "3", True),
 ("\\boxed{\\lceil 3.5 \\rceil}", "3", False),
 ("\\boxed{\\lceil 2.1 \\rceil}", "3", True),
 ("\\boxed{\\lfloor n/2 \\rfloor}", "\\left\\lfloor \\frac{n}{2}\\right\\rfloor", True),
 ("\\boxed{\\lfloor \\frac{n+1}{2} \\rfloor}", "\\lfloor \\frac{n}{2} \\rfloor", False),
 ("\\boxed{\\lceil n/2 \\rceil}", "\\lfloor \\frac{n}{2} \\rfloor", False),
 ("\\boxed{⌊7/2⌋}", "3", True),
]

TOLERANCE = [  # no tolerance that two tiny, different values could slip through; exact zeros still equal
 ("\\boxed{\\frac{1}{50!}}", "\\frac{1}{51!}", False),
 ("\\boxed{\\frac{1}{e^{100}}}", "\\frac{1}{e^{101}}", False),
 ("\\boxed{10^{-30}\\pi}", "2 \\cdot 10^{-30}\\pi", False),
 ("\\boxed{\\frac{\\sqrt{2}}{10^{40}}}", "\\frac{\\sqrt{3}}{10^{40}}", False),
 ("\\boxed{\\frac{\\sqrt{2}}{10^{40}}}", "\\frac{\\sqrt{8}}{2 \\cdot 10^{40}}", True),
 ("\\boxed{\\frac{1}{50!}}", "\\frac{51}{51!}", True),
 ("\\boxed{\\log_2 8 - 3}", "0", True),
 ("\\boxed{\\sin(\\pi)}", "0", True),
 ("\\boxed{e^{-100}}", "\\frac{1}{e^{100}}", True),
]

# Shapes found by grading answers written outside this project (issue 22), each with its near misses.
# The examples are written here; the labels are a careful grader's, written before running the code.

EQUATION_GOLDS = [  # a gold equation is matched by one side only when it names a value
 ("\\boxed{5}", "x + y = 5", False),
 ("\\boxed{11a+c}", "7 = 11a + c", False),
 ("\\boxed{1}", "2x + z = 1", False),
 ("\\boxed{x + y}", "x + y = 5", False),
 ("\\boxed{x + y = 5}", "x + y = 5", True),
 ("\\boxed{y + x = 5}", "x + y = 5", True),
 ("\\boxed{2x + 2y = 10}", "x + y = 5", True),
 ("\\boxed{x + y = 6}", "x + y = 5", False),
 ("\\boxed{y = 5}", "x + y = 5", False),
 ("\\boxed{2x+1}", "y = 2x + 1", True),
 ("\\boxed{x^2 + 1}", "f(x) = x^2 + 1", True),
 ("\\boxed{4}", "AB = 4", True),
 ("\\boxed{3}", "AB = 4", False),
 ("\\boxed{4}", "|AB| = 4", True),
 ("\\boxed{(3, 2)}", "(p, q) = (3, 2)", True),
 ("\\boxed{(2, 3)}", "(p, q) = (3, 2)", False),
 ("\\boxed{\\frac{2}{3}}", "\\frac{BD}{DC} = \\frac{2}{3}", True),
 ("\\boxed{7:3}", "A:B = 7:3", True),
 ("\\boxed{2}", "z = 1 + 1 = 2", True),
 ("\\boxed{x = 3 + 4 = 7}", "7", True),
 ("\\boxed{x = 3 + 4 = 7}", "x = 7", True),
 ("\\boxed{x = 7 = 8}", "7", False),
 ("\\boxed{7 = x}", "x = 7", True),
 ("\\boxed{\\lim_{x \\to 0} \\frac{\\sin x}{x} = 1}", "1", True),
 ("\\boxed{4, 5}", "AB = 4, CD = 5", True),
 ("\\boxed{5, 4}", "AB = 4, CD = 5", False),   # bare values follow the gold's order
 ("\\boxed{CD = 5, AB = 4}", "AB = 4, CD = 5", True),
 ("\\boxed{x = 5, y = 2}", "x = 2, y = 5", False),
 ("\\boxed{x=5}\\boxed{y=2}", "x = 2, y = 5", False),
 ("\\boxed{y = 5, x = 2}", "x = 2, y = 5", True),
 ("\\boxed{(y, x) = (2, 5)}", "(x, y) = (2, 5)", False),
 ("\\boxed{x:y = 2}", "y:x = 2", False),
 ("\\boxed{b = 5}", "a = 5", False),
 ("\\boxed{x = 2 \\text{ or } x = 5}", "x = 5, x = 2", True),
 ("\\boxed{y = 2x + 3}", "f(x) = 2x + 3", True),
 ("\\boxed{x \\in (2, 5)}", "2 < x < 5", True),
 ("\\boxed{x \\in (2, 5)}", "(2, 5)", True),
 ("\\boxed{2, 5}", "(2, 5)", True),
 ("\\boxed{5\\text{ m}}", "5", True),
 ("\\boxed{5 \\text{ square units}}", "5", True),
 ("\\boxed{y = 5, x = 2}", "(x, y) = (2, 5)", True),
 ("\\boxed{x = 2, y = 5}", "(2, 5)", True),
 ("The answer is negative 5.", "-5", True),
 ("So the value is \u22125.", "-5", True),
 ("\\boxed{2\u2075}", "32", True),
 ("\\boxed{x\u2081 + x\u2082}", "x_1 + x_2", True),
 ("The answer is **25%**.", "25\\%", True),
 ("It is not 10, it is 1,000.99.", "1000.99", True),
 ("\\boxed{|x|}", "|x|", True),
 ("\\boxed{|-3| + 2}", "5", True),
]

LETTERS = [  # a choice letter alone, or first before the option's text; never arithmetic on it
 ("\\boxed{D}", "D", True),
 ("\\boxed{d}", "D", True),
 ("\\boxed{(D) 42}", "D", True),
 ("\\boxed{D: 42}", "D", True),
 ("\\boxed{D}", "(D) 42", True),
 ("\\boxed{D}", "D. x = 42", True),
 ("\\boxed{E}", "(D) 42", False),
 ("\\boxed{2D}", "D", False),
 ("\\boxed{E+1}", "E", False),
 ("\\boxed{\\mathrm{E}*2}", "E", False),
 ("\\boxed{D^1}", "D", False),
 ("\\boxed{(d) (e)}", "D", False),
 ("\\boxed{(D) 42 (E) 43}", "D", False),
]

TINY = [  # values are compared exactly, however small; true identities still hold
 ("\\boxed{\\frac{1}{300!}}", "\\frac{1}{301!}", False),
 ("\\boxed{\\frac{1}{2006!}}", "\\frac{1}{2004!}", False),
 ("\\boxed{\\frac{301}{301!}}", "\\frac{1}{300!}", True),
 ("\\boxed{\\frac{1}{e^{1000}}}", "e^{-1001}", False),
 ("\\boxed{\\frac{1}{e^{1000}}}", "e^{-1000}", True),
 ("\\boxed{5 + \\frac{\\pi}{10^{100}}}", "5", False),
 ("\\boxed{\\sqrt{25 + 10^{-300}}}", "5", False),
 ("\\boxed{\\cos\\frac{\\pi}{7}+\\cos\\frac{3\\pi}{7}+\\cos\\frac{5\\pi}{7}}", "\\frac12", True),
 ("\\boxed{(1+\\sqrt2)^{10}}", "3363+2378\\sqrt2", True),
 ("\\boxed{(1+\\sqrt2)^{10}}", "3363+2377\\sqrt2", False),
 ("\\boxed{\\binom{300}{150}/\\binom{300}{149}}", "\\frac{151}{150}", True),
]

GARBAGE = [  # lenient mode takes a number only where it stands as an answer
 ("AZYUK2A", "2", False),
 ("The answer is AZYUK2A.", "2", False),
 ("it was model x5 all along", "5", False),
 ("it was 5 all along", "5", True),
 ("The rope is 5cm long.", "5", True),
 ("We get a total of 2 + 3 = 5 apples", "5", True),
 ("所以一共有3 + 10 = 13只鸟。", "13", True),
 ("所以一共有3 + 10 = 13只鸟。", "10", False),
 ("So the result is 11 6/6", "11", False),
]

RELATIONS = [
 ("\\boxed{x \\lt 1}", "x < 1", True),
 ("\\boxed{x \\gt 1}", "(1, \\infty)", True),
 ("\\boxed{x \\gt 1}", "x \\ge 1", False),
 ("\\boxed{x \\leqslant 1}", "(-\\infty, 1]", True),
 ("\\boxed{x \\neq 1}", "(-\\infty, 1) \\cup (1, \\infty)", True),
 ("\\boxed{x != 1}", "x \\ne 1", True),
 ("\\boxed{x != 2}", "x \\ne 1", False),
 ("\\boxed{-x > -1}", "x < 1", True),
 ("\\boxed{-x > -1}", "x > 1", False),
 ("\\boxed{2x + 1 \\le 5}", "(-\\infty, 2]", True),
 ("\\boxed{2x + 1 < 5}", "(-\\infty, 2]", False),
 ("\\boxed{x^2 < 4}", "(-2, 2)", True),
 ("\\boxed{0 < f(x) < 1}", "(0, 1)", True),
 ("\\boxed{0 < f(x) \\le 1}", "(0, 1)", False),
 ("\\boxed{a - b < 0}", "a < b", True),
 ("\\boxed{b - a < 0}", "a < b", False),
]

SETS = [
 ("\\boxed{{2, 3, 5}}", "\\{2, 3, 5\\}", True),
 ("\\boxed{{2, 3}}", "\\{2, 3, 5\\}", False),
 ("\\boxed{\\pm 2021}", "\\{-2021, 2021\\}", True),
 ("\\boxed{2021}", "\\{-2021, 2021\\}", False),
 ("\\boxed{1}, \\boxed{2}", "\\{1, 2\\}", True),
 ("\\boxed{1}, \\boxed{3}", "\\{1, 2\\}", False),
 ("\\boxed{(1, 2) \\text{ or } (3, 4)}", "(1, 2), (3, 4)", True),
 ("\\boxed{(1, 2); (3, 4)}", "(3, 4), (1, 2)", True),
 ("\\boxed{(1, 2); (4, 3)}", "(3, 4), (1, 2)", False),
 ("\\boxed{(5, 2), (7, 2)}", "p=5, q=2; p=7, q=2", True),
 ("\\boxed{(5, 2), (2, 7)}", "p=5, q=2; p=7, q=2", False),
 ("\\boxed{-5, -2, 7}", "7, -2, \\text{ and } -5", True),
 ("\\boxed{(1,2)or(3,4)}", "(3, 4), (1, 2)", True),
]

PROSE = [  # unboxed answers (lenient mode)
 ("Final Answer: The volume is 120.", "120", True),
 ("Final Answer: The volume is 121.", "120", False),
 ("So the matrix is $\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}$.", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", True),
 ("So the point is $(1, 2)$.", "(1, 2)", True),
 ("So the point is $(2, 1)$.", "(1, 2)", False),
 ("Then \\boxed{200} and \\boxed{255}. Final Answer: The final answer is $10,455$. I hope it is correct.",
  "10455", True),
 ("Then \\boxed{200} and \\boxed{255}. Final Answer: The final answer is $10,455$. I hope it is correct.",
  "255", False),
 ("So we get $x = 3$.", "3", True),
 ("We know $x = 3$, and then y is 7.", "7", True),
 ("The answer is actually 7. You will not get an F.", "7", True),
 ("The answer is either 7 or 8.", "8", False),
 ("\"The answer is 12.\"", "12", True),
 ("The sum 6 + 8 is equal to 14, says model B52.", "14", True),
]

GOLD_TEXT = [  # gold answers given as a sentence or a solution
 ("\\boxed{6}", "so the answer is \\boxed{6}.", True),
 ("\\boxed{1, 2}", "\\boxed{1} and \\boxed{2}", True),
 ("\\boxed{2}", "\\boxed{1} and \\boxed{2}", False),
 ("\\boxed{2}", "First \\boxed{1}, which is wrong, as a long detour to check shows; then \\boxed{2}", True),
 ("\\boxed{10^4}", "the answer is 10000", True),
 ("\\boxed{4}", "Ellen has 3 apples and John has 4 apples", False),   # a short text gold stays whole
]

WRITING = [  # LaTeX escaped twice, eaten by Python strings, or written loosely
 ("\\boxed{\\\\frac{1}{2}}", "0.5", True),
 ("\\boxed{\\\\left( 3, \\\\frac{\\\\pi}{2} \\\\right)}", "(3, \\frac{\\pi}{2})", True),
 ("\\boxed{0.5}", "\x0crac{1}{2}", True),
 ("\x08oxed{0.5}", "\\frac{1}{2}", True),
 ("\\boxed{\\frac{\\sqrt{3}}{3} \\approx 0.577}", "\\frac{\\sqrt{3}}{3}", True),
 ("\\boxed{0.577}", "\\frac{\\sqrt{3}}{3}", False),
 ("\\boxed{11z^17(11z^17+5)}", "11z^{17}(5+11z^{17})", True),
 ("\\boxed{2^6 3^5}", "15552", True),
 ("\\boxed{2 3}", "6", False),
 ("\\boxed{185\\\\}", "185", True),
 ("\\boxed{28 percent}", "28\\%", True),
]

ISSUE22 = EQUATION_GOLDS + LETTERS + TINY + GARBAGE + RELATIONS + SETS + PROSE + GOLD_TEXT + WRITING

CASES = NORMALISATION + NUMBERS + SYMBOLIC + STRUCTURES + HEDGING + CHOICE + MORE + SHAPES + TOLERANCE + ISSUE22


@pytest.mark.parametrize("output,gold,expected", CASES)
def test_verify(output, gold, expected):
    assert verify(output, gold) is expected
    assert math_reward(output, gold) == (1.0 if expected else 0.0)


def test_gold_types_and_bare_answers():
    assert verify("42", 42)
    assert verify("\\boxed{0.5}", 0.5)
    assert verify("\\frac{1}{2}", "\\boxed{\\frac12}")
    assert verify("She earns $18 a day.\n#### 18", "18")
    assert not verify(None, "5")
    assert not verify("\\boxed{5}", "")


# ---------------------------------------------------------------------------------------------------
# Adversarial outputs: wrong, and quick

ADVERSARIAL = [
    "\\boxed{2^{3^{4^{5^{6}}}}}",
    "\\boxed{9^{9^{9}}}",
    "\\boxed{10^{10^{10}}}",
    "\\boxed{2^{1000000000}}",
    "\\boxed{(10^{100})!}",
    "\\boxed{99999999!}",
    "\\boxed{((3!)!)!}",
    "\\boxed{" + "+".join(["x"] * 20000) + "}",            # about 40 KB of expression
    "\\boxed{" + "(" * 3000 + "1" + ")" * 3000 + "}",       # deep nesting
    "\\boxed{" + "1" * 100_000 + "}",                      # a 100 KB number
    "\\boxed{" + "\\frac{1}{" * 2000 + "2" + "}" * 2000 + "}",
    "".join(f"\\boxed{{{i}}}" for i in range(100)),         # a hundred boxes
    "\\boxed{5}" * 100 + "\\boxed{}",                      # ... and an empty last box
    "".join(f"\\boxed{{{i}}}" for i in range(100_000)),     # a hundred thousand boxes
    "\\boxed{}",
    "\\boxed{" * 50_000,                                   # never closed
    "x" * 100_000,
    "\\boxed{\\sin(10^{4000})}",
    "\\boxed{e^{e^{e^{e^{10}}}}}",
]


@pytest.mark.parametrize("output", ADVERSARIAL)
def test_adversarial_outputs_are_wrong_and_fast(output):
    t = time.perf_counter()
    assert verify(output, "5") is False
    assert time.perf_counter() - t < 2.0


# Written as a policy would game the grader: each one wrong, in strict and lenient mode, and quick.
GAMING = [
 # several boxes
 ("\\boxed{5} \\boxed{6}", "5"), ("\\boxed{6} \\boxed{5}", "5"), ("\\boxed{5} or \\boxed{6}", "6"),
 ("\\boxed{4}\\boxed{5}\\boxed{6}", "5"), ("\\boxed{5}, \\boxed{6}", "x + y = 5"),
 # hedged answers
 ("\\boxed{5 \\text{ or } 6}", "5"), ("\\boxed{5, 6}", "5"), ("\\boxed{5; 6}", "5"), ("\\boxed{5 \\lor 6}", "5"),
 ("\\boxed{\\{5, 6\\}}", "5"), ("\\boxed{{5, 6}}", "5"), ("\\boxed{5 \\pm 1}", "5"), ("\\boxed{5 \\mp 1}", "6"),
 ("\\boxed{5 \\text{ and } 6}", "5"), ("\\boxed{x \\in \\{5, 6\\}}", "5"), ("\\boxed{[5, 6]}", "5"),
 ("\\boxed{5 \\le x \\le 6}", "5"), ("\\boxed{x \\ge 5}", "5"), ("\\boxed{4 < x < 6}", "5"), ("\\boxed{5 \\vee 6}", "5"),
 ("\\boxed{\\text{5 or 6}}", "5"), ("\\boxed{5 \\text{ (or } 6)}", "5"), ("\\boxed{5,6,7,8,9}", "7"),
 ("\\boxed{x = 5 \\text{ or } x = 6}", "5"), ("\\boxed{5 \\text{ or } 6}", "5, 6, 7"), ("\\boxed{5 \\approx 6}", "6"),
 ("The answer is 5 or 6.", "5"), ("The answer is 5, 6.", "6"), ("Answer: 5 or 6", "6"), ("#### 5 or 6", "5"),
 # the gold's own text pasted around a wrong box
 ("The answer is 5. \\boxed{6}", "5"), ("\\boxed{6} The answer is 5", "5"), ("5 \\boxed{6} 5", "5"),
 ("#### 5 \\boxed{6}", "5"), ("\\boxed{6}\n#### 5", "5"), ("5 5 5 5 \\boxed{6} 5 5 5", "5"),
 ("\\boxed{6} Final Answer: The final answer is 6 or 5", "5"), ("x + y = 5 \\boxed{6}", "x + y = 5"),
 # letters with arithmetic
 ("\\boxed{2D}", "D"), ("\\boxed{D+0}", "D"), ("\\boxed{D-E}", "D"), ("\\boxed{D^1}", "D"), ("\\boxed{\\frac{D}{1}}", "D"),
 ("\\boxed{DD}", "D"), ("\\boxed{(D)(E)}", "D"), ("\\boxed{D, E}", "D"), ("\\boxed{D \\text{ or } E}", "D"),
 ("\\boxed{(D) or (E)}", "D"), ("\\boxed{D/E}", "D"), ("\\boxed{(D) 42 (E) 43}", "D"), ("\\boxed{E+1}", "E"),
 ("\\boxed{\\mathrm{E}*2}", "E"), ("\\boxed{\\textbf{(D)} \\textbf{(E)}}", "D"), ("\\boxed{D E}", "D"),
 ("\\boxed{ABCDE}", "D"), ("\\boxed{D.E}", "D"), ("\\boxed{d + e}", "D"), ("\\boxed{(d) (e)}", "D"),
 ("The answer is D or E.", "D"), ("The answer is (D) and (E).", "E"), ("\\boxed{(D) 42}", "E"),
 # equations restated
 ("\\boxed{5}", "x + y = 5"), ("\\boxed{11a+c}", "7 = 11a + c"), ("\\boxed{1}", "2x + z = 1"), ("\\boxed{x + y}", "x + y = 5"),
 ("\\boxed{x + y = x + y}", "x + y = 5"), ("\\boxed{0 = 0}", "x + y = 5"), ("\\boxed{5 = 5}", "x + y = 5"),
 ("\\boxed{x + y = 5 = 6}", "x + y = 5"), ("\\boxed{y = y}", "y = 2x + 1"), ("\\boxed{2x + 1 = 2x + 1}", "y = 2x + 1"),
 ("\\boxed{y = 2x + 1 = 5}", "y = 2x + 1"), ("\\boxed{2x + 3 = 13}", "5"), ("\\boxed{13 = 2x + 3}", "5"),
 ("\\boxed{x = 6}", "x + y = 5"), ("\\boxed{x^2 = 25}", "x = 5"), ("\\boxed{y - 2x - 1 = 1}", "y = 2x + 1"),
 ("\\boxed{0}", "y - 2x - 1 = 0"), ("\\boxed{6 = 5}", "6"),
 # digits hidden in words
 ("AZYUK2A", "2"), ("abc5def", "5"), ("x5", "5"), ("The answer is AZYUK2A", "2"), ("\\boxed{AZYUK2A}", "2"),
 ("\\boxed{five6}", "5"), ("\\boxed{five6}", "56"), ("\\boxed{A5}", "5"), ("\\boxed{5A}", "5"), ("version5 H2O", "2"),
 ("the code is X7Y", "7"), ("\\boxed{\\text{x5}}", "5"), ("Answer: abc2def", "2"), ("#### abc2def", "2"),
 ("The result: item3 done", "3"), ("5five", "55"),
 # huge or pathological
 ("\\boxed{5 + \\frac{\\pi}{10^{100}}}", "5"), ("\\boxed{5 + 10^{-100}}", "5"), ("\\boxed{5 + e^{-1000}}", "5"),
 ("\\boxed{\\frac{1}{4999!}}", "\\frac{1}{5000!}"), ("\\boxed{\\frac{1}{10^{1000}}}", "\\frac{1}{10^{1001}}"),
 ("\\boxed{\\sqrt{25 + 10^{-300}}}", "5"), ("\\boxed{5000!}", "5001!"), ("\\boxed{10^{10^{10}}}", "10^{10^{10}}+1"),
 ("\\boxed{" + "+".join(f"{i}!" for i in range(4900, 5000)) + "}", "5"), ("\\boxed{9^{9^{9}}}", "9^{9^9}+1"),
 ("\\boxed{\\sin(10^{4000})}", "\\sin(10^{4000}) + 1"), ("\\boxed{\\frac{1}{0}}", "\\infty"), ("\\boxed{0/0}", "5"),
 ("\\boxed{\\infty - \\infty}", "0"), ("\\boxed{1e-400}", "0"), ("\\boxed{0.99999999999999999999999999999}", "1"),
 ("\\boxed{1 - 10^{-50}}", "1"), ("\\boxed{x + 10^{-40}}", "x"), ("\\boxed{\\frac{x}{10^{60}}}", "0"),
 ("\\boxed{e^{-700}}", "0"), ("\\boxed{" + "x" * 5000 + "}", "x"), ("\\boxed{(x+1)^{9999}}", "x^{9999}"),
 ("\\boxed{" + "\\sqrt{" * 500 + "5" + "}" * 500 + "}", "5"), ("$" * 5000, "5"), ("\\(" * 3000, "5"),
 ("5 " * 20000, "6"), ("\\boxed{\\sqrt{x^2}}", "x"), ("\\boxed{\\lfloor n/2 \\rfloor}", "\\lfloor (n+1)/2 \\rfloor"),
 ("\\boxed{" + "5000!" * 198 + "}", "5"), ("\\boxed{(" + "5000!" * 120 + ")^{2}}", "5"),
 ("\\boxed{" + "5000! \\cdot " * 90 + "1}", "5"), ("\\boxed{" * 2400 + "6" + "}" * 2400, "5"),
 ("".join("\\boxed{" + "\\boxed{" * 2400 + d + "}" * 2400 + "}" for d in "567"), "5"),
 ("".join("\\boxed{" + "x \\approx " * 1990 + str(i) + "}" for i in range(30)), "5"),
 # found by a review acting as the policy (issue 22)
 ("\\boxed{x = 5, y = 2}", "x = 2, y = 5"), ("\\boxed{x = 5}\\boxed{y = 2}", "x = 2, y = 5"),
 ("\\boxed{5, 2}", "x = 2, y = 5"), ("\\boxed{(y, x) = (2, 5)}", "(x, y) = (2, 5)"), ("\\boxed{x:y = 2}", "y:x = 2"),
 ("\\boxed{\\frac{AB}{BC} = 2}", "\\frac{BC}{AB} = 2"), ("The answer is $x = 5, y = 2$.", "x = 2, y = 5"),
 ("\\boxed{b = 5}", "a = 5"), ("\\boxed{2 < x < 5}", "2, 5"), ("\\boxed{2 \\le x \\le 5}", "x = 2 \\text{ or } x = 5"),
 ("\\boxed{x = 2 \\text{ or } x = 5}", "2 < x < 5"), ("\\boxed{2, 5}", "[2, 5]"), ("\\boxed{2 \\text{ and } 5}", "x \\in [2, 5]"),
 ("\\boxed{-\\infty, 5}", "x < 5"), ("\\boxed{x \\in (2, 5)}", "2, 5"),
 ("\\boxed{x^2 + (x+1.37)(x-1.71)(x-0.47)}", "x^2"), ("\\boxed{(x^2 - 1)(1 + (x+1.37)(x-1.71)(x-0.47)) = 0}", "x^2 = 1"),
 ("\\boxed{(D) or e}", "D"), ("\\boxed{D: or e}", "D"), ("\\boxed{D. e}", "D"), ("\\boxed{D) or \u0415}", "D"),
 ("\\boxed{D) or \uff25}", "D"), ("\\boxed{(D) or the last one}", "D"), ("The answer is (D) or e.", "D"),
 ("\\boxed{5 squared}", "5"), ("\\boxed{5 dozen}", "5"), ("\\boxed{5 \\text{ million}}", "5"), ("\\boxed{5 hundredths}", "5"),
 ("\\boxed{5\\text{ or more}}", "5"), ("\\boxed{\\frac{1}{2}\\text{ or less}}", "\\frac{1}{2}"), ("\\boxed{5 \\text{x}}", "5"),
 ("\\boxed{5\\mathrm{i}}", "5"), ("\\boxed{5\\text{ negative}}", "5"), ("\\boxed{5 thousand}", "51000"), ("\\boxed{5\\ 6}", "56"),
 ("The answer is not 5.", "5"), ("The answer is at least 5.", "5"), ("The final answer is sqrt(6).", "6"),
 ("The final answer is pi/6.", "6"), ("The answer is in \\{5, 6\\}", "6"), ("Thus x = 2^5", "5"),
 ("\\boxed{\\begin{vmatrix}1&2\\\\3&4\\end{vmatrix}}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}"),
 # found by a second review
 ("\\boxed{y = 2, x = 5}", "(x, y) = (2, 5)"), ("\\boxed{y = 2, x = 5}", "(2, 5)"), ("\\boxed{(y, x) = (2, 5)}", "x = 2, y = 5"),
 ("\\boxed{a = 2, b = 5}", "(b, a) = (2, 5)"), ("\\boxed{y = 2, 5}", "x = 2, y = 5"), ("\\boxed{y = 2, y = 5}", "x = 2, y = 5"),
 ("\\boxed{x_2 = 2, x_{2} = 5}", "x_1 = 2, x_2 = 5"), ("\\boxed{x2 = 2, x1 = 5}", "x_1 = 2, x_2 = 5"),
 ("\\boxed{x\u2082 = 2, x\u2081 = 5}", "x_1 = 2, x_2 = 5"),
 ("\\boxed{" + "+".join(["(3^{9999})^6/(5^{9999})^4"] * 35) + "+x}", "5"),
 ("\\boxed{" + "+".join(["(3^{9999})^6/(5^{9999})^4"] * 35) + "+z, 2, 3, 4}", "1, 2, 3, 4"),
 ("\\boxed{\\frac{1}{23}{}}", "\\frac{12}{3}"), ("\\boxed{\\sqrt{2}3{}}", "\\sqrt{23}"), ("\\boxed{{}10^{2}1}", "10^{21}"),
 ("\\boxed{\\boxed{5}^{2}}", "5"), ("\\boxed{\\boxed{2}\\cdot 10^{3}}", "2"), ("\\boxed{\\boxed{5} \\text{ or 6}}", "5"),
 ("The answer is negative 5.", "5"), ("The answer is clearly \u22125 here.", "5"), ("So the value is \u22125.", "5"),
 ("The answer is the square root of 5.", "5"), ("The result is 2 + 3.", "3"), ("The result is 4\u00d73.", "3"),
 ("The result is 5\u00b3.", "5"), ("The result is \u221a5.", "5"), ("The result is 4\u03c0.", "4"), ("The result is 3\u00bd.", "3"),
 ("Thus we get 2\u2075.", "2"), ("The answer is anything but 5.", "5"), ("The answer is different from 5.", "5"),
 ("It is not 5.", "5"), ("The final answer cannot be 5.", "5"), ("The answer is 5 if n is even and 6 if n is odd.", "6"),
 ("The answer is one of 5, 6, 7.", "7"), ("\\boxed{2\u2075}", "25"), ("\\boxed{3 \\times 10\u2076}", "318"),
 ("\\boxed{x\u2074}", "4x"), ("\\boxed{2\u207f}", "2n"), ("\\boxed{x\u2081 + x\u2082}", "3x"), ("The answer is 2\u2074.", "24"),
 ("\\boxed{5 \\text{ is incorrect}}", "5"), ("\\boxed{5 wrong}", "5"), ("\\boxed{5 sevenths}", "5"), ("\\boxed{5 trillion}", "5"),
 ("\\boxed{5 doubled}", "5"), ("\\boxed{5\\text{K}}", "5"), ("\\boxed{[2, 5] excluded}", "[2, 5]"), ("\\boxed{zero hundred}", "100"),
 ("\\boxed{\\frac{|x-5|}{5-x}}", "1"), ("\\boxed{|n - 100| + n}", "100"), ("\\boxed{|x+10| - 9}", "x + 1"),
 ("\\boxed{\\sqrt{x^2+8x+16}}", "x + 4"), ("\\boxed{(C) ABCDE}", "C"), ("\\boxed{b(t) = 5}", "a = 5"), ("\\boxed{0,500}", "500"),
 ("".join("\\boxed{" + "x\u2248" * 660 + str(i) + "}" for i in range(40)), "5"),
]


@pytest.mark.parametrize("output,gold", GAMING)
def test_gaming_the_grader_earns_nothing(output, gold):
    for strict in (False, True):
        t = time.perf_counter()
        assert verify(output, gold, strict=strict) is False
        assert time.perf_counter() - t < 2.0


def test_hundred_expression_kilobytes_and_gold_match_by_string_only():
    big = "+".join(f"x_{{{i}}}" for i in range(8000))     # about 100 KB
    t = time.perf_counter()
    assert verify("\\boxed{" + big + "}", "1") is False
    assert time.perf_counter() - t < 2.0


# ---------------------------------------------------------------------------------------------------
# The worker: common answers never start it; a hang is killed and the worker replaced

def test_common_path_does_not_touch_the_worker():
    reward._stop_worker()
    assert verify("\\boxed{\\frac{1}{2}}", "0.5")
    assert verify("#### 1,000", "1000")
    assert verify("\\boxed{(1, 2)}", "(1,2)")
    assert not verify("\\boxed{0.333}", "\\frac13")
    assert reward._worker is None


def test_worker_hang_is_killed_and_replaced():
    assert verify("\\boxed{\\sqrt{18}}", "3\\sqrt{2}")       # starts the worker
    first = reward._worker
    # A stopped process answers nothing, like one stuck in C code where its own alarm cannot fire.
    os.kill(first.pid, signal.SIGSTOP)
    t = time.perf_counter()
    assert verify("\\boxed{\\sqrt{27}}", "3\\sqrt{3}") is False   # right, but timed out: counts as wrong
    assert time.perf_counter() - t < 2.0
    assert first.poll() is not None and reward._worker is not first   # killed and replaced
    assert verify("\\boxed{\\sqrt{27}}", "3\\sqrt{3}")          # a timeout is not cached as an answer
    assert verify("\\boxed{\\sqrt{50}}", "5\\sqrt{2}")


def test_worker_exits_with_the_parent():
    code = ("import sys; sys.path.insert(0, %r); import reward; "
            "assert reward.verify('\\\\boxed{\\\\sqrt{8}}', '2\\\\sqrt2'); print(reward._worker.pid)"
            % os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    pid = int(out.stdout.strip())
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail("the sympy worker outlived the interpreter")


def test_cli_reads_a_long_response_from_a_file_or_stdin(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    response = "Let me think. " * 80_000 + "So the answer is \\boxed{42}."     # about 1 MB
    path = tmp_path / "response.txt"
    path.write_text(response)
    by_file = subprocess.run([sys.executable, "reward.py", "--file", str(path), "42"], cwd=root,
                             capture_output=True, text=True, timeout=60)
    by_stdin = subprocess.run([sys.executable, "reward.py", "--file", "-", "41"], cwd=root, input=response,
                              capture_output=True, text=True, timeout=60)
    assert by_file.stdout == "extracted: '42'\nreward: 1.0\n"
    assert by_stdin.stdout == "extracted: '42'\nreward: 0.0\n"
    missing = subprocess.run([sys.executable, "reward.py", "--file", str(tmp_path / "nope"), "42"], cwd=root,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and missing.stderr.strip() == f"error: --file {tmp_path / 'nope'}: No such file or directory"
