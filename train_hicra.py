"""HICRA: GRPO plus one change, read this file to see the whole method.

    python train_hicra.py --model Qwen/Qwen2.5-0.5B --prompt_style plain                # one GPU
    torchrun --nproc_per_node 8 train_hicra.py --preset paper_qwen3_4b_instruct       # a paper run (presets.py)
    python train_hicra.py --preset cpu_demo                                           # offline, CPU

Hierarchy-Aware Credit Assignment (Wang et al., arXiv 2509.03646). GRPO spreads one advantage
over every token of a response, and most tokens are low-level execution (arithmetic,
substitutions). HICRA finds the planning tokens of a response, the ones inside a Strategic Gram
("let's try a different approach", "but the problem says", "wait"), and amplifies their
advantage before the loss (the grams: the paper's published list, data/paper_strategic_grams.txt):

    A_hicra = A + alpha * |A|   on planning tokens        (alpha = 0.2 in every paper experiment)
    A_hicra = A                 on execution tokens

so a correct response's planning tokens get 1.2 A, a wrong one's get 0.8 A (less blame), and
A = 0 stays 0. The mask carries no gradient, nothing is renormalised afterwards, and the same
clipped surrogate consumes the result. Everything else is train_grpo.py, unchanged.

`--mask` picks which tokens are amplified, for the paper's ablations:
  strategic     tokens inside Strategic Grams (HICRA)
  random_grams  the paper's placebo: tokens inside the n-grams of a random list (--placebo_grams, made by
                `strategic_grams.py placebo`), which marks as much of such responses as the real list
  random        a stricter placebo: random spans of the same responses marking exactly as many tokens
                as the Strategic Grams would (per response), so only *which* tokens differs
  entropy       the top `entropy_top_frac` (30%) highest-entropy tokens of each response: this project's
                reading of the paper's high-entropy baseline ("advantage modulation on high-entropy tokens",
                citing Cheng et al. and Wang et al. 2025d), whose definition the paper does not give. It
                follows Wang et al. ("Beyond the 80/20 Rule", arXiv 2506.01939: the high-entropy "forking"
                tokens, their top 20%) and Cheng et al. ("Reasoning with Exploration: An Entropy Perspective",
                arXiv 2506.14758: an advantage term that grows with entropy), with the paper's own cut for a
                high-entropy token, 30% (its Figure 10), and HICRA's amplification in place of their terms
The planning-token metrics always use --grams, whatever the mask.
"""

from __future__ import annotations

import functools
import math
import random
import sys
from dataclasses import dataclass

import torch

import strategic_grams
import train_grpo
from checks import fraction, non_negative
from data import DataError
from rollout import ModelLoadError
from runsetup import load_grams

MASKS = ("strategic", "random_grams", "random", "entropy")


@dataclass
class HicraConfig(train_grpo.Config):
    out_dir: str = "runs/hicra"
    grams: str = "paper"                      # the paper's published list; "mined" (data/README.md) or a file
    alpha: float = 0.2                        # the paper's value
    mask: str = "strategic"                   # strategic | random_grams (the paper's placebo) | random | entropy
    placebo_grams: str = ""                   # --mask random_grams: the random list (strategic_grams.py placebo)
    entropy_top_frac: float = 0.3             # --mask entropy (this project's reading): fraction of each response amplified


def hicra_advantages(advantages: torch.Tensor, planning_mask: torch.Tensor, alpha: float) -> torch.Tensor:
    """A + alpha * |A| where planning_mask is set, A elsewhere. Shapes [B, T]; returns a new tensor."""
    mask = planning_mask.detach().to(advantages.dtype)                      # [B, T], no gradient
    return advantages + alpha * advantages.abs() * mask                     # [B, T]


def random_span_mask(lengths: list[int], counts: list[int], seeds: list[int], max_span: int = 5) -> torch.Tensor:
    """Placebo mask [B, max(lengths)]: in response i, random token spans (1..max_span tokens, like
    short n-grams) until exactly counts[i] tokens are marked, drawn with seeds[i]."""
    mask = torch.zeros(len(lengths), max(lengths))
    for i, (length, count, seed) in enumerate(zip(lengths, counts, seeds)):
        rng = random.Random(seed)
        free = length - int(mask[i, :length].sum())
        while count > 0 and free > 0:
            span = min(rng.randint(1, max_span), count)
            start = rng.randrange(length)
            for t in range(start, min(start + span, length)):
                if mask[i, t] == 0 and count > 0:
                    mask[i, t], count, free = 1.0, count - 1, free - 1
    return mask


def entropy_mask(entropy: torch.Tensor, lengths: list[int], top_frac: float) -> torch.Tensor:
    """[B, T] mask of the ceil(top_frac * length) highest-entropy tokens of each response."""
    mask = torch.zeros_like(entropy)
    for i, length in enumerate(lengths):
        k = math.ceil(top_frac * length)
        if k:
            mask[i, entropy[i, :length].topk(k).indices] = 1.0
    return mask


def shape_advantages(advantages, completion_ids, entropy, tokenizer, grams, cfg, row_seeds):
    """The hook train_grpo.grpo_step calls right after the group advantages, before the log-probs, a pure function: choose the tokens
    to amplify (--mask) and return (A + alpha|A| on them, their mask). advantages, entropy: [B, T];
    row_seeds: each rollout's own seed (the placebo draws its spans from it)."""
    lengths, width = [len(c) for c in completion_ids], advantages.shape[1]
    if cfg.mask == "entropy":
        mask = entropy_mask(entropy, lengths, cfg.entropy_top_frac)                          # [B, T]
    elif cfg.mask == "random_grams":
        mask = strategic_grams.planning_masks(tokenizer, completion_ids, placebo_list(cfg.placebo_grams), width)
    else:
        mask = strategic_grams.planning_masks(tokenizer, completion_ids, grams, width)       # [B, T]
        if cfg.mask == "random":   # as many tokens per response as the grams mark, elsewhere
            counts = mask.sum(dim=1).long().tolist()
            mask = random_span_mask(lengths, counts, row_seeds)
            mask = torch.nn.functional.pad(mask, (0, width - mask.shape[1]))                 # [B, T]
    return hicra_advantages(advantages, mask, cfg.alpha), mask


@functools.cache
def placebo_list(path: str) -> list[str]:
    return load_grams(path, "--placebo_grams")


CHECKS = train_grpo.CHECKS + [
    ("alpha", non_negative, "a number >= 0 (0 = plain GRPO)"),
    ("entropy_top_frac", fraction, "a number in (0, 1]"),
]


def main(argv=None):
    try:
        cfg = train_grpo.parse_config(argv, HicraConfig, CHECKS)
        train_grpo.check_config(cfg, CHECKS)
        if cfg.mask not in MASKS:
            raise train_grpo.ConfigError(f"--mask {cfg.mask!r}: choose from {', '.join(MASKS)}")
        if not cfg.grams:
            raise train_grpo.ConfigError("--grams: HICRA needs a Strategic Gram list (paper, mined or a file)")
        if cfg.mask == "random_grams":
            if not cfg.placebo_grams:
                raise train_grpo.ConfigError("--mask random_grams: needs --placebo_grams FILE (strategic_grams.py placebo)")
            placebo_list(cfg.placebo_grams)   # a missing or empty list fails now, in one line
        train_grpo.train(cfg, shape_advantages=shape_advantages, name=f"hicra ({cfg.mask})")
    except (train_grpo.ConfigError, DataError, ModelLoadError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
