"""The GPU path, checked on a GPU: `pytest -m cuda` (part of `make gpu-check`). Skipped without one.

The sampler against Hugging Face's greedy `generate` on CUDA, eager and graph-captured; the bf16
sampler's log-probs against the teacher-forced bf16-autocast forward the update runs; graph-captured
decoding against eager decoding (equal in float32, close in bf16); two training steps with the bf16
sampler copy and graphs.
The CPU runs the same logic in tests/test_rollout.py and tests/test_grpo.py (graphs=True runs the
fixed-shape steps eagerly there)."""

import json

import pytest
import torch

import rollout
import train_grpo
from conftest import build_model, fake_reward, tiny_args
from test_rollout import graph_vs_eager, hf_generate, prompts_for

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make gpu-check)")]


@pytest.fixture
def cuda_model(tiny_tokenizer):
    model = build_model("qwen2", len(tiny_tokenizer)).cuda()
    return model, rollout.prepare_tokenizer(tiny_tokenizer, model)


@pytest.mark.parametrize("graphs", [False, True])
def test_greedy_matches_generate_on_cuda(cuda_model, graphs):
    model, tokenizer = cuda_model
    ids = prompts_for(tokenizer)
    expected = hf_generate(model, tokenizer, ids, 40, [10**6])
    ours = rollout.sample(model, ids, 40, temperature=0, pad_token_id=tokenizer.pad_token_id, graphs=graphs)
    assert ours.completion_ids == expected


def test_graph_decode_equals_eager_in_float32_on_cuda(cuda_model, monkeypatch):
    model, tokenizer = cuda_model
    eager, graphed, shapes = graph_vs_eager(model, tokenizer, monkeypatch)
    assert graphed.completion_ids == eager.completion_ids
    for a, b in zip(eager.logprobs, graphed.logprobs):
        assert torch.allclose(torch.tensor(a), torch.tensor(b), atol=1e-4)
    assert len(shapes) > 2, "several graphs should have been captured"


def test_graph_decode_is_close_to_eager_in_bf16_on_cuda(cuda_model, monkeypatch):
    """In bf16 the graphs' attention reads whole key blocks (masked past the current column), which can
    round differently from the eager path's exact length: log-probs close, tokens mostly the same."""
    model, tokenizer = cuda_model
    eager, graphed, _ = graph_vs_eager(model.to(torch.bfloat16), tokenizer, monkeypatch)
    same = sum(a == b for a, b in zip(eager.completion_ids, graphed.completion_ids))
    assert same >= len(eager.completion_ids) - 2, (same, len(eager.completion_ids))
    for a, b, la, lb in zip(eager.completion_ids, graphed.completion_ids, eager.logprobs, graphed.logprobs):
        agree = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))   # common prefix
        assert torch.allclose(torch.tensor(la[:agree]), torch.tensor(lb[:agree]), atol=0.05)


def test_bf16_sampler_logprobs_agree_with_the_update_forward_on_cuda(tiny_tokenizer):
    """What the sampler (bf16 weights and cache) reports against what the update computes (float32
    master weights under bf16 autocast) on the same tokens."""
    from test_rollout import bf16_agreement
    model = build_model("qwen2", len(tiny_tokenizer)).cuda()
    stats = bf16_agreement(model, rollout.prepare_tokenizer(tiny_tokenizer, model))
    print(f"bf16 sampler vs bf16-autocast teacher forcing on CUDA: {stats}")
    assert stats["mean_abs"] < 0.05 and stats["max_abs"] < 1.0   # 0.005 / 0.03 on the CPU; the figure is the point


def test_one_training_step_on_cuda(qwen_dir, tmp_path, monkeypatch):
    """Two steps on CUDA with the bf16 sampler copy and graph-captured decoding: the copy equals the
    float32 master weights cast to bf16 after the update, the checkpoint holds the float32 weights,
    and every step logs its peak memory per phase."""
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)   # a signal the tiny model can earn
    out = tmp_path / "run"
    policy = train_grpo.train(train_grpo.parse_config(tiny_args(qwen_dir, out, "--device", "cuda", "--max_steps", "2",
                                                                 "--cuda_graphs", "true")))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "reward_mean" in r]
    assert len(steps) == 2 and all(r["updates"] == 2 for r in steps)
    for r in steps:
        assert all(r[k] > 0 for k in ("sample_peak_gib", "old_logp_peak_gib", "update_peak_gib"))
    assert {p.dtype for p in policy.parameters()} == {torch.bfloat16}
    saved, _ = rollout.load_model(str(out / "ckpt"), device="cuda", dtype=torch.float32)
    for copied, master in zip(policy.parameters(), saved.parameters()):
        assert torch.equal(copied, master.to(torch.bfloat16))
