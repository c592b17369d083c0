"""GRPO for math reasoning with verifiable rewards, in one loop you can read top to bottom.

    python train_grpo.py --model Qwen/Qwen2.5-0.5B --dataset math:train_level3to5   # one GPU
    python train_grpo.py --preset cpu_demo                                          # offline, CPU

Each step (grpo_step): sample G rollouts for each of `batch_size` prompts (rollout.sample) ->
reward each one (reward.math_reward: 1 if the final answer is right) -> group-relative advantages
A = (r - mean_group) / std_group on every token of the rollout -> teacher-forced log-probs -> the
PPO clipped surrogate with clip-higher -> backward -> AdamW step.

What it keeps from the textbook, and what it drops:
  - kept: PPO's clipped ratio with DAPO's asymmetric clip (eps_low 0.2, eps_high 0.28), several
    PPO epochs / mini-batches if asked, three loss aggregations (DAPO's token mean, the original
    GRPO's per-sequence mean, Dr. GRPO's constant normaliser), optional k3 KL to a frozen
    reference, optional entropy bonus (the paper's entropy-regularisation baseline), optional
    DAPO dynamic-sampling filter (drop groups whose rewards are all equal: they carry no signal).
  - dropped: a value network (GRPO's group baseline replaces it), reward models (the reward is
    verified), and the KL term by default (DAPO-style setups run without it; with kl_coef = 0
    no reference model is loaded at all).
  - old log-probs: on-policy (one PPO epoch, one mini-batch, the default) the policy that sampled
    is the one being updated, so the loss uses logp.detach() (ratio 1: the plain policy
    gradient) and no extra forward is spent. With several epochs or mini-batches they are
    recomputed before the first update by a no-grad pass of the very forward the update runs, not
    taken from the sampler, so the ratio compares the same computation (the sampler's log-probs
    match it in float32, but not in bf16: on CUDA the sampler is a bf16 copy of the weights).
    Per-token entropies for metrics and HICRA's entropy mask come from the sampler.

A method plugs in at one place: `shape_advantages`, called with the per-token advantages just
before the loss (HICRA: train_hicra.py). With --grams the paper's planning-token metrics are logged
too (strategic_grams.planning_metrics), for GRPO runs as for HICRA ones.

Several GPUs: `torchrun --nproc_per_node N train_grpo.py ...` (DDP; --fsdp shards with FSDP2). Each
rank owns whole groups of the step's prompts (--batch_size stays the global count), and every
rollout draws from a random stream of its own, so N ranks sample and learn exactly what one would.
Reading for the algorithm, ignore it: with one process every distributed helper is a no-op.

The file: the config and its checks, the math (advantages, aggregation, the loss), the loop
(train, grpo_step), data and evaluation, then the speed machinery (teacher-forced log-probs with a
shared prompt pass, micro-batch planning) and the plumbing (run folder, checkpoints, Ctrl-C, logs).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import hashlib
import itertools
import json
import math
import os
import pickle
import random
import re
import shutil
import signal
import sys
import time
import typing
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import safe_open
from torch.nn.parallel import DistributedDataParallel
from transformers import DynamicCache

import checks
import eval as evaluation
import rollout
import runfolder
import strategic_grams
from checks import at_least, fraction, non_negative, number, positive
from data import DataError, load_problems, problem_key
from reward import math_reward

# Each loss aggregation (aggregate below) and what it averages over. The update splits a mini-batch into
# micro-batches and weights each by its share of these (micro_batch_plan), so a new aggregation is added here
# with its unit, or --loss_agg refuses it; tests/test_grpo.py checks every one against the unsplit gradient.
AGGREGATIONS = {"token_mean": "tokens", "seq_mean_token_mean": "sequences", "dr_grpo": "sequences"}


class ConfigError(ValueError):
    """A setting that cannot work; the message is one line naming the flag."""


@dataclass
class Config:
    # model and data
    model: str = "Qwen/Qwen2.5-0.5B"        # HF folder, Hub id, or the offline alias smollm2-135m
    dataset: str = "math:train_level3to5"   # name, name:split, .jsonl path, or synthetic:<level>
    data_dir: str = ""                      # default: $HICRA_DATA_DIR (see data/__init__.py)
    num_problems: int = 0                   # 0 = all problems (synthetic: 2000 generated)
    prompt_style: str = ""                  # chat | plain; default: chat for instruct models
    instruction: str = rollout.BOXED_INSTRUCTION
    strict_box: bool = True                 # reward only \boxed{} answers, as the paper's training and evaluation do
    out_dir: str = "runs/grpo"
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    seed: int = 0
    deterministic: bool = True              # PyTorch's deterministic algorithms: a rerun gives the same run
    fsdp: bool = False                      # under torchrun: shard the model with FSDP2 (else DDP replicates it)
    dist_timeout: float = 10.0              # under torchrun: minutes a rank waits for the others before failing
    # rollouts
    max_steps: int = 200
    batch_size: int = 32                    # prompts per step
    group_size: int = 8                     # rollouts per prompt (G)
    max_new_tokens: int = 1024
    temperature: float = 1.0
    top_p: float = 1.0
    sampler_dtype: str = "auto"             # auto (bfloat16 on CUDA, else float32) | float32 | bfloat16
    cuda_graphs: bool = False               # decode through captured CUDA graphs (rollout.DecodeGraphs)
    # advantages and loss
    scale_by_std: bool = True               # False = Dr. GRPO (no division by the group std)
    skip_zero_var: bool = False             # DAPO dynamic sampling: drop groups with equal rewards
    mask_truncated: bool = False            # no loss on responses cut at max_new_tokens
    eps_low: float = 0.2
    eps_high: float = 0.28
    loss_agg: str = "token_mean"            # token_mean | seq_mean_token_mean | dr_grpo
    kl_coef: float = 0.0                    # k3 KL to the initial model; 0 = no reference model
    entropy_coef: float = 0.0               # entropy bonus (the paper's entropy baseline)
    grams: str = ""                         # Strategic Grams (paper | mined | a file): log planning-token metrics
    # optimisation
    lr: float = 1e-6
    weight_decay: float = 0.0
    warmup_steps: int = 10
    lr_schedule: str = "constant"           # constant | cosine (after warm-up)
    grad_clip: float = 1.0
    ppo_epochs: int = 1
    mini_batches: int = 1                   # optimizer steps per PPO epoch
    micro_batch_tokens: int = 16384         # token budget of one forward/backward (padded)
    logprob_chunk: int = 512                # tokens (rows x positions) per vocabulary-projection chunk
    grad_checkpointing: bool = False
    max_bad_steps: int = 3                  # stop after this many non-finite updates in a row
    # evaluation, logging, checkpoints
    eval_every: int = 25                    # 0 = never; else before steps 0, k, 2k, ... and after the last
    eval_dataset: str = ""                  # default: problems of the training source held out of training
    eval_size: int = 128
    eval_temperature: float = 0.0
    save_every: int = 50                    # 0 = only at the end; -1 = never but on Ctrl-C (benchmarks)
    resume: bool = False
    log_rollouts: int = 4                   # rollouts per step to rollouts.jsonl (>= batch x G: all, for mining)
    plot: bool = True                       # write metrics.png at the end
    wandb_project: str = ""                 # log to Weights & Biases too (if installed)
    preset: str = ""                        # cpu_demo: a small offline run that finishes in minutes


PRESETS = {
    # SmolLM2-135M-Instruct on single-digit sums, answered in words (it solves ~10% at temperature 1,
    # see data/README.md): about a minute a step on 2 CPU cores, most of it the update.
    "cpu_demo": dict(model="smollm2-135m", dataset="synthetic:1", num_problems=512, batch_size=8,
                     group_size=8, max_new_tokens=48, lr=1e-5, warmup_steps=0, max_steps=6, eval_every=3,
                     eval_size=32, save_every=3, micro_batch_tokens=8192, strict_box=False,
                     instruction="Give the result as a sentence of the form 'The answer is N.'"),
}
# The CPU ablation's task (bench/cpu_task.py, data/README.md): the same sums, solved in words first, so that
# correct responses carry reasoning connectives ("So,", "to find", "start by") for HICRA to mark rather than
# only the answer sentence; sampled at T=0.7 because at T=1 the 135M model mostly writes unrelated text.
STEP_BY_STEP = "Solve it step by step, then end with a sentence of the form 'The answer is N.'"
PRESETS["cpu_ablation"] = dict(PRESETS["cpu_demo"], max_new_tokens=64, temperature=0.7, instruction=STEP_BY_STEP)


def parse_config(argv=None, config_class=Config, checks_table=None) -> Config:
    """Every Config field is a flag (`--lr 1e-5`, `--scale_by_std false`); a preset sets defaults.
    --help shows each flag's default and, from the checks table, what it needs."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    needs = {flag: need for flag, _, need in (checks_table or CHECKS)}
    hints = typing.get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        help_text = (needs.get(f.name, "") + " (default: %(default)s)").strip()
        kind, optional = _flag_type(hints[f.name], f.name)
        if kind is bool and not optional:
            parser.add_argument(f"--{f.name}", type=_bool, nargs="?", const=True, default=f.default, help=help_text)
        else:
            convert = _bool if kind is bool else kind
            parser.add_argument(f"--{f.name}", default=f.default, help=help_text,
                                type=(lambda text, convert=convert: None if text.lower() in ("none", "null") else
                                      convert(text)) if optional else convert)
    args = parser.parse_args(argv)
    given = {a.lstrip("-").split("=")[0] for a in (argv if argv is not None else sys.argv[1:]) if a.startswith("--")}
    values = vars(args)
    if args.preset:
        if args.preset not in PRESETS:
            parser.error(f"--preset {args.preset!r}: choose from {', '.join(PRESETS)}")
        values.update({k: v for k, v in PRESETS[args.preset].items() if k not in given})
    return config_class(**values)


