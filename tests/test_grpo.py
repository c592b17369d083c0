"""train_grpo.py: the GRPO math against hand values and slow references, and the loop's
checkpointing, resume, interruption and error handling on a tiny model."""

import dataclasses
import functools
import itertools
import json
import math
import os
import random
import shutil
import signal
from pathlib import Path

import pytest
import torch

import speed
import strategic_grams
import train_grpo
from rollout import checkpoints as rollout_checkpoints
from conftest import ROOT, build_model, fake_reward, read_metrics, tiny_args
from train_grpo import aggregate, group_advantages, kl_k3, policy_loss

# ----------------------------------------------------------------------------- advantages

def test_group_advantages_hand_values():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    a = group_advantages(rewards)
    # group 1: mean 0.5, unbiased std sqrt(1/3) -> +-0.5 / 0.57735 = +-0.8660
    assert torch.allclose(a[0], torch.tensor([0.8660, -0.8660, -0.8660, 0.8660]), atol=1e-4)
    assert torch.equal(a[1], torch.zeros(4))        # equal rewards carry no signal
    # group 3: mean 0.25, std 0.5 -> 1.5, -0.5
    assert torch.allclose(a[2], torch.tensor([1.5, -0.5, -0.5, -0.5]), atol=1e-4)
    b = group_advantages(rewards, scale_by_std=False)
    assert torch.allclose(b[0], torch.tensor([0.5, -0.5, -0.5, 0.5]))
    assert torch.allclose(b[2], torch.tensor([0.75, -0.25, -0.25, -0.25]))


# ----------------------------------------------------------------------------- the loss

def reference_loss(logp, old, adv, mask, eps_low, eps_high, agg, norm_len, loss="clip", level="token"):
    """A slow per-token loop written from the formulas, as a check on the vectorised version: PPO's one-sided
    clip, CISPO's capped and detached weight on log p, REINFORCE's A log p; GSPO-token's ratio is the response's,
    the exponential of its mean log-ratio, held fixed, times p / sg(p) of the token (value s, the token's own
    gradient)."""
    B, T = logp.shape
    per_seq_sums, per_seq_counts, total, count = [], [], 0.0, 0
    for b in range(B):
        valid = [t for t in range(T) if mask[b, t] != 0]
        seq_ratio = torch.exp(sum(logp[b, t] - old[b, t] for t in valid) / len(valid)) if valid else None
        s, n = 0.0, 0
        for t in valid:
            ratio = torch.exp(logp[b, t] - old[b, t]) if level == "token" else \
                seq_ratio.detach() * torch.exp(logp[b, t] - logp[b, t].detach())
            a = adv[b, t]
            if loss == "reinforce":
                surrogate = a * logp[b, t]
            elif loss == "cispo":
                weight = min(ratio.item(), 1 + eps_high)                      # a number: no gradient through it
                surrogate = weight * a * logp[b, t]
            elif a >= 0:
                surrogate = torch.minimum(ratio, torch.tensor(1 + eps_high)) * a
            else:
                surrogate = torch.maximum(ratio, torch.tensor(1 - eps_low)) * a
            s = s - surrogate
            n += 1
        per_seq_sums.append(s)
        per_seq_counts.append(n)
        total, count = total + s, count + n
    if agg == "token_mean":
        return total / count
    if agg == "seq_mean_token_mean":
        return sum(s / max(n, 1) for s, n in zip(per_seq_sums, per_seq_counts)) / B
    return sum(per_seq_sums) / B / norm_len


def loss_inputs(seed=0, B=4, T=7):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(B, T, generator=g) * 3
    logp = (old + torch.randn(B, T, generator=g) * 0.4).requires_grad_(True)   # ratios well past the clip
    adv = torch.randn(B, 1, generator=g).expand(B, T).clone()
    mask = torch.ones(B, T)
    mask[0, 5:] = 0
    mask[2, 2:] = 0
    return logp, old, adv, mask


@pytest.mark.parametrize("agg", train_grpo.AGGREGATIONS)
def test_policy_loss_and_gradient_match_reference(agg):
    logp, old, adv, mask = loss_inputs()
    ours = policy_loss(logp, old, adv, mask, 0.2, 0.28, agg, norm_len=10)
    (grad_ours,) = torch.autograd.grad(ours, logp)
    ref = reference_loss(logp, old, adv, mask, 0.2, 0.28, agg, 10)
    (grad_ref,) = torch.autograd.grad(ref, logp)
    assert torch.allclose(ours, ref, atol=1e-6)
    assert torch.allclose(grad_ours, grad_ref, atol=1e-6)
    assert grad_ours[mask == 0].abs().max() == 0


@pytest.mark.parametrize("loss", train_grpo.LOSSES)
@pytest.mark.parametrize("level", train_grpo.RATIO_LEVELS)
@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean"])
def test_each_loss_and_ratio_level_matches_its_formula(loss, level, agg):
    logp, old, adv, mask = loss_inputs(seed=1)
    ours = policy_loss(logp, old, adv, mask, 0.2, 0.28, agg, norm_len=10, loss=loss, ratio_level=level)
    (grad_ours,) = torch.autograd.grad(ours, logp)
    ref = reference_loss(logp, old, adv, mask, 0.2, 0.28, agg, 10, loss, level)
    (grad_ref,) = torch.autograd.grad(ref, logp)
    assert torch.allclose(ours, ref, atol=1e-6) and torch.allclose(grad_ours, grad_ref, atol=1e-6)
    assert grad_ours[mask == 0].abs().max() == 0


def test_loss_gradients_by_hand_off_policy():
    """One response of two tokens, ratios 1.5 and 0.5 (token level) or sqrt(0.75) (sequence level), A = 1,
    token mean over 2 tokens."""
    old = torch.zeros(1, 2)
    logp = torch.log(torch.tensor([[1.5, 0.5]])).requires_grad_(True)
    adv, mask = torch.ones(1, 2), torch.ones(1, 2)
    grad = lambda **kw: torch.autograd.grad(policy_loss(logp, old, adv, mask, 0.2, 0.28, **kw), logp)[0]  # noqa: E731
    # CISPO: -w * A * logp / 2 with w = min(r, 1.28) = 1.28, 0.5: every token keeps a gradient
    assert torch.allclose(grad(loss="cispo"), torch.tensor([[-1.28 / 2, -0.5 / 2]]))
    # PPO's clip: the first token's ratio is past 1 + eps_high, so it has none; the second, -r * A / 2
    assert torch.allclose(grad(loss="clip"), torch.tensor([[0.0, -0.5 / 2]]))
    assert torch.allclose(grad(loss="reinforce"), torch.tensor([[-0.5, -0.5]]))
    # GSPO: s = exp((log 1.5 + log 0.5) / 2) = sqrt(0.75) ~ 0.866, inside the clip for A > 0; each token's loss is
    # -s * A with the gradient s * A through its own log-prob: -s / 2 each (GSPO's, for one advantage a response)
    s = 0.75 ** 0.5
    assert torch.allclose(grad(ratio_level="sequence"), torch.tensor([[-s / 2, -s / 2]]))
    # a response's ratio past the clip: s = 1.5 for A > 0 is capped, and no token of it has a gradient; for A < 0
    # a ratio of 0.5 is floored at 0.8, and none has one either
    for ratio, a in ((1.5, 1.0), (0.5, -1.0)):
        logp = torch.log(torch.tensor([[ratio, ratio]])).requires_grad_(True)
        loss = policy_loss(logp, old, torch.full((1, 2), a), mask, 0.2, 0.28, ratio_level="sequence", stats=(st := {}))
        assert torch.autograd.grad(loss, logp)[0].abs().max() == 0 and st["clip_frac"] == 1.0


@pytest.mark.parametrize("agg", train_grpo.AGGREGATIONS)
def test_on_policy_every_loss_and_ratio_level_has_the_policy_gradient(agg):
    """With old log-probs equal to the current ones (ratio 1), GSPO is GRPO and the three losses share a gradient,
    per-token advantages included."""
    logp, _, adv, mask = loss_inputs(seed=2)
    adv = adv * (1 + 0.2 * (torch.arange(adv.shape[1]) % 2))     # per-token advantages, as HICRA's hook makes them
    grads = [torch.autograd.grad(policy_loss(logp, logp.detach(), adv, mask, 0.2, 0.28, agg, norm_len=10,
                                             loss=loss, ratio_level=level), logp)[0]
             for loss in train_grpo.LOSSES for level in train_grpo.RATIO_LEVELS]
    assert all(torch.allclose(g, grads[0], atol=1e-6) for g in grads)
    token, sequence = (policy_loss(logp, logp.detach(), adv, mask, 0.2, 0.28, agg, norm_len=10, ratio_level=level)
                       for level in train_grpo.RATIO_LEVELS)
    assert torch.allclose(token, sequence)


def test_clip_is_asymmetric_and_one_sided():
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.5, 1.5, 0.5, 0.5]])).requires_grad_(True)
    adv = torch.tensor([[1.0, -1.0, -1.0, 1.0]])
    mask = torch.ones(1, 4)
    stats = {}
    loss = policy_loss(logp, old, adv, mask, 0.2, 0.28, "token_mean", stats=stats)
    # per token: A>0 ratio 1.5 -> capped at 1.28; A<0 ratio 1.5 -> not clipped (-1.5);
    #            A<0 ratio 0.5 -> floored at 0.8; A>0 ratio 0.5 -> not clipped (0.5)
    expected = -(1.28 - 1.5 - 0.8 + 0.5) / 4
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert stats["clip_frac"] == pytest.approx(0.5)
    (grad,) = torch.autograd.grad(loss, logp)
    # clipped tokens get no gradient; unclipped get -A * ratio / 4
    assert torch.allclose(grad, torch.tensor([[0.0, 1.5 / 4, 0.0, -0.5 / 4]]), atol=1e-6)


