"""Shared fixtures: tiny random models and a tokenizer trained in-process, so fast tests
download nothing. Both architectures the sampler supports (Qwen2 and Llama) are covered."""

import json
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
torch.set_num_threads(min(2, os.cpu_count() or 1))

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
CORPUS = [
    "Let's think step by step. First, we compute 3 + 4 = 7. So the answer is \\boxed{7}.",
    "Wait, let me check again. But the problem says that x is positive, so x = 5.",
    "We can use the fact that the sum of the angles is 180 degrees. Therefore the answer is 60.",
    "Let's try a different approach: multiply both sides by 2, then 2x + 3 = 11 gives x = 4.",
    "The final answer is \\frac{3}{4}. Let me verify: 0.75 = 3/4. Yes.",
    "Hmm, that doesn't work. Alternatively, we could factor the quadratic (x - 2)(x + 3) = 0.",
    "Natalia sold 48 clips in April and half as many in May, 72 clips altogether.",
    "What is 12 + 35? Add the tens and the ones: 47. The answer is 47.",
] * 20


def build_tokenizer():
    """A small byte-level BPE tokenizer with a ChatML chat template, trained here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<pad>",
                                   bos_token="<|endoftext|>")
    fast.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    return fast


def build_model(arch: str, vocab_size: int, seed: int = 0):
    """A 2-layer random model of the given architecture, float32, eval mode."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config, Qwen3Config

    common = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  bos_token_id=0, eos_token_id=2, pad_token_id=3, tie_word_embeddings=False)
    config = {"qwen2": Qwen2Config, "llama": LlamaConfig, "qwen3": Qwen3Config}[arch](**common)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # Random init is near-uniform; scale up the output layer so greedy choices are not near-ties
    # and sampled sequences vary in length (some hit EOS early, some don't).
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session", params=["qwen2", "llama"])
def tiny_model_dir(request, tmp_path_factory, tiny_tokenizer):
    """A saved Hugging Face folder (model + tokenizer) for each architecture."""
    folder = tmp_path_factory.mktemp(f"tiny-{request.param}")
    build_model(request.param, len(tiny_tokenizer)).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny(tiny_model_dir):
    """(model, tokenizer) loaded through rollout.load_model, for each architecture."""
    import rollout
    return rollout.load_model(str(tiny_model_dir), device="cpu")


# ----------------------------------------------------------------------------- short training runs

TIMING = ("seconds", "tokens_per_s")   # metric keys that differ between otherwise identical runs


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
