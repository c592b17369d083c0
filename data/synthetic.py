"""Seeded offline generator of arithmetic problems with exact answers.

Needs no download, so a CPU demo or a test can train on it anywhere. The easy end is
chosen so that a 135M model (SmolLM2-135M-Instruct) earns some reward and can learn.

Difficulty levels (answers are exact strings: "8", "-2", "17/12"):
  1  sum of two single-digit numbers            What is 3 + 5?
  2  sum or difference of two 2-digit numbers   What is 47 - 82?
  3  product of two small integers,             What is 7 × 12?
     or a linear equation a*x + b = c           Solve for x: 3x + 4 = 19.
  4  mixed operations (order of operations),    What is 4 + 3 × 5?  /  What is (9 - 2) × 6?
     or x on both sides                         Solve for x: 5x - 7 = 2x + 8.
  5  fraction arithmetic, reduced answer        What is 2/3 ÷ 4/5? Give the answer as a fraction in lowest terms.
  6  two-step word problems, one-digit numbers  Mia has 5 apples. She buys 3 more, then gives 2 away.
                                                How many apples does Mia have now?
  7  three one-digit numbers, two operations    What is 7 + 5 - 3?
     (+ or -, never below zero on the way)

Operators are written + - × ÷ so that '/' only ever appears inside a fraction.
The same (n, difficulty, seed) always gives the same problems.

    python data/synthetic.py --n 5 --difficulty 2 --seed 0
"""
import argparse
import itertools
import json
import random
from fractions import Fraction

LEVELS = (1, 2, 3, 4, 5, 6, 7)


def _signed(k):
    """' + 4' or ' - 4': a constant term written after something else."""
    return f" + {k}" if k >= 0 else f" - {-k}"


def _linear(a, b):
    """'3x + 4', '3x', 'x - 2': the expression a*x + b as a person would write it."""
    head = "x" if a == 1 else f"{a}x"
    return head if b == 0 else head + _signed(b)


def _level1(rng):
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    return f"What is {a} + {b}?", a + b


def _level2(rng):
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    if rng.random() < 0.5:
        return f"What is {a} + {b}?", a + b
    return f"What is {a} - {b}?", a - b  # may be negative: models must handle signs


def _level3(rng):
    if rng.random() < 0.5:
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        return f"What is {a} × {b}?", a * b
    # Pick the solution first so it is an integer by construction.
    x, a, b = rng.randint(1, 12), rng.randint(2, 9), rng.randint(1, 20)
    return f"Solve for x: {_linear(a, b)} = {a * x + b}.", x


def _level4(rng):
    kind = rng.randrange(3)
    if kind == 0:  # precedence: the product binds first
        a, b, c = rng.randint(2, 20), rng.randint(2, 9), rng.randint(2, 9)
        if rng.random() < 0.5:
            return f"What is {a} + {b} × {c}?", a + b * c
        return f"What is {a} - {b} × {c}?", a - b * c
    if kind == 1:  # brackets, and an exact division
        a, b, c = rng.randint(2, 20), rng.randint(1, 20), rng.randint(2, 9)
        q = rng.randint(2, 12)
        return f"What is ({a} + {b}) × {c} - {q * c} ÷ {c}?", (a + b) * c - q
    # x on both sides: (a - c) x = d - b, with an integer (possibly negative) x
    x = rng.randint(-10, 10)
    a = rng.randint(3, 9)
    c = rng.randint(1, a - 1)
    b = rng.randint(-20, 20)
    d = (a - c) * x + b
    return f"Solve for x: {_linear(a, b)} = {_linear(c, d)}.", x


def _fraction(rng):
    q = rng.randint(2, 9)
    return Fraction(rng.randint(1, q - 1), q)  # proper fraction, printed as p/q below


def _level5(rng):
    f, g = _fraction(rng), _fraction(rng)
    op = rng.choice("+-×÷")
    value = {"+": f + g, "-": f - g, "×": f * g, "÷": f / g}[op]
    return (f"What is {f} {op} {g}? Give the answer as a fraction in lowest terms.", value)


