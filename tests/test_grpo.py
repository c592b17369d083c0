"""train_grpo.py: the GRPO math against hand values and slow references, and the loop's
checkpointing, resume, interruption and error handling on a tiny model."""

import functools
import itertools
import json
import math
import os
import random
import signal

import pytest
import torch

import train_grpo
from conftest import build_model
from train_grpo import aggregate, completion_logprobs, group_advantages, kl_k3, policy_loss

TIMING = ("seconds", "tokens_per_s")


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

def reference_loss(logp, old, adv, mask, eps_low, eps_high, agg, norm_len):
    """A slow per-token loop written from the formula, as a check on the vectorised version."""
    B, T = logp.shape
    per_seq_sums, per_seq_counts, total, count = [], [], 0.0, 0
    for b in range(B):
        s, n = 0.0, 0
        for t in range(T):
            if mask[b, t] == 0:
                continue
            ratio = torch.exp(logp[b, t] - old[b, t])
            a = adv[b, t]
            if a >= 0:
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


def test_k3_kl():
    logp, ref = torch.tensor([-1.0, -2.0, -0.5]), torch.tensor([-2.0, -2.0, -0.1])
    kl = kl_k3(logp, ref)
    assert kl[0].item() == pytest.approx(math.exp(-1) + 1 - 1)
    assert kl[1].item() == 0
    assert kl[2].item() == pytest.approx(math.exp(0.4) - 0.4 - 1)
    assert (kl >= 0).all()


# ----------------------------------------------------------------------------- chunked log-probs

def full_logprobs(model, prompt, completion):
    ids = torch.tensor([prompt + completion])
    logits = model(ids).logits[0].float()                                        # [T, V]
    logp = logits.log_softmax(-1)[len(prompt) - 1:-1]
    target = torch.tensor(completion)
    entropy = -(logp.exp() * logp).sum(-1)
    return logp.gather(-1, target[:, None]).squeeze(-1), entropy


@pytest.mark.parametrize("arch,unshared", [("qwen2", ""), ("llama", ""), ("qwen3", ""),
                                           ("qwen2", "checkpointing"), ("llama", "flag")])
def test_chunked_logprobs_equal_full_computation(tiny_tokenizer, arch, unshared):
    model = build_model(arch, len(tiny_tokenizer))
    if unshared == "checkpointing":   # HF drops the cache under checkpointing: every row runs its own prompt
        model.activation_checkpointing_enable()
        model.train()
    completion_logprobs = functools.partial(train_grpo.completion_logprobs, share_prompts=unshared != "flag")
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
    """What completion_logprobs runs for one micro-batch, in tokens (see train_grpo.micro_batches)."""
    distinct = {tuple(prompts[i]) for i in batch}
    return (len(distinct) * max(len(prompts[i]) for i in batch) + len(batch) * max(lens[i] for i in batch)
            + overhead)


def test_micro_batches_split_off_a_long_outlier():
    # One shared 10-token prompt; completions 48, 10, 10, 10. Together: 10 + 4 x 48 = 202 tokens (+ 64 per
    # call); the outlier alone and the rest together: (10 + 48) + (10 + 3 x 10) = 98 (+ 2 x 64).
    prompts = [[1] * 10] * 4
    assert train_grpo.micro_batches(prompts, [48, 10, 10, 10], 10_000) == [[0], [1, 2, 3]]
    # Tight budget: rows x (10 + longest) <= 40 allows at most two rows of 10.
    batches = train_grpo.micro_batches(prompts, [48, 10, 10, 10], 40)
    assert sorted(map(sorted, batches)) == [[0], [1, 2], [3]] or sorted(map(sorted, batches)) == [[0], [1], [2, 3]]


@pytest.mark.parametrize("seed", range(5))
def test_micro_batches_are_the_cheapest_split_within_budget(seed):
    """Against brute force over every split of the length-sorted rows into contiguous runs."""
    rng = random.Random(seed)
    n = 7
    prompts = [[rng.randint(0, 2)] * rng.choice([5, 9]) for _ in range(n)]
    lens = [rng.randint(1, 40) for _ in range(n)]
    budget = rng.choice([60, 120, 10_000])
    batches = train_grpo.micro_batches(prompts, lens, budget)
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


