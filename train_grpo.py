"""GRPO for math reasoning with verifiable rewards, in one loop you can read top to bottom.

    python train_grpo.py --model Qwen/Qwen2.5-0.5B --prompt_style plain               # one GPU
    torchrun --nproc_per_node 4 train_grpo.py --model ...                          # several (--fsdp shards)
    torchrun --nproc_per_node 8 train_grpo.py --preset paper_qwen3_4b_instruct     # a paper run (presets.py)
    python train_grpo.py --preset cpu_demo                                          # offline, CPU

Each step (grpo_step): sample G rollouts for each of `batch_size` prompts (rollout.sample) ->
reward each one (reward.math_reward: 1 if the final answer is right) -> group-relative advantages
A = (r - mean_group) / std_group on every token -> the method's hook (HICRA: train_hicra.py) ->
teacher-forced log-probs -> PPO's clipped surrogate with clip-higher -> backward -> AdamW step.

What it keeps from the textbook, and what it drops:
  - kept: PPO's clipped ratio with DAPO's asymmetric clip (eps_low 0.2, eps_high 0.28; --loss cispo and
    reinforce, --ratio_level sequence for GSPO: the alternatives the field compares, in policy_loss), several
    PPO epochs / mini-batches if asked, three loss aggregations (DAPO's token mean, the original
    GRPO's per-sequence mean, Dr. GRPO's constant normaliser), optional k3 KL to a frozen
    reference, optional entropy bonus (the paper's entropy-regularisation baseline), optional
    DAPO dynamic sampling (groups whose rewards are all equal carry no signal: draw more prompts
    until the batch holds none, or only drop them with --skip_zero_var).
  - dropped: a value network (GRPO's group baseline replaces it), reward models (the reward is
    verified), and the KL term by default (with kl_coef = 0 no reference model is loaded).
  - old log-probs: on-policy (one PPO epoch, one mini-batch, the default) the policy that sampled
    is the one being updated, so the loss uses logp.detach(): ratio 1, the plain policy gradient,
    and clipping never acts (the run says so). Else they are recomputed before the first update by
    the very forward the update runs, not taken from the sampler (on CUDA a bf16 copy).

Changing the method: train(cfg, reward_fn=..., shape_advantages=...) (README, "Modifying it"). The
plumbing (flags, run setup, checkpoints, logs, torchrun, the fast log-probs of speed.py) lives in
files of its own that the algorithm does not need you to read (README, "The code").
"""

from __future__ import annotations

import hashlib
import math
import random
import sys
import time
from dataclasses import dataclass

import torch

import eval as evaluation
import flags
import presets
import rollout
import runfolder
from checks import one_of
from data import DataError, load_problems, row_key
from distributed import all_rows, deal, from_rank0, gather_rows, rank_share, refresh_policy, sum_over_ranks
from flags import ConfigError, check_config
from reward import math_reward
from rollout import pad_rows
from runsetup import Run, end_of_step, finish_run, grow_responses, response_budget, start_run
from runsetup import stop_after_step_on_ctrl_c
from speed import completion_logprobs, micro_batch_plan, teacher_forced_logprobs
from steplog import Clock, gradient_sample, log_metrics, step_report

# ----------------------------------------------------------------------------- the math of GRPO