NAMES = [("Mia", "She", "her"), ("Tom", "He", "his"), ("Ana", "She", "her"), ("Sam", "He", "his"),
         ("Lea", "She", "her"), ("Ben", "He", "his")]
ITEMS = ["apples", "pencils", "marbles", "stickers", "books", "coins", "cookies", "stamps"]


def _level6(rng):
    """Two operations on one-digit numbers, in words: the answer needs an intermediate result."""
    (name, he, his), item = rng.choice(NAMES), rng.choice(ITEMS)
    kind = rng.randrange(4)
    if kind == 0:
        a, b = rng.randint(2, 9), rng.randint(1, 9)
        c = rng.randint(1, a + b - 1)
        return (f"{name} has {a} {item}. {he} gets {b} more, then gives {c} away. "
                f"How many {item} does {name} have now?", a + b - c)
    if kind == 1:
        a, b = rng.randint(2, 5), rng.randint(2, 5)
        c = rng.randint(1, a * b - 1)
        return (f"{name} buys {a} bags with {b} {item} in each bag. {he} loses {c} of them. "
                f"How many {item} does {name} have left?", a * b - c)
    if kind == 2:
        a, b, c = rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 9)
        return (f"{name} has {a} {item} in one box and {b} in another. {he} finds {c} more. "
                f"How many {item} does {name} have in all?", a + b + c)
    a, b = rng.randint(2, 9), rng.randint(1, 9)
    c = rng.randint(1, a - 1)
    return (f"{name} has {a} {item} and gives {c} to a friend. Then {name} gets {b} more from {his} mother. "
            f"How many {item} does {name} have now?", a - c + b)


def _level7(rng):
    """Level 1 with one more step: a running total the model must carry (the CPU ablation's task)."""
    a, b, c = rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 9)
    first, second = rng.choice("+-"), rng.choice("+-")
    if first == "-" and b > a:
        a, b = b, a
    middle = a + b if first == "+" else a - b
    if second == "-" and c > middle:
        second = "+"
    return f"What is {a} {first} {b} {second} {c}?", middle + c if second == "+" else middle - c


_MAKERS = {1: _level1, 2: _level2, 3: _level3, 4: _level4, 5: _level5, 6: _level6, 7: _level7}


def stream(difficulty=1, seed=0):
    """Endless problems of one difficulty (1..7) as dicts: id, problem, answer, difficulty, source.

    Problems are drawn independently, so the easy levels repeat (level 1 has only 81 distinct sums);
    data.load_problems filters the stream when it needs distinct problems or must avoid some."""
    if difficulty not in _MAKERS:
        raise ValueError(f"synthetic difficulty must be one of {LEVELS}, got {difficulty!r}")
    # A string seed is hashed stably across runs and Python versions (unlike hash()).
    rng = random.Random(f"synthetic:{difficulty}:{seed}")
    for i in itertools.count():
        problem, value = _MAKERS[difficulty](rng)
        yield {
            "id": f"synthetic-d{difficulty}-s{seed}-{i}",
            "problem": problem,
            "answer": str(Fraction(value)),  # "8", "-2", "17/12": always fully reduced
            "difficulty": difficulty,
            "source": "synthetic",
        }


def generate(n, difficulty=1, seed=0):
    """The first n problems of stream(difficulty, seed)."""
    return list(itertools.islice(stream(difficulty, seed), n))


def main():
    p = argparse.ArgumentParser(description="Print seeded synthetic arithmetic problems as JSON Lines.")
    p.add_argument("--n", type=int, default=10, help="number of problems")
    p.add_argument("--difficulty", type=int, default=1, choices=LEVELS, help="1 (easiest) .. 5, 6: two-step words, 7: three-number sums")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    for row in generate(args.n, args.difficulty, args.seed):
        print(json.dumps(row, ensure_ascii=False))


if __name__ == "__main__":
    main()
