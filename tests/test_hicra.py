"""train_hicra.py: the advantage amplification by hand, and proof that in a real run the
advantages entering the loss differ from GRPO's exactly on the planning tokens."""

import itertools
import math
import json
import re
from pathlib import Path

import pytest
import torch

import speed
import strategic_grams
import train_grpo
import train_hicra
from conftest import fake_reward, read_metrics, tiny_args


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
    mask = train_hicra.random_span_mask(lengths, counts, seeds=[1, 2, 3, 4])
    assert mask.shape == (4, 30)
    assert mask.sum(dim=1).tolist() == counts
    for i, n in enumerate(lengths):
        assert mask[i, n:].sum() == 0
    assert not torch.equal(mask, train_hicra.random_span_mask(lengths, counts, seeds=[5, 6, 7, 8]))
    # A response's spans depend on its own seed only, not on the other responses of the batch.
    alone = train_hicra.random_span_mask(lengths[1:2], counts[1:2], seeds=[2])
    assert torch.equal(alone[0], mask[1])


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
    monkeypatch.setattr(speed, "micro_batches", lambda prompts, lens, budget: [list(range(len(lens)))])
    return calls


def grams_the_model_writes(model_dir, tmp_path):
    """A gram list of words the tiny model writes in a first GRPO step, so that its responses certainly
    contain planning tokens."""
    words_file = tmp_path / "seed_grams.txt"
    words_file.write_text("zzzz\n")
    train_grpo.train(train_grpo.parse_config(tiny_args(model_dir, tmp_path / "grpo0", "--max_steps", "1",
                                                       "--eval_every", "0", "--grams", str(words_file))))
    texts = [json.loads(l)["response"] for l in (tmp_path / "grpo0" / "rollouts.jsonl").read_text().splitlines()]
    words = sorted({w.lower() for t in texts for w in re.findall(r"[A-Za-z]{3,}", t)})[:6]
    assert words, "the tiny model wrote no words"
    grams_file = tmp_path / "grams.txt"
    grams_file.write_text("\n".join(words) + "\n")
    return grams_file


def test_advantages_entering_the_loss_differ_from_grpo_exactly_on_planning_tokens(qwen_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    captured = {}
    real_shape = train_hicra.shape_advantages

    def capture(advantages, completion_ids, entropy, tokenizer, grams, cfg, row_seeds):
        captured.update(completion_ids=completion_ids, tokenizer=tokenizer)
        return real_shape(advantages, completion_ids, entropy, tokenizer, grams, cfg, row_seeds)

    calls = record_loss_inputs(monkeypatch)
    grams_file = grams_the_model_writes(qwen_dir, tmp_path)
    common = ["--max_steps", "1", "--mini_batches", "1", "--eval_every", "0", "--grams", str(grams_file)]

    calls.clear()
    train_grpo.train(train_grpo.parse_config(tiny_args(qwen_dir, tmp_path / "grpo", *common)))
    grpo_adv, grpo_mask = calls[0]
    calls.clear()
    monkeypatch.setattr(train_hicra, "shape_advantages", capture)
    cfg = train_grpo.parse_config(tiny_args(qwen_dir, tmp_path / "hicra", *common), train_hicra.HicraConfig)
    train_grpo.train(cfg, shape_advantages=train_hicra.shape_advantages)
    hicra_adv, hicra_mask = calls[0]

    assert torch.equal(grpo_mask, hicra_mask)   # same seed, same weights: the same rollouts
    # The planning mask, recomputed from the rollouts' token ids. planning_mask itself is checked against
    # hand-written spans in test_strategic_grams.py; here, every run of planning tokens must at least
    # hold one of the grams.
    planning = torch.zeros_like(grpo_adv)
    grams = strategic_grams.load_grams(grams_file)
    tokenizer = captured["tokenizer"]
    for i, ids in enumerate(captured["completion_ids"]):
        flags = strategic_grams.planning_mask(tokenizer, ids, grams)
        planning[i, :len(ids)] = torch.tensor(flags, dtype=torch.float32)
        for flagged, run in itertools.groupby(zip(ids, flags), key=lambda pair: pair[1]):
            if flagged:
                text = tokenizer.decode([t for t, _ in run]).lower()
                assert any(g in text for g in grams), text
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
                "rel_ppl_planning", "rel_ppl_execution", "adv_planning_mean", "adv_execution_mean",
                "semantic_entropy_bits", "conditional_entropy", "high_entropy_planning_frac",
                "planning_high_entropy_frac"):
        assert key in rows[0], key
    assert rows[0]["semantic_entropy_bits"] == pytest.approx(rows[0]["semantic_entropy"] / math.log(2))
    assert rows[0]["rel_ppl_planning"] == pytest.approx(1.0)
    logged = [json.loads(l) for l in (tmp_path / "hicra" / "rollouts.jsonl").read_text().splitlines()]
    assert any("[[" in r["planning"] for r in logged)


