"""Which CPU-sized task suits the ablation? The offline SmolLM2-135M must learn it, and its correct
responses must hold the paper's planning phrases, so that HICRA amplifies reasoning connectives rather
than the answer format (issue 16; README "The ablation on the CPU").

    python bench/cpu_task.py --problems 32 --samples 4

For each candidate (problems x instruction), `samples` answers per problem at `--temperature` (1 by default,
the paper's training temperature; the chosen CPU task trains at 0.7), graded by reward.math_reward, and:
  reward    the mean reward; `signal` the share of problems whose answers are neither all right nor all
            wrong (groups GRPO learns from), `length` the mean response length in tokens;
  grams     over the correct responses: the share holding at least one of the paper's Strategic Grams,
            the share of their tokens marked as planning tokens, and the grams matched most often;
and one correct response per candidate with its planning tokens in [[ ]].
"""

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import rollout  # noqa: E402
import strategic_grams  # noqa: E402
from data import load_problems  # noqa: E402
from reward import math_reward  # noqa: E402
from steplog import mark_tokens  # noqa: E402
from train_grpo import PRESETS, STEP_BY_STEP as STEPS  # noqa: E402

SENTENCE = PRESETS["cpu_demo"]["instruction"]


def easy_gsm8k(n: int, seed: int) -> list[dict]:
    """GSM8K training problems whose reference solution takes at most two calculations."""
    rows = [p for p in load_problems("gsm8k:train") if p.get("solution", "").count("<<") <= 2]
    return rows[seed % 7::7][:n]


CANDIDATES = {   # name: (problems(n, seed), instruction)
    "one-digit sums (the demo)": (lambda n, s: load_problems("synthetic:1", n=n, seed=s), SENTENCE),
    "one-digit sums, step by step": (lambda n, s: load_problems("synthetic:1", n=n, seed=s), STEPS),
    "products and equations, step by step": (lambda n, s: load_problems("synthetic:3", n=n, seed=s), STEPS),
    "two-step word problems": (lambda n, s: load_problems("synthetic:6", n=n, seed=s), SENTENCE),
    "two-step word problems, step by step": (lambda n, s: load_problems("synthetic:6", n=n, seed=s), STEPS),
    "three one-digit numbers (level 7)": (lambda n, s: load_problems("synthetic:7", n=n, seed=s), SENTENCE),
    "three one-digit numbers, step by step": (lambda n, s: load_problems("synthetic:7", n=n, seed=s), STEPS),
    "GSM8K, two calculations at most, step by step": (easy_gsm8k, STEPS),
}


def measure(model, tokenizer, problems, instruction, samples, max_new_tokens, grams, seed, temperature=1.0):
    prompts = rollout.encode_problems(tokenizer, problems, "chat", instruction)
    out = rollout.sample(model, prompts, max_new_tokens, temperature=temperature, eos_token_id=tokenizer.stop_token_ids,
                         seed=seed, n=samples, pad_token_id=tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(out.completion_ids, skip_special_tokens=True)
    rewards = [math_reward(t, problems[k]["answer"]) for t, k in zip(texts, out.prompt_index)]
    groups = [rewards[i:i + samples] for i in range(0, len(rewards), samples)]
    right = [i for i, r in enumerate(rewards) if r > 0.5]
    masks = [strategic_grams.planning_mask(tokenizer, out.completion_ids[i], grams) for i in right]
    counts = Counter()
    for i in right:
        counts.update(strategic_grams.count_grams(texts[i], grams))
    example = next((mark_tokens(tokenizer, out.completion_ids[i], [float(x) for x in m])
                    for i, m in zip(right, masks) if any(m)), None)
    return {
        "reward": sum(rewards) / len(rewards),
        "signal": sum(0 < sum(g) < len(g) for g in groups) / len(groups),
        "length": sum(map(len, out.completion_ids)) / len(texts),
        "right": len(right),
        "with_gram": sum(any(m) for m in masks) / max(1, len(masks)),
        "planning_share": sum(map(sum, masks)) / max(1, sum(map(len, masks))),
        "top": ", ".join(f"{g} {c}" for g, c in counts.most_common(8)),
        "example": example,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max_new_tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (GRPO trains at 1.0)")
    parser.add_argument("--candidates", default="", help="comma-separated numbers (1-based) of CANDIDATES; default all")
    parser.add_argument("--seed", type=int, default=1234, help="problem seed (not the training default 0)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model, tokenizer = rollout.load_model(args.model)
    grams = strategic_grams.load_grams("paper")
    chosen = [int(c) for c in args.candidates.split(",")] if args.candidates else range(1, len(CANDIDATES) + 1)
    print(f"model {args.model}; {args.problems} problems x {args.samples} samples at T={args.temperature:g}; up to "
          f"{args.max_new_tokens} new tokens; the paper's {len(grams)} grams\n")
    print("| candidate | reward | signal | length | correct | with a gram | planning tokens | grams matched most |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    examples = []
    for number in chosen:
        name = list(CANDIDATES)[number - 1]
        make, instruction = CANDIDATES[name]
        r = measure(model, tokenizer, make(args.problems, args.seed), instruction, args.samples, args.max_new_tokens,
                    grams, args.seed, args.temperature)
        print(f"| {name} | {r['reward']:.3f} | {r['signal']:.2f} | {r['length']:.0f} | {r['right']} | "
              f"{r['with_gram']:.2f} | {r['planning_share']:.3f} | {r['top']} |", flush=True)
        examples.append((name, r["example"]))
    for name, example in examples:
        print(f"\n{name}: {example!r}")


if __name__ == "__main__":
    main()