def _flag_type(hint, name: str) -> tuple[type, bool]:
    """(int | float | str | bool, whether None is allowed) for a Config field's annotation: int, float, str,
    bool, and each of them `| None` or Optional[...] (then --flag none gives None)."""
    args = typing.get_args(hint)
    optional = type(None) in args
    kinds = [a for a in args if a is not type(None)] if args else [hint]
    if len(kinds) != 1 or kinds[0] not in (int, float, str, bool):
        raise TypeError(f"Config field {name}: {hint} is not a flag type (int, float, str, bool, or one of them | None)")
    return kinds[0], optional


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


# What each numeric flag needs. 0 means "off" where a flag's comment in Config says so.
CHECKS = [
    ("num_problems", at_least(0), "an integer >= 0 (0 = all)"),
    ("max_steps", at_least(1), "an integer >= 1"),
    ("batch_size", at_least(1), "at least one prompt per step"),
    ("group_size", at_least(2), ">= 2 rollouts per prompt: GRPO compares the rollouts of a prompt"),
    ("max_new_tokens", at_least(1), "an integer >= 1"),
    ("temperature", positive, "a number > 0 (training samples)"),
    ("top_p", fraction, "a number in (0, 1]"),
    ("eps_low", lambda x: number(x) and 0 < x < 1, "a number in (0, 1)"),
    ("eps_high", positive, "a number > 0"),
    ("kl_coef", non_negative, "a number >= 0 (0 = no KL term)"),
    ("entropy_coef", non_negative, "a number >= 0 (0 = no entropy bonus)"),
    ("lr", fraction, "a number in (0, 1]"),
    ("weight_decay", non_negative, "a number >= 0"),
    ("warmup_steps", at_least(0), "an integer >= 0"),
    ("grad_clip", non_negative, "a number >= 0 (0 = no clipping)"),
    ("ppo_epochs", at_least(1), "an integer >= 1"),
    ("mini_batches", at_least(1), "an integer >= 1"),
    ("micro_batch_tokens", at_least(1), "an integer >= 1"),
    ("logprob_chunk", at_least(1), "an integer >= 1"),
    ("max_bad_steps", at_least(1), "an integer >= 1"),
    ("eval_every", at_least(0), "an integer >= 0 (0 = never)"),
    ("eval_size", at_least(1), "an integer >= 1 (to skip evaluation: --eval_every 0)"),
    ("eval_temperature", non_negative, "a number >= 0 (0 = greedy)"),
    ("save_every", at_least(-1), "an integer >= -1 (0 = only at the end, -1 = only on Ctrl-C)"),
    ("log_rollouts", at_least(0), "an integer >= 0"),
    ("dist_timeout", positive, "minutes > 0"),
]


def check_config(cfg: Config, table=CHECKS):
    """Nonsense settings fail here, in one line naming the flag, before any model is loaded."""
    message = checks.problem(dataclasses.asdict(cfg), table)
    cross = [
        (cfg.loss_agg not in AGGREGATIONS, f"--loss_agg {cfg.loss_agg!r}: choose from {', '.join(AGGREGATIONS)}"),
        (cfg.lr_schedule not in ("constant", "cosine"), f"--lr_schedule {cfg.lr_schedule!r}: constant or cosine"),
        (cfg.prompt_style not in ("", "chat", "plain"), f"--prompt_style {cfg.prompt_style!r}: chat or plain"),
        (cfg.sampler_dtype not in ("auto", "float32", "bfloat16"),
         f"--sampler_dtype {cfg.sampler_dtype!r}: auto, float32 or bfloat16"),
        (cfg.mini_batches > cfg.batch_size * cfg.group_size,
         f"--mini_batches {cfg.mini_batches}: more than the {cfg.batch_size * cfg.group_size} rollouts of a step"),
    ]
    message = message or next((text for bad, text in cross if bad), None) or checks.device_problem(cfg.device)
    if message:
        raise ConfigError(message)


# ----------------------------------------------------------------------------- the math of GRPO

def group_advantages(rewards: torch.Tensor, scale_by_std: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """rewards [num_prompts, G] -> advantages [num_prompts, G]: r - group mean, over the group std.

    The std is the unbiased one (torch.std); a group whose rewards are all equal gets A = 0.
    """
    centered = rewards - rewards.mean(dim=1, keepdim=True)                   # [P, G]
    if not scale_by_std:
        return centered
    return centered / (rewards.std(dim=1, keepdim=True) + eps)               # [P, G]


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, agg: str = "token_mean",
              norm_len: int | None = None) -> torch.Tensor:
    """Reduce a [B, T] per-token quantity over the response tokens (mask 1) to a scalar.

    A row whose mask is all 0 (a sequence dropped by a filter) is not in the batch: it counts in
    no mean, per token or per sequence."""
    mask = mask.to(per_token.dtype)
    num_seqs = (mask.sum(-1) > 0).sum().clamp(min=1)                         # rows that take part
    if agg == "token_mean":          # DAPO: every token of the batch weighs the same
        return (per_token * mask).sum() / mask.sum().clamp(min=1)
    if agg == "seq_mean_token_mean":  # original GRPO: mean per sequence, then over sequences
        per_seq = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)     # [B]
        return per_seq.sum() / num_seqs
    if agg == "dr_grpo":             # Dr. GRPO: sum per sequence over a constant length, no length bias
        norm_len = norm_len or mask.shape[-1]
        return (per_token * mask).sum() / num_seqs / norm_len
    raise ValueError(f"unknown loss aggregation {agg!r}: choose from {', '.join(AGGREGATIONS)}")


def policy_loss(logp, old_logp, advantages, mask, eps_low=0.2, eps_high=0.28, agg="token_mean",
                norm_len=None, stats: dict | None = None) -> torch.Tensor:
    """The clipped surrogate to minimise; all inputs [B, T], advantages per token, mask 0/1.

    With ratio = exp(logp - old_logp): per token -min(ratio * A, clip(ratio, 1 - eps_low,
    1 + eps_high) * A). For A > 0 the ratio is capped at 1 + eps_high, for A < 0 floored at
    1 - eps_low (DAPO's clip-higher lets rare good tokens grow more). No dual clip.
    If `stats` is a dict, it receives clip_frac (fraction of response tokens whose ratio is clipped).
    """
    ratio = torch.exp(logp - old_logp)                                       # [B, T]
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high) * advantages
    loss = aggregate(-torch.minimum(unclipped, clipped), mask, agg, norm_len)
    if stats is not None:
        was_clipped = (clipped < unclipped).float()                          # [B, T]
        stats["clip_frac"] = ((was_clipped * mask).sum() / mask.sum().clamp(min=1)).item()
    return loss


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(policy || reference): exp(d) - d - 1 with d = ref - logp (>= 0)."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


# ----------------------------------------------------------------------------- the loop

def train(cfg: Config, reward_fn=None, shape_advantages=None, name: str = "grpo"):
    """Run GRPO for cfg.max_steps steps (resuming with --resume); returns the trained model.

    reward_fn(response: str, problem: dict) -> float replaces the reward (default: the verified math
    reward, 1 if the final answer is right, with --strict_box as configured). Whatever it returns, the
    verified answer is logged apart as `correct` (rollouts.jsonl, the accuracy metric). Mind the group
    std: with --scale_by_std (the default) A = (r - mean) / std per group, so a small shaping term
    (say -0.001 x length) in a group whose answers are all right, or all wrong, is scaled up to a full
    unit of advantage and decides that group's update alone; --scale_by_std false keeps its size.
    shape_advantages, if given, is the method's hook (see grpo_step). `name` labels the progress bar."""
    try:
        return _train(cfg, reward_fn, shape_advantages, name)
    finally:
        runfolder.release(cfg.out_dir)         # the run folder's lock (runfolder.py), however the run ended