def test_aggregations_hand_values():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    m = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert aggregate(x, m, "token_mean").item() == pytest.approx(10 / 4)
    assert aggregate(x, m, "seq_mean_token_mean").item() == pytest.approx((2 + 4) / 2)
    assert aggregate(x, m, "dr_grpo", norm_len=5).item() == pytest.approx((6 + 4) / 2 / 5)
    assert aggregate(x, m, "dr_grpo").item() == pytest.approx((6 + 4) / 2 / 3)
    with pytest.raises(ValueError, match="aggregation"):
        aggregate(x, m, "sum")
    # A sequence dropped by a filter (its mask all 0) counts in no mean: only the first one is left.
    dropped = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    assert aggregate(x, dropped, "token_mean").item() == pytest.approx(6 / 3)
    assert aggregate(x, dropped, "seq_mean_token_mean").item() == pytest.approx(6 / 3)
    assert aggregate(x, dropped, "dr_grpo", norm_len=5).item() == pytest.approx(6 / 5)


def test_k3_kl():
    logp, ref = torch.tensor([-1.0, -2.0, -0.5]), torch.tensor([-2.0, -2.0, -0.1])
    kl = kl_k3(logp, ref)
    assert kl[0].item() == pytest.approx(math.exp(-1) + 1 - 1)
    assert kl[1].item() == 0
    assert kl[2].item() == pytest.approx(math.exp(0.4) - 0.4 - 1)
    assert (kl >= 0).all()


# ----------------------------------------------------------------------------- chunked log-probs

def test_token_logprobs_is_the_next_token_distribution(tiny_tokenizer):
    """The trainer's plain reference against the definition, one forward per prefix: log p(c_t | prompt, c_<t)
    and the entropy of that distribution, 0 past a row's end."""
    model = build_model("qwen2", len(tiny_tokenizer))
    prompts, completions = [[5, 6, 7], [10, 11]], [[20, 21, 22, 23], [30, 31]]
    logp, entropy = train_grpo.token_logprobs(model, prompts, completions)
    assert logp.shape == entropy.shape == (2, 4)
    with torch.no_grad():
        for i, (p, c) in enumerate(zip(prompts, completions)):
            for t in range(len(c)):
                dist = model(torch.tensor([p + c[:t]])).logits[0, -1].double().log_softmax(-1)   # [V]
                assert logp[i, t].item() == pytest.approx(dist[c[t]].item(), abs=1e-5)
                assert entropy[i, t].item() == pytest.approx(-(dist.exp() * dist).sum().item(), abs=1e-4)
    assert logp[1, 2:].eq(0).all() and entropy[1, 2:].eq(0).all()


def full_logprobs(model, prompt, completion):
    """One row of the plain reference (train_grpo.token_logprobs): log-probs [Tc], entropies [Tc]."""
    logp, entropy = train_grpo.token_logprobs(model, [prompt], [completion])
    return logp[0], entropy[0]


@pytest.mark.parametrize("arch,unshared", [("qwen2", ""), ("llama", ""), ("qwen3", ""),
                                           ("qwen2", "checkpointing"), ("llama", "flag")])
def test_chunked_logprobs_equal_full_computation(tiny_tokenizer, arch, unshared):
    model = build_model(arch, len(tiny_tokenizer))
    if unshared == "checkpointing":   # HF drops the cache under checkpointing: every row runs its own prompt
        model.activation_checkpointing_enable()
        model.train()
    completion_logprobs = functools.partial(speed.completion_logprobs, share_prompts=unshared != "flag")
    # Rows 0/2 and 1/4 share a prompt (as the rollouts of a group do), so their prompt pass is shared.
    prompts = [[5, 6, 7, 8, 9], [10, 11], [5, 6, 7, 8, 9], [12, 13, 14], [10, 11]]
    completions = [[20, 21, 22, 23], [30, 31, 32, 33, 34, 35, 36], [40], [41, 42], [30, 50, 51]]
    logp, ent = completion_logprobs(model, prompts, completions, pad_id=3, chunk=3)
    assert logp.shape == (5, 7)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        ref_logp, ref_ent = full_logprobs(model, p, c)
        assert torch.allclose(logp[i, :len(c)], ref_logp, atol=1e-5)
        assert torch.allclose(ent[i, :len(c)], ref_ent, atol=1e-4)
        assert (logp[i, len(c):] == 0).all() and (ent[i, len(c):] == 0).all()
    logp_only, none = completion_logprobs(model, prompts, completions, pad_id=3, chunk=5, with_entropy=False)
    assert none is None and torch.allclose(logp_only, logp, atol=1e-6)
    # Gradients (through the shared prompt pass and the checkpointed chunks) equal those of the
    # plain computation, one sequence at a time.
    weights = torch.randn(logp.shape, generator=torch.Generator().manual_seed(0))
    model.zero_grad()
    (completion_logprobs(model, prompts, completions, pad_id=3, chunk=2)[0] * weights).sum().backward()
    ours = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    sum((full_logprobs(model, p, c)[0] * weights[i, :len(c)]).sum()
        for i, (p, c) in enumerate(zip(prompts, completions))).backward()
    for a, b in zip(ours, [p.grad for p in model.parameters()]):
        assert torch.allclose(a, b, atol=1e-4)   # float32; embedding gradients reach |60|


def micro_batch_cost(prompts, lens, batch, overhead):
    """What completion_logprobs runs for one micro-batch, in tokens (see speed.micro_batches)."""
    distinct = {tuple(prompts[i]) for i in batch}
    return (len(distinct) * max(len(prompts[i]) for i in batch) + len(batch) * max(lens[i] for i in batch)
            + overhead)


@pytest.mark.parametrize("unit", ["tokens", "sequences"])
def test_micro_batch_weights_are_shares_of_the_mini_batch(unit):
    """speed.micro_batch_plan: each micro-batch weighs its share of the mini-batch's kept tokens or sequences
    (by hand here), so the weights of a mini-batch add up to 1; an aggregation that declares another unit is
    refused rather than given per-sequence weights."""
    run = type("FakeRun", (), dict(rank=0, world=1, cfg=train_grpo.Config(micro_batch_tokens=40)))
    prompts, completions = [[1, 2]] * 4, [[5] * 30, [5] * 4, [5] * 6, [5] * 5]
    kept = torch.tensor([30.0, 0.0, 6.0, 5.0])     # row 1 was filtered out: not a member
    plan = [(rows, weight) for rows, weight, _ in speed.micro_batch_plan(run, [0, 2, 3], kept, prompts, completions,
                                                                         unit)]
    assert sorted(r for rows, _ in plan for r in rows) == [0, 2, 3] and len(plan) == 2   # row 0 alone: budget
    by_hand = {tuple(rows): (sum(kept[r].item() for r in rows) / 41 if unit == "tokens" else len(rows) / 3)
               for rows, _ in plan}
    assert all(weight == pytest.approx(by_hand[tuple(rows)]) for rows, weight in plan)
    assert sum(weight for _, weight in plan) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="'tokens' or 'sequences'"):
        next(speed.micro_batch_plan(run, [0], kept, prompts, completions, "sequence"))


def test_micro_batches_split_off_a_long_outlier():
    # One shared 10-token prompt; completions 48, 10, 10, 10. Together: 10 + 4 x 48 = 202 tokens (+ 64 per
    # call); the outlier alone and the rest together: (10 + 48) + (10 + 3 x 10) = 98 (+ 2 x 64).
    prompts = [[1] * 10] * 4
    assert speed.micro_batches(prompts, [48, 10, 10, 10], 10_000) == [[0], [1, 2, 3]]
    # Tight budget: rows x (10 + longest) <= 40 allows at most two rows of 10.
    batches = speed.micro_batches(prompts, [48, 10, 10, 10], 40)
    assert sorted(map(sorted, batches)) == [[0], [1, 2], [3]] or sorted(map(sorted, batches)) == [[0], [1], [2, 3]]


@pytest.mark.parametrize("seed", range(5))
def test_micro_batches_are_the_cheapest_split_within_budget(seed):
    """Against brute force over every split of the length-sorted rows into contiguous runs."""
    rng = random.Random(seed)
    n = 7
    prompts = [[rng.randint(0, 2)] * rng.choice([5, 9]) for _ in range(n)]
    lens = [rng.randint(1, 40) for _ in range(n)]
    budget = rng.choice([60, 120, 10_000])
    batches = speed.micro_batches(prompts, lens, budget)
    assert sorted(i for b in batches for i in b) == list(range(n))

    def fits(b):
        return len(b) == 1 or len(b) * (max(len(prompts[i]) for i in b) + max(lens[i] for i in b)) <= budget

    assert all(fits(b) for b in batches)
    order = sorted(range(n), key=lambda i: (-lens[i], prompts[i]))
    best = math.inf
    for cuts in itertools.product([0, 1], repeat=n - 1):        # 1 = a micro-batch ends after this row
        runs, current = [], [order[0]]
        for cut, i in zip(cuts, order[1:]):
            if cut:
                runs.append(current)
                current = []
            current.append(i)
        runs.append(current)
        if all(fits(r) for r in runs):
            best = min(best, sum(micro_batch_cost(prompts, lens, r, 64) for r in runs))
    assert sum(micro_batch_cost(prompts, lens, b, 64) for b in batches) == best


# ----------------------------------------------------------------------------- the held-out split

