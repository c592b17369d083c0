"""Several processes: `torchrun --nproc_per_node N train_grpo.py ...` starts N ranks, and these helpers are
all the distributed code of the trainer. With one process (a plain `python` launch, rank 0 of 1) every helper
below is a no-op, so the algorithm (train_grpo.py) does not depend on reading this file.

Each rank samples, rewards and updates its own block of the step's prompts (whole groups, so group
statistics and HICRA's masks stay local); DDP (or FSDP2 with --fsdp) averages the gradients, and each loss
is normalised by the counts of the whole step, so N ranks compute the gradient one would. Rank 0 evaluates
and writes. Only PyTorch's own stack is used: torchrun, DDP, FSDP2 and torch.distributed.checkpoint.
"""
from __future__ import annotations

import copy
import datetime
import os
from contextlib import contextmanager, nullcontext

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import rollout


def setup_distributed(cfg) -> tuple[int, int, torch.device]:
    """(rank, world size, device): join torchrun's process group, NCCL on CUDA (one GPU per rank), gloo
    on the CPU. The flags (--device, --fsdp, --batch_size over the ranks) were checked by flags.check_config."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return 0, 1, torch.device(cfg.device)
    device = torch.device(cfg.device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    if not dist.is_initialized():   # a rank that hangs fails the others after --dist_timeout, not half an hour
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=cfg.dist_timeout))
    return dist.get_rank(), dist.get_world_size(), device


def distribute(model, cfg, world: int, device: torch.device):
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
    blocks = list(rollout.decoder(model).layers)
    if rollout.is_vision_model(model):   # a VLM's vision tower: its blocks too
        blocks += list(model.model.visual.blocks)
    for block in blocks:
        fully_shard(block, mp_policy=precision)
    fully_shard(model, mp_policy=precision)
    return model, policy


def sampler_dtype(cfg, device: torch.device) -> torch.dtype:
    if cfg.sampler_dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, cfg.sampler_dtype)


def refresh_policy(run):
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


def rank_share(run, items: list) -> list:
    """This rank's block of the step's prompts."""
    n = len(items) // run.world
    return items[run.rank * n:(run.rank + 1) * n]


@contextmanager
def gradient_sync(run, last: bool):
    """Average gradients across ranks in this backward pass only if it is the mini-batch's last."""
    if run.world > 1 and isinstance(run.model, DistributedDataParallel):
        with nullcontext() if last else run.model.no_sync():
            yield
    else:
        if run.world > 1:
            run.model.set_requires_gradient_sync(last)
        yield


def all_rows(run, x: torch.Tensor) -> torch.Tensor:
    """A 1-D tensor of this rank's rollouts -> the same for every rank's, in rank order (on the CPU)."""
    if run.world == 1:
        return x
    device = next(run.model.parameters()).device
    parts = [torch.empty_like(x, device=device) for _ in range(run.world)]
    dist.all_gather(parts, x.to(device))
    return torch.cat(parts).cpu()


def sum_over_ranks(run, *values: float) -> tuple:
    if run.world == 1:
        return values
    total = torch.tensor(values, dtype=torch.float64, device=next(run.model.parameters()).device)
    dist.all_reduce(total)
    return tuple(total.tolist())


def max_over_ranks(run, value: int) -> int:
    if run.world == 1:
        return value
    top = torch.tensor([value], device=next(run.model.parameters()).device)
    dist.all_reduce(top, op=dist.ReduceOp.MAX)
    return int(top.item())


def gather_rows(run, **columns: list) -> dict | None:
    """Per-rollout lists from every rank, concatenated in rank order, on rank 0 (None elsewhere)."""
    if run.world == 1:
        return columns
    parts = [None] * run.world
    dist.all_gather_object(parts, columns)
    return {key: [x for part in parts for x in part[key]] for key in columns} if run.rank == 0 else None


def deal(run, chosen: list[tuple[int, int]], per_rank: int, take) -> list:
    """Items sampled on every rank, dealt out again in blocks: `chosen` names items as (draw, position among every
    rank's items of that draw), rank r having sampled positions r x per_rank to (r + 1) x per_rank - 1 of each
    draw, and take(draw, k) is this rank's own item k of a draw. Returns this rank's block of `chosen` (rank_share),
    in order; each item comes point to point from the rank that sampled it, so no rank receives the others'."""
    share = len(chosen) // run.world
    outgoing = {r: {(d, k): take(d, k - run.rank * per_rank) for d, k in chosen[r * share:(r + 1) * share]
                    if k // per_rank == run.rank} for r in range(run.world)}
    dealt = {n: item for part in exchange(run, outgoing) for n, item in part.items()}
    return [dealt[n] for n in rank_share(run, chosen)]


def exchange(run, outgoing: dict) -> list:
    """Point to point: send outgoing[r] to each other rank r and receive what each sends here. Returns, in rank
    order, what every rank sent this one (outgoing.get(run.rank) for its own). The pairs take turns in one
    fixed order, so each rank sends and receives only its own part, not everybody's."""
    received = [None] * run.world
    received[run.rank] = outgoing.get(run.rank)
    for source in range(run.world):
        for target in range(run.world):
            if source != target and run.rank == source:
                dist.send_object_list([outgoing.get(target)], dst=target)
            elif source != target and run.rank == target:
                box = [None]
                dist.recv_object_list(box, src=source)
                received[source] = box[0]
    return received


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


def bare(model):
    """The Hugging Face model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model
