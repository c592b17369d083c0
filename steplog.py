"""What a step reports: its metrics (metrics.jsonl, and Weights & Biases if asked), a few of its rollouts to
read (rollouts.jsonl), the seconds and peak memory of each phase, and the plot at the end.

Plumbing: the algorithm (train_grpo.py) does not depend on reading this file. step_report gathers every rank's
rollouts on rank 0 and computes the metrics there; the README's "A run folder" lists every metric.
"""
from __future__ import annotations

import itertools
import json
import os
import random
import sys
import time

import torch

import runfolder
import strategic_grams
from checkpoints import healthy
from data.images import image_key
from distributed import gather_rows
from rollout import pad_rows


def step_report(run, step: int, out, *, seq_problems, seq_prompts, texts, rewards, correct, seq_adv, advantages,
                marked, losses: dict, updates: int, skipped: bool, lr: float, clock: Clock,
                max_new_tokens: int) -> dict:
    """The metrics of a step, computed on rank 0 over every rank's rollouts, and a few rollouts logged.
    Other ranks get what the loop needs to stop in step with rank 0 (step, updates, skipped, diverged).

    out: the sampler's Rollout; seq_problems, seq_prompts (token ids), texts, correct: one per rollout;
    rewards [P, G]; seq_adv [B]; advantages [B, T] (after the method's hook); marked [B, T] or None: the
    tokens the method singled out; losses: the means over the step's applied updates (empty if none).
    Without an update (every row filtered, or every update skipped as non-finite) there is no loss or
    gradient to report: those keys are left out."""
    health = {"step": step, "updates": updates, "skipped": int(skipped),   # an update non-finite, not applied
              "diverged": int(not healthy(run.policy))}                     # non-finite weights or outputs

    def cut(padded):   # [B, T] -> one list per rollout, as long as its response
        return [r[:len(c)].tolist() for r, c in zip(padded, out.completion_ids)]

    rows = gather_rows(run, problems=seq_problems, texts=texts, completion_ids=out.completion_ids, finished=out.finished,
                       logprobs=out.logprobs, entropies=out.entropies, advantages=cut(advantages),
                       seq_adv=seq_adv.tolist(), rewards=rewards.view(-1).tolist(), correct=correct,
                       marked=[None] * len(texts) if marked is None else cut(marked))
    if rows is None:
        return health
    cfg, completions, G = run.cfg, rows["completion_ids"], run.cfg.group_size
    T = max(len(c) for c in completions)
    all_rewards = torch.tensor(rows["rewards"]).view(-1, G)                                   # [P, G] all ranks
    right = torch.tensor(rows["correct"], dtype=torch.float32).view(-1, G)                   # [P, G] all ranks
    tokens_mask = pad_rows([[1.0] * len(c) for c in completions], T)                         # [B, T]
    entropy, sampled_logp = pad_rows(rows["entropies"], T), pad_rows(rows["logprobs"], T)   # [B, T]
    resp_len = torch.tensor([len(c) for c in completions], dtype=torch.float32)              # [B]
    train_tokens = sum(len(p) for p in seq_prompts + out.completion_ids) * cfg.ppo_epochs * run.world
    metrics = {
        "step": step,
        "reward_mean": all_rewards.mean().item(),
        "accuracy": sum(rows["correct"]) / len(rows["correct"]),     # the verified answers, whatever the reward
        "pass_at_group": (right.max(dim=1).values > 0.5).float().mean().item(),   # a right answer in the group
        "zero_var_frac": (all_rewards.std(dim=1) == 0).float().mean().item(),
        "response_len_mean": resp_len.mean().item(),
        "response_len_max": int(resp_len.max().item()),
        "truncated_frac": 1.0 - sum(rows["finished"]) / len(rows["finished"]),
        "max_new_tokens": max_new_tokens,                                # the length responses could take
        **losses,
        "entropy": ((entropy * tokens_mask).sum() / tokens_mask.sum()).item(),
        "lr": lr,
        **health,
        "sample_tokens_per_s": out.stats["tokens_per_s"] * run.world,   # all ranks sample at once
        "train_tokens_per_s": train_tokens / max(clock.seconds["update"], 1e-9),
        **{f"{phase}_seconds": s for phase, s in clock.seconds.items()},
        "step_seconds": clock.total(),
        **{f"{phase}_peak_gib": gib for phase, gib in clock.peaks.items() if gib is not None},   # CUDA only
    }
    marked = None if rows["marked"][0] is None else pad_rows(rows["marked"], T)            # [B, T] the hook's
    metrics.update(advantage_stats(pad_rows(rows["advantages"], T), tokens_mask, marked))
    shown = marked   # [[ ]] in rollouts.jsonl
    if run.grams is not None:   # analysis only: the paper's planning vs execution token metrics
        planning = strategic_grams.planning_masks(run.tokenizer, completions, run.grams, T)                # [B, T]
        metrics.update(strategic_grams.planning_metrics(planning, tokens_mask, entropy, sampled_logp,
                                                        pad_rows(rows["advantages"], T), rows["texts"], run.grams,
                                                        run.state))
        shown = planning if shown is None else shown
    log_rollouts(run, step, rows, shown)
    log_failures(run, step, rows)
    if cfg.log_tokens:   # every rollout's tokens, for strategic_grams.py metrics (any gram list, after the run)
        log_tokens(run.out_dir, step, rows["completion_ids"], rows["logprobs"], rows["entropies"])
    return metrics


