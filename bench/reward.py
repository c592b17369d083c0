"""Benchmark reward.verify against Hugging Face math-verify, in the same run on the same pairs.

Pairs come from the GSM8K test set and MATH500: each reference solution graded against its gold answer
(label: correct), and the same solution with its final answer perturbed (label: wrong). Prints
verifications per second and p99 latency of both, their agreement, each grader's accuracy against
these labels, and every disagreement for a human to inspect.

    python bench/reward.py [--data_dir ../shared/data] [--limit N]

math-verify is a benchmark-only dependency: `make bench-deps` (or pip install -r requirements-bench.txt).
"""
import argparse
import json
import os
import re
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import reward  # noqa: E402


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


def build_pairs(data_dir, limit=None):
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


def time_calls(fn, pairs):
    verdicts, latencies = [], []
    for _, output, gold, _ in pairs:
        t = time.perf_counter()
        verdicts.append(bool(fn(output, gold)))
        latencies.append(time.perf_counter() - t)
    return verdicts, latencies


def p99(xs):
    return sorted(xs)[min(len(xs) - 1, int(0.99 * len(xs)))]


def main():
    default_dir = os.environ.get("HICRA_DATA_DIR", os.path.join(ROOT, "..", "shared", "data"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data_dir", default=default_dir, help="folder holding gsm8k/ and math500/ (default: %(default)s)")
    ap.add_argument("--limit", type=int, default=None, help="rows per data set (default: all)")
    ap.add_argument("--show", type=int, default=1000, help="disagreements to print (default: %(default)s)")
    args = ap.parse_args()
    try:
        from math_verify import parse as mv_parse, verify as mv_verify
    except ImportError:
        sys.exit("math-verify is not installed: run `make bench-deps` (pip install -r requirements-bench.txt)")

    def theirs(output, gold):
        return mv_verify(mv_parse("\\boxed{" + gold + "}"), mv_parse(output))

    pairs = build_pairs(args.data_dir, args.limit)
    # Warm both up outside the clock: lazy imports, and our sympy worker's start (about a second).
    for fn in (reward.verify, theirs):
        fn("\\boxed{\\sqrt{8}}", "2\\sqrt{2}")
    ours_v, ours_t = time_calls(reward.verify, pairs)
    theirs_v, theirs_t = time_calls(theirs, pairs)

    n = len(pairs)
    labels = [p[3] for p in pairs]
    agree = sum(a == b for a, b in zip(ours_v, theirs_v))
    print(f"pairs: {n} ({sum(labels)} reference answers, {n - sum(labels)} perturbed)")
    print(f"{'grader':<12} {'verif/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'acc vs labels':>14}")
    for name, v, t in (("reward.py", ours_v, ours_t), ("math-verify", theirs_v, theirs_t)):
        acc = sum(a == b for a, b in zip(v, labels)) / n
        print(f"{name:<12} {n / sum(t):9.1f} {sorted(t)[n // 2] * 1e3:8.2f} {p99(t) * 1e3:8.2f} "
              f"{max(t) * 1e3:8.1f} {acc:14.2%}")
    print(f"speed ratio (ours / math-verify): {sum(theirs_t) / sum(ours_t):.1f}x")
    print(f"agreement: {agree}/{n} = {agree / n:.2%}")
    shown = 0
    for (src, output, gold, label), a, b in zip(pairs, ours_v, theirs_v):
        if a != b and shown < args.show:
            shown += 1
            print(f"- {src}: label={label} ours={a} math-verify={b} gold={gold!r} "
                  f"extracted={reward.extract_answer(output)!r}")


if __name__ == "__main__":
    main()