def group_advantages(rewards: torch.Tensor, scale_by_std: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """rewards [num_prompts, G] -> advantages [num_prompts, G]: r - group mean, over the group std.

    The std is the unbiased one (torch.std); a group whose rewards are all equal gets A = 0.
    """
    centered = rewards - rewards.mean(dim=1, keepdim=True)                   # [P, G]
    if not scale_by_std:
        return centered
    return centered / (rewards.std(dim=1, keepdim=True) + eps)               # [P, G]


# Each loss aggregation (a branch of aggregate) and what it averages over. The update splits a mini-batch
# into micro-batches weighted by their share of these (speed.micro_batch_plan), so a new aggregation is added
# here with its unit, or --loss_agg refuses it; tests/test_grpo.py checks each against the unsplit gradient.
AGGREGATIONS = {"token_mean": "tokens", "seq_mean_token_mean": "sequences", "dr_grpo": "sequences"}

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


LOSSES = ("clip", "cispo", "reinforce")     # --loss: the policy-gradient term (policy_loss)
RATIO_LEVELS = ("token", "sequence")        # --ratio_level: one importance ratio a token, or one a response


def policy_loss(logp, old_logp, advantages, mask, eps_low=0.2, eps_high=0.28, agg="token_mean",
                norm_len=None, stats: dict | None = None, loss: str = "clip", ratio_level: str = "token") -> torch.Tensor:
    """The policy-gradient loss to minimise; all inputs [B, T], advantages per token, mask 0/1.

    The importance ratio r = exp(logp - old_logp) per token. ratio_level="sequence" (GSPO, Zheng et al. 2025;
    TRL's importance_sampling_level="sequence") gives every token of a response the response's ratio
    s = exp(sum_t (logp - old_logp) / |y|), so the clip acts on whole responses; in GSPO-token's form, whose
    value is s and whose gradient reaches each token through its own log-prob, times its own advantage (with one
    advantage per response, as GRPO's, it is GSPO's gradient; with HICRA's per-token advantages it keeps them).
    Then, per token:
      clip       -min(r * A, clip(r, 1 - eps_low, 1 + eps_high) * A): PPO's surrogate with DAPO's clip-higher;
                 for A > 0 the ratio is capped at 1 + eps_high, for A < 0 floored at 1 - eps_low. No dual clip.
      cispo      -sg(min(r, 1 + eps_high)) * A * logp (MiniMax-M1; TRL's loss_type="cispo"): the clip bounds each
                 token's weight from above, and no token loses its gradient to it (sg: no gradient through it).
      reinforce  -A * logp: REINFORCE with the group baseline, no ratio and no clip (nanochat's RL); the ratio
                 level does not enter it.
    On-policy (old_logp = logp, r = 1) the three gradients are the same, and so are the two ratio levels.
    If `stats` is a dict, it receives clip_frac (the share of response tokens whose ratio the clip moved).
    """
    log_ratio = logp - old_logp                                              # [B, T]
    if ratio_level == "sequence":
        per_seq = (log_ratio * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1)   # [B, 1]
        log_ratio = per_seq.detach() + logp - logp.detach()                 # [B, T] value s, own token's gradient
    ratio = torch.exp(log_ratio)                                             # [B, T]
    if loss == "reinforce":
        per_token, was_clipped = -advantages * logp, torch.zeros_like(ratio)
    elif loss == "cispo":
        weight = ratio.clamp(max=1 + eps_high)                               # [B, T]
        per_token, was_clipped = -weight.detach() * advantages * logp, (weight != ratio).float()
    else:
        unclipped = ratio * advantages
        clipped = ratio.clamp(1 - eps_low, 1 + eps_high) * advantages
        per_token, was_clipped = -torch.minimum(unclipped, clipped), (clipped < unclipped).float()
    if stats is not None:
        stats["clip_frac"] = ((was_clipped * mask).sum() / mask.sum().clamp(min=1)).item()
    return aggregate(per_token, mask, agg, norm_len)


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(policy || reference): exp(d) - d - 1 with d = ref - logp (>= 0)."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def token_logprobs(model, prompts: list[list[int]], completions: list[list[int]]):
    """log p(token | prompt, earlier tokens) and the entropy of that distribution, for every token of every
    completion: one forward of prompt + completion per row. Returns logp, entropy [b, Tc], 0 past a row's end.

    The plain reference: the loop runs speed.completion_logprobs, which computes the same (to float
    tolerance, gradients too: tests/test_grpo.py) faster, with a prompt pass shared by each group."""
    device, width = next(model.parameters()).device, max(len(c) for c in completions)
    logp = torch.zeros(len(completions), width, device=device)                      # [b, Tc]
    entropy = torch.zeros(len(completions), width, device=device)                   # [b, Tc]
    for i, (p, c) in enumerate(zip(prompts, completions)):
        ids = torch.tensor([p + c], device=device)                                  # [1, P + Tc]
        images = rollout.vision_inputs([p], device)   # a VLM's prompt with images: the model places them itself
        if images:
            images["mm_token_type_ids"] = (ids == model.config.image_token_id).int()   # [1, P + Tc]
        logits = model(input_ids=ids, **images).logits[0, len(p) - 1:-1].float()    # [Tc, V]: t predicts t + 1
        all_logp = logits.log_softmax(-1)                                           # [Tc, V]
        logp[i, :len(c)] = all_logp.gather(-1, ids[0, len(p):, None]).squeeze(-1)  # [Tc]
        entropy[i, :len(c)] = -(all_logp.exp() * all_logp).sum(-1)                 # [Tc]
    return logp, entropy


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
    from tqdm import tqdm
    try:
        check_config(cfg, CHECKS)
        train_set, eval_set = load_data(cfg)                     # data errors before the model loads
        run = start_run(cfg, train_set, eval_set, shape_advantages, reward_fn)   # model, optimizer, resume
        if run.rank == 0 and on_policy(cfg):                     # say what the configuration makes inert, once
            print("on-policy (--ppo_epochs 1, --mini_batches 1): PPO's ratio is exactly 1, so clipping (--eps_low, "
                  "--eps_high) never acts; --mini_batches 4 or --ppo_epochs 2 make it act", file=sys.stderr)
        with stop_after_step_on_ctrl_c() as stop, tqdm(range(run.start_step, cfg.max_steps), initial=run.start_step,
                                                       total=cfg.max_steps, desc=name, dynamic_ncols=True,
                                                       disable=run.rank > 0) as bar:
            for step in bar:
                # Held-out accuracy of the policy that samples this step (before its update), so the
                # curve starts at the base model; one more evaluation follows the last step.
                evaluated = evaluate(run) if cfg.eval_every and step % cfg.eval_every == 0 else {}
                metrics = grpo_step(run, step) | evaluated
                log_metrics(run, metrics)
                grow_responses(run, metrics)                 # (optional) the paper's context rule (runsetup.py)
                bar.set_postfix({k: f"{metrics[k]:.3g}" for k in ("reward_mean", "response_len_mean", "loss",
                                                                  "eval_accuracy") if k in metrics})
                if end_of_step(run, step, metrics, stop):   # checkpoints, a broken model, Ctrl-C (runsetup.py)
                    break
            if cfg.eval_every and not stop["requested"]:   # the trained policy: a row of its own
                log_metrics(run, {"step": cfg.max_steps} | evaluate(run))
        finish_run(run)                        # metrics.png; under torchrun, leave the process group
        return run.policy
    finally:
        runfolder.release(cfg.out_dir)   # the run folder's lock (runfolder.py), however the run ended


def grpo_step(run: Run, step: int) -> dict:
    """One step of GRPO on the run's policy; returns the step's metrics (on rank 0; the other ranks
    get what the loop needs to stop in step with it)."""
    cfg, tokenizer, G = run.cfg, run.tokenizer, run.cfg.group_size
    clock = Clock(next(run.model.parameters()).device)          # seconds and peak memory of each phase

    # ---- 1-2. Sample G rollouts for each of this rank's prompts and reward each one (sample_groups, below).
    batch = sample_groups(run, step, rank_share(run, batch_at(step, cfg, len(run.train_set))), clock)
    drawn = {}
    if cfg.dynamic_sampling:     # (optional) DAPO: more prompts until batch_size groups have rewards that differ
        batch, drawn = dynamic_sampling(run, step, batch, clock)
    out, texts, correct = batch.out, batch.texts, batch.correct
    problems = [run.train_set[i] for i in batch.indices]
    seq_prompts = [batch.prompts[k] for k in out.prompt_index]   # the prompt of each of the B = P x G rollouts
    seq_problems = [problems[k] for k in out.prompt_index]
    row_seeds = [seed_for(cfg.seed, "rollout", step, i, j) for i in batch.indices for j in range(G)]   # [B]
    rewards = torch.tensor(batch.scores).view(len(problems), G)                               # [P, G]

    # ---- 3. Advantages: each rollout against the others of its group, on every token of the rollout.
    seq_adv = group_advantages(rewards, cfg.scale_by_std).view(-1)                           # [B]
    T = max(len(c) for c in out.completion_ids)
    tokens_mask = pad_rows([[1.0] * len(c) for c in out.completion_ids], T)                 # [B, T]
    loss_mask = tokens_mask * kept_rollouts(cfg, rewards, out.finished)[:, None]            # [B, T] (optional filters)
    advantages = seq_adv[:, None] * loss_mask                                                # [B, T]
    if cfg.top_entropy_quantile < 1:   # (optional) the policy term on the step's highest-entropy tokens only
        advantages = advantages * top_entropy_tokens(run, pad_rows(out.entropies, T), loss_mask, cfg.top_entropy_quantile)
    plain = advantages                                                                       # before any hook

    # ---- 4. The method's hook: where a method changes the advantages (HICRA: train_hicra.py).
    marked = None                                    # the tokens a method singled out, shown in rollouts.jsonl
    if run.shape_advantages is not None:
        entropy = pad_rows(out.entropies, T)                                                 # [B, T] the sampler's
        advantages, marked = run.shape_advantages(advantages, out.completion_ids, entropy, tokenizer, run.grams,
                                                  cfg, row_seeds)
        advantages = advantages * loss_mask                                                  # [B, T]

    # ---- 5. (optional) Log-probs before any update: the old policy's for PPO's ratio (by the very forward
    #         the update runs), the reference's for the KL. On-policy (the default) no forward is spent.
    old_logp = None if on_policy(cfg) else teacher_forced_logprobs(run, run.model, seq_prompts, out.completion_ids, T)
    ref_logp = None if run.reference is None else \
        teacher_forced_logprobs(run, run.reference, seq_prompts, out.completion_ids, T)      # [B, T]
    clock.lap("old_logp")
    cosine = {}   # (analysis) how far the method turns the step's gradient from plain GRPO's, every k steps
    if cfg.grad_cosine_every and marked is not None and step % cfg.grad_cosine_every == 0:
        value = gradient_cosine(run, seq_prompts, out.completion_ids, advantages, plain, loss_mask, old_logp, ref_logp)
        cosine = {} if value is None else {"grad_cosine_grpo": value}
        clock.lap("grad_cosine")

    # ---- 6. Log-probs -> loss -> backward -> optimizer step, for each mini-batch.
    losses, updates, skipped = update(run, step, seq_prompts, out.completion_ids, advantages, loss_mask,
                                      old_logp, ref_logp)
    refresh_policy(run)   # the sampler's copy of the weights (bf16 on CUDA, FSDP's full weights) follows the update
    clock.lap("update")

    # ---- 7. Metrics, and a few rollouts to read, on rank 0 over every rank's rollouts.
    return step_report(run, step, out, seq_problems=seq_problems, seq_prompts=seq_prompts, texts=texts,
                       rewards=rewards, correct=correct, seq_adv=seq_adv, advantages=advantages, marked=marked,
                       losses=losses, updates=updates, skipped=skipped, lr=lr_at(cfg, step), clock=clock,
                       max_new_tokens=response_budget(run)) | drawn | cosine


@dataclass
class Groups:
    """What phases 1-2 hand the rest of a step: P prompts with G rollouts each (rollout k answers prompt k // G)."""
    indices: list[int]              # [P] the problems, as indices of run.train_set
    prompts: list[list[int]]        # [P] their prompts' token ids
    out: rollout.Rollout            # [B = P x G] completions, the sampler's log-probs and entropies, finished
    texts: list[str]                # [B] the completions, decoded
    correct: list[float]            # [B] 1.0 if the verified final answer is right, else 0.0
    scores: list[float]             # [B] the reward: `correct`, or the run's reward_fn


def sample_groups(run: Run, step: int, indices: list[int], clock: Clock) -> Groups:
    """Phases 1 and 2 of a step, for the problems `indices` (this rank's block of the step's prompts)."""
    cfg, tokenizer, G = run.cfg, run.tokenizer, run.cfg.group_size
    # ---- 1. Sample G rollouts for each prompt. Each rank takes whole groups (a block of the step's
    #         prompts); each rollout's random stream is seeded by (seed, step, problem, sample), so 1 or
    #         N ranks, resumed or not, sample the same rollouts.
    problems = [run.train_set[i] for i in indices]
    prompts = rollout.encode_problems(tokenizer, problems, cfg.prompt_style, cfg.instruction)
    row_seeds = [seed_for(cfg.seed, "rollout", step, i, j) for i in indices for j in range(G)]   # one per rollout
    run.policy.eval()
    out = rollout.sample(run.policy, prompts, response_budget(run), temperature=cfg.temperature, top_p=cfg.top_p,
                         eos_token_id=tokenizer.stop_token_ids, row_seeds=row_seeds, n=G,
                         pad_token_id=tokenizer.pad_token_id, graphs=cfg.cuda_graphs, max_rows=cfg.sample_rows)
    texts = tokenizer.batch_decode(out.completion_ids, skip_special_tokens=True)
    clock.lap("sample")

    # ---- 2. Reward each rollout: 1 if its final answer is right, else 0 (or the run's reward_fn).
    seq_problems = [problems[k] for k in out.prompt_index]
    correct = [math_reward(t, p["answer"], strict=cfg.strict_box) for t, p in zip(texts, seq_problems)]
    scores = correct if run.reward_fn is None else [float(run.reward_fn(t, p)) for t, p in zip(texts, seq_problems)]
    clock.lap("reward")
    return Groups(indices, prompts, out, texts, correct, scores)


def update(run: Run, step: int, prompts, completions, advantages, loss_mask, old_logp, ref_logp):
    """Step 6: per mini-batch (all the step's rollouts by default), its loss -> backward -> an optimizer step.
    Tensors [B, T], this rank's. Returns (means of loss, clip_frac, kl, grad_norm over the applied updates,
    or {} if none; the number of updates; whether one was skipped as non-finite)."""
    cfg, model = run.cfg, run.model
    kept_tokens = all_rows(run, loss_mask.sum(1))          # [B x ranks] kept tokens of every rank's rollouts
    totals, updates, skipped = {"loss": 0.0, "clip_frac": 0.0, "kl": 0.0, "grad_norm": 0.0}, 0, False
    model.train()
    for members in mini_batches(cfg, step, kept_tokens):   # rollouts among every rank's
        for group in run.optimizer.param_groups:
            group["lr"] = lr_at(cfg, step)
        run.optimizer.zero_grad(set_to_none=True)
        sums = backward(run, members, kept_tokens, prompts, completions, advantages, loss_mask, old_logp, ref_logp)
        step_loss, step_clipped, step_kl = sum_over_ranks(run, *sums)   # every rank's
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or math.inf))
        if not (math.isfinite(step_loss) and math.isfinite(grad_norm)):
            run.optimizer.zero_grad(set_to_none=True)   # skip a non-finite update, keep the weights
            skipped = True
            continue
        run.optimizer.step()
        updates += 1
        tokens = kept_tokens[members].sum().item()
        for key, value in zip(totals, (step_loss, step_clipped / tokens, step_kl / tokens, grad_norm)):
            totals[key] += value
    run.optimizer.zero_grad(set_to_none=True)   # gradients are spent: free their memory for sampling
    model.eval()
    return ({k: v / updates for k, v in totals.items()} if updates else {}), updates, skipped