def test_lr_schedule():
    cfg = train_grpo.Config(lr=1.0, warmup_steps=4, max_steps=14, lr_schedule="cosine")
    assert [train_grpo.lr_at(cfg, s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert train_grpo.lr_at(cfg, 4) == pytest.approx(1.0)
    assert train_grpo.lr_at(cfg, 14) == pytest.approx(0.1)
    assert train_grpo.lr_at(train_grpo.Config(lr=2.0, warmup_steps=0), 100) == 2.0


# ----------------------------------------------------------------------------- the loop

def fake_reward(text, gold, strict=False):
    """Tiny random models never solve a problem; this deterministic reward gives the loss signal."""
    return float(len(text) % 3 == 0)


def tiny_args(model_dir, out_dir, *extra):
    return ["--model", str(model_dir), "--dataset", "synthetic:1", "--num_problems", "40", "--batch_size", "2",
            "--group_size", "4", "--max_new_tokens", "12", "--lr", "1e-3", "--warmup_steps", "0",
            "--eval_every", "2", "--eval_size", "4", "--save_every", "2", "--out_dir", str(out_dir),
            "--micro_batch_tokens", "200", "--mini_batches", "2", "--plot", "false", *extra]


@pytest.fixture
def qwen_dir(tmp_path_factory, tiny_tokenizer):
    folder = tmp_path_factory.mktemp("tiny-qwen-train")
    build_model("qwen2", len(tiny_tokenizer)).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


def read_metrics(out_dir):
    rows = [json.loads(l) for l in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.endswith(TIMING)} for r in rows]


def test_resume_is_exact_and_checkpoint_round_trips(qwen_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    straight, split = tmp_path / "straight", tmp_path / "split"
    train_grpo.train(train_grpo.parse_config(tiny_args(qwen_dir, straight, "--max_steps", "4")))
    train_grpo.train(train_grpo.parse_config(tiny_args(qwen_dir, split, "--max_steps", "2")))
    train_grpo.train(train_grpo.parse_config(tiny_args(qwen_dir, split, "--max_steps", "4", "--resume")))
    a, b = read_metrics(straight), read_metrics(split)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [0, 1, 2, 3]
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
    assert "eval_accuracy" in a[1] and "eval_accuracy" in a[3]


def test_ctrl_c_saves_and_resumes(qwen_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    real_step = train_grpo.grpo_step

    def step_then_interrupt(cfg, step, *args):
        metrics = real_step(cfg, step, *args)
        if step == 0:
            os.kill(os.getpid(), signal.SIGINT)   # as if the user pressed Ctrl-C during step 0
        return metrics

    monkeypatch.setattr(train_grpo, "grpo_step", step_then_interrupt)
    out = tmp_path / "run"
    train_grpo.train(train_grpo.parse_config(tiny_args(qwen_dir, out, "--max_steps", "4", "--save_every", "0")))
    assert torch.load(out / "ckpt" / "trainer_state.pt", weights_only=False)["step"] == 1
    assert [r["step"] for r in read_metrics(out)] == [0]
    monkeypatch.setattr(train_grpo, "grpo_step", real_step)
    train_grpo.train(train_grpo.parse_config(tiny_args(qwen_dir, out, "--max_steps", "3", "--resume")))
    assert [r["step"] for r in read_metrics(out)] == [0, 1, 2]


def test_non_finite_updates_are_skipped_then_stop(qwen_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    monkeypatch.setattr(train_grpo, "policy_loss", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    out = tmp_path / "nan"
    cfg = train_grpo.parse_config(tiny_args(qwen_dir, out, "--max_steps", "5", "--max_bad_steps", "2",
                                            "--eval_every", "0"))
    with pytest.raises(RuntimeError, match="non-finite"):
        train_grpo.train(cfg)
    rows = read_metrics(out)
    assert [r["skipped"] for r in rows] == [1, 1]
    assert not (out / "ckpt").exists()   # stopped before any checkpoint of a broken model


@pytest.mark.parametrize("flags, message", [
    (["--group_size", "1"], "--group_size 1"),
    (["--batch_size", "500"], "--batch_size 500"),
    (["--dataset", "no_such_set"], "no_such_set"),
    (["--loss_agg", "sum"], "--loss_agg 'sum'"),
    (["--lr_schedule", "linear"], "--lr_schedule"),
    (["--temperature", "0"], "--temperature"),
])
def test_bad_config_is_one_line_before_the_model_loads(tmp_path, flags, message, capsys):
    # The model path does not exist: if the model were loaded first, the error would be about it.
    args = ["--model", str(tmp_path / "no-model"), "--dataset", "synthetic:1", "--num_problems", "100",
            "--out_dir", str(tmp_path / "run"), *flags]
    with pytest.raises(SystemExit) as info:
        train_grpo.main(args)
    text = str(info.value.code)
    assert text.startswith("error: ") and message in text and "\n" not in text
    assert "no-model" not in text


def test_existing_run_folder_needs_resume(qwen_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 0}\n')
    with pytest.raises(SystemExit, match="--resume"):
        train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "1"))


def test_preset_and_cli_overrides():
    cfg = train_grpo.parse_config(["--preset", "cpu_demo", "--max_steps", "3", "--scale_by_std", "false"])
    assert cfg.model == "smollm2-135m" and cfg.max_steps == 3 and cfg.scale_by_std is False
    assert train_grpo.parse_config(["--resume"]).resume is True
