"""rollout.py: model loading paths, prompt formatting, and the sampler against Hugging Face's own
`generate` and a teacher-forced forward."""

import subprocess
import sys

import pytest
import torch

import rollout
from conftest import ROOT, build_model
from train_grpo import token_logprobs

PROBLEMS = ["What is 3 + 4?", "Let's try a different approach to solve 2x + 3 = 11 for x.", "hi"]


def prompts_for(tokenizer):
    texts = [rollout.format_prompt(tokenizer, p, "chat") for p in PROBLEMS]
    ids = rollout.encode_prompts(tokenizer, texts)
    assert len({len(i) for i in ids}) == len(ids), "prompts must differ in length to test padding"
    return ids


def hf_generate(model, tokenizer, prompt_ids, max_new_tokens, eos):
    """Greedy continuation by transformers' generate on the same left-padded batch."""
    P = max(len(p) for p in prompt_ids)
    pad, device = tokenizer.pad_token_id, next(model.parameters()).device
    input_ids = torch.tensor([[pad] * (P - len(p)) + p for p in prompt_ids], device=device)
    attention = torch.tensor([[0] * (P - len(p)) + [1] * len(p) for p in prompt_ids], device=device)
    out = model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=max_new_tokens,
                         do_sample=False, eos_token_id=eos, pad_token_id=pad)
    result = []
    for row in out[:, P:].tolist():
        cut = []
        for t in row:
            cut.append(t)
            if t in eos:
                break
        result.append(cut)
    return result


def teacher_forced_logprobs(model, prompt, completion):
    """Log-probs and entropies at each `completion` token given `prompt`: the trainer's plain reference, one
    forward of prompt + completion (tests/test_grpo.py checks it against one forward per prefix)."""
    with torch.no_grad():
        logp, entropy = token_logprobs(model, [prompt], [completion])                  # [1, Tc] each
    return logp[0], entropy[0]


# ----------------------------------------------------------------------------- loading