def backward(run: Run, members, kept_tokens, prompts, completions, advantages, loss_mask, old_logp, ref_logp):
    """The gradient of a mini-batch's loss (`members`: its rollouts among every rank's), added into the weights'
    .grad; returns this rank's (loss, clipped tokens, summed KL) for the metrics."""
    loss_sum, clipped, kl_sum = 0.0, 0.0, 0.0
    # Speed machinery: micro-batches that fit memory, weighted so that their gradients add up to the
    # mini-batch's over all ranks; each rank runs its own rollouts of the mini-batch.
    for rows, weight, sync in micro_batch_plan(run, members, kept_tokens, prompts, completions,
                                               AGGREGATIONS[run.cfg.loss_agg]):
        with run.autocast, sync:
            loss, stats = rollouts_loss(run, [prompts[i] for i in rows], [completions[i] for i in rows],
                                        advantages[rows], loss_mask[rows],
                                        None if old_logp is None else old_logp[rows],
                                        None if ref_logp is None else ref_logp[rows])
            (loss * (weight * run.world)).backward()   # x world: DDP and FSDP average the ranks' gradients
        loss_sum += loss.item() * weight
        clipped += stats["clipped"]
        kl_sum += stats["kl"]
    return loss_sum, clipped, kl_sum


def gradient_cosine(run: Run, prompts, completions, advantages, plain, loss_mask, old_logp, ref_logp) -> float | None:
    """(analysis, --grad_cosine_every) The cosine between the step's gradient under the method's advantages and
    under plain GRPO's (`plain`, before the hook), over all the step's kept rollouts as one batch, on a sample of
    the gradient's entries (gradient_sample). The KL and entropy terms, if any, are in both. Neither gradient is
    applied; it costs two backward passes. None when no rollout is kept or a gradient is 0."""
    kept_tokens = all_rows(run, loss_mask.sum(1))                                          # [B x ranks]
    members = [i for i in range(len(kept_tokens)) if kept_tokens[i] > 0]
    if not members:
        return None
    samples = []
    run.model.train()
    for adv in (advantages, plain):
        run.optimizer.zero_grad(set_to_none=True)
        backward(run, members, kept_tokens, prompts, completions, adv, loss_mask, old_logp, ref_logp)
        samples.append(gradient_sample(run.model))
    run.optimizer.zero_grad(set_to_none=True)
    run.model.eval()
    a, b = samples
    norm = (a.norm() * b.norm()).item()
    return (a @ b).item() / norm if norm > 0 else None