def same_problem(text):
    """Written here, independently of data.problem_key: case and spacing do not make a new problem."""
    return " ".join(text.lower().split())


def assert_disjoint(train, held_out, eval_size):
    held = {same_problem(p["problem"]) for p in held_out}
    assert len(held_out) == len(held) == eval_size                 # distinct held-out problems
    assert not held & {same_problem(p["problem"]) for p in train}


@pytest.mark.parametrize("flags", [["--preset", "cpu_demo"], ["--preset", "cpu_ablation"]] + [
    ["--dataset", f"synthetic:{level}", "--num_problems", "600", "--eval_size", "48"] for level in range(1, 8)])
def test_held_out_problems_never_appear_in_training(flags):
    cfg = train_grpo.parse_config(flags)
    train, held_out = train_grpo.load_data(cfg)
    assert len(train) == cfg.num_problems
    assert_disjoint(train, held_out, cfg.eval_size)
    if cfg.dataset == "synthetic:1":    # 81 distinct sums: the held-out ones are never drawn for training,
        assert len({p["problem"] for p in train}) == 81 - cfg.eval_size     # and every other one is


def test_held_out_split_of_a_file_with_repeated_problems(tmp_path):
    # 30 problems, each written three ways (case, spacing), shuffled together.
    rows = [{"problem": text.format(i), "answer": str(2 * i)}
            for i in range(30) for text in ("What is {0} + {0}?", "what is {0} + {0}?  ", "What  is {0} +  {0}?")]
    random.Random(0).shuffle(rows)
    path = tmp_path / "repeats.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = train_grpo.Config(dataset=str(path), eval_every=1, eval_size=5, batch_size=4)
    train, held_out = train_grpo.load_data(cfg)
    assert_disjoint(train, held_out, 5)
    assert len(train) == 25 * 3                 # every other row, all three spellings of each
    # A separate --eval_dataset that overlaps the training file: its problems leave the training set.
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"problem": f"WHAT IS {i} + {i}?", "answer": str(2 * i)}) + "\n"
                             for i in range(20, 40)))
    train, held_out = train_grpo.load_data(dataclasses.replace(cfg, eval_dataset=str(other), eval_size=20))
    assert_disjoint(train, held_out, 20)
    assert len(train) == 20 * 3


@pytest.mark.skipif(not (Path(__file__).parents[2] / "shared" / "data" / "math").is_dir(),
                    reason="needs ../shared/data")
def test_held_out_split_of_the_gpu_training_set():
    data_dir = str(Path(__file__).parents[2] / "shared" / "data")
    cfg = train_grpo.Config(dataset="math:train_level3to5", data_dir=data_dir, eval_size=128)
    train, held_out = train_grpo.load_data(cfg)
    assert_disjoint(train, held_out, 128)


def test_lr_schedule():
    cfg = train_grpo.Config(lr=1.0, warmup_steps=4, max_steps=14, lr_schedule="cosine")
    assert [train_grpo.lr_at(cfg, s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert train_grpo.lr_at(cfg, 4) == pytest.approx(1.0)
    assert train_grpo.lr_at(cfg, 14) == pytest.approx(0.1)
    assert train_grpo.lr_at(train_grpo.Config(lr=2.0, warmup_steps=0), 100) == 2.0


# ----------------------------------------------------------------------------- the loop

def test_resume_is_exact_and_checkpoint_round_trips(qwen_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_grpo.train(train_grpo.parse_config(tiny_args(qwen_dir, straight, "--max_steps", "4")))
    train_grpo.train(train_grpo.parse_config(tiny_args(qwen_dir, split, "--max_steps", "2")))
    train_grpo.train(train_grpo.parse_config(tiny_args(qwen_dir, split, "--max_steps", "4", "--resume")))
    a, b = read_metrics(straight), read_metrics(split)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [0, 1, 2, 3, 4]   # 4: the final evaluation
    assert any(r["loss"] != 0 for r in a), "the test needs a real update"
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            assert ra[k] == pytest.approx(rb[k], rel=1e-4, abs=1e-6), k
    # The checkpoint is a plain HF folder, with the same weights as the run that wrote it.
    from transformers import AutoModelForCausalLM
    m1 = AutoModelForCausalLM.from_pretrained(straight / "ckpt")
    m2 = AutoModelForCausalLM.from_pretrained(split / "ckpt")
    for (name, p1), p2 in zip(m1.named_parameters(), m2.parameters()):
        assert torch.allclose(p1, p2, atol=1e-6), name
    state = torch.load(straight / "ckpt" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 4 and state["optimizer"]["state"]
    assert not (straight / "ckpt.tmp").exists() and not (straight / "ckpt.old").exists()
    assert (straight / "config.json").exists() and (straight / "rollouts.jsonl").exists()
    # The run names its held-out problems; none of them was a training prompt.
    held = {json.loads(l)["problem"] for l in (straight / "held_out.jsonl").read_text().splitlines()}
    trained = {json.loads(l)["prompt"] for l in (straight / "rollouts.jsonl").read_text().splitlines()}
    assert len(held) == 4 and trained and not held & trained
    # Evaluated before the updates of steps 0 and 2 (every 2), and after the last: a row of its own.
    assert [r["step"] for r in a if "eval_accuracy" in r] == [0, 2, 4] and set(a[4]) == {"step", "eval_accuracy"}


@pytest.mark.parametrize("save_every", ["0", "-1"])   # -1: never saves, but for Ctrl-C
def test_ctrl_c_saves_and_resumes(qwen_dir, tmp_path, monkeypatch, save_every):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    real_step = train_grpo.grpo_step

    def step_then_interrupt(cfg, step, *args):
        metrics = real_step(cfg, step, *args)
        if step == 0:
            os.kill(os.getpid(), signal.SIGINT)   # as if the user pressed Ctrl-C during step 0
        return metrics

    monkeypatch.setattr(train_grpo, "grpo_step", step_then_interrupt)
    out = tmp_path / "run"
    train_grpo.train(train_grpo.parse_config(tiny_args(qwen_dir, out, "--max_steps", "4", "--save_every", save_every)))
    assert torch.load(out / "ckpt" / "trainer_state.pt", weights_only=False)["step"] == 1
    assert [r["step"] for r in read_metrics(out)] == [0]          # stopped: no final evaluation
    monkeypatch.setattr(train_grpo, "grpo_step", real_step)
    train_grpo.train(train_grpo.parse_config(tiny_args(qwen_dir, out, "--max_steps", "3", "--resume")))
    assert [r["step"] for r in read_metrics(out)] == [0, 1, 2, 3]


def test_save_every_minus_one_writes_no_checkpoint(qwen_dir, tmp_path):
    out = tmp_path / "run"
    train_grpo.train(train_grpo.parse_config(tiny_args(qwen_dir, out, "--max_steps", "2", "--save_every", "-1")))
    assert [r["step"] for r in read_metrics(out)] == [0, 1, 2] and not rollout_checkpoints(out)


def test_non_finite_updates_are_skipped_then_stop(qwen_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    monkeypatch.setattr(train_grpo, "policy_loss", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    out = tmp_path / "nan"
    cfg = train_grpo.parse_config(tiny_args(qwen_dir, out, "--max_steps", "5", "--max_bad_steps", "2",
                                            "--eval_every", "0"))
    with pytest.raises(RuntimeError, match="non-finite updates in a row at step 1.*no checkpoint was saved yet"):
        train_grpo.train(cfg)
    rows = read_metrics(out)
    assert [r["skipped"] for r in rows] == [1, 1] and [r["updates"] for r in rows] == [0, 0]
    assert not {"loss", "grad_norm", "clip_frac"} & set(rows[0])   # absent, not a healthy-looking 0.0
    assert not (out / "ckpt").exists()   # stopped before any checkpoint of a broken model


BAD_FLAGS = [   # (flags, what the one-line error must say)
    (["--group_size", "1"], "--group_size 1: needs >= 2"),
    (["--batch_size", "500"], "--batch_size 500: larger than the 100 training problems"),
    (["--dataset", "no_such_set"], "no_such_set"),
    (["--loss_agg", "sum"], "--loss_agg 'sum'"),
    (["--lr_schedule", "linear"], "--lr_schedule"),
    (["--temperature", "0"], "--temperature 0.0: needs a number > 0"),
    (["--temperature", "nan"], "--temperature nan: needs a number > 0"),
    (["--eval_size", "82"], "--eval_size 82: synthetic:1: found only 81 distinct problems"),
    (["--eval_size", "0"], "--eval_size 0: needs an integer >= 1"),
    (["--num_problems", "-1"], "--num_problems -1: needs an integer >= 0"),
    (["--micro_batch_tokens", "0"], "--micro_batch_tokens 0: needs"),
    (["--logprob_chunk", "-3"], "--logprob_chunk -3: needs"),
    (["--save_every", "-2"], "--save_every -2: needs"),
    (["--eval_every", "-1"], "--eval_every -1: needs"),
    (["--kl_coef", "-0.1"], "--kl_coef -0.1: needs a number >= 0"),
    (["--entropy_coef", "-1"], "--entropy_coef -1.0: needs a number >= 0"),
    (["--max_bad_steps", "0"], "--max_bad_steps 0: needs"),
    (["--top_p", "0"], "--top_p 0.0: needs a number in (0, 1]"),
    (["--top_p", "1.5"], "--top_p 1.5: needs a number in (0, 1]"),
    (["--top_p", "nan"], "--top_p nan: needs a number in (0, 1]"),
    (["--lr", "nan"], "--lr nan: needs a number in (0, 1]"),
    (["--lr", "1e39"], "--lr 1e+39: needs a number in (0, 1]"),
    (["--weight_decay", "-1"], "--weight_decay -1.0: needs a number >= 0"),
    (["--grad_clip", "-1"], "--grad_clip -1.0: needs a number >= 0 (0 = no clipping)"),
    (["--device", "bogus"], "--device 'bogus': not a device"),
    (["--mini_batches", "900"], "--mini_batches 900: more than the 256 rollouts"),
]
if not torch.cuda.is_available():
    BAD_FLAGS.append((["--device", "cuda"], "--device cuda: no CUDA GPU is visible here"))


@pytest.mark.parametrize("flags, message", BAD_FLAGS)
def test_bad_config_is_one_line_before_the_model_loads(tmp_path, flags, message):
    # The model path does not exist: if the model were loaded first, the error would be about it.
    args = ["--model", str(tmp_path / "no-model"), "--dataset", "synthetic:1", "--num_problems", "100",
            "--eval_size", "16", "--out_dir", str(tmp_path / "run"), *flags]
    with pytest.raises(SystemExit) as info:
        train_grpo.main(args)
    text = str(info.value.code)
    assert text.startswith("error: ") and message in text and "\n" not in text, text
    assert "no-model" not in text
    assert not (tmp_path / "run").exists()      # nothing written


def test_existing_run_folder_needs_resume(qwen_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 0}\n')
    with pytest.raises(SystemExit, match="--resume"):
        train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "1"))


# ----------------------------------------------------------------------------- runs that survive

def weights(folder):
    from safetensors.torch import load_file
    return load_file(str(folder / "ckpt" / "model.safetensors"))


def test_grad_clip_zero_means_no_clipping(qwen_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    runs = {}
    for clip in ("0", "1e9", "1"):
        train_grpo.train(train_grpo.parse_config(tiny_args(qwen_dir, tmp_path / clip, "--max_steps", "1",
                                                           "--eval_every", "0", "--grad_clip", clip)))
        runs[clip] = weights(tmp_path / clip)
    assert read_metrics(tmp_path / "1")[0]["grad_norm"] > 1          # so that clipping at 1 acts
    start = build_model("qwen2", len(runs["0"]))                      # never used for its weights' values
    assert all(torch.equal(runs["0"][k], runs["1e9"][k]) for k in runs["0"])     # 0: the unclipped update
    assert not all(torch.equal(runs["0"][k], runs["1"][k]) for k in runs["0"])
    del start


def test_resume_refuses_flags_that_change_the_run_and_records_the_others(qwen_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    out = tmp_path / "run"
    train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "1"))
    config = (out / "config.json").read_text()
    for flags, named in [(["--group_size", "2"], "--group_size 4 (now 2)"), (["--lr", "2e-3"], "--lr 0.001 (now 0.002)"),
                         (["--model", str(tmp_path / "other")], "--model"), (["--kl_coef", "0.1"], "--kl_coef 0.0")]:
        with pytest.raises(SystemExit) as info:
            train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "2", "--resume", *flags))
        assert str(info.value.code).startswith("error: --resume: the run was made with ") and named in str(info.value.code)
    assert (out / "config.json").read_text() == config and [r["step"] for r in read_metrics(out)] == [0, 1]
    # How long it runs and how it is logged may change; the change is recorded, config.json stays.
    train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "3", "--resume", "--log_rollouts", "1"))
    assert (out / "config.json").read_text() == config
    resumes = [json.loads(l) for l in (out / "resumes.jsonl").read_text().splitlines()]
    assert resumes == [{"step": 1, "changed": {"max_steps": [1, 3], "resume": [False, True], "log_rollouts": [4, 1]}}]
    assert [r["step"] for r in read_metrics(out)] == [0, 1, 2, 3]