def _train(cfg: Config, reward_fn, shape_advantages, name: str):
    run = start_run(cfg, shape_advantages)   # checks, data, run folder, model, optimizer, resume (below)
    run.reward_fn = reward_fn
    from tqdm import tqdm
    bad_steps, last_good = 0, run.last_good
    with stop_after_step_on_ctrl_c() as stop, tqdm(range(run.start_step, cfg.max_steps), initial=run.start_step,
                                                   total=cfg.max_steps, desc=name, dynamic_ncols=True,
                                                   disable=run.rank > 0) as bar:
        for step in bar:
            # Held-out accuracy of the policy that samples this step (before its update), so the
            # curve starts at the base model; one more evaluation follows the last step.
            evaluated = evaluate(run) if cfg.eval_every and step % cfg.eval_every == 0 else {}
            metrics = grpo_step(run, step) | evaluated
            log_metrics(run, metrics)
            bar.set_postfix({k: f"{metrics[k]:.3g}" for k in ("reward_mean", "response_len_mean", "loss", "eval_accuracy")
                             if k in metrics})
            # Stop on a broken model rather than train on: non-finite weights, or updates skipped in a row.
            bad_steps = bad_steps + 1 if metrics["skipped"] else 0
            if metrics["diverged"] or bad_steps >= cfg.max_bad_steps:
                what = (f"the weights or their outputs became non-finite in step {step}" if metrics["diverged"]
                        else f"{bad_steps} non-finite updates in a row at step {step}")
                where = f"the last good checkpoint is {last_good}" if last_good else "no checkpoint was saved yet"
                raise RuntimeError(f"{what}: stopping (try a lower --lr); {where}")
            done = step + 1
            stop["requested"] = bool(max_over_ranks(run, int(stop["requested"])))   # all ranks stop together
            scheduled = done == cfg.max_steps or (cfg.save_every > 0 and done % cfg.save_every == 0)
            if stop["requested"] or (scheduled and cfg.save_every >= 0):
                last_good = save_checkpoint(run, done)
            if stop["requested"]:
                print(f"saved a checkpoint at step {done}; continue with --resume", file=sys.stderr)
                break
        if cfg.eval_every and not stop["requested"]:   # the trained policy: a row of its own
            log_metrics(run, {"step": cfg.max_steps} | evaluate(run))
    plot_run(run)
    if dist.is_initialized():
        dist.destroy_process_group()
    return run.policy


def grpo_step(run: Run, step: int) -> dict:
    """One step of GRPO on the run's policy; returns the step's metrics (on rank 0; the other ranks
    get what the loop needs to stop in step with it)."""
    cfg, model, tokenizer = run.cfg, run.model, run.tokenizer
    G, device = cfg.group_size, next(model.parameters()).device
    t0 = time.perf_counter()

    # 1. Sample G rollouts for each prompt of the step. Each rank takes whole groups (a block of the
    #    step's prompts); each rollout's random stream is seeded by (seed, step, problem, sample), so
    #    1 or N ranks, resumed or not, sample the same rollouts.
    indices = rank_share(run, batch_at(step, cfg, len(run.train_set)))
    problems = [run.train_set[i] for i in indices]
    prompts = rollout.encode_problems(tokenizer, problems, prompt_style(cfg), cfg.instruction)
    row_seeds = [seed_for(cfg.seed, "rollout", step, i, j) for i in indices for j in range(G)]   # one per rollout
    run.policy.eval()
    phase_peak(device)   # CUDA: count each phase's peak memory from here
    out = rollout.sample(run.policy, prompts, cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                         eos_token_id=tokenizer.stop_token_ids, row_seeds=row_seeds, n=G,
                         pad_token_id=tokenizer.pad_token_id, graphs=cfg.cuda_graphs)
    texts = tokenizer.batch_decode(out.completion_ids, skip_special_tokens=True)
    seq_prompts = [prompts[k] for k in out.prompt_index]      # the prompt of each of the B = P x G rollouts
    t_sampled, peaks = time.perf_counter(), {"sample_peak_gib": phase_peak(device)}

    # 2. Reward each rollout: 1 if its final answer is right, else 0 (or the run's reward_fn).
    correct = [math_reward(t, problems[k]["answer"], strict=cfg.strict_box) for t, k in zip(texts, out.prompt_index)]
    rewards = torch.tensor(correct if run.reward_fn is None else
                           [float(run.reward_fn(t, problems[k])) for t, k in zip(texts, out.prompt_index)])
    rewards = rewards.view(len(problems), G)                                                 # [P, G]
    t_rewarded = time.perf_counter()

    # 3. Advantages: each rollout against the others of its group, on every token of the rollout.
    seq_adv = group_advantages(rewards, cfg.scale_by_std).view(-1)                           # [B]
    T = max(len(c) for c in out.completion_ids)
    tokens_mask = pad_rows([[1.0] * len(c) for c in out.completion_ids], T)                 # [B, T]
    loss_mask = tokens_mask * kept_rollouts(cfg, rewards, out.finished)[:, None]            # [B, T]
    advantages = seq_adv[:, None] * loss_mask                                                # [B, T]
    sampled_logp, entropy = pad_rows(out.logprobs, T), pad_rows(out.entropies, T)           # [B, T]
    marked = None   # the tokens a method singled out, shown in rollouts.jsonl
    if run.shape_advantages is not None:   # the one place a method changes GRPO (HICRA: train_hicra.py)
        advantages, marked = run.shape_advantages(advantages, out.completion_ids, entropy, tokenizer, run.grams,
                                                  cfg, row_seeds)
        advantages = advantages * loss_mask                                                  # [B, T]

    # (optional) The old policy's log-probs for PPO's ratio, by the very forward the update runs (not
    # the sampler's, which may be a bf16 copy), and the KL reference's: by teacher forcing, before any
    # update. On-policy (the default) the ratio is 1 and no forward is spent.
    old_logp = None if on_policy(cfg) else teacher_forced_logprobs(run, model, seq_prompts, out.completion_ids, T)
    ref_logp = None if run.reference is None else \
        teacher_forced_logprobs(run, run.reference, seq_prompts, out.completion_ids, T)      # [B, T]
    t_old, peaks["old_logp_peak_gib"] = time.perf_counter(), phase_peak(device)

    # 4. The update: log-probs -> clipped surrogate -> backward -> optimizer step, per mini-batch
    #    (one mini-batch of all rollouts by default). Speed machinery splits a mini-batch into
    #    micro-batches that fit memory, weighted so their gradients add up to the mini-batch's, and
    #    normalised by the whole step's counts (all ranks), so N ranks compute one rank's gradient.
    kept_tokens = all_rows(run, loss_mask.sum(1))          # [B x ranks] kept tokens of every rollout
    offset = run.rank * len(loss_mask)                     # this rank's rollouts, among all of them
    model.train()
    totals = {"loss": 0.0, "clip_frac": 0.0, "kl": 0.0, "grad_norm": 0.0}
    updates, skipped = 0, False
    for members in mini_batches(cfg, step, kept_tokens):
        for group in run.optimizer.param_groups:
            group["lr"] = lr_at(cfg, step)
        run.optimizer.zero_grad(set_to_none=True)
        mb_tokens, mb_seqs = kept_tokens[members].sum().item(), len(members)
        mine = [i - offset for i in members if offset <= i < offset + len(loss_mask)]
        loss_sum, clip_sum, kl_sum = 0.0, 0.0, 0.0
        for idx, weight, sync in micro_batch_plan(run, mine, seq_prompts, out.completion_ids, loss_mask,
                                                  mb_tokens, mb_seqs):
            with run.autocast, sync:
                logp, logp_entropy = completion_logprobs(model, [seq_prompts[i] for i in idx],
                                                         [out.completion_ids[i] for i in idx], tokenizer.pad_token_id,
                                                         cfg.logprob_chunk, with_entropy=cfg.entropy_coef > 0)  # [b, t]
                t = logp.shape[1]
                mask, adv = loss_mask[idx, :t].to(device), advantages[idx, :t].to(device)                  # [b, t]
                old = logp.detach() if old_logp is None else old_logp[idx, :t].to(device)  # on-policy: ratio 1
                stats = {}
                loss = policy_loss(logp, old, adv, mask, cfg.eps_low, cfg.eps_high, cfg.loss_agg,
                                   norm_len=cfg.max_new_tokens, stats=stats)
                if cfg.kl_coef > 0:            # (optional) k3 KL to the initial model
                    kl = kl_k3(logp, ref_logp[idx, :t].to(device))                                        # [b, t]
                    loss = loss + cfg.kl_coef * aggregate(kl, mask, cfg.loss_agg, cfg.max_new_tokens)
                    kl_sum += (kl.detach() * mask).sum().item()   # logged per token, whatever the aggregation
                if cfg.entropy_coef > 0:       # (optional) entropy bonus: the paper's entropy baseline
                    loss = loss - cfg.entropy_coef * aggregate(logp_entropy, mask, cfg.loss_agg, cfg.max_new_tokens)
                (loss * (weight * run.world)).backward()   # x world: DDP and FSDP average the ranks' gradients
            loss_sum += loss.item() * weight
            clip_sum += stats.get("clip_frac", 0.0) * mask.sum().item()
        loss_sum, clip_sum, kl_sum = sum_over_ranks(run, loss_sum, clip_sum, kl_sum)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or math.inf))
        if not (math.isfinite(loss_sum) and math.isfinite(grad_norm)):
            run.optimizer.zero_grad(set_to_none=True)   # skip a non-finite update, keep the weights
            skipped = True
            continue
        run.optimizer.step()
        updates += 1
        for key, value in (("loss", loss_sum), ("clip_frac", clip_sum / mb_tokens), ("kl", kl_sum / mb_tokens),
                           ("grad_norm", grad_norm)):
            totals[key] += value
    run.optimizer.zero_grad(set_to_none=True)   # gradients are spent: free their memory for sampling
    refresh_policy(run)   # the sampler's copy of the weights (bf16 on CUDA, FSDP's full weights) follows the update
    model.eval()
    t_end, peaks["update_peak_gib"] = time.perf_counter(), phase_peak(device)

    # 5. Metrics and a sample of the rollouts, on rank 0 over every rank's rollouts. Without an update
    #    (every row filtered, or every update skipped as non-finite) there is no loss or gradient to
    #    report: those keys are left out.
    health = {"step": step, "updates": updates, "skipped": int(skipped),   # an update non-finite, not applied
              "diverged": int(not healthy(run.policy))}                     # non-finite weights or outputs
    rows = gather_rows(run, problems=[problems[k] for k in out.prompt_index], texts=texts,
                       completion_ids=out.completion_ids, finished=out.finished, logprobs=out.logprobs,
                       entropies=out.entropies, advantages=[a[:len(c)].tolist() for a, c in zip(advantages,
                                                                                           out.completion_ids)],
                       seq_adv=seq_adv.tolist(), rewards=rewards.view(-1).tolist(), correct=correct,
                       marked=[None] * len(texts) if marked is None else [m[:len(c)].tolist() for m, c in
                                                                          zip(marked, out.completion_ids)])
    if rows is None:
        return health
    completions = rows["completion_ids"]
    T = max(len(c) for c in completions)
    rewards = torch.tensor(rows["rewards"]).view(-1, G)                                       # [P, G]
    tokens_mask = pad_rows([[1.0] * len(c) for c in completions], T)                         # [B, T]
    entropy, sampled_logp = pad_rows(rows["entropies"], T), pad_rows(rows["logprobs"], T)   # [B, T]
    advantages = pad_rows(rows["advantages"], T)                                             # [B, T]
    resp_len = torch.tensor([len(c) for c in completions], dtype=torch.float32)              # [B]
    metrics = {
        "step": step,
        "reward_mean": rewards.mean().item(),
        "accuracy": sum(rows["correct"]) / len(rows["correct"]),     # the verified answers, whatever the reward
        "pass_at_group": (rewards.max(dim=1).values > 0.5).float().mean().item(),
        "zero_var_frac": (rewards.std(dim=1) == 0).float().mean().item(),
        "response_len_mean": resp_len.mean().item(),
        "response_len_max": int(resp_len.max().item()),
        "truncated_frac": 1.0 - sum(rows["finished"]) / len(rows["finished"]),
        **({k: v / updates for k, v in totals.items()} if updates else {}),
        "entropy": ((entropy * tokens_mask).sum() / tokens_mask.sum()).item(),
        "lr": lr_at(cfg, step),
        **health,
        "sample_tokens_per_s": out.stats["tokens_per_s"] * run.world,   # all ranks sample at once
        "train_tokens_per_s": sum(len(p) for p in seq_prompts + out.completion_ids) * cfg.ppo_epochs * run.world
        / max(t_end - t_old, 1e-9),
        "sample_seconds": t_sampled - t0,
        "reward_seconds": t_rewarded - t_sampled,
        "old_logp_seconds": t_old - t_rewarded,
        "update_seconds": t_end - t_old,
        "step_seconds": t_end - t0,
        **{k: v for k, v in peaks.items() if v is not None},   # CUDA only
    }
    marked = None if rows["marked"][0] is None else pad_rows(rows["marked"], T)
    if run.grams is not None:   # analysis only: the paper's planning vs execution token metrics
        planning = strategic_grams.planning_masks(tokenizer, completions, run.grams, T)                    # [B, T]
        metrics.update(strategic_grams.planning_metrics(planning, tokens_mask, entropy, sampled_logp, advantages,
                                                        rows["texts"], run.grams, run.state))
        marked = planning if marked is None else marked
    log_rollouts(run, step, rows, marked)
    return metrics