def test_folder_round_trip_gives_same_logits(tiny_model_dir, tiny_tokenizer):
    model, tokenizer = rollout.load_model(str(tiny_model_dir))
    from transformers import AutoModelForCausalLM
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = torch.tensor([tiny_tokenizer("What is 3 + 4?")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)
    assert tokenizer.pad_token is not None and tokenizer.chat_template
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in tokenizer.stop_token_ids


def test_load_model_adds_missing_pad_and_chat_falls_back_to_chatml(tmp_path, tiny_tokenizer):
    import copy
    tok = copy.deepcopy(tiny_tokenizer)
    tok.pad_token = None
    tok.chat_template = None
    rollout.prepare_tokenizer(tok)
    assert tok.pad_token == tok.eos_token
    text = rollout.format_prompt(tok, "What is 1 + 1?", "chat")
    assert text.endswith("<|im_start|>assistant\n") and "What is 1 + 1?" in text


def test_hub_id_offline_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    with pytest.raises(rollout.ModelLoadError) as info:
        rollout.load_model("Qwen/Qwen2.5-0.5B")
    message = str(info.value)
    assert "\n" not in message
    assert "Qwen/Qwen2.5-0.5B" in message and "smollm2-135m" in message and "folder" in message


def test_cli_offline_error_has_no_traceback(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
           "HICRA_DATA_DIR": str(ROOT / "missing")}
    result = subprocess.run([sys.executable, "rollout.py", "--model", "Qwen/Qwen2.5-0.5B", "--dataset",
                             "synthetic:1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [l for l in result.stderr.splitlines() if l.strip() and "warn" not in l.lower()]
    assert len(lines) == 1 and lines[0].startswith("error: --model Qwen/Qwen2.5-0.5B"), result.stderr


@pytest.mark.parametrize("flags, message", [
    (["--samples", "0"], "--samples 0: needs an integer >= 1"),
    (["--num_problems", "0"], "--num_problems 0: needs an integer >= 1"),
    (["--max_new_tokens", "0"], "--max_new_tokens 0: needs an integer >= 1"),
    (["--temperature", "nan"], "--temperature nan: needs a number >= 0"),
    (["--device", "bogus"], "--device 'bogus': not a device"),
])
def test_cli_flags_are_checked_before_the_model_loads(flags, message):
    with pytest.raises(SystemExit) as info:
        rollout.main(["--model", "/nonexistent", *flags])
    assert str(info.value.code) == f"error: {message}" or str(info.value.code).startswith(f"error: {message}")


def test_sampling_refuses_a_nan_temperature(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="temperature must be a number >= 0, got nan"):
        rollout.sample(model, [[5, 6, 7]], 4, temperature=float("nan"))


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(rollout.ModelLoadError, match="not a Hugging Face model folder"):
        rollout.load_model(str(tmp_path / "nope"))


def test_interrupted_conversion_leaves_no_cache(monkeypatch, tmp_path, tiny_tokenizer):
    """A crash while writing the converted model must leave neither the target nor a temp folder."""
    import transformers
    monkeypatch.setenv("HICRA_CACHE", str(tmp_path))
    tiny = build_model("llama", len(tiny_tokenizer))

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: tiny)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: tiny_tokenizer)
    monkeypatch.setattr(tiny, "save_pretrained", crash)
    with pytest.raises(KeyboardInterrupt):
        rollout.convert_gguf_alias("smollm2-135m")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_offline_gguf_alias_end_to_end(tmp_path, monkeypatch):
    """smollm2-135m: GGUF -> cached safetensors folder -> a model that answers sensibly."""
    monkeypatch.setenv("HICRA_CACHE", str(tmp_path))
    model, tokenizer = rollout.load_model("smollm2-135m")
    folder = tmp_path / "smollm2-135m"
    assert (folder / "model.safetensors").exists() and (folder / "config.json").exists()
    assert model.config.model_type == "llama" and not hasattr(model.config, "quantization_config")
    # The cached folder is a plain HF folder.
    from transformers import AutoModelForCausalLM
    reloaded = AutoModelForCausalLM.from_pretrained(folder).eval()
    prompt = rollout.encode_prompts(tokenizer, [rollout.format_prompt(tokenizer, "What is the capital of France?")])
    out = rollout.sample(model, prompt, 12, temperature=0, eos_token_id=tokenizer.stop_token_ids)
    assert "Paris" in tokenizer.decode(out.completion_ids[0])
    with torch.no_grad():
        ids = torch.tensor(prompt)
        assert torch.allclose(model(ids).logits, reloaded(ids).logits)
    # Second load reuses the cache (no temp folders left behind).
    rollout.load_model("smollm2-135m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smollm2-135m"]


# ----------------------------------------------------------------------------- sampling

def test_greedy_matches_generate_token_for_token(tiny):
    model, tokenizer = tiny
    ids = prompts_for(tokenizer)
    free_run = rollout.sample(model, ids, 40, temperature=0, eos_token_id=[], pad_token_id=tokenizer.pad_token_id)
    # Make the 6th token of row 0 an EOS, so row 0 stops early while the others continue.
    eos = [free_run.completion_ids[0][5]]
    expected = hf_generate(model, tokenizer, ids, 40, eos)
    ours = rollout.sample(model, ids, 40, temperature=0, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
    assert ours.completion_ids == expected
    lengths = [len(c) for c in ours.completion_ids]
    assert lengths[0] <= 6 and ours.finished[0] and ours.completion_ids[0][-1] == eos[0]
    assert max(lengths) > lengths[0], "other rows must continue after row 0 stops"
    for c, fin in zip(ours.completion_ids, ours.finished):
        assert fin == (c[-1] in eos) and all(t not in eos for t in c[:-1])


def test_greedy_matches_generate_without_eos(tiny):
    model, tokenizer = tiny
    ids = prompts_for(tokenizer)
    expected = hf_generate(model, tokenizer, ids, 24, [10**6])
    ours = rollout.sample(model, ids, 24, temperature=0, eos_token_id=None, pad_token_id=tokenizer.pad_token_id)
    assert ours.completion_ids == expected
    assert not any(ours.finished) and all(len(c) == 24 for c in ours.completion_ids)


def test_sampled_logprobs_equal_teacher_forcing(tiny):
    model, tokenizer = tiny
    ids = prompts_for(tokenizer)
    free = rollout.sample(model, ids, 30, temperature=1.3, top_k=50, top_p=0.95, seed=0, n=4)
    # The most frequent sampled tokens serve as EOS ids, so some rows stop early.
    common = torch.bincount(torch.tensor(sum(free.completion_ids, []))).topk(4).indices.tolist()
    out = rollout.sample(model, ids, 30, temperature=1.3, top_k=50, top_p=0.95, eos_token_id=common,
                         seed=0, n=4, pad_token_id=tokenizer.pad_token_id)
    assert len(out.completion_ids) == 12 and out.prompt_index == [i // 4 for i in range(12)]
    assert len({len(c) for c in out.completion_ids}) > 1, "lengths should vary with an EOS in play"
    for completion, logprobs, entropies, k in zip(out.completion_ids, out.logprobs, out.entropies, out.prompt_index):
        reference, reference_entropy = teacher_forced_logprobs(model, ids[k], completion)
        assert len(logprobs) == len(entropies) == len(completion)
        assert torch.allclose(torch.tensor(logprobs), reference, atol=1e-4)
        assert torch.allclose(torch.tensor(entropies), reference_entropy, atol=1e-4)


def test_same_seed_same_samples_and_different_seed_differs(tiny):
    model, tokenizer = tiny
    ids = prompts_for(tokenizer)
    a = rollout.sample(model, ids, 20, seed=7, n=2)
    b = rollout.sample(model, ids, 20, seed=7, n=2)
    c = rollout.sample(model, ids, 20, seed=8, n=2)
    assert a.completion_ids == b.completion_ids and a.logprobs == b.logprobs
    assert a.completion_ids != c.completion_ids


def test_tiny_top_p_and_top_k_one_are_greedy(tiny):
    model, tokenizer = tiny
    ids = prompts_for(tokenizer)
    greedy = rollout.sample(model, ids, 20, temperature=0).completion_ids
    assert rollout.sample(model, ids, 20, temperature=1.0, top_p=1e-6, seed=3).completion_ids == greedy
    assert rollout.sample(model, ids, 20, temperature=1.0, top_k=1, seed=3).completion_ids == greedy


def test_samples_follow_the_distribution():
    """The empirical first-token distribution matches softmax(logits / T) restricted by top-p."""
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, -3.0]]).repeat(20000, 1)
    gen = torch.Generator().manual_seed(0)
    picks = rollout._next_token(logits, 0.7, 0.9, 0, gen)
    probs = (logits[0] / 0.7).softmax(-1)
    # top_p = 0.9 keeps the smallest prefix (by descending prob) whose mass reaches 0.9
    keep = (probs.cumsum(-1) - probs) < 0.9
    expected = torch.where(keep, probs, torch.zeros_like(probs))
    expected /= expected.sum()
    observed = torch.bincount(picks, minlength=5).float() / len(picks)
    assert torch.allclose(observed, expected, atol=0.015)