def rollouts_loss(run: Run, prompts, completions, advantages, loss_mask, old_logp, ref_logp):
    """The loss of a few rollouts: log-probs -> clipped surrogate (+ KL, - entropy bonus); inputs [b, T] on the
    CPU (old_logp None: on-policy). Returns (loss, {"clipped": clipped tokens, "kl": summed KL})."""
    cfg, device, norm_len = run.cfg, next(run.model.parameters()).device, response_budget(run)
    # token_logprobs above, faster: a prompt pass shared by each group, the projection in chunks (speed.py)
    logp, entropy = completion_logprobs(run.model, prompts, completions, run.tokenizer.pad_token_id,
                                        cfg.logprob_chunk, with_entropy=cfg.entropy_coef > 0)   # [b, t]
    t = logp.shape[1]
    mask, adv = loss_mask[:, :t].to(device), advantages[:, :t].to(device)                       # [b, t]
    old = logp.detach() if old_logp is None else old_logp[:, :t].to(device)   # on-policy: ratio 1
    stats = {}
    loss = policy_loss(logp, old, adv, mask, cfg.eps_low, cfg.eps_high, cfg.loss_agg,
                       norm_len=norm_len, stats=stats, loss=cfg.loss, ratio_level=cfg.ratio_level)
    kl_sum = 0.0
    if cfg.kl_coef > 0:            # (optional) k3 KL to the initial model
        kl = kl_k3(logp, ref_logp[:, :t].to(device))                                            # [b, t]
        loss = loss + cfg.kl_coef * aggregate(kl, mask, cfg.loss_agg, norm_len)
        kl_sum = (kl.detach() * mask).sum().item()   # logged per token, whatever the aggregation
    if cfg.entropy_coef > 0:       # (optional) entropy bonus: the paper's entropy baseline
        loss = loss - cfg.entropy_coef * aggregate(entropy, mask, cfg.loss_agg, norm_len)
    return loss, {"clipped": stats.get("clip_frac", 0.0) * mask.sum().item(), "kl": kl_sum}