def test_placebo_run_amplifies_as_many_tokens_as_strategic(qwen_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    seen = []
    real_shape = train_hicra.shape_advantages

    def capture(advantages, completion_ids, entropy, tokenizer, grams, cfg, row_seeds):
        shaped, placebo = real_shape(advantages, completion_ids, entropy, tokenizer, grams, cfg, row_seeds)
        strategic = strategic_grams.planning_masks(tokenizer, completion_ids, grams, advantages.shape[1])
        seen.append((strategic, placebo.clone()))
        return shaped, placebo

    grams = grams_the_model_writes(qwen_dir, tmp_path)
    cfg = train_grpo.parse_config(tiny_args(qwen_dir, tmp_path / "placebo", "--max_steps", "2", "--eval_every", "0",
                                            "--mask", "random", "--grams", str(grams)), train_hicra.HicraConfig)
    train_grpo.train(cfg, shape_advantages=capture)
    assert len(seen) == 2
    assert any(strategic.sum() > 0 for strategic, _ in seen), "the test needs planning tokens"
    for strategic, placebo in seen:
        assert torch.equal(strategic.sum(1), placebo.sum(1))   # as many tokens per response ...
        if strategic.sum() > 0:
            assert not torch.equal(strategic, placebo)          # ... but other ones


def test_train_hicra_cli_two_steps(qwen_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    out = tmp_path / "run"
    train_hicra.main(tiny_args(qwen_dir, out, "--max_steps", "2", "--mask", "entropy"))
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]      # 2: the final evaluation
    config = json.loads((out / "config.json").read_text())
    assert config["alpha"] == 0.2 and config["mask"] == "entropy" and config["grams"] == "paper"
    assert (out / "ckpt" / "model.safetensors").exists()


@pytest.mark.parametrize("flags, message", [
    (["--alpha", "nan"], "--alpha nan: needs a number >= 0 (0 = plain GRPO)"),
    (["--alpha", "-5"], "--alpha -5.0: needs a number >= 0"),
    (["--entropy_top_frac", "0"], "--entropy_top_frac 0.0: needs a number in (0, 1]"),
    (["--entropy_top_frac", "1.5"], "--entropy_top_frac 1.5: needs a number in (0, 1]"),
    (["--lr", "nan"], "--lr nan: needs"),      # and every check of train_grpo
])
def test_bad_hicra_flags_are_one_line_before_the_model_loads(tmp_path, flags, message):
    with pytest.raises(SystemExit) as info:
        train_hicra.main(["--model", str(tmp_path / "no-model"), "--out_dir", str(tmp_path / "x"), *flags])
    assert str(info.value.code).startswith(f"error: {message}")
    assert not (tmp_path / "x").exists()


def test_an_empty_gram_list_is_refused_rather_than_running_plain_grpo(qwen_dir, tmp_path):
    grams = tmp_path / "grams.txt"
    grams.write_text("# no grams here\n")
    with pytest.raises(SystemExit) as info:
        train_hicra.main(tiny_args(qwen_dir, tmp_path / "run", "--grams", str(grams)))
    assert str(info.value.code) == f"error: --grams {grams}: holds no grams (only comments or blank lines)"


def test_bad_mask_is_one_line(tmp_path):
    with pytest.raises(SystemExit) as info:
        train_hicra.main(["--mask", "magic", "--out_dir", str(tmp_path / "x")])
    assert str(info.value.code) == "error: --mask 'magic': choose from strategic, random_grams, random, entropy"
    with pytest.raises(SystemExit) as info:
        train_hicra.main(["--mask", "random_grams", "--out_dir", str(tmp_path / "x")])
    assert str(info.value.code) == "error: --mask random_grams: needs --placebo_grams FILE (strategic_grams.py placebo)"
    with pytest.raises(SystemExit) as info:
        train_hicra.main(["--mask", "random_grams", "--placebo_grams", str(tmp_path / "none.txt"), "--out_dir",
                          str(tmp_path / "x")])
    assert str(info.value.code).startswith("error: --placebo_grams: strategic gram list not found")
    assert not (tmp_path / "x").exists()


def test_the_papers_placebo_amplifies_the_tokens_of_its_random_list(qwen_dir, tmp_path, monkeypatch):
    """--mask random_grams marks what the placebo list matches; the metrics keep --grams (the real list)."""
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    words = grams_the_model_writes(qwen_dir, tmp_path).read_text().split()
    real, placebo = tmp_path / "real.txt", tmp_path / "placebo.txt"
    real.write_text("\n".join(words[::2]))
    placebo.write_text("\n".join(words[1::2]))
    seen = []

    def capture(advantages, completion_ids, entropy, tokenizer, grams, cfg, row_seeds):
        shaped, mask = train_hicra.shape_advantages(advantages, completion_ids, entropy, tokenizer, grams, cfg, row_seeds)
        expected = strategic_grams.planning_masks(tokenizer, completion_ids, strategic_grams.load_grams(placebo),
                                                  advantages.shape[1])
        seen.append((expected, mask.clone(), grams))
        return shaped, mask

    cfg = train_grpo.parse_config(tiny_args(qwen_dir, tmp_path / "run", "--max_steps", "2", "--eval_every", "0",
                                            "--mask", "random_grams", "--placebo_grams", str(placebo),
                                            "--grams", str(real)), train_hicra.HicraConfig)
    train_grpo.train(cfg, shape_advantages=capture)
    assert len(seen) == 2 and any(expected.sum() > 0 for expected, _, _ in seen), "the test needs marked tokens"
    for expected, mask, grams in seen:
        assert torch.equal(expected, mask) and sorted(grams) == sorted(words[::2])


RERUN = """
import sys
sys.path.insert(0, {root!r})
import train_grpo, train_hicra
train_grpo.math_reward = lambda text, gold, strict=False: float(len(text) % 3 == 0)   # a learning signal
train_hicra.main(sys.argv[1:])
"""


@pytest.fixture
def wide_qwen_dir(tmp_path_factory, tiny_tokenizer):
    """Wide enough (64-dim heads, 4 KV heads) that the prompt keys/values handed to 8 rollouts exceed
    PyTorch's parallel grain: the backward of that indexing then runs on several threads."""
    from transformers import Qwen2Config, AutoModelForCausalLM
    config = Qwen2Config(vocab_size=len(tiny_tokenizer), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512, bos_token_id=0,
                         eos_token_id=2, pad_token_id=3, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    folder = tmp_path_factory.mktemp("wide-qwen")
    model.save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


def test_two_runs_of_one_command_write_identical_metrics(wide_qwen_dir, tmp_path):
    import os
    import subprocess
    import sys
    grams = tmp_path / "grams.txt"
    grams.write_text("the\nis\nso\n")
    script = tmp_path / "rerun.py"
    script.write_text(RERUN.format(root=str(Path(train_grpo.__file__).parent)))
    runs = []
    for name in ("a", "b", "c"):   # without deterministic algorithms two runs differ about 3 times in 4 here
        flags = tiny_args(wide_qwen_dir, tmp_path / name, "--max_steps", "4", "--batch_size", "4", "--group_size", "8",
                          "--max_new_tokens", "24", "--micro_batch_tokens", "4096", "--mini_batches", "1", "--lr", "1e-5",
                          "--eval_every", "0", "--grams", str(grams),
                          "--instruction", "Let's think step by step. " * 20)   # long shared prompts
        subprocess.run([sys.executable, str(script), *flags], check=True, capture_output=True,
                       env=os.environ | {"PYTHONHASHSEED": "0"})
        runs.append(read_metrics(tmp_path / name))
    assert all(row["loss"] != 0 and row["grad_norm"] > 0 for row in runs[0]), "the test needs real updates"
    assert any(row["planning_token_frac"] > 0 for row in runs[0]), "and planning tokens for HICRA to amplify"
    assert runs[0] == runs[1] == runs[2]