def test_resume_after_a_crash_that_tore_the_last_lines(qwen_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    out = tmp_path / "run"
    train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "2", "--eval_every", "0"))
    for name in ("metrics.jsonl", "rollouts.jsonl"):   # half of a line more, as a kill mid-write leaves it
        with open(out / name, "a") as f:
            f.write('{"step": 2, "reward_me')
    train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "3", "--eval_every", "0", "--resume"))
    assert [r["step"] for r in read_metrics(out)] == [0, 1, 2]
    assert all(json.loads(l)["step"] <= 2 for l in (out / "rollouts.jsonl").read_text().splitlines())


@pytest.mark.parametrize("damaged", ["trainer_state.pt", "model.safetensors"])
def test_a_damaged_checkpoint_is_refused_before_anything_is_written(qwen_dir, tmp_path, monkeypatch, damaged):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    out = tmp_path / "run"
    train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "2", "--eval_every", "0"))
    path = out / "ckpt" / damaged
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    before = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    with pytest.raises(SystemExit) as info:
        train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "3", "--eval_every", "0", "--resume"))
    text = str(info.value.code)
    assert text.startswith("error: --resume: the checkpoint is damaged") and damaged in text and "\n" not in text
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()} == before


def test_a_damaged_checkpoint_falls_back_to_a_complete_older_one(qwen_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    out = tmp_path / "run"
    train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "1", "--eval_every", "0", "--save_every", "1"))
    shutil.copytree(out / "ckpt", out / "older")     # the checkpoint after step 1
    train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "2", "--eval_every", "0", "--save_every", "1", "--resume"))
    shutil.move(out / "older", out / "ckpt.old")       # as a crash between save_checkpoint's renames leaves it
    state = out / "ckpt" / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "3", "--eval_every", "0", "--save_every", "1", "--resume"))
    assert [r["step"] for r in read_metrics(out)] == [0, 1, 2]       # step 1 was redone from the older one
    resumes = [json.loads(l)["step"] for l in (out / "resumes.jsonl").read_text().splitlines()]
    assert resumes == [1, 1] and (out / "ckpt.damaged").exists() and not (out / "ckpt.old").exists()


def test_a_save_after_a_crash_that_left_both_checkpoints(qwen_dir, tmp_path, monkeypatch):
    """A kill between save_checkpoint's last rename and its clean-up leaves ckpt and ckpt.old, both whole."""
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    out = tmp_path / "run"
    train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "1", "--eval_every", "0", "--save_every", "1"))
    shutil.copytree(out / "ckpt", out / "ckpt.old")
    train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "2", "--eval_every", "0", "--save_every", "1", "--resume"))
    assert torch.load(out / "ckpt" / "trainer_state.pt", weights_only=False)["step"] == 2
    assert not (out / "ckpt.old").exists()


def test_a_run_killed_before_its_first_checkpoint_starts_over_with_resume(qwen_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 0, "reward_mean": 0.5}\n{"step": 1, "rew')
    (out / "rollouts.jsonl").write_text('{"step": 0, "prompt": "old"}\n')
    train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "2", "--eval_every", "0", "--resume"))
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [0, 1] and "loss" in rows[0]       # the new run's rows only
    assert "old" not in (out / "rollouts.jsonl").read_text()


def test_out_dir_that_cannot_be_written_is_one_line(qwen_dir, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for out, message in [(a_file, "is a file"), (a_file / "run", "cannot write there")]:
        with pytest.raises(SystemExit) as info:
            train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "1"))
        assert str(info.value.code).startswith(f"error: --out_dir {out}: {message}")


def test_gram_lists_that_would_silently_do_nothing_are_refused(qwen_dir, tmp_path):
    empty, binary = tmp_path / "empty.txt", tmp_path / "binary.txt"
    empty.write_text("# only a comment\n\n")
    binary.write_bytes(b"wait\n\xff\xfe\x00so\n")
    for path, message in [(empty, "holds no grams"), (binary, "not UTF-8 text (byte 5)")]:
        with pytest.raises(SystemExit) as info:
            train_grpo.main(tiny_args(qwen_dir, tmp_path / "run", "--grams", str(path)))
        assert str(info.value.code) == f"error: --grams {path}: {message}" + (
            " (only comments or blank lines)" if path == empty else "")
        assert not (tmp_path / "run").exists()