def test_row_dropping_keeps_results_identical(tiny):
    """Compacting the cache as rows finish must not change any row (vs. one prompt at a time)."""
    model, tokenizer = tiny
    ids = prompts_for(tokenizer)
    free = rollout.sample(model, ids, 30, temperature=0).completion_ids
    eos = [free[0][2], free[2][9]]
    batched = rollout.sample(model, ids, 30, temperature=0, eos_token_id=eos)
    for k, p in enumerate(ids):
        alone = rollout.sample(model, [p], 30, temperature=0, eos_token_id=eos)
        assert alone.completion_ids[0] == batched.completion_ids[k]
        assert torch.allclose(torch.tensor(alone.logprobs[0]), torch.tensor(batched.logprobs[k]), atol=1e-5)


def test_qwen3_greedy_matches_generate(tiny_tokenizer):
    model = build_model("qwen3", len(tiny_tokenizer))
    tokenizer = rollout.prepare_tokenizer(tiny_tokenizer, model)
    ids = prompts_for(tokenizer)
    expected = hf_generate(model, tokenizer, ids, 16, [10**6])
    assert rollout.sample(model, ids, 16, temperature=0, pad_token_id=tokenizer.pad_token_id).completion_ids == expected


@pytest.mark.parametrize("kwargs, argument", [
    (dict(prompt_ids=[[1, 2], []]), "prompt_ids"),
    (dict(prompt_ids=[]), "prompt_ids"),
    (dict(max_new_tokens=600), "max_new_tokens"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(temperature=-0.1), "temperature"),
    (dict(top_k=-1), "top_k"),
    (dict(n=0), "n must"),
])
def test_bad_input_names_the_argument(tiny, kwargs, argument):
    model, _ = tiny
    args = dict(prompt_ids=[[5, 6, 7]], max_new_tokens=8) | kwargs
    with pytest.raises(ValueError, match=argument):
        rollout.sample(model, **args)


