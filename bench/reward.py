"""Benchmark reward.verify against Hugging Face math-verify, in the same run on the same pairs.

Three sets of labelled (response, gold) pairs, both graders on each:
1. reference solutions: the GSM8K test set and MATH500, each reference solution graded against its gold answer
   (label: correct), and the same solution with its final answer perturbed (label: wrong);
2. shapes: the labelled cases of tests/test_reward.py, grouped by shape (equation golds, choice letters, tiny
   values, ...), and the answers written there to game the grader (label: wrong); a false positive in any
   shape is what a policy would learn to exploit;
3. optional, --pairs FILE: your own labelled pairs, one JSON object a line with "response", "gold", "label"
   (true/false) and optionally "source", reported per source.
For each: agreement with the labels, false positives and false negatives, and the time per verification
(p50, p99, max; the two graders timed in turn on the same pairs, after one warm-up call each).

    python bench/reward.py [--data_dir ../shared/data] [--limit N] [--pairs FILE.jsonl] [--strict]

math-verify is a benchmark-only dependency: `make bench-deps` (or pip install -r requirements-bench.txt).
"""
import argparse
import json
import logging
import os
import re
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
import reward  # noqa: E402

SHAPES = ("EQUATION_GOLDS", "LETTERS", "TINY", "GARBAGE", "RELATIONS", "SETS", "PROSE", "GOLD_TEXT", "WRITING",
          "NORMALISATION", "NUMBERS", "SYMBOLIC", "STRUCTURES", "HEDGING", "CHOICE", "MORE", "SHAPES", "TOLERANCE")


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def perturb(answer):
    """A wrong answer of the same form: next choice letter, last integer + 1, or 2 times the answer."""
    choice = re.fullmatch(r"(\\text\{)?\(?([A-E])\)?(\})?", answer.strip())
    if choice:
        return answer.replace(choice.group(2), "ABCDEA"["ABCDE".index(choice.group(2)) + 1])
    digits = list(re.finditer(r"(?<![\d_^])(?<!_\{)(?<!\^\{)\d+", answer))    # not a base (204_5) or a unit power (cm^2)
    if digits:
        m = digits[-1]
        return answer[:m.start()] + str(int(m.group(0)) + 1) + answer[m.end():]
    return "2(" + answer + ")"


def last_box_span(text):
    """(start, end) of the contents of the last \\boxed{...} in text, or None."""
    start = text.rfind("\\boxed")
    i = text.find("{", start)
    if start < 0 or i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        depth += (text[j] == "{") - (text[j] == "}")
        if depth == 0:
            return i + 1, j
    return None


def reference_pairs(data_dir, limit=None):
    """[(source, output, gold, label)]: reference solutions, and the same with a perturbed answer."""
    pairs = []
    for row in load(os.path.join(data_dir, "gsm8k", "test.jsonl"))[:limit]:
        sol, gold = row["solution"], str(row["answer"])
        pairs.append((row["id"], sol, gold, True))
        pairs.append((row["id"] + " (perturbed)", re.sub(r"####.*$", "#### " + perturb(gold), sol), gold, False))
    for row in load(os.path.join(data_dir, "math500", "test.jsonl"))[:limit]:
        sol, gold = row["solution"], str(row["answer"])
        span = last_box_span(sol)
        pairs.append((row["id"], sol, gold, True))
        wrong = sol[:span[0]] + perturb(gold) + sol[span[1]:] if span else sol + f" \\boxed{{{perturb(gold)}}}"
        pairs.append((row["id"] + " (perturbed)", wrong, gold, False))
    return pairs


def shape_pairs():
    """[(shape, output, gold, label)] from the labelled cases of tests/test_reward.py."""
    import test_reward
    pairs = [(name, out, gold, label) for name in SHAPES for out, gold, label in getattr(test_reward, name)]
    return pairs + [("GAMING", out, gold, False) for out, gold in test_reward.GAMING]


def file_pairs(path):
    rows = load(path)
    return [(r.get("source", os.path.basename(path)), r["response"], str(r["gold"]), bool(r["label"])) for r in rows]


def time_calls(fn, pairs):
    verdicts, latencies = [], []
    for _, output, gold, _ in pairs:
        t = time.perf_counter()
        verdicts.append(bool(fn(output, gold)))
        latencies.append(time.perf_counter() - t)
    return verdicts, latencies


def pct(xs, q):
    return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]