def test_problems_too_long_for_the_context_are_dropped_when_the_data_loads(qwen_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    rows = [{"problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(8)]
    rows[3]["problem"] = "What is " + " + ".join(["1"] * 400) + "?"     # about 800 tokens: the context is 512
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = tiny_args(qwen_dir, tmp_path / "run", "--dataset", str(data), "--num_problems", "0", "--eval_every", "0",
                     "--max_steps", "4")   # 4 steps of 2 prompts: the long problem's step comes
    train_grpo.main(args)
    assert "dropped 1 of 8 training problems" in capsys.readouterr().err
    assert len(read_metrics(tmp_path / "run")) == 4
    with pytest.raises(SystemExit, match="--max_new_tokens 500: leaves 0 training problems"):
        train_grpo.main(tiny_args(qwen_dir, tmp_path / "run2", "--max_new_tokens", "500", "--eval_every", "0"))


def test_divergence_stops_the_run_and_names_a_finite_checkpoint(qwen_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    # A huge step size (AdamW moves each weight by about 1e38): finite weights, overflowing logits.
    monkeypatch.setattr(train_grpo, "lr_at", lambda cfg, step: 1e37)
    out = tmp_path / "huge"
    with pytest.raises(RuntimeError, match="non-finite in step 0.*no checkpoint was saved yet"):
        train_grpo.train(train_grpo.parse_config(tiny_args(qwen_dir, out, "--eval_every", "0")))
    rows = read_metrics(out)
    assert rows[0]["diverged"] == 1 and math.isfinite(rows[0]["loss"]) and not (out / "ckpt").exists()
    # A good step 0 (saved), then one that overflows at step 1.
    monkeypatch.setattr(train_grpo, "lr_at", lambda cfg, step: 1e-3 if step == 0 else 1e37)
    out = tmp_path / "later"
    with pytest.raises(RuntimeError, match=r"non-finite in step 1.*last good checkpoint is .*ckpt \(step 1\)"):
        train_grpo.train(train_grpo.parse_config(tiny_args(qwen_dir, out, "--save_every", "1", "--eval_every", "0")))
    assert all(torch.isfinite(w).all() for w in weights(out).values())


def test_preset_and_cli_overrides():
    cfg = train_grpo.parse_config(["--preset", "cpu_demo", "--max_steps", "3", "--scale_by_std", "false"])
    assert cfg.model == "smollm2-135m" and cfg.max_steps == 3 and cfg.scale_by_std is False
    assert train_grpo.parse_config(["--resume"]).resume is True


# ----------------------------------------------------------------------------- loop options, by their effect
# Each test runs train() and records, at every optimizer step, the weights and the gradient it applies,
# and the rollouts it sampled; then recomputes what that gradient should be from the formula, one
# sequence at a time with full_logprobs (no micro-batches, no shared prompt pass, no chunks).

def grouped_reward(text, gold, strict=False):
    """Sums with an odd answer: always 1 (a group with nothing to learn); others by the text's length."""
    return 1.0 if int(gold) % 2 else float(len(text) % 2)


def short_reward(text, gold, strict=False):
    """Short texts earn 1: here the responses that finished before max_new_tokens are the short ones."""
    return float(len(text) < 45)


def record_run(monkeypatch, tokenizer, reward=grouped_reward):
    """Run train() with `reward`; return what it sampled and every optimizer step's (weights, gradient)."""
    monkeypatch.setattr(train_grpo, "math_reward", reward)
    seen = {"steps": [], "batches": []}
    real_sample = train_grpo.rollout.sample

    def sample(model, prompts, *args, **kwargs):
        out = real_sample(model, prompts, *args, **kwargs)
        texts = tokenizer.batch_decode(out.completion_ids, skip_special_tokens=True)
        seen["batches"].append(dict(prompts=[prompts[k] for k in out.prompt_index], out=out, texts=texts))
        return out

    class RecordingAdamW(torch.optim.AdamW):
        def step(self, *args, **kwargs):
            params = [p for group in self.param_groups for p in group["params"]]
            seen["steps"].append(([p.detach().clone() for p in params], [p.grad.clone() for p in params]))
            return super().step(*args, **kwargs)

    monkeypatch.setattr(train_grpo.rollout, "sample", sample)
    monkeypatch.setattr(torch.optim, "AdamW", RecordingAdamW)
    return seen


def batch_rewards(cfg, step, batch, reward=grouped_reward):
    """The rewards of a recorded batch [P, G], graded here against the problems of that step."""
    train, _ = train_grpo.load_data(cfg)
    problems = [train[i] for i in train_grpo.batch_at(step, cfg, len(train))]
    return torch.tensor([reward(t, problems[k]["answer"])
                         for t, k in zip(batch["texts"], batch["out"].prompt_index)]).view(-1, cfg.group_size)


def mean_over(rows, agg, norm_len):
    """The three aggregations over the kept sequences' per-token values (a list of 1-D tensors)."""
    if agg == "token_mean":
        return torch.cat(rows).mean()
    if agg == "seq_mean_token_mean":
        return sum(r.mean() for r in rows) / len(rows)
    return sum(r.sum() for r in rows) / len(rows) / norm_len


def expected_gradient(model, weights, batch, rewards, cfg, keep, reference=None):
    """d loss / d weights over the rows in `keep`. On-policy the ratio is 1, so the clipped surrogate
    is -A * exp(lp - lp.detach()): its value is -A and its gradient -A * d lp."""
    with torch.no_grad():
        for p, w in zip(model.parameters(), weights):
            p.copy_(w)
    adv = ((rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-6)).view(-1)
    model.zero_grad()
    terms = {"pg": [], "kl": [], "entropy": []}
    for i in keep:
        lp, entropy = full_logprobs(model, batch["prompts"][i], batch["out"].completion_ids[i])
        terms["pg"].append(-adv[i] * torch.exp(lp - lp.detach()))
        terms["entropy"].append(entropy)
        if reference is not None:
            with torch.no_grad():
                ref_lp, _ = full_logprobs(reference, batch["prompts"][i], batch["out"].completion_ids[i])
            terms["kl"].append(kl_k3(lp, ref_lp))
    loss = mean_over(terms["pg"], cfg.loss_agg, cfg.max_new_tokens)
    if cfg.kl_coef:
        loss = loss + cfg.kl_coef * mean_over(terms["kl"], cfg.loss_agg, cfg.max_new_tokens)
    if cfg.entropy_coef:
        loss = loss - cfg.entropy_coef * mean_over(terms["entropy"], cfg.loss_agg, cfg.max_new_tokens)
    loss.backward()
    return [p.grad.clone() for p in model.parameters()], terms


def same_gradient(a, b):
    return all(torch.allclose(x, y, rtol=1e-3, atol=1e-5) for x, y in zip(a, b))


ONE_STEP = ["--batch_size", "4", "--max_steps", "1", "--mini_batches", "1", "--eval_every", "0", "--grad_clip", "1e9",
            "--max_new_tokens", "40"]


@pytest.mark.parametrize("agg", train_grpo.AGGREGATIONS)
@pytest.mark.parametrize("flag", ["--skip_zero_var", "--mask_truncated"])
def test_filtered_rows_leave_the_loss_under_every_aggregation(qwen_dir, tmp_path, monkeypatch, tiny_tokenizer,
                                                              flag, agg):
    # --skip_zero_var needs groups of equal rewards; --mask_truncated, finished rows with an advantage.
    reward = grouped_reward if flag == "--skip_zero_var" else short_reward
    seen = record_run(monkeypatch, tiny_tokenizer, reward)
    cfg = train_grpo.parse_config(tiny_args(qwen_dir, tmp_path / "run", flag, "--loss_agg", agg, *ONE_STEP))
    train_grpo.train(cfg)
    (batch,), ((weights, grads),) = seen["batches"], seen["steps"]
    rewards = batch_rewards(cfg, 0, batch, reward)
    rows = range(len(batch["texts"]))
    if flag == "--skip_zero_var":   # groups whose rewards all agree carry no signal
        keep = [i for i in rows if len(set(rewards[i // cfg.group_size].tolist())) > 1]
    else:                           # responses cut at max_new_tokens end without a stop token
        stop_ids = train_grpo.rollout.load_model(str(qwen_dir))[1].stop_token_ids
        keep = [i for i in rows if batch["out"].completion_ids[i][-1] in stop_ids]
    assert 0 < len(keep) < len(rows), "the test needs rows dropped and rows kept"
    model = build_model("qwen2", len(tiny_tokenizer))
    expected, _ = expected_gradient(model, weights, batch, rewards, cfg, keep)
    assert max(g.abs().max() for g in expected) > 1e-2, "the test needs kept rows that move the weights"
    assert same_gradient(grads, expected)
    every_row, _ = expected_gradient(model, weights, batch, rewards, cfg, rows)
    assert not same_gradient(every_row, expected), "the test needs a filter that changes the update"


@pytest.mark.parametrize("flags", [["--loss", "cispo", "--ratio_level", "sequence"], ["--loss", "reinforce"]])
def test_the_other_losses_reach_the_loop_and_take_the_policy_gradient_on_policy(qwen_dir, tmp_path, monkeypatch,
                                                                                 tiny_tokenizer, flags):
    seen, real = record_run(monkeypatch, tiny_tokenizer), train_grpo.policy_loss
    calls = []
    monkeypatch.setattr(train_grpo, "policy_loss", lambda *a, **k: calls.append(k) or real(*a, **k))
    cfg = train_grpo.parse_config(tiny_args(qwen_dir, tmp_path / "run", *flags, *ONE_STEP))
    train_grpo.train(cfg)
    assert calls and all(k["loss"] == cfg.loss and k["ratio_level"] == cfg.ratio_level for k in calls)
    (batch,), ((weights, grads),) = seen["batches"], seen["steps"]
    expected, _ = expected_gradient(build_model("qwen2", len(tiny_tokenizer)), weights, batch,
                                    batch_rewards(cfg, 0, batch), cfg, range(len(batch["texts"])))
    assert same_gradient(grads, expected)


def test_top_entropy_quantile_keeps_the_loss_on_the_steps_highest_entropy_tokens(qwen_dir, tmp_path, monkeypatch,
                                                                                  tiny_tokenizer):
    import numpy as np
    """The policy term only: the advantages are 0 off the top tokens, while the loss mask (the normaliser, KL and
    entropy bonus) keeps every response token."""
    seen, real_update, calls = record_run(monkeypatch, tiny_tokenizer), train_grpo.update, []
    monkeypatch.setattr(train_grpo, "update", lambda *a: calls.append(a[4:6]) or real_update(*a))
    cfg = train_grpo.parse_config(tiny_args(qwen_dir, tmp_path / "run", "--top_entropy_quantile", "0.2", *ONE_STEP))
    train_grpo.train(cfg)
    (batch,), ((advantages, loss_mask),) = seen["batches"], calls
    T = loss_mask.shape[1]
    entropy = train_grpo.pad_rows(batch["out"].entropies, T)                              # [B, T] the sampler's
    tokens = train_grpo.pad_rows([[1.0] * len(c) for c in batch["out"].completion_ids], T)
    top = (entropy >= np.quantile(entropy[tokens > 0].numpy(), 0.8)) & (tokens > 0)     # the top 20% by entropy
    assert torch.equal(loss_mask, tokens)
    seq_adv = advantages.abs().max(1).values                                             # [B] |A| of each rollout
    assert torch.equal(advantages != 0, top & (seq_adv[:, None] > 0))
    assert 0.15 < top.sum() / tokens.sum() < 0.25 and (seq_adv > 0).any()


def test_advantage_stats_by_hand():
    from steplog import advantage_stats
    adv = torch.tensor([[0.5, 0.6, -0.2], [-0.5, 0.0, 0.0]])
    tokens = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    marked = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    stats = advantage_stats(adv, tokens, marked)
    assert stats == pytest.approx({"abs_adv_mean": 1.8 / 4, "marked_token_frac": 0.25, "abs_adv_marked": 0.6,
                                   "abs_adv_unmarked": 1.2 / 3})
    assert advantage_stats(adv, tokens, None) == pytest.approx({"abs_adv_mean": 0.45})
    assert "abs_adv_marked" not in advantage_stats(adv, tokens, torch.zeros_like(adv))   # a mean over nothing


@pytest.mark.parametrize("mask, grams, expect_one", [("strategic", "never", True), ("entropy", "paper", False)])
def test_grad_cosine_to_grpo_is_one_without_planning_tokens_and_below_one_with(qwen_dir, tmp_path, monkeypatch,
                                                                               mask, grams, expect_one):
    import train_hicra
    monkeypatch.setattr(train_grpo, "math_reward", grouped_reward)
    if grams == "never":   # a list that matches nothing a tiny random model writes: no token is amplified
        grams = tmp_path / "never.txt"
        grams.write_text("zqxv wqzx\n")
    out = tmp_path / "run"
    train_hicra.main(tiny_args(qwen_dir, out, "--mask", mask, "--grams", str(grams), "--grad_cosine_every", "1",
                               *ONE_STEP))
    (row,) = [r for r in read_metrics(out) if "loss" in r]
    assert row["marked_token_frac"] == 0.0 if expect_one else row["marked_token_frac"] > 0
    if expect_one:
        assert row["grad_cosine_grpo"] == pytest.approx(1.0, abs=1e-9)
    else:   # the group advantages differ in sign, so A + 0.2|A| turns the gradient
        assert row["abs_adv_marked"] > 0 and 0.5 < row["grad_cosine_grpo"] < 1 - 1e-6


def test_entropy_bonus_enters_the_gradient(qwen_dir, tmp_path, monkeypatch, tiny_tokenizer):
    seen = record_run(monkeypatch, tiny_tokenizer)
    cfg = train_grpo.parse_config(tiny_args(qwen_dir, tmp_path / "run", "--entropy_coef", "0.1", *ONE_STEP))
    train_grpo.train(cfg)
    (batch,), ((weights, grads),) = seen["batches"], seen["steps"]
    rows = range(len(batch["texts"]))
    model = build_model("qwen2", len(tiny_tokenizer))
    rewards = batch_rewards(cfg, 0, batch)
    expected, _ = expected_gradient(model, weights, batch, rewards, cfg, rows)
    assert same_gradient(grads, expected)
    without, _ = expected_gradient(model, weights, batch, rewards, dataclasses.replace(cfg, entropy_coef=0.0), rows)
    assert not same_gradient(grads, without)


@pytest.mark.parametrize("agg", train_grpo.AGGREGATIONS)
def test_kl_penalty_pulls_towards_the_initial_model(qwen_dir, tmp_path, monkeypatch, tiny_tokenizer, agg):
    seen = record_run(monkeypatch, tiny_tokenizer)
    cfg = train_grpo.parse_config(tiny_args(qwen_dir, tmp_path / "run", "--kl_coef", "0.5", "--loss_agg", agg,
                                            *ONE_STEP[:3], "2", *ONE_STEP[4:]))   # two steps
    train_grpo.train(cfg)
    rows = read_metrics(tmp_path / "run")
    assert rows[0]["kl"] == 0.0          # step 0: the policy is the reference
    # Step 1: the policy has moved; the gradient has the KL term, and the logged kl is its token mean.
    batch, (weights, grads) = seen["batches"][1], seen["steps"][1]
    model, reference = build_model("qwen2", len(tiny_tokenizer)), build_model("qwen2", len(tiny_tokenizer))
    rewards = batch_rewards(cfg, 1, batch)
    keep = range(len(batch["texts"]))
    expected, terms = expected_gradient(model, weights, batch, rewards, cfg, keep, reference=reference)
    assert same_gradient(grads, expected)
    assert rows[1]["kl"] == pytest.approx(torch.cat(terms["kl"]).mean().item(), rel=1e-4) and rows[1]["kl"] > 0
    without, _ = expected_gradient(model, weights, batch, rewards, dataclasses.replace(cfg, kl_coef=0.0), keep)
    assert not same_gradient(grads, without)


@pytest.mark.parametrize("sampler", ["float32", "bfloat16"])
def test_ppo_epochs_and_mini_batches_recompute_old_logprobs(qwen_dir, tmp_path, monkeypatch, tiny_tokenizer, sampler):
    """The old log-probs come from the update's own forward, also when the sampler is a bf16 copy
    (the CUDA default): then the first update still sees ratio 1 exactly."""
    calls = []
    real_loss = train_grpo.policy_loss

    def spy(logp, old_logp, *args, **kwargs):
        calls.append((logp.detach().clone(), old_logp.clone()))
        return real_loss(logp, old_logp, *args, **kwargs)

    monkeypatch.setattr(train_grpo, "policy_loss", spy)
    monkeypatch.setattr(speed, "micro_batches", lambda prompts, lens, budget: [list(range(len(lens)))])
    seen = record_run(monkeypatch, tiny_tokenizer)
    cfg = train_grpo.parse_config(tiny_args(qwen_dir, tmp_path / "run", "--ppo_epochs", "2", "--mini_batches", "2",
                                            "--sampler_dtype", sampler, *ONE_STEP[:4], *ONE_STEP[6:]))
    train_grpo.train(cfg)
    (batch,) = seen["batches"]
    B = len(batch["texts"])
    assert len(seen["steps"]) == 4 and len(calls) == 4        # 2 epochs x 2 mini-batches, one update each
    # The old log-probs are the sampling policy's (the initial model's), recomputed by teacher forcing.
    model = build_model("qwen2", len(tiny_tokenizer))
    with torch.no_grad():
        initial = [full_logprobs(model, batch["prompts"][i], c)[0] for i, c in enumerate(batch["out"].completion_ids)]
    for epoch in range(2):
        matched = []
        for logp, old in calls[2 * epoch: 2 * epoch + 2]:
            assert len(old) == B // 2                          # each mini-batch holds half the rollouts
            for row in old:
                i = next(i for i, ref in enumerate(initial) if torch.allclose(row[:len(ref)], ref, atol=1e-5)
                         and not row[len(ref):].any())
                matched.append(i)
        assert sorted(matched) == list(range(B))               # together, every rollout once per epoch
    # The first update sees ratio 1; every later one sees the moved policy against the fixed old one.
    assert torch.allclose(calls[0][0], calls[0][1], atol=1e-5)
    for logp, old in calls[1:]:
        assert not torch.allclose(logp, old, atol=1e-4)


def test_the_sampler_copy_follows_every_update_and_checkpoints_keep_float32(qwen_dir, tmp_path, monkeypatch):
    """--sampler_dtype bfloat16 (the default on CUDA): the sampler gets a bf16 copy of the float32 master
    weights, refreshed after every update; checkpoints hold the master weights, not the copy."""
    from safetensors import safe_open
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    out = tmp_path / "run"
    policy = train_grpo.train(train_grpo.parse_config(tiny_args(qwen_dir, out, "--sampler_dtype", "bfloat16",
                                                                "--max_steps", "2", "--eval_every", "0")))
    assert [r["updates"] for r in read_metrics(out)] == [2, 2]
    with safe_open(str(out / "ckpt" / "model.safetensors"), "pt") as f:
        saved = {name: f.get_tensor(name) for name in f.keys()}
    assert {w.dtype for w in saved.values()} == {torch.float32}
    assert json.loads((out / "ckpt" / "config.json").read_text())["dtype"] == "float32"
    assert any(not torch.equal(w, w.to(torch.bfloat16).float()) for w in saved.values()), "not the bf16 copy"
    for name, copied in policy.named_parameters():
        assert copied.dtype == torch.bfloat16 and torch.equal(copied, saved[name].to(torch.bfloat16)), name
    initial = build_model("qwen2", len(train_grpo.rollout.load_model(str(qwen_dir))[1]))
    assert not all(torch.equal(p, saved[n]) for n, p in initial.named_parameters()), "the run must have trained"


def test_parse_config_takes_every_field_type_a_config_may_hold():
    """A student's own fields: optional ints, floats and strings (`--x none` is None), bools either way."""
    from typing import Optional

    @dataclasses.dataclass
    class Extended(train_grpo.Config):
        cap: int | None = None
        scale: float | None = 0.5
        note: str | None = None
        older: Optional[int] = 3
        shaped: bool = False

    cfg = train_grpo.parse_config(["--cap", "7", "--scale", "none", "--note", "hi", "--older", "None", "--shaped"],
                                  Extended)
    assert (cfg.cap, cfg.scale, cfg.note, cfg.older, cfg.shaped) == (7, None, "hi", None, True)
    cfg = train_grpo.parse_config(["--shaped", "false", "--lr", "1e-5"], Extended)
    assert (cfg.cap, cfg.scale, cfg.note, cfg.older, cfg.shaped, cfg.lr) == (None, 0.5, None, 3, False, 1e-5)
    with pytest.raises(SystemExit):   # argparse's own one-line usage error
        train_grpo.parse_config(["--cap", "seven"], Extended)

    @dataclasses.dataclass
    class Odd(train_grpo.Config):
        pair: tuple = (1, 2)

    with pytest.raises(TypeError, match="Config field pair: <class 'tuple'> is not a flag type"):
        train_grpo.parse_config([], Odd)


def test_a_reward_fn_replaces_the_reward_and_correct_is_logged_apart(qwen_dir, tmp_path, monkeypatch):
    """The reward seam: train(cfg, reward_fn=...). The verified answer still goes to rollouts.jsonl as
    `correct` and to the accuracy metric; analyze.py picks failures by it, not by the shaped reward."""
    import analyze
    monkeypatch.setattr(train_grpo, "math_reward", lambda text, gold, strict=False: float(len(text) % 2 == 0))
    shaped = lambda response, problem: float(len(response) % 2 == 0) - 0.01 * len(response)   # noqa: E731
    out = tmp_path / "run"
    cfg = train_grpo.parse_config(tiny_args(qwen_dir, out, "--max_steps", "2", "--eval_every", "0",
                                            "--log_rollouts", "8"))
    train_grpo.train(cfg, reward_fn=shaped)
    rows = [json.loads(l) for l in (out / "rollouts.jsonl").read_text().splitlines()]
    assert rows and all(r["reward"] == pytest.approx(shaped(r["response"], None)) for r in rows)
    assert all(r["correct"] == (len(r["response"]) % 2 == 0) for r in rows)
    metrics = read_metrics(out)
    for m in metrics:
        step_rows = [r for r in rows if r["step"] == m["step"]]
        assert m["accuracy"] == pytest.approx(sum(r["correct"] for r in step_rows) / len(step_rows))
    failed = analyze.failed_rollouts(out)   # from failures.jsonl: chosen by the verified answer
    assert failed and all(len(f["response"]) % 2 == 1 for f in failed)   # wrong, whatever the shaped reward
    (out / "failures.jsonl").unlink()   # an older run: the failed ones among rollouts.jsonl's
    assert len(analyze.failed_rollouts(out)) == sum(not r["correct"] for r in rows)


def test_the_run_says_when_clipping_cannot_act(qwen_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    train_grpo.main(tiny_args(qwen_dir, tmp_path / "on", "--max_steps", "1", "--eval_every", "0", "--mini_batches", "1"))
    assert "PPO's ratio is exactly 1, so clipping (--eps_low, --eps_high) never acts" in capsys.readouterr().err
    train_grpo.main(tiny_args(qwen_dir, tmp_path / "off", "--max_steps", "1", "--eval_every", "0"))   # 2 mini-batches
    assert "never acts" not in capsys.readouterr().err


def test_the_readme_recipe_runs_against_this_api(monkeypatch, tiny_tokenizer):
    """README, "Modifying it": its one-step recipe builds a config, a reward and a hook that work with train()'s
    seams (train itself replaced here; the recipe's run on the offline model is in the README)."""
    readme = (ROOT / "README.md").read_text()
    recipe = "# my_method.py" + readme.split("```python\n# my_method.py")[1].split("```")[0]
    seen = {}
    monkeypatch.setattr(train_grpo, "train", lambda cfg, **seams: seen.update(cfg=cfg, **seams))
    exec(compile(recipe, "README.md", "exec"), {})
    cfg, reward_fn, hook = seen["cfg"], seen["reward_fn"], seen["shape_advantages"]
    assert (cfg.max_steps, cfg.batch_size, cfg.scale_by_std, cfg.alpha, cfg.grams) == (1, 4, False, 0.2, "paper")
    assert reward_fn("The answer is 8.", {"problem": "What is 1 + 7?", "answer": "8"}) == pytest.approx(1 - 0.04)
    assert reward_fn("The answer is 9.", {"problem": "What is 1 + 7?", "answer": "8"}) == pytest.approx(-0.04)
    ids = tiny_tokenizer("So 1 + 7 = 8. Wait, but check it.", add_special_tokens=False)["input_ids"]
    advantages = torch.full((1, len(ids)), -1.0)                                                     # [1, T]
    entropy = torch.rand(1, len(ids), generator=torch.Generator().manual_seed(0)) + 0.1               # [1, T]
    shaped, marked = hook(advantages, [ids], entropy, tiny_tokenizer, strategic_grams.load_grams("paper"), cfg, [0])
    assert 0 < marked.sum() < len(ids)
    assert torch.equal(shaped[marked == 0], advantages[marked == 0])            # execution tokens: unchanged
    on_plan = shaped[marked == 1]                                               # less blame, most at the top entropy
    assert (on_plan > -1).all() and (on_plan <= -0.8 + 1e-6).all()
    entropy[marked == 1] = entropy.max() + 1.0                                 # now planning tokens top it
    shaped, _ = hook(advantages, [ids], entropy, tiny_tokenizer, strategic_grams.load_grams("paper"), cfg, [0])
    assert torch.allclose(shaped[marked == 1], torch.tensor(-0.8))              # A + 0.2|A|: HICRA there



# ----------------------------------------------------------------------------- the context rule (issue 25)

def test_the_context_rule_grows_responses_and_a_resume_keeps_them(qwen_dir, tmp_path, monkeypatch):
    """--max_new_tokens_final: once the truncated share over --grow_window steps exceeds --grow_when_truncated,
    responses may grow from the next step on; metrics.jsonl logs the length of every step, and a resumed run
    (from the checkpoint after the growth) keeps the grown length."""
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    out = tmp_path / "run"
    grow = ["--max_new_tokens", "3", "--max_new_tokens_final", "12", "--grow_when_truncated", "0.2",
            "--grow_window", "2", "--save_every", "1", "--eval_every", "0"]
    train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "2", *grow))
    train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "3", "--resume", *grow))
    rows = read_metrics(out)
    assert rows[0]["truncated_frac"] > 0.2, "the test needs a step that passes the threshold"
    assert [r["max_new_tokens"] for r in rows] == [3, 12, 12]
    assert rows[0]["response_len_max"] <= 3 < max(r["response_len_max"] for r in rows[1:])
    never = tmp_path / "never"   # the same run without the rule keeps its length
    train_grpo.main(tiny_args(qwen_dir, never, "--max_steps", "2", *grow[:2], "--eval_every", "0"))
    assert [r["max_new_tokens"] for r in read_metrics(never)] == [3, 3]


def test_max_new_tokens_may_be_raised_on_resume_not_lowered(qwen_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    out = tmp_path / "run"
    train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "1", "--max_new_tokens", "6"))
    with pytest.raises(SystemExit, match="--max_new_tokens 4: the run was made with 6; it may be raised, not lowered"):
        train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "2", "--resume", "--max_new_tokens", "4"))
    train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "2", "--resume", "--max_new_tokens", "10"))
    resumes = [json.loads(line) for line in (out / "resumes.jsonl").read_text().splitlines()]
    assert resumes[-1]["changed"]["max_new_tokens"] == [6, 10]
    assert [r["max_new_tokens"] for r in read_metrics(out) if "max_new_tokens" in r] == [6, 10]


