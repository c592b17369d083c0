"""train_hicra.py: the advantage amplification by hand, and proof that in a real run the
advantages entering the loss differ from GRPO's exactly on the planning tokens."""

import json
import re

import pytest
import torch

import strategic_grams
import train_grpo
import train_hicra
from test_grpo import fake_reward, qwen_dir, tiny_args  # noqa: F401  (qwen_dir is a fixture)


def test_hicra_advantages_hand_values():
    A = torch.tensor([[1.0, 1.0, -0.5, -0.5, 0.0, 0.0]])
    planning = torch.tensor([[1, 0, 1, 0, 1, 0]], dtype=torch.bool)
    out = train_hicra.hicra_advantages(A, planning, 0.2)
    # planning: A>0 -> 1.2 A, A<0 -> 0.8 A, A=0 -> 0; execution tokens unchanged
    assert torch.allclose(out, torch.tensor([[1.2, 1.0, -0.4, -0.5, 0.0, 0.0]]))
    assert torch.equal(A, torch.tensor([[1.0, 1.0, -0.5, -0.5, 0.0, 0.0]])), "input must not be modified"


def test_no_gradient_flows_through_the_mask():
    A = torch.tensor([[0.5, -1.0]], requires_grad=True)
    planning = torch.tensor([[0.3, 1.0]], requires_grad=True)
    train_hicra.hicra_advantages(A, planning, 0.2).sum().backward()
    assert planning.grad is None
    assert torch.allclose(A.grad, torch.tensor([[1.0 + 0.2 * 0.3, 1.0 - 0.2]]))


def test_placebo_marks_exactly_as_many_tokens():
    lengths, counts = [10, 30, 7, 5], [3, 12, 0, 5]
    mask = train_hicra.random_span_mask(lengths, counts, seed=1)
    assert mask.shape == (4, 30)
    assert mask.sum(dim=1).tolist() == counts
    for i, n in enumerate(lengths):
        assert mask[i, n:].sum() == 0
    assert not torch.equal(mask, train_hicra.random_span_mask(lengths, counts, seed=2))


