"""How often does a model solve each level of the synthetic problems? (data/README.md quotes it.)

    python bench/synthetic_accuracy.py --model smollm2-135m --problems 32 --samples 4

For each difficulty level: the mean reward of `samples` answers per problem at temperature 1
(what GRPO sees while training), and the greedy accuracy, under two instructions: the demo's
"The answer is N." sentence (graded with reward.py's fallbacks) and the \\boxed{} instruction
(graded leniently and strictly, box only). A level where the model earns some but not all
reward is one where GRPO has a signal to learn from.
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import rollout  # noqa: E402
from data import load_problems  # noqa: E402
from reward import math_reward  # noqa: E402
from train_grpo import PRESETS  # noqa: E402

INSTRUCTIONS = {"sentence": PRESETS["cpu_demo"]["instruction"], "boxed": rollout.BOXED_INSTRUCTION}


def accuracy(model, tokenizer, problems, instruction, samples, temperature, max_new_tokens, strict):
    out = rollout.sample(model, rollout.encode_problems(tokenizer, problems, "chat", instruction), max_new_tokens,
                         temperature=temperature,
                         eos_token_id=tokenizer.stop_token_ids, seed=0, n=samples, pad_token_id=tokenizer.pad_token_id)
    answers = tokenizer.batch_decode(out.completion_ids, skip_special_tokens=True)
    rewards = [math_reward(a, problems[k]["answer"], strict=strict) for a, k in zip(answers, out.prompt_index)]
    return sum(rewards) / len(rewards)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--levels", default="1,2,3,4,5")
    parser.add_argument("--problems", type=int, default=32, help="problems per level")
    parser.add_argument("--samples", type=int, default=4, help="samples per problem at temperature 1")
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1234, help="problem seed (not the training default 0)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model, tokenizer = rollout.load_model(args.model)
    print(f"model {args.model}; {args.problems} problems per level; {args.samples} samples at T=1; "
          f"max_new_tokens {args.max_new_tokens}\n")
    print("| level | sentence, T=1 | sentence, greedy | boxed, T=1 | boxed, greedy | boxed strict, T=1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for level in map(int, args.levels.split(",")):
        problems = load_problems(f"synthetic:{level}", n=args.problems, seed=args.seed)
        cells = []
        for name, temperature, samples, strict in [("sentence", 1.0, args.samples, False), ("sentence", 0.0, 1, False),
                                                    ("boxed", 1.0, args.samples, False), ("boxed", 0.0, 1, False),
                                                    ("boxed", 1.0, args.samples, True)]:
            cells.append(accuracy(model, tokenizer, problems, INSTRUCTIONS[name], samples, temperature,
                                  args.max_new_tokens, strict))
        print(f"| {level} | " + " | ".join(f"{100 * c:.1f}%" for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