@pytest.mark.parametrize("flags,message", [
    (["--max_new_tokens_final", "8", "--max_new_tokens", "8"], "--max_new_tokens_final 8: not above --max_new_tokens 8"),
    (["--grow_when_truncated", "1.0"], "--grow_when_truncated 1.0: needs a number in [0, 1)"),
    (["--grow_window", "0"], "--grow_window 0: needs an integer >= 1")])
def test_context_rule_flags_are_checked(qwen_dir, tmp_path, flags, message):
    with pytest.raises(SystemExit) as info:
        train_grpo.main(tiny_args(qwen_dir, tmp_path / "run", *flags))
    assert str(info.value.code).startswith("error: " + message), info.value.code


def test_resume_reads_an_older_config_at_defaults_and_refuses_one_that_is_not_a_config(qwen_dir, tmp_path, monkeypatch):
    """A flag added since a run was made (absent from its config.json) ran at its default there, so the run
    resumes; a config.json that is not a JSON object is refused in one line, nothing changed."""
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    out = tmp_path / "run"
    train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "1", "--eval_every", "0"))
    older = {k: v for k, v in json.loads((out / "config.json").read_text()).items()
             if k not in ("max_new_tokens_final", "grow_when_truncated", "grow_window")}
    (out / "config.json").write_text(json.dumps(older))
    train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "2", "--eval_every", "0", "--resume"))
    assert [r["step"] for r in read_metrics(out)] == [0, 1]
    (out / "config.json").write_text("[1, 2]")
    with pytest.raises(SystemExit, match="config.json is not a run's config"):
        train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "3", "--eval_every", "0", "--resume"))
    assert [r["step"] for r in read_metrics(out)] == [0, 1]