def test_entropy_mask_picks_the_top_30_percent_per_response():
    entropy = torch.tensor([[0.1, 0.9, 0.5, 0.3, 0.8, 0.2, 0.7, 0.0, 0.0, 0.0],
                            [0.4, 0.1, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    mask = train_hicra.entropy_mask(entropy, [7, 3], 0.3)
    # response 0: ceil(2.1) = 3 tokens: entropies 0.9, 0.8, 0.7; response 1: ceil(0.9) = 1 token: 0.4
    assert mask[0].nonzero().squeeze(-1).tolist() == [1, 4, 6]
    assert mask[1].nonzero().squeeze(-1).tolist() == [0]


def record_loss_inputs(monkeypatch):
    """Capture the advantages and masks that reach policy_loss, in sequence order."""
    calls = []
    real = train_grpo.policy_loss

    def spy(logp, old_logp, advantages, mask, *args, **kwargs):
        calls.append((advantages.detach().clone(), mask.clone()))
        return real(logp, old_logp, advantages, mask, *args, **kwargs)

    monkeypatch.setattr(train_grpo, "policy_loss", spy)
    # One micro-batch in sequence order, so rows line up with the batch.
    monkeypatch.setattr(train_grpo, "micro_batches", lambda prompts, lens, budget: [list(range(len(lens)))])
    return calls


def test_advantages_entering_the_loss_differ_from_grpo_exactly_on_planning_tokens(qwen_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    captured = {}
    real_shape = train_hicra.shape_advantages

    def capture(batch):
        captured.update(batch)
        return real_shape(batch)

    # First a GRPO step, to see what the model writes; its frequent words become the gram list,
    # so that the responses certainly contain planning tokens.
    calls = record_loss_inputs(monkeypatch)
    words_file = tmp_path / "seed_grams.txt"
    words_file.write_text("zzzz\n")
    common = ["--max_steps", "1", "--mini_batches", "1", "--eval_every", "0", "--grams", str(words_file)]
    train_grpo.train(train_grpo.parse_config(tiny_args(qwen_dir, tmp_path / "grpo0", *common)))
    texts = [json.loads(l)["response"] for l in (tmp_path / "grpo0" / "rollouts.jsonl").read_text().splitlines()]
    words = sorted({w.lower() for t in texts for w in re.findall(r"[A-Za-z]{3,}", t)})[:6]
    assert words, "the tiny model wrote no words"
    grams_file = tmp_path / "grams.txt"
    grams_file.write_text("\n".join(words) + "\n")
    common[-1] = str(grams_file)

    calls.clear()
    train_grpo.train(train_grpo.parse_config(tiny_args(qwen_dir, tmp_path / "grpo", *common)))
    grpo_adv, grpo_mask = calls[0]
    calls.clear()
    monkeypatch.setattr(train_hicra, "shape_advantages", capture)
    cfg = train_grpo.parse_config(tiny_args(qwen_dir, tmp_path / "hicra", *common), train_hicra.HicraConfig)
    train_grpo.train(cfg, shape_advantages=train_hicra.shape_advantages)
    hicra_adv, hicra_mask = calls[0]

    assert torch.equal(grpo_mask, hicra_mask)   # same seed, same weights: the same rollouts
    # The planning mask, recomputed here from the rollouts' token ids.
    planning = torch.zeros_like(grpo_adv)
    grams = strategic_grams.load_grams(grams_file)
    for i, ids in enumerate(captured["completion_ids"]):
        planning[i, :len(ids)] = torch.tensor(strategic_grams.planning_mask(captured["tokenizer"], ids, grams),
                                              dtype=torch.float32)
    planning *= grpo_mask
    changed = (hicra_adv != grpo_adv)
    should_change = (planning > 0) & (grpo_adv != 0)
    assert should_change.any(), "the test needs planning tokens with a non-zero advantage"
    assert torch.equal(changed, should_change)
    expected = grpo_adv + 0.2 * grpo_adv.abs() * planning
    assert torch.allclose(hicra_adv, expected, atol=1e-6)
    # Analysis metrics are logged, and rollouts show which tokens were planning tokens.
    rows = [json.loads(l) for l in (tmp_path / "hicra" / "metrics.jsonl").read_text().splitlines()]
    for key in ("planning_token_frac", "semantic_entropy", "entropy_planning", "entropy_execution",
                "rel_ppl_planning", "rel_ppl_execution", "adv_planning_mean", "adv_execution_mean"):
        assert key in rows[0], key
    assert rows[0]["rel_ppl_planning"] == pytest.approx(1.0)
    logged = [json.loads(l) for l in (tmp_path / "hicra" / "rollouts.jsonl").read_text().splitlines()]
    assert any("[[" in r["planning"] for r in logged)


def test_placebo_run_amplifies_as_many_tokens_as_strategic(qwen_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    seen = []
    real_shape = train_hicra.shape_advantages

    def capture(batch):
        out = real_shape(batch)
        seen.append((batch["planning_mask"].sum(1), batch["amplified_mask"].sum(1)))
        return out

    grams = tmp_path / "grams.txt"
    grams.write_text("the\nis\nan\nso\n")
    cfg = train_grpo.parse_config(tiny_args(qwen_dir, tmp_path / "placebo", "--max_steps", "2", "--eval_every", "0",
                                            "--mask", "random", "--grams", str(grams)), train_hicra.HicraConfig)
    train_grpo.train(cfg, shape_advantages=capture)
    assert len(seen) == 2
    for strategic_counts, placebo_counts in seen:
        assert torch.equal(strategic_counts, placebo_counts)


def test_train_hicra_cli_two_steps(qwen_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    out = tmp_path / "run"
    train_hicra.main(tiny_args(qwen_dir, out, "--max_steps", "2", "--mask", "entropy"))
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1]
    config = json.loads((out / "config.json").read_text())
    assert config["alpha"] == 0.2 and config["mask"] == "entropy" and config["grams"].endswith("strategic_grams.txt")
    assert (out / "ckpt" / "model.safetensors").exists()


def test_bad_mask_is_one_line(tmp_path):
    with pytest.raises(SystemExit) as info:
        train_hicra.main(["--mask", "magic", "--out_dir", str(tmp_path / "x")])
    assert str(info.value.code) == "error: --mask 'magic': choose from strategic, random, entropy"