def report(title, pairs, graders, by_group=False, show=0):
    """Both graders on the pairs: per grader, then (by_group) per group; returns {grader: verdicts}."""
    n = len(pairs)
    labels = [p[3] for p in pairs]
    print(f"\n## {title}: {n} pairs ({sum(labels)} right answers, {n - sum(labels)} wrong)")
    print(f"{'grader':<12} {'verif/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'agree':>14} {'FP':>5} {'FN':>5}")
    verdicts = {}
    for name, fn in graders.items():
        v, t = time_calls(fn, pairs)
        verdicts[name] = v
        agree = sum(a == b for a, b in zip(v, labels))
        fp = sum(a and not b for a, b in zip(v, labels))
        fn_ = sum(b and not a for a, b in zip(v, labels))
        print(f"{name:<12} {n / sum(t):9.1f} {pct(t, 0.5) * 1e3:8.2f} {pct(t, 0.99) * 1e3:8.2f} {max(t) * 1e3:8.1f} "
              f"{agree:>6}/{n:<4}{agree / n:>6.1%} {fp:>3} {fn_:>5}")
    names = list(graders)
    both = sum(a == b for a, b in zip(*(verdicts[k] for k in names)))
    print(f"{names[0]} and {names[1]} agree with each other on {both}/{n} = {both / n:.2%}")
    if by_group:
        groups = list(dict.fromkeys(p[0] for p in pairs))
        print(f"\n{'group':<44} {'n':>4} " + " ".join(f"{k + ' agree':>20} {'FP':>3}" for k in names))
        for g in groups:
            idx = [i for i, p in enumerate(pairs) if p[0] == g]
            cells = []
            for k in names:
                agree = sum(verdicts[k][i] == labels[i] for i in idx)
                fp = sum(verdicts[k][i] and not labels[i] for i in idx)
                cells.append(f"{agree:>10}/{len(idx):<4} {agree / len(idx):>4.0%} {fp:>3}")
            print(f"{g[:44]:<44} {len(idx):>4} " + " ".join(cells))
    shown = 0
    for (src, output, gold, label), a, b in zip(pairs, *(verdicts[k] for k in names)):
        if (a != label or b != label) and shown < show:
            shown += 1
            print(f"- {src}: label={label} {names[0]}={a} {names[1]}={b} gold={gold[:80]!r} "
                  f"extracted={str(reward.extract_answer(output))[:80]!r}")
    return verdicts


def main():
    default_dir = os.environ.get("HICRA_DATA_DIR", os.path.join(ROOT, "..", "shared", "data"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data_dir", default=default_dir, help="folder holding gsm8k/ and math500/ (default: %(default)s)")
    ap.add_argument("--limit", type=int, default=None, help="rows per data set (default: all)")
    ap.add_argument("--pairs", help="a JSON-lines file of your own labelled pairs: response, gold, label[, source]")
    ap.add_argument("--strict", action="store_true", help="grade reward.py in strict mode (boxes only)")
    ap.add_argument("--show", type=int, default=40, help="pairs where a grader is wrong to print per set")
    args = ap.parse_args()
    try:
        from math_verify import parse as mv_parse, verify as mv_verify
    except ImportError:
        sys.exit("math-verify is not installed: run `make bench-deps` (pip install -r requirements-bench.txt)")
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)   # it logs every timeout with the whole input
    if args.pairs and not os.path.isfile(args.pairs):
        sys.exit(f"error: --pairs {args.pairs}: no such file")

    def theirs(output, gold):
        """math-verify as its README calls it; a bare gold answer is boxed so that its LaTeX parser reads it."""
        delimited = "\\boxed" in gold or re.search(r"(?<!\\)\$", gold)     # not an escaped \$ (a price)
        return mv_verify(mv_parse(gold if delimited else "\\boxed{" + gold + "}"), mv_parse(output))

    graders = {"reward.py": lambda o, g: reward.verify(o, g, strict=args.strict), "math-verify": theirs}
    # Warm both up outside the clock: lazy imports, and our sympy worker's start (about a second).
    for fn in graders.values():
        fn("\\boxed{\\sqrt{8}}", "2\\sqrt{2}")
    print(f"reward.py strict={args.strict}; math-verify parse(gold) / parse(response), default configs")
    report("Reference solutions and perturbed answers (GSM8K test, MATH500)",
           reference_pairs(args.data_dir, args.limit), graders, show=args.show)
    report("Shapes (tests/test_reward.py labelled cases, and GAMING: answers written to game the grader)",
           shape_pairs(), graders, by_group=True, show=args.show)
    if args.pairs:
        report(f"Labelled pairs from {args.pairs}", file_pairs(args.pairs), graders, by_group=True, show=args.show)


if __name__ == "__main__":
    main()