def kept_rollouts(cfg: Config, rewards: torch.Tensor, finished: list[bool]) -> torch.Tensor:
    """(optional filters) 1.0 for the rollouts that enter the loss, 0.0 for those dropped: groups whose
    rewards are all equal (--skip_zero_var, DAPO's dynamic sampling) and responses cut at
    max_new_tokens (--mask_truncated). All 1.0 by default."""
    keep = torch.ones(rewards.numel(), dtype=torch.bool)                                     # [B]
    if cfg.skip_zero_var:
        keep = (rewards.std(dim=1) > 0).repeat_interleave(cfg.group_size)
    if cfg.mask_truncated:
        keep &= torch.tensor(finished)
    return keep.float()


def on_policy(cfg: Config) -> bool:
    return cfg.ppo_epochs == 1 and cfg.mini_batches == 1


def mini_batches(cfg: Config, step: int, kept_tokens: torch.Tensor):
    """(optional) PPO epochs x mini-batches: each epoch shuffles the step's rollouts (all ranks', seeded
    by the step) and deals them into --mini_batches groups, one optimizer step each. Rollouts a filter
    dropped (no kept tokens) are left out. One epoch, one mini-batch of everything by default."""
    rng = random.Random(seed_for(cfg.seed, "minibatch", step))
    for _ in range(cfg.ppo_epochs):
        order = list(range(len(kept_tokens)))
        rng.shuffle(order)
        for mb in range(cfg.mini_batches):
            members = [i for i in sorted(order[mb::cfg.mini_batches]) if kept_tokens[i] > 0]
            if members:                      # else every sequence here was filtered out: nothing to learn
                yield members


# ----------------------------------------------------------------------------- data and evaluation

def load_data(cfg: Config):
    """Training and held-out problems, never sharing a problem (compared by data.problem_key).

    The held-out set is eval_size distinct problems of --eval_dataset, or else of the training source
    (drawn with another seed). Training problems are then drawn without those: a file's other rows, or
    the synthetic generator's other problems (it then never produces a held-out one for training).
    num_problems counts training problems (synthetic default: 2000 drawn, with repeats)."""
    data_dir = cfg.data_dir or None
    held_out = []
    if cfg.eval_every:
        try:
            held_out = load_problems(cfg.eval_dataset or cfg.dataset, data_dir=data_dir, seed=cfg.seed + 1,
                                     limit=cfg.eval_size, distinct=True)
        except DataError as e:   # too few distinct problems to hold out: the flag asks for too many
            raise ConfigError(f"--eval_size {cfg.eval_size}: {e}") if "distinct" in str(e) else e

    synthetic = cfg.dataset.startswith("synthetic")
    train = load_problems(cfg.dataset, data_dir=data_dir, seed=cfg.seed,
                          limit=cfg.num_problems or (2000 if synthetic else None),
                          exclude={problem_key(p["problem"]) for p in held_out})
    if len(train) < cfg.batch_size <= len(train) + len(held_out) and not cfg.eval_dataset:   # the held-out draw took them
        raise ConfigError(f"--eval_size {cfg.eval_size}: holds out {len(held_out)} problems of --dataset {cfg.dataset}, "
                          f"leaving {len(train)} to train on, fewer than --batch_size {cfg.batch_size}; lower "
                          f"--eval_size or give --eval_dataset")
    if cfg.batch_size > len(train):
        raise ConfigError(f"--batch_size {cfg.batch_size}: larger than the {len(train)} training problems "
                          f"of --dataset {cfg.dataset}" + (" outside the held-out set" if held_out else ""))
    return train, held_out

def data_order(num_problems: int, seed: int, epoch: int) -> list[int]:
    """The order of the training problems in one pass; a function of (seed, epoch), so resuming
    needs only the step number to find its place."""
    order = list(range(num_problems))
    random.Random(seed_for(seed, "data", epoch)).shuffle(order)
    return order

def batch_at(step: int, cfg: Config, num_problems: int) -> list[int]:
    """Indices of the problems of training step `step` (epochs wrap around; no problem twice in one)."""
    per_epoch = num_problems // cfg.batch_size
    epoch, slot = divmod(step, per_epoch)
    return data_order(num_problems, cfg.seed, epoch)[slot * cfg.batch_size:(slot + 1) * cfg.batch_size]