def test_unsupported_architecture_is_a_clear_error(tiny):
    model, _ = tiny

    class Fake:
        config = type("C", (), {"model_type": "gpt2", "max_position_embeddings": 1024})()

    with pytest.raises(ValueError, match="gpt2"):
        rollout._check_sample_args(Fake(), [[1]], 4, 1.0, 1.0, 0, 1)


def test_prompt_styles(tiny_tokenizer):
    chat = rollout.format_prompt(tiny_tokenizer, "What is 2+2?", "chat")
    assert chat.startswith("<|im_start|>user\nWhat is 2+2?") and "\\boxed{}" in chat
    plain = rollout.format_prompt(tiny_tokenizer, "What is 2+2?", "plain")
    assert "<|im_start|>" not in plain and "What is 2+2?" in plain and plain.endswith("Solution:")
    with pytest.raises(ValueError, match="prompt_style"):
        rollout.format_prompt(tiny_tokenizer, "x", "fancy")


def test_the_default_prompt_style_is_what_the_tokenizer_has_not_what_the_model_is_called(tmp_path, tiny_tokenizer):
    """A model folder named like a base model (DeepSeek-R1-Distill-Llama-8B has no "instruct" in its name) whose
    tokenizer ships a chat template gets it; one named "-Instruct" whose tokenizer has none gets the plain prompt.
    The old rule went by the name and got both wrong."""
    import copy

    from transformers import AutoTokenizer
    without = copy.deepcopy(tiny_tokenizer)
    without.chat_template = None
    for name, tok, style in (("DeepSeek-R1-Distill-Llama-8B", tiny_tokenizer, "chat"),
                             ("Some-Model-Instruct", without, "plain")):
        tok.save_pretrained(tmp_path / name)
        loaded = rollout.prepare_tokenizer(AutoTokenizer.from_pretrained(tmp_path / name))
        assert rollout.default_prompt_style(loaded) == style
        assert rollout.format_prompt(loaded, "What is 2+2?") == rollout.format_prompt(loaded, "What is 2+2?", style)
        assert (loaded.chat_template is None) == (style == "plain")   # prepare_tokenizer installs no template


def graph_vs_eager(model, tokenizer, monkeypatch):
    """Sample the same rollouts eagerly and through DecodeGraphs (small buckets, so that rows finish
    across several batch buckets and the keys cross several length buckets); returns both and the
    (rows, keys) shapes the graphs ran."""
    monkeypatch.setattr(rollout, "KEY_BUCKET", 16)
    shapes = []
    capture = rollout.DecodeGraphs._capture
    monkeypatch.setattr(rollout.DecodeGraphs, "_capture",
                        lambda self, rows, keys: shapes.append((rows, keys)) or capture(self, rows, keys))
    ids = prompts_for(tokenizer)
    kwargs = dict(n=3, row_seeds=list(range(9)), pad_token_id=tokenizer.pad_token_id)
    free = rollout.sample(model, ids, 40, **kwargs)
    eos = torch.bincount(torch.tensor(sum(free.completion_ids, []))).topk(2).indices.tolist()
    eager = rollout.sample(model, ids, 40, eos_token_id=eos, **kwargs)
    graphed = rollout.sample(model, ids, 40, eos_token_id=eos, graphs=True, **kwargs)
    return eager, graphed, shapes


