"""Speed machinery: nothing here changes what is computed, only how fast. The algorithm (train_grpo.py) does
not depend on reading this file.

completion_logprobs computes what train_grpo.token_logprobs computes, the plain teacher-forced log-probs
(one forward of prompt + completion per row; its signature adds pad_id, chunk and with_entropy):
tests/test_grpo.py checks that both give the same log-probs, entropies and gradients. To read the loss with
the plain version, call token_logprobs in train_grpo.rollouts_loss (one process: its per-row forwards are
not what DDP expects). completion_logprobs is faster in three ways:
  - prompt sharing: the G rollouts of a group share one forward pass of their prompt (its keys and values
    are handed to every completion), U*P + b*Tc tokens instead of b*(P+Tc);
  - the vocabulary projection in chunks, recomputed in the backward pass: the [b, Tc, V] float32 logits
    never exist at once;
  - micro-batches by cost (micro_batches): rows sorted by length and cut where the padding is least, so one
    long outlier gets its own micro-batch instead of padding every row to its length.
micro_batch_plan weights the micro-batches so that their gradients add up to the mini-batch's, and
teacher_forced_logprobs runs the no-grad passes (PPO's old policy, the KL reference) micro-batch by micro-batch.
"""
from __future__ import annotations

import math

import torch
from transformers import DynamicCache

from distributed import bare, gradient_sync, max_over_ranks
import rollout
from rollout import prompt_key, rope_positions, vision_inputs


def last_hidden(model, **inputs) -> torch.Tensor:
    """The final hidden states [b, t, C], through the model's own forward (so that DDP and FSDP see
    the call), with the vocabulary projection run on one position only (logits_to_keep=1)."""
    return model(**inputs, output_hidden_states=True, logits_to_keep=1).hidden_states[-1]


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
    # A VLM's micro-batch without images gets one blank image row (its output weighted 0), in one process too: the
    # vision tower then runs inside every forward, on every rank, so that DDP sees a gradient for each parameter
    # and FSDP2 gathers and reduces the same parameters in the same order on every rank (a rank that skipped the
    # tower would hang).
    blank = rollout.is_vision_model(bare(model)) and not any(isinstance(p, rollout.VisionPrompt) for p in prompts)
    if blank:
        prompts, completions = prompts + [rollout.blank_image_prompt(bare(model))], completions + [[pad_id]]
    device = next(model.parameters()).device
    share = share_prompts and not bare(model).is_activation_checkpointing
    index = {}   # distinct prompt -> its row in the prompt batch
    row_prompt = [index.setdefault(prompt_key(p) if share else i, len(index)) for i, p in enumerate(prompts)]
    unique = list({prompt_key(p): p for p in prompts}.values()) if share else prompts
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
    # Prompt positions [U, P] ([3, U, P] for a VLM's M-RoPE); a completion token's is its 1-D position plus its
    # prompt's offset (0 without images), the same on the three M-RoPE axes.
    prompt_pos, offset = rope_positions(bare(model), prompt_ids, prompt_mask, unique)
    positions = (prompt_mask.sum(-1, keepdim=True) + offset)[rows] + torch.arange(Tc, device=device)  # [b, Tc]
    attention = torch.cat([prompt_mask[rows], valid], 1)                                 # [b, P+Tc]
    if share:
        cache = DynamicCache(config=bare(model).config.get_text_config())
        prompt_hidden = last_hidden(model, input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=prompt_pos,
                                    cache=cache, use_cache=True, **vision_inputs(unique, device))  # [U, P, C]
        for layer in cache.layers:               # each row reads its prompt's keys/values; index_select,
            layer.keys = layer.keys.index_select(0, rows)        # not cache.batch_select_indices: the
            layer.values = layer.values.index_select(0, rows)    # backward of its x[rows] is not deterministic on the CPU
        hidden = last_hidden(model, input_ids=ids, attention_mask=attention, position_ids=positions,
                             cache=cache, use_cache=True)                                  # [b, Tc, C]
        # The prompt's last state predicts completion token 0; token t's state predicts t + 1.
        hidden = torch.cat([prompt_hidden[rows, -1:], hidden[:, :-1]], 1)                 # [b, Tc, C]
    else:
        full_pos = torch.cat([prompt_pos[..., rows, :], positions.expand(*prompt_pos.shape[:-2], -1, -1)], -1)
        hidden = last_hidden(model, input_ids=torch.cat([prompt_ids[rows], ids], 1), attention_mask=attention,
                             position_ids=full_pos, **vision_inputs([unique[r] for r in row_prompt], device))
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
    logp, entropy = torch.cat(logps, 1) * valid, torch.cat(entropies, 1) * valid if with_entropy else None
    if blank:   # the blank row leaves the result, its (zero) gradient path stays
        logp = logp[:-1] + 0.0 * logp[-1:].nan_to_num().sum()
        entropy = None if entropy is None else entropy[:-1]
    return logp, entropy


def teacher_forced_logprobs(run, model, prompts, completions, width: int) -> torch.Tensor:
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


def micro_batch_plan(run, members: list[int], kept_tokens: torch.Tensor, prompts, completions, unit: str):
    """This rank's micro-batches of a mini-batch as (rows, weight, gradient-sync context).

    `members` are the mini-batch's rollouts among every rank's (kept_tokens [B x ranks] counts each one's
    kept tokens); `prompts` and `completions` are this rank's. The weights make the micro-batch losses add up
    to the mini-batch loss: a micro-batch's share of the mini-batch's tokens or sequences, whichever the
    aggregation averages over (`unit`: train_grpo.AGGREGATIONS), counted over all ranks. Every rank runs as
    many passes (FSDP gathers weights in each): a rank with fewer runs zero-weight passes on one of its
    rollouts at the end, and only the last pass synchronises gradients."""
    if unit not in ("tokens", "sequences"):
        raise ValueError(f"an aggregation averages over 'tokens' or 'sequences', not {unit!r} (train_grpo.AGGREGATIONS)")
    cfg, offset = run.cfg, run.rank * len(prompts)       # this rank's rollouts, among all of them
    mine = [i - offset for i in members if offset <= i < offset + len(prompts)]
    total = kept_tokens[members].sum().item() if unit == "tokens" else len(members)
    plan = [[mine[i] for i in idx] for idx in
            micro_batches([prompts[i] for i in mine], [len(completions[i]) for i in mine], cfg.micro_batch_tokens)]
    passes = max_over_ranks(run, len(plan))
    for k, idx in enumerate(plan):
        share = kept_tokens[[i + offset for i in idx]].sum().item() if unit == "tokens" else len(idx)
        yield idx, share / total, gradient_sync(run, last=k == passes - 1)
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
    keys = [prompt_key(p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: (-completion_lens[i], keys[i]))
    n = len(order)
    best, cut = [0] + [math.inf] * n, [0] * (n + 1)
    for j in range(1, n + 1):
        distinct, longest_prompt = set(), 0
        for i in range(j - 1, -1, -1):           # the run order[i:j]; order[i] has its longest completion
            distinct.add(keys[order[i]])
            longest_prompt = max(longest_prompt, len(prompts[order[i]]))
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