def seed_for(seed: int, stream: str, *keys: int) -> int:
    """The seed of one random stream: a hash of the run's seed, the stream's name and its keys, and
    of nothing else (not the batch layout, the number of processes or how far a resumed run got).
    Streams: "rollout" (step, problem, sample: the tokens of one rollout, and HICRA's placebo spans
    in it), "minibatch" (step: PPO's shuffles), "data" (epoch: the order of the problems)."""
    text = ":".join(map(str, (seed, stream, *keys)))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def prompt_style(cfg: Config) -> str:
    return cfg.prompt_style or rollout.default_prompt_style(cfg.model)


def evaluate(run: Run) -> dict:
    """eval_accuracy on the held-out problems, one sample each (greedy unless eval_temperature > 0).
    Rank 0 evaluates, with the full weights; the other ranks wait for it in the next step."""
    if run.rank:
        return {}
    cfg, t0, correct = run.cfg, time.perf_counter(), 0
    for start in range(0, len(run.eval_set), 64):
        chunk = run.eval_set[start:start + 64]
        prompts = rollout.encode_problems(run.tokenizer, chunk, prompt_style(cfg), cfg.instruction)
        _, right, _ = evaluation.sample_and_grade(run.policy, run.tokenizer, prompts, [p["answer"] for p in chunk],
                                                  cfg.max_new_tokens, cfg.eval_temperature, 1.0, cfg.seed,
                                                  cfg.strict_box, graphs=cfg.cuda_graphs)
        correct += sum(right)
    return {"eval_accuracy": correct / len(run.eval_set), "eval_seconds": time.perf_counter() - t0}


def lr_at(cfg: Config, step: int) -> float:
    """Linear warm-up over warmup_steps, then constant or cosine decay to 10% at max_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
    return cfg.lr


# ----------------------------------------------------------------------------- speed machinery
# Below this line nothing changes what is computed, only how fast: one forward of a shared prompt
# for the G rollouts of a group, the vocabulary projection in chunks, and micro-batches by cost.

def last_hidden(model, **inputs) -> torch.Tensor:
    """The final hidden states [b, t, C], through the model's own forward (so that DDP and FSDP see
    the call), with the vocabulary projection run on one position only (logits_to_keep=1)."""
    return model(**inputs, output_hidden_states=True, logits_to_keep=1).hidden_states[-1]


def bare(model):
    """The Hugging Face model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def _token_logp(model, hidden, targets, with_entropy: bool):
    """hidden [b, t, C], targets [b, t] -> log p(target) [b, t] and, if asked, entropy [b, t] (float32)."""
    logits = bare(model).lm_head(hidden).float()                             # [b, t, V]
    lse = torch.logsumexp(logits, dim=-1)                                    # [b, t]
    logp = logits.gather(-1, targets[..., None]).squeeze(-1) - lse           # [b, t]
    if not with_entropy:
        return logp, None
    return logp, lse - (logits.softmax(-1) * logits).sum(-1)                 # [b, t] each