def advantage_stats(advantages: torch.Tensor, tokens_mask: torch.Tensor, marked: torch.Tensor | None) -> dict:
    """How much of the step's signal a method moves: mean |A| over the response tokens (with binary rewards and
    mean-only advantages it stays below 1), and with a hook's marked tokens [B, T], their share and the mean |A|
    on them and on the rest (after the hook). A mean over no token is left out."""
    magnitude = advantages.abs() * tokens_mask                                               # [B, T]
    stats = {"abs_adv_mean": (magnitude.sum() / tokens_mask.sum().clamp(min=1)).item()}
    if marked is not None:
        on, off = marked * tokens_mask, (1 - marked) * tokens_mask                           # [B, T] each
        stats["marked_token_frac"] = (on.sum() / tokens_mask.sum().clamp(min=1)).item()
        for name, where in (("abs_adv_marked", on), ("abs_adv_unmarked", off)):
            if where.sum() > 0:
                stats[name] = ((magnitude * where).sum() / where.sum()).item()
    return stats


def gradient_sample(model, entries: int = 2 ** 20) -> torch.Tensor:
    """About `entries` evenly spaced entries of the whole gradient (every parameter's, flattened one after the
    other; 0 where a parameter has none), float64 on the CPU: each entry weighs the same, so their cosine estimates
    the full gradients'. Under FSDP each gradient is gathered whole, one parameter at a time, so that every rank
    samples the entries one process would."""
    params = list(model.parameters())
    stride, offset, parts = max(1, sum(p.numel() for p in params) // entries), 0, []
    for p in params:
        start = -offset % stride                       # the first of this parameter's entries on the global grid
        grad = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
        parts.append(torch.zeros(len(range(start, p.numel(), stride)), dtype=torch.float64) if grad is None
                     else grad.detach().flatten()[start::stride].double().cpu())
        offset += p.numel()
    return torch.cat(parts)


class Clock:
    """Seconds and CUDA peak memory of each phase of a step, for the metrics only: clock.lap("sample") ends
    the phase "sample" (its seconds, and on CUDA its peak GiB, counted from the previous lap; a phase lapped
    twice adds its seconds and keeps the higher peak)."""
    MEMORY = ("sample", "old_logp", "update")   # the phases whose peak memory is reported

    def __init__(self, device: torch.device):
        self.device, self.seconds, self.peaks = device, {}, {}
        phase_peak(device)                      # CUDA: count the first phase's peak from here
        self.start = self.last = time.perf_counter()

    def lap(self, phase: str):
        if phase in self.MEMORY:   # waits for the phase's kernels: its seconds are its own
            self.peaks[phase] = max(self.peaks.get(phase) or 0.0, phase_peak(self.device) or 0.0) or None
        now = time.perf_counter()   # a phase run several times a step (dynamic sampling's rounds) adds up
        self.seconds[phase], self.last = self.seconds.get(phase, 0.0) + now - self.last, now

    def total(self) -> float:
        return self.last - self.start


def phase_peak(device: torch.device) -> float | None:
    """GiB of CUDA memory allocated at the peak since the last call (None off CUDA); the count restarts."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)   # the phase's kernels are done: its seconds and its memory are its own
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    torch.cuda.reset_peak_memory_stats(device)
    return peak


def log_metrics(run, metrics: dict):
    if run.rank:
        return                                 # rank 0 writes for all
    runfolder.append_jsonl(run.out_dir / "metrics.jsonl", metrics)
    if run.cfg.wandb_project:
        import wandb
        wandb.log(metrics, step=metrics["step"])


def log_rollouts(run, step: int, rows: dict, marked):
    """A few of the step's rollouts to rollouts.jsonl, with the tokens a method marked in [[ ]]."""
    n, texts = run.cfg.log_rollouts, rows["texts"]
    if not n:
        return
    lines = []
    for i in range(0, len(texts), max(1, len(texts) // n))[:n]:
        row = {"step": step, "prompt": rows["problems"][i]["problem"], "answer": rows["problems"][i]["answer"],
               **image_fields(rows["problems"][i]), "response": texts[i], "reward": rows["rewards"][i],
               "correct": bool(rows["correct"][i]), "advantage": rows["seq_adv"][i]}
        if marked is not None:  # the response with its planning tokens in [[ ]]
            row["planning"] = mark_tokens(run.tokenizer, rows["completion_ids"][i], marked[i].tolist())
        lines.append(json.dumps(row) + "\n")
    runfolder.append_text(run.out_dir / "rollouts.jsonl", "".join(lines))


def image_fields(problem: dict) -> dict:
    """What says which images a logged prompt with images had: the row's id, the images (paths, or the digest of
    embedded bytes) and the synthetic image task's problem text. Nothing for a text row."""
    if not problem.get("images"):
        return {}
    fields = {"id": problem.get("id"), "images": [image_key(item) for item in problem["images"]]}
    return fields | ({"image_text": problem["image_text"]} if "image_text" in problem else {})


def log_failures(run, step: int, rows: dict):
    """Up to --log_failures of the step's failed rollouts (a wrong verified answer) to failures.jsonl, for
    analyze.py errors: a sample drawn with (seed, step), whatever the number of ranks, with each problem's
    reference solution where the data has one. Apart from rollouts.jsonl, whose few rows are for reading."""
    failed = [i for i, right in enumerate(rows["correct"]) if not right]
    picked = sorted(random.Random(f"failures:{run.cfg.seed}:{step}").sample(failed, min(run.cfg.log_failures,
                                                                                          len(failed))))
    lines = []
    for i in picked:
        problem = rows["problems"][i]
        lines.append(json.dumps({"step": step, "prompt": problem["problem"], "answer": problem["answer"],
                                 **image_fields(problem), "solution": str(problem.get("solution") or ""),
                                 "response": rows["texts"][i],
                                 "reward": rows["rewards"][i], "correct": False}) + "\n")
    if lines:
        runfolder.append_text(run.out_dir / "failures.jsonl", "".join(lines))


TOKENS = "tokens"   # <run>/tokens/step_<step>.safetensors


def log_tokens(out_dir, step: int, completions, logprobs, entropies):
    """Every rollout of a step, token by token, in one safetensors file (read back without running code): the
    response token ids `ids` (int32) and the sampler's `logprobs` and `entropies` (float32, nats), all responses
    one after the other, and `offsets` (int64, B + 1) where each starts. 12 bytes a response token."""
    from safetensors.torch import save_file
    folder = out_dir / TOKENS
    folder.mkdir(exist_ok=True)
    lengths = torch.tensor([0] + [len(c) for c in completions])
    flat = lambda rows, dtype: torch.tensor([x for r in rows for x in r], dtype=dtype)   # noqa: E731
    tmp = folder / f".step_{step:06d}.{os.getpid()}.tmp"   # written beside, then renamed: a link there is replaced
    save_file({"ids": flat(completions, torch.int32), "logprobs": flat(logprobs, torch.float32),
               "entropies": flat(entropies, torch.float32), "offsets": lengths.cumsum(0)}, str(tmp))
    tmp.replace(folder / f"step_{step:06d}.safetensors")   # whole or not at all


def mark_tokens(tokenizer, token_ids: list[int], flags: list[float]) -> str:
    """Decode a response with each run of flagged tokens wrapped in [[ ]], for reading rollouts.jsonl."""
    pieces = []
    for flagged, run in itertools.groupby(zip(token_ids, flags), key=lambda pair: bool(pair[1])):
        text = tokenizer.decode([token for token, _ in run])
        pieces.append(f"[[{text}]]" if flagged else text)
    return "".join(pieces)

def plot_run(run):
    if run.cfg.plot and run.rank == 0:
        try:
            import plot
            plot.plot_runs([run.out_dir], run.out_dir / "metrics.png")
        except ImportError as e:  # matplotlib missing: the metrics file is still there
            print(f"no plot ({e})", file=sys.stderr)
