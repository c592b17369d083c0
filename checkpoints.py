"""What a run leaves in its folder, and how it comes back: config.json, the checkpoint (written atomically, read
back without running code), resume (which flags may change), and the logs cut back to the checkpoint.

Plumbing: the algorithm (train_grpo.py) does not depend on reading this file. The folder's lock and its safe
writes are runfolder.py's; the layout of a run folder is in the README ("A run folder").
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import random
import re
import shutil
import sys
from pathlib import Path

import torch
from safetensors import safe_open

import rollout
import runfolder
from data import json_row
from distributed import bare, barrier, from_rank0
from flags import ConfigError


def prepare_run_folder(cfg, eval_set: list[dict], write: bool = True) -> tuple[Path, Path | None, dict]:
    """Check everything about --out_dir and --resume, then (and only then) write to the folder.

    A new run writes config.json, with --prompt_style "" resolved by the model's tokenizer. A resumed run must
    have the flags of its config.json but for the RESUMABLE ones, whose changes go to resumes.jsonl (an empty
    --prompt_style takes the run's); config.json is never rewritten. A folder whose
    run died before its first checkpoint starts over under --resume. Returns (out_dir, checkpoint
    folder or None, trainer state)."""
    out_dir = Path(cfg.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out_dir {out_dir}: is a file, not a folder")
    logged = (out_dir / "metrics.jsonl").exists()
    if logged and not cfg.resume:
        raise ConfigError(f"--out_dir {out_dir}: already holds a run; pass --resume or pick another folder")
    ckpt, state = find_checkpoint(out_dir) if cfg.resume else (None, {})
    if not ckpt and not cfg.prompt_style:   # a new run records the style its model's tokenizer decides
        cfg.prompt_style = rollout.prompt_style_of(cfg.model)
    now = dataclasses.asdict(cfg)
    if ckpt:
        try:
            saved = json.loads((out_dir / "config.json").read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"--resume: {out_dir / 'config.json'} is unreadable ({e}); nothing was changed")
        if not isinstance(saved, dict):
            raise ConfigError(f"--resume: {out_dir / 'config.json'} is not a run's config (a JSON object); nothing "
                              f"was changed")
        saved = {f.name: f.default for f in dataclasses.fields(cfg)} | saved   # a flag added since ran at its default
        if saved["prompt_style"] == "" and isinstance(saved["model"], str):   # made before the style was recorded
            saved["prompt_style"] = rollout.prompt_style_before_it_was_recorded(saved["model"])
        if not cfg.prompt_style:   # "": the style the run was made with
            cfg.prompt_style = now["prompt_style"] = saved["prompt_style"]
        if isinstance(saved["max_new_tokens"], int) and now["max_new_tokens"] < saved["max_new_tokens"]:   # upwards only
            raise ConfigError(f"--resume: --max_new_tokens {now['max_new_tokens']}: the run was made with "
                              f"{saved['max_new_tokens']}; it may be raised, not lowered")
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
        runfolder.append_jsonl(out_dir / "resumes.jsonl", {"step": state["step"], "changed": changed})
    else:
        if cfg.resume:
            print(f"--resume: no checkpoint in {out_dir} yet, starting the run over", file=sys.stderr)
        runfolder.write_text(out_dir / "config.json", json.dumps(now, indent=2))
    for log in ("metrics.jsonl", "rollouts.jsonl", "failures.jsonl"):   # lines written after the checkpoint go
        _truncate_jsonl(out_dir / log, state.get("step", 0))
    for tokens in (out_dir / "tokens").glob("*step_*"):   # and so do the token logs of those steps, and any
        number = re.fullmatch(r"step_(\d+)\.safetensors", tokens.name)             # half-written by a crash
        if (number is None and tokens.name.endswith(".tmp")) or (number and int(number.group(1)) >= state.get("step", 0)):
            tokens.unlink()
    # What "held-out" means for this run, for anyone to check against rollouts.jsonl.
    runfolder.write_text(out_dir / "held_out.jsonl", "".join(json.dumps(json_row(p)) + "\n" for p in eval_set))
    barrier()
    return out_dir, ckpt, state

# Flags that may differ when a run is resumed: they change how long it runs, how it is watched or how
# fast it goes, not what it computes (and --max_new_tokens, which may be raised by hand, as the context rule
# does; past the length the problems were fit to at the start, prompts that no longer fit are dropped and the
# data order changes; --sample_rows keeps the training rollouts, each seeded on its own, but a sampled in-loop
# evaluation draws others). Every other flag must match the run's config.json.
RESUMABLE = ("max_steps", "max_new_tokens", "resume", "out_dir", "preset", "device", "data_dir", "eval_every",
             "save_every", "log_rollouts", "log_tokens", "log_failures", "plot", "wandb_project", "cuda_graphs", "sampler_dtype",
             "micro_batch_tokens", "sample_rows", "logprob_chunk", "grad_checkpointing", "max_bad_steps", "deterministic",
             "dist_timeout", "grad_cosine_every")

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

def save_checkpoint(run, step: int) -> str:
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
        rollout.save_tokenizer(run.tokenizer, tmp)
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