def test_graph_decode_gives_the_eager_samples(tiny, monkeypatch):
    """graphs=True (fixed-shape steps; captured as CUDA graphs on a GPU, run eagerly here) changes
    nothing but speed: the same tokens, the same log-probs and entropies."""
    model, tokenizer = tiny
    eager, graphed, shapes = graph_vs_eager(model, tokenizer, monkeypatch)
    assert graphed.completion_ids == eager.completion_ids and graphed.finished == eager.finished
    for a, b in zip(eager.logprobs + eager.entropies, graphed.logprobs + graphed.entropies):
        assert torch.allclose(torch.tensor(a), torch.tensor(b), atol=1e-5)
    lengths = sorted(len(c) for c in eager.completion_ids)
    assert lengths[0] < lengths[-1] and not all(eager.finished), "rows must finish at different steps"
    assert len({rows for rows, _ in shapes}) > 1 and len({keys for _, keys in shapes}) > 1, shapes


def bf16_agreement(model, tokenizer) -> dict:
    """Sample with the trainer's bf16 copy of a float32 `model` (distributed.distribute), then teacher-force
    the same tokens through the float32 model under bf16 autocast, as the update does: the absolute
    differences of the per-token log-probs (nats)."""
    import distributed
    import speed
    import train_grpo
    device = next(model.parameters()).device
    _, policy = distributed.distribute(model, train_grpo.Config(sampler_dtype="bfloat16"), 1, device)
    assert policy is not model and {p.dtype for p in policy.parameters()} == {torch.bfloat16}
    ids = prompts_for(tokenizer)
    out = rollout.sample(policy, ids, 40, n=4, row_seeds=list(range(12)), pad_token_id=tokenizer.pad_token_id)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        reference, _ = speed.completion_logprobs(model, [ids[k] for k in out.prompt_index], out.completion_ids,
                                                 tokenizer.pad_token_id, with_entropy=False)      # [B, T]
    diffs = torch.cat([(reference[i, :len(lp)].float().cpu() - torch.tensor(lp)).abs()
                       for i, lp in enumerate(out.logprobs)])
    return {"mean_abs": diffs.mean().item(), "max_abs": diffs.max().item(), "tokens": len(diffs)}


def test_bf16_sampler_logprobs_agree_with_the_update_forward(tiny):
    """The bf16 sampler's log-probs are close to, not equal to, the update's (on the CPU here; the same
    check runs on CUDA in test_cuda.py). On-policy the loss never uses them; PPO's old log-probs come
    from the update's own forward (speed.teacher_forced_logprobs)."""
    model, tokenizer = tiny
    stats = bf16_agreement(model, tokenizer)
    assert stats["tokens"] > 100 and 0 < stats["mean_abs"] < 0.02 and stats["max_abs"] < 0.5, stats


def test_decode_reads_each_cached_key_once_per_query_group():
    """One query per row: the query heads that share a key/value head attend as a group, which must
    equal SDPA's own grouped-query attention (the path prefill takes)."""
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 8, 1, 16), torch.randn(3, 2, 11, 16), torch.randn(3, 2, 11, 16)
    mask = torch.rand(3, 1, 1, 11) > 0.3
    mask[..., 0] = True
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    assert torch.allclose(rollout._attend(q, k, v, mask, 16 ** -0.5), expected, atol=1e-6)