def kept_rollouts(cfg: Config, rewards: torch.Tensor, finished: list[bool]) -> torch.Tensor:
    """(optional filters) 1.0 for the rollouts that enter the loss, 0.0 for those dropped: groups of equal rewards
    (--skip_zero_var, DAPO's dynamic sampling) and responses cut short (--mask_truncated). All 1.0 by default."""
    keep = torch.ones(rewards.numel(), dtype=torch.bool)                                     # [B]
    if cfg.skip_zero_var or cfg.dynamic_sampling:   # dynamic sampling's batch holds such groups only when short
        keep = (rewards.std(dim=1) > 0).repeat_interleave(cfg.group_size)
    if cfg.mask_truncated:
        keep &= torch.tensor(finished)
    return keep.float()


def top_entropy_tokens(run: Run, entropy: torch.Tensor, loss_mask: torch.Tensor, quantile: float) -> torch.Tensor:
    """(optional, --top_entropy_quantile) [B, T] 1 on the tokens whose entropy (the sampler's) is at least the
    (1 - quantile) quantile of every rank's kept response tokens this step, else 0. The advantages are multiplied by
    it: the policy term on the top 20% of tokens by entropy at 0.2, the loss's normaliser, KL and entropy bonus
    over every token ("Beyond the 80/20 rule", Wang et al. 2025; TRL's top_entropy_quantile)."""
    import numpy as np
    everyone = gather_rows(run, values=entropy[loss_mask > 0].tolist())                   # on rank 0
    threshold = None if everyone is None else \
        float(np.quantile(everyone["values"], 1 - quantile)) if everyone["values"] else math.inf
    return (entropy >= from_rank0(threshold)).float()                                    # [B, T]


