"""What a preset needs per GPU, by arithmetic (no GPU, no weights): the memory of each phase of a step.

    python bench/hardware.py                               # every paper preset on 8 and 16 GPUs
    python bench/hardware.py --preset paper_qwen3_4b_base --gpus 8
    python bench/hardware.py --config configs/qwen2.5-vl-7b-instruct --gpus 1 --sample_rows 64   # train_grpo's defaults

The model's shape comes from its config in configs/ (the parameter count from a model built on the meta
device). Per GPU, in GiB (2^30 bytes), with FSDP over `gpus` ranks:
  state      AdamW's float32 master weights and two moments, sharded: 12 bytes x params / gpus
  sampler    the sampler's bf16 copy of the full weights (every rank samples): 2 bytes x params
  kv cache   sampling: sample_rows x (prompt + final response length) x 2 (K, V) x layers x KV heads x
             head dim x 2 bytes (bf16)
  grads      float32 gradients, sharded, during the update only: 4 bytes x params / gpus
  activations  the update with gradient checkpointing, one micro-batch of micro_batch_tokens: each layer's
             float32 input kept (tokens x hidden x layers x 4 bytes), one layer recomputed at a time in bf16
             (tokens x (8 x hidden + 6 x intermediate) x 2 bytes: attention projections and the MLP, with their
             gradients), and one chunk of float32 logits (logprob_chunk x vocab x 4 bytes x 3: logits,
             log-softmax, gradient)
  refresh    after the update, FSDP gathers the full float32 weights on every rank to refresh the sampler's copy
             (distributed.refresh_policy): 4 bytes x params
  startup    before sharding, each rank holds the float32 model it loaded and the copy it casts to bf16 for the
             sampler (distributed.distribute): 8 bytes x params
The peak is the larger of the startup and state + sampler + the largest of the three phases of a step
(sampling: kv cache; update: grads + activations; refresh), since the gradients are freed before sampling and
the gathered weights before the next step. Not counted: the CUDA context and allocator slack (a few GiB),
FSDP's gathered layer (one layer's bf16 weights), the prompt cache of the prefill.
"""
import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GIB = 2 ** 30
PROMPT_TOKENS = 2048      # DAPO's max_prompt_length: the prompt budget beside the responses
CONFIGS = {"Qwen/Qwen3-4B-Instruct-2507": "qwen3-4b-instruct-2507", "Qwen/Qwen3-4B-Base": "qwen3-4b-base",
           "Qwen/Qwen2.5-7B": "qwen2.5-7b", "meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b-instruct"}


def parameter_count(config_dir: Path) -> int:
    """Every parameter, a VLM's vision tower included (it is trained, sampled and checkpointed with the rest)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    from rollout import VISION_ARCHS
    config = AutoConfig.from_pretrained(config_dir)
    vision = config.model_type in VISION_ARCHS
    with torch.device("meta"):
        model = (AutoModelForImageTextToText if vision else AutoModelForCausalLM).from_config(config)
    return sum(p.numel() for p in model.parameters())


def memory(config: dict, params: int, gpus: int, sample_rows: int, tokens_per_row: int, micro_batch_tokens: int,
           logprob_chunk: int) -> dict:
    """GiB per GPU of each item (see the module docstring) for a model `config` (its config.json as a dict; a VLM's
    language model's shape, in text_config or at the top level in older files, sets the cache and activations)."""
    config = {**config, **config.get("text_config", {})}
    layers, hidden = config["num_hidden_layers"], config["hidden_size"]
    head_dim = config.get("head_dim") or hidden // config["num_attention_heads"]
    kv_per_token = 2 * layers * config["num_key_value_heads"] * head_dim * 2
    parts = {
        "state": 12 * params / gpus,
        "sampler": 2 * params,
        "kv cache": sample_rows * tokens_per_row * kv_per_token,
        "grads": 4 * params / gpus,
        "refresh": 4 * params,
        "startup": 8 * params,
        "activations": (micro_batch_tokens * hidden * layers * 4
                        + micro_batch_tokens * (8 * hidden + 6 * config["intermediate_size"]) * 2
                        + logprob_chunk * config["vocab_size"] * 4 * 3),
    }
    parts = {k: v / GIB for k, v in parts.items()}
    step = max(parts["kv cache"], parts["grads"] + parts["activations"], parts["refresh"])
    parts["peak"] = max(parts["startup"], parts["state"] + parts["sampler"] + step)
    return parts


def preset_memory(name: str, gpus: int) -> dict:
    import train_grpo
    cfg = train_grpo.parse_config(["--preset", name])
    folder = ROOT / "configs" / CONFIGS[cfg.model]
    config = json.loads((folder / "config.json").read_text())
    final = max(cfg.max_new_tokens, cfg.max_new_tokens_final)
    return memory(config, parameter_count(folder), gpus, cfg.sample_rows, PROMPT_TOKENS + final,
                  cfg.micro_batch_tokens, cfg.logprob_chunk)


def config_memory(folder: Path, gpus: int, sample_rows: int) -> dict:
    """A model folder under train_grpo's default flags (a batch of 32 x 8 rollouts of 1,024 tokens), sampling
    `sample_rows` rollouts at a time (0: all of them)."""
    import train_grpo
    cfg = train_grpo.Config()
    config = json.loads((folder / "config.json").read_text())
    return memory(config, parameter_count(folder), gpus, sample_rows or cfg.batch_size * cfg.group_size,
                  PROMPT_TOKENS + cfg.max_new_tokens, cfg.micro_batch_tokens, cfg.logprob_chunk)


def main(argv=None):
    import presets
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="", help=f"one of {', '.join(presets.PAPER)} (default: all)")
    p.add_argument("--config", default="", help="a model folder (configs/...) under train_grpo's default flags instead")
    p.add_argument("--sample_rows", type=int, default=0, help="with --config: rollouts a sampler call (0 = all 256)")
    p.add_argument("--gpus", default="8,16", help="comma-separated GPU counts (FSDP ranks)")
    args = p.parse_args(argv)
    names = [args.config] if args.config else [args.preset] if args.preset else list(presets.PAPER)
    keys = ("state", "sampler", "kv cache", "grads", "activations", "refresh", "startup", "peak")
    print(f"| {'model' if args.config else 'preset'} | GPUs | " + " | ".join(keys[:-1]) + " | peak (GiB per GPU) |")
    print("| --- | ---: | " + " | ".join("---:" for _ in keys) + " |")
    for name in names:
        for gpus in (int(g) for g in args.gpus.split(",")):
            m = config_memory(Path(name), gpus, args.sample_rows) if args.config else preset_memory(name, gpus)
            print(f"| {name} | {gpus} | " + " | ".join(f"{m[k]:.1f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
