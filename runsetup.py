"""Starting a run and stopping it cleanly: the Run the loop works with (start_run: ranks, run folder, model,
optimizer, resume), the gram list and the context check, and the end of each step (end_of_step: checkpoints,
a broken model, Ctrl-C that finishes the step and saves), the paper's context rule (grow_responses: the length
responses may take, kept in the checkpointed run state) and finish_run after the last step.

Plumbing: the algorithm (train_grpo.py) does not depend on reading this file.
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

import rollout
import strategic_grams
from checkpoints import load_optimizer_state, prepare_run_folder, save_checkpoint
from distributed import distribute, from_rank0, max_over_ranks, setup_distributed
from flags import ConfigError
from steplog import plot_run


@dataclass
class Run:
    """What the loop works with, set up once by start_run."""
    cfg: object                                # train_grpo.Config (or a method's subclass of it)
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
    bad_steps: int = 0                         # steps in a row whose update was skipped as non-finite
    rank: int = 0                              # this process among `world` (torchrun); rank 0 writes
    world: int = 1
    reward_fn: object = None                   # train's reward_fn (None: the verified math reward)


def start_run(cfg, train_set: list[dict], eval_set: list[dict], shape_advantages=None, reward_fn=None) -> Run:
    """Everything before the first step, in the order that keeps a failure cheap and the folder intact
    (the flags and data were checked by the caller): ranks, gram list, run folder (the first write), then
    model, optimizer, resume."""
    rank, world, device = setup_distributed(cfg)              # torchrun: one process per device
    grams = load_grams(cfg.grams) if cfg.grams else None
    out_dir, ckpt, state = prepare_run_folder(cfg, eval_set, write=rank == 0)   # the first write to the folder
    if rank == 0:
        print(json.dumps(dataclasses.asdict(cfg)))

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
    if cfg.max_pixels:   # before the prompts are measured: the cap sets how many tokens an image takes
        if not rollout.is_vision_model(model):
            raise ConfigError(f"--max_pixels: --model {cfg.model} takes no images")
        rollout.cap_pixels(tokenizer, cfg.max_pixels)
    context = getattr(model.config.get_text_config(), "max_position_embeddings", None)
    train_set = fit_context(train_set, cfg, tokenizer, context, "training")
    eval_set = fit_context(eval_set, cfg, tokenizer, context, "held-out")
    if len(train_set) < cfg.batch_size:
        flag = "max_new_tokens_final" if cfg.max_new_tokens_final > cfg.max_new_tokens else "max_new_tokens"
        raise ConfigError(f"--{flag} {getattr(cfg, flag)}: leaves {len(train_set)} training problems "
                          f"that fit the context of {context}, fewer than --batch_size {cfg.batch_size}")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    reference = None
    if cfg.kl_coef > 0:   # the run's own starting model: --resume refuses another --model
        reference, _ = rollout.load_model(cfg.model, device=device, dtype=torch.float32)
        reference.requires_grad_(False)
    if cfg.freeze_vision:
        if not rollout.is_vision_model(model):
            raise ConfigError(f"--freeze_vision: --model {cfg.model} has no vision tower")
        model.model.visual.requires_grad_(False)
    if cfg.grad_checkpointing:
        model.activation_checkpointing_enable()
    model, policy = distribute(model, cfg, world, device)     # DDP or FSDP2 under torchrun; else as is
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
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
               last_good=f"{ckpt} (step {state['step']})" if ckpt else None, rank=rank, world=world,
               reward_fn=reward_fn)


def end_of_step(run: Run, step: int, metrics: dict, stop: dict) -> bool:
    """After step `step`: stop on a broken model rather than train on (non-finite weights, or --max_bad_steps
    updates skipped in a row), save a checkpoint when one is due or Ctrl-C was pressed (every rank together),
    and say whether the loop stops now."""
    cfg, done = run.cfg, step + 1
    run.bad_steps = run.bad_steps + 1 if metrics["skipped"] else 0
    if metrics["diverged"] or run.bad_steps >= cfg.max_bad_steps:
        what = (f"the weights or their outputs became non-finite in step {step}" if metrics["diverged"]
                else f"{run.bad_steps} non-finite updates in a row at step {step}")
        where = f"the last good checkpoint is {run.last_good}" if run.last_good else "no checkpoint was saved yet"
        raise RuntimeError(f"{what}: stopping (try a lower --lr); {where}")
    stop["requested"] = bool(max_over_ranks(run, int(stop["requested"])))   # all ranks stop together
    scheduled = done == cfg.max_steps or (cfg.save_every > 0 and done % cfg.save_every == 0)
    if stop["requested"] or (scheduled and cfg.save_every >= 0):
        run.last_good = save_checkpoint(run, done)
    if stop["requested"]:
        print(f"saved a checkpoint at step {done}; continue with --resume", file=sys.stderr)
    return stop["requested"]


def response_budget(run: Run) -> int:
    """The tokens a response may take now: --max_new_tokens, or the length the context rule grew it to."""
    return max(run.cfg.max_new_tokens, run.state.get("max_new_tokens", 0))


def grow_responses(run: Run, metrics: dict):
    """(optional) The paper's context rule: once the share of truncated responses, averaged over the last
    --grow_window steps, exceeds --grow_when_truncated, responses may take --max_new_tokens_final tokens
    from the next step on (16K -> 32K at 20% in the paper). Rank 0 decides, where the metrics are; the
    grown length is kept in run.state, which the checkpoint saves, so a resumed run keeps it. With dynamic
    sampling the share is over every response drawn (ds_truncated_frac), not the trained batch, which keeps the
    groups whose rewards differ and so leaves out many of the truncated (mostly wrong) responses."""
    cfg = run.cfg
    if response_budget(run) >= cfg.max_new_tokens_final:          # 0: never grow; or grown already
        return
    window = run.state.setdefault("truncated_fracs", [])   # rank 0's: the metrics are there
    if run.rank == 0:
        window[:] = (window + [metrics.get("ds_truncated_frac", metrics["truncated_frac"])])[-cfg.grow_window:]
    if from_rank0(run.rank == 0 and sum(window) / len(window) > cfg.grow_when_truncated):
        run.state["max_new_tokens"] = cfg.max_new_tokens_final
        if run.rank == 0:
            print(f"step {metrics['step']}: {sum(window) / len(window):.0%} of responses truncated, above "
                  f"--grow_when_truncated {cfg.grow_when_truncated}: responses may now take "
                  f"{cfg.max_new_tokens_final} tokens", file=sys.stderr)


def finish_run(run: Run):
    """After the last step: the plot of the run's metrics, and under torchrun the end of the process group."""
    plot_run(run)
    if dist.is_initialized():
        dist.destroy_process_group()


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

def fit_context(problems: list[dict], cfg, tokenizer, context: int | None, what: str) -> list[dict]:
    """The problems whose prompt leaves room for the longest response the run may take (--max_new_tokens, or
    --max_new_tokens_final if it grows) in the model's context; the others are dropped now, with a count,
    rather than failing at the step that meets them."""
    if not context or not problems:
        return problems
    lengths = rollout.prompt_lengths(tokenizer, problems, cfg.prompt_style, cfg.instruction)   # images not processed
    longest = max(cfg.max_new_tokens, cfg.max_new_tokens_final)
    kept = [p for p, n in zip(problems, lengths) if n + longest <= context]
    if len(kept) < len(problems):
        print(f"dropped {len(problems) - len(kept)} of {len(problems)} {what} problems: prompt + {longest} new "
              f"tokens (--max_new_tokens, --max_new_tokens_final) exceeds the model's context of {context} tokens",
              file=sys.stderr)
    return kept