def dynamic_sampling(run: Run, step: int, first: Groups, clock: Clock) -> tuple[Groups, dict]:
    """(optional) DAPO's dynamic sampling. A group whose rewards are all equal has A = 0 and teaches nothing;
    rather than train on a shrunken batch (--skip_zero_var), draw batch_size more prompts, again and again,
    until batch_size groups whose rewards differ are found or --dynamic_sampling_rounds draws were made, and
    train on the first batch_size of them (in the order drawn). Short of them at the cap, the batch is filled
    with the zero-variance groups drawn first, which the loss drops (kept_rollouts), and ds_short says how many.

    The extra prompts are a shuffle of the training problems seeded by (seed, step), without the step's own
    batch, so the data stays a function of (seed, step) and resume replays it. Each rank samples its block of
    every draw, and the chosen groups are then dealt to the ranks in blocks (distributed.deal), so 1 or N ranks
    train on the same groups. Returns (the step's groups on this rank, metrics: draws, prompts drawn, their
    zero-variance share, accuracy and truncated share (what the context rule reads), ds_short)."""
    cfg, G = run.cfg, run.cfg.group_size
    own = set(batch_at(step, cfg, len(run.train_set)))
    spare = [i for i in range(len(run.train_set)) if i not in own]
    random.Random(seed_for(cfg.seed, "refill", step)).shuffle(spare)
    draws, differs = [first], []                            # this rank's groups of each draw; every rank's flags
    while True:
        differs.append(all_rows(run, torch.tensor(draws[-1].scores).view(-1, G).std(dim=1) > 0).tolist())
        indices = spare[(len(draws) - 1) * cfg.batch_size:len(draws) * cfg.batch_size]
        if (sum(map(sum, differs)) >= cfg.batch_size or len(draws) >= cfg.dynamic_sampling_rounds
                or len(indices) < cfg.batch_size):          # full, at the cap, or the training set is spent
            break
        draws.append(sample_groups(run, step, rank_share(run, indices), clock))
    # Groups are numbered (draw, position among every rank's groups of the draw); choose batch_size of them.
    numbered = [(d, k) for d, flags in enumerate(differs) for k in range(len(flags))]
    chosen = ([n for n in numbered if differs[n[0]][n[1]]] + [n for n in numbered if not differs[n[0]][n[1]]])
    chosen = sorted(chosen[:cfg.batch_size])
    batch = join_groups(deal(run, chosen, len(first.indices), lambda d, k: one_group(draws[d], k)))
    batch.out.stats = rollout.concat_rollouts([g.out for g in draws]).stats   # this rank's sampling, every draw
    right, cut, sampled = sum_over_ranks(run, sum(sum(g.correct) for g in draws),
                                         sum(g.out.finished.count(False) for g in draws), sum(len(g.correct) for g in draws))
    found = sum(map(sum, differs))
    return batch, {"ds_draws": len(draws), "ds_prompts": len(numbered), "ds_zero_var_frac": 1 - found / len(numbered),
                   "ds_accuracy": right / sampled, "ds_truncated_frac": cut / sampled,
                   "ds_short": max(0, cfg.batch_size - found)}