def test_a_run_records_its_prompt_style_and_an_older_run_resumes_with_the_one_it_used(qwen_dir, tmp_path, monkeypatch):
    """--prompt_style "" is resolved by the tokenizer (the test tokenizer has a chat template) and recorded. A run
    folder made before that recorded "", and its model's name decided: a base-looking name (this one's) meant the
    plain prompt, so a resume without the flag goes on with plain, and one that asks for chat is refused."""
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    styles = []
    encode = train_grpo.rollout.encode_problems
    monkeypatch.setattr(train_grpo.rollout, "encode_problems",
                        lambda tokenizer, problems, style="", *a: styles.append(style) or encode(tokenizer, problems,
                                                                                                  style, *a))
    out = tmp_path / "run"
    train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "1", "--eval_every", "0"))
    config = json.loads((out / "config.json").read_text())
    assert config["prompt_style"] == "chat" and set(styles) == {"chat"}
    (out / "config.json").write_text(json.dumps(config | {"prompt_style": ""}))   # as the old code wrote it
    with pytest.raises(SystemExit, match=r"--resume: the run was made with --prompt_style 'plain' \(now 'chat'\)"):
        train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "2", "--eval_every", "0", "--resume", "--prompt_style",
                                  "chat"))
    styles.clear()
    train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "2", "--eval_every", "0", "--resume"))
    assert set(styles) == {"plain"} and [r["step"] for r in read_metrics(out)] == [0, 1]