def test_row_seeds_make_each_sequence_independent_of_its_batch(tiny):
    """With a seed per sequence, a sequence's tokens are the same whatever else is in the batch, in
    whatever order: what lets several processes sample exactly the rollouts of one."""
    model, tokenizer = tiny
    a, b, c = rollout.encode_problems(tokenizer, [{"problem": f"What is {k} + {k}?" * k} for k in (3, 1, 2)], "chat")
    kwargs = dict(temperature=1.0, n=2, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.stop_token_ids)
    together = rollout.sample(model, [a, b, c], 120, row_seeds=[1, 2, 3, 4, 5, 6], **kwargs)
    alone = rollout.sample(model, [b], 120, row_seeds=[3, 4], **kwargs)
    reordered = rollout.sample(model, [c, b], 120, row_seeds=[5, 6, 3, 4], **kwargs)
    assert together.completion_ids[2:4] == alone.completion_ids == reordered.completion_ids[2:4]
    assert together.completion_ids[4:6] == reordered.completion_ids[0:2]
    assert len({len(x) for x in together.completion_ids}) > 1, "the test needs rows that finish at different steps"
    other = rollout.sample(model, [b], 120, row_seeds=[7, 8], **kwargs)
    assert other.completion_ids != alone.completion_ids
    with pytest.raises(ValueError, match="row_seeds: 3 seeds for 2 sequences"):
        rollout.sample(model, [b], 120, row_seeds=[1, 2, 3], **kwargs)
    # max_rows: the same sequences, a few whole prompts a call (a KV cache for 3 rows, not 6)
    for max_rows in (1, 3, 4):
        chunked = rollout.sample(model, [a, b, c], 120, row_seeds=[1, 2, 3, 4, 5, 6], max_rows=max_rows, **kwargs)
        assert chunked.completion_ids == together.completion_ids and chunked.finished == together.finished
        assert chunked.prompt_index == together.prompt_index == [0, 0, 1, 1, 2, 2]
        assert all(torch.allclose(torch.tensor(x), torch.tensor(y), atol=1e-5)
                   for x, y in zip(chunked.logprobs, together.logprobs))
        assert chunked.stats["tokens"] == together.stats["tokens"]


# ----------------------------------------------------------------------------- random models of real shapes

@pytest.mark.parametrize("name, billions", [("qwen2.5-0.5b", 0.49), ("qwen2.5-1.5b", 1.54), ("qwen2.5-3b", 3.09),
                                            ("qwen3-4b-base", 4.02), ("qwen3-4b-instruct-2507", 4.02),
                                            ("qwen2.5-7b", 7.61), ("llama-3.1-8b-instruct", 8.03),
                                            ("qwen2.5-vl-3b-instruct", 3.75), ("qwen2.5-vl-7b-instruct", 8.29)])
def test_shipped_configs_have_the_published_sizes(name, billions):
    """configs/ holds real models' shapes (the GPU check's random models, the paper presets' arithmetic): their
    parameter counts are the model cards' (to the cards' rounding: Qwen2.5-7B counts 7.616B, its card says 7.61B;
    the VLMs' count their vision tower, 0.67B)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText
    config = AutoConfig.from_pretrained(ROOT / "configs" / name)
    with torch.device("meta"):
        model = (AutoModelForImageTextToText if "vl" in name else AutoModelForCausalLM).from_config(config)
    assert sum(p.numel() for p in model.parameters()) / 1e9 == pytest.approx(billions, abs=0.01)


def test_random_model_of_a_config(tmp_path):
    from transformers import Qwen2Config
    Qwen2Config(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=256).save_pretrained(tmp_path)
    model, tokenizer = rollout.load_model(f"random:{tmp_path}")
    again, _ = rollout.load_model(f"random:{tmp_path}")
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters())), "seeded"
    assert len(tokenizer) == 1000 and tokenizer.eos_token_id in tokenizer.stop_token_ids
    ids = rollout.encode_problems(tokenizer, [{"problem": "What is 2 + 3?"}], "chat")
    assert tokenizer.decode(ids[0]).startswith("<|im_start|>user\nWhat is 2 + 3?")
    out = rollout.sample(model, ids, 16, seed=0, n=2, pad_token_id=tokenizer.pad_token_id)
    assert all(isinstance(t, str) for t in tokenizer.batch_decode(out.completion_ids))
    with pytest.raises(rollout.ModelLoadError, match="no config.json"):
        rollout.load_model(f"random:{tmp_path / 'missing'}")