def one_group(groups: Groups, k: int) -> Groups:
    """Group k of `groups`: its prompt and its G rollouts."""
    G, out = len(groups.texts) // len(groups.indices), groups.out
    rows = lambda xs: xs[k * G:(k + 1) * G]   # noqa: E731
    return Groups([groups.indices[k]], [groups.prompts[k]], rollout.Rollout(
        rows(out.completion_ids), rows(out.logprobs), rows(out.entropies), rows(out.finished), [0] * G),
        rows(groups.texts), rows(groups.correct), rows(groups.scores))


def join_groups(parts: list[Groups]) -> Groups:
    """Several Groups as one, in order."""
    flat = lambda key: [x for g in parts for x in getattr(g, key)]   # noqa: E731
    return Groups(flat("indices"), flat("prompts"), rollout.concat_rollouts([g.out for g in parts]), flat("texts"),
                  flat("correct"), flat("scores"))


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


def lr_at(cfg: Config, step: int) -> float:
    """Linear warm-up over warmup_steps, then constant or cosine decay to 10% at max_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
    return cfg.lr


# ----------------------------------------------------------------------------- data and held-out evaluation

def load_data(cfg: Config):
    """Training and held-out problems, never sharing a problem (compared by data.row_key: text, and images where a row has them).

    The held-out set is eval_size distinct problems of --eval_dataset, or else of the training source (drawn
    with another seed). Training problems are then drawn without those: a file's other rows, or the synthetic
    generator's others. num_problems counts training problems (synthetic default: 2000 drawn, with repeats)."""
    data_dir = cfg.data_dir or None
    held_out = []
    if cfg.eval_every:
        try:
            held_out = load_problems(cfg.eval_dataset or cfg.dataset, data_dir=data_dir, seed=cfg.seed + 1,
                                     limit=cfg.eval_size, distinct=True)
        except DataError as e:   # too few distinct problems to hold out: the flag asks for too many
            raise ConfigError(f"--eval_size {cfg.eval_size}: {e}") if "distinct" in str(e) else e
    train = load_problems(cfg.dataset, data_dir=data_dir, seed=cfg.seed,
                          limit=cfg.num_problems or (2000 if cfg.dataset.startswith("synthetic") else None),
                          exclude={row_key(p) for p in held_out})
    flags.check_split(cfg, len(train), len(held_out))   # enough training problems for a step
    return train, held_out