# ----------------------------------------------------------------------------- dynamic sampling (issue 25)

def informative(batch, reward, problems):
    """Per group of a recorded sampler call: whether its rewards differ."""
    G = len(batch["texts"]) // len(problems)
    scores = [reward(t, problems[k]["answer"]) for t, k in zip(batch["texts"], batch["out"].prompt_index)]
    return [len(set(scores[g * G:(g + 1) * G])) > 1 for g in range(len(problems))]


@pytest.mark.parametrize("rounds", [10, 1])
def test_dynamic_sampling_refills_the_batch_with_groups_whose_rewards_differ(qwen_dir, tmp_path, monkeypatch,
                                                                             tiny_tokenizer, rounds):
    """--dynamic_sampling: the step trains on the first batch_size groups, in the order drawn, whose rewards
    differ; the sampler is called again (batch_size prompts a draw) until it has them. With one draw allowed
    (the cap), the batch is the step's own and its zero-variance groups are left out of the loss and counted
    as ds_short. Recomputed here from every sampler call the run made."""
    seen = record_run(monkeypatch, tiny_tokenizer, grouped_reward)
    out = tmp_path / "run"
    cfg = train_grpo.parse_config(tiny_args(qwen_dir, out, "--batch_size", "4", "--num_problems", "60",
                                            "--max_steps", "2", "--eval_every", "0", "--log_rollouts", "1000",
                                            "--dynamic_sampling", "--dynamic_sampling_rounds", str(rounds)))
    train_grpo.train(cfg)
    train, _ = train_grpo.load_data(cfg)
    tokenizer = train_grpo.rollout.load_model(str(qwen_dir))[1]   # the run's
    by_prompt = {}
    for p in train:   # the prompt the sampler saw -> the problem, to grade the recorded draws here
        by_prompt[tuple(train_grpo.rollout.encode_problems(tokenizer, [p], cfg.prompt_style)[0])] = p
    rows, calls = read_metrics(out), iter(seen["batches"])
    logged = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    for row in rows:
        draws = [next(calls) for _ in range(row["ds_draws"])]
        groups = []          # (problem, differs) of every group drawn, in the order drawn
        for batch in draws:
            firsts = [batch["prompts"][g * cfg.group_size] for g in range(len(batch["texts"]) // cfg.group_size)]
            problems = [by_prompt[tuple(p)] for p in firsts]
            groups += zip(problems, informative(batch, grouped_reward, problems))
        assert len(groups) == row["ds_prompts"] == cfg.batch_size * row["ds_draws"]
        found = [p for p, differs in groups if differs]
        assert row["ds_zero_var_frac"] == pytest.approx(1 - len(found) / len(groups))
        cut = sum(batch["out"].finished.count(False) for batch in draws)   # over every response drawn
        assert row["ds_truncated_frac"] == pytest.approx(cut / (len(groups) * cfg.group_size))
        trained = [r["prompt"] for r in logged if r["step"] == row["step"]][::cfg.group_size]
        if rounds > 1:
            assert row["ds_draws"] > 1 or row["ds_zero_var_frac"] == 0
            assert trained == [p["problem"] for p in found[:cfg.batch_size]]
            assert row["zero_var_frac"] == 0 and row["ds_short"] == 0
        else:   # the cap: the step's own batch, its zero-variance groups dropped from the loss
            assert row["ds_draws"] == 1 and trained == [p["problem"] for p, _ in groups]
            assert row["ds_short"] == cfg.batch_size - len(found) == round(row["zero_var_frac"] * cfg.batch_size)
    assert any(r["ds_draws"] > 1 for r in rows) or rounds == 1, "the test needs a step that draws again"
    assert any(r["ds_short"] > 0 for r in rows) or rounds > 1, "the test needs a step short at the cap"


def test_with_dynamic_sampling_the_context_rule_reads_the_share_truncated_among_every_response_drawn():
    """The trained batch keeps groups whose rewards differ, which leaves out many truncated (mostly wrong)
    responses; the rule must read ds_truncated_frac, the share among everything drawn."""
    from types import SimpleNamespace

    import runsetup
    cfg = SimpleNamespace(max_new_tokens=8, max_new_tokens_final=16, grow_window=1, grow_when_truncated=0.2)
    run = SimpleNamespace(cfg=cfg, state={}, rank=0)
    runsetup.grow_responses(run, {"step": 0, "truncated_frac": 0.1})
    assert runsetup.response_budget(run) == 8
    runsetup.grow_responses(run, {"step": 1, "truncated_frac": 0.1, "ds_truncated_frac": 0.5})
    assert runsetup.response_budget(run) == 16


def test_dynamic_sampling_resumes_exactly(qwen_dir, tmp_path, monkeypatch):
    """The extra prompts are a function of (seed, step): two steps equal one step, then a resumed one."""
    monkeypatch.setattr(train_grpo, "math_reward", grouped_reward)
    flags = ["--batch_size", "4", "--num_problems", "60", "--eval_every", "0", "--save_every", "1",
             "--log_rollouts", "1000", "--dynamic_sampling"]
    train_grpo.main(tiny_args(qwen_dir, tmp_path / "one", "--max_steps", "2", *flags))
    train_grpo.main(tiny_args(qwen_dir, tmp_path / "two", "--max_steps", "1", *flags))
    train_grpo.main(tiny_args(qwen_dir, tmp_path / "two", "--max_steps", "2", "--resume", *flags))
    drop = lambda r: {k: v for k, v in r.items() if "seconds" not in k and "per_s" not in k}   # noqa: E731
    assert [drop(r) for r in read_metrics(tmp_path / "one")] == [drop(r) for r in read_metrics(tmp_path / "two")]
    assert (tmp_path / "one" / "rollouts.jsonl").read_text() == (tmp_path / "two" / "rollouts.jsonl").read_text()
    assert any(r["ds_draws"] > 1 for r in read_metrics(tmp_path / "one")), "the test needs a refill"


def test_sample_rows_bounds_a_sampler_call_and_changes_nothing_else(qwen_dir, tmp_path, monkeypatch):
    """--sample_rows 5 with 4 prompts x 4 rollouts: four sampler calls of one prompt each, the same run."""
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    calls = []
    real = train_grpo.rollout.sample
    monkeypatch.setattr(train_grpo.rollout, "sample", lambda model, prompts, *a, **k: calls.append(
        k.get("max_rows")) or real(model, prompts, *a, **k))
    flags = ["--batch_size", "4", "--max_steps", "2", "--eval_every", "0", "--log_rollouts", "1000"]
    train_grpo.main(tiny_args(qwen_dir, tmp_path / "all", *flags))
    train_grpo.main(tiny_args(qwen_dir, tmp_path / "five", *flags, "--sample_rows", "5"))
    assert calls == [0, 0] + [5, None, None, None, None] * 2   # per step: the trainer's call, then one per prompt
    assert [json.loads(line)["response"] for line in (tmp_path / "all" / "rollouts.jsonl").read_text().splitlines()] \
        == [json.loads(line)["response"] for line in (tmp_path / "five" / "rollouts.jsonl").read_text().splitlines()]
    for a, b in zip(read_metrics(tmp_path / "all"), read_metrics(tmp_path / "five"), strict=True):
        for key in (k for k in a if "seconds" not in k and "per_s" not in k):   # float sums of another batch shape
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key


def test_a_run_keeps_a_seeded_sample_of_its_failures_with_the_reference_solutions(qwen_dir, tmp_path, monkeypatch):
    """failures.jsonl: per step, --log_failures of the step's failed rollouts (all of them when fewer), drawn
    with (seed, step), each with its problem's reference solution from the data; the same on a rerun."""
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    data = tmp_path / "sums.jsonl"
    data.write_text("".join(json.dumps({"problem": f"What is {i} + {i}?", "answer": str(2 * i),
                                        "solution": f"Double {i}: {2 * i}."}) + "\n" for i in range(30)))
    runs = []
    for name in ("one", "again"):
        out = tmp_path / name
        train_grpo.main(tiny_args(qwen_dir, out, "--dataset", str(data), "--max_steps", "2", "--eval_every", "0",
                                  "--log_rollouts", "1000", "--log_failures", "3"))
        runs.append((out / "failures.jsonl").read_text())
        failures = [json.loads(line) for line in runs[-1].splitlines()]
        rollouts = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
        for step in (0, 1):
            failed = [(r["prompt"], r["response"]) for r in rollouts if r["step"] == step and not r["correct"]]
            kept = [(r["prompt"], r["response"]) for r in failures if r["step"] == step]
            assert len(kept) == min(3, len(failed)) > 0 and all(k in failed for k in kept)
        for row in failures:
            i = int(row["prompt"].split()[2])
            assert row["solution"] == f"Double {i}: {2 * i}." and row["correct"] is False
    assert runs[0] == runs[1]