def completion_logprobs(model, prompts: list[list[int]], completions: list[list[int]], pad_id: int,
                        chunk: int = 512, with_entropy: bool = True, share_prompts: bool = True):
    """Per-token log-probs (and entropies) of `completions` given `prompts`, by teacher forcing.

    Returns logp [b, Tc] and entropy [b, Tc] or None (Tc = longest completion; padding is 0).

    Rows that share a prompt (the G rollouts of a group) share its forward pass: each distinct
    prompt runs through the model once, and its keys/values are handed to every completion that
    follows it. That costs U*P + b*Tc tokens instead of b*(P+Tc), and is exact: autograd sums the
    gradient of every completion into the one prompt pass. With `share_prompts=False`, or under
    gradient checkpointing (which drops HF's cache), every row runs its own prompt.

    The vocabulary projection runs on about `chunk` tokens (rows x positions) at a time and, when
    gradients are needed, is recomputed in the backward pass: the [b, Tc, V] float32 logits never
    exist at once. Ask for entropies only when they are used: under autograd each chunk's softmax
    is kept for the backward pass.
    """
    device = next(model.parameters()).device
    share = share_prompts and not bare(model).is_activation_checkpointing
    index = {}   # distinct prompt -> its row in the prompt batch
    row_prompt = [index.setdefault(tuple(p) if share else i, len(index)) for i, p in enumerate(prompts)]
    unique = [list(p) for p in index] if share else prompts
    rows = torch.tensor(row_prompt, device=device)                                       # [b]
    P, Tc = max(len(p) for p in unique), max(len(c) for c in completions)
    prompt_ids = torch.full((len(unique), P), pad_id, dtype=torch.long, device=device)  # [U, P] left-padded
    prompt_mask = torch.zeros_like(prompt_ids)
    for i, p in enumerate(unique):
        prompt_ids[i, P - len(p):] = torch.tensor(p, device=device)
        prompt_mask[i, P - len(p):] = 1
    ids = torch.full((len(completions), Tc), pad_id, dtype=torch.long, device=device)   # [b, Tc] right-padded
    valid = torch.zeros_like(ids)
    for i, c in enumerate(completions):
        ids[i, :len(c)] = torch.tensor(c, device=device)
        valid[i, :len(c)] = 1
    prompt_pos = (prompt_mask.cumsum(-1) - 1).clamp(min=0)                                # [U, P]
    positions = prompt_mask.sum(-1, keepdim=True)[rows] + torch.arange(Tc, device=device)  # [b, Tc]
    attention = torch.cat([prompt_mask[rows], valid], 1)                                 # [b, P+Tc]
    if share:
        cache = DynamicCache(config=bare(model).config)
        prompt_hidden = last_hidden(model, input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=prompt_pos,
                                    cache=cache, use_cache=True)                           # [U, P, C]
        for layer in cache.layers:               # each row reads its prompt's keys/values; index_select,
            layer.keys = layer.keys.index_select(0, rows)        # not cache.batch_select_indices: the
            layer.values = layer.values.index_select(0, rows)    # backward of its x[rows] is not deterministic on the CPU
        hidden = last_hidden(model, input_ids=ids, attention_mask=attention, position_ids=positions,
                             cache=cache, use_cache=True)                                  # [b, Tc, C]
        # The prompt's last state predicts completion token 0; token t's state predicts t + 1.
        hidden = torch.cat([prompt_hidden[rows, -1:], hidden[:, :-1]], 1)                 # [b, Tc, C]
    else:
        hidden = last_hidden(model, input_ids=torch.cat([prompt_ids[rows], ids], 1), attention_mask=attention,
                             position_ids=torch.cat([prompt_pos[rows], positions], 1))
        hidden = hidden[:, P - 1:-1]                    # states that predict the completion [b, Tc, C]
    step = max(1, chunk // len(prompts))                                 # positions per chunk
    logps, entropies = [], []
    for start in range(0, Tc, step):
        h, t = hidden[:, start:start + step], ids[:, start:start + step]
        if torch.is_grad_enabled():
            lp, ent = torch.utils.checkpoint.checkpoint(_token_logp, model, h, t, with_entropy, use_reentrant=False)
        else:
            lp, ent = _token_logp(model, h, t, with_entropy)
        logps.append(lp)
        entropies.append(ent)
    valid = valid.to(torch.float32)                                                        # [b, Tc]
    return torch.cat(logps, 1) * valid, torch.cat(entropies, 1) * valid if with_entropy else None

def teacher_forced_logprobs(run: Run, model, prompts, completions, width: int) -> torch.Tensor:
    """Log-probs [B, width] of every completion under `model`, micro-batch by micro-batch, no grad.
    Every rank runs as many passes (the update's DDP or FSDP model communicates in each forward): a
    rank with fewer repeats a one-row pass whose result it drops."""
    cfg, out = run.cfg, torch.zeros(len(completions), width)
    plan = micro_batches(prompts, [len(c) for c in completions], cfg.micro_batch_tokens)
    with torch.no_grad(), run.autocast:
        for k in range(max_over_ranks(run, len(plan))):
            idx = plan[k] if k < len(plan) else plan[0][:1]
            lp, _ = completion_logprobs(model, [prompts[i] for i in idx], [completions[i] for i in idx],
                                        run.tokenizer.pad_token_id, cfg.logprob_chunk, with_entropy=False)
            if k < len(plan):
                out[idx, :lp.shape[1]] = lp.float().cpu()
    return out


def micro_batch_plan(run: Run, members: list[int], prompts, completions, loss_mask: torch.Tensor,
                     mb_tokens: float, mb_seqs: int):
    """The micro-batches of this rank's part of a mini-batch (`members`, rows of its rollouts) as
    (rows, weight, gradient-sync context). The weights make the micro-batch losses add up to the
    mini-batch loss: a micro-batch's share of the mini-batch's tokens or sequences, whichever the
    aggregation averages over (AGGREGATIONS), counted over all ranks. Every rank runs as many passes (FSDP gathers
    weights in each): a rank with fewer runs zero-weight passes on one of its rollouts at the end,
    and only the last pass synchronises gradients."""
    cfg = run.cfg
    plan = [[members[i] for i in idx] for idx in
            micro_batches([prompts[i] for i in members], [len(completions[i]) for i in members], cfg.micro_batch_tokens)]
    passes = max_over_ranks(run, len(plan))
    for k, idx in enumerate(plan):
        weight = loss_mask[idx].sum().item() / mb_tokens if AGGREGATIONS[cfg.loss_agg] == "tokens" else len(idx) / mb_seqs
        yield idx, weight, gradient_sync(run, last=k == passes - 1)
    for k in range(len(plan), passes):
        with gradient_sync(run, last=k == passes - 1), run.autocast:
            logp, _ = completion_logprobs(run.model, prompts[:1], completions[:1], run.tokenizer.pad_token_id,
                                          cfg.logprob_chunk, with_entropy=False)
            (logp.sum() * 0.0).backward()


def micro_batches(prompts: list[list[int]], completion_lens: list[int], token_budget: int,
                  overhead: int = 64) -> list[list[int]]:
    """Split rows into micro-batches that fit the budget and cost the fewest tokens in all.

    A micro-batch fits when rows x (longest prompt + longest completion) <= token_budget (a lone
    row always fits). It costs what completion_logprobs runs: its distinct prompts once each,
    padded to the longest, plus every row padded to the longest completion, plus `overhead` tokens
    for the call itself. With rows sorted by completion length the best split into contiguous runs
    is a dynamic programme: best[j] = min over i of best[i] + cost(rows i..j-1). One long outlier
    then gets its own micro-batch instead of padding every row to its length.
    """
    keys = [tuple(p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: (-completion_lens[i], keys[i]))
    n = len(order)
    best, cut = [0] + [math.inf] * n, [0] * (n + 1)
    for j in range(1, n + 1):
        distinct, longest_prompt = set(), 0
        for i in range(j - 1, -1, -1):           # the run order[i:j]; order[i] has its longest completion
            distinct.add(keys[order[i]])
            longest_prompt = max(longest_prompt, len(keys[order[i]]))
            rows, longest = j - i, completion_lens[order[i]]
            if rows > 1 and rows * (longest_prompt + longest) > token_budget:
                break                                 # a longer run only grows
            cost = best[i] + len(distinct) * longest_prompt + rows * longest + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    batches, j = [], n
    while j > 0:
        batches.append(order[cut[j]:j])
        j = cut[j]
    return batches[::-1]

def pad_rows(rows: list[list[float]], width: int | None = None) -> torch.Tensor:
    """Ragged lists -> a zero-padded float32 tensor [len(rows), width]."""
    width = width or max(len(r) for r in rows)
    out = torch.zeros(len(rows), width)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r, dtype=torch.float32)
    return out


# ----------------------------------------------------------------------------- plumbing: the run

@dataclass
class Run:
    """What the loop works with, set up once by start_run."""
    cfg: Config
    model: torch.nn.Module                     # what the update runs: the model, or its DDP / FSDP form
    policy: torch.nn.Module                    # the sampler's full weights: the model, or a copy (bf16, FSDP)
    tokenizer: object
    optimizer: torch.optim.Optimizer
    train_set: list[dict]
    eval_set: list[dict]
    out_dir: Path
    autocast: object                           # the update's bf16 autocast on CUDA, a no-op on the CPU
    reference: torch.nn.Module | None = None   # the frozen initial model (--kl_coef > 0)
    shape_advantages: object = None            # a method's hook (train_hicra.shape_advantages)
    grams: list[str] | None = None             # Strategic Grams (--grams): metrics, and HICRA's hook
    state: dict = field(default_factory=dict)  # analysis state saved with the checkpoint (rel_ppl baselines)
    start_step: int = 0
    last_good: str | None = None               # the newest checkpoint, checked finite when it was saved
    rank: int = 0                              # this process among `world` (torchrun); rank 0 writes
    world: int = 1
    reward_fn: object = None                   # train's reward_fn (None: the verified math reward)


def start_run(cfg: Config, shape_advantages=None) -> Run:
    """Everything before the first step, in the order that keeps a failure cheap and the folder
    intact: flags, data, gram list, run folder (the first write), then model, optimizer, resume."""
    check_config(cfg)
    rank, world, device = setup_distributed(cfg)              # torchrun: one process per device
    if world > 1 and cfg.batch_size % world:
        raise ConfigError(f"--batch_size {cfg.batch_size}: does not split into whole groups over {world} ranks")
    train_set, eval_set = load_data(cfg)                       # data errors before the model loads
    grams = load_grams(cfg.grams) if cfg.grams else None
    out_dir, ckpt, state = prepare_run_folder(cfg, eval_set, write=rank == 0)   # the first write to the folder
    if rank == 0:
        print(json.dumps(dataclasses.asdict(cfg)))
        if on_policy(cfg):   # say what the configuration makes inert, once
            print("on-policy (--ppo_epochs 1, --mini_batches 1): PPO's ratio is exactly 1, so clipping (--eps_low, "
                  "--eps_high) never acts; --mini_batches 4 or --ppo_epochs 2 make it act", file=sys.stderr)

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    if cfg.deterministic:
        # Same command, same machine: the same metrics.jsonl. CUDA's deterministic kernels also need
        # cuBLAS to keep a fixed workspace. (On the CPU the one culprit found, the backward of x[rows]
        # in completion_logprobs, is avoided there; this guards the rest.)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    # float32 master weights; bf16 matmuls through autocast on CUDA (bf16 weights would swallow
    # updates of lr ~1e-6).
    model, tokenizer = rollout.load_model(str(ckpt) if ckpt else cfg.model, device=device, dtype=torch.float32)
    context = getattr(model.config, "max_position_embeddings", None)
    train_set = fit_context(train_set, cfg, tokenizer, context, "training")
    eval_set = fit_context(eval_set, cfg, tokenizer, context, "held-out")
    if len(train_set) < cfg.batch_size:
        raise ConfigError(f"--max_new_tokens {cfg.max_new_tokens}: leaves {len(train_set)} training problems "
                          f"that fit the context of {context}, fewer than --batch_size {cfg.batch_size}")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    reference = None
    if cfg.kl_coef > 0:   # the run's own starting model: --resume refuses another --model
        reference, _ = rollout.load_model(cfg.model, device=device, dtype=torch.float32)
        reference.requires_grad_(False)
    if cfg.grad_checkpointing:
        model.activation_checkpointing_enable()
    model, policy = distribute(model, cfg, world, device)     # DDP or FSDP2 under torchrun; else as is
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    if ckpt:
        load_optimizer_state(model, optimizer, ckpt, state)
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        print(f"resumed from {ckpt} at step {state['step']}", file=sys.stderr)
    if cfg.wandb_project and rank == 0:
        import wandb  # only when asked for
        wandb.init(project=cfg.wandb_project, config=dataclasses.asdict(cfg), resume="allow")
    return Run(cfg, model, policy, tokenizer, optimizer, train_set, eval_set, out_dir, autocast, reference,
               shape_advantages, grams, state.get("extra", {}), start_step=state.get("step", 0),
               last_good=f"{ckpt} (step {state['step']})" if ckpt else None, rank=rank, world=world)


def log_metrics(run: Run, metrics: dict):
    if run.rank:
        return                                 # rank 0 writes for all
    append_jsonl(run.out_dir / "metrics.jsonl", metrics)
    if run.cfg.wandb_project:
        import wandb
        wandb.log(metrics, step=metrics["step"])


def log_rollouts(run: Run, step: int, rows: dict, marked):
    """A few of the step's rollouts to rollouts.jsonl, with the tokens a method marked in [[ ]]."""
    n, texts = run.cfg.log_rollouts, rows["texts"]
    if not n:
        return
    lines = []
    for i in range(0, len(texts), max(1, len(texts) // n))[:n]:
        row = {"step": step, "prompt": rows["problems"][i]["problem"], "answer": rows["problems"][i]["answer"],
               "response": texts[i], "reward": rows["rewards"][i], "correct": bool(rows["correct"][i]),
               "advantage": rows["seq_adv"][i]}
        if marked is not None:  # the response with its planning tokens in [[ ]]
            row["planning"] = mark_tokens(run.tokenizer, rows["completion_ids"][i], marked[i].tolist())
        lines.append(json.dumps(row) + "\n")
    runfolder.append_text(run.out_dir / "rollouts.jsonl", "".join(lines))


def mark_tokens(tokenizer, token_ids: list[int], flags: list[float]) -> str:
    """Decode a response with each run of flagged tokens wrapped in [[ ]], for reading rollouts.jsonl."""
    pieces = []
    for flagged, run in itertools.groupby(zip(token_ids, flags), key=lambda pair: bool(pair[1])):
        text = tokenizer.decode([token for token, _ in run])
        pieces.append(f"[[{text}]]" if flagged else text)
    return "".join(pieces)

def plot_run(run: Run):
    if run.cfg.plot and run.rank == 0:
        try:
            import plot
            plot.plot_runs([run.out_dir], run.out_dir / "metrics.png")
        except ImportError as e:  # matplotlib missing: the metrics file is still there
            print(f"no plot ({e})", file=sys.stderr)


@contextmanager
def stop_after_step_on_ctrl_c():
    """Ctrl-C sets stop["requested"]: the loop finishes its step, saves and exits. A second Ctrl-C
    aborts at once."""
    stop = {"requested": False}

    def on_interrupt(signum, frame):
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        print("\nstopping after this step (Ctrl-C again to abort without saving)", file=sys.stderr)

    previous_handler = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous_handler)


# ----------------------------------------------------------------------------- plumbing: several processes
# `torchrun --nproc_per_node N train_grpo.py ...` starts N ranks. Each samples, rewards and updates its own
# block of the step's prompts (whole groups, so group statistics and HICRA's masks stay local); DDP
# (or FSDP2 with --fsdp) averages the gradients, and each loss is normalised by the counts of the whole
# step, so N ranks compute the gradient one would. Rank 0 evaluates and writes. A plain `python`
# launch is rank 0 of 1, and every helper below is then a no-op.

def setup_distributed(cfg: Config) -> tuple[int, int, torch.device]:
    """(rank, world size, device): join torchrun's process group, NCCL on CUDA (one GPU per rank), gloo
    on the CPU. The flags, --device among them, were checked by check_config."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        if cfg.fsdp:
            raise ConfigError("--fsdp: shards over several ranks; launch with torchrun --nproc_per_node N (N >= 2)")
        return 0, 1, torch.device(cfg.device)
    device = torch.device(cfg.device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    if not dist.is_initialized():   # a rank that hangs fails the others after --dist_timeout, not half an hour
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=cfg.dist_timeout))
    return dist.get_rank(), dist.get_world_size(), device


def distribute(model, cfg: Config, world: int, device: torch.device):
    """(the model the update runs, the full-weight policy the sampler uses).

    The sampler gets its own copy of the weights when it samples in another dtype than the float32
    master weights (bf16 on CUDA: half the bytes read per decoded token, a bf16 cache, no per-kernel
    casts) or when FSDP shards the model; refresh_policy updates the copy after each step: one cast or
    gather a step rather than one per decoded token. DDP replicates the model and averages gradients;
    FSDP2 shards every decoder layer and the rest (bf16 compute with float32 gradient reduction on CUDA)."""
    dtype = sampler_dtype(cfg, device)
    fsdp = world > 1 and cfg.fsdp
    policy = model
    if fsdp or dtype != torch.float32:
        policy = copy.deepcopy(model)
        for p in policy.parameters():   # weights only: buffers such as the rotary frequencies stay float32
            p.data = p.data.to(dtype)
    if world == 1:
        return model, policy
    if not fsdp:
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None), policy
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    precision = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
        if device.type == "cuda" else MixedPrecisionPolicy()
    for layer in getattr(model, model.base_model_prefix).layers:
        fully_shard(layer, mp_policy=precision)
    fully_shard(model, mp_policy=precision)
    return model, policy


def sampler_dtype(cfg: Config, device: torch.device) -> torch.dtype:
    if cfg.sampler_dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, cfg.sampler_dtype)


def refresh_policy(run: Run):
    """Bring the sampler's copy of the weights up to the updated ones: FSDP gathers the shards, else
    each weight is copied (and cast) once. Nothing to do when the sampler uses the model itself."""
    if run.policy is bare(run.model):
        return
    if run.world > 1 and run.cfg.fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        run.policy.load_state_dict(get_model_state_dict(run.model, options=StateDictOptions(full_state_dict=True)))
        return
    with torch.no_grad():
        for copied, master in zip(run.policy.parameters(), bare(run.model).parameters(), strict=True):
            copied.copy_(master)


def phase_peak(device: torch.device) -> float | None:
    """GiB of CUDA memory allocated at the peak since the last call (None off CUDA); the count restarts."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)   # the phase's kernels are done: its seconds and its memory are its own
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    torch.cuda.reset_peak_memory_stats(device)
    return peak


def rank_share(run: Run, items: list) -> list:
    """This rank's block of the step's prompts."""
    n = len(items) // run.world
    return items[run.rank * n:(run.rank + 1) * n]


@contextmanager
def gradient_sync(run: Run, last: bool):
    """Average gradients across ranks in this backward pass only if it is the mini-batch's last."""
    if run.world > 1 and isinstance(run.model, DistributedDataParallel):
        with nullcontext() if last else run.model.no_sync():
            yield
    else:
        if run.world > 1:
            run.model.set_requires_gradient_sync(last)
        yield


def all_rows(run: Run, x: torch.Tensor) -> torch.Tensor:
    """A 1-D tensor of this rank's rollouts -> the same for every rank's, in rank order (on the CPU)."""
    if run.world == 1:
        return x
    device = next(run.model.parameters()).device
    parts = [torch.empty_like(x, device=device) for _ in range(run.world)]
    dist.all_gather(parts, x.to(device))
    return torch.cat(parts).cpu()


def sum_over_ranks(run: Run, *values: float) -> tuple:
    if run.world == 1:
        return values
    total = torch.tensor(values, dtype=torch.float64, device=next(run.model.parameters()).device)
    dist.all_reduce(total)
    return tuple(total.tolist())


def max_over_ranks(run: Run, value: int) -> int:
    if run.world == 1:
        return value
    top = torch.tensor([value], device=next(run.model.parameters()).device)
    dist.all_reduce(top, op=dist.ReduceOp.MAX)
    return int(top.item())


def gather_rows(run: Run, **columns: list) -> dict | None:
    """Per-rollout lists from every rank, concatenated in rank order, on rank 0 (None elsewhere)."""
    if run.world == 1:
        return columns
    parts = [None] * run.world
    dist.all_gather_object(parts, columns)
    return {key: [x for part in parts for x in part[key]] for key in columns} if run.rank == 0 else None


def barrier():
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def from_rank0(value):
    """Rank 0's value on every rank (so that a refusal on rank 0 stops every rank, not only rank 0)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ----------------------------------------------------------------------------- plumbing: the run folder

def prepare_run_folder(cfg: Config, eval_set: list[dict], write: bool = True) -> tuple[Path, Path | None, dict]:
    """Check everything about --out_dir and --resume, then (and only then) write to the folder.

    A new run writes config.json. A resumed run must have the flags of its config.json but for the
    RESUMABLE ones, whose changes go to resumes.jsonl; config.json is never rewritten. A folder whose
    run died before its first checkpoint starts over under --resume. Returns (out_dir, checkpoint
    folder or None, trainer state)."""
    out_dir = Path(cfg.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out_dir {out_dir}: is a file, not a folder")
    logged = (out_dir / "metrics.jsonl").exists()
    if logged and not cfg.resume:
        raise ConfigError(f"--out_dir {out_dir}: already holds a run; pass --resume or pick another folder")
    ckpt, state = find_checkpoint(out_dir) if cfg.resume else (None, {})
    now = dataclasses.asdict(cfg)
    if ckpt:
        try:
            saved = json.loads((out_dir / "config.json").read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"--resume: {out_dir / 'config.json'} is unreadable ({e}); nothing was changed")
        fixed = [k for k in now if k not in RESUMABLE and saved.get(k) != now[k]]
        if fixed:
            raise ConfigError("--resume: the run was made with " + ", ".join(
                f"--{k} {saved.get(k)!r} (now {now[k]!r})" for k in fixed) + "; a run cannot change them")
    refusal = None
    if write:   # one writer at a time: rank 0 locks the folder (runfolder.py), every rank learns the outcome
        try:
            runfolder.acquire(out_dir, "train")
        except runfolder.FolderError as e:
            refusal = f"--out_dir {e}"
        except OSError as e:
            refusal = f"--out_dir {out_dir}: cannot write there ({e.strerror})"
    refusal = from_rank0(refusal)
    if refusal:
        raise ConfigError(refusal)
    barrier()   # every rank has checked the folder before rank 0 writes to it
    if not write:
        barrier()
        return out_dir, ckpt, state
    if ckpt and ckpt.name == "ckpt.old" and (out_dir / "ckpt").exists():   # ckpt was found damaged
        shutil.rmtree(out_dir / "ckpt.damaged", ignore_errors=True)
        os.replace(out_dir / "ckpt", out_dir / "ckpt.damaged")
        print(f"--resume: {out_dir / 'ckpt'} is damaged (kept as ckpt.damaged); resuming from {ckpt}", file=sys.stderr)
    if ckpt:
        changed = {k: [saved.get(k), now[k]] for k in RESUMABLE if saved.get(k) != now[k]}
        append_jsonl(out_dir / "resumes.jsonl", {"step": state["step"], "changed": changed})
    else:
        if cfg.resume:
            print(f"--resume: no checkpoint in {out_dir} yet, starting the run over", file=sys.stderr)
        runfolder.write_text(out_dir / "config.json", json.dumps(now, indent=2))
    for log in ("metrics.jsonl", "rollouts.jsonl"):   # lines written after the checkpoint go
        _truncate_jsonl(out_dir / log, state.get("step", 0))
    # What "held-out" means for this run, for anyone to check against rollouts.jsonl.
    runfolder.write_text(out_dir / "held_out.jsonl", "".join(json.dumps(p) + "\n" for p in eval_set))
    barrier()
    return out_dir, ckpt, state

# Flags that may differ when a run is resumed: they change how long it runs, how it is watched or how
# fast it goes, not what it computes. Every other flag must match the run's config.json.
RESUMABLE = ("max_steps", "resume", "out_dir", "preset", "device", "data_dir", "eval_every", "save_every",
             "log_rollouts", "plot", "wandb_project", "cuda_graphs", "sampler_dtype", "micro_batch_tokens", "logprob_chunk",
             "grad_checkpointing", "max_bad_steps", "deterministic", "dist_timeout")

def find_checkpoint(out_dir: Path) -> tuple[Path | None, dict]:
    """The newest complete checkpoint and its trainer state: ckpt, or ckpt.old if a crash hit between
    the two renames of save_checkpoint. Its files are opened here, so a damaged one (a truncated or
    missing file) is refused in one line before anything is written."""
    damage = None
    for folder in rollout.checkpoints(out_dir):
        state_file = folder / "trainer_state.pt"
        files = sorted(folder.glob("*.safetensors")) or [folder / "model.safetensors"]
        try:
            for file in files:
                with safe_open(str(file), "pt"):   # checks the header against the file's size
                    pass
            file = state_file
            state = torch.load(state_file, weights_only=True)   # tensors and plain data only: no code runs
            file = folder / "optimizer"
            if state.get("fsdp"):
                if not (file / ".metadata").is_file():
                    raise OSError("FSDP's optimizer shards are missing")
                runfolder.check_checkpoint_metadata(file)      # before torch.distributed.checkpoint unpickles it
            return folder, state
        except runfolder.FolderError as e:
            raise ConfigError(f"--resume: {e}") from None
        except pickle.UnpicklingError as e:   # torch.load(weights_only=True) met an object it will not build
            raise ConfigError(f"--resume: {file}: holds an object that a state file never holds "
                              f"({str(e).splitlines()[-1][:120].strip()}); refused, nothing was run") from None
        except Exception as e:    # whatever a damaged file raises, the answer is the same
            damage = damage or f"{file}: {re.split(r'[.:] ', str(e).splitlines()[0])[0][:120]}"
    if damage:
        raise ConfigError(f"--resume: the checkpoint is damaged ({damage}); nothing was changed")
    return None, {}


def healthy(model) -> bool:
    """Finite weights, and finite logits on a few tokens: what a checkpoint must be to go back to."""
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        return False
    with torch.no_grad():
        ids = torch.arange(1, 9, device=next(model.parameters()).device)[None]          # [1, 8]
        return bool(torch.isfinite(model(ids).logits).all())

def save_checkpoint(run: Run, step: int) -> str:
    """Write <out_dir>/ckpt atomically: into a temporary folder, then swap it in. Returns its name as
    the last good checkpoint.

    The model is a plain Hugging Face folder (safetensors); trainer_state.pt holds the optimizer,
    the step (which fixes the data position and sampling seeds), the RNG states and the analysis state.
    Under FSDP each rank's shard of the optimizer state goes to ckpt/optimizer (torch.distributed.checkpoint,
    which reshards when a run resumes on another number of ranks). Every rank calls this; rank 0 writes.
    """
    if not healthy(run.policy):   # a checkpoint is always one to go back to
        raise RuntimeError(f"not saving step {step}: the weights or their outputs are not finite")
    tmp, final, old = run.out_dir / "ckpt.tmp", run.out_dir / "ckpt", run.out_dir / "ckpt.old"
    fsdp = run.world > 1 and run.cfg.fsdp
    if fsdp:   # the float32 master weights, gathered whole on rank 0 (the sampler's copy is bf16 on CUDA)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        weights = get_model_state_dict(run.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        # A tied weight (lm_head = the embedding) comes under each of its names; the model folder keeps one, as
        # a one-process save does: the names the unsharded copy gives its parameters and buffers.
        kept = {name for name, _ in run.policy.named_parameters()} | {name for name, _ in run.policy.named_buffers()}
        weights = {name: tensor for name, tensor in weights.items() if name in kept}
    if run.rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        if fsdp:
            run.policy.save_pretrained(tmp, state_dict=weights)
            config = json.loads((tmp / "config.json").read_text())   # it names the copy's dtype, not the weights'
            (tmp / "config.json").write_text(json.dumps(config | {"dtype": "float32"}, indent=2))
        else:   # the float32 master weights, not the sampler's bf16 copy
            bare(run.model).save_pretrained(tmp)
        run.tokenizer.save_pretrained(tmp)
    barrier()
    if fsdp:
        from torch.distributed.checkpoint import save
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict
        save({"optimizer": get_optimizer_state_dict(run.model, run.optimizer)}, checkpoint_id=str(tmp / "optimizer"))
    if run.rank == 0:
        torch.save({"step": step, "optimizer": None if fsdp else run.optimizer.state_dict(),
                    "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(), "extra": run.state,
                    "fsdp": fsdp, "world": run.world}, tmp / "trainer_state.pt")   # written last: complete
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)   # left by a crash after the last rename of a save
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    barrier()
    return f"{final} (step {step})"


def load_optimizer_state(model, optimizer, ckpt: Path, state: dict):
    """The optimizer state of a checkpoint: whole in trainer_state.pt, or FSDP's shards (resharded by
    torch.distributed.checkpoint to this run's number of ranks)."""
    if state.get("fsdp"):
        from torch.distributed.checkpoint import load
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict
        shards = {"optimizer": get_optimizer_state_dict(model, optimizer)}
        load(shards, checkpoint_id=str(ckpt / "optimizer"))
        set_optimizer_state_dict(model, optimizer, shards["optimizer"])
    else:
        optimizer.load_state_dict(state["optimizer"])


def append_jsonl(path: Path, row: dict):
    runfolder.append_text(path, json.dumps(row) + "\n")

def _truncate_jsonl(path: Path, step: int):
    """Drop the lines a crashed run wrote after its last checkpoint, and a line torn by the crash, so
    a resumed run appends cleanly."""
    if path.exists():
        runfolder.write_text(path, "".join(line + "\n" for line in path.read_text(errors="replace").splitlines()
                                           if _step_of(line) is not None and _step_of(line) < step))

def _step_of(line: str) -> int | None:
    try:
        return json.loads(line)["step"]
    except (ValueError, TypeError, KeyError):
        return None

def load_grams(path: str, flag: str = "--grams") -> list[str]:
    """strategic_grams.load_grams, with its failures as one line naming the flag."""
    try:
        grams = strategic_grams.load_grams(path)
    except UnicodeDecodeError as e:
        raise ConfigError(f"{flag} {path}: not UTF-8 text (byte {e.start})") from None
    except ValueError as e:   # a line that opens a JSON string and does not close it
        raise ConfigError(f"{flag} {e}") from None
    except FileNotFoundError as e:
        raise ConfigError(f"{flag}: {e}") from None
    if not grams:
        raise ConfigError(f"{flag} {path}: holds no grams (only comments or blank lines)")
    return grams

def fit_context(problems: list[dict], cfg: Config, tokenizer, context: int | None, what: str) -> list[dict]:
    """The problems whose prompt leaves room for --max_new_tokens in the model's context; the others
    are dropped now, with a count, rather than failing at the step that meets them."""
    if not context or not problems:
        return problems
    lengths = [len(p) for p in rollout.encode_problems(tokenizer, problems, prompt_style(cfg), cfg.instruction)]
    kept = [p for p, n in zip(problems, lengths) if n + cfg.max_new_tokens <= context]
    if len(kept) < len(problems):
        print(f"dropped {len(problems) - len(kept)} of {len(problems)} {what} problems: prompt + --max_new_tokens "
              f"{cfg.max_new_tokens} exceeds the model's context of {context} tokens", file=sys.stderr)
    return kept

def main(argv=None):
    try:
        cfg = parse_config(argv)
        train(cfg)
    except (ConfigError, DataError, rollout.ModelLoadError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