def batch_at(step: int, cfg: Config, num_problems: int) -> list[int]:
    """Indices of the problems of training step `step`. Each pass over the problems (an epoch) is a shuffle
    seeded by (seed, epoch), so no problem comes twice in one, and resuming needs only the step number."""
    epoch, slot = divmod(step, num_problems // cfg.batch_size)
    order = list(range(num_problems))
    random.Random(seed_for(cfg.seed, "data", epoch)).shuffle(order)
    return order[slot * cfg.batch_size:(slot + 1) * cfg.batch_size]


def seed_for(seed: int, stream: str, *keys: int) -> int:
    """The seed of one random stream: a hash of the run's seed, the stream's name and its keys, and of nothing
    else (not the batch layout, the number of processes or how far a resumed run got). Streams: "rollout" (step,
    problem, sample: one rollout's tokens and HICRA's placebo spans), "minibatch" (step), "data" (epoch), "refill"
    (step: dynamic sampling's extra prompts)."""
    text = ":".join(map(str, (seed, stream, *keys)))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def evaluate(run: Run) -> dict:
    """eval_accuracy on the held-out problems, one sample each (greedy unless eval_temperature > 0).
    Rank 0 evaluates, with the full weights; the other ranks wait for it in the next step."""
    if run.rank:
        return {}
    cfg, t0, correct = run.cfg, time.perf_counter(), 0
    for start in range(0, len(run.eval_set), 64):
        chunk = run.eval_set[start:start + 64]
        prompts = rollout.encode_problems(run.tokenizer, chunk, cfg.prompt_style, cfg.instruction)
        _, right, _ = evaluation.sample_and_grade(run.policy, run.tokenizer, prompts, [p["answer"] for p in chunk],
                                                  response_budget(run), cfg.eval_temperature, 1.0, cfg.seed,
                                                  cfg.strict_box, graphs=cfg.cuda_graphs, max_rows=cfg.sample_rows)
        correct += sum(right)
    return {"eval_accuracy": correct / len(run.eval_set), "eval_seconds": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- the config: every knob, one flag each

@dataclass
class Config:
    # model and data
    model: str = "Qwen/Qwen2.5-0.5B"        # HF folder, Hub id, or the offline alias smollm2-135m
    dataset: str = "math:train_level3to5"   # name, name:split, .jsonl path, or synthetic:<level>
    data_dir: str = ""                      # default: $HICRA_DATA_DIR (see data/__init__.py)
    num_problems: int = 0                   # 0 = all problems (synthetic: 2000 generated)
    prompt_style: str = ""                  # chat | plain; default: chat if the tokenizer has a chat template
    instruction: str = rollout.BOXED_INSTRUCTION
    strict_box: bool = True                 # reward only \boxed{} answers, as the paper's training and evaluation do
    out_dir: str = "runs/grpo"
    device: str = "cuda" if torch.cuda.is_available() else "cpu"
    seed: int = 0
    deterministic: bool = True              # PyTorch's deterministic algorithms: a rerun gives the same run
    max_pixels: int = 0                     # a VLM's images resized to at most this many pixels each (EasyR1 and
                                            # verl cap them too); 0 = the model's own cap
    freeze_vision: bool = False             # keep a VLM's vision tower (and its merger) as loaded; by default it
                                            # trains, as in EasyR1 and verl (their freeze_vision_tower: false)
    fsdp: bool = False                      # under torchrun: shard the model with FSDP2 (else DDP replicates it)
    dist_timeout: float = 10.0              # under torchrun: minutes a rank waits for the others before failing
    # rollouts
    max_steps: int = 200
    batch_size: int = 32                    # prompts per step
    group_size: int = 8                     # rollouts per prompt (G)
    max_new_tokens: int = 1024              # response length at the start (may be raised on --resume)
    max_new_tokens_final: int = 0           # the context rule: grow to this length; 0 = never grow
    grow_when_truncated: float = 0.2        # ... once this share of responses is cut (the paper: 20%)
    grow_window: int = 5                    # ... averaged over the last this many steps (chosen here)
    temperature: float = 1.0
    top_p: float = 1.0
    sampler_dtype: str = "auto"             # auto (bfloat16 on CUDA, else float32) | float32 | bfloat16
    cuda_graphs: bool = False               # decode through captured CUDA graphs (rollout.DecodeGraphs)
    sample_rows: int = 0                    # most rollouts a sampler call holds (its KV cache); 0 = all at once
    # advantages and loss
    scale_by_std: bool = True               # False = Dr. GRPO (no division by the group std)
    skip_zero_var: bool = False             # drop groups with equal rewards (A = 0); the batch shrinks
    dynamic_sampling: bool = False          # DAPO: draw more prompts until batch_size groups' rewards differ
    dynamic_sampling_rounds: int = 10       # ... at most this many draws of batch_size prompts a step (DAPO's
                                            #     recipe: 10 generation batches, verl's max_num_gen_batches)
    mask_truncated: bool = False            # no loss on responses cut at max_new_tokens
    loss: str = "clip"                      # clip (PPO's surrogate) | cispo | reinforce (policy_loss)
    ratio_level: str = "token"              # token | sequence (GSPO: one importance ratio per response)
    top_entropy_quantile: float = 1.0       # the loss on this top share of the step's tokens by entropy (0.2:
                                            # "Beyond the 80/20 rule"); 1 = every token
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
    log_tokens: bool = False                # every rollout's tokens, log-probs, entropies to tokens/ (12 B a token)
    log_failures: int = 4                   # failed rollouts per step to failures.jsonl (analyze.py errors)
    grad_cosine_every: int = 0              # runs with a hook (HICRA): every k steps, log grad_cosine_grpo, the
                                            # cosine to plain GRPO's gradient (two extra backward passes); 0 = off
    plot: bool = True                       # write metrics.png at the end
    wandb_project: str = ""                 # log to Weights & Biases too (if installed)
    preset: str = ""                        # cpu_demo (offline, minutes), cpu_ablation, or a paper run (presets.py)


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
PRESETS |= presets.PAPER   # the paper's runs, each value with its source (presets.py)

# What each flag needs (flags.py), and --loss_agg: one of the aggregations above.
CHECKS = flags.CHECKS + [("loss_agg", one_of(*AGGREGATIONS), "one of " + ", ".join(AGGREGATIONS)),
                         ("loss", one_of(*LOSSES), "one of " + ", ".join(LOSSES)),
                         ("ratio_level", one_of(*RATIO_LEVELS), "one of " + ", ".join(RATIO_LEVELS))]


def parse_config(argv=None, config_class=Config, checks_table=None) -> Config:
    """Every Config field is a flag (`--lr 1e-5`, `--scale_by_std false`); --preset sets defaults (flags.py)."""
    return flags.parse_config(argv, config_class, checks_table or CHECKS, PRESETS, __doc__.split("\n\n")[0],
                              presets.SOURCES)


def main(argv=None):
    try:
        train(parse_config(argv))
    except (ConfigError, DataError, rollout.ModelLoadError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
